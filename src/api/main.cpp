// nimbus-api: the stateless HTTP API. The only place that builds concrete clients and
// wires them into handlers; everything else receives what it needs.
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include "api/debug_routes.hpp"
#include "auth/routes.hpp"
#include "auth/service.hpp"
#include "core/env.hpp"
#include "http/ops.hpp"
#include "images/routes.hpp"
#include "runtime/service.hpp"
#include "storage/s3/client.hpp"
#include "store/pg/migrate.hpp"
#include "store/pg/pool.hpp"
#include "store/redis/client.hpp"
#include "voting/routes.hpp"

namespace {

namespace asio = boost::asio;
using namespace nimbus;

asio::awaitable<void> stop_clients(std::shared_ptr<redis::Client> redis, std::shared_ptr<voting::LiveResults> live) {
  live->stop();
  redis->stop();
  co_return;
}

int run_api(const runtime::ServiceConfig& config) {
  const auto migrations = pg::migration_mode_from_env();
  // The migration step (a Kubernetes init container, ./stack): the schema owner's role,
  // and nothing else of the API's.
  if (migrations == pg::MigrationMode::only) return pg::migrate_and_exit(pg::PoolConfig::from_env());
  const auto started = std::chrono::steady_clock::now();
  const bool debug_routes = env::boolean("NIMBUS_DEBUG_ROUTES", false);
  asio::io_context ioc(static_cast<int>(config.lifecycle.threads));

  ops::Metrics metrics;
  ops::Readiness readiness;
  auto pg = pg::Pool::create(ioc.get_executor(), pg::PoolConfig::from_env());
  pg->export_metrics(metrics);

  // Start-up does not wait for the database: the instance listens at once and reports
  // ready when the schema is in place and PostgreSQL answers.
  auto schema_ready = pg::migrate_in_background(ioc.get_executor(), pg, migrations);
  readiness.add_check("postgres", [pg, schema_ready] { return pg::ready(pg, schema_ready); });

  auto redis = redis::Client::create(ioc.get_executor(), redis::Config::from_env());
  redis->start();
  readiness.add_check("redis", [redis] { return redis->ping(); });

  auto s3 = std::make_shared<s3::Client>(s3::Config::from_env());
  readiness.add_check("s3", [s3] { return s3->ping(); });

  auto accounts = std::make_shared<auth::Service>(auth::Config::from_env(), pg, redis);

  http::Router router;
  http::add_probe_routes(router, readiness);
  auth::add_routes(router, accounts);
  auto tally = std::make_shared<voting::Tally>(redis, pg);
  // Votes are written on their own few connections (one per flusher), with generic
  // plans: the batch statement costs more to plan than to run, and its plan does not
  // depend on the values.
  const auto box_config = voting::BallotBoxConfig::from_env();
  auto votes_pg_config = pg::PoolConfig::from_env();
  votes_pg_config.size = box_config.flushers;
  votes_pg_config.settings.emplace_back("plan_cache_mode", "force_generic_plan");
  auto votes_pg = pg::Pool::create(ioc.get_executor(), votes_pg_config);
  auto ballot_box = voting::BallotBox::create(ioc.get_executor(), votes_pg, tally, box_config);
  ballot_box->export_metrics(metrics);
  // NIMBUS_LOCAL_MEMO=0: this instance remembers nothing (docs/adr/0008), to measure
  // what remembering saves; answers are the same either way.
  auto polls = std::make_shared<voting::Service>(pg, tally, ballot_box, env::boolean("NIMBUS_LOCAL_MEMO", true));
  auto live = voting::LiveResults::create(
      ioc.get_executor(), redis::Config::from_env(),
      [polls](std::string poll_id) { return polls->snapshot(std::move(poll_id)); }, voting::LiveConfig::from_env());
  live->start();
  const auto live_config = voting::LiveConfig::from_env();
  auto stream_slots =
      std::make_shared<voting::StreamSlots>(redis, live_config.streams_per_user, 3 * live_config.heartbeat);
  // The per-user limits of creating polls, voting and uploading (429 rate_limited).
  auto rates = std::make_shared<redis::RateLimiter>(redis);
  voting::add_routes(router, polls, live, stream_slots, accounts, rates, voting::UserLimits::from_env());
  auto image_service = std::make_shared<images::Service>(
      pg, s3,
      std::chrono::duration_cast<std::chrono::seconds>(env::duration("NIMBUS_IMAGE_URL_TTL", std::chrono::minutes(5))));
  images::add_routes(router, image_service, accounts, images::UploadLimits::from_env(), rates);
  if (debug_routes) api::add_debug_routes(router, accounts);

  http::Server server(ioc, config.http, router, metrics);
  server.listen();

  // Metrics on a listener of their own, never behind the public gateway: what a
  // scraper reads is not for clients, and the API port stays the API.
  http::Router ops_router;
  http::add_ops_routes(ops_router, readiness, metrics);
  auto ops_config = config.http;
  ops_config.address = env::string("NIMBUS_OPS_ADDRESS", "127.0.0.1");
  ops_config.port = static_cast<std::uint16_t>(env::integer("NIMBUS_OPS_PORT", 9090, 0, 65535));
  ops_config.socket_path = env::string("NIMBUS_OPS_SOCKET", "");  // the gateway's metrics scrape
  // Probes and scrapers make short requests: a connection that sits idle goes soon, and
  // one that never speaks makes room at the limit (see ServerConfig::silent_grace), so
  // a few clients holding connections open cannot make a liveness probe fail.
  ops_config.max_connections = 256;
  ops_config.idle_timeout = std::chrono::seconds(5);
  ops_config.header_timeout = std::chrono::seconds(2);
  ops_config.silent_grace = std::chrono::milliseconds(200);
  ops::Metrics ops_metrics;  // the ops listener's own traffic is not the API's
  http::Server ops_server(ioc, ops_config, ops_router, ops_metrics);
  ops_server.listen();

  const auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  log::info("listening", {{"port", server.port()},
                          {"ops_port", ops_server.port()},
                          {"threads", config.lifecycle.threads},
                          {"startup_ms", ms}});
  return runtime::run(ioc, {&server, &ops_server}, readiness, config.lifecycle,
                      [redis, live] { return stop_clients(redis, live); });
}

}  // namespace

int main() {
  return runtime::service_main("nimbus-api", run_api);
}
