#include "http/router.hpp"

#include <gtest/gtest.h>

using namespace nimbus::http;

namespace {

boost::asio::awaitable<Response> ok() {
  co_return empty(200);
}
Handler handler() {
  return [](Request&) { return ok(); };
}

}  // namespace

TEST(Router, MatchesLiteralsAndCaptures) {
  Router r;
  r.add(Method::get, "/v1/polls", handler());
  r.add(Method::get, "/v1/polls/{id}", handler());
  r.add(Method::post, "/v1/polls/{id}/votes", handler());

  auto m = r.match(Method::get, "/v1/polls/abc");
  ASSERT_TRUE(std::holds_alternative<RouteMatch>(m));
  const auto& rm = std::get<RouteMatch>(m);
  EXPECT_EQ(rm.route->pattern, "/v1/polls/{id}");
  ASSERT_EQ(rm.params.size(), 1U);
  EXPECT_EQ(rm.params[0].first, "id");
  EXPECT_EQ(rm.params[0].second, "abc");

  auto votes = r.match(Method::post, "/v1/polls/p1/votes");
  ASSERT_TRUE(std::holds_alternative<RouteMatch>(votes));
  EXPECT_EQ(std::get<RouteMatch>(votes).params[0].second, "p1");
}

TEST(Router, NotFoundVersusMethodNotAllowed) {
  Router r;
  r.add(Method::get, "/v1/polls/{id}", handler());
  r.add(Method::del, "/v1/polls/{id}", handler());

  EXPECT_TRUE(std::holds_alternative<PathNotFound>(r.match(Method::get, "/v1/nothing")));
  EXPECT_TRUE(std::holds_alternative<PathNotFound>(r.match(Method::get, "/v1/polls/")));  // empty capture
  EXPECT_TRUE(std::holds_alternative<PathNotFound>(r.match(Method::get, "/v1/polls/a/b")));

  auto m = r.match(Method::post, "/v1/polls/x");
  ASSERT_TRUE(std::holds_alternative<MethodNotAllowed>(m));
  EXPECT_EQ(std::get<MethodNotAllowed>(m).allow, "GET, HEAD, DELETE");
}

TEST(Router, HeadFallsBackToGet) {
  Router r;
  r.add(Method::get, "/healthz", handler());
  auto m = r.match(Method::head, "/healthz");
  ASSERT_TRUE(std::holds_alternative<RouteMatch>(m));
  EXPECT_EQ(std::get<RouteMatch>(m).route->method, Method::get);
}

TEST(Router, TrailingSlashIsADifferentPath) {
  Router r;
  r.add(Method::get, "/v1/polls", handler());
  EXPECT_TRUE(std::holds_alternative<PathNotFound>(r.match(Method::get, "/v1/polls/")));
}

TEST(Router, RejectsBadPatternsAndDuplicates) {
  Router r;
  EXPECT_THROW(r.add(Method::get, "v1", handler()), std::invalid_argument);
  EXPECT_THROW(r.add(Method::get, "/v1/{id", handler()), std::invalid_argument);
  r.add(Method::get, "/v1/{id}", handler());
  EXPECT_THROW(r.add(Method::get, "/v1/{id}", handler()), std::invalid_argument);
  EXPECT_NO_THROW(r.add(Method::post, "/v1/{id}", handler()));
}

TEST(Router, SplitPath) {
  EXPECT_EQ(split_path("/"), (std::vector<std::string_view>{""}));
  EXPECT_EQ(split_path("/a/b"), (std::vector<std::string_view>{"a", "b"}));
  EXPECT_EQ(split_path("/a/b/"), (std::vector<std::string_view>{"a", "b", ""}));
}
