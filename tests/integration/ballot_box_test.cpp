// The ballot box (group commit) and the Redis tally against the stack's real
// PostgreSQL and Redis: batches mix valid ballots, repeats of one user and ballots
// that fail, and each one gets its own answer.
#include "voting/ballot_box.hpp"

#include <map>
#include <set>

#include <gtest/gtest.h>

#include "core/errors.hpp"
#include "core/ids.hpp"
#include "ops/metrics.hpp"
#include "store/pg/migrate.hpp"
#include "support/stack_test.hpp"
#include "voting/reconciler.hpp"

namespace asio = boost::asio;
using namespace nimbus;
using namespace nimbus::voting;

namespace {

// No service of the stack uses it (they all use database 0).
constexpr int kPrivateRedisDb = 9;

class BallotBoxTest : public test::StackTest {
 protected:
  void SetUp() override {
    NIMBUS_REQUIRE_STACK("NIMBUS_TEST_DATABASE_URL");
    NIMBUS_REQUIRE_STACK("NIMBUS_TEST_REDIS_URL");
    pool_ = stack_pool(8);
    // A Redis database of these tests' own: the stack's workers run a reconciler every
    // second on database 0, and would repair the damage below before (or instead of)
    // the reconciler under test.
    redis_ = private_redis(kPrivateRedisDb);
    tally_ = std::make_shared<Tally>(redis_, pool_);
    // A small batch limit makes the burst below span several batches.
    box_ = BallotBox::create(ioc_.get_executor(), pool_, tally_, BallotBoxConfig{.max_batch = 16, .flushers = 2});
    poll_ = ids::uuid_v7();
    for (int i = 0; i < 3; ++i) options_.push_back(ids::uuid_v7());
    std::sort(options_.begin(), options_.end());
    for (int i = 0; i < 40; ++i) users_.push_back(ids::uuid_v7());
    run([&]() -> asio::awaitable<void> {
      co_await pg::migrate(*pool_, pg::embedded_migrations());
      auto db = co_await pool_->acquire();
      co_await db.query("INSERT INTO users (id, email) SELECT u, u::text || '@example.com' FROM unnest($1::uuid[]) u",
                        pg::params(pg::array_literal(users_)));
      co_await db.query(
          "INSERT INTO polls (id, owner_id, title, max_choices, results_visibility) VALUES ($1, $2, 'box', 2, "
          "'always')",
          pg::params(poll_, users_[0]));
      co_await db.query(
          "INSERT INTO poll_options (poll_id, id, position, text) "
          "SELECT $1, o, n, 'option ' || n FROM unnest($2::uuid[]) WITH ORDINALITY AS t(o, n)",
          pg::params(poll_, pg::array_literal(options_)));
      co_await tally_->start(poll_);
    });
  }
  void TearDown() override {
    if (!pool_) return;
    run([&]() -> asio::awaitable<void> {
      auto db = co_await pool_->acquire();
      co_await db.query("DELETE FROM users WHERE id = ANY($1::uuid[])", pg::params(pg::array_literal(users_)));
      co_await tally_->deleted(poll_);
    });
    redis_->stop();
  }

  // Casts every ballot at once and returns the outcomes in order.
  std::vector<VoteResult> cast_all(const std::vector<Ballot>& ballots) {
    return run([&]() -> asio::awaitable<std::vector<VoteResult>> {
      std::vector<std::future<VoteResult>> all;
      for (const auto& b : ballots) all.push_back(asio::co_spawn(ioc_, box_->cast(b), asio::use_future));
      co_await test::wait_all(all);
      std::vector<VoteResult> out;
      for (auto& f : all) out.push_back(f.get());
      co_return out;
    });
  }

  std::map<std::string, std::int64_t> pg_counts() {
    return run([&]() -> asio::awaitable<std::map<std::string, std::int64_t>> {
      auto db = co_await pool_->acquire();
      auto r = co_await db.query("SELECT option_id, count(*) FROM ballot_choices WHERE poll_id = $1 GROUP BY option_id",
                                 pg::params(poll_));
      std::map<std::string, std::int64_t> out;
      for (int i = 0; i < r.rows(); ++i) out[std::string(r.get(i, 0))] = r.get_int(i, 1);
      co_return out;
    });
  }

  std::shared_ptr<pg::Pool> pool_;
  std::shared_ptr<redis::Client> redis_;
  std::shared_ptr<Tally> tally_;
  std::shared_ptr<BallotBox> box_;
  std::string poll_;
  std::vector<std::string> options_, users_;
};

TEST_F(BallotBoxTest, EveryBallotOfABurstGetsItsOwnAnswerAndCountsOnce) {
  std::vector<Ballot> ballots;
  std::vector<std::string> sel_a{options_[0]}, sel_b{options_[1]}, both{options_[0], options_[2]};
  for (int i = 0; i < 30; ++i) ballots.push_back({poll_, users_[i], i % 2 ? sel_a : both});
  // User 0 again: the same selection (a retry) and another one.
  ballots.push_back({poll_, users_[0], both});
  ballots.push_back({poll_, users_[0], sel_b});
  // Bad ballots mixed in: unknown poll, another poll's option, too many choices, and a
  // user unknown to PostgreSQL (a foreign-key failure that must not sink the batch).
  ballots.push_back({ids::uuid_v7(), users_[30], sel_a});
  ballots.push_back({poll_, users_[31], {ids::uuid_v7()}});
  ballots.push_back({poll_, users_[32], options_});
  ballots.push_back({poll_, ids::uuid_v7(), sel_a});

  auto results = cast_all(ballots);
  for (int i = 1; i < 30; ++i) EXPECT_EQ(results[i].outcome, VoteOutcome::created) << i;
  // User 0's first two ballots may land in two batches in flight at once: either one
  // is the ballot, the other its retry.
  std::multiset<VoteOutcome> first_two{results[0].outcome, results[30].outcome};
  EXPECT_EQ(first_two, (std::multiset<VoteOutcome>{VoteOutcome::created, VoteOutcome::same_again}));
  EXPECT_EQ(results[30].option_ids, both);
  EXPECT_EQ(results[31].outcome, VoteOutcome::already_voted);
  EXPECT_EQ(results[32].outcome, VoteOutcome::not_found);
  EXPECT_EQ(results[33].outcome, VoteOutcome::invalid_options);
  EXPECT_EQ(results[34].outcome, VoteOutcome::invalid_options);
  EXPECT_EQ(results[35].outcome, VoteOutcome::not_found);

  auto truth = pg_counts();
  EXPECT_EQ(truth[options_[0]], 30);  // 15 × sel_a + 15 × both
  EXPECT_EQ(truth[options_[2]], 15);
  auto counted = run([&] { return tally_->counts(poll_); });
  EXPECT_EQ(counted.total, 30);
  for (const auto& [option, n] : truth) EXPECT_EQ(counted.by_option[option], n) << option;
}

TEST_F(BallotBoxTest, EveryVoteIsTimedThroughEachStageItPasses) {
  ops::Metrics metrics;
  box_->export_metrics(metrics);
  std::vector<Ballot> ballots;
  const std::vector<std::string> sel{options_[0]};
  for (int i = 0; i < 20; ++i) ballots.push_back({poll_, users_[i], sel});
  ballots.push_back({poll_, users_[0], {options_[1]}});  // already voted: written, not counted
  ballots.push_back({ids::uuid_v7(), users_[21], sel});  // unknown poll: written, not counted
  cast_all(ballots);

  const auto text = metrics.render();
  auto count_of = [&](const std::string& name) {
    const auto line = name + "_count ";
    const auto at = text.find(line);
    return at == std::string::npos ? -1 : std::stoll(text.substr(at + line.size()));
  };
  EXPECT_EQ(count_of("nimbus_vote_box_seconds"), 22) << text;
  EXPECT_EQ(count_of("nimbus_vote_queue_seconds"), 22);
  EXPECT_EQ(count_of("nimbus_vote_write_seconds"), 22);
  EXPECT_EQ(count_of("nimbus_vote_count_seconds"), 20);  // the committed ballots
  EXPECT_NE(text.find("nimbus_vote_box_seconds_bucket{le=\"0.00025\"}"), std::string::npos);
  // Each stage is a span of the vote's own time in the box, one after the other (queued,
  // written, counted), so the whole is at least their sum, and a write takes time.
  auto sum_of = [&](const std::string& name) {
    const auto line = name + "_sum ";
    const auto at = text.find(line);
    return at == std::string::npos ? -1.0 : std::stod(text.substr(at + line.size()));
  };
  const double queue = sum_of("nimbus_vote_queue_seconds"), write = sum_of("nimbus_vote_write_seconds");
  const double count = sum_of("nimbus_vote_count_seconds"), box = sum_of("nimbus_vote_box_seconds");
  EXPECT_GT(write, 0.0);
  EXPECT_GT(count, 0.0);
  EXPECT_GE(queue, 0.0);
  EXPECT_GE(box, queue + write + count);
}

TEST_F(BallotBoxTest, TalliesRebuildAndReconcileToTheSameCounts) {
  std::vector<Ballot> ballots;
  for (int i = 0; i < 20; ++i) ballots.push_back({poll_, users_[i], {options_[i % 3]}});
  cast_all(ballots);
  const auto truth = pg_counts();

  // Redis loses the tally: readers get PostgreSQL's counts, and a rebuild restores it.
  run([&]() -> asio::awaitable<void> {
    co_await redis_->command("DEL", "poll:{" + poll_ + "}:tally", "poll:{" + poll_ + "}:ballots");
  });
  auto from_pg = run([&] { return tally_->counts(poll_); });
  EXPECT_EQ(from_pg.total, 20);
  run([&] { return tally_->rebuild(poll_); });
  auto rebuilt = run([&] { return tally_->counts(poll_); });
  EXPECT_EQ(rebuilt.total, 20);
  for (const auto& [option, n] : truth) EXPECT_EQ(rebuilt.by_option[option], n);

  // Counting again (a retried vote) adds nothing.
  EXPECT_EQ(run([&] { return tally_->count(ballots); }), 0);
  EXPECT_EQ(run([&] { return tally_->counts(poll_); }).total, 20);

  // A writer died between COMMIT and counting: the reconciler finds the poll (marked
  // active before the write) short of PostgreSQL's count and re-counts it.
  run([&]() -> asio::awaitable<void> {
    const std::string ballots_key = "poll:{" + poll_ + "}:ballots", tally_key = "poll:{" + poll_ + "}:tally";
    co_await redis_->command("HDEL", ballots_key, users_[0]);
    co_await redis_->command("HINCRBY", tally_key, options_[0], "-1");
    co_await redis_->command("HINCRBY", tally_key, "_total", "-1");
  });
  EXPECT_EQ(run([&] { return tally_->counts(poll_); }).total, 19);
  // Nothing else repairs it: no reconciler runs on this database, and a read does not.
  EXPECT_EQ(run([&] { return tally_->counts(poll_); }).total, 19);
  Reconciler reconciler(pool_, redis_, tally_, ReconcilerConfig{.settle = std::chrono::milliseconds(50)});
  EXPECT_GE(run([&] { return reconciler.pass(); }), 1);
  auto repaired = run([&] { return tally_->counts(poll_); });
  EXPECT_EQ(repaired.total, 20);
  for (const auto& [option, n] : truth) EXPECT_EQ(repaired.by_option[option], n);
}

}  // namespace

// A burst beyond the queue's bound is refused at once (503 + Retry-After for the
// client), not queued without limit; what was queued is written, and nothing else.
TEST_F(BallotBoxTest, AFullQueueRefusesVotesInsteadOfGrowing) {
  auto small = BallotBox::create(ioc_.get_executor(), pool_, tally_,
                                 BallotBoxConfig{.max_batch = 4, .flushers = 1, .max_queued = 5});
  auto [written, refused] = run([&]() -> asio::awaitable<std::pair<int, int>> {
    std::vector<std::future<VoteResult>> all;
    for (std::size_t i = 1; i < users_.size(); ++i) {
      all.push_back(asio::co_spawn(ioc_, small->cast(Ballot{poll_, users_[i], {options_[0]}}), asio::use_future));
    }
    co_await test::wait_all(all);
    int ok = 0, full = 0;
    for (auto& f : all) {
      try {
        if (f.get().outcome == VoteOutcome::created) ++ok;
      } catch (const DependencyUnavailable&) {
        ++full;
      }
    }
    co_return std::make_pair(ok, full);
  });
  EXPECT_GT(refused, 0);
  EXPECT_GT(written, 0);
  EXPECT_EQ(written + refused, static_cast<int>(users_.size()) - 1);
  auto stored = run([&]() -> asio::awaitable<std::int64_t> {
    auto db = co_await pool_->acquire();
    auto r = co_await db.query("SELECT count(*) FROM ballots WHERE poll_id = $1", pg::params(poll_));
    co_return r.get_int(0, 0);
  });
  EXPECT_EQ(stored, written);
}
