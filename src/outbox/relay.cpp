#include "outbox/relay.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/log.hpp"
#include "ops/metrics.hpp"

namespace nimbus::outbox {

namespace asio = boost::asio;

namespace {

constexpr std::string_view kClaim = R"(
SELECT id, message_id, exchange, routing_key, payload::text
  FROM outbox
 WHERE published_at IS NULL AND routing_key = ANY($2::text[])
 ORDER BY id
 LIMIT $1
   FOR UPDATE SKIP LOCKED)";
constexpr std::string_view kMarkSent = R"(
UPDATE outbox SET published_at = now(),
                  payload = CASE WHEN sensitive THEN '{"redacted":true}'::jsonb ELSE payload END
 WHERE id = ANY($1::bigint[]))";
constexpr std::string_view kPurge = "DELETE FROM outbox WHERE published_at < now() - make_interval(hours => $1::int)";

}  // namespace

std::vector<std::string> RelayConfig::default_routing_keys() {
  std::vector<std::string> keys;
  for (auto q : amqp::topology::work_queues()) keys.emplace_back(q);
  return keys;
}

Relay::Relay(std::shared_ptr<pg::Pool> pool, amqp::Publisher& publisher, RelayConfig config)
    : pool_(std::move(pool)), publisher_(publisher), config_(std::move(config)) {
  // A PostgreSQL array literal; the keys are queue names, quoted all the same.
  routing_keys_ = "{";
  for (const auto& k : config_.routing_keys) {
    if (routing_keys_.size() > 1) routing_keys_ += ',';
    routing_keys_ += '"' + k + '"';
  }
  routing_keys_ += '}';
}

void Relay::export_metrics(ops::Metrics& metrics) {
  metrics.counter_fn("nimbus_outbox_published_total", "Outbox messages published by this relay.",
                     [this] { return static_cast<double>(published_.load()); });
  metrics.counter_fn("nimbus_outbox_failures_total", "Relay batches that failed and will be retried.",
                     [this] { return static_cast<double>(failures_.load()); });
}

asio::awaitable<int> Relay::run_once(std::function<void()> after_publish) {
  auto db = co_await pool_->acquire();
  co_await db.execute_script("BEGIN");
  auto rows = co_await db.query(kClaim, pg::params(config_.batch_size, routing_keys_));
  if (rows.rows() == 0) {
    co_await db.execute_script("COMMIT");
    co_return 0;
  }
  std::vector<amqp::Message> messages;
  messages.reserve(static_cast<std::size_t>(rows.rows()));
  std::string ids = "{";
  for (int i = 0; i < rows.rows(); ++i) {
    amqp::Message m;
    m.message_id = rows.get(i, 1);
    m.exchange = rows.get(i, 2);
    m.routing_key = rows.get(i, 3);
    m.body = rows.get(i, 4);
    messages.push_back(std::move(m));
    if (i > 0) ids += ',';
    ids += rows.get(i, 0);
  }
  ids += '}';
  // If anything below throws, the lease closes its connection mid-transaction: the
  // server rolls back and the rows are claimed again later.
  co_await publisher_.publish(std::move(messages));
  if (after_publish) after_publish();
  co_await db.query(kMarkSent, pg::params(ids));
  co_await db.execute_script("COMMIT");
  published_ += static_cast<std::uint64_t>(rows.rows());
  co_return rows.rows();
}

asio::awaitable<void> Relay::purge_published() {
  auto db = co_await pool_->acquire();
  auto r = co_await db.query(kPurge, pg::params(static_cast<int>(config_.retention.count())));
  if (r.affected() > 0) log::info("outbox purged", {{"rows", r.affected()}});
}

asio::awaitable<void> Relay::run() {
  running_ = true;
  struct Done {
    std::atomic<bool>& flag;
    ~Done() { flag = false; }
  } done{running_};
  std::unique_ptr<pg::Connection> listener;
  asio::steady_timer pause(co_await asio::this_coro::executor);
  auto next_purge = std::chrono::steady_clock::now();
  std::chrono::milliseconds backoff{200};
  while (!stopping_) {
    try {
      if (!listener) {
        listener = co_await pool_->connect_dedicated();
        co_await listener->execute_script("LISTEN outbox", std::chrono::steady_clock::now() + std::chrono::seconds(5));
      }
      // Drain, then sleep until a commit NOTIFYs us (or the poll interval passes).
      while (!stopping_) {
        const int sent = co_await run_once();
        if (sent < config_.batch_size) break;
      }
      if (std::chrono::steady_clock::now() >= next_purge) {
        co_await purge_published();
        next_purge = std::chrono::steady_clock::now() + std::chrono::minutes(10);
      }
      // In short slices, so that stop() is noticed quickly.
      const auto poll_at = std::chrono::steady_clock::now() + config_.poll_interval;
      while (!stopping_ && std::chrono::steady_clock::now() < poll_at) {
        const auto slice = std::min(poll_at, std::chrono::steady_clock::now() + std::chrono::milliseconds(200));
        if (!(co_await listener->wait_notifications(slice)).empty()) break;
      }
      backoff = std::chrono::milliseconds(200);
    } catch (const std::exception& e) {
      ++failures_;
      log::warn("outbox relay failed; retrying", {{"error", e.what()}, {"retry_ms", backoff.count()}});
      if (listener && !listener->alive()) listener.reset();
      pause.expires_after(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(5'000));
    }
    if (pause.expiry() > std::chrono::steady_clock::now())
      co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

}  // namespace nimbus::outbox
