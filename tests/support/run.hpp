// Test helpers: run a coroutine to completion on a private io_context, and read the
// addresses of the stack under test from the environment.
#pragma once

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <cstdlib>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace nimbus::test {

// Runs `fn()` (returning an awaitable) on `ioc` with `threads` threads until it
// completes, returns its value. Background loops (reconnects) on `ioc` are suspended
// in between and go on at the next call.
template <typename Fn>
auto run(boost::asio::io_context& ioc, Fn&& fn, int threads = 2) {
  ioc.restart();
  auto future = boost::asio::co_spawn(ioc, std::forward<Fn>(fn)(), boost::asio::use_future);
  auto guard = boost::asio::make_work_guard(ioc);
  std::vector<std::jthread> pool;
  for (int i = 0; i < threads; ++i) pool.emplace_back([&ioc] { ioc.run(); });
  future.wait();
  guard.reset();
  ioc.stop();
  pool.clear();
  ioc.restart();
  return future.get();
}

// Waits, from inside a coroutine, until every future is ready, without blocking the
// thread that runs the work behind them. The caller then get()s the results.
template <typename T>
boost::asio::awaitable<void> wait_all(std::vector<std::future<T>>& futures) {
  boost::asio::steady_timer tick(co_await boost::asio::this_coro::executor);
  for (auto& f : futures) {
    while (f.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      tick.expires_after(std::chrono::milliseconds(2));
      co_await tick.async_wait(boost::asio::use_awaitable);
    }
  }
}

// The value of `name`, or skip the test when the stack is not there (running by hand).
inline std::string stack_env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

#define NIMBUS_REQUIRE_STACK(var)                                                                    \
  do {                                                                                               \
    if (::nimbus::test::stack_env(var).empty()) GTEST_SKIP() << var << " not set: run ./stack test"; \
  } while (0)

// supervisorctl against the stack under test (restarts for the recovery drills).
inline int stack_ctl(const std::string& args) {
  auto conf = stack_env("NIMBUS_STACK_SUPERVISOR_CONF");
  if (conf.empty()) return -1;
  return std::system(("supervisorctl -c '" + conf + "' " + args + " >/dev/null").c_str());
}

}  // namespace nimbus::test
