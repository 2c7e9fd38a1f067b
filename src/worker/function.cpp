#include "worker/function.hpp"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cctype>
#include <openssl/crypto.h>

#include "core/env.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "core/oneshot.hpp"
#include "core/sha256.hpp"
#include "http/problem.hpp"

namespace nimbus::worker {

namespace asio = boost::asio;

namespace {

// An event's body is one small job; anything bigger is not one.
constexpr std::size_t kBodyLimit = std::size_t{64} * 1024;
// Longer than any job can take (five storage round trips and one decode); the event
// source's own timeout (Knative's timeoutSeconds) is the one that matters.
constexpr auto kJobDeadline = std::chrono::minutes(15);

std::string_view header_or_empty(const http::Request& request, std::string_view name) {
  auto value = request.header(name);
  return value ? *value : std::string_view{};
}

// The media type without parameters, lower case.
std::string media_type(std::string_view content_type) {
  auto end = content_type.find(';');
  std::string out(content_type.substr(0, end));
  while (!out.empty() && (out.back() == ' ' || out.back() == '\t')) out.pop_back();
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

asio::awaitable<http::Response> respond(http::Response response) {
  co_return response;
}

// The job runs on `pool` (it blocks); this coroutine waits for its outcome without
// holding the event loop.
asio::awaitable<http::Response> run_job(CloudEvent event, Job job, asio::thread_pool* pool) {
  auto done = std::make_shared<OneShot<amqp::Outcome>>(co_await asio::this_coro::executor);
  asio::post(*pool, [job = std::move(job), delivery = to_delivery(event), done] {
    amqp::Outcome outcome = amqp::Outcome::requeue;
    try {
      outcome = job(delivery);
    } catch (const std::exception& e) {
      log::error("image function failed", {{"message_id", delivery.message.message_id}, {"error", e.what()}});
    }
    done->set(outcome);
  });
  auto outcome = co_await done->wait_until(std::chrono::steady_clock::now() + kJobDeadline);
  co_return answer(outcome.value_or(amqp::Outcome::requeue), event);
}

// Not a coroutine: the request is read here, and only values reach the coroutines.
asio::awaitable<http::Response> invoke(const http::Request& request, const CallerCheck& callers, const Job& job,
                                       asio::thread_pool& pool) {
  if (auto refused = callers.refusal(request)) {
    log::warn("caller refused", {{"code", refused->code}});
    return respond(refused_response(*refused));
  }
  auto parsed = parse_binary_event(request);
  if (const auto* refused = std::get_if<EventRefused>(&parsed)) {
    log::warn("event refused", {{"code", refused->code}, {"detail", refused->detail}});
    return respond(refused_response(*refused));
  }
  return run_job(std::get<CloudEvent>(std::move(parsed)), job, &pool);
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

}  // namespace

FunctionConfig FunctionConfig::from_env() {
  FunctionConfig c;
  c.token = env::string("NIMBUS_FUNCTION_TOKEN", "");
  if (c.token.size() < kMinTokenLength) {
    throw env::ConfigError("NIMBUS_FUNCTION_TOKEN must be set to a secret of at least " +
                           std::to_string(kMinTokenLength) +
                           " characters in function mode (e.g. openssl rand -base64 32): without it, anyone who "
                           "reaches the port could run image jobs");
  }
  return c;
}

CallerCheck::CallerCheck(std::string_view token) : digest_(Sha256::hex_of(token)) {}

std::optional<EventRefused> CallerCheck::refusal(const http::Request& request) const {
  // RFC 6750 section 2.1: the scheme is case-insensitive, one space, then the token.
  constexpr std::string_view kScheme = "Bearer ";
  const auto header = request.header("Authorization");
  if (!header || header->size() <= kScheme.size() || !iequals(header->substr(0, kScheme.size()), kScheme)) {
    return EventRefused{401, "missing_token", "Send Authorization: Bearer <the function's token>."};
  }
  const auto presented = Sha256::hex_of(header->substr(kScheme.size()));
  if (presented.size() != digest_.size() || CRYPTO_memcmp(presented.data(), digest_.data(), digest_.size()) != 0) {
    return EventRefused{401, "invalid_token", "The token is not the function's."};
  }
  return std::nullopt;
}

http::Response refused_response(const EventRefused& refused) {
  const char* title = refused.status == 401   ? "Unauthorized"
                      : refused.status == 415 ? "Unsupported media type"
                                              : "Bad request";
  auto response = http::problem(refused.status, refused.code, title, refused.detail);
  if (refused.status == 401) {
    response.headers.set("WWW-Authenticate", refused.code == "invalid_token"
                                                 ? R"(Bearer realm="nimbus-function", error="invalid_token")"
                                                 : R"(Bearer realm="nimbus-function")");
  }
  return response;
}

std::variant<CloudEvent, EventRefused> parse_binary_event(const http::Request& request) {
  const auto content_type = media_type(header_or_empty(request, "Content-Type"));
  if (content_type == "application/cloudevents+json" || content_type == "application/cloudevents-batch+json") {
    return EventRefused{415, "structured_mode_unsupported",
                        "Send the event in binary content mode (ce-* headers, the job as the body)."};
  }
  const auto specversion = header_or_empty(request, "ce-specversion");
  if (specversion.empty()) {
    return EventRefused{400, "malformed_event", "Not a CloudEvent: the ce-specversion header is missing."};
  }
  if (specversion != "1.0") {
    return EventRefused{400, "malformed_event", "Only CloudEvents 1.0 is understood."};
  }
  CloudEvent event;
  event.id = std::string(header_or_empty(request, "ce-id"));
  event.source = std::string(header_or_empty(request, "ce-source"));
  event.type = std::string(header_or_empty(request, "ce-type"));
  event.subject = std::string(header_or_empty(request, "ce-subject"));
  if (event.id.empty() || event.source.empty() || event.type.empty()) {
    return EventRefused{400, "malformed_event", "A CloudEvent needs ce-id, ce-source and ce-type."};
  }
  if (!content_type.empty() && content_type != "application/json") {
    return EventRefused{415, "unsupported_media_type", "The event's data must be application/json."};
  }
  boost::system::error_code ec;
  auto body = boost::json::parse(request.body, ec);
  const auto* image_id = !ec && body.is_object() ? body.as_object().if_contains("image_id") : nullptr;
  if (image_id == nullptr || !image_id->is_string() || !ids::is_uuid(std::string(image_id->as_string()))) {
    return EventRefused{400, "malformed_event", "The event's data must be a job: {\"image_id\": \"<uuid>\"}."};
  }
  event.data = request.body;
  return event;
}

amqp::Delivery to_delivery(const CloudEvent& event) {
  amqp::Delivery delivery;
  delivery.message.routing_key = std::string(amqp::topology::kImageProcess);
  delivery.message.body = event.data;
  delivery.message.message_id = event.id;
  return delivery;
}

http::Response answer(amqp::Outcome outcome, const CloudEvent& event) {
  switch (outcome) {
    case amqp::Outcome::ack: {
      boost::json::object body;
      body["status"] = "done";
      body["event_id"] = event.id;
      return http::json(200, boost::json::serialize(body));
    }
    case amqp::Outcome::dead_letter:
      return http::problem(422, "image_failed", "Image failed",
                           "The image cannot be processed; it is marked failed with the reason.");
    case amqp::Outcome::requeue:
      break;
  }
  return http::service_unavailable("retry_later", "The job could not run now; deliver the event again.", 1);
}

void add_function_routes(http::Router& router, CallerCheck callers, Job job, asio::thread_pool& pool) {
  router.add(
      http::Method::post, "/",
      [callers = std::move(callers), job = std::move(job), &pool](http::Request& request) {
        return invoke(request, callers, job, pool);
      },
      http::RouteOptions{.body_limit = kBodyLimit});
}

}  // namespace nimbus::worker
