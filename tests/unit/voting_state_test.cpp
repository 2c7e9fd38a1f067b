// In-process pieces of the vote path: the verified-token memo, the id lists stored in
// Redis, and a live-results watcher (latest state only, heartbeat timeout, close).
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <future>

#include <gtest/gtest.h>

#include "auth/verified_tokens.hpp"
#include "voting/live.hpp"
#include "voting/tally.hpp"

using namespace nimbus;
using namespace std::chrono_literals;

namespace {

auth::Claims claims_until(std::int64_t exp) {
  auth::Claims c;
  c.sub = "user";
  c.exp = exp;
  return c;
}

TEST(VerifiedTokens, RemembersExactTokensUntilTheyExpire) {
  auth::VerifiedTokens memo(1024, 30s);
  const auto now = std::chrono::system_clock::now();
  const auto t = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  memo.remember("aaa.bbb.ccc", claims_until(t + 60));
  ASSERT_TRUE(memo.find("aaa.bbb.ccc", now).has_value());
  EXPECT_EQ(memo.find("aaa.bbb.ccc", now)->sub, "user");
  EXPECT_FALSE(memo.find("aaa.bbb.ccd", now).has_value()) << "one byte off is another token";
  EXPECT_FALSE(memo.find("aaa.bbb.cc", now).has_value());
  // Past exp + leeway it is gone, as verification would refuse it.
  EXPECT_TRUE(memo.find("aaa.bbb.ccc", now + 89s).has_value());
  EXPECT_FALSE(memo.find("aaa.bbb.ccc", now + 91s).has_value());
}

TEST(VerifiedTokens, StaysWithinItsCapacity) {
  auth::VerifiedTokens memo(64, 30s);
  const auto now = std::chrono::system_clock::now();
  const auto t = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  for (int i = 0; i < 10'000; ++i) memo.remember("token-" + std::to_string(i), claims_until(t + 60));
  int kept = 0;
  for (int i = 0; i < 10'000; ++i) kept += memo.find("token-" + std::to_string(i), now).has_value() ? 1 : 0;
  EXPECT_LE(kept, 64 + 16);
  EXPECT_TRUE(memo.find("token-9999", now).has_value()) << "the newest entry is kept";
}

TEST(IdLists, JoinAndSplitRoundTrip) {
  EXPECT_EQ(voting::join_ids({"a", "b", "c"}), "a,b,c");
  EXPECT_EQ(voting::split_ids("a,b,c"), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_TRUE(voting::split_ids("").empty());
  EXPECT_EQ(voting::split_ids("a,,b"), (std::vector<std::string>{"a", "b"}));
}

template <typename T>
T run(boost::asio::io_context& ioc, boost::asio::awaitable<T> a) {
  auto f = boost::asio::co_spawn(ioc, std::move(a), boost::asio::use_future);
  ioc.restart();
  ioc.run();
  return f.get();
}

TEST(Watcher, DeliversOnlyTheLatestStateThenTimesOutThenCloses) {
  boost::asio::io_context ioc;
  voting::Watcher w(ioc.get_executor());
  w.offer(std::make_shared<const std::string>("one"));
  const auto two = std::make_shared<const std::string>("two");
  w.offer(two);
  auto e = run(ioc, w.next(1s));
  EXPECT_EQ(e.kind, voting::Watcher::Event::Kind::update);
  EXPECT_EQ(*e.data, "two") << "a slow reader skips to the newest results";
  EXPECT_EQ(e.data, two) << "the bytes offered, shared, not a copy";
  const auto before = std::chrono::steady_clock::now();
  e = run(ioc, w.next(50ms));
  EXPECT_EQ(e.kind, voting::Watcher::Event::Kind::timeout);
  EXPECT_GE(std::chrono::steady_clock::now() - before, 50ms);
  w.close();
  EXPECT_EQ(run(ioc, w.next(1s)).kind, voting::Watcher::Event::Kind::closed);
}

// Runs the io_context until `f` is ready (a watcher's armed timer keeps it busy).
template <typename T>
T run_until(boost::asio::io_context& ioc, std::future<T>& f) {
  ioc.restart();
  while (f.wait_for(0s) != std::future_status::ready) ioc.run_for(5ms);
  return f.get();
}

// next() waits on one timer armed per deadline, not per wait: an update still wakes a
// wait at once, and a deadline shorter than the one armed is kept.
TEST(Watcher, WakesOnAnUpdateAndKeepsAShorterDeadline) {
  using Kind = voting::Watcher::Event::Kind;
  boost::asio::io_context ioc;
  voting::Watcher w(ioc.get_executor());
  auto far = boost::asio::co_spawn(ioc, w.next(10s), boost::asio::use_future);
  ioc.run_for(20ms);
  ASSERT_NE(far.wait_for(0s), std::future_status::ready) << "waiting for a far deadline";
  const auto offered = std::chrono::steady_clock::now();
  w.offer(std::make_shared<const std::string>("three"));
  auto e = run_until(ioc, far);
  EXPECT_EQ(e.kind, Kind::update);
  EXPECT_EQ(*e.data, "three");
  EXPECT_LT(std::chrono::steady_clock::now() - offered, 1s);

  const auto before = std::chrono::steady_clock::now();
  auto near = boost::asio::co_spawn(ioc, w.next(50ms), boost::asio::use_future);
  EXPECT_EQ(run_until(ioc, near).kind, Kind::timeout);
  EXPECT_GE(std::chrono::steady_clock::now() - before, 50ms);
  EXPECT_LT(std::chrono::steady_clock::now() - before, 1s) << "not the 10 s armed before";

  auto again = boost::asio::co_spawn(ioc, w.next(30ms), boost::asio::use_future);
  EXPECT_EQ(run_until(ioc, again).kind, Kind::timeout) << "a timer that rang is armed again";
}

}  // namespace
