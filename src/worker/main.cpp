// nimbus-worker: background jobs — the outbox relay, email, thumbnails (with the
// stuck-image sweeper), the tally reconciler. With NIMBUS_WORKER_MODE=function it is
// instead the thumbnail job alone, as a function fed CloudEvents over HTTP
// (worker/function.hpp).
// Only main builds concrete clients; the worker serves /healthz, /readyz and /metrics
// on its own port.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdlib>
#include <thread>

#include "core/env.hpp"
#include "core/oneshot.hpp"
#include "http/ops.hpp"
#include "outbox/relay.hpp"
#include "queue/amqp/consumer.hpp"
#include "queue/amqp/publisher.hpp"
#include "runtime/service.hpp"
#include "storage/s3/client.hpp"
#include "store/pg/migrate.hpp"
#include "store/pg/pool.hpp"
#include "store/redis/client.hpp"
#include "voting/reconciler.hpp"
#include "worker/email_job.hpp"
#include "worker/function.hpp"
#include "worker/image_job.hpp"
#include "worker/sweeper.hpp"
#include "worker/thumbnails.hpp"

namespace {

namespace asio = boost::asio;
using namespace nimbus;

asio::awaitable<bool> publisher_ready(const amqp::Publisher* publisher) {
  co_return publisher->connected();
}

// Lets the relay finish the batch in hand (it notices within its poll interval);
// a batch cut short would only be published again, but there is no need to.
asio::awaitable<void> stop_relay(outbox::Relay* relay) {
  relay->stop();
  asio::steady_timer tick(co_await asio::this_coro::executor);
  for (int i = 0; i < 250 && relay->running(); ++i) {
    tick.expires_after(std::chrono::milliseconds(20));
    co_await tick.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

// NIMBUS_WORKER_DRAIN_TIMEOUT: how long jobs in flight get to finish after SIGTERM. Well
// under Kubernetes' default 30 s grace period, with the drain delay before it.
std::chrono::milliseconds drain_timeout() {
  const auto d = env::duration("NIMBUS_WORKER_DRAIN_TIMEOUT", std::chrono::seconds(20));
  if (d < std::chrono::milliseconds(100) || d > std::chrono::minutes(10)) {
    throw env::ConfigError("NIMBUS_WORKER_DRAIN_TIMEOUT must be between 100ms and 10m");
  }
  return d;
}

// Stops the consumers: nothing new is taken; jobs in flight get until `drain` to finish.
// Then image jobs are cancelled (each hands its image back, the attempt uncounted) and
// storage requests aborted; whatever is still unacknowledged returns to the queue with
// the closed connection. Consumer::stop blocks (it joins threads), so it runs on threads
// of its own while this loop keeps serving the jobs' own I/O. If even that overruns by
// kOverrun (a hung SMTP server, a wedged library call), the process exits 0 at once:
// the broker requeues what it held.
asio::awaitable<void> drain_jobs(std::vector<amqp::Consumer*> consumers, worker::ImageJobs* image_jobs, s3::Client* s3,
                                 std::chrono::milliseconds drain) {
  constexpr auto kOverrun = std::chrono::seconds(3);
  const auto started = std::chrono::steady_clock::now();
  auto executor = co_await asio::this_coro::executor;
  std::vector<std::shared_ptr<OneShot<bool>>> stopped;
  for (auto* consumer : consumers) {
    auto done = std::make_shared<OneShot<bool>>(executor);
    stopped.push_back(done);
    std::thread([consumer, drain, done] {
      consumer->stop(drain);
      done->set(true);
    }).detach();
  }
  bool cancelled = false;
  for (auto& done : stopped) {
    if (!cancelled && !co_await done->wait_until(started + drain)) {
      log::warn("drain timeout: handing unfinished image jobs back", {{"drain_ms", drain.count()}});
      image_jobs->cancel();
      s3->cancel_requests();
      cancelled = true;
    }
    if (cancelled && !co_await done->wait_until(started + drain + kOverrun)) {
      log::error("jobs did not stop after the drain timeout: exiting now");
      log::shutdown();
      std::_Exit(0);
    }
  }
}

// The jobs stop while the event loop still runs (their I/O goes through it), then the
// relay: a job's retry may still be published meanwhile.
asio::awaitable<void> stop_work(std::vector<amqp::Consumer*> consumers, worker::ImageJobs* image_jobs, s3::Client* s3,
                                std::chrono::milliseconds drain, std::shared_ptr<redis::Client> redis,
                                outbox::Relay* relay) {
  co_await drain_jobs(std::move(consumers), image_jobs, s3, drain);
  redis->stop();
  co_await stop_relay(relay);
}

// Both modes' database: a small pool, migrated in the background, reported to
// readiness and metrics.
std::shared_ptr<pg::Pool> database(asio::io_context& ioc, ops::Metrics& metrics, ops::Readiness& readiness) {
  auto pg_config = pg::PoolConfig::from_env();
  pg_config.size = 4;
  auto pg = pg::Pool::create(ioc.get_executor(), pg_config);
  pg->export_metrics(metrics);
  auto schema_ready = pg::migrate_in_background(ioc.get_executor(), pg, pg::migration_mode_from_env());
  readiness.add_check("postgres", [pg, schema_ready] { return pg::ready(pg, schema_ready); });
  return pg;
}

int run_worker(const runtime::ServiceConfig& config) {
  const auto started = std::chrono::steady_clock::now();
  asio::io_context ioc(static_cast<int>(config.lifecycle.threads));
  ops::Metrics metrics;
  ops::Readiness readiness;

  auto pg = database(ioc, metrics, readiness);

  amqp::Publisher publisher(amqp::Config::from_env());
  readiness.add_check("rabbitmq", [&publisher] { return publisher_ready(&publisher); });

  outbox::Relay relay(pg, publisher);
  relay.export_metrics(metrics);
  asio::co_spawn(ioc, relay.run(), asio::detached);

  auto redis = redis::Client::create(ioc.get_executor(), redis::Config::from_env());
  redis->start();
  readiness.add_check("redis", [redis] { return redis->ping(); });
  voting::Reconciler reconciler(pg, redis, std::make_shared<voting::Tally>(redis, pg),
                                voting::ReconcilerConfig::from_env());
  reconciler.export_metrics(metrics);
  asio::co_spawn(ioc, reconciler.run(), asio::detached);

  auto s3 = std::make_shared<s3::Client>(s3::Config::from_env());
  readiness.add_check("s3", [s3] { return s3->ping(); });
  const auto image_config = worker::ImageJobConfig::from_env();
  const auto drain = drain_timeout();
  worker::init_vips("nimbus-worker");
  auto image_rows = std::make_shared<images::Repository>(pg);
  worker::ImageJobs image_jobs(ioc, image_rows, s3, publisher, image_config);
  image_jobs.export_metrics(metrics);
  amqp::Consumer images(amqp::Config::from_env(), std::string(amqp::topology::kImageProcess), image_config.threads,
                        [&image_jobs](const amqp::Delivery& d) { return image_jobs.handle(d); });
  // Off when the thumbnail function (Knative, NIMBUS_WORKER_MODE=function) consumes the
  // image queue instead; the sweeper still re-queues stuck images for it.
  if (env::boolean("NIMBUS_WORKER_IMAGE_JOBS", true)) images.start();
  std::atomic<bool> sweeping{true};
  worker::Sweeper sweeper(image_rows, s3, image_config);
  asio::co_spawn(ioc, sweeper.run(&sweeping), asio::detached);

  const auto smtp = mail::SmtpConfig::from_env();
  amqp::Consumer emails(amqp::Config::from_env(), std::string(amqp::topology::kEmailSend), 2,
                        [&smtp](const amqp::Delivery& d) { return worker::send_email(smtp, d); });
  emails.start();

  http::Router router;
  http::add_ops_routes(router, readiness, metrics);
  http::Server server(ioc, config.http, router, metrics);
  server.listen();
  const auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  log::info("listening", {{"port", server.port()}, {"startup_ms", ms}});
  std::vector<amqp::Consumer*> consumers{&images, &emails};
  return runtime::run(ioc, server, readiness, config.lifecycle,
                      [&relay, &reconciler, &sweeping, redis, consumers, &image_jobs, s3, drain] {
                        sweeping = false;
                        reconciler.stop();
                        return stop_work(consumers, &image_jobs, s3.get(), drain, redis, &relay);
                      });
}

// Invocations still running after the server's drain stop at their next step, while
// the event loop still runs their I/O (their threads wait on it); one that does not stop
// within kOverrun ends the process, as in queue mode: its sender redelivers.
asio::awaitable<void> hand_back_jobs(worker::ImageJobs* image_jobs, s3::Client* s3, const std::atomic<int>* running) {
  constexpr auto kOverrun = std::chrono::seconds(3);
  image_jobs->cancel();
  s3->cancel_requests();
  asio::steady_timer tick(co_await asio::this_coro::executor);
  const auto deadline = std::chrono::steady_clock::now() + kOverrun;
  while (running->load() > 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      log::error("function jobs did not stop after the drain: exiting now", {{"running", running->load()}});
      log::shutdown();
      std::_Exit(0);
    }
    tick.expires_after(std::chrono::milliseconds(20));
    co_await tick.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

// Function mode: only the image job, one CloudEvent per request on the HTTP port (with
// the probes and metrics). The relay, email, sweeper and reconciler stay with the queue
// workers; retries still go through the delay exchanges, back to the queue the event
// source reads. On SIGTERM the server drains its invocations, then jobs still running
// are handed back (their senders see the connection close and redeliver).
int run_function(const runtime::ServiceConfig& config) {
  const auto started = std::chrono::steady_clock::now();
  const auto function_config = worker::FunctionConfig::from_env();  // before anything connects
  asio::io_context ioc(static_cast<int>(config.lifecycle.threads));
  ops::Metrics metrics;
  ops::Readiness readiness;
  auto pg = database(ioc, metrics, readiness);
  amqp::Publisher publisher(amqp::Config::from_env());
  readiness.add_check("rabbitmq", [&publisher] { return publisher_ready(&publisher); });
  auto s3 = std::make_shared<s3::Client>(s3::Config::from_env());
  readiness.add_check("s3", [s3] { return s3->ping(); });
  const auto image_config = worker::ImageJobConfig::from_env();
  worker::init_vips("nimbus-worker");
  worker::ImageJobs image_jobs(ioc, std::make_shared<images::Repository>(pg), s3, publisher, image_config);
  image_jobs.export_metrics(metrics);
  asio::thread_pool jobs(static_cast<std::size_t>(image_config.threads));

  http::Router router;
  http::add_ops_routes(router, readiness, metrics);
  std::atomic<int> running{0};
  worker::add_function_routes(
      router, worker::CallerCheck(function_config.token),
      [&image_jobs, &running](const amqp::Delivery& d) {
        struct Counted {
          std::atomic<int>* n;
          explicit Counted(std::atomic<int>* c) : n(c) { ++*n; }
          ~Counted() { --*n; }
          Counted(const Counted&) = delete;
          Counted& operator=(const Counted&) = delete;
        } counted(&running);
        return image_jobs.handle(d);
      },
      jobs);
  http::Server server(ioc, config.http, router, metrics);
  server.listen();
  const auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  log::info("listening", {{"port", server.port()}, {"mode", "function"}, {"startup_ms", ms}});
  const int code = runtime::run(ioc, server, readiness, config.lifecycle, [&image_jobs, s3, &running] {
    return hand_back_jobs(&image_jobs, s3.get(), &running);
  });
  jobs.join();
  return code;
}

}  // namespace

int main() {
  return runtime::service_main("nimbus-worker", [](const runtime::ServiceConfig& config) {
    if (pg::migration_mode_from_env() == pg::MigrationMode::only) {
      return pg::migrate_and_exit(pg::PoolConfig::from_env());
    }
    const auto mode = env::string("NIMBUS_WORKER_MODE", "queue");
    if (mode == "function") return run_function(config);
    if (mode != "queue") throw env::ConfigError("NIMBUS_WORKER_MODE must be queue or function");
    return run_worker(config);
  });
}
