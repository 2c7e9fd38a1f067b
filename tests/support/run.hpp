// Test helpers: run a coroutine to completion on a private io_context, and read the
// addresses of the stack under test from the environment.
#pragma once

#include <boost/asio/co_spawn.hpp>
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

// Runs `fn()` (returning an awaitable) on `ioc`, driven by the calling thread, until it
// completes; returns its value. Background loops on `ioc` (reconnects) advance while it
// runs and pause in between. (No worker threads and no stop/restart cycles: an
// io_context stops by itself whenever it runs out of work, which a harness that joins
// and restarts threads can race with.)
template <typename Fn>
auto run(boost::asio::io_context& ioc, Fn&& fn) {
  auto future = boost::asio::co_spawn(ioc, std::forward<Fn>(fn)(), boost::asio::use_future);
  while (future.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    if (ioc.stopped()) ioc.restart();
    ioc.run_one_for(std::chrono::milliseconds(5));
  }
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

// The value of `name` ("" when unset).
inline std::string stack_env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

// Whether a missing stack variable fails the test instead of skipping it. ./stack test
// sets NIMBUS_TEST_NO_SKIP=1: there a skip would be counted as a pass by ctest, and a
// green run would mean nothing. By hand, without a stack, the tests skip.
inline bool skips_are_failures() {
  return stack_env("NIMBUS_TEST_NO_SKIP") == "1";
}

#define NIMBUS_REQUIRE_STACK(var)                                                                    \
  do {                                                                                               \
    if (::nimbus::test::stack_env(var).empty()) {                                                    \
      if (::nimbus::test::skips_are_failures()) GTEST_FAIL() << var << " not set (and no skipping)"; \
      GTEST_SKIP() << var << " not set: run ./stack test";                                           \
    }                                                                                                \
  } while (0)

// supervisorctl against the stack under test (restarts for the recovery drills).
inline int stack_ctl(const std::string& args) {
  auto conf = stack_env("NIMBUS_STACK_SUPERVISOR_CONF");
  if (conf.empty()) return -1;
  return std::system(("supervisorctl -c '" + conf + "' " + args + " >/dev/null").c_str());
}

}  // namespace nimbus::test
