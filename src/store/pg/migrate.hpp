// Numbered schema migrations, applied at start-up under an advisory lock so that N
// instances starting at once apply each migration exactly once.
#pragma once

#include <boost/asio/awaitable.hpp>
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

}  // namespace nimbus::pg
