#include "store/pg/migrate.hpp"

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <stdexcept>

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

namespace {

boost::asio::awaitable<void> apply_embedded(std::shared_ptr<Pool> pool, std::shared_ptr<std::atomic<bool>> done) {
  co_await migrate(*pool, embedded_migrations());
  done->store(true);
}

}  // namespace

std::shared_ptr<std::atomic<bool>> migrate_in_background(boost::asio::any_io_executor executor,
                                                         std::shared_ptr<Pool> pool) {
  auto done = std::make_shared<std::atomic<bool>>(false);
  boost::asio::co_spawn(executor, retry_until_done("migrations", [pool, done] { return apply_embedded(pool, done); }),
                        boost::asio::detached);
  return done;
}

boost::asio::awaitable<bool> ready(std::shared_ptr<Pool> pool, std::shared_ptr<std::atomic<bool>> schema_ready) {
  if (!schema_ready->load()) co_return false;
  co_return co_await pool->ping();
}

}  // namespace nimbus::pg
