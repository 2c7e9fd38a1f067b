#include "auth/service.hpp"

#include <boost/asio/this_coro.hpp>

#include "auth/codes.hpp"
#include "core/hex.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "core/random.hpp"
#include "http/message.hpp"

namespace nimbus::auth {

namespace asio = boost::asio;
using std::chrono::seconds;

namespace {

constexpr std::string_view kCreateSession = R"(
WITH u AS (
  INSERT INTO users (id, email) VALUES ($1, $2)
  ON CONFLICT (email) DO UPDATE SET email = EXCLUDED.email
  RETURNING id, email, created_at),
s AS (
  INSERT INTO sessions (id, user_id, expires_at)
  SELECT $3, id, now() + make_interval(secs => $4) FROM u RETURNING id),
t AS (
  INSERT INTO refresh_tokens (hash, session_id) SELECT decode($5, 'hex'), id FROM s)
SELECT id, email, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') FROM u)";

// Locks the token and its session, so that concurrent refreshes of one session queue up.
constexpr std::string_view kFindToken = R"(
SELECT s.id, s.user_id, u.email, to_char(u.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       rt.rotated_at IS NOT NULL,
       rt.rotated_at IS NOT NULL AND now() - rt.rotated_at <= make_interval(secs => $2),
       s.revoked_at IS NOT NULL OR s.expires_at <= now() OR s.last_used_at < now() - make_interval(secs => $3)
  FROM refresh_tokens rt
  JOIN sessions s ON s.id = rt.session_id
  JOIN users u ON u.id = s.user_id
 WHERE rt.hash = decode($1, 'hex')
   FOR UPDATE OF rt, s)";
constexpr std::string_view kRotate = "UPDATE refresh_tokens SET rotated_at = now() WHERE hash = decode($1, 'hex')";
constexpr std::string_view kAddToken =
    "INSERT INTO refresh_tokens (hash, session_id) VALUES (decode($1, 'hex'), $2) ON CONFLICT (hash) DO NOTHING";
constexpr std::string_view kTokenRotated =
    "SELECT rotated_at IS NOT NULL FROM refresh_tokens WHERE hash = decode($1, 'hex') AND session_id = $2";
constexpr std::string_view kTouchSession = "UPDATE sessions SET last_used_at = now() WHERE id = $1";
constexpr std::string_view kRevokeSession =
    "UPDATE sessions SET revoked_at = now(), revoke_reason = $2 WHERE id = $1 AND revoked_at IS NULL";
constexpr std::string_view kRevokeUser =
    "UPDATE sessions SET revoked_at = now(), revoke_reason = $2 WHERE user_id = $1 AND revoked_at IS NULL";
constexpr std::string_view kUser =
    "SELECT id, email, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM users WHERE id = "
    "$1";

// How long a revocation is kept: past the last moment any access token it covers is
// accepted. Such a token was issued by the time of the revocation, so it expires within
// access_ttl of it and is accepted until exp plus the clock leeway; the minute more
// covers the time between reading the clock and the key's write, and Redis's own clock.
std::string revocation_ttl(const Config& config) {
  return std::to_string((config.access_ttl + kClockLeeway + seconds(60)).count());
}

// How many successors a rotated token replayed within its grace window walks to reach
// the live end of its chain: one query each, inside the transaction that holds the
// session's lock. Clients that retry or refresh from two tabs meet a step or two; a
// session rotated more often than this within one grace window is refused the replay
// (its live token keeps working), never handed a token the walk did not check.
constexpr int kChainWalk = 16;

std::string sid_key(const std::string& sid) {
  return "auth:revoked:sid:" + sid;
}
std::string user_key(const std::string& uid) {
  return "auth:revoked:user:" + uid;
}

}  // namespace

Service::Service(Config config, std::shared_ptr<pg::Pool> pg, std::shared_ptr<redis::Client> redis,
                 std::shared_ptr<const core::Clock> clock, CodeSource codes)
    : config_(std::move(config)),
      pg_(std::move(pg)),
      redis_(std::move(redis)),
      clock_(std::move(clock)),
      codes_(std::move(codes)) {}

asio::awaitable<std::optional<seconds>> Service::over_rate(const std::string& kind, const std::string& ip, int limit) {
  co_return co_await rates_.hit("auth:rl:" + kind + ":" + rate_subject(ip), limit);
}

Tokens Service::issue(const User& user, const std::string& session_id, std::string refresh_token) const {
  const auto now = core::unix_seconds(*clock_);
  Claims c{
      config_.issuer, config_.audience, user.id, session_id, random::hex(16), now, now + config_.access_ttl.count(),
      std::nullopt};
  return {config_.keys->sign(c), config_.access_ttl.count(), std::move(refresh_token), user};
}

asio::awaitable<Outcome<Tokens>> Service::open_session(std::string email) {
  const auto session_id = ids::uuid_v7();
  auto refresh_token = generate_refresh_token();
  auto db = co_await pg_->acquire();
  auto r =
      co_await db.query(kCreateSession, pg::params(ids::uuid_v7(), email, session_id, config_.refresh_absolute.count(),
                                                   to_hex(token_hash(refresh_token))));
  User user{std::string(r.get(0, 0)), std::string(r.get(0, 1)), std::string(r.get(0, 2))};
  log::info("signed in", {{"user_id", user.id}, {"session_id", session_id}});
  co_return issue(user, session_id, std::move(refresh_token));
}

asio::awaitable<Outcome<Tokens>> Service::refresh(std::string refresh_token) {
  if (refresh_token.empty() || refresh_token.size() > 128) co_return Refused{Failure::invalid_token};
  const auto hash = to_hex(token_hash(refresh_token));
  auto db = co_await pg_->acquire();
  co_await db.execute_script("BEGIN");
  auto found =
      co_await db.query(kFindToken, pg::params(hash, config_.refresh_grace.count(), config_.refresh_idle.count()));
  if (found.rows() == 0) {
    co_await db.execute_script("COMMIT");
    co_return Refused{Failure::invalid_token};
  }
  const std::string session_id(found.get(0, 0));
  User user{std::string(found.get(0, 1)), std::string(found.get(0, 2)), std::string(found.get(0, 3))};
  const bool rotated = found.get_bool(0, 4), in_grace = found.get_bool(0, 5), dead = found.get_bool(0, 6);
  if (dead) {
    co_await db.execute_script("COMMIT");
    co_return Refused{Failure::invalid_token};
  }
  if (rotated && !in_grace) {
    // A token already exchanged is back: it was copied. Whoever holds the session's
    // tokens now, thief or owner, loses them all; the owner signs in again.
    co_await db.query(kRevokeSession, pg::params(session_id, std::string_view("refresh_token_reuse")));
    co_await db.execute_script("COMMIT");
    co_await redis_->command("SET", sid_key(session_id), "1", "EX", revocation_ttl(config_));
    log::warn("refresh token reuse: session revoked", {{"session_id", session_id}, {"user_id", user.id}});
    co_return Refused{Failure::invalid_token};
  }
  // A token's successor is derived from it (keyed hash), so a replay within the grace
  // window — two tabs refreshing at once, a retry after a lost answer — gets the very
  // token the first exchange issued, or the newest one of the chain if that was
  // exchanged too: one session never forks into independent token chains.
  auto next = successor_token(config_.code_secret, refresh_token);
  if (!rotated) {
    co_await db.query(kRotate, pg::params(hash));
    co_await db.query(kAddToken, pg::params(to_hex(token_hash(next)), session_id));
  } else {
    bool at_end = false;
    for (int step = 0; step < kChainWalk && !at_end; ++step) {
      auto r = co_await db.query(kTokenRotated, pg::params(to_hex(token_hash(next)), session_id));
      if (r.rows() == 0) {  // a successor issued before this scheme: start a chain from here
        co_await db.query(kAddToken, pg::params(to_hex(token_hash(next)), session_id));
        at_end = true;
      } else if (!r.get_bool(0, 0)) {
        at_end = true;
      } else {
        next = successor_token(config_.code_secret, next);
      }
    }
    if (!at_end) {
      co_await db.execute_script("COMMIT");
      log::warn("refresh replay refused: chain longer than the walk", {{"session_id", session_id}});
      co_return Refused{Failure::refresh_chain_too_long};
    }
  }
  co_await db.query(kTouchSession, pg::params(session_id));
  co_await db.execute_script("COMMIT");
  co_return issue(user, session_id, std::move(next));
}

asio::awaitable<void> Service::logout(Claims claims, bool everywhere) {
  auto db = co_await pg_->acquire();
  const auto ttl = revocation_ttl(config_);
  if (everywhere) {
    co_await db.query(kRevokeUser, pg::params(claims.sub, std::string_view("logout_global")));
    co_await redis_->command("SET", user_key(claims.sub), std::to_string(core::unix_seconds(*clock_)), "EX", ttl);
  } else {
    co_await db.query(kRevokeSession, pg::params(claims.sid, std::string_view("logout")));
    co_await redis_->command("SET", sid_key(claims.sid), "1", "EX", ttl);
  }
}

std::optional<Claims> Service::verify(std::string_view authorization) {
  constexpr std::string_view scheme = "Bearer ";
  if (authorization.size() <= scheme.size() || !http::iequals(authorization.substr(0, scheme.size()), scheme)) {
    return std::nullopt;
  }
  const auto token = authorization.substr(scheme.size());
  const auto now = clock_->system_now();
  std::optional<Claims> claims;
  if (config_.remember_verified) claims = verified_->find(token, now);
  if (!claims) {
    auto verified = config_.keys->verify(token, config_.issuer, config_.audience, now);
    if (!verified.ok() || !verified.claims) return std::nullopt;
    claims = std::move(verified.claims);
    if (config_.remember_verified) verified_->remember(token, *claims);
  }
  return claims;
}

asio::awaitable<std::optional<Claims>> Service::authenticate(std::string authorization) {
  auto claims = verify(authorization);
  if (!claims) co_return std::nullopt;
  if (co_await revoked(*claims)) co_return std::nullopt;
  co_return claims;
}

Service::RevocationCheck Service::check_revocation(const Claims& claims, asio::any_io_executor executor) {
  // Revocation is checked on every request, against state every instance shares.
  std::vector<redis::Command> lookups;
  lookups.push_back({"EXISTS", sid_key(claims.sid)});
  lookups.push_back({"GET", user_key(claims.sub)});
  return RevocationCheck(redis_->send(std::move(executor), std::move(lookups)), claims.iat);
}

asio::awaitable<bool> Service::RevocationCheck::revoked() {
  if (!answer_ && !failed_) {
    // Fails closed: a reply that is not the expected answer throws (503 while Redis is
    // loading or down, 500 if it is something else), never reads as "not revoked".
    try {
      auto replies = co_await lookups_.replies();
      const auto revoked_before = replies.at(1).as_optional_number();
      answer_ = replies.at(0).as_integer() != 0 || (revoked_before && issued_at_ <= *revoked_before);
    } catch (...) {
      failed_ = std::current_exception();
    }
  }
  if (failed_) std::rethrow_exception(failed_);
  co_return answer_.value_or(true);  // set whenever nothing failed
}

asio::awaitable<bool> Service::revoked(const Claims& claims) {
  auto check = check_revocation(claims, co_await asio::this_coro::executor);
  co_return co_await check.revoked();
}

asio::awaitable<std::optional<User>> Service::user(std::string id) {
  auto db = co_await pg_->acquire();
  auto r = co_await db.query(kUser, pg::params(id));
  if (r.rows() == 0) co_return std::nullopt;
  co_return User{std::string(r.get(0, 0)), std::string(r.get(0, 1)), std::string(r.get(0, 2))};
}

}  // namespace nimbus::auth
