// The outbox relay between the stack's real PostgreSQL and RabbitMQ.
#include "outbox/outbox.hpp"

#include <map>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "core/random.hpp"
#include "outbox/relay.hpp"
#include "queue/amqp/consumer.hpp"
#include "store/pg/migrate.hpp"
#include "support/run.hpp"

namespace asio = boost::asio;
using namespace nimbus;
using namespace std::chrono_literals;

namespace {

class OutboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    NIMBUS_REQUIRE_STACK("NIMBUS_TEST_DATABASE_URL");
    NIMBUS_REQUIRE_STACK("NIMBUS_TEST_AMQP_URL");
    amqp_ = amqp::Config::from_url(test::stack_env("NIMBUS_TEST_AMQP_URL"));
    queue_ = "test.outbox." + random::hex(6);
    amqp::Connection admin(amqp_);
    admin.declare_topology();
    admin.declare_work_queue(queue_);
    pool_ = make_pool();
    test::run(ioc_, [&]() -> asio::awaitable<void> { co_await pg::migrate(*pool_, pg::embedded_migrations()); });
  }
  void TearDown() override {
    if (!pool_) return;
    amqp::Connection admin(amqp_);
    admin.delete_queue(queue_);
    admin.delete_queue(amqp::topology::dead_letter_queue(queue_));
  }

  std::shared_ptr<pg::Pool> make_pool() {
    pg::PoolConfig c;
    c.url = test::stack_env("NIMBUS_TEST_DATABASE_URL");
    c.size = 4;
    return pg::Pool::create(ioc_.get_executor(), c);
  }

  template <typename Fn>
  auto run(Fn&& fn) {
    return test::run(ioc_, std::forward<Fn>(fn));
  }

  // Writes n outbox rows in one transaction, as a domain write would.
  void enqueue(int n) {
    run([&]() -> asio::awaitable<void> {
      auto db = co_await pool_->acquire();
      co_await db.execute_script("BEGIN");
      for (int i = 0; i < n; ++i) {
        outbox::Message m{"nimbus", queue_, R"({"i":)" + std::to_string(i) + "}"};
        co_await outbox::enqueue(db, m);
      }
      co_await db.execute_script("COMMIT");
    });
  }

  outbox::RelayConfig relay_config(int batch = 200) {
    outbox::RelayConfig c;
    c.batch_size = batch;
    c.routing_keys = {queue_};
    return c;
  }

  std::int64_t unsent() {
    return run([&]() -> asio::awaitable<std::int64_t> {
      auto db = co_await pool_->acquire();
      auto r = co_await db.query("SELECT count(*) FROM outbox WHERE routing_key = $1 AND published_at IS NULL",
                                 pg::params(queue_));
      co_return r.get_int(0, 0);
    });
  }

  // Message id → times delivered, until `distinct` ids were seen and the queue is quiet.
  std::map<std::string, int> consume(std::size_t distinct) {
    std::mutex m;
    std::map<std::string, int> seen;
    amqp::Consumer consumer(amqp_, queue_, 8, [&](const amqp::Delivery& d) {
      std::lock_guard lock(m);
      ++seen[d.message.message_id];
      return amqp::Outcome::ack;
    });
    consumer.start();
    for (int i = 0; i < 400; ++i) {
      std::this_thread::sleep_for(20ms);
      std::lock_guard lock(m);
      if (seen.size() >= distinct) break;
    }
    std::this_thread::sleep_for(300ms);  // anything extra (duplicates) shows up too
    consumer.stop(2s);
    return seen;
  }

  asio::io_context ioc_;
  amqp::Config amqp_;
  std::string queue_;
  std::shared_ptr<pg::Pool> pool_;
};

TEST_F(OutboxTest, RelayPublishesEveryRowOnceAndMarksItSent) {
  enqueue(25);
  amqp::Publisher publisher(amqp_);
  outbox::Relay relay(pool_, publisher, relay_config(10));
  int sent = 0;
  for (int i = 0; i < 5; ++i) sent += run([&] { return relay.run_once(); });
  EXPECT_EQ(sent, 25);
  EXPECT_EQ(unsent(), 0);
  auto seen = consume(25);
  EXPECT_EQ(seen.size(), 25U);
  for (auto& [id, times] : seen) EXPECT_EQ(times, 1) << id;
}

TEST_F(OutboxTest, CrashBetweenPublishAndMarkRepublishesAtLeastOnce) {
  enqueue(5);
  amqp::Publisher publisher(amqp_);
  outbox::Relay relay(pool_, publisher, relay_config());
  EXPECT_THROW(run([&] { return relay.run_once([] { throw std::runtime_error("killed after publish"); }); }),
               std::runtime_error);
  EXPECT_EQ(unsent(), 5) << "the crash left the rows unsent";
  EXPECT_EQ(run([&] { return relay.run_once(); }), 5) << "a restarted relay publishes them again";
  EXPECT_EQ(unsent(), 0);
  auto seen = consume(5);
  EXPECT_EQ(seen.size(), 5U) << "consumers see every logical message";
  for (auto& [id, times] : seen) EXPECT_EQ(times, 2) << "published twice, once per relay run: " << id;
}

TEST_F(OutboxTest, ConcurrentRelaysNeverPublishARowTwice) {
  enqueue(300);
  amqp::Publisher p1(amqp_), p2(amqp_);
  auto pool2 = make_pool();
  outbox::Relay r1(pool_, p1, relay_config(20)), r2(pool2, p2, relay_config(20));
  run([&]() -> asio::awaitable<void> {
    auto drain = [](outbox::Relay* r) -> asio::awaitable<int> {
      int total = 0;
      for (;;) {
        int n = co_await r->run_once();
        total += n;
        if (n == 0) co_return total;
      }
    };
    auto a = asio::co_spawn(ioc_, drain(&r1), asio::use_future);
    auto b = asio::co_spawn(ioc_, drain(&r2), asio::use_future);
    asio::steady_timer t(co_await asio::this_coro::executor);
    while (a.wait_for(0s) != std::future_status::ready || b.wait_for(0s) != std::future_status::ready) {
      t.expires_after(5ms);
      co_await t.async_wait(asio::use_awaitable);
    }
    EXPECT_EQ(a.get() + b.get(), 300);
  });
  auto seen = consume(300);
  EXPECT_EQ(seen.size(), 300U);
  int duplicates = 0;
  for (auto& [id, times] : seen) duplicates += times - 1;
  EXPECT_EQ(duplicates, 0);
}

TEST_F(OutboxTest, RunLoopWakesOnNotify) {
  amqp::Publisher publisher(amqp_);
  auto config = relay_config();
  config.poll_interval = 30s;  // only a NOTIFY can make it this fast
  outbox::Relay relay(pool_, publisher, config);
  auto latency = run([&]() -> asio::awaitable<std::chrono::steady_clock::duration> {
    asio::co_spawn(ioc_, relay.run(), asio::detached);
    asio::steady_timer t(co_await asio::this_coro::executor, 500ms);  // the relay is listening now
    co_await t.async_wait(asio::use_awaitable);
    const auto began = std::chrono::steady_clock::now();
    {
      auto db = co_await pool_->acquire();
      outbox::Message m{"nimbus", queue_, R"({"wake":true})"};
      co_await outbox::enqueue(db, m);
    }
    for (;;) {
      auto db = co_await pool_->acquire();
      auto r = co_await db.query("SELECT count(*) FROM outbox WHERE routing_key = $1 AND published_at IS NULL",
                                 pg::params(queue_));
      if (r.get_int(0, 0) == 0 || std::chrono::steady_clock::now() - began > 5s) break;
      t.expires_after(10ms);
      co_await t.async_wait(asio::use_awaitable);
    }
    auto took = std::chrono::steady_clock::now() - began;
    relay.stop();
    while (relay.running()) {
      t.expires_after(10ms);
      co_await t.async_wait(asio::use_awaitable);
    }
    co_return took;
  });
  EXPECT_LT(latency, 2s) << "published on NOTIFY, not on the 30 s poll";
  EXPECT_EQ(consume(1).size(), 1U);
}

}  // namespace
