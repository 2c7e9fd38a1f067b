#include "api/debug_routes.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <charconv>
#include <optional>
#include <thread>

#include "auth/routes.hpp"
#include "http/problem.hpp"

namespace nimbus::api {
namespace {

namespace asio = boost::asio;

std::optional<int> milliseconds(const http::Request& req) {
  auto ms_text = req.query_param("ms").value_or("1000");
  int ms = 0;
  auto [ptr, ec] = std::from_chars(ms_text.data(), ms_text.data() + ms_text.size(), ms);
  if (ec != std::errc{} || ptr != ms_text.data() + ms_text.size() || ms < 0 || ms > 60'000) return std::nullopt;
  return ms;
}

http::Response invalid_ms() {
  return http::problem(422, "invalid_parameter", "Invalid parameter", "ms must be an integer in [0, 60000].");
}

asio::awaitable<http::Response> sleep(http::Request& req) {
  auto ms = milliseconds(req);
  if (!ms) co_return invalid_ms();
  asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::milliseconds(*ms));
  co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  co_return http::json(200, R"({"slept_ms":)" + std::to_string(*ms) + "}");
}

// Blocks the event loop itself, as a handler stuck on the CPU would: the drill for the
// watchdog (which aborts the instance) and the gateway (which stops sending to it).
asio::awaitable<http::Response> hang(http::Request& req) {
  auto ms = milliseconds(req);
  if (!ms) co_return invalid_ms();
  std::this_thread::sleep_for(std::chrono::milliseconds(*ms));
  co_return http::json(200, R"({"hung_ms":)" + std::to_string(*ms) + "}");
}

asio::awaitable<http::Response> echo(http::Request& req) {
  co_return http::json(200, R"({"bytes":)" + std::to_string(req.body.size()) + "}");
}

// The bearer token checked as every authenticated request checks it on the instance
// (signature, expiry, the verified-token memo), but not its revocation in Redis. Next
// to /healthz and a results read, bench/votes.py splits a read's cost into the token
// and the Redis round trip with what follows it. Never a substitute for the real check.
asio::awaitable<http::Response> token(std::shared_ptr<auth::Service> accounts, http::Request& req) {
  auto bearer = auth::bearer_claims(*accounts, req);
  if (auto* refusal = std::get_if<http::Response>(&bearer)) co_return std::move(*refusal);
  co_return http::json(200, R"({"sub":")" + std::get<auth::Claims>(bearer).sub + R"("})");
}

}  // namespace

void add_debug_routes(http::Router& router, std::shared_ptr<auth::Service> accounts) {
  router.add(http::Method::get, "/debug/token", [accounts](http::Request& r) { return token(accounts, r); });
  router.add(http::Method::get, "/debug/sleep", [](http::Request& r) { return sleep(r); });
  router.add(http::Method::post, "/debug/hang", [](http::Request& r) { return hang(r); });
  router.add(http::Method::post, "/debug/echo", [](http::Request& r) { return echo(r); }, {.body_limit = 64 * 1024});
}

}  // namespace nimbus::api
