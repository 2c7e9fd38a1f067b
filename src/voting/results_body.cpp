#include "voting/results_body.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <charconv>

namespace nimbus::voting {
namespace json = boost::json;

namespace {

void append_number(std::string& out, std::int64_t n) {
  char digits[24];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, n);
  out.append(digits, end);
}

}  // namespace

ResultsBody::ResultsBody(const json::array& options) {
  options_.reserve(options.size());
  for (const auto& o : options) {
    const auto& option = o.as_object();
    const auto& id = option.at("id").as_string();
    Option rendered{std::string(id), R"({"id":)"};
    rendered.head += json::serialize(id);
    rendered.head += R"(,"text":)";
    rendered.head += json::serialize(option.at("text"));
    rendered.head += R"(,"votes":)";
    size_ += rendered.head.size() + 2;  // and "}," around the count
    options_.push_back(std::move(rendered));
  }
}

std::string ResultsBody::render(std::string_view poll_id, const std::map<std::string, std::int64_t>& votes,
                                std::int64_t total_votes, bool closed) const {
  std::string out;
  out.reserve(size_ + poll_id.size() + options_.size() * 8 + 80);
  out += R"({"poll_id":)";
  out += json::serialize(json::string_view(poll_id.data(), poll_id.size()));
  out += R"(,"total_votes":)";
  append_number(out, total_votes);
  out += R"(,"options":[)";
  for (std::size_t i = 0; i < options_.size(); ++i) {
    if (i > 0) out += ',';
    out += options_[i].head;
    auto n = votes.find(options_[i].id);
    append_number(out, n == votes.end() ? 0 : n->second);
    out += '}';
  }
  out += closed ? R"(],"closed":true})" : R"(],"closed":false})";
  return out;
}

}  // namespace nimbus::voting
