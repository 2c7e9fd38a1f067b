// Data-plane micro-benchmark driver (not a test): drives one Nimbus client against the
// running stack and prints one JSON line. bench/data_plane.sh runs it next to the raw
// tool for the same work (pgbench, redis-benchmark, pika, boto3) and prints ratios.
//
//   nimbus-bench-data pg-single  SECONDS            one connection, one statement per round trip
//   nimbus-bench-data pg-pipeline SECONDS DEPTH     one connection, DEPTH statements per round trip
//   nimbus-bench-data pg-pool    SECONDS CLIENTS    CLIENTS coroutines sharing the pool
//   nimbus-bench-data redis      SECONDS CLIENTS    SET+GET from CLIENTS coroutines (auto-pipelined)
//   nimbus-bench-data amqp       COUNT BATCH        publish with confirms, BATCH per confirm wait
//   nimbus-bench-data s3         COUNT MIB [IN_FLIGHT]  PUT COUNT objects of MIB MiB, IN_FLIGHT at a time (1)
//   nimbus-bench-data jwt        SECONDS            verify access tokens on one thread (one core)
#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "auth/jwt.hpp"
#include "core/random.hpp"
#include "queue/amqp/connection.hpp"
#include "queue/amqp/publisher.hpp"
#include "storage/s3/client.hpp"
#include "store/pg/pool.hpp"
#include "store/redis/client.hpp"

namespace asio = boost::asio;
using namespace nimbus;
using Clock = std::chrono::steady_clock;

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  if (!v) {
    std::fprintf(stderr, "%s not set (source the stack's stack.env)\n", name);
    std::exit(2);
  }
  return v;
}

void report(const char* what, double ops, double seconds, const char* unit = "ops") {
  std::printf("{\"bench\":\"%s\",\"%s\":%.0f,\"seconds\":%.3f,\"%s_per_s\":%.1f}\n", what, unit, ops, seconds, unit,
              ops / seconds);
}

template <typename Fn>
void run_on(asio::io_context& ioc, Fn&& fn, int threads = 2) {
  auto done = asio::co_spawn(ioc, std::forward<Fn>(fn)(), asio::use_future);
  std::vector<std::jthread> pool;
  auto guard = asio::make_work_guard(ioc);
  for (int i = 0; i < threads; ++i) pool.emplace_back([&ioc] { ioc.run(); });
  done.get();
  guard.reset();
  ioc.stop();
}

std::shared_ptr<pg::Pool> pg_pool(asio::io_context& ioc, std::size_t size) {
  pg::PoolConfig c;
  c.url = env("NIMBUS_TEST_DATABASE_URL");
  c.size = size;
  return pg::Pool::create(ioc.get_executor(), c);
}

asio::awaitable<void> pg_worker(std::shared_ptr<pg::Pool> pool, Clock::time_point until, int depth,
                                std::atomic<long>* ops) {
  auto db = co_await pool->acquire();
  std::vector<pg::Statement> batch;
  for (int i = 0; i < depth; ++i) batch.push_back({"SELECT $1::int", pg::params(i)});
  while (Clock::now() < until) {
    if (depth == 1) {
      co_await db.query("SELECT $1::int", pg::params(1));
    } else {
      co_await db.pipeline(batch);
    }
    *ops += depth;
  }
}

asio::awaitable<void> pg_pool_worker(std::shared_ptr<pg::Pool> pool, Clock::time_point until, std::atomic<long>* ops) {
  while (Clock::now() < until) {
    auto db = co_await pool->acquire();
    co_await db.query("SELECT $1::int", pg::params(1));
    ++*ops;
  }
}

asio::awaitable<void> redis_worker(std::shared_ptr<redis::Client> client, Clock::time_point until, int id,
                                   std::atomic<long>* ops) {
  const std::string key = "bench:" + std::to_string(id);
  while (Clock::now() < until) {
    co_await client->command("SET", key,
                             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    co_await client->command("GET", key);
    *ops += 2;
  }
}

// Takes the next object number until COUNT are taken: IN_FLIGHT of these share the work.
asio::awaitable<void> s3_worker(s3::Client* client, const std::string* data, int count, std::atomic<int>* next) {
  for (int i = (*next)++; i < count; i = (*next)++) {
    co_await client->put_object("bench/" + std::to_string(i), *data, "application/octet-stream");
  }
}

template <typename Worker>
asio::awaitable<void> fan_out(asio::io_context& ioc, int n, Worker worker) {
  std::vector<std::future<void>> all;
  for (int i = 0; i < n; ++i) all.push_back(asio::co_spawn(ioc, worker(i), asio::use_future));
  asio::steady_timer t(co_await asio::this_coro::executor);
  for (auto& f : all) {
    while (f.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      t.expires_after(std::chrono::milliseconds(5));
      co_await t.async_wait(asio::use_awaitable);
    }
    f.get();
  }
}

std::string ids_placeholder() {
  return "01937b2e-5f3a-7c41-9d2e-6a8b4c1f0e27";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: see the comment at the top of bench/data_plane_bench.cpp\n");
    return 2;
  }
  const std::string what = argv[1];
  const double a = std::atof(argv[2]);
  const int b = argc > 3 ? std::atoi(argv[3]) : 1;
  asio::io_context ioc;
  std::atomic<long> ops{0};

  if (what == "pg-single" || what == "pg-pipeline") {
    auto pool = pg_pool(ioc, 1);
    const int depth = what == "pg-single" ? 1 : b;
    const auto began = Clock::now();
    const auto until = began + std::chrono::milliseconds(static_cast<long>(a * 1000));
    run_on(ioc, [&] { return pg_worker(pool, until, depth, &ops); });
    report(what.c_str(), static_cast<double>(ops), std::chrono::duration<double>(Clock::now() - began).count());
  } else if (what == "pg-pool") {
    auto pool = pg_pool(ioc, static_cast<std::size_t>(b));
    const auto began = Clock::now();
    const auto until = began + std::chrono::milliseconds(static_cast<long>(a * 1000));
    run_on(ioc, [&] { return fan_out(ioc, b, [&](int) { return pg_pool_worker(pool, until, &ops); }); });
    report(what.c_str(), static_cast<double>(ops), std::chrono::duration<double>(Clock::now() - began).count());
  } else if (what == "redis") {
    auto client = redis::Client::create(ioc.get_executor(), redis::Config::from_url(env("NIMBUS_TEST_REDIS_URL")));
    client->start();
    while (!client->connected()) ioc.run_for(std::chrono::milliseconds(10));
    ioc.restart();
    const auto began = Clock::now();
    const auto until = began + std::chrono::milliseconds(static_cast<long>(a * 1000));
    run_on(ioc, [&] { return fan_out(ioc, b, [&](int i) { return redis_worker(client, until, i, &ops); }); });
    report(what.c_str(), static_cast<double>(ops), std::chrono::duration<double>(Clock::now() - began).count());
  } else if (what == "amqp") {
    auto config = amqp::Config::from_url(env("NIMBUS_TEST_AMQP_URL"));
    const std::string queue = "bench." + random::hex(4);
    {
      amqp::Connection admin(config);
      admin.declare_topology();
      admin.declare_work_queue(queue);
    }
    amqp::Publisher publisher(config);
    // The clock starts once connected, as the pika anchor's does.
    while (!publisher.connected()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const int count = static_cast<int>(a);
    const auto began = Clock::now();
    run_on(ioc, [&]() -> asio::awaitable<void> {
      for (int sent = 0; sent < count; sent += b) {
        std::vector<amqp::Message> batch;
        for (int i = 0; i < b; ++i) {
          amqp::Message m;
          m.routing_key = queue;
          m.message_id = std::to_string(sent + i);
          m.body = R"({"image_id":"0190f5a2-7d4e-7b1c-9a31-5f2c8e6d4b10","attempt":1})";
          batch.push_back(std::move(m));
        }
        co_await publisher.publish(std::move(batch));
      }
    });
    report(what.c_str(), count, std::chrono::duration<double>(Clock::now() - began).count(), "msgs");
    amqp::Connection admin(config);
    admin.delete_queue(queue);
    admin.delete_queue(amqp::topology::dead_letter_queue(queue));
  } else if (what == "s3") {
    s3::Config c;
    c.endpoint = env("NIMBUS_TEST_S3_ENDPOINT");
    c.bucket = env("NIMBUS_TEST_S3_BUCKET");
    c.credentials = {env("NIMBUS_TEST_S3_ACCESS_KEY"), env("NIMBUS_TEST_S3_SECRET_KEY"), env("NIMBUS_TEST_S3_REGION")};
    s3::Client client(c);
    const int count = static_cast<int>(a);
    std::string data(static_cast<std::size_t>(b) * 1024 * 1024, 'x');
    random::fill(std::span(reinterpret_cast<std::uint8_t*>(data.data()), data.size()));
    const int in_flight = argc > 4 ? std::max(1, std::atoi(argv[4])) : 1;
    std::atomic<int> next{0};
    const auto began = Clock::now();
    run_on(ioc, [&] { return fan_out(ioc, in_flight, [&](int) { return s3_worker(&client, &data, count, &next); }); });
    const double seconds = std::chrono::duration<double>(Clock::now() - began).count();
    report(what.c_str(), static_cast<double>(count) * b, seconds, "MiB");
    asio::io_context cleanup;
    run_on(cleanup, [&]() -> asio::awaitable<void> {
      for (int i = 0; i < count; ++i) {
        std::string key = "bench/" + std::to_string(i);
        co_await client.delete_object(std::move(key));
      }
    });
  } else if (what == "jwt") {
    auth::KeySet keys({auth::Key::generate("k1")}, "k1");
    const auto now = std::chrono::system_clock::now();
    const auto t = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
    const auto token = keys.sign({"nimbus", "nimbus-api", ids_placeholder(), "session", "jti", t, t + 900, {}});
    const auto began = Clock::now();
    const auto until = began + std::chrono::milliseconds(static_cast<long>(a * 1000));
    long n = 0;
    while (Clock::now() < until) {
      for (int i = 0; i < 100; ++i) n += keys.verify(token, "nimbus", "nimbus-api", now).ok() ? 1 : 0;
    }
    report("jwt-verify", static_cast<double>(n), std::chrono::duration<double>(Clock::now() - began).count());
  } else {
    std::fprintf(stderr, "unknown benchmark %s\n", what.c_str());
    return 2;
  }
  return 0;
}
