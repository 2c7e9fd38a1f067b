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

#include "http/readiness.hpp"
#include "http/server.hpp"

namespace nimbus::runtime {

struct LifecycleConfig {
  unsigned threads = 2;
  std::chrono::milliseconds drain_delay{2'000};
  std::chrono::milliseconds shutdown_timeout{15'000};

  // NIMBUS_THREADS, NIMBUS_DRAIN_DELAY, NIMBUS_SHUTDOWN_TIMEOUT.
  static LifecycleConfig from_env();
};

using StopStep = std::function<boost::asio::awaitable<void>()>;

// Runs `ioc` on config.threads threads until the shutdown sequence completes; returns
// the process exit code. The server must already be listening.
int run(boost::asio::io_context& ioc, http::Server& server, http::Readiness& readiness, const LifecycleConfig& config,
        StopStep stop = {});

}  // namespace nimbus::runtime
