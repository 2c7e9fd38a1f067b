// Process lifecycle shared by nimbus-api and nimbus-worker (DESIGN.md invariant 4).
//
// SIGTERM/SIGINT → /readyz answers 503 → keep serving for `drain_delay` (load balancers
// notice) → stop accepting → finish in-flight requests within `shutdown_timeout` →
// run the binary's own stop step (close pools, return jobs) → exit 0.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <vector>

#include "http/server.hpp"
#include "ops/readiness.hpp"

namespace nimbus::runtime {

struct LifecycleConfig {
  unsigned threads = 2;
  std::chrono::milliseconds drain_delay{2'000};
  std::chrono::milliseconds shutdown_timeout{15'000};
  // The event loop not running for this long aborts the process (0: no watchdog).
  std::chrono::milliseconds watchdog_timeout{5'000};

  // NIMBUS_THREADS, NIMBUS_DRAIN_DELAY, NIMBUS_SHUTDOWN_TIMEOUT, NIMBUS_WATCHDOG_TIMEOUT.
  static LifecycleConfig from_env();
};

using StopStep = std::function<boost::asio::awaitable<void>()>;

// Runs `ioc` on config.threads threads, under the event-loop watchdog, until the
// shutdown sequence completes; returns the process exit code. The servers must already
// be listening; the first is the one whose in-flight requests a stall report names,
// and all are drained together.
int run(boost::asio::io_context& ioc, std::vector<http::Server*> servers, ops::Readiness& readiness,
        const LifecycleConfig& config, StopStep stop = {});
inline int run(boost::asio::io_context& ioc, http::Server& server, ops::Readiness& readiness,
               const LifecycleConfig& config, StopStep stop = {}) {
  return run(ioc, std::vector<http::Server*>{&server}, readiness, config, std::move(stop));
}

}  // namespace nimbus::runtime
