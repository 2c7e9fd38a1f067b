// nimbus-api: the stateless HTTP API. The only place that builds concrete clients and
// wires them into handlers; everything else receives what it needs.
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdio>

#include "api/debug_routes.hpp"
#include "core/env.hpp"
#include "core/log.hpp"
#include "http/metrics.hpp"
#include "http/ops.hpp"
#include "http/readiness.hpp"
#include "http/router.hpp"
#include "http/server.hpp"
#include "runtime/lifecycle.hpp"

namespace {

struct ApiConfig {
  nimbus::http::ServerConfig http;
  nimbus::runtime::LifecycleConfig lifecycle;
  nimbus::log::Level log_level = nimbus::log::Level::info;
  bool debug_routes = false;

  static ApiConfig from_env() {
    ApiConfig c;
    c.http = nimbus::http::ServerConfig::from_env();
    c.lifecycle = nimbus::runtime::LifecycleConfig::from_env();
    auto level = nimbus::env::string("NIMBUS_LOG_LEVEL", "info");
    try {
      c.log_level = nimbus::log::parse_level(level);
    } catch (const std::invalid_argument&) {
      throw nimbus::env::ConfigError("NIMBUS_LOG_LEVEL=\"" + level + "\" is invalid: expected debug|info|warn|error");
    }
    c.debug_routes = nimbus::env::boolean("NIMBUS_DEBUG_ROUTES", false);
    return c;
  }
};

}  // namespace

int main() {
  namespace http = nimbus::http;
  namespace log = nimbus::log;
  const auto started = std::chrono::steady_clock::now();
  ApiConfig config;
  try {
    config = ApiConfig::from_env();
  } catch (const nimbus::env::ConfigError& e) {
    std::fprintf(stderr, "nimbus-api: configuration error: %s\n", e.what());
    return 2;
  }
  log::init({.service = "nimbus-api", .instance = config.http.instance, .level = config.log_level});

  int code = 1;
  try {
    boost::asio::io_context ioc(static_cast<int>(config.lifecycle.threads));
    http::Router router;
    http::Metrics metrics;
    http::Readiness readiness;
    http::add_ops_routes(router, readiness, metrics);
    if (config.debug_routes) nimbus::api::add_debug_routes(router);

    http::Server server(ioc, config.http, router, metrics);
    server.listen();
    const auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    log::info("listening", {{"port", server.port()}, {"threads", config.lifecycle.threads}, {"startup_ms", ms}});
    code = nimbus::runtime::run(ioc, server, readiness, config.lifecycle);
  } catch (const std::exception& e) {
    log::error("fatal", {{"error", e.what()}});
    code = 1;
  }
  log::shutdown();
  return code;
}
