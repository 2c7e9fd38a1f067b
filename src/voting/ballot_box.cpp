#include "voting/ballot_box.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <set>

#include "core/env.hpp"
#include "core/errors.hpp"
#include "core/log.hpp"

namespace nimbus::voting {

namespace asio = boost::asio;

namespace {

std::shared_ptr<ops::Histogram> stage_histogram() {
  return std::make_shared<ops::Histogram>(
      std::vector<double>(BallotBox::kStageBuckets.begin(), BallotBox::kStageBuckets.end()));
}

double seconds_since(std::chrono::steady_clock::time_point then) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - then).count();
}

// Observes `seconds` once per vote of a batch of `n`.
void observe_each(ops::Histogram& histogram, double seconds, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) histogram.observe(seconds);
}

// One statement for a whole batch: each input row is checked on its own (the poll
// exists and is open now, the selection fits max_choices and names only the poll's
// options), the valid ones are inserted (the primary key turns a second ballot into a
// conflict, never a second row), their choices follow, and each row reports what
// happened together with the ballot already stored, if any.
constexpr std::string_view kCastBatch = R"(
WITH req AS (
  SELECT r.n, r.poll_id, r.user_id, string_to_array(r.selection, ',')::uuid[] AS option_ids
    FROM unnest($1::uuid[], $2::uuid[], $3::text[]) WITH ORDINALITY AS r(poll_id, user_id, selection, n)),
chk AS (
  SELECT q.n, q.poll_id, q.user_id, q.option_ids, p.id IS NOT NULL AS found,
         coalesce(p.closed_at IS NULL AND (p.opens_at IS NULL OR p.opens_at <= now())
                  AND (p.closes_at IS NULL OR p.closes_at > now()), false) AS open,
         coalesce(cardinality(q.option_ids) <= p.max_choices, false) AS within,
         (SELECT count(*) FROM poll_options o WHERE o.poll_id = q.poll_id AND o.id = ANY (q.option_ids))
           = cardinality(q.option_ids) AS known
    FROM req q LEFT JOIN polls p ON p.id = q.poll_id),
b AS (
  INSERT INTO ballots (poll_id, user_id, option_ids)
  SELECT poll_id, user_id, option_ids FROM chk WHERE found AND open AND within AND known
  ON CONFLICT (poll_id, user_id) DO NOTHING
  RETURNING poll_id, user_id, option_ids),
c AS (
  INSERT INTO ballot_choices (poll_id, user_id, option_id)
  SELECT poll_id, user_id, unnest(option_ids) FROM b)
SELECT k.found, k.open, k.within, k.known, b.poll_id IS NOT NULL,
       CASE WHEN b.poll_id IS NULL AND k.found THEN
         (SELECT array_to_string(x.option_ids, ',') FROM ballots x WHERE x.poll_id = k.poll_id AND x.user_id = k.user_id)
       END
  FROM chk k LEFT JOIN b ON b.poll_id = k.poll_id AND b.user_id = k.user_id
 ORDER BY k.n)";

constexpr std::string_view kStored =
    "SELECT array_to_string(option_ids, ',') FROM ballots WHERE poll_id = $1 AND user_id = $2";

VoteResult against_stored(const std::vector<std::string>& stored, const std::vector<std::string>& wanted) {
  return VoteResult{stored == wanted ? VoteOutcome::same_again : VoteOutcome::already_voted, stored};
}

}  // namespace

BallotBoxConfig BallotBoxConfig::from_env() {
  BallotBoxConfig c;
  c.max_batch = static_cast<std::size_t>(
      env::integer("NIMBUS_VOTE_MAX_BATCH", static_cast<std::int64_t>(c.max_batch), 1, 10'000));
  c.flushers =
      static_cast<std::size_t>(env::integer("NIMBUS_VOTE_FLUSHERS", static_cast<std::int64_t>(c.flushers), 1, 64));
  c.max_queued = static_cast<std::size_t>(
      env::integer("NIMBUS_VOTE_MAX_QUEUED", static_cast<std::int64_t>(c.max_queued), 1, 1'000'000));
  return c;
}

BallotBox::BallotBox(asio::any_io_executor executor, std::shared_ptr<pg::Pool> pg, std::shared_ptr<Tally> tally,
                     BallotBoxConfig config, std::shared_ptr<const core::Clock> clock)
    : executor_(std::move(executor)),
      pg_(std::move(pg)),
      tally_(std::move(tally)),
      config_(config),
      clock_(std::move(clock)),
      batch_sizes_(std::make_shared<ops::Histogram>(std::vector<double>(kBatchBuckets.begin(), kBatchBuckets.end()))),
      stages_{stage_histogram(), stage_histogram(), stage_histogram(), stage_histogram()} {}

void BallotBox::export_metrics(ops::Metrics& metrics) const {
  metrics.histogram("nimbus_vote_batch_size", "Ballots per group-commit batch statement.", batch_sizes_);
  metrics.histogram("nimbus_vote_queue_seconds", "A vote's wait in the ballot box until its batch is taken.",
                    stages_.queue);
  metrics.histogram("nimbus_vote_write_seconds", "A batch statement and its commit, per vote in the batch.",
                    stages_.write);
  metrics.histogram("nimbus_vote_count_seconds", "Counting a committed batch in Redis, per vote in the batch.",
                    stages_.count);
  metrics.histogram("nimbus_vote_box_seconds", "A vote from entering the ballot box to its outcome.", stages_.box);
}

std::shared_ptr<BallotBox> BallotBox::create(asio::any_io_executor executor, std::shared_ptr<pg::Pool> pg,
                                             std::shared_ptr<Tally> tally, BallotBoxConfig config,
                                             std::shared_ptr<const core::Clock> clock) {
  return std::shared_ptr<BallotBox>(
      new BallotBox(std::move(executor), std::move(pg), std::move(tally), config, std::move(clock)));
}

asio::awaitable<VoteResult> BallotBox::cast(Ballot ballot) {
  const auto entered = std::chrono::steady_clock::now();
  auto done = std::make_shared<OneShot<Outcome>>(executor_);
  bool spawn = false;
  {
    std::lock_guard lock(mutex_);
    // A database slower than the arrivals (or stalled) must not grow the queue without
    // bound: past the limit a vote is refused at once, 503 + Retry-After.
    if (queue_.size() >= config_.max_queued) throw DependencyUnavailable("postgres", "vote queue full");
    queue_.push_back(Pending{std::move(ballot), done, entered});
    if (flushing_ < config_.flushers) {
      ++flushing_;
      spawn = true;
    }
  }
  if (spawn) asio::co_spawn(executor_, flush_loop(shared_from_this()), asio::detached);
  // A flusher always finishes its batch (statement_timeout bounds the database), so
  // the deadline — of a real wait, so on the real clock — is only a backstop against a
  // bug leaving a vote waiting forever.
  auto outcome = co_await done->wait_until(std::chrono::steady_clock::now() + std::chrono::minutes(2));
  stages_.box->observe(seconds_since(entered));
  if (!outcome) throw std::runtime_error("ballot box: no outcome");
  if (auto* error = std::get_if<std::exception_ptr>(&*outcome)) std::rethrow_exception(*error);
  co_return std::get<VoteResult>(std::move(*outcome));
}

// The oldest queued ballots, at most one per (poll, user): a second vote of the same
// user in the same poll waits for the next batch and then meets the first one's row.
std::vector<BallotBox::Pending> BallotBox::take_batch() {
  std::lock_guard lock(mutex_);
  std::vector<Pending> batch;
  std::set<std::pair<std::string, std::string>> in_batch;
  for (auto it = queue_.begin(); it != queue_.end() && batch.size() < config_.max_batch;) {
    if (in_batch.emplace(it->ballot.poll_id, it->ballot.user_id).second) {
      batch.push_back(std::move(*it));
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
  if (batch.empty()) --flushing_;  // under the lock: a vote queued after this spawns a flusher
  return batch;
}

asio::awaitable<void> BallotBox::flush_loop(std::shared_ptr<BallotBox> self) {
  for (;;) {
    auto batch = self->take_batch();
    if (batch.empty()) co_return;
    self->batch_sizes_->observe(static_cast<double>(batch.size()));
    for (const auto& p : batch) self->stages_.queue->observe(seconds_since(p.queued));
    std::vector<VoteResult> results;
    std::exception_ptr failure;
    const auto writing = std::chrono::steady_clock::now();
    try {
      results = co_await self->write(batch);
      observe_each(*self->stages_.write, seconds_since(writing), batch.size());
    } catch (...) {
      failure = std::current_exception();
    }
    // Counting and answering go on beside the next batch: this flusher's next
    // statement need not wait for Redis.
    asio::co_spawn(self->executor_, deliver(self, std::move(batch), std::move(results), failure), asio::detached);
  }
}

asio::awaitable<void> BallotBox::deliver(std::shared_ptr<BallotBox> self, std::vector<Pending> batch,
                                         std::vector<VoteResult> results, std::exception_ptr failure) {
  if (!failure) {
    // Count in Redis after the commit and before anyone hears 201, so a voter reads
    // their own vote in the results. A stored ballot met again is counted too: that
    // repairs a count lost to a crash between commit and count (the script skips
    // ballots it has). If Redis is down the vote still stands; the reconciler counts
    // it later.
    std::vector<Ballot> committed;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (results[i].outcome == VoteOutcome::created || results[i].outcome == VoteOutcome::same_again) {
        committed.push_back(Ballot{batch[i].ballot.poll_id, batch[i].ballot.user_id, results[i].option_ids});
      }
    }
    if (!committed.empty()) {
      try {
        const auto counting = std::chrono::steady_clock::now();
        co_await self->tally_->count(committed);
        observe_each(*self->stages_.count, seconds_since(counting), committed.size());
      } catch (const std::exception& e) {
        log::warn("counting committed ballots failed", {{"ballots", committed.size()}, {"error", e.what()}});
      }
    }
  }
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (failure) {
      batch[i].done->set(failure);
    } else {
      batch[i].done->set(std::move(results[i]));
    }
  }
}

// Polls of the batch not marked active by this instance in the last few seconds.
std::vector<std::string> BallotBox::unmarked(const std::vector<Pending>& batch) {
  constexpr auto kRemark = std::chrono::seconds(5);
  const auto now = clock_->steady_now();
  std::vector<std::string> out;
  std::lock_guard lock(mutex_);
  if (marked_.size() > 100'000) marked_.clear();
  for (const auto& p : batch) {
    auto [it, fresh] = marked_.try_emplace(p.ballot.poll_id, now);
    if (fresh || now - it->second > kRemark) {
      it->second = now;
      out.push_back(p.ballot.poll_id);
    }
  }
  return out;
}

asio::awaitable<std::vector<VoteResult>> BallotBox::write(const std::vector<Pending>& batch) {
  // Before the commit: if this process dies between commit and counting, the
  // reconciler knows which polls to check.
  if (auto polls = unmarked(batch); !polls.empty()) {
    try {
      co_await tally_->mark_active(polls);
    } catch (const std::exception& e) {
      log::warn("marking polls active failed", {{"error", e.what()}});
    }
  }
  try {
    co_return co_await write_batch(batch);
  } catch (const pg::Error& e) {
    // 23503: a poll (or user) deleted while the batch was written. One such ballot
    // must not fail the others: write them one by one.
    if (e.sqlstate() != "23503") throw;
  }
  std::vector<VoteResult> results;
  for (const auto& p : batch) {
    std::vector<Pending> one;
    one.push_back(Pending{p.ballot, nullptr});
    try {
      auto r = co_await write_batch(one);
      results.push_back(std::move(r.front()));
    } catch (const pg::Error& e) {
      if (e.sqlstate() != "23503") throw;
      results.push_back(VoteResult{VoteOutcome::not_found, {}});
    }
  }
  co_return results;
}

asio::awaitable<std::vector<VoteResult>> BallotBox::write_batch(const std::vector<Pending>& batch) {
  std::vector<std::string> polls, users, selections;
  for (const auto& p : batch) {
    polls.push_back(p.ballot.poll_id);
    users.push_back(p.ballot.user_id);
    selections.push_back(join_ids(p.ballot.option_ids));
  }
  auto db = co_await pg_->acquire();
  auto r = co_await db.query(
      kCastBatch, pg::params(pg::array_literal(polls), pg::array_literal(users), pg::array_literal(selections)));
  if (r.rows() != static_cast<int>(batch.size())) throw std::runtime_error("ballot batch: row count mismatch");
  std::vector<VoteResult> results;
  for (int i = 0; i < r.rows(); ++i) {
    const auto& wanted = batch[static_cast<std::size_t>(i)].ballot.option_ids;
    if (!r.get_bool(i, 0)) {
      results.push_back({VoteOutcome::not_found, {}});
    } else if (r.get_bool(i, 4)) {
      results.push_back({VoteOutcome::created, wanted});
    } else if (!r.is_null(i, 5)) {
      results.push_back(against_stored(split_ids(r.get(i, 5)), wanted));
    } else if (!r.get_bool(i, 1)) {
      results.push_back({VoteOutcome::poll_closed, {}});
    } else if (!r.get_bool(i, 2) || !r.get_bool(i, 3)) {
      results.push_back({VoteOutcome::invalid_options, {}});
    } else {
      // Valid and open, not inserted, yet no ballot in the statement's snapshot: the
      // same user's vote from another instance committed meanwhile. Read it now.
      auto again = co_await db.query(kStored, pg::params(batch[static_cast<std::size_t>(i)].ballot.poll_id,
                                                         batch[static_cast<std::size_t>(i)].ballot.user_id));
      if (again.rows() == 0) throw std::runtime_error("ballot conflict without a ballot");
      results.push_back(against_stored(split_ids(again.get(0, 0)), wanted));
    }
  }
  co_return results;
}

}  // namespace nimbus::voting
