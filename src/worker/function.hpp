// Function mode of nimbus-worker (NIMBUS_WORKER_MODE=function): the image.process job
// as a function that receives one CloudEvent over HTTP (binary content mode, CloudEvents
// 1.0 HTTP binding) and answers once the job is over — the serverless alternative to
// the queue consumer, run by Knative Serving and fed from RabbitMQ by a Knative
// RabbitmqSource (deploy/k8s/serverless/).
//
// The event's data is the queue message's body, `{"image_id": "..."}`, and the job is
// the queue consumer's own (ImageJobs::handle), so a function invocation is as
// idempotent as a delivery: a duplicate event for a ready image is answered without
// work, a crash mid-invocation leaves the attempt counted and the redelivered event
// finishes the image. Outcomes map onto the event source's delivery rules:
//   ack          → 200: the variants are stored (or nothing was left to do, or the
//                  job's own delayed retry was published, exactly as in queue mode);
//   dead_letter  → 422 `image_failed`: the image is failed for good, with its reason;
//                  Knative does not retry a 422, it sends the event to the dead-letter sink;
//   requeue      → 503 `retry_later` with Retry-After: the source redelivers.
// A request that is not such an event is 400 (`malformed_event`); a structured-mode
// event (application/cloudevents+json) is 415.
//
// Callers: whoever can reach the port could otherwise have any image decoded, retried
// or failed. Every invocation must carry `Authorization: Bearer <NIMBUS_FUNCTION_TOKEN>`
// (a shared secret, from a Secret; at least 32 characters, or the worker does not start);
// anything else is 401 `missing_token` / `invalid_token` with WWW-Authenticate, before
// the event is read. The probes and /metrics stay open (kubelet, Prometheus). In a
// cluster, a small proxy adds the header for the event source, which cannot
// (deploy/k8s/serverless/sender/); Knative Eventing's OIDC sink authentication is the
// cluster-native alternative (docs/kubernetes.md).
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "http/router.hpp"
#include "queue/amqp/consumer.hpp"

namespace nimbus::worker {

struct CloudEvent {
  std::string id, source, type, subject;
  std::string data;  // the body
};

struct EventRefused {
  unsigned status = 400;
  std::string code;
  std::string detail;
};

// NIMBUS_FUNCTION_TOKEN: required in function mode, at least kMinTokenLength characters
// (a guessable token would make the check decorative).
struct FunctionConfig {
  static constexpr std::size_t kMinTokenLength = 32;
  std::string token;
  static FunctionConfig from_env();
};

// The shared token, kept only as its SHA-256: a presented token is hashed and the two
// digests compared in constant time, so neither the comparison's time nor an early
// exit on length tells a caller how much of a guess was right.
class CallerCheck {
 public:
  explicit CallerCheck(std::string_view token);
  // nullopt: the caller sent the token. Otherwise the 401 to answer (missing_token: no
  // Authorization header with the Bearer scheme and a credential; invalid_token: a
  // credential that is not the token).
  std::optional<EventRefused> refusal(const http::Request& request) const;

 private:
  std::string digest_;
};

// The answer to a refused request: problem+json, with WWW-Authenticate on a 401.
http::Response refused_response(const EventRefused& refused);

// Reads a binary-mode CloudEvent from the request: ce-specversion 1.0, ce-id,
// ce-source and ce-type present, a JSON body. Pure: no I/O.
std::variant<CloudEvent, EventRefused> parse_binary_event(const http::Request& request);

// The delivery the queue consumer would have received for `event`: its body, its id as
// the message id (what retries and logs carry).
amqp::Delivery to_delivery(const CloudEvent& event);

// What the event's sender is told for a job's outcome.
http::Response answer(amqp::Outcome outcome, const CloudEvent& event);

// POST / runs `job` for each event from a caller that passes `callers`, on `pool` (it
// blocks: ImageJobs::handle waits for its I/O on the event loop, which must keep turning
// meanwhile). `pool` must outlive the router's server.
using Job = std::function<amqp::Outcome(const amqp::Delivery&)>;
void add_function_routes(http::Router& router, CallerCheck callers, Job job, boost::asio::thread_pool& pool);

}  // namespace nimbus::worker
