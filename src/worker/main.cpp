// nimbus-worker: background jobs — the outbox relay, email, thumbnails (with the
// stuck-image sweeper), the tally reconciler.
// Only main builds concrete clients; the worker serves /healthz, /readyz and /metrics
// on its own port.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

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
#include "worker/image_job.hpp"

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

asio::awaitable<void> sweep_images(std::shared_ptr<pg::Pool> pg, std::shared_ptr<s3::Client> s3,
                                   worker::ImageJobConfig config, const std::atomic<bool>* running) {
  asio::steady_timer tick(co_await asio::this_coro::executor);
  while (running->load()) {
    tick.expires_after(config.sweep_interval);
    co_await tick.async_wait(asio::as_tuple(asio::use_awaitable));
    if (!running->load()) break;
    try {
      if (auto n = co_await worker::requeue_stuck(pg, config.stuck_after); n > 0) {
        log::warn("re-queued stuck images", {{"images", n}});
      }
      // Direct-upload URLs live 10 minutes; a reservation an hour old is abandoned.
      if (auto n = co_await worker::purge_abandoned_uploads(pg, s3, std::chrono::hours(1)); n > 0) {
        log::info("removed abandoned direct uploads", {{"images", n}});
      }
    } catch (const std::exception& e) {
      log::warn("image sweep failed", {{"error", e.what()}});
    }
  }
}

int run_worker(const runtime::ServiceConfig& config) {
  const auto started = std::chrono::steady_clock::now();
  asio::io_context ioc(static_cast<int>(config.lifecycle.threads));
  http::Metrics metrics;
  http::Readiness readiness;

  auto pg_config = pg::PoolConfig::from_env();
  pg_config.size = 4;
  auto pg = pg::Pool::create(ioc.get_executor(), pg_config);
  pg->export_metrics(metrics);
  auto schema_ready = pg::migrate_in_background(ioc.get_executor(), pg);
  readiness.add_check("postgres", [pg, schema_ready] { return pg::ready(pg, schema_ready); });

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
  worker::init_vips("nimbus-worker");
  worker::ImageJobs image_jobs(ioc, pg, s3, publisher, image_config);
  image_jobs.export_metrics(metrics);
  amqp::Consumer images(amqp::Config::from_env(), std::string(amqp::topology::kImageProcess), image_config.threads,
                        [&image_jobs](const amqp::Delivery& d) { return image_jobs.handle(d); });
  images.start();
  std::atomic<bool> sweeping{true};
  asio::co_spawn(ioc, sweep_images(pg, s3, image_config, &sweeping), asio::detached);

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
  const int code = runtime::run(ioc, server, readiness, config.lifecycle, [&relay, &reconciler, &sweeping, redis] {
    sweeping = false;
    reconciler.stop();
    redis->stop();
    return stop_relay(&relay);
  });
  // Unfinished jobs go back to the queue when the consumer's connection closes.
  emails.stop(config.lifecycle.shutdown_timeout);
  images.stop(config.lifecycle.shutdown_timeout);
  return code;
}

}  // namespace

int main() {
  return runtime::service_main("nimbus-worker", run_worker);
}
