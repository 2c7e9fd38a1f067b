// Keyset pagination parameters, read the same way by every listing:
// `?limit=1..100` (default 20) and `?cursor=` (opaque: base64url of the last item's id).
#pragma once

#include <optional>
#include <string>
#include <variant>

#include "http/message.hpp"

namespace nimbus::http {

struct PageRequest {
  int limit = 20;
  std::optional<std::string> after;  // id of the last item of the previous page
};

// The page asked for, or 422 `invalid_limit` / `invalid_cursor`.
std::variant<PageRequest, Response> page_request(const Request& req);
std::string page_cursor(const std::string& last_id);

}  // namespace nimbus::http
