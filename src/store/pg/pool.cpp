#include "store/pg/pool.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/env.hpp"
#include "core/errors.hpp"
#include "core/log.hpp"
#include "core/oneshot.hpp"
#include "core/random.hpp"
#include "ops/metrics.hpp"

namespace nimbus::pg {

namespace asio = boost::asio;
using std::chrono::milliseconds;

PoolConfig PoolConfig::from_env() {
  PoolConfig c;
  c.url = env::required_string("NIMBUS_DATABASE_URL");
  c.size = static_cast<std::size_t>(env::integer("NIMBUS_PG_POOL_SIZE", static_cast<std::int64_t>(c.size), 1, 1000));
  c.acquire_timeout = env::duration("NIMBUS_PG_ACQUIRE_TIMEOUT", c.acquire_timeout);
  c.connect_timeout = env::duration("NIMBUS_PG_CONNECT_TIMEOUT", c.connect_timeout);
  c.statement_timeout = env::duration("NIMBUS_PG_STATEMENT_TIMEOUT", c.statement_timeout);
  return c;
}

// A coroutine waiting for a connection. `handed` is guarded by Pool::mutex_; the
// connection itself travels through `slot` (nullptr: a slot was freed, open one).
struct Pool::Waiter {
  explicit Waiter(asio::any_io_executor ex) : slot(std::move(ex)) {}
  OneShot<std::unique_ptr<Connection>> slot;
  bool handed = false;
};

std::shared_ptr<Pool> Pool::create(asio::any_io_executor executor, PoolConfig config) {
  return std::shared_ptr<Pool>(new Pool(std::move(executor), std::move(config)));
}

namespace {
// A silent peer (partition, dead host) is found by the kernel: keepalive probes after
// 5 s idle, and unacknowledged data gives up after 10 s.
constexpr const char* kLiveness =
    "&keepalives=1&keepalives_idle=5&keepalives_interval=2&keepalives_count=3"
    "&tcp_user_timeout=10000";
constexpr const char* kLivenessKeywords =
    " keepalives=1 keepalives_idle=5 keepalives_interval=2 keepalives_count=3 tcp_user_timeout=10000";
}  // namespace

Pool::Pool(asio::any_io_executor executor, PoolConfig config)
    : executor_(std::move(executor)), config_(std::move(config)) {
  // Server-side limit as well, so an abandoned statement never runs on.
  conninfo_ = config_.url;
  const auto sep =
      conninfo_.find("://") != std::string::npos ? (conninfo_.find('?') == std::string::npos ? "?" : "&") : " ";
  std::vector<std::pair<std::string, std::string>> settings = {
      {"statement_timeout", std::to_string(config_.statement_timeout.count())}};
  settings.insert(settings.end(), config_.settings.begin(), config_.settings.end());
  if (conninfo_.find("://") != std::string::npos) {
    std::string options;
    for (const auto& [name, value] : settings)
      options += (options.empty() ? "-c%20" : "%20-c%20") + name + "%3D" + value;
    conninfo_ += sep + std::string("options=") + options + "&application_name=nimbus" + kLiveness;
  } else {
    std::string options;
    for (const auto& [name, value] : settings) options += (options.empty() ? "-c " : " -c ") + name + "=" + value;
    conninfo_ += " options='" + options + "' application_name=nimbus" + kLivenessKeywords;
  }
}

std::chrono::steady_clock::time_point Pool::deadline() const {
  return std::chrono::steady_clock::now() + config_.statement_timeout;
}

Pool::Stats Pool::stats() const {
  std::lock_guard lock(mutex_);
  return {open_, idle_.size(), waiters_.size()};
}

void Pool::export_metrics(ops::Metrics& metrics) {
  auto self = weak_from_this();
  auto read = [self](auto field) {
    return [self, field] {
      auto p = self.lock();
      return p ? static_cast<double>(p->stats().*field) : 0.0;
    };
  };
  metrics.gauge_fn("nimbus_pg_pool_open", "PostgreSQL connections open (idle + in use).", read(&Stats::open));
  metrics.gauge_fn("nimbus_pg_pool_idle", "PostgreSQL connections idle in the pool.", read(&Stats::idle));
  metrics.gauge_fn("nimbus_pg_pool_waiting", "Requests waiting for a PostgreSQL connection.", read(&Stats::waiting));
}

asio::awaitable<std::unique_ptr<Connection>> Pool::open_connection() {
  auto conn = std::make_unique<Connection>(executor_);
  try {
    co_await conn->connect(conninfo_, std::chrono::steady_clock::now() + config_.connect_timeout);
  } catch (const DependencyUnavailable& e) {
    // Jittered exponential backoff (100 ms → 2 s): while the server is down, callers
    // fail fast instead of queueing connects against it.
    std::lock_guard lock(mutex_);
    backoff_ =
        std::min<milliseconds>(milliseconds(2'000), backoff_ == milliseconds(0) ? milliseconds(100) : backoff_ * 2);
    retry_after_ = std::chrono::steady_clock::now() + backoff_ / 2 + random::jitter(backoff_ / 2);
    throw;
  }
  {
    std::lock_guard lock(mutex_);
    if (backoff_ != milliseconds(0)) log::info("postgres reachable again");
    backoff_ = milliseconds(0);
  }
  co_return conn;
}

asio::awaitable<Lease> Pool::acquire() {
  auto self = shared_from_this();
  const auto executor = co_await asio::this_coro::executor;  // (not under the mutex below)
  const auto give_up = std::chrono::steady_clock::now() + config_.acquire_timeout;
  for (;;) {
    std::unique_ptr<Connection> conn;
    bool open_new = false;
    std::shared_ptr<Waiter> waiter;
    {
      std::lock_guard lock(mutex_);
      if (!idle_.empty()) {
        conn = std::move(idle_.back());
        idle_.pop_back();
      } else if (open_ < config_.size) {
        if (std::chrono::steady_clock::now() < retry_after_) {
          throw DependencyUnavailable("postgres", "reconnect backoff in progress");
        }
        ++open_;
        open_new = true;
      } else {
        waiter = std::make_shared<Waiter>(executor);
        waiters_.push_back(waiter);
      }
    }

    if (conn) {
      if (conn->alive()) co_return Lease(self, std::move(conn));
      conn.reset();  // died while idle (server restart): drop it and try again
      std::lock_guard lock(mutex_);
      --open_;
      continue;
    }
    if (open_new) {
      try {
        co_return Lease(self, co_await open_connection());
      } catch (...) {
        release(nullptr);  // gives the slot back (and to a waiter, if any)
        throw;
      }
    }

    auto got = co_await waiter->slot.wait_until(give_up);
    if (!got) {
      std::unique_lock lock(mutex_);
      if (waiter->handed) {
        lock.unlock();
        got = waiter->slot.take_now();  // handed over just as the deadline passed
      } else {
        std::erase(waiters_, waiter);
      }
    }
    if (got) {
      if (!*got) continue;  // a slot was freed for us: open_ was given back, loop re-checks
      if ((*got)->alive()) co_return Lease(self, std::move(*got));
      std::lock_guard lock(mutex_);
      --open_;
      continue;
    }
    throw DependencyUnavailable("postgres", "no connection free within the acquire timeout");
  }
}

void Pool::release(std::unique_ptr<Connection> conn) {
  std::lock_guard lock(mutex_);
  // A broken connection, or one left inside a transaction by an error path, is closed:
  // its slot goes back to the pool.
  if (conn && !(conn->alive() && conn->idle_in_no_transaction())) conn.reset();
  if (!waiters_.empty()) {
    auto w = waiters_.front();
    waiters_.pop_front();
    w->handed = true;
    if (!conn) --open_;  // the waiter counts the slot again when it opens
    w->slot.set(std::move(conn));
    return;
  }
  if (conn) {
    idle_.push_back(std::move(conn));
  } else {
    --open_;
  }
}

asio::awaitable<std::unique_ptr<Connection>> Pool::connect_dedicated() {
  co_return co_await open_connection();
}

asio::awaitable<bool> Pool::ping() {
  try {
    auto lease = co_await acquire();
    auto r = co_await lease.query("SELECT 1");
    co_return r.rows() == 1;
  } catch (const std::exception&) {
    co_return false;
  }
}

Lease::Lease(std::shared_ptr<Pool> pool, std::unique_ptr<Connection> conn)
    : pool_(std::move(pool)), conn_(std::move(conn)) {}

Lease::~Lease() {
  if (pool_) pool_->release(std::move(conn_));
}

asio::awaitable<Result> Lease::query(std::string_view sql, const Params& params) {
  co_return co_await conn_->query(sql, params, pool_->deadline());
}

asio::awaitable<std::vector<Result>> Lease::pipeline(const std::vector<Statement>& statements) {
  co_return co_await conn_->pipeline(statements, pool_->deadline());
}

asio::awaitable<void> Lease::execute_script(std::string_view sql) {
  co_await conn_->execute_script(sql, pool_->deadline());
}

}  // namespace nimbus::pg
