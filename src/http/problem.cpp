#include "http/problem.hpp"

#include <algorithm>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

namespace nimbus::http {

Response problem(unsigned status, std::string_view code, std::string_view title, std::string_view detail) {
  boost::json::object body;
  body["type"] = "urn:nimbus:problem:" + std::string(code);
  body["title"] = title;
  body["status"] = status;
  body["detail"] = detail.empty() ? title : detail;
  body["code"] = code;
  Response r;
  r.status = status;
  r.headers.set("Content-Type", "application/problem+json");
  r.body = boost::json::serialize(body);
  return r;
}

Response not_found(std::string_view detail) {
  return problem(404, "not_found", "Not found", detail);
}

Response method_not_allowed(std::string_view allow) {
  auto r = problem(405, "method_not_allowed", "Method not allowed",
                   "This path does not accept that method; see the Allow header.");
  r.headers.set("Allow", std::string(allow));
  return r;
}

Response bad_request(std::string_view code, std::string_view detail) {
  return problem(400, code, "Bad request", detail);
}

Response payload_too_large(std::size_t limit) {
  return problem(413, "payload_too_large", "Payload too large",
                 "The request body exceeds the limit of " + std::to_string(limit) + " bytes for this route.");
}

Response internal_error() {
  return problem(500, "internal_error", "Internal server error",
                 "The server failed to handle the request; quote the request id when reporting it.");
}

Response service_unavailable(std::string_view code, std::string_view detail, int retry_after_seconds) {
  auto r = problem(503, code, "Service unavailable", detail);
  r.headers.set("Retry-After", std::to_string(retry_after_seconds));
  return r;
}

Response rate_limited(std::string_view detail, std::chrono::seconds retry_after) {
  auto r = problem(429, "rate_limited", "Too many requests", detail);
  r.headers.set("Retry-After", std::to_string(std::max<std::int64_t>(1, retry_after.count())));
  return r;
}

Response json(unsigned status, std::string body) {
  Response r;
  r.status = status;
  r.headers.set("Content-Type", "application/json");
  r.body = std::move(body);
  return r;
}

}  // namespace nimbus::http
