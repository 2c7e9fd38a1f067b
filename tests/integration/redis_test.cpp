// The Redis client against the stack's real Redis.
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <mutex>

#include <gtest/gtest.h>

#include "core/errors.hpp"
#include "core/random.hpp"
#include "store/redis/client.hpp"
#include "support/run.hpp"

namespace asio = boost::asio;
using namespace nimbus;
using namespace std::chrono_literals;

namespace {

class RedisTest : public ::testing::Test {
 protected:
  void SetUp() override {
    NIMBUS_REQUIRE_STACK("NIMBUS_TEST_REDIS_URL");
    config_ = redis::Config::from_url(test::stack_env("NIMBUS_TEST_REDIS_URL"));
    prefix_ = "test:" + random::hex(6) + ":";
    client_ = redis::Client::create(ioc_.get_executor(), config_);
    client_->start();
    wait_connected();
  }
  void TearDown() override {
    if (client_) client_->stop();
    ioc_.run_for(100ms);
  }

  void wait_connected(std::chrono::seconds limit = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!client_->connected() && std::chrono::steady_clock::now() < deadline) ioc_.run_for(10ms);
    ioc_.restart();
  }

  template <typename Fn>
  auto run(Fn&& fn) {
    return test::run(ioc_, std::forward<Fn>(fn));
  }

  asio::io_context ioc_;
  redis::Config config_;
  std::string prefix_;
  std::shared_ptr<redis::Client> client_;
};

// Keeps the io_context busy while the background connection loop runs.
void pump(asio::io_context& ioc, std::chrono::milliseconds d) {
  ioc.restart();
  ioc.run_for(d);
  ioc.restart();
}

TEST_F(RedisTest, CommandsAndReplyTypes) {
  run([&]() -> asio::awaitable<void> {
    auto key = prefix_ + "k";
    auto set = co_await client_->command("SET", key, "v\r\n with CRLF", "EX", "60");
    EXPECT_EQ(set.type, redis::Reply::Type::status);
    auto get = co_await client_->command("GET", key);
    EXPECT_EQ(get.type, redis::Reply::Type::string);
    EXPECT_EQ(get.str, "v\r\n with CRLF");
    auto missing = co_await client_->command("GET", key + ":missing");
    EXPECT_TRUE(missing.is_nil());
    auto wrong = co_await client_->command("LPUSH", key, "x");
    EXPECT_TRUE(wrong.is_error());
    EXPECT_TRUE(wrong.str.starts_with("WRONGTYPE"));
    co_await client_->command("DEL", key);
  });
}

TEST_F(RedisTest, PipelineKeepsOrder) {
  auto replies = run([&]() -> asio::awaitable<std::vector<redis::Reply>> {
    auto key = prefix_ + "counter";
    std::vector<redis::Command> cmds;
    for (int i = 0; i < 100; ++i) cmds.push_back({"INCR", key});
    cmds.push_back({"DEL", key});
    co_return co_await client_->pipeline(std::move(cmds));
  });
  ASSERT_EQ(replies.size(), 101U);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(replies[i].integer, i + 1);
}

TEST_F(RedisTest, ConcurrentCommandsFromManyCoroutinesAllGetTheirOwnReply) {
  std::atomic<int> right{0};
  run([&]() -> asio::awaitable<void> {
    auto one = [&](int i) -> asio::awaitable<void> {
      auto key = prefix_ + std::to_string(i);
      co_await client_->command("SET", key, std::to_string(i * 7), "EX", "60");
      auto r = co_await client_->command("GET", key);
      if (r.str == std::to_string(i * 7)) ++right;
    };
    std::vector<std::future<void>> all;
    for (int i = 0; i < 200; ++i) all.push_back(asio::co_spawn(ioc_, one(i), asio::use_future));
    co_await test::wait_all(all);
    for (auto& f : all) f.get();
  });
  EXPECT_EQ(right.load(), 200);
}

TEST_F(RedisTest, ScriptsLoadOnDemandAndSurviveAFlush) {
  redis::Script add("return redis.call('INCRBY', KEYS[1], ARGV[1])");
  run([&]() -> asio::awaitable<void> {
    auto key = prefix_ + "script";
    co_await client_->command("SCRIPT", "FLUSH");
    // (named vectors: GCC 12 miscompiles braced lists of strings inside co_await)
    const std::vector<std::string> keys{key}, five{"5"}, six{"6"}, none;
    auto first = co_await client_->eval(add, keys, five);
    EXPECT_EQ(first.integer, 5);
    auto second = co_await client_->eval(add, keys, six);  // EVALSHA hits now
    EXPECT_EQ(second.integer, 11);
    redis::Script broken("return redis.call('NOPE')");
    bool threw = false;
    try {
      co_await client_->eval(broken, keys, none);
    } catch (const redis::Error&) {
      threw = true;
    }
    EXPECT_TRUE(threw);
    co_await client_->command("DEL", key);
  });
}

TEST_F(RedisTest, SubscriberGetsMessages) {
  std::mutex m;
  std::vector<std::string> got;
  std::atomic<int> connected{0};
  auto channel = prefix_ + "events";
  auto sub = redis::Subscriber::create(
      ioc_.get_executor(), config_,
      [&](const std::string& ch, const std::string& payload) {
        std::lock_guard lock(m);
        got.push_back(ch + "=" + payload);
      },
      [&] { ++connected; });
  sub->subscribe(channel);
  sub->start();
  for (int i = 0; i < 200 && connected.load() == 0; ++i) pump(ioc_, 10ms);
  ASSERT_EQ(connected.load(), 1);
  run([&]() -> asio::awaitable<void> {
    auto n = co_await client_->command("PUBLISH", channel, "hello");
    EXPECT_EQ(n.integer, 1);
  });
  for (int i = 0; i < 100; ++i) {
    pump(ioc_, 10ms);
    std::lock_guard lock(m);
    if (!got.empty()) break;
  }
  sub->stop();
  pump(ioc_, 50ms);
  std::lock_guard lock(m);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0], channel + "=hello");
}

TEST_F(RedisTest, ClientAndSubscriberRecoverAfterRedisRestarts) {
  NIMBUS_REQUIRE_STACK("NIMBUS_STACK_SUPERVISOR_CONF");
  std::atomic<int> connected{0};
  auto sub = redis::Subscriber::create(
      ioc_.get_executor(), config_, [](const std::string&, const std::string&) {}, [&] { ++connected; });
  sub->subscribe(prefix_ + "x");
  sub->start();
  for (int i = 0; i < 200 && connected.load() == 0; ++i) pump(ioc_, 10ms);
  ASSERT_EQ(connected.load(), 1);

  ASSERT_EQ(test::stack_ctl("stop redis"), 0);
  pump(ioc_, 200ms);
  const auto began = std::chrono::steady_clock::now();
  EXPECT_FALSE(run([&] { return client_->ping(); })) << "fails fast while down";
  EXPECT_LT(std::chrono::steady_clock::now() - began, 2s);

  ASSERT_EQ(test::stack_ctl("start redis"), 0);
  bool back = false;
  for (int i = 0; i < 300 && !back; ++i) {
    pump(ioc_, 50ms);
    back = client_->connected() && connected.load() >= 2;
  }
  EXPECT_TRUE(back) << "client and subscriber reconnect by themselves";
  EXPECT_TRUE(run([&] { return client_->ping(); }));
  sub->stop();
  pump(ioc_, 50ms);
}

}  // namespace
