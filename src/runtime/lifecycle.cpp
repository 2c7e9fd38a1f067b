#include "runtime/lifecycle.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <csignal>
#include <optional>
#include <thread>
#include <vector>

#include "core/env.hpp"
#include "core/log.hpp"
#include "runtime/watchdog.hpp"

namespace nimbus::runtime {

namespace asio = boost::asio;

LifecycleConfig LifecycleConfig::from_env() {
  LifecycleConfig c;
  const auto hw = std::max(1U, std::thread::hardware_concurrency());
  c.threads = static_cast<unsigned>(env::integer("NIMBUS_THREADS", hw, 1, 256));
  c.drain_delay = env::duration("NIMBUS_DRAIN_DELAY", c.drain_delay);
  c.shutdown_timeout = env::duration("NIMBUS_SHUTDOWN_TIMEOUT", c.shutdown_timeout);
  c.watchdog_timeout = env::duration("NIMBUS_WATCHDOG_TIMEOUT", c.watchdog_timeout);
  return c;
}

namespace {

asio::awaitable<void> shutdown_sequence(std::vector<http::Server*> servers, ops::Readiness& readiness,
                                        LifecycleConfig config, StopStep stop, int signal_number) {
  const auto started = std::chrono::steady_clock::now();
  readiness.set_draining();
  log::info("draining", {{"signal", signal_number}, {"drain_delay_ms", config.drain_delay.count()}});
  asio::steady_timer delay(co_await asio::this_coro::executor, config.drain_delay);
  co_await delay.async_wait(asio::as_tuple(asio::use_awaitable));

  // One after the other: the first (the API) drains its requests; the others (the
  // operations listener) have short ones.
  for (auto* server : servers) co_await server->shutdown(config.shutdown_timeout);
  if (stop) {
    try {
      co_await stop();
    } catch (const std::exception& e) {
      log::error("stop step failed", {{"error", e.what()}});
    }
  }
  const auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  log::info("stopped", {{"shutdown_ms", ms}});
}

void wait_for_interrupt(asio::signal_set& signals, asio::io_context& ioc) {
  signals.async_wait([&signals, &ioc](const boost::system::error_code& ec, int signal_number) {
    if (ec) return;
    if (signal_number != SIGINT) return wait_for_interrupt(signals, ioc);
    log::warn("second interrupt: stopping immediately");
    ioc.stop();
  });
}

}  // namespace

int run(asio::io_context& ioc, std::vector<http::Server*> servers, ops::Readiness& readiness,
        const LifecycleConfig& config, StopStep stop) {
  // Keeps run() alive while the server waits on nothing but the acceptor; released once
  // the shutdown sequence is over, after which every remaining operation is ours.
  auto guard = asio::make_work_guard(ioc);
  asio::signal_set signals(ioc, SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code& ec, int signal_number) {
    if (ec) return;
    asio::co_spawn(ioc, shutdown_sequence(servers, readiness, config, stop, signal_number), [&](std::exception_ptr e) {
      if (e) log::error("shutdown sequence failed");
      guard.reset();
      // Nothing acknowledged is still running: in-flight requests were drained
      // above. Stopping cancels only background loops (reconnects, timers).
      ioc.stop();
    });
    // A second Ctrl-C during the drain means "now". Repeated SIGTERMs are ignored:
    // some senders (timeout(1), process-group kills) deliver the same one twice.
    wait_for_interrupt(signals, ioc);
  });

  std::optional<Watchdog> watchdog;
  if (config.watchdog_timeout.count() > 0) {
    auto* first = servers.empty() ? nullptr : servers.front();
    watchdog.emplace(ioc, config.watchdog_timeout,
                     [first] { return first ? first->describe_in_flight() : std::string("(no server)"); });
    watchdog->start();
  }

  std::vector<std::jthread> pool;
  pool.reserve(config.threads > 0 ? config.threads - 1 : 0);
  for (unsigned i = 1; i < config.threads; ++i) pool.emplace_back([&ioc] { ioc.run(); });
  ioc.run();
  pool.clear();
  if (watchdog) watchdog->stop();
  return 0;
}

}  // namespace nimbus::runtime
