#include "http/paging.hpp"

#include "core/base64url.hpp"
#include "core/ids.hpp"
#include "http/json_body.hpp"

namespace nimbus::http {

std::variant<PageRequest, Response> page_request(const Request& req) {
  PageRequest page;
  if (auto l = req.query_param("limit")) {
    int limit = 0;
    try {
      std::size_t used = 0;
      limit = std::stoi(*l, &used);
      if (used != l->size()) limit = 0;
    } catch (const std::exception&) {
      limit = 0;
    }
    if (limit < 1 || limit > 100) return invalid_field("invalid_limit", "limit is an integer from 1 to 100.");
    page.limit = limit;
  }
  if (auto c = req.query_param("cursor")) {
    auto decoded = base64url_decode(*c);
    if (!decoded || !ids::is_uuid(*decoded)) return invalid_field("invalid_cursor", "cursor is not valid.");
    page.after = *decoded;
  }
  return page;
}

std::string page_cursor(const std::string& last_id) {
  return base64url_encode(last_id);
}

}  // namespace nimbus::http
