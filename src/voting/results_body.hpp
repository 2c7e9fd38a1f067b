// The body of GET /v1/polls/{id}/results (and of every live-results event), written
// straight into its bytes. A poll's options never change after it is created, so their
// JSON — ids and texts, escaped — is rendered once when the poll's facts are read; each
// read only writes the counts in. Identical to serializing the JSON object
// {"poll_id", "total_votes", "options": [{"id", "text", "votes"}], "closed"}.
#pragma once

#include <boost/json/array.hpp>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace nimbus::voting {

class ResultsBody {
 public:
  ResultsBody() = default;
  // `options`: [{"id": string, "text": string}] in the poll's order.
  explicit ResultsBody(const boost::json::array& options);

  std::string render(std::string_view poll_id, const std::map<std::string, std::int64_t>& votes,
                     std::int64_t total_votes, bool closed) const;

 private:
  struct Option {
    std::string id;
    std::string head;  // {"id":"…","text":"…","votes":
  };
  std::vector<Option> options_;
  std::size_t size_ = 0;  // the options' rendered bytes, without the counts
};

}  // namespace nimbus::voting
