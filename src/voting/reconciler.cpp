#include "voting/reconciler.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/env.hpp"
#include "core/log.hpp"

namespace nimbus::voting {

namespace asio = boost::asio;

namespace {

constexpr std::string_view kCount = "SELECT count(*) FROM ballots WHERE poll_id = $1";

// A close or delete marked longer ago than this has lost its writer: its statement
// (statement_timeout, 5 s by default) cannot still be running.
constexpr std::chrono::seconds kChangeAbandonedAfter{30};

}  // namespace

ReconcilerConfig ReconcilerConfig::from_env() {
  ReconcilerConfig c;
  c.interval = env::duration("NIMBUS_TALLY_RECONCILE_INTERVAL", c.interval);
  c.window = env::duration("NIMBUS_TALLY_RECONCILE_WINDOW", c.window);
  c.settle = env::duration("NIMBUS_TALLY_RECONCILE_SETTLE", c.settle);
  if (c.window < c.interval) throw env::ConfigError("NIMBUS_TALLY_RECONCILE_WINDOW must cover the interval");
  return c;
}

void Reconciler::export_metrics(ops::Metrics& metrics) {
  metrics.counter_fn("nimbus_tally_recounted_total", "Polls whose Redis tally had lost ballots and was re-counted.",
                     [this] { return static_cast<double>(recounted_.load()); });
  metrics.counter_fn("nimbus_tally_changes_settled_total",
                     "Poll closes and deletes left unfinished by their instance, settled from the row.",
                     [this] { return static_cast<double>(settled_.load()); });
  metrics.counter_fn("nimbus_tally_reconcile_passes_total", "Reconciler passes completed by this worker.",
                     [this] { return static_cast<double>(passes_.load()); });
}

asio::awaitable<std::int64_t> Reconciler::pass() {
  const auto now = clock_->system_now();
  settled_ += co_await tally_->settle_stale_changes(
      std::chrono::duration_cast<std::chrono::seconds>((now - kChangeAbandonedAfter).time_since_epoch()).count());
  const auto since =
      std::chrono::duration_cast<std::chrono::seconds>((now - config_.window).time_since_epoch()).count();
  auto polls = co_await tally_->active_since(since);
  // Counts first, tallies after the settle time: every ballot in a count committed
  // before it was taken, so a live writer has counted it by the time we look.
  std::vector<std::pair<std::string, std::int64_t>> committed;
  for (const auto& poll : polls) {
    auto db = co_await pg_->acquire();
    auto r = co_await db.query(kCount, pg::params(poll));
    committed.emplace_back(poll, r.get_int(0, 0));
  }
  if (committed.empty()) co_return 0;
  asio::steady_timer settle(co_await asio::this_coro::executor, config_.settle);
  co_await settle.async_wait(asio::as_tuple(asio::use_awaitable));
  std::int64_t repaired = 0;
  for (const auto& [poll, count] : committed) {
    auto counted = co_await tally_->counted_total(poll);
    if (!counted || *counted >= count) continue;  // complete, or being rebuilt anyway
    log::warn("tally lost ballots: re-counting", {{"poll_id", poll}, {"committed", count}, {"counted", *counted}});
    co_await tally_->rebuild(poll);
    ++repaired;
  }
  co_return repaired;
}

asio::awaitable<void> Reconciler::run() {
  asio::steady_timer tick(co_await asio::this_coro::executor);
  while (!stopping_) {
    tick.expires_after(config_.interval);
    co_await tick.async_wait(asio::as_tuple(asio::use_awaitable));
    if (stopping_) break;
    try {
      // One worker per interval; the lock expires by itself if its holder dies.
      const auto ms = std::to_string(std::max<std::int64_t>(1000, config_.interval.count() - 1000));
      auto lock = co_await redis_->command("SET", "tally:reconcile", "1", "NX", "PX", ms);
      if (lock.type != redis::Reply::Type::status) continue;
      recounted_ += co_await pass();
      ++passes_;
    } catch (const std::exception& e) {
      log::warn("tally reconcile failed", {{"error", e.what()}});
    }
  }
}

}  // namespace nimbus::voting
