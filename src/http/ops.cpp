#include "http/ops.hpp"

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include "http/problem.hpp"

namespace nimbus::http {
namespace {

// Handlers are plain coroutine functions; the route lambdas below are not coroutines
// themselves, so no coroutine frame ever points into a lambda's captures.
boost::asio::awaitable<Response> healthz() {
  co_return json(200, R"({"status":"ok"})");
}

boost::asio::awaitable<Response> readyz(ops::Readiness& readiness) {
  auto report = co_await readiness.report();
  boost::json::object body;
  body["status"] = report.draining ? "draining" : report.ready ? "ready" : "unavailable";
  boost::json::object checks;
  for (const auto& [name, ok] : report.checks) checks[name] = ok ? "ok" : "failing";
  body["checks"] = std::move(checks);
  auto res = json(report.ready ? 200 : 503, boost::json::serialize(body));
  res.headers.set("Cache-Control", "no-store");
  co_return res;
}

boost::asio::awaitable<Response> metrics_text(const ops::Metrics& metrics) {
  co_return text(200, metrics.render(), "text/plain; version=0.0.4; charset=utf-8");
}

}  // namespace

void add_probe_routes(Router& router, ops::Readiness& readiness) {
  router.add(Method::get, "/healthz", [](Request&) { return healthz(); });
  router.add(Method::get, "/readyz", [&readiness](Request&) { return readyz(readiness); });
}

void add_ops_routes(Router& router, ops::Readiness& readiness, const ops::Metrics& metrics) {
  add_probe_routes(router, readiness);
  router.add(Method::get, "/metrics", [&metrics](Request&) { return metrics_text(metrics); });
}

}  // namespace nimbus::http
