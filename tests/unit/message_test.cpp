#include "http/message.hpp"

#include <boost/json/parse.hpp>

#include <gtest/gtest.h>

#include "http/problem.hpp"
#include "http/server.hpp"

using namespace nimbus::http;

TEST(Headers, CaseInsensitiveGetAndSet) {
  Headers h;
  h.add("Content-Type", "text/plain");
  EXPECT_EQ(h.get("content-type"), "text/plain");
  h.set("CONTENT-TYPE", "application/json");
  EXPECT_EQ(h.items().size(), 1U);
  EXPECT_EQ(h.get("Content-Type"), "application/json");
  EXPECT_FALSE(h.get("Accept"));
}

TEST(Request, QueryParamsAreDecoded) {
  Request r;
  r.query = "status=open&q=a%20b&flag&empty=";
  EXPECT_EQ(r.query_param("status"), "open");
  EXPECT_EQ(r.query_param("q"), "a b");
  EXPECT_EQ(r.query_param("flag"), "");
  EXPECT_EQ(r.query_param("empty"), "");
  EXPECT_FALSE(r.query_param("missing"));
}

TEST(Problem, HasRfc9457ShapeAndStableCode) {
  auto res = problem(409, "already_voted", "Already voted", "You voted differently before.");
  EXPECT_EQ(res.status, 409U);
  EXPECT_EQ(res.headers.get("Content-Type"), "application/problem+json");
  auto body = boost::json::parse(res.body).as_object();
  EXPECT_EQ(body.at("code").as_string(), "already_voted");
  EXPECT_EQ(body.at("status").as_int64(), 409);
  EXPECT_EQ(body.at("title").as_string(), "Already voted");
  EXPECT_EQ(body.at("detail").as_string(), "You voted differently before.");
  EXPECT_TRUE(body.contains("type"));
}

TEST(Problem, InternalErrorLeaksNothing) {
  auto res = internal_error();
  EXPECT_EQ(res.status, 500U);
  EXPECT_EQ(boost::json::parse(res.body).at("code").as_string(), "internal_error");
}

TEST(Problem, MethodNotAllowedCarriesAllow) {
  auto res = method_not_allowed("GET, HEAD");
  EXPECT_EQ(res.status, 405U);
  EXPECT_EQ(res.headers.get("Allow"), "GET, HEAD");
}

TEST(RequestId, OnlyShortPlainIdsAreTrusted) {
  EXPECT_TRUE(valid_request_id("3f2c9a0e1b7d4c55a1b2c3d4e5f60718"));
  EXPECT_TRUE(valid_request_id("req-1.2_3"));
  EXPECT_FALSE(valid_request_id(""));
  EXPECT_FALSE(valid_request_id(std::string(129, 'a')));
  EXPECT_FALSE(valid_request_id("abc\r\nSet-Cookie: x"));
  EXPECT_FALSE(valid_request_id("a b"));
}
