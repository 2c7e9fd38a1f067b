// The event-loop watchdog, with its stall action injected (the real one aborts).
#include <atomic>
#include <functional>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "runtime/watchdog.hpp"

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

}  // namespace

TEST(Watchdog, ABlockedLoopIsReportedWithWhatWasInFlight) {
  asio::io_context ioc;
  auto work = asio::make_work_guard(ioc);
  Stalls stalls;
  Watchdog dog(
      ioc, 200ms, [] { return std::string("POST /debug/hang req-1 (250 ms)"); },
      [&](std::chrono::milliseconds stalled, const std::string& in_flight) {
        std::lock_guard lock(stalls.mutex);
        ++stalls.count;
        stalls.stalled = stalled;
        stalls.in_flight = in_flight;
      });
  dog.start();
  std::thread loop([&] { ioc.run(); });
  std::this_thread::sleep_for(400ms);  // a healthy loop: no report
  {
    std::lock_guard lock(stalls.mutex);
    EXPECT_EQ(stalls.count, 0);
  }
  asio::post(ioc, [] { std::this_thread::sleep_for(700ms); });  // a handler that never yields
  std::this_thread::sleep_for(900ms);
  dog.stop();
  work.reset();
  ioc.stop();
  loop.join();
  std::lock_guard lock(stalls.mutex);
  EXPECT_GE(stalls.count, 1);
  EXPECT_GT(stalls.stalled, 200ms);
  EXPECT_EQ(stalls.in_flight, "POST /debug/hang req-1 (250 ms)");
}

TEST(Watchdog, ABusyButTurningLoopIsNotAStall) {
  asio::io_context ioc;
  auto work = asio::make_work_guard(ioc);
  std::atomic<int> stalls{0};
  Watchdog dog(ioc, 200ms, {}, [&](std::chrono::milliseconds, const std::string&) { ++stalls; });
  dog.start();
  std::thread loop([&] { ioc.run(); });
  // Short handlers back to back for a second (each 20 ms, each posting the next, as a
  // loaded server's requests do): the heartbeat gets its turns between them.
  std::function<void(int)> chain = [&](int left) {
    std::this_thread::sleep_for(20ms);
    if (left > 0) asio::post(ioc, [&chain, left] { chain(left - 1); });
  };
  asio::post(ioc, [&chain] { chain(40); });
  std::this_thread::sleep_for(1000ms);
  dog.stop();
  work.reset();
  ioc.stop();
  loop.join();
  EXPECT_EQ(stalls.load(), 0);
}
