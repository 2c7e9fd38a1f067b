// The event-loop watchdog, with its stall action injected (the real one aborts).
#include "runtime/watchdog.hpp"

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <functional>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using nimbus::runtime::Watchdog;

namespace {

struct Stalls {
  std::mutex mutex;
  int count = 0;
  std::chrono::milliseconds stalled{0};
  std::string in_flight;
};

// A timeout far above the scheduling hiccups of a loaded 2-core machine, so that a
// healthy loop is never taken for a stuck one; the stuck handlers below exceed it well.
constexpr auto kTimeout = 1000ms;

// Waits for `done()` (the event), bounded by 10 s in case it never comes.
template <typename Fn>
bool wait_for(Fn done) {
  for (const auto until = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < until;) {
    if (done()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return done();
}

}  // namespace

TEST(Watchdog, ABlockedLoopIsReportedWithWhatWasInFlight) {
  asio::io_context ioc;
  auto work = asio::make_work_guard(ioc);
  Stalls stalls;
  Watchdog dog(
      ioc, kTimeout, [] { return std::string("POST /debug/hang req-1 (250 ms)"); },
      [&](std::chrono::milliseconds stalled, const std::string& in_flight) {
        std::lock_guard lock(stalls.mutex);
        ++stalls.count;
        stalls.stalled = stalled;
        stalls.in_flight = in_flight;
      });
  dog.start();
  std::thread loop([&] { ioc.run(); });
  std::this_thread::sleep_for(1500ms);  // a healthy loop for longer than the timeout: no report
  {
    std::lock_guard lock(stalls.mutex);
    EXPECT_EQ(stalls.count, 0);
  }
  std::atomic<bool> released{false};
  asio::post(ioc, [&released] {  // a handler that never yields (until the test saw the report)
    for (const auto until = std::chrono::steady_clock::now() + 10s;
         !released.load() && std::chrono::steady_clock::now() < until;) {
      std::this_thread::sleep_for(5ms);
    }
  });
  EXPECT_TRUE(wait_for([&] {
    std::lock_guard lock(stalls.mutex);
    return stalls.count >= 1;
  })) << "the stuck loop was never reported";
  released = true;
  dog.stop();
  work.reset();
  ioc.stop();
  loop.join();
  std::lock_guard lock(stalls.mutex);
  EXPECT_GE(stalls.count, 1);
  EXPECT_GE(stalls.stalled, kTimeout);
  EXPECT_EQ(stalls.in_flight, "POST /debug/hang req-1 (250 ms)");
}

TEST(Watchdog, ABusyButTurningLoopIsNotAStall) {
  asio::io_context ioc;
  auto work = asio::make_work_guard(ioc);
  std::atomic<int> stalls{0};
  Watchdog dog(ioc, kTimeout, {}, [&](std::chrono::milliseconds, const std::string&) { ++stalls; });
  dog.start();
  std::thread loop([&] { ioc.run(); });
  // Short handlers back to back for twice the timeout (each 20 ms, each posting the
  // next, as a loaded server's requests do): the heartbeat gets its turns between them.
  std::atomic<bool> done{false};
  std::function<void(int)> chain = [&](int left) {
    std::this_thread::sleep_for(20ms);
    if (left > 0) {
      asio::post(ioc, [&chain, left] { chain(left - 1); });
    } else {
      done = true;
    }
  };
  asio::post(ioc, [&chain] { chain(100); });
  EXPECT_TRUE(wait_for([&] { return done.load(); }));
  dog.stop();
  work.reset();
  ioc.stop();
  loop.join();
  EXPECT_EQ(stalls.load(), 0);
}
