// The accounts flow: email codes, sessions, token refresh and logout.
//
// Stateless by construction: codes, cooldowns, rate limits and the revocation denylist
// live in Redis (shared by every instance); users, sessions and hashed refresh tokens
// in PostgreSQL; the access token itself is the only thing a request brings. Outcomes
// caused by input are values (enums); infrastructure failures are exceptions.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "auth/codes.hpp"
#include "auth/config.hpp"
#include "auth/jwt.hpp"
#include "auth/verified_tokens.hpp"
#include "core/clock.hpp"
#include "store/pg/pool.hpp"
#include "store/redis/client.hpp"
#include "store/redis/rate_limit.hpp"

namespace nimbus::auth {

struct User {
  std::string id, email, created_at;
};

struct Tokens {
  std::string access_token;
  std::int64_t expires_in = 0;
  std::string refresh_token;
  User user;
};

enum class Failure {
  invalid_email,      // 422
  rate_limited,       // 429 + Retry-After (per IP)
  resend_cooldown,    // 429 + Retry-After (per address)
  invalid_code,       // 401
  code_expired,       // 401
  too_many_attempts,  // 429
  invalid_token,      // 401
  // 401: a rotated token replayed within its grace window, whose chain has grown longer
  // since than the walk to its live end goes (Service::refresh).
  refresh_chain_too_long,
};

struct Refused {
  Failure failure;
  std::chrono::seconds retry_after{0};
};

template <typename T>
using Outcome = std::variant<T, Refused>;

struct Started {};

// The UTC day (by the service's clock) the guess budgets of sign-in codes count in: its
// number (part of the counters' keys) and the time left in it (a refusal's Retry-After).
struct DayWindow {
  std::int64_t day = 0;
  std::chrono::seconds left{0};
};
DayWindow day_window(std::chrono::system_clock::time_point now);

class Service {
 public:
  // `clock` dates tokens, rate-limit windows, guess budgets and sign-outs; `codes` draws
  // sign-in codes (tests pass their own of both).
  Service(Config config, std::shared_ptr<pg::Pool> pg, std::shared_ptr<redis::Client> redis,
          std::shared_ptr<const core::Clock> clock = core::Clock::system(), CodeSource codes = {});

  // Sign-in by email code (email_codes.cpp, whose header comment says what bounds
  // guessing). `client_ip` is the address the API sees (routes.hpp client_ip()).
  boost::asio::awaitable<Outcome<Started>> start_email(std::string email, std::string client_ip);
  boost::asio::awaitable<Outcome<Tokens>> verify_email(std::string email, std::string code, std::string client_ip);
  boost::asio::awaitable<Outcome<Tokens>> refresh(std::string refresh_token);
  boost::asio::awaitable<void> logout(Claims claims, bool everywhere);
  // The claims of a valid, unrevoked access token from an Authorization header value.
  boost::asio::awaitable<std::optional<Claims>> authenticate(std::string authorization);
  // Only the local half of authenticate(): the claims of a validly signed, unexpired
  // token, revoked or not.
  std::optional<Claims> verify(std::string_view authorization);
  // Whether the session or the user was signed out after the token was issued. Throws
  // DependencyUnavailable when that cannot be known (fails closed).
  boost::asio::awaitable<bool> revoked(const Claims& claims);
  // revoked() in two halves: the lookups go out now, the answer is awaited later, so
  // that a read-only handler's own Redis reads share their round trip. The answer (or
  // the failure) is kept: revoked() may be awaited again, one caller at a time.
  class RevocationCheck {
   public:
    boost::asio::awaitable<bool> revoked();

   private:
    friend class Service;
    RevocationCheck(redis::Client::InFlight lookups, std::int64_t issued_at)
        : lookups_(std::move(lookups)), issued_at_(issued_at) {}
    redis::Client::InFlight lookups_;
    std::int64_t issued_at_;
    std::optional<bool> answer_;
    std::exception_ptr failed_;
  };
  RevocationCheck check_revocation(const Claims& claims, boost::asio::any_io_executor executor);
  // False while Redis is not connected (a check would fail at once).
  bool revocation_reachable() const { return redis_->connected(); }
  boost::asio::awaitable<std::optional<User>> user(std::string id);

  const Config& config() const { return config_; }

 private:
  // nullopt within the limit; else the time left in the current window.
  boost::asio::awaitable<std::optional<std::chrono::seconds>> over_rate(const std::string& kind, const std::string& ip,
                                                                        int limit);
  Tokens issue(const User& user, const std::string& session_id, std::string refresh_token) const;
  // A new session of the address's user (created on first sign-in) and its tokens.
  boost::asio::awaitable<Outcome<Tokens>> open_session(std::string email);

  Config config_;
  std::unique_ptr<VerifiedTokens> verified_ = std::make_unique<VerifiedTokens>();
  std::shared_ptr<pg::Pool> pg_;
  std::shared_ptr<redis::Client> redis_;
  std::shared_ptr<const core::Clock> clock_;
  redis::RateLimiter rates_{redis_, clock_};  // the per-IP limits (over_rate)
  CodeSource codes_;
};

}  // namespace nimbus::auth
