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

asio::awaitable<void> retry_until_done(std::string what, std::function<asio::awaitable<void>()> attempt) {
  thread_local std::minstd_rand rng{std::random_device{}()};
  std::chrono::milliseconds backoff{250};
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    try {
      co_await attempt();
      co_return;
    } catch (const std::exception& e) {
      log::warn("start-up step failed; retrying", {{"step", what}, {"error", e.what()}, {"retry_ms", backoff.count()}});
    }
    timer.expires_after(backoff / 2 +
                        std::chrono::milliseconds(std::uniform_int_distribution<long>(0, backoff.count() / 2)(rng)));
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;  // shutting down
    backoff = std::min(backoff * 2, std::chrono::milliseconds(5'000));
  }
}

}  // namespace nimbus::runtime
