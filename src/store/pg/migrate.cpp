#include "store/pg/migrate.hpp"

#include "core/log.hpp"

namespace nimbus::pg {

namespace {

// Arbitrary constant shared by every Nimbus process: the advisory lock's key.
constexpr std::string_view kLock = "SELECT pg_advisory_lock(7366207223412)";
constexpr std::string_view kUnlock = "SELECT pg_advisory_unlock(7366207223412)";
constexpr std::string_view kCreateTable = R"(
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
))";
constexpr std::string_view kApplied = "SELECT version FROM schema_migrations ORDER BY version";
constexpr std::string_view kRecord = "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)";

}  // namespace

boost::asio::awaitable<int> migrate(Pool& pool, const std::vector<Migration>& migrations) {
  auto lease = co_await pool.acquire();
  // Session-level lock: held across the per-migration transactions below; released
  // explicitly, or by the server if this process dies holding it.
  co_await lease.query(kLock);
  int applied = 0;
  std::exception_ptr error;
  try {
    co_await lease.execute_script(kCreateTable);
    auto done = co_await lease.query(kApplied);
    int current = done.rows() > 0 ? static_cast<int>(done.get_int(done.rows() - 1, 0)) : 0;
    for (const auto& m : migrations) {
      if (m.version <= current) continue;
      co_await lease.execute_script("BEGIN");
      co_await lease.execute_script(m.sql);
      co_await lease.query(kRecord, params(m.version, m.name));
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

}  // namespace nimbus::pg
