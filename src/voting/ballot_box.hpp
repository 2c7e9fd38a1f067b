// Casting ballots with group commit.
//
// Every vote waits for a COMMIT, and a commit waits for the WAL to reach the disk, so
// one transaction per vote makes the disk flush the limit. The ballot box batches the
// votes that arrive while earlier ones are being written: a vote on an idle box is
// written at once (a batch of one, no added latency); under load, each flusher takes
// everything queued so far (up to `max_batch`) into one statement and one commit. The
// statement checks each ballot on its own — poll exists and is open, selection within
// max_choices and of the poll's options — and the primary key of `ballots` still
// refuses a second ballot per (poll, user) under any concurrency, so batching changes
// the cost of a vote, not its rules or its durability (the caller hears 201 only after
// the commit).
//
// Thread-safety: cast() may be called from any thread.
#pragma once

#include <array>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <variant>

#include "core/clock.hpp"
#include "core/oneshot.hpp"
#include "ops/metrics.hpp"
#include "store/pg/pool.hpp"
#include "voting/tally.hpp"

namespace nimbus::voting {

enum class VoteOutcome { created, same_again, already_voted, poll_closed, not_found, invalid_options };

struct VoteResult {
  VoteOutcome outcome;
  std::vector<std::string> option_ids;  // the stored selection
};

struct BallotBoxConfig {
  std::size_t max_batch = 256;
  // Batches in flight at once, per instance. One measured best on the 2-core machine
  // with 3 instances (bench/README.md, "Flushers"): batches twice as large (mean 10.6
  // against 5.9 ballots), a fifth less PostgreSQL CPU per vote, and saturated votes/s
  // 0.97-1.36 of the pgbench anchor against 0.79-1.06 with two, alternating runs.
  std::size_t flushers = 1;
  // Votes waiting for a batch, per instance; more are refused (503) until it drains.
  std::size_t max_queued = 10'000;

  // NIMBUS_VOTE_MAX_BATCH, NIMBUS_VOTE_FLUSHERS, NIMBUS_VOTE_MAX_QUEUED.
  static BallotBoxConfig from_env();
};

class BallotBox : public std::enable_shared_from_this<BallotBox> {
 public:
  // `clock` spaces the re-marking of active polls (see unmarked()).
  static std::shared_ptr<BallotBox> create(boost::asio::any_io_executor executor, std::shared_ptr<pg::Pool> pg,
                                           std::shared_ptr<Tally> tally, BallotBoxConfig config = {},
                                           std::shared_ptr<const core::Clock> clock = core::Clock::system());

  // Casts one ballot (option_ids sorted and distinct) and counts it in Redis once
  // committed. Throws what the database throws (DependencyUnavailable while it is down).
  boost::asio::awaitable<VoteResult> cast(Ballot ballot);

  // nimbus_vote_batch_size: ballots per batch statement (bench/votes.py reads it to run
  // its ceiling at the batch sizes the server forms). nimbus_vote_{queue,write,count,
  // box}_seconds: where a vote's time in the box goes — waiting for its batch, the
  // batch's statement and commit, the count in Redis, and queued to answered.
  void export_metrics(ops::Metrics& metrics) const;
  static constexpr std::array<double, 9> kBatchBuckets = {1, 2, 4, 8, 16, 32, 64, 128, 256};
  static constexpr std::array<double, 13> kStageBuckets = {0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016,
                                                           0.032,   0.064,  0.128, 0.256, 0.512, 1.024};

 private:
  using Outcome = std::variant<VoteResult, std::exception_ptr>;
  struct Pending {
    Ballot ballot;
    std::shared_ptr<OneShot<Outcome>> done;
    std::chrono::steady_clock::time_point queued{};
  };

  BallotBox(boost::asio::any_io_executor executor, std::shared_ptr<pg::Pool> pg, std::shared_ptr<Tally> tally,
            BallotBoxConfig config, std::shared_ptr<const core::Clock> clock);
  static boost::asio::awaitable<void> flush_loop(std::shared_ptr<BallotBox> self);
  // Counts a committed batch in Redis, then answers its votes.
  static boost::asio::awaitable<void> deliver(std::shared_ptr<BallotBox> self, std::vector<Pending> batch,
                                              std::vector<VoteResult> results, std::exception_ptr failure);
  std::vector<Pending> take_batch();
  boost::asio::awaitable<std::vector<VoteResult>> write(const std::vector<Pending>& batch);
  boost::asio::awaitable<std::vector<VoteResult>> write_batch(const std::vector<Pending>& batch);

  boost::asio::any_io_executor executor_;
  std::shared_ptr<pg::Pool> pg_;
  std::shared_ptr<Tally> tally_;
  BallotBoxConfig config_;
  std::shared_ptr<const core::Clock> clock_;
  std::shared_ptr<ops::Histogram> batch_sizes_;
  struct Stages {
    std::shared_ptr<ops::Histogram> queue, write, count, box;
  } stages_;

  // Polls this instance marked active, and when (see Tally::mark_active).
  std::vector<std::string> unmarked(const std::vector<Pending>& batch);
  std::map<std::string, std::chrono::steady_clock::time_point> marked_;

  std::mutex mutex_;
  std::deque<Pending> queue_;
  std::size_t flushing_ = 0;
};

}  // namespace nimbus::voting
