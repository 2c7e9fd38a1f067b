// Counts in Redis the ballots a crash left uncounted.
//
// An API instance counts a ballot right after its commit; if the instance dies in
// between, PostgreSQL has the ballot and the tally lacks it. Before writing, the ballot
// box marks the poll active (tally.hpp). Every `interval` one worker (a Redis lock)
// takes the polls marked within `window`, counts each one's ballots in PostgreSQL, waits
// `settle` — longer than any live instance takes from COMMIT to counting — and reads
// the tally: a tally below the count taken earlier has lost a ballot, and that poll is
// re-counted through the same idempotent script (ballots already counted are skipped).
// The cost is one index-only count per recently active poll per interval; a re-count
// happens only after a loss. Each pass also settles the polls' closes and deletes whose
// instance died between PostgreSQL's commit and recording the outcome in Redis
// (their intent markers older than 30 s), from the row.
#pragma once

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <memory>

#include "core/clock.hpp"
#include "ops/metrics.hpp"
#include "store/pg/pool.hpp"
#include "store/redis/client.hpp"
#include "voting/tally.hpp"

namespace nimbus::voting {

struct ReconcilerConfig {
  std::chrono::milliseconds interval{30'000};
  std::chrono::milliseconds window{120'000};
  std::chrono::milliseconds settle{2'000};

  // NIMBUS_TALLY_RECONCILE_INTERVAL, NIMBUS_TALLY_RECONCILE_WINDOW, NIMBUS_TALLY_RECONCILE_SETTLE.
  static ReconcilerConfig from_env();
};

class Reconciler {
 public:
  // `clock` decides which marks fall within `window` (the settle wait and the interval
  // are real waits, on timers).
  Reconciler(std::shared_ptr<pg::Pool> pg, std::shared_ptr<redis::Client> redis, std::shared_ptr<Tally> tally,
             ReconcilerConfig config, std::shared_ptr<const core::Clock> clock = core::Clock::system())
      : pg_(std::move(pg)),
        redis_(std::move(redis)),
        tally_(std::move(tally)),
        config_(config),
        clock_(std::move(clock)) {}

  boost::asio::awaitable<void> run();
  void stop() { stopping_ = true; }
  // One pass; returns how many polls had lost counts and were re-counted.
  boost::asio::awaitable<std::int64_t> pass();
  void export_metrics(ops::Metrics& metrics);

 private:
  std::shared_ptr<pg::Pool> pg_;
  std::shared_ptr<redis::Client> redis_;
  std::shared_ptr<Tally> tally_;
  ReconcilerConfig config_;
  std::shared_ptr<const core::Clock> clock_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::int64_t> recounted_{0}, settled_{0}, passes_{0};
};

}  // namespace nimbus::voting
