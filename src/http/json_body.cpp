#include "http/json_body.hpp"

#include <boost/json/parse.hpp>

#include "http/problem.hpp"

namespace nimbus::http {

namespace {

// A NUL in any string or key: PostgreSQL's text cannot hold it, and a C string would cut
// the value short. No field of the API has a use for one.
bool holds_nul(const boost::json::value& v, int depth = 0) {
  if (depth > 64) return true;
  switch (v.kind()) {
    case boost::json::kind::string:
      return v.get_string().find('\0') != boost::json::string::npos;
    case boost::json::kind::array:
      for (const auto& e : v.get_array()) {
        if (holds_nul(e, depth + 1)) return true;
      }
      return false;
    case boost::json::kind::object:
      for (const auto& [key, e] : v.get_object()) {
        if (key.find('\0') != boost::json::string_view::npos || holds_nul(e, depth + 1)) return true;
      }
      return false;
    default:
      return false;
  }
}

}  // namespace

std::variant<boost::json::object, Response> json_object_body(const Request& req) {
  auto type = req.header("Content-Type").value_or("");
  auto semi = type.find(';');
  auto base = type.substr(0, semi);
  while (!base.empty() && base.back() == ' ') base.remove_suffix(1);
  if (!iequals(base, "application/json")) {
    return problem(415, "unsupported_media_type", "Unsupported media type", "Send the body as application/json.");
  }
  boost::system::error_code ec;
  boost::json::parse_options options;
  options.max_depth = 16;
  auto value = boost::json::parse(req.body, ec, {}, options);
  if (ec) return problem(400, "malformed_json", "Malformed JSON", "The body is not valid JSON.");
  if (!value.is_object()) return problem(422, "invalid_body", "Invalid body", "The body must be a JSON object.");
  if (holds_nul(value)) {
    return problem(422, "invalid_body", "Invalid body", "Strings in the body must not contain NUL (\\u0000).");
  }
  return std::move(value.as_object());
}

std::optional<std::string> string_field(const boost::json::object& body, std::string_view name,
                                        std::size_t max_length) {
  const auto* v = body.if_contains(name);
  if (!v || !v->is_string() || v->as_string().size() > max_length) return std::nullopt;
  return std::string(v->as_string());
}

Response invalid_field(std::string_view code, std::string_view detail) {
  return problem(422, code, "Invalid request", detail);
}

}  // namespace nimbus::http
