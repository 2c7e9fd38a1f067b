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
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <functional>
#include <optional>
#include <string>
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

// Reads a binary-mode CloudEvent from the request: ce-specversion 1.0, ce-id,
// ce-source and ce-type present, a JSON body. Pure: no I/O.
std::variant<CloudEvent, EventRefused> parse_binary_event(const http::Request& request);

// The delivery the queue consumer would have received for `event`: its body, its id as
// the message id (what retries and logs carry).
amqp::Delivery to_delivery(const CloudEvent& event);

// What the event's sender is told for a job's outcome.
http::Response answer(amqp::Outcome outcome, const CloudEvent& event);

// POST / runs `job` for each event on `pool` (it blocks: ImageJobs::handle waits for
// its I/O on the event loop, which must keep turning meanwhile). `pool` must outlive
// the router's server.
using Job = std::function<amqp::Outcome(const amqp::Delivery&)>;
void add_function_routes(http::Router& router, Job job, boost::asio::thread_pool& pool);

}  // namespace nimbus::worker
