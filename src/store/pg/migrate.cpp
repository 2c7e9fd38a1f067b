#include "store/pg/migrate.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <stdexcept>

#include "core/env.hpp"
#include "core/log.hpp"
#include "core/retry.hpp"

namespace nimbus::pg {

namespace {

// Arbitrary constant shared by every Nimbus process: the advisory lock's key.
constexpr std::string_view kLock = "SELECT pg_advisory_lock(7366207223412)";
constexpr std::string_view kUnlock = "SELECT pg_advisory_unlock(7366207223412)";
std::string create_table(const std::string& table) {
  return "CREATE TABLE IF NOT EXISTS " + table +
         " (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())";
}

}  // namespace

boost::asio::awaitable<int> migrate(Pool& pool, const std::vector<Migration>& migrations, std::string table) {
  for (char c : table) {
    if (!((c >= 'a' && c <= 'z') || c == '_' || (c >= '0' && c <= '9'))) {
      throw std::invalid_argument("bad migrations table name");
    }
  }
  const std::string applied_sql = "SELECT version, name FROM " + table + " ORDER BY version";
  const std::string record_sql = "INSERT INTO " + table + " (version, name) VALUES ($1, $2)";
  auto lease = co_await pool.acquire();
  // Session-level lock: held across the per-migration transactions below; released
  // explicitly, or by the server if this process dies holding it.
  co_await lease.query(kLock);
  int applied = 0;
  std::exception_ptr error;
  try {
    co_await lease.execute_script(create_table(table));
    auto done = co_await lease.query(applied_sql);
    int current = done.rows() > 0 ? static_cast<int>(done.get_int(done.rows() - 1, 0)) : 0;
    // A database migrated by another build (a migration renamed, replaced or removed
    // since) must not be taken for this one's: refuse to start against it.
    for (int i = 0; i < done.rows(); ++i) {
      const auto version = static_cast<int>(done.get_int(i, 0));
      auto known = std::find_if(migrations.begin(), migrations.end(),
                                [version](const Migration& m) { return m.version == version; });
      if (known != migrations.end() && known->name != done.get(i, 1)) {
        throw std::runtime_error("migration " + std::to_string(version) + " is '" + std::string(known->name) +
                                 "' in this build but '" + std::string(done.get(i, 1)) + "' in the database");
      }
    }
    for (const auto& m : migrations) {
      if (m.version <= current) continue;
      co_await lease.execute_script("BEGIN");
      co_await lease.execute_script(m.sql);
      co_await lease.query(record_sql, params(m.version, m.name));
      co_await lease.execute_script("COMMIT");
      log::info("migration applied", {{"version", m.version}, {"name", m.name}});
      ++applied;
    }
  } catch (...) {
    error = std::current_exception();
  }
  if (error) {
    // Closing the session rolls back the open transaction and drops the lock.
    lease.discard();
    std::rethrow_exception(error);
  }
  co_await lease.query(kUnlock);
  co_return applied;
}

MigrationMode migration_mode_from_env() {
  const auto mode = env::string("NIMBUS_MIGRATIONS", "apply");
  if (mode == "apply") return MigrationMode::apply;
  if (mode == "wait") return MigrationMode::wait;
  if (mode == "only") return MigrationMode::only;
  throw env::ConfigError("NIMBUS_MIGRATIONS must be apply, wait or only");
}

int schema_version() {
  const auto& all = embedded_migrations();
  return all.empty() ? 0 : all.back().version;
}

namespace {

constexpr std::string_view kVersion = "SELECT coalesce(max(version), 0) FROM schema_migrations";

boost::asio::awaitable<void> apply_embedded(std::shared_ptr<Pool> pool, std::shared_ptr<std::atomic<bool>> done) {
  co_await migrate(*pool, embedded_migrations());
  done->store(true);
}

// A newer schema is fine (a rollout applies migrations before the old build is gone:
// they only ever add); an older one is not yet this build's.
boost::asio::awaitable<void> await_current(std::shared_ptr<Pool> pool, std::shared_ptr<std::atomic<bool>> done) {
  auto lease = co_await pool->acquire();
  auto result = co_await lease.query(kVersion);
  const auto version = static_cast<int>(result.get_int(0, 0));
  if (version < schema_version()) {
    throw std::runtime_error("schema at version " + std::to_string(version) + ", this build needs " +
                             std::to_string(schema_version()) + " (applied by the migration step)");
  }
  done->store(true);
}

// The migration step's loop: PostgreSQL may still be starting (a pod's first seconds),
// so failures are retried until `patience` is spent.
boost::asio::awaitable<void> apply_within(std::shared_ptr<Pool> pool, std::chrono::milliseconds patience, int* status) {
  const auto deadline = std::chrono::steady_clock::now() + patience;
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
  for (;;) {
    try {
      const int applied = co_await migrate(*pool, embedded_migrations());
      log::info("schema current", {{"version", schema_version()}, {"applied", applied}});
      *status = 0;
      co_return;
    } catch (const std::exception& e) {
      if (std::chrono::steady_clock::now() >= deadline) {
        log::error("migrations failed", {{"error", e.what()}});
        co_return;
      }
      log::warn("migrations failed; retrying", {{"error", e.what()}});
    }
    timer.expires_after(std::chrono::seconds(1));
    co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
  }
}

}  // namespace

std::shared_ptr<std::atomic<bool>> migrate_in_background(boost::asio::any_io_executor executor,
                                                         std::shared_ptr<Pool> pool, MigrationMode mode) {
  auto done = std::make_shared<std::atomic<bool>>(false);
  if (mode == MigrationMode::wait) {
    boost::asio::co_spawn(executor, retry_until_done("schema", [pool, done] { return await_current(pool, done); }),
                          boost::asio::detached);
  } else {
    boost::asio::co_spawn(executor, retry_until_done("migrations", [pool, done] { return apply_embedded(pool, done); }),
                          boost::asio::detached);
  }
  return done;
}

int migrate_and_exit(const PoolConfig& config, std::chrono::milliseconds patience) {
  boost::asio::io_context ioc(1);
  auto pool = Pool::create(ioc.get_executor(), config);
  int status = 1;
  boost::asio::co_spawn(ioc, apply_within(pool, patience, &status), [&ioc](std::exception_ptr) { ioc.stop(); });
  ioc.run();
  return status;
}

boost::asio::awaitable<bool> ready(std::shared_ptr<Pool> pool, std::shared_ptr<std::atomic<bool>> schema_ready) {
  if (!schema_ready->load()) co_return false;
  co_return co_await pool->ping();
}

}  // namespace nimbus::pg
