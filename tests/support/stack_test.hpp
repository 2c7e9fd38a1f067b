// A fixture for integration tests that drive a service directly (no HTTP) against the
// stores of the stack under test: its PostgreSQL, and Redis on a database of the test's
// own. The io_context is the base's member, so the clients a test keeps in its own
// members are destroyed before it.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <memory>
#include <utility>

#include <gtest/gtest.h>

#include "store/pg/pool.hpp"
#include "store/redis/client.hpp"
#include "support/run.hpp"

namespace nimbus::test {

class StackTest : public ::testing::Test {
 protected:
  template <typename Fn>
  auto run(Fn&& fn) {
    return test::run(ioc_, std::forward<Fn>(fn));
  }

  // A pool of at most `size` connections to the stack's PostgreSQL.
  std::shared_ptr<pg::Pool> stack_pool(std::size_t size) {
    pg::PoolConfig c;
    c.url = stack_env("NIMBUS_TEST_DATABASE_URL");
    c.size = size;
    return pg::Pool::create(ioc_.get_executor(), c);
  }

  // A started client of the stack's Redis on database `db`. The stack's services use
  // database 0, and its workers run a reconciler there every second: a test that plants
  // marks, damages tallies or dates keys by a manual clock takes a database of its own.
  // Returned once connected (within 10 s): a command sent before that fails at once
  // ("not connected"), which would fail a test on a slow start, not on its subject.
  std::shared_ptr<redis::Client> private_redis(int db) {
    auto config = redis::Config::from_url(stack_env("NIMBUS_TEST_REDIS_URL"));
    config.db = db;
    auto client = redis::Client::create(ioc_.get_executor(), config);
    client->start();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!client->connected() && std::chrono::steady_clock::now() < deadline) {
      if (ioc_.stopped()) ioc_.restart();
      ioc_.run_one_for(std::chrono::milliseconds(5));
    }
    return client;
  }

  boost::asio::io_context ioc_;
};

}  // namespace nimbus::test
