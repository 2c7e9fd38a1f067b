// Reading JSON request bodies the same way everywhere: content type, syntax, object
// shape and string fields with length limits, each failure a problem with a stable code.
#pragma once

#include <boost/json/object.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "http/message.hpp"

namespace nimbus::http {

// The body as a JSON object, or the problem to answer: 415 `unsupported_media_type`,
// 400 `malformed_json`, 422 `invalid_body` (not an object).
std::variant<boost::json::object, Response> json_object_body(const Request& req);

// A string field of at most `max_length` bytes; nullopt when absent or not a string.
std::optional<std::string> string_field(const boost::json::object& body, std::string_view name, std::size_t max_length);

// 422 with `code` naming what was wrong with which field.
Response invalid_field(std::string_view code, std::string_view detail);

}  // namespace nimbus::http
