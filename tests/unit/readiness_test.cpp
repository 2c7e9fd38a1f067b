// Readiness: checks run at most once per TTL while ready, a failure is kept only
// briefly, draining shows at once, and a check that hangs counts as failed.
#include "ops/readiness.hpp"

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <thread>

#include <gtest/gtest.h>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using nimbus::ops::Readiness;

namespace {

Readiness::Report report(Readiness& r) {
  asio::io_context ioc;
  auto f = asio::co_spawn(ioc, r.report(), asio::use_future);
  ioc.run();
  return f.get();
}

// A check that counts its calls and answers `*healthy`.
Readiness::Check counting(std::atomic<int>* calls, std::atomic<bool>* healthy) {
  return [calls, healthy]() -> asio::awaitable<bool> {
    ++*calls;
    co_return healthy->load();
  };
}

TEST(Readiness, ABurstOfProbesCostsOneCheckPerTtl) {
  Readiness r(1h);  // a TTL no test run reaches: every report after the first is cached
  std::atomic<int> calls{0};
  std::atomic<bool> healthy{true};
  r.add_check("db", counting(&calls, &healthy));
  for (int i = 0; i < 50; ++i) EXPECT_TRUE(report(r).ready);
  EXPECT_EQ(calls.load(), 1);
  // Even a dependency that fails meanwhile is not asked again within the TTL.
  healthy = false;
  EXPECT_TRUE(report(r).ready);
  EXPECT_EQ(calls.load(), 1);
}

TEST(Readiness, AFailureIsKeptOnlyBriefly) {
  Readiness r(1h);
  std::atomic<int> calls{0};
  std::atomic<bool> healthy{false};
  r.add_check("db", counting(&calls, &healthy));
  auto first = report(r);
  EXPECT_FALSE(first.ready);
  ASSERT_EQ(first.checks.size(), 1U);
  EXPECT_EQ(first.checks[0], (std::pair<std::string, bool>{"db", false}));
  healthy = true;
  std::this_thread::sleep_for(150ms);  // the point: past the 100 ms a failure is kept, far below the TTL
  EXPECT_TRUE(report(r).ready) << "an instance that just came up turns ready without waiting a TTL";
  EXPECT_EQ(calls.load(), 2);
}

TEST(Readiness, WithoutCachingEveryReportChecks) {
  Readiness r(0ms);
  std::atomic<int> calls{0};
  std::atomic<bool> healthy{true};
  r.add_check("db", counting(&calls, &healthy));
  EXPECT_TRUE(report(r).ready);
  healthy = false;
  EXPECT_FALSE(report(r).ready);
  EXPECT_EQ(calls.load(), 2);
}

TEST(Readiness, DrainingShowsAtOnceEvenFromTheCache) {
  Readiness r(1h);
  std::atomic<int> calls{0};
  std::atomic<bool> healthy{true};
  r.add_check("db", counting(&calls, &healthy));
  EXPECT_TRUE(report(r).ready);
  r.set_draining();
  auto draining = report(r);
  EXPECT_FALSE(draining.ready);
  EXPECT_TRUE(draining.draining);
  EXPECT_EQ(calls.load(), 1);
}

TEST(Readiness, AHangingOrThrowingCheckCountsAsFailed) {
  Readiness r(0ms, 100ms);
  r.add_check("hangs", []() -> asio::awaitable<bool> {
    asio::steady_timer forever(co_await asio::this_coro::executor, 1h);
    co_await forever.async_wait(asio::use_awaitable);
    co_return true;
  });
  r.add_check("throws", []() -> asio::awaitable<bool> {
    throw std::runtime_error("connection refused");
    co_return true;
  });
  std::atomic<int> calls{0};
  std::atomic<bool> healthy{true};
  r.add_check("fine", counting(&calls, &healthy));
  const auto began = std::chrono::steady_clock::now();
  auto got = report(r);
  // Bounded by the check timeout (100 ms), not by the hung check's hour: 5 s is headroom.
  EXPECT_LT(std::chrono::steady_clock::now() - began, 5s);
  EXPECT_FALSE(got.ready);
  ASSERT_EQ(got.checks.size(), 3U);
  EXPECT_EQ(got.checks[0], (std::pair<std::string, bool>{"hangs", false}));
  EXPECT_EQ(got.checks[1], (std::pair<std::string, bool>{"throws", false}));
  EXPECT_EQ(got.checks[2], (std::pair<std::string, bool>{"fine", true}));
}

}  // namespace
