// Numbered schema migrations, applied at start-up under an advisory lock so that N
// instances starting at once apply each migration exactly once.
#pragma once

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "store/pg/pool.hpp"

namespace nimbus::pg {

struct Migration {
  int version;
  std::string_view name;
  std::string_view sql;
};

// The migrations of src/store/migrations/, compiled in (ordered by version).
const std::vector<Migration>& embedded_migrations();

// Applies every migration newer than the database's version, each in its own
// transaction, recording them in `table`. Returns how many it applied. Throws on
// failure (the caller retries).
boost::asio::awaitable<int> migrate(Pool& pool, const std::vector<Migration>& migrations,
                                    std::string table = "schema_migrations");

// Who changes the schema (NIMBUS_MIGRATIONS):
//   apply — this process applies the embedded migrations at start-up (the default: one
//           database role for everything, as in the integration tests);
//   wait  — it never changes the schema: its role has no right to (docs/adr/0011); it
//           is ready once the database is at this build's version or newer, applied by
//   only  — the migration step: apply them with this role (the schema's owner), exit.
enum class MigrationMode { apply, wait, only };
MigrationMode migration_mode_from_env();

// The newest embedded migration's version: what "current" means for this build.
int schema_version();

// In the background, retrying until PostgreSQL answers: applies the embedded migrations
// (apply), or waits until someone else has (wait). A process starts (and answers
// /healthz) without waiting for the database; the flag turns true once the schema is
// current.
std::shared_ptr<std::atomic<bool>> migrate_in_background(boost::asio::any_io_executor executor,
                                                         std::shared_ptr<Pool> pool,
                                                         MigrationMode mode = MigrationMode::apply);

// The migration step (NIMBUS_MIGRATIONS=only): applies the embedded migrations with
// `config`'s role, retrying for up to `patience` while PostgreSQL is unreachable.
// Returns the exit status: 0 once the schema is current, 1 if it could not be made so.
int migrate_and_exit(const PoolConfig& config, std::chrono::milliseconds patience = std::chrono::minutes(2));

// Readiness check: schema current and a round trip answered.
boost::asio::awaitable<bool> ready(std::shared_ptr<Pool> pool, std::shared_ptr<std::atomic<bool>> schema_ready);

}  // namespace nimbus::pg
