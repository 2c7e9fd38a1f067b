// Errors as RFC 9457 problem details, each with a stable machine-readable `code`.
//
// Clients branch on `code`; `title` is fixed per code; `detail` may vary but never
// carries internals (no exception text, no SQL, no stack).
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "http/message.hpp"

namespace nimbus::http {

Response problem(unsigned status, std::string_view code, std::string_view title, std::string_view detail = {});

// The common ones, named so that every module answers them the same way.
Response not_found(std::string_view detail = "No resource at this path.");
Response method_not_allowed(std::string_view allow);
Response bad_request(std::string_view code, std::string_view detail);
Response payload_too_large(std::size_t limit);
Response internal_error();
Response service_unavailable(std::string_view code, std::string_view detail, int retry_after_seconds = 1);
// 429 `rate_limited`, with Retry-After: when the current window ends (at least 1 s).
Response rate_limited(std::string_view detail, std::chrono::seconds retry_after);

// A JSON body with the right content type.
Response json(unsigned status, std::string body);

}  // namespace nimbus::http
