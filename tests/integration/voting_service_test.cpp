// The voting service layer against the stack's real PostgreSQL and Redis, driven
// directly (no HTTP) with a manual clock: every decision it takes by the time — whether
// a poll's closing time has passed, which polls the reconciler checks, when a poll is
// marked active again, when a stream's slot lease ends, when a change's intent marker
// is stale — flips exactly where the clock says, not where the machine's clock is.
// Several Service objects on the same stores stand for several API instances: what one
// instance changes, every other must answer at once (no instance remembers anything
// that can change).
#include <boost/json/parse.hpp>

#include <gtest/gtest.h>

#include "core/ids.hpp"
#include "store/pg/migrate.hpp"
#include "support/manual_clock.hpp"
#include "support/stack_test.hpp"
#include "voting/live.hpp"
#include "voting/reconciler.hpp"
#include "voting/service.hpp"

namespace asio = boost::asio;
using namespace nimbus;
using namespace nimbus::voting;
using namespace std::chrono_literals;

namespace {

// A Redis database of these tests' own (the stack uses 0, ballot_box_test 9): the
// stack's reconcilers never see the marks made here at clock times of our choosing.
constexpr int kPrivateRedisDb = 10;

bool closed_in(const std::string& results) {
  return boost::json::parse(results).at("closed").as_bool();
}

class VotingServiceTest : public test::StackTest {
 protected:
  void SetUp() override {
    NIMBUS_REQUIRE_STACK("NIMBUS_TEST_DATABASE_URL");
    NIMBUS_REQUIRE_STACK("NIMBUS_TEST_REDIS_URL");
    pool_ = stack_pool(4);
    redis_ = private_redis(kPrivateRedisDb);
    // An hour ahead of the machine (whole seconds): a service still reading the real
    // clock would be an hour off, which no boundary below tolerates.
    t0_ = std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now()) + 1h;
    clock_ = test::ManualClock::at(t0_);
    tally_ = std::make_shared<Tally>(redis_, pool_, clock_);
    box_ =
        BallotBox::create(ioc_.get_executor(), pool_, tally_, BallotBoxConfig{.max_batch = 8, .flushers = 1}, clock_);
    service_ = std::make_shared<Service>(pool_, tally_, box_, true, clock_);
    for (int i = 0; i < 4; ++i) users_.push_back(ids::uuid_v7());
    run([&]() -> asio::awaitable<void> {
      co_await pg::migrate(*pool_, pg::embedded_migrations());
      auto db = co_await pool_->acquire();
      co_await db.query("INSERT INTO users (id, email) SELECT u, u::text || '@example.com' FROM unnest($1::uuid[]) u",
                        pg::params(pg::array_literal(users_)));
    });
  }
  void TearDown() override {
    if (!pool_) return;
    run([&]() -> asio::awaitable<void> {
      auto db = co_await pool_->acquire();
      // Polls, ballots and options go with their owner and voters.
      co_await db.query("DELETE FROM users WHERE id = ANY($1::uuid[])", pg::params(pg::array_literal(users_)));
      for (const auto& poll : polls_) {
        co_await tally_->deleted(poll);
        co_await redis_->command("ZREM", "tally:active", poll);
      }
    });
    redis_->stop();
  }

  // A poll owned by users_[0] with two options (options_ of it), closing at `closes_at`
  // (seconds since the epoch) if given.
  std::string make_poll(std::string_view visibility, std::optional<std::int64_t> closes_at = std::nullopt) {
    auto poll = ids::uuid_v7();
    polls_.push_back(poll);
    options_ = {ids::uuid_v7(), ids::uuid_v7()};
    std::sort(options_.begin(), options_.end());
    run([&]() -> asio::awaitable<void> {
      auto db = co_await pool_->acquire();
      co_await db.query(
          "INSERT INTO polls (id, owner_id, title, max_choices, results_visibility, closes_at) "
          "VALUES ($1, $2, 'clock', 1, $3, to_timestamp($4::bigint))",
          pg::params(poll, users_[0], visibility, closes_at));
      co_await db.query(
          "INSERT INTO poll_options (poll_id, id, position, text) "
          "SELECT $1, o, n, 'option ' || n FROM unnest($2::uuid[]) WITH ORDINALITY AS t(o, n)",
          pg::params(poll, pg::array_literal(options_)));
      co_await tally_->start(poll);
    });
    return poll;
  }

  // Another API instance: the same stores, memories of its own.
  std::shared_ptr<Service> another_instance(bool memo) const {
    return std::make_shared<Service>(pool_, tally_, box_, memo, clock_);
  }

  // Closes the poll in PostgreSQL only, as an instance that dies right after its commit
  // leaves it.
  void close_behind_the_back(const std::string& poll) {
    run([&]() -> asio::awaitable<void> {
      auto db = co_await pool_->acquire();
      co_await db.query("UPDATE polls SET closed_at = now() WHERE id = $1", pg::params(poll));
    });
  }

  Service::Results results(const std::string& poll, const std::string& user) {
    return run([&] { return service_->results(poll, user); });
  }

  VoteOutcome vote(const std::string& poll, const std::string& user) {
    return run([&] { return service_->vote(poll, user, {options_[0]}); }).outcome;
  }

  // The poll's mark in tally:active (seconds since the epoch), if any.
  std::optional<std::int64_t> mark_of(const std::string& poll) {
    auto score = run([&] { return redis_->command("ZSCORE", "tally:active", poll); }).as_optional_string();
    if (!score) return std::nullopt;
    return std::stoll(*score);
  }

  // Takes one counted ballot back out of the Redis tally, as a writer dying between
  // COMMIT and counting leaves it.
  void lose_from_tally(const std::string& poll, const std::string& user) {
    run([&]() -> asio::awaitable<void> {
      const std::string ballots_key = "poll:{" + poll + "}:ballots", tally_key = "poll:{" + poll + "}:tally";
      co_await redis_->command("HDEL", ballots_key, user);
      co_await redis_->command("HINCRBY", tally_key, options_[0], "-1");
      co_await redis_->command("HINCRBY", tally_key, "_total", "-1");
    });
  }

  static bool closed(const Service::Results& r) { return r.body && closed_in(*r.body); }

  std::shared_ptr<pg::Pool> pool_;
  std::shared_ptr<redis::Client> redis_;
  std::chrono::system_clock::time_point t0_;
  std::shared_ptr<test::ManualClock> clock_;
  std::shared_ptr<Tally> tally_;
  std::shared_ptr<BallotBox> box_;
  std::shared_ptr<Service> service_;
  std::vector<std::string> users_, polls_, options_;
};

TEST_F(VotingServiceTest, AClosedPollReadsClosedOnEveryInstanceTheMomentTheCloseIsAnswered) {
  for (const bool memo : {true, false}) {
    SCOPED_TRACE(memo ? "memories on" : "NIMBUS_LOCAL_MEMO=0");
    const auto poll = make_poll("always");
    auto reader = another_instance(memo);
    auto read = [&] { return run([&] { return reader->results(poll, users_[1]); }); };
    EXPECT_FALSE(closed(read())) << "the reader has now seen the poll open";
    // No time passes on the clock: nothing but the close itself can tell the reader.
    auto closer = another_instance(memo);
    ASSERT_EQ(run([&] { return closer->close(poll, users_[0]); }), OwnerAction::done);
    EXPECT_TRUE(closed(read()));
    auto snapshot = run([&] { return reader->snapshot(poll); });
    ASSERT_TRUE(snapshot);
    EXPECT_TRUE(closed_in(*snapshot)) << "the live stream's view agrees";
  }
}

TEST_F(VotingServiceTest, ADeletedPollIsGoneOnEveryInstanceTheMomentTheDeleteIsAnswered) {
  for (const bool memo : {true, false}) {
    SCOPED_TRACE(memo ? "memories on" : "NIMBUS_LOCAL_MEMO=0");
    const auto poll = make_poll("always");
    auto reader = another_instance(memo);
    ASSERT_TRUE(run([&] { return reader->results(poll, users_[1]); }).body);
    auto deleter = another_instance(memo);
    ASSERT_EQ(run([&] { return deleter->remove(poll, users_[0]); }), OwnerAction::done);
    EXPECT_FALSE(run([&] { return reader->results(poll, users_[1]); }).body);
    EXPECT_FALSE(run([&] { return reader->snapshot(poll); }));
  }
}

TEST_F(VotingServiceTest, AnAfterCloseResultStaysHiddenUntilTheCloseAndShowsOnEveryInstanceAfterIt) {
  const auto poll = make_poll("after_close");
  auto reader = another_instance(true);
  EXPECT_TRUE(run([&] { return reader->results(poll, users_[1]); }).hidden);
  ASSERT_EQ(run([&] { return service_->close(poll, users_[0]); }), OwnerAction::done);
  auto after = run([&] { return reader->results(poll, users_[1]); });
  EXPECT_FALSE(after.hidden);
  EXPECT_TRUE(closed(after));
}

TEST_F(VotingServiceTest, AChangeCutOffAfterItsCommitLeavesReadersCorrectUntilTheReconcilerSettlesIt) {
  const auto closed_poll = make_poll("always");
  const auto deleted_poll = make_poll("always");
  ASSERT_FALSE(closed(results(closed_poll, users_[1])));
  // An instance dies between PostgreSQL's commit and the outcome in Redis: the intent
  // marker is written, the row changed, and nothing else.
  for (const auto& poll : {closed_poll, deleted_poll}) run([&] { return tally_->begin_change(poll); });
  close_behind_the_back(closed_poll);
  run([&]() -> asio::awaitable<void> {
    auto db = co_await pool_->acquire();
    co_await db.query("DELETE FROM polls WHERE id = $1", pg::params(deleted_poll));
  });
  EXPECT_TRUE(closed(results(closed_poll, users_[1]))) << "the marker sends the reader to PostgreSQL";
  EXPECT_FALSE(results(deleted_poll, users_[1]).body);

  // The reconciler leaves a fresh marker alone (its change may still be under way) and
  // settles one older than its limit from the row.
  Reconciler reconciler(pool_, redis_, tally_, ReconcilerConfig{.settle = 10ms}, clock_);
  run([&] { return reconciler.pass(); });
  auto marked = [&](const std::string& poll) {
    return run([&] { return redis_->command("HEXISTS", "poll:{" + poll + "}:tally", "_changing"); }).as_integer();
  };
  EXPECT_EQ(marked(closed_poll), 1);
  clock_->advance(31s);
  run([&] { return reconciler.pass(); });
  EXPECT_EQ(marked(closed_poll), 0);
  EXPECT_EQ(
      run([&] { return redis_->command("HGET", "poll:{" + closed_poll + "}:tally", "_closed"); }).as_optional_string(),
      "1");
  EXPECT_TRUE(closed(results(closed_poll, users_[1])));
  EXPECT_FALSE(results(deleted_poll, users_[1]).body);
}

TEST_F(VotingServiceTest, ARebuiltTallyKeepsThePollClosed) {
  const auto poll = make_poll("always");
  ASSERT_EQ(vote(poll, users_[1]), VoteOutcome::created);
  ASSERT_EQ(run([&] { return service_->close(poll, users_[0]); }), OwnerAction::done);
  // Redis loses the poll's keys: readers go to PostgreSQL, and one of them starts a rebuild.
  run([&] { return redis_->command("DEL", "poll:{" + poll + "}:tally", "poll:{" + poll + "}:ballots"); });
  EXPECT_TRUE(closed(results(poll, users_[1])));
  run([&] { return tally_->rebuild(poll); });
  auto standing = run([&] { return tally_->standing(poll); });
  EXPECT_TRUE(standing.exists);
  EXPECT_TRUE(standing.closed_early);
  EXPECT_EQ(standing.counts.total, 1);
}

TEST_F(VotingServiceTest, APollIsClosedOnceTheClockReachesItsClosingTime) {
  // The closing time is an hour and ten seconds ahead of the machine's clock: only the
  // service's clock can make it pass.
  const auto closes_at = test::unix_of(t0_) + 10;
  const auto hidden_until_closed = make_poll("after_close", closes_at);
  const auto open_results = make_poll("always", closes_at);
  auto snapshot_closed = [&](const std::string& poll) {
    auto body = run([&] { return service_->snapshot(poll); });
    return body && closed_in(*body);
  };
  EXPECT_TRUE(results(hidden_until_closed, users_[1]).hidden) << "after_close: hidden while the poll is open";
  EXPECT_FALSE(closed(results(open_results, users_[1])));
  clock_->advance(9999ms);
  EXPECT_TRUE(results(hidden_until_closed, users_[1]).hidden);
  EXPECT_FALSE(closed(results(open_results, users_[1])));
  EXPECT_FALSE(snapshot_closed(open_results)) << "the live stream's view agrees";
  clock_->advance(1ms);
  auto after = results(hidden_until_closed, users_[1]);
  EXPECT_FALSE(after.hidden);
  EXPECT_TRUE(closed(after));
  // A poll showing its results all along says it is closed from that instant, in both views.
  EXPECT_TRUE(closed(results(open_results, users_[1])));
  EXPECT_TRUE(snapshot_closed(open_results));
}

TEST_F(VotingServiceTest, TheReconcilerChecksPollsMarkedWithinItsWindowByTheClock) {
  const auto poll = make_poll("always");
  ASSERT_EQ(vote(poll, users_[1]), VoteOutcome::created);
  ASSERT_EQ(vote(poll, users_[2]), VoteOutcome::created);
  EXPECT_EQ(mark_of(poll), test::unix_of(t0_)) << "the ballot box marks the poll at the tally's clock";

  Reconciler reconciler(pool_, redis_, tally_, ReconcilerConfig{.window = 120'000ms, .settle = 10ms}, clock_);
  // At the window's last second the mark still counts: the lost ballot is re-counted.
  lose_from_tally(poll, users_[1]);
  clock_->set(t0_ + 120s);
  EXPECT_EQ(run([&] { return reconciler.pass(); }), 1);
  EXPECT_EQ(run([&] { return tally_->counts(poll); }).total, 2);

  // A second later the mark is out of the window: the poll is not looked at (and the
  // mark is dropped), so a loss now stays until a new vote marks the poll again.
  lose_from_tally(poll, users_[1]);
  clock_->set(t0_ + 121s);
  EXPECT_EQ(run([&] { return reconciler.pass(); }), 0);
  EXPECT_EQ(run([&] { return tally_->counts(poll); }).total, 1);
  EXPECT_EQ(mark_of(poll), std::nullopt);
}

TEST_F(VotingServiceTest, TheBallotBoxMarksAPollAgainOnlyAfterFiveSecondsByTheClock) {
  const auto poll = make_poll("always");
  ASSERT_EQ(vote(poll, users_[1]), VoteOutcome::created);
  EXPECT_EQ(mark_of(poll), test::unix_of(t0_));
  clock_->advance(5s);
  ASSERT_EQ(vote(poll, users_[2]), VoteOutcome::created);
  EXPECT_EQ(mark_of(poll), test::unix_of(t0_)) << "marked 5 s ago: not again yet";
  clock_->advance(1s);
  ASSERT_EQ(vote(poll, users_[3]), VoteOutcome::created);
  EXPECT_EQ(mark_of(poll), test::unix_of(t0_) + 6) << "over 5 s: marked again";
}

TEST_F(VotingServiceTest, AStreamSlotLeaseEndsWhenTheClockSays) {
  StreamSlots slots(redis_, 1, 60s, clock_);
  // (Named: the slot calls are coroutines holding references to their arguments.)
  const auto user = ids::uuid_v7();
  const std::string s1 = "s1", s2 = "s2";
  auto acquire = [&](const std::string& stream) { return run([&] { return slots.acquire(user, stream); }); };
  ASSERT_TRUE(acquire(s1));
  EXPECT_FALSE(acquire(s2)) << "one slot per user here";
  clock_->advance(30s);
  run([&] { return slots.renew(user, s1); });  // the lease now ends at t0 + 90 s
  clock_->advance(30s);
  EXPECT_FALSE(acquire(s2)) << "renewed: s1 still holds the slot at t0 + 60 s";
  clock_->advance(29'999ms);
  EXPECT_FALSE(acquire(s2));
  clock_->advance(1ms);
  EXPECT_TRUE(acquire(s2)) << "s1's lease ended at t0 + 90 s";
  run([&] { return slots.release(user, s2); });
}

TEST_F(VotingServiceTest, ARenewalWhoseSlotIsGoneTakesAFreeOneOrEndsTheStream) {
  StreamSlots slots(redis_, 1, 60s, clock_);
  const auto user = ids::uuid_v7();
  const std::string s1 = "s1", s2 = "s2";
  auto acquire = [&](const std::string& stream) { return run([&] { return slots.acquire(user, stream); }); };
  auto renew = [&](const std::string& stream) { return run([&] { return slots.renew(user, stream); }); };
  ASSERT_TRUE(acquire(s1));
  EXPECT_TRUE(renew(s1)) << "its own slot";
  clock_->advance(61s);  // s1's lease ran out unrenewed (as if the key was lost)
  EXPECT_TRUE(renew(s1)) << "the slot is free again: s1 takes it";
  EXPECT_FALSE(acquire(s2)) << "and holds it";
  clock_->advance(61s);
  ASSERT_TRUE(acquire(s2)) << "s1's lease ran out again, s2 took the slot";
  EXPECT_FALSE(renew(s1)) << "gone, and the only slot is s2's: the stream must end";
  EXPECT_TRUE(renew(s2));
  run([&] { return slots.release(user, s2); });
}

}  // namespace
