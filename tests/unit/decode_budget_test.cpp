// The worker's decode budget (src/worker/decode_budget.hpp): decodes that together
// would pass it wait, in arrival order; shutdown wakes them.
#include "worker/decode_budget.hpp"

#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

using nimbus::worker::DecodeBudget;

namespace {

// Waits (a bounded while) until `n` callers wait on the budget.
void until_waiting(const DecodeBudget& budget, int n) {
  for (int i = 0; i < 2000 && budget.waiting() < n; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_EQ(budget.waiting(), n);
}

TEST(DecodeBudget, TwoDecodesThatTogetherPassItRunOneAfterTheOther) {
  DecodeBudget budget(100);
  std::atomic<bool> second{false};
  std::optional<DecodeBudget::Lease> first = budget.acquire(60);
  ASSERT_TRUE(first);
  std::thread other([&] {
    auto lease = budget.acquire(60);
    second = lease.has_value();
  });
  until_waiting(budget, 1);
  EXPECT_FALSE(second) << "the second large decode waits";
  EXPECT_EQ(budget.in_use(), 60U);
  first.reset();
  other.join();
  EXPECT_TRUE(second);
  EXPECT_EQ(budget.in_use(), 0U);
}

TEST(DecodeBudget, SmallDecodesRunBesideEachOther) {
  DecodeBudget budget(100);
  auto a = budget.acquire(30), b = budget.acquire(60), c = budget.acquire(10);
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(budget.in_use(), 100U);
}

TEST(DecodeBudget, ACostOverTheWholeBudgetTakesAllOfItNotForever) {
  DecodeBudget budget(100);
  {
    auto huge = budget.acquire(1'000'000);
    ASSERT_TRUE(huge);
    EXPECT_EQ(huge->bytes(), 100U);
  }
  EXPECT_EQ(budget.in_use(), 0U);
}

TEST(DecodeBudget, ALargeDecodeWaitingIsNotOvertakenBySmallerOnes) {
  DecodeBudget budget(100);
  auto held = budget.acquire(50);
  std::atomic<int> order{0}, large_at{0}, small_at{0};
  std::thread large([&] {
    auto lease = budget.acquire(80);
    large_at = ++order;
  });
  until_waiting(budget, 1);
  std::thread small([&] {
    auto lease = budget.acquire(10);  // would fit now, but arrived after the large one
    small_at = ++order;
  });
  until_waiting(budget, 2);
  held.reset();
  large.join();
  small.join();
  EXPECT_EQ(large_at, 1);
  EXPECT_EQ(small_at, 2);
}

TEST(DecodeBudget, ShutdownWakesEveryWaiter) {
  DecodeBudget budget(100);
  auto held = budget.acquire(100);
  std::atomic<int> refused{0};
  std::thread a([&] { refused += budget.acquire(50) ? 0 : 1; });
  std::thread b([&] { refused += budget.acquire(50) ? 0 : 1; });
  until_waiting(budget, 2);
  budget.cancel();
  a.join();
  b.join();
  EXPECT_EQ(refused, 2);
  EXPECT_FALSE(budget.acquire(1)) << "and refuses from then on";
}

}  // namespace
