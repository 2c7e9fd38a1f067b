// The Redis client against the stack's real Redis.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <mutex>
#include <thread>

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

  // A new client whose commands have `timeout` as their deadline.
  void reconnect_with_timeout(std::chrono::milliseconds timeout) {
    client_->stop();
    ioc_.run_for(50ms);
    ioc_.restart();
    config_.command_timeout = timeout;
    client_ = redis::Client::create(ioc_.get_executor(), config_);
    client_->start();
    wait_connected();
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

// The stack's Redis takes no command before AUTH (requirepass): a client without the
// password, or with a wrong one, never gets a connection; with it, every one starts
// with AUTH and is served.
TEST_F(RedisTest, ConnectsOnlyWithThePasswordOfItsUrl) {
  ASSERT_FALSE(config_.password.empty()) << "the stack's Redis should need a password (NIMBUS_TEST_REDIS_URL)";
  EXPECT_EQ(run([&]() -> asio::awaitable<std::string> {
              auto r = co_await client_->command("PING");
              co_return r.as_string();
            }),
            "PONG");
  for (const std::string password : {"", "not-the-password"}) {
    auto config = config_;
    config.password = password;
    auto other = redis::Client::create(ioc_.get_executor(), config);
    other->start();
    pump(ioc_, 300ms);
    // Without AUTH the server refuses each command (NOAUTH); with a wrong password the
    // handshake fails and no connection is ever up.
    EXPECT_ANY_THROW(run([&]() -> asio::awaitable<void> { co_await other->command("PING"); }))
        << "served with password '" << password << "'";
    other->stop();
    pump(ioc_, 50ms);
  }
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
    // An error reply is never a value: command() throws, and in a pipeline the
    // checked accessors throw on it.
    bool threw = false;
    try {
      co_await client_->command("LPUSH", key, "x");
    } catch (const redis::Error& e) {
      threw = std::string_view(e.what()).starts_with("WRONGTYPE");
    }
    EXPECT_TRUE(threw);
    std::vector<redis::Command> cmds;
    cmds.push_back({"LPUSH", key, "x"});
    cmds.push_back({"EXISTS", key});
    auto replies = co_await client_->pipeline(std::move(cmds));
    EXPECT_TRUE(replies[0].is_error());
    EXPECT_THROW(replies[0].as_integer(), redis::Error);
    EXPECT_EQ(replies[1].as_integer(), 1);
    EXPECT_THROW(replies[1].as_string(), redis::Error);
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

// A pipeline sent now and awaited later: commands awaited in between get their own
// replies, the early one keeps its (sent first, so answered first), whenever it is
// awaited; one nobody awaits still runs; awaiting twice is a bug, said so.
TEST_F(RedisTest, InFlightRepliesComeWhenAwaitedAndInOrder) {
  run([&]() -> asio::awaitable<void> {
    const auto key = prefix_ + "inflight";
    std::vector<redis::Command> first;
    first.push_back({"SET", key, "early", "EX", "60"});
    first.push_back({"GET", key});
    const auto executor = co_await asio::this_coro::executor;
    auto early = client_->send(executor, std::move(first));
    std::vector<redis::Command> unawaited;
    unawaited.push_back({"SET", key + ":dropped", "still-ran", "EX", "60"});
    client_->send(executor, std::move(unawaited));
    auto later = co_await client_->command("SET", key, "later", "EX", "60");
    EXPECT_EQ(later.str, "OK");
    EXPECT_EQ((co_await client_->command("GET", key)).str, "later");
    auto replies = co_await early.replies();
    EXPECT_EQ(replies.at(0).str, "OK");
    EXPECT_EQ(replies.at(1).as_string(), "early");  // read before the later SET
    EXPECT_EQ((co_await client_->command("GET", key + ":dropped")).str, "still-ran");
    EXPECT_THROW(co_await early.replies(), std::logic_error);
    // Nothing to send: no replies, and the connection's replies stay matched.
    auto none = client_->send(executor, std::vector<redis::Command>{});
    EXPECT_TRUE((co_await none.replies()).empty());
    EXPECT_EQ((co_await client_->command("GET", key)).str, "later");
    co_await client_->command("DEL", key, key + ":dropped");
  });
}

// Sent while not connected: the failure comes when the replies are awaited, as a
// dependency failure (503), like any command's.
TEST_F(RedisTest, InFlightSentWhileDisconnectedFailsWhenAwaited) {
  client_->stop();
  ioc_.run_for(50ms);
  ioc_.restart();
  run([&]() -> asio::awaitable<void> {
    std::vector<redis::Command> cmds;
    cmds.push_back({"PING"});
    auto pending = client_->send(co_await asio::this_coro::executor, std::move(cmds));
    EXPECT_THROW(co_await pending.replies(), DependencyUnavailable);
  });
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

// A command that misses its deadline fails alone: the connection stays, its late reply
// is matched to it and dropped, and the commands behind it get theirs. (Resetting the
// connection failed every command in flight at once — ten thousand live streams doing
// their token checks on a starved instance all ended "unavailable" together.)
TEST_F(RedisTest, ACommandPastItsDeadlineFailsAloneAndTheConnectionStays) {
  reconnect_with_timeout(300ms);
  const auto first = run([&] { return client_->command("CLIENT", "ID"); }).as_integer();
  // BLPOP holds the connection's replies for 500 ms: it misses its 300 ms deadline.
  const std::string empty_list = prefix_ + "never-filled";
  EXPECT_THROW(run([&] { return client_->command("BLPOP", empty_list, "0.5"); }), DependencyUnavailable);
  // Sent after that deadline, answered once BLPOP's late reply has gone by.
  std::this_thread::sleep_for(50ms);
  const auto after = run([&] { return client_->command("CLIENT", "ID"); }).as_integer();
  EXPECT_EQ(after, first) << "the connection was reset by a timeout";
}

// A connection whose oldest command has waited four deadlines is stuck, and is reset:
// the commands after it then work on a new connection.
TEST_F(RedisTest, AConnectionStuckForSeveralDeadlinesIsReset) {
  reconnect_with_timeout(200ms);
  const auto first = run([&] { return client_->command("CLIENT", "ID"); }).as_integer();
  const std::string empty_list = prefix_ + "never-filled";
  const auto blocked = std::chrono::steady_clock::now();
  EXPECT_THROW(run([&] { return client_->command("BLPOP", empty_list, "5"); }), DependencyUnavailable);
  std::optional<std::int64_t> id;
  while (!id && std::chrono::steady_clock::now() - blocked < 4s) {
    try {
      id = run([&] { return client_->command("CLIENT", "ID"); }).as_integer();
    } catch (const DependencyUnavailable&) {
      pump(ioc_, 50ms);  // timed out behind the BLPOP, or reconnecting
    }
  }
  ASSERT_TRUE(id) << "no answer on a new connection";
  EXPECT_NE(*id, first);
  EXPECT_GE(std::chrono::steady_clock::now() - blocked, 4 * config_.command_timeout);
}

TEST_F(RedisTest, ScriptsLoadOnDemand) {
  // A script no server has seen (a nonce in its source, so another SHA-1): for it the
  // server's cache is as empty as after SCRIPT FLUSH or a restart, without flushing
  // the scripts of everyone else on the shared stack.
  redis::Script add("-- " + prefix_ + "\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])");
  run([&]() -> asio::awaitable<void> {
    auto key = prefix_ + "script";
    auto known = [&]() -> asio::awaitable<std::int64_t> {
      auto r = co_await client_->command("SCRIPT", "EXISTS", add.sha1);
      co_return r.elements.at(0).as_integer();
    };
    EXPECT_EQ(co_await known(), 0);
    // (named vectors: GCC 12 miscompiles braced lists of strings inside co_await)
    const std::vector<std::string> keys{key}, five{"5"}, six{"6"}, none;
    auto first = co_await client_->eval(add, keys, five);  // NOSCRIPT, loaded, run once
    EXPECT_EQ(first.integer, 5);
    EXPECT_EQ(co_await known(), 1);
    auto second = co_await client_->eval(add, keys, six);  // EVALSHA hits now
    EXPECT_EQ(second.integer, 11);
    redis::Script broken("-- " + prefix_ + "\nreturn redis.call('NOPE')");
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
  // A script the server knows before the restart, and forgets with it.
  redis::Script add("-- " + prefix_ + " restart\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])");
  const std::vector<std::string> keys{prefix_ + "restart"}, one{"1"};
  EXPECT_EQ(run([&] { return client_->eval(add, keys, one); }).integer, 1);

  ASSERT_EQ(test::stack_ctl("stop redis"), 0);
  // Until the client noticed (the closed socket), then: fails fast while down. The 2 s
  // bound is the point (the command timeout is 1 s), with a second of headroom.
  for (const auto until = std::chrono::steady_clock::now() + 10s;
       client_->connected() && std::chrono::steady_clock::now() < until;) {
    pump(ioc_, 10ms);
  }
  const auto began = std::chrono::steady_clock::now();
  EXPECT_FALSE(run([&] { return client_->ping(); })) << "fails fast while down";
  EXPECT_LT(std::chrono::steady_clock::now() - began, 2s);

  ASSERT_EQ(test::stack_ctl("start redis"), 0);
  // Reconnecting is the event; 60 s only bounds a failure (a loaded machine is slow, and
  // a server with a large dataset answers LOADING for a while after it accepts).
  bool back = false;
  for (const auto until = std::chrono::steady_clock::now() + 60s; !back && std::chrono::steady_clock::now() < until;) {
    pump(ioc_, 50ms);
    back = client_->connected() && connected.load() >= 2 && run([&] { return client_->ping(); });
  }
  EXPECT_TRUE(back) << "client and subscriber reconnect by themselves, and the client's commands work";
  // The restarted server lost its scripts: the client loads the script again by itself.
  const std::vector<std::string> fresh{prefix_ + "restart-2"}, two{"2"};
  EXPECT_EQ(run([&] { return client_->eval(add, fresh, two); }).integer, 2);
  run([&]() -> asio::awaitable<void> { co_await client_->command("DEL", keys[0], fresh[0]); });
  sub->stop();
  pump(ioc_, 50ms);
}

}  // namespace

namespace {

// A Redis that answers every command with the same reply: an error, as a real one does
// while it loads its dataset after a restart (-LOADING) or runs a long script (-BUSY),
// or any reply, written `piece` bytes at a time with a pause between (0: at once), as
// a slow network delivers it.
class ErringRedis {
 public:
  ErringRedis(asio::io_context& ioc, std::string reply, std::size_t piece = 0)
      : acceptor_(ioc, {asio::ip::make_address("127.0.0.1"), 0}) {
    asio::co_spawn(ioc, serve(std::move(reply), piece), asio::detached);
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  asio::awaitable<void> serve(std::string reply, std::size_t piece) {
    for (;;) {
      auto socket = co_await acceptor_.async_accept(asio::use_awaitable);
      asio::co_spawn(acceptor_.get_executor(), answer(std::move(socket), reply, piece), asio::detached);
    }
  }
  static asio::awaitable<void> write_in_pieces(asio::ip::tcp::socket& socket, const std::string& out,
                                               std::size_t piece) {
    if (piece == 0) {
      co_await asio::async_write(socket, asio::buffer(out), asio::use_awaitable);
      co_return;
    }
    asio::steady_timer pause(socket.get_executor());
    for (std::size_t at = 0; at < out.size(); at += piece) {
      co_await asio::async_write(socket, asio::buffer(out.data() + at, std::min(piece, out.size() - at)),
                                 asio::use_awaitable);
      pause.expires_after(1ms);
      co_await pause.async_wait(asio::use_awaitable);
    }
  }
  static asio::awaitable<void> answer(asio::ip::tcp::socket socket, std::string reply, std::size_t piece) {
    std::string in;
    char buf[4096];
    for (;;) {
      auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      in.append(buf, n);
      // One reply per complete command ("*<argc>" ... the test's commands hold no '*').
      std::string out;
      std::size_t at = 0;
      while ((at = in.find('*')) != std::string::npos && in.find("\r\n", at) != std::string::npos) {
        const int argc = std::stoi(in.substr(at + 1));
        std::size_t end = in.find("\r\n", at) + 2;
        bool complete = true;
        for (int i = 0; i < argc && complete; ++i) {
          const auto len_end = in.find("\r\n", end);
          if (len_end == std::string::npos) {
            complete = false;
            break;
          }
          const auto len = std::stoul(in.substr(end + 1, len_end - end - 1));
          end = len_end + 2 + len + 2;
          if (end > in.size()) complete = false;
        }
        if (!complete) break;
        in.erase(0, end);
        out += reply;
      }
      if (!out.empty()) co_await write_in_pieces(socket, out, piece);
    }
  }
  asio::ip::tcp::acceptor acceptor_;
};

}  // namespace

// Redis restarting answers -LOADING for seconds: every command, pipeline and script
// must fail as "dependency unavailable" (a 503 with Retry-After), never pass an error
// off as a value (a revocation check read "not revoked") or end in a 500.
TEST(RedisErrors, TransientErrorRepliesAreDependencyFailures) {
  for (const std::string reply :
       {"-LOADING Redis is loading the dataset in memory\r\n", "-BUSY Redis is busy running a script.\r\n",
        "-MASTERDOWN Link down\r\n", "-OOM command not allowed when used memory > 'maxmemory'.\r\n"}) {
    asio::io_context ioc;
    ErringRedis fake(ioc, reply);
    redis::Config config;
    config.port = fake.port();
    auto client = redis::Client::create(ioc.get_executor(), config);
    client->start();
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!client->connected() && std::chrono::steady_clock::now() < deadline) ioc.run_for(10ms);
    ioc.restart();
    ASSERT_TRUE(client->connected());
    test::run(ioc, [&]() -> asio::awaitable<void> {
      EXPECT_THROW(co_await client->command("EXISTS", "k"), DependencyUnavailable) << reply;
      std::vector<redis::Command> cmds;
      cmds.push_back({"EXISTS", "auth:revoked:sid:x"});
      cmds.push_back({"GET", "auth:revoked:user:y"});
      EXPECT_THROW(co_await client->pipeline(std::move(cmds)), DependencyUnavailable) << reply;
      redis::Script script("return 1");
      const std::vector<std::string> keys{"k"}, args;
      EXPECT_THROW(co_await client->eval(script, keys, args), DependencyUnavailable) << reply;
    });
    client->stop();
    ioc.run_for(50ms);
  }
}

TEST(RedisErrors, OnlyServerStateErrorsAreTransient) {
  EXPECT_TRUE(redis::transient_error("LOADING Redis is loading the dataset in memory"));
  EXPECT_TRUE(redis::transient_error("READONLY You can't write against a read only replica."));
  EXPECT_TRUE(redis::transient_error("MISCONF Redis is configured to save RDB snapshots"));
  EXPECT_FALSE(redis::transient_error("WRONGTYPE Operation against a key holding the wrong kind of value"));
  EXPECT_FALSE(redis::transient_error("ERR unknown command"));
  EXPECT_FALSE(redis::transient_error("LOADINGX"));
  EXPECT_FALSE(redis::transient_error("NOSCRIPT No matching script."));
}

// Replies cut anywhere — one byte per segment, inside a length, between CR and LF, in a
// nested array — are read whole, and each pipelined command gets its own.
TEST(RedisReplies, RepliesArrivingInPiecesAreReadWhole) {
  const std::string reply = "*4\r\n$12\r\nhello\r\nworld\r\n*2\r\n:-42\r\n$-1\r\n+OK\r\n$0\r\n\r\n";
  for (const std::size_t piece : {1, 2, 3, 7}) {
    asio::io_context ioc;
    ErringRedis fake(ioc, reply, piece);
    redis::Config config;
    config.port = fake.port();
    config.command_timeout = 10s;  // a reply in 40 pieces takes 40 pauses: not the point here
    auto client = redis::Client::create(ioc.get_executor(), config);
    client->start();
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!client->connected() && std::chrono::steady_clock::now() < deadline) ioc.run_for(10ms);
    ioc.restart();
    ASSERT_TRUE(client->connected());
    auto check = [&](const redis::Reply& r) {
      ASSERT_EQ(r.type, redis::Reply::Type::array) << piece;
      ASSERT_EQ(r.elements.size(), 4U) << piece;
      EXPECT_EQ(r.elements[0].str, "hello\r\nworld") << piece;
      ASSERT_EQ(r.elements[1].elements.size(), 2U) << piece;
      EXPECT_EQ(r.elements[1].elements[0].integer, -42) << piece;
      EXPECT_TRUE(r.elements[1].elements[1].is_nil()) << piece;
      EXPECT_EQ(r.elements[2].type, redis::Reply::Type::status) << piece;
      EXPECT_EQ(r.elements[2].str, "OK") << piece;
      EXPECT_EQ(r.elements[3].type, redis::Reply::Type::string) << piece;
      EXPECT_EQ(r.elements[3].str, "") << piece;
    };
    test::run(ioc, [&]() -> asio::awaitable<void> {
      check(co_await client->command("GET", "k"));
      std::vector<redis::Command> cmds;
      cmds.push_back({"GET", "a"});
      cmds.push_back({"GET", "b"});
      cmds.push_back({"GET", "c"});
      auto replies = co_await client->pipeline(std::move(cmds));
      EXPECT_EQ(replies.size(), 3U);
      for (const auto& r : replies) check(r);
    });
    client->stop();
    ioc.run_for(50ms);
  }
}
