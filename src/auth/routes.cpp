#include "auth/routes.hpp"

#include <boost/asio/this_coro.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include "auth/codes.hpp"
#include "http/json_body.hpp"
#include "http/problem.hpp"

namespace nimbus::auth {

namespace asio = boost::asio;
using http::Request;
using http::Response;

namespace {

constexpr std::size_t kSmallBody = 4 * 1024;

Response unauthorized(std::string_view code, std::string_view detail, bool token_was_sent) {
  auto res = http::problem(401, code, "Unauthorized", detail);
  res.headers.set("WWW-Authenticate",
                  token_was_sent ? R"(Bearer realm="nimbus", error="invalid_token")" : R"(Bearer realm="nimbus")");
  return res;
}

Response refused(const Refused& r) {
  Response res;
  switch (r.failure) {
    case Failure::invalid_email:
      return http::invalid_field("invalid_email", "Give a valid email address.");
    case Failure::rate_limited:
      res = http::problem(429, "rate_limited", "Too many requests", "Too many requests from this address.");
      break;
    case Failure::resend_cooldown:
      res = http::problem(429, "resend_cooldown", "Too many requests", "A code was sent recently; wait to ask again.");
      break;
    case Failure::too_many_attempts:
      res = http::problem(429, "too_many_attempts", "Too many attempts", "Too many wrong codes; ask for a new one.");
      break;
    case Failure::invalid_code:
      return http::problem(401, "invalid_code", "Invalid code", "The code is wrong.");
    case Failure::code_expired:
      return http::problem(401, "code_expired", "Code expired", "The code has expired or was used; ask for a new one.");
    case Failure::invalid_token:
      return unauthorized("invalid_token", "The refresh token is not valid.", true);
    case Failure::refresh_chain_too_long:
      return unauthorized("refresh_chain_too_long",
                          "The refresh token was replaced too many times since; use the newest one or sign in again.",
                          true);
  }
  res.headers.set("Retry-After", std::to_string(std::max<std::int64_t>(1, r.retry_after.count())));
  return res;
}

boost::json::object user_json(const User& u) {
  return {{"id", u.id}, {"email", u.email}};
}

constexpr std::string_view kCookie = "nimbus_refresh";

// Browser mode: the refresh token travels only in an HttpOnly, SameSite=Strict cookie
// scoped to /v1/auth, out of reach of page scripts; API clients get it in the body.
bool wants_cookie(const boost::json::object& body) {
  const auto* v = body.if_contains("cookie");
  return v && v->is_bool() && v->as_bool();
}

std::string refresh_cookie(const Config& config, std::string_view value, std::int64_t max_age) {
  return std::string(kCookie) + "=" + std::string(value) +
         "; Path=/v1/auth; HttpOnly; SameSite=Strict; Max-Age=" + std::to_string(max_age) +
         (config.cookie_secure ? "; Secure" : "");
}

std::optional<std::string> cookie_value(const Request& req) {
  auto header = req.header("Cookie");
  if (!header) return std::nullopt;
  std::string_view rest = *header;
  while (!rest.empty()) {
    auto semi = rest.find(';');
    auto part = rest.substr(0, semi);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    if (part.starts_with(kCookie) && part.size() > kCookie.size() && part[kCookie.size()] == '=') {
      return std::string(part.substr(kCookie.size() + 1));
    }
    if (semi == std::string_view::npos) break;
    rest.remove_prefix(semi + 1);
  }
  return std::nullopt;
}

Response tokens_response(const Tokens& t, const Config& config, bool cookie) {
  boost::json::object body{{"access_token", t.access_token},
                           {"token_type", "Bearer"},
                           {"expires_in", t.expires_in},
                           {"user", user_json(t.user)}};
  if (!cookie) body["refresh_token"] = t.refresh_token;
  auto res = http::json(200, boost::json::serialize(body));
  res.headers.set("Cache-Control", "no-store");
  if (cookie) res.headers.set("Set-Cookie", refresh_cookie(config, t.refresh_token, config.refresh_absolute.count()));
  return res;
}

asio::awaitable<Response> start(std::shared_ptr<Service> service, Request& req) {
  auto parsed = http::json_object_body(req);
  if (auto* problem = std::get_if<Response>(&parsed)) co_return std::move(*problem);
  auto email = http::string_field(std::get<boost::json::object>(parsed), "email", 320);
  if (!email) co_return http::invalid_field("invalid_email", "Give a valid email address.");
  auto outcome = co_await service->start_email(std::move(*email), client_ip(req, service->config()));
  if (auto* r = std::get_if<Refused>(&outcome)) co_return refused(*r);
  co_return http::json(202, R"({"status":"sent"})");
}

asio::awaitable<Response> verify(std::shared_ptr<Service> service, Request& req) {
  auto parsed = http::json_object_body(req);
  if (auto* problem = std::get_if<Response>(&parsed)) co_return std::move(*problem);
  const auto& body = std::get<boost::json::object>(parsed);
  auto email = http::string_field(body, "email", 320);
  auto code = http::string_field(body, "code", 32);
  if (!email) co_return http::invalid_field("invalid_email", "Give a valid email address.");
  if (!code) co_return http::invalid_field("invalid_code_format", "Give the 6-digit code as a string.");
  const bool cookie = wants_cookie(body);
  auto outcome = co_await service->verify_email(std::move(*email), std::move(*code), client_ip(req, service->config()));
  if (auto* r = std::get_if<Refused>(&outcome)) co_return refused(*r);
  co_return tokens_response(std::get<Tokens>(outcome), service->config(), cookie);
}

asio::awaitable<Response> refresh(std::shared_ptr<Service> service, Request& req) {
  // A browser sends the token in its cookie (and may send no body at all).
  std::optional<std::string> token = cookie_value(req);
  const bool cookie = token.has_value();
  if (!cookie) {
    auto parsed = http::json_object_body(req);
    if (auto* problem = std::get_if<Response>(&parsed)) co_return std::move(*problem);
    token = http::string_field(std::get<boost::json::object>(parsed), "refresh_token", 128);
    if (!token) co_return http::invalid_field("invalid_refresh_token", "Give the refresh_token as a string.");
  }
  auto outcome = co_await service->refresh(std::move(*token));
  if (auto* r = std::get_if<Refused>(&outcome)) {
    auto res = refused(*r);
    if (cookie) res.headers.set("Set-Cookie", refresh_cookie(service->config(), "", 0));
    co_return res;
  }
  co_return tokens_response(std::get<Tokens>(outcome), service->config(), cookie);
}

asio::awaitable<Response> logout(std::shared_ptr<Service> service, Request& req, Claims claims) {
  bool everywhere = false;
  if (!req.body.empty()) {
    auto parsed = http::json_object_body(req);
    if (auto* problem = std::get_if<Response>(&parsed)) co_return std::move(*problem);
    const auto& body = std::get<boost::json::object>(parsed);
    if (body.contains("scope")) {
      auto scope = http::string_field(body, "scope", 16);
      if (!scope || (*scope != "local" && *scope != "global")) {
        co_return http::invalid_field("invalid_scope", "scope is \"local\" or \"global\".");
      }
      everywhere = *scope == "global";
    }
  }
  co_await service->logout(std::move(claims), everywhere);
  auto res = http::empty(204);
  if (cookie_value(req)) res.headers.set("Set-Cookie", refresh_cookie(service->config(), "", 0));
  co_return res;
}

asio::awaitable<Response> me(std::shared_ptr<Service> service, Claims claims) {
  auto user = co_await service->user(claims.sub);
  if (!user) co_return unauthorized("invalid_token", "The account no longer exists.", true);
  boost::json::object body{{"id", user->id}, {"email", user->email}, {"created_at", user->created_at}};
  co_return http::json(200, boost::json::serialize(body));
}

asio::awaitable<Response> jwks(std::shared_ptr<Service> service) {
  auto res = http::json(200, service->config().keys->jwks());
  res.headers.set("Cache-Control", "public, max-age=300");
  co_return res;
}

Response invalid_token() {
  return unauthorized("invalid_token", "The access token is invalid, expired or revoked.", true);
}

}  // namespace

std::variant<Claims, Response> bearer_claims(Service& service, const Request& req) {
  auto header = req.header("Authorization");
  if (!header) return unauthorized("missing_token", "Sign in and send Authorization: Bearer <token>.", false);
  auto claims = service.verify(*header);
  if (!claims) return invalid_token();
  return std::move(*claims);
}

namespace {

asio::awaitable<Response> guard(std::shared_ptr<Service> service, AuthedHandler handler, Request& req) {
  auto bearer = bearer_claims(*service, req);
  if (auto* refusal = std::get_if<Response>(&bearer)) co_return std::move(*refusal);
  const auto& claims = std::get<Claims>(bearer);
  if (co_await service->revoked(claims)) co_return invalid_token();
  co_return co_await handler(req, claims);
}

struct RevokedToken {};

asio::awaitable<void> confirm_unrevoked(std::shared_ptr<Service::RevocationCheck> check) {
  // (a named result, not this frame's parameter moved into a co_await inside the `if`:
  // GCC 12 destroyed that parameter twice, docs/adr/0001)
  const bool revoked = co_await check->revoked();
  if (revoked) throw RevokedToken{};
}

// A read runs while its token's revocation check is in flight: its own Redis reads go
// out in the same write and come back in the same round trip. Its answer waits for the
// check, and a revoked token gets the same 401 as above (the answer it would have had
// is dropped, whatever it was). Before reading anything of the caller's own, the
// handler awaits `confirm` (how long that read takes must not answer a revoked token's
// holder). With Redis unreachable the check has already failed: no read is started.
asio::awaitable<Response> guard_read(std::shared_ptr<Service> service, ReadHandler handler, Request& req) {
  auto bearer = bearer_claims(*service, req);
  if (auto* refusal = std::get_if<Response>(&bearer)) co_return std::move(*refusal);
  const auto& claims = std::get<Claims>(bearer);
  if (!service->revocation_reachable()) {
    if (co_await service->revoked(claims)) co_return invalid_token();  // throws: 503
  }
  // (no co_await in the expression that makes the check: GCC 12 destroys a temporary
  // of such an expression twice, docs/adr/0001)
  const auto executor = co_await asio::this_coro::executor;
  auto check = std::make_shared<Service::RevocationCheck>(service->check_revocation(claims, executor));
  // (named, not a temporary in the co_await: docs/adr/0001)
  Confirm confirm = [check] { return confirm_unrevoked(check); };
  std::optional<Response> answer;
  std::exception_ptr failure;
  bool refused = false;
  try {
    answer = co_await handler(req, claims, confirm);
  } catch (const RevokedToken&) {
    refused = true;
  } catch (...) {
    failure = std::current_exception();
  }
  if (refused) co_return invalid_token();
  const bool revoked = co_await check->revoked();
  if (revoked) co_return invalid_token();
  if (failure) std::rethrow_exception(failure);
  co_return std::move(*answer);
}

}  // namespace

std::string client_ip(const Request& req, const Config& config) {
  // Being on loopback (or any address) proves nothing: any local process can connect
  // to an instance directly. Only the gateway knows the secret.
  const auto proof = req.header("X-Nimbus-Gateway");
  const bool trusted = !config.gateway_secret.empty() && proof && constant_time_equal(*proof, config.gateway_secret);
  if (trusted) {
    if (auto xff = req.header("X-Forwarded-For")) {
      auto last = xff->rfind(',');
      auto hop = xff->substr(last == std::string_view::npos ? 0 : last + 1);
      while (!hop.empty() && hop.front() == ' ') hop.remove_prefix(1);
      if (!hop.empty() && hop.size() <= 64) return std::string(hop);
    }
  }
  return req.remote_addr;
}

http::Handler authenticated(std::shared_ptr<Service> service, AuthedHandler handler) {
  return [service, handler](Request& req) { return guard(service, handler, req); };
}

http::Handler authenticated_read(std::shared_ptr<Service> service, ReadHandler handler) {
  return [service, handler](Request& req) { return guard_read(service, handler, req); };
}

void add_routes(http::Router& router, std::shared_ptr<Service> service) {
  const http::RouteOptions small{.body_limit = kSmallBody};
  router.add(
      http::Method::post, "/v1/auth/email/start", [service](Request& r) { return start(service, r); }, small);
  router.add(
      http::Method::post, "/v1/auth/email/verify", [service](Request& r) { return verify(service, r); }, small);
  router.add(
      http::Method::post, "/v1/auth/refresh", [service](Request& r) { return refresh(service, r); }, small);
  router.add(http::Method::post, "/v1/auth/logout",
             authenticated(service, [service](Request& r, const Claims& c) { return logout(service, r, c); }), small);
  router.add(http::Method::get, "/v1/me",
             authenticated(service, [service](Request&, const Claims& c) { return me(service, c); }));
  router.add(http::Method::get, "/.well-known/jwks.json", [service](Request&) { return jwks(service); });
}

}  // namespace nimbus::auth
