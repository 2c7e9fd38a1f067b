#include "voting/rules.hpp"

#include <boost/json/parse.hpp>

#include <gtest/gtest.h>

using namespace nimbus::voting;

namespace {
boost::json::object body(std::string_view text) {
  return boost::json::parse(text).as_object();
}
std::string code_of(const std::variant<NewPoll, RuleError>& r) {
  return std::holds_alternative<RuleError>(r) ? std::get<RuleError>(r).code : "ok";
}
}  // namespace

TEST(PollRules, AcceptsAValidPoll) {
  auto r = parse_new_poll(body(R"({"title":"Lunch?","options":["a","b","c"],"max_choices":2,
    "opens_at":"2030-01-01T10:00:00Z","closes_at":"2030-01-01T12:00:00.5+02:00","results_visibility":"after_vote"})"));
  ASSERT_TRUE(std::holds_alternative<NewPoll>(r)) << code_of(r);
  const auto& p = std::get<NewPoll>(r);
  EXPECT_EQ(p.options.size(), 3U);
  EXPECT_EQ(p.max_choices, 2);
  EXPECT_EQ(p.results_visibility, "after_vote");
}

TEST(PollRules, RefusesBadPolls) {
  EXPECT_EQ(code_of(parse_new_poll(body(R"({"title":" ","options":["a","b"]})"))), "invalid_title");
  EXPECT_EQ(code_of(parse_new_poll(body(R"({"title":"t","options":["a"]})"))), "invalid_options");
  EXPECT_EQ(code_of(parse_new_poll(body(R"({"title":"t","options":["a","a"]})"))), "invalid_options");
  EXPECT_EQ(code_of(parse_new_poll(body(R"({"title":"t","options":["a","b"],"max_choices":3})"))),
            "invalid_max_choices");
  EXPECT_EQ(code_of(parse_new_poll(body(R"({"title":"t","options":["a","b"],"max_choices":0})"))),
            "invalid_max_choices");
  for (const char* t :
       {"tomorrow", "2030-01-01", "2030-01-01 10:00:00Z", "2030-01-01T10:00:00", "epoch", "2030-01-01T10:00:00+0200"}) {
    auto json = std::string(R"({"title":"t","options":["a","b"],"opens_at":")") + t + "\"}";
    EXPECT_EQ(code_of(parse_new_poll(body(json))), "invalid_time") << t;
  }
  EXPECT_EQ(code_of(parse_new_poll(body(R"({"title":"t","options":["a","b"],"results_visibility":1})"))),
            "invalid_results_visibility");
}

TEST(BallotRules, SelectionIsSortedDistinctUuids) {
  auto r = parse_selection(body(R"({"option_ids":["01937b2e-5f3a-7c41-9d2e-6a8b4c1f0e27",
                                                  "01937b2e-5f3a-7c41-9d2e-6a8b4c1f0e26"]})"));
  ASSERT_TRUE((std::holds_alternative<std::vector<std::string>>(r)));
  EXPECT_EQ(std::get<std::vector<std::string>>(r).front(), "01937b2e-5f3a-7c41-9d2e-6a8b4c1f0e26");
  EXPECT_TRUE(std::holds_alternative<RuleError>(parse_selection(body(R"({"option_ids":[]})"))));
  EXPECT_TRUE(std::holds_alternative<RuleError>(parse_selection(body(R"({"option_ids":["x"]})"))));
  EXPECT_TRUE(std::holds_alternative<RuleError>(parse_selection(
      body(R"({"option_ids":["01937b2e-5f3a-7c41-9d2e-6a8b4c1f0e27","01937b2e-5f3a-7c41-9d2e-6a8b4c1f0e27"]})"))));
}

TEST(ResultRules, Visibility) {
  EXPECT_TRUE(results_visible(Visibility::always, false, false, false));
  EXPECT_FALSE(results_visible(Visibility::after_vote, false, false, false));
  EXPECT_TRUE(results_visible(Visibility::after_vote, true, false, false));
  EXPECT_FALSE(results_visible(Visibility::after_close, true, false, false));
  EXPECT_TRUE(results_visible(Visibility::after_close, false, true, false));
  EXPECT_TRUE(results_visible(Visibility::after_close, false, false, true));
}
