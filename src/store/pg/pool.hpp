// A pool of PostgreSQL connections shared by every request of an instance.
//
// acquire() hands out a Lease (RAII: the connection returns when the lease dies). The
// pool grows lazily to `size`, waits up to `acquire_timeout` for a free connection, and
// while the server is unreachable fails fast: after a failed connect, new attempts wait
// out a jittered, growing backoff and callers get DependencyUnavailable at once (503).
// Dead idle connections (server restarted) are found and replaced at acquire time.
//
// Thread-safety: every member may be called from any thread.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "store/pg/connection.hpp"

namespace nimbus::ops {
class Metrics;
}

namespace nimbus::pg {

struct PoolConfig {
  std::string url;  // libpq connection string or postgresql:// URL
  std::size_t size = 16;
  std::chrono::milliseconds acquire_timeout{2'000};
  std::chrono::milliseconds connect_timeout{3'000};
  std::chrono::milliseconds statement_timeout{5'000};  // client deadline and server-side limit
  // Further server settings for this pool's sessions (name → value, plain words).
  std::vector<std::pair<std::string, std::string>> settings;

  // NIMBUS_DATABASE_URL (required), NIMBUS_PG_POOL_SIZE, NIMBUS_PG_ACQUIRE_TIMEOUT,
  // NIMBUS_PG_CONNECT_TIMEOUT, NIMBUS_PG_STATEMENT_TIMEOUT.
  static PoolConfig from_env();
};

class Pool;

class Lease {
 public:
  Lease(std::shared_ptr<Pool> pool, std::unique_ptr<Connection> conn);
  Lease(Lease&&) noexcept = default;
  Lease& operator=(Lease&&) noexcept = default;
  ~Lease();

  // Same as Connection's, with the pool's statement deadline.
  boost::asio::awaitable<Result> query(std::string_view sql, const Params& params = {});
  boost::asio::awaitable<std::vector<Result>> pipeline(const std::vector<Statement>& statements);
  boost::asio::awaitable<void> execute_script(std::string_view sql);
  Connection& connection() { return *conn_; }
  // Closes the connection instead of returning it (its session state is unknown).
  void discard() { conn_.reset(); }

 private:
  std::shared_ptr<Pool> pool_;
  std::unique_ptr<Connection> conn_;
};

class Pool : public std::enable_shared_from_this<Pool> {
 public:
  static std::shared_ptr<Pool> create(boost::asio::any_io_executor executor, PoolConfig config);

  // Throws DependencyUnavailable (server down, or no connection free in time).
  boost::asio::awaitable<Lease> acquire();
  // A connection of its own, outside the pool (LISTEN, long-lived sessions).
  boost::asio::awaitable<std::unique_ptr<Connection>> connect_dedicated();

  // Readiness: a cheap round trip.
  boost::asio::awaitable<bool> ping();
  const PoolConfig& config() const { return config_; }

  struct Stats {
    std::size_t open = 0, idle = 0, waiting = 0;
  };
  Stats stats() const;
  void export_metrics(ops::Metrics& metrics);

 private:
  friend class Lease;
  struct Waiter;
  Pool(boost::asio::any_io_executor executor, PoolConfig config);
  void release(std::unique_ptr<Connection> conn);
  boost::asio::awaitable<std::unique_ptr<Connection>> open_connection();
  std::chrono::steady_clock::time_point deadline() const;

  boost::asio::any_io_executor executor_;
  PoolConfig config_;
  std::string conninfo_;

  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<Connection>> idle_;
  std::deque<std::shared_ptr<Waiter>> waiters_;
  std::size_t open_ = 0;  // idle + leased + being opened
  std::chrono::steady_clock::time_point retry_after_{};
  std::chrono::milliseconds backoff_{0};
};

}  // namespace nimbus::pg
