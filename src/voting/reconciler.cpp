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

// Keyset pages in (created_at, poll_id, user_id) order over the window.
constexpr std::string_view kRecent = R"(
SELECT poll_id, user_id, array_to_string(option_ids, ','), created_at::text
  FROM ballots
 WHERE created_at >= now() - make_interval(secs => $1::double precision)
   AND (created_at, poll_id, user_id) > ($2::timestamptz, $3::uuid, $4::uuid)
 ORDER BY created_at, poll_id, user_id
 LIMIT 2000)";

}  // namespace

ReconcilerConfig ReconcilerConfig::from_env() {
  ReconcilerConfig c;
  c.interval = env::duration("NIMBUS_TALLY_RECONCILE_INTERVAL", c.interval);
  c.window = env::duration("NIMBUS_TALLY_RECONCILE_WINDOW", c.window);
  if (c.window < c.interval) throw env::ConfigError("NIMBUS_TALLY_RECONCILE_WINDOW must cover the interval");
  return c;
}

void Reconciler::export_metrics(http::Metrics& metrics) {
  metrics.counter_fn("nimbus_tally_recounted_total", "Committed ballots the reconciler found uncounted in Redis.",
                     [this] { return static_cast<double>(recounted_.load()); });
  metrics.counter_fn("nimbus_tally_reconcile_passes_total", "Reconciler passes completed by this worker.",
                     [this] { return static_cast<double>(passes_.load()); });
}

asio::awaitable<std::int64_t> Reconciler::pass() {
  const double window_s = std::chrono::duration<double>(config_.window).count();
  std::string after_time = "-infinity", after_poll = "00000000-0000-0000-0000-000000000000", after_user = after_poll;
  std::int64_t added = 0;
  for (;;) {
    pg::Result page;
    {
      auto db = co_await pg_->acquire();
      page = co_await db.query(kRecent, pg::params(window_s, after_time, after_poll, after_user));
    }
    if (page.rows() == 0) break;
    std::vector<Ballot> ballots;
    for (int i = 0; i < page.rows(); ++i) {
      ballots.push_back(Ballot{std::string(page.get(i, 0)), std::string(page.get(i, 1)), split_ids(page.get(i, 2))});
    }
    const int last = page.rows() - 1;
    after_time = page.get(last, 3);
    after_poll = page.get(last, 0);
    after_user = page.get(last, 1);
    added += co_await tally_->count(ballots);
  }
  co_return added;
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
      auto added = co_await pass();
      ++passes_;
      recounted_ += added;
      if (added > 0) log::warn("tally reconciler counted missed ballots", {{"ballots", added}});
    } catch (const std::exception& e) {
      log::warn("tally reconcile failed", {{"error", e.what()}});
    }
  }
}

}  // namespace nimbus::voting
