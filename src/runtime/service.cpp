#include "runtime/service.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdio>
#include <random>

#include "core/env.hpp"

namespace nimbus::runtime {

namespace asio = boost::asio;

ServiceConfig ServiceConfig::from_env() {
  ServiceConfig c;
  c.http = http::ServerConfig::from_env();
  c.lifecycle = LifecycleConfig::from_env();
  auto level = env::string("NIMBUS_LOG_LEVEL", "info");
  try {
    c.log_level = log::parse_level(level);
  } catch (const std::invalid_argument&) {
    throw env::ConfigError("NIMBUS_LOG_LEVEL=\"" + level + "\" is invalid: expected debug|info|warn|error");
  }
  return c;
}

int service_main(const std::string& name, const std::function<int(const ServiceConfig&)>& body) {
  ServiceConfig config;
  try {
    config = ServiceConfig::from_env();
  } catch (const env::ConfigError& e) {
    std::fprintf(stderr, "%s: configuration error: %s\n", name.c_str(), e.what());
    return 2;
  }
  log::init({.service = name, .instance = config.http.instance, .level = config.log_level});
  int code = 1;
  try {
    code = body(config);
  } catch (const env::ConfigError& e) {
    std::fprintf(stderr, "%s: configuration error: %s\n", name.c_str(), e.what());
    code = 2;
  } catch (const std::exception& e) {
    log::error("fatal", {{"error", e.what()}});
    code = 1;
  }
  log::shutdown();
  return code;
}

}  // namespace nimbus::runtime
