// Listing parameters (`?limit=&cursor=`) on arbitrary query strings, through the
// server's own query parsing. Checks: an accepted page has 1 <= limit <= 100 and, after
// a cursor, a UUID; a refusal is a 422; a cursor the server makes reads back as the id
// it was made from.
#include <cstdint>
#include <string>
#include <variant>

#include "core/ids.hpp"
#include "fuzz_check.hpp"
#include "http/paging.hpp"

using namespace nimbus::http;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Request req;
  req.query.assign(reinterpret_cast<const char*>(data), size);
  req.target = "/v1/me/images?" + req.query;
  req.path = "/v1/me/images";
  auto page = page_request(req);
  if (auto* refused = std::get_if<Response>(&page)) {
    FUZZ_CHECK(refused->status == 422);
    return 0;
  }
  const auto& p = std::get<PageRequest>(page);
  FUZZ_CHECK(p.limit >= 1 && p.limit <= 100);
  if (p.after) {
    FUZZ_CHECK(nimbus::ids::is_uuid(*p.after));
    Request next;
    next.query = "cursor=" + page_cursor(*p.after);
    auto again = page_request(next);
    FUZZ_CHECK(std::holds_alternative<PageRequest>(again));
    FUZZ_CHECK(std::get<PageRequest>(again).after == p.after);
  }
  return 0;
}
