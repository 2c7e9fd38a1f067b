// The injectable clock: the real one, the tests' manual one, and the pure time
// arithmetic the services decide by.
#include "core/clock.hpp"

#include <gtest/gtest.h>

#include "store/redis/rate_limit.hpp"
#include "support/manual_clock.hpp"

using namespace nimbus;
using namespace std::chrono_literals;

namespace {

TEST(Clock, TheRealClockIsOneProcessWideInstanceReadingStdChrono) {
  auto clock = core::Clock::system();
  ASSERT_TRUE(clock);
  EXPECT_EQ(clock.get(), core::Clock::system().get());
  const auto wall = clock->system_now();
  EXPECT_LT(std::chrono::abs(wall - std::chrono::system_clock::now()), 1s);
  const auto a = clock->steady_now();
  const auto b = clock->steady_now();
  EXPECT_LE(a, b);
  EXPECT_LT(std::chrono::abs(a - std::chrono::steady_clock::now()), 1s);
  EXPECT_EQ(core::unix_seconds(*clock),
            std::chrono::duration_cast<std::chrono::seconds>(clock->system_now().time_since_epoch()).count());
}

TEST(ManualClock, StandsStillUntilMovedAndMovesBothTimesTogether) {
  const auto start = std::chrono::system_clock::from_time_t(1'800'000'000);
  auto clock = test::ManualClock::at(start);
  const auto steady = clock->steady_now();
  EXPECT_EQ(clock->system_now(), start);
  EXPECT_EQ(clock->system_now(), start) << "no time passes by itself";
  clock->advance(1500ms);
  EXPECT_EQ(clock->system_now(), start + 1500ms);
  EXPECT_EQ(clock->steady_now(), steady + 1500ms);
  EXPECT_EQ(core::unix_seconds(*clock), 1'800'000'001);
  // set() places the wall time only: monotonic time never jumps.
  clock->set(start - 1h);
  EXPECT_EQ(clock->system_now(), start - 1h);
  EXPECT_EQ(clock->steady_now(), steady + 1500ms);
}

TEST(RateWindow, CountsWholeMinutesAndSaysWhenTheCurrentOneEnds) {
  const auto minute = std::chrono::system_clock::from_time_t(1'800'000'000 / 60 * 60);
  const auto m = 1'800'000'000 / 60;
  EXPECT_EQ(redis::rate_window(minute).minute, m);
  EXPECT_EQ(redis::rate_window(minute).left, 60s) << "at :00 the whole minute is left";
  EXPECT_EQ(redis::rate_window(minute + 45s).left, 15s);
  EXPECT_EQ(redis::rate_window(minute + 45s).minute, m);
  EXPECT_EQ(redis::rate_window(minute + 59s + 999ms).left, 1s) << "never 0: a Retry-After of 0 invites a hot loop";
  EXPECT_EQ(redis::rate_window(minute + 59s + 999ms).minute, m);
  EXPECT_EQ(redis::rate_window(minute + 60s).minute, m + 1);
  EXPECT_EQ(redis::rate_window(minute + 60s).left, 60s);
}

}  // namespace
