#include "voting/results_body.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <gtest/gtest.h>

using namespace nimbus::voting;
namespace json = boost::json;

namespace {

// The body as a JSON library writes it: what ResultsBody must equal, byte for byte.
std::string reference(std::string_view poll_id, const json::array& options,
                      const std::map<std::string, std::int64_t>& votes, std::int64_t total, bool closed) {
  json::array out;
  for (const auto& o : options) {
    const auto& option = o.as_object();
    const std::string id(option.at("id").as_string());
    auto n = votes.find(id);
    out.push_back(json::object{{"id", id}, {"text", option.at("text")}, {"votes", n == votes.end() ? 0 : n->second}});
  }
  return json::serialize(
      json::object{{"poll_id", poll_id}, {"total_votes", total}, {"options", std::move(out)}, {"closed", closed}});
}

}  // namespace

TEST(ResultsBody, IsTheJsonObjectByteForByte) {
  const auto options = json::parse(R"([
    {"id":"0192f0a0-0000-7000-8000-000000000001","text":"Pizza \"al taglio\" \\ ok"},
    {"id":"0192f0a0-0000-7000-8000-000000000002","text":"김치찌개 🍲"},
    {"id":"0192f0a0-0000-7000-8000-000000000003","text":"tab\tnew\nline \u0001 </script>"}
  ])")
                           .as_array();
  const ResultsBody body(options);
  const std::map<std::string, std::int64_t> votes{{"0192f0a0-0000-7000-8000-000000000001", 41},
                                                  {"0192f0a0-0000-7000-8000-000000000003", 9'000'000'000}};
  for (bool closed : {false, true}) {
    const auto text = body.render("0192f0a0-0000-7000-8000-0000000000ff", votes, 9'000'000'041, closed);
    EXPECT_EQ(text, reference("0192f0a0-0000-7000-8000-0000000000ff", options, votes, 9'000'000'041, closed));
    // and it parses back to what was counted
    const auto parsed = json::parse(text).as_object();
    EXPECT_EQ(parsed.at("options").as_array().at(1).as_object().at("votes").as_int64(), 0);
    EXPECT_EQ(parsed.at("options").as_array().at(1).as_object().at("text").as_string(), "김치찌개 🍲");
    EXPECT_EQ(parsed.at("closed").as_bool(), closed);
  }
}

TEST(ResultsBody, CountsOfUnknownOptionsAreNotShown) {
  // A count under an id the poll does not have (a stray tally field) is not an option.
  const auto options = json::parse(R"([{"id":"a","text":"A"},{"id":"b","text":"B"}])").as_array();
  const auto text = ResultsBody(options).render("p", {{"a", 2}, {"zzz", 5}}, 2, false);
  EXPECT_EQ(text, R"({"poll_id":"p","total_votes":2,"options":[{"id":"a","text":"A","votes":2},)"
                  R"({"id":"b","text":"B","votes":0}],"closed":false})");
}

TEST(ResultsBody, APollWithoutOptionsIsAnEmptyList) {
  EXPECT_EQ(ResultsBody(json::array{}).render("p", {}, 0, true),
            R"({"poll_id":"p","total_votes":0,"options":[],"closed":true})");
}
