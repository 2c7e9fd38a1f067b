// nimbus-worker: background jobs (outbox relay, thumbnails, email). Only main builds
// concrete clients; it serves /healthz, /readyz and /metrics on its own port.
#include <boost/asio/io_context.hpp>

#include "http/ops.hpp"
#include "runtime/service.hpp"

namespace {

using namespace nimbus;

int run_worker(const runtime::ServiceConfig& config) {
  const auto started = std::chrono::steady_clock::now();
  boost::asio::io_context ioc(static_cast<int>(config.lifecycle.threads));
  http::Metrics metrics;
  http::Readiness readiness;
  http::Router router;
  http::add_ops_routes(router, readiness, metrics);

  http::Server server(ioc, config.http, router, metrics);
  server.listen();
  const auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  log::info("listening", {{"port", server.port()}, {"startup_ms", ms}});
  return runtime::run(ioc, server, readiness, config.lifecycle);
}

}  // namespace

int main() { return runtime::service_main("nimbus-worker", run_worker); }
