// What every Nimbus binary does around its own wiring: read the common config, start
// logging, map a bad config to exit code 2 and a crash to 1, flush logs on the way out.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <functional>
#include <string>

#include "core/log.hpp"
#include "http/server.hpp"
#include "runtime/lifecycle.hpp"

namespace nimbus::runtime {

struct ServiceConfig {
  http::ServerConfig http;
  LifecycleConfig lifecycle;
  log::Level log_level = log::Level::info;

  static ServiceConfig from_env();  // throws env::ConfigError
};

// `body` builds the service and runs it; it may throw env::ConfigError for its own
// variables. Returns the process exit code.
int service_main(const std::string& name, const std::function<int(const ServiceConfig&)>& body);

// Runs `attempt` until it succeeds, with jittered exponential backoff (250 ms → 5 s)
// between failures, logging each; used for start-up work that needs a dependency
// (migrations, topology) without making start-up wait for it.
boost::asio::awaitable<void> retry_until_done(std::string what, std::function<boost::asio::awaitable<void>()> attempt);

}  // namespace nimbus::runtime
