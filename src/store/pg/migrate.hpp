// Numbered schema migrations, applied at start-up under an advisory lock so that N
// instances starting at once apply each migration exactly once.
#pragma once

#include <atomic>
#include <boost/asio/awaitable.hpp>
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

// Applies the embedded migrations in the background, retrying until PostgreSQL takes
// them, so a process starts (and answers /healthz) without waiting for the database.
// The flag turns true once the schema is current.
std::shared_ptr<std::atomic<bool>> migrate_in_background(boost::asio::any_io_executor executor,
                                                         std::shared_ptr<Pool> pool);

// Readiness check: schema current and a round trip answered.
boost::asio::awaitable<bool> ready(std::shared_ptr<Pool> pool, std::shared_ptr<std::atomic<bool>> schema_ready);

}  // namespace nimbus::pg
