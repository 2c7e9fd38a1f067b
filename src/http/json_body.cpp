#include "http/json_body.hpp"

#include <boost/json/parse.hpp>

#include "http/problem.hpp"

namespace nimbus::http {

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
