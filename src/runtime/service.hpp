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

}  // namespace nimbus::runtime
