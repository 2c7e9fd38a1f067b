// The PostgreSQL client against the stack's real PostgreSQL.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <gtest/gtest.h>

#include "core/errors.hpp"
#include "core/random.hpp"
#include "store/pg/migrate.hpp"
#include "store/pg/pool.hpp"
#include "support/run.hpp"

namespace asio = boost::asio;
using namespace nimbus;
using namespace std::chrono_literals;

namespace {

class PgTest : public ::testing::Test {
 protected:
  void SetUp() override {
    NIMBUS_REQUIRE_STACK("NIMBUS_TEST_DATABASE_URL");
    table_ = "t_" + random::hex(6);
  }

  std::shared_ptr<pg::Pool> make_pool(std::size_t size = 4, std::chrono::milliseconds acquire = 2s) {
    pg::PoolConfig c;
    c.url = test::stack_env("NIMBUS_TEST_DATABASE_URL");
    c.size = size;
    c.acquire_timeout = acquire;
    c.connect_timeout = 1s;
    c.statement_timeout = 3s;
    return pg::Pool::create(ioc_.get_executor(), c);
  }

  template <typename Fn>
  auto run(Fn&& fn) {
    return test::run(ioc_, std::forward<Fn>(fn));
  }

  asio::io_context ioc_;
  std::string table_;
};

TEST_F(PgTest, ParametersResultsAndNulls) {
  auto pool = make_pool();
  auto r = run([&]() -> asio::awaitable<pg::Result> {
    auto db = co_await pool->acquire();
    co_return co_await db.query("SELECT $1::int + 1, $2::text, $3::text IS NULL, $4::bool",
                                pg::params(41, std::string_view("héllo 'quoted'"), std::nullopt, true));
  });
  ASSERT_EQ(r.rows(), 1);
  EXPECT_EQ(r.get_int(0, 0), 42);
  EXPECT_EQ(r.get(0, 1), "héllo 'quoted'");
  EXPECT_TRUE(r.get_bool(0, 2));
  EXPECT_TRUE(r.get_bool(0, 3));
}

TEST_F(PgTest, ConstraintViolationKeepsItsSqlstateAndTheConnectionStaysUsable) {
  auto pool = make_pool(1);
  auto state = run([&]() -> asio::awaitable<std::string> {
    auto db = co_await pool->acquire();
    co_await db.execute_script("CREATE TABLE " + table_ + " (id int PRIMARY KEY)");
    co_await db.query("INSERT INTO " + table_ + " VALUES ($1)", pg::params(1));
    std::string sqlstate;
    try {
      co_await db.query("INSERT INTO " + table_ + " VALUES ($1)", pg::params(1));
    } catch (const pg::Error& e) {
      sqlstate = e.sqlstate();
      EXPECT_TRUE(e.unique_violation());
      EXPECT_EQ(e.constraint(), table_ + "_pkey");
    }
    auto count = co_await db.query("SELECT count(*) FROM " + table_);
    EXPECT_EQ(count.get_int(0, 0), 1);
    co_await db.execute_script("DROP TABLE " + table_);
    co_return sqlstate;
  });
  EXPECT_EQ(state, "23505");
}

TEST_F(PgTest, PipelineRunsStatementsInOneRoundTripAndSurvivesAnError) {
  auto pool = make_pool(1);
  run([&]() -> asio::awaitable<void> {
    auto db = co_await pool->acquire();
    // (named vectors: GCC 12 miscompiles braced temporaries inside co_await)
    const std::vector<pg::Statement> three = {{"SELECT $1::int * 2", pg::params(21)},
                                              {"SELECT $1::text || '!'", pg::params(std::string_view("hi"))},
                                              {"SELECT 3", {}}};
    auto results = co_await db.pipeline(three);
    EXPECT_EQ(results.size(), 3U);
    EXPECT_EQ(results[0].get_int(0, 0), 42);
    EXPECT_EQ(results[1].get(0, 0), "hi!");
    EXPECT_EQ(results[2].get_int(0, 0), 3);

    bool threw = false;
    try {
      const std::vector<pg::Statement> failing = {{"SELECT 1", {}}, {"SELECT 1/0", {}}, {"SELECT 2", {}}};
      co_await db.pipeline(failing);
    } catch (const pg::Error& e) {
      threw = true;
      EXPECT_EQ(e.sqlstate(), "22012");  // division_by_zero
    }
    EXPECT_TRUE(threw);
    auto after = co_await db.query("SELECT 7");
    EXPECT_EQ(after.get_int(0, 0), 7);
  });
}

TEST_F(PgTest, ManyConcurrentUsersShareASmallPool) {
  auto pool = make_pool(4);
  auto total = run([&]() -> asio::awaitable<std::int64_t> {
    using namespace asio::experimental::awaitable_operators;
    std::atomic<std::int64_t> sum{0};
    auto one = [&](int i) -> asio::awaitable<void> {
      auto db = co_await pool->acquire();
      auto r = co_await db.query("SELECT $1::int, pg_sleep(0.01)", pg::params(i));
      sum += r.get_int(0, 0);
    };
    std::vector<std::future<void>> all;
    for (int i = 1; i <= 40; ++i) all.push_back(asio::co_spawn(ioc_, one(i), asio::use_future));
    co_await test::wait_all(all);
    for (auto& f : all) f.get();
    co_return sum.load();
  });
  EXPECT_EQ(total, 40 * 41 / 2);
  auto stats = pool->stats();
  EXPECT_LE(stats.open, 4U);
  EXPECT_EQ(stats.waiting, 0U);
}

TEST_F(PgTest, AcquireTimesOutWhenThePoolIsExhausted) {
  auto pool = make_pool(1, 200ms);
  auto elapsed = run([&]() -> asio::awaitable<std::chrono::steady_clock::duration> {
    auto held = co_await pool->acquire();
    const auto began = std::chrono::steady_clock::now();
    try {
      auto second = co_await pool->acquire();
      ADD_FAILURE() << "second acquire should time out";
    } catch (const DependencyUnavailable& e) {
      EXPECT_EQ(e.dependency(), "postgres");
    }
    co_return std::chrono::steady_clock::now() - began;
  });
  EXPECT_GE(elapsed, 150ms);
  EXPECT_LT(elapsed, 2s);
}

TEST_F(PgTest, ReleasedConnectionGoesToAWaiter) {
  auto pool = make_pool(1, 2s);
  run([&]() -> asio::awaitable<void> {
    auto first = std::make_unique<pg::Lease>(co_await pool->acquire());
    asio::steady_timer t(co_await asio::this_coro::executor, 50ms);
    auto waiter = asio::co_spawn(
        co_await asio::this_coro::executor,
        [&]() -> asio::awaitable<std::int64_t> {
          auto db = co_await pool->acquire();
          co_return (co_await db.query("SELECT 5")).get_int(0, 0);
        },
        asio::use_awaitable);
    co_await t.async_wait(asio::use_awaitable);
    first.reset();  // hands the connection over
    EXPECT_EQ(co_await std::move(waiter), 5);
  });
}

TEST_F(PgTest, ConcurrentMigratorsApplyEachMigrationOnce) {
  const std::string data = table_ + "_data";
  const std::string create = "CREATE TABLE " + data + " (n int)";
  const std::string insert = "INSERT INTO " + data + " VALUES (1)";
  const std::vector<pg::Migration> migrations = {{1, "create", create}, {2, "insert", insert}};
  std::vector<std::shared_ptr<pg::Pool>> pools;
  for (int i = 0; i < 4; ++i) pools.push_back(make_pool(1));
  auto applied = run([&]() -> asio::awaitable<int> {
    std::vector<std::future<int>> all;
    for (auto& p : pools) {
      all.push_back(asio::co_spawn(ioc_, pg::migrate(*p, migrations, table_), asio::use_future));
    }
    co_await test::wait_all(all);
    int sum = 0;
    for (auto& f : all) sum += f.get();
    co_return sum;
  });
  EXPECT_EQ(applied, 2);
  auto rows = run([&]() -> asio::awaitable<std::int64_t> {
    auto db = co_await pools[0]->acquire();
    auto r = co_await db.query("SELECT count(*) FROM " + data);
    co_await db.execute_script("DROP TABLE " + data + "; DROP TABLE " + table_);
    co_return r.get_int(0, 0);
  });
  EXPECT_EQ(rows, 1);
}

TEST_F(PgTest, ADatabaseMigratedByAnotherBuildIsRefused) {
  const std::string data = table_ + "_other";
  const std::string create = "CREATE TABLE " + data + " (n int)";
  const std::vector<pg::Migration> ours = {{1, "create", create}};
  const std::vector<pg::Migration> theirs = {{1, "something_else", "SELECT 1"}};
  auto pool = make_pool(1);
  run([&] { return pg::migrate(*pool, theirs, table_); });
  EXPECT_THROW(run([&] { return pg::migrate(*pool, ours, table_); }), std::runtime_error);
  run([&]() -> asio::awaitable<void> {
    auto db = co_await pool->acquire();
    auto exists = co_await db.query("SELECT to_regclass($1) IS NOT NULL", pg::params(data));
    EXPECT_FALSE(exists.get_bool(0, 0)) << "nothing of ours was applied";
    co_await db.execute_script("DROP TABLE " + table_);
  });
}

// A pooled connection whose backend the server ended while it sat idle (a restart,
// pg_terminate_backend) is dropped when taken, not handed out to fail its first query
// (the first request after a database restart used to get a 503 per dead connection).
TEST_F(PgTest, AConnectionTheServerEndedWhileIdleIsNotHandedOut) {
  auto pool = make_pool(1);
  auto admin = make_pool(1);
  auto pid = run([&]() -> asio::awaitable<std::int64_t> {
    auto db = co_await pool->acquire();
    auto r = co_await db.query("SELECT pg_backend_pid()", {});
    co_return r.get_int(0, 0);
  });
  auto ended = run([&]() -> asio::awaitable<bool> {
    auto db = co_await admin->acquire();
    auto r = co_await db.query("SELECT pg_terminate_backend($1::int)", pg::params(pid));
    co_return r.get_bool(0, 0);
  });
  ASSERT_TRUE(ended);
  std::this_thread::sleep_for(200ms);  // the server's goodbye reaches the idle socket
  auto r = run([&]() -> asio::awaitable<pg::Result> {
    auto db = co_await pool->acquire();
    co_return co_await db.query("SELECT pg_backend_pid()", {});
  });
  EXPECT_NE(r.get_int(0, 0), pid) << "a new connection serves the query";
}

TEST_F(PgTest, PoolRecoversAfterPostgresRestarts) {
  NIMBUS_REQUIRE_STACK("NIMBUS_STACK_SUPERVISOR_CONF");
  auto pool = make_pool(4);
  auto ping = [&] { return run([&] { return pool->ping(); }); };
  ASSERT_TRUE(ping());

  ASSERT_EQ(test::stack_ctl("stop postgres"), 0);
  // While it is down, requests fail fast (no hang): DependencyUnavailable → 503.
  const auto began = std::chrono::steady_clock::now();
  EXPECT_FALSE(ping());
  EXPECT_LT(std::chrono::steady_clock::now() - began, 2s);

  ASSERT_EQ(test::stack_ctl("start postgres"), 0);
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  bool back = false;
  while (!back && std::chrono::steady_clock::now() < deadline) {
    back = ping();
    if (!back) std::this_thread::sleep_for(200ms);
  }
  EXPECT_TRUE(back) << "the same pool serves again without a restart";
}

}  // namespace
