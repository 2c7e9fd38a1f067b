#include "auth/service.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include "auth/codes.hpp"
#include "core/hex.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "core/random.hpp"
#include "http/message.hpp"
#include "outbox/outbox.hpp"

namespace nimbus::auth {

namespace asio = boost::asio;
using std::chrono::seconds;

namespace {

// Fixed-window counter; the first hit of a window sets its expiry.
const redis::Script kRateLimit(R"(
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n)");

// Starts a code: refuses within the resend cooldown (returns its TTL), else replaces any
// previous code (a new code voids the old one) and remembers its MAC past its expiry.
// That marker tells "expired" from "wrong" only to someone who holds the code itself:
// a stranger guessing learns nothing about whether the address signed in recently.
const redis::Script kStart(R"(
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return math.max(redis.call('TTL', KEYS[1]), 1)
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'mac', ARGV[2], 'attempts', 0)
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[4])
return 0)");

// Counts an attempt atomically against two limits: the code's own (a new code starts
// afresh) and the address's budget for the day, which no new code resets — otherwise
// an attacker asks for a new code after every few guesses and guesses forever.
// KEYS: code, budget. ARGV: attempts per code, attempts per day, day length.
// {-3, ttl} budget spent, {-1} no code, {-2} code's attempts spent, else {n, mac}.
const redis::Script kAttempt(R"(
local spent = redis.call('INCR', KEYS[2])
if spent == 1 then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
if spent > tonumber(ARGV[2]) then return {-3, math.max(redis.call('TTL', KEYS[2]), 1)} end
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local n = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if n > tonumber(ARGV[1]) then return {-2} end
return {n, redis.call('HGET', KEYS[1], 'mac')}
)");

// Single use: only the first verifier of a given code consumes it. A right code gives
// its attempt back to the day's budget (KEYS[2]) and clears the expiry marker (KEYS[3]).
const redis::Script kConsume(R"(
if redis.call('HGET', KEYS[1], 'mac') == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[3])
  if redis.call('DECR', KEYS[2]) < 0 then redis.call('DEL', KEYS[2]) end
  return 1
end
return 0)");

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

std::string code_key(const std::string& email) {
  return "auth:code:" + email;
}
std::string cooldown_key(const std::string& email) {
  return "auth:cooldown:" + email;
}
std::string expired_key(const std::string& email) {
  return "auth:expired:" + email;
}
std::string budget_key(const std::string& email) {
  return "auth:budget:" + email;
}
std::string sid_key(const std::string& sid) {
  return "auth:revoked:sid:" + sid;
}
std::string user_key(const std::string& uid) {
  return "auth:revoked:user:" + uid;
}

}  // namespace

RateWindow rate_window(std::chrono::system_clock::time_point now) {
  const auto t = std::chrono::duration_cast<seconds>(now.time_since_epoch()).count();
  return {t / 60, seconds(60 - t % 60)};
}

Service::Service(Config config, std::shared_ptr<pg::Pool> pg, std::shared_ptr<redis::Client> redis,
                 std::shared_ptr<const core::Clock> clock)
    : config_(std::move(config)), pg_(std::move(pg)), redis_(std::move(redis)), clock_(std::move(clock)) {}

asio::awaitable<std::optional<seconds>> Service::over_rate(const std::string& kind, const std::string& ip, int limit) {
  // One reading of the clock: the refusal's Retry-After belongs to the window counted.
  const auto window = rate_window(clock_->system_now());
  const std::vector<std::string> keys{"auth:rl:" + kind + ":" + rate_subject(ip) + ":" + std::to_string(window.minute)};
  const std::vector<std::string> args{"60"};
  auto n = co_await redis_->eval(kRateLimit, keys, args);
  if (n.as_integer() <= limit) co_return std::nullopt;
  co_return window.left;
}

Tokens Service::issue(const User& user, const std::string& session_id, std::string refresh_token) const {
  const auto now = core::unix_seconds(*clock_);
  Claims c{
      config_.issuer, config_.audience, user.id, session_id, random::hex(16), now, now + config_.access_ttl.count(),
      std::nullopt};
  return {config_.keys->sign(c), config_.access_ttl.count(), std::move(refresh_token), user};
}

asio::awaitable<Outcome<Started>> Service::start_email(std::string email_text, std::string client_ip) {
  auto email = normalize_email(email_text);
  if (!email) co_return Refused{Failure::invalid_email};
  if (auto wait = co_await over_rate("start", client_ip, config_.ip_start_per_minute)) {
    co_return Refused{Failure::rate_limited, *wait};
  }
  const auto executor = co_await asio::this_coro::executor;
  const auto code = generate_code();
  const std::vector<std::string> keys{cooldown_key(*email), code_key(*email), expired_key(*email)};
  const auto mac = code_mac(config_.code_secret, *email, code);
  const std::vector<std::string> args{std::to_string(config_.resend_cooldown.count()), mac,
                                      std::to_string(config_.code_ttl.count()), std::to_string(24 * 3600)};
  auto started = co_await redis_->eval(kStart, keys, args);
  if (started.as_integer() > 0) co_return Refused{Failure::resend_cooldown, seconds(started.as_integer())};

  // The email goes out through the outbox; its row is cleared once published, so the
  // plain code lives only in the message on its way to the mail server.
  boost::json::object mail{{"to", *email},
                           {"from", config_.mail_from},
                           {"subject", "Your Nimbus sign-in code: " + code},
                           {"text", "Your Nimbus sign-in code is " + code + ".\r\n\r\nIt expires in " +
                                        std::to_string(config_.code_ttl.count() / 60) +
                                        " minutes. If you did not ask for it, ignore this email.\r\n"}};
  try {
    auto db = co_await pg_->acquire();
    outbox::Message message{"nimbus", "email.send", boost::json::serialize(mail), true};
    co_await outbox::enqueue(db, message);
  } catch (...) {
    // Without the email the code is useless: let the user ask again at once.
    asio::co_spawn(executor, redis_->command("DEL", cooldown_key(*email)), asio::detached);
    throw;
  }
  co_return Started{};
}

asio::awaitable<Outcome<Tokens>> Service::verify_email(std::string email_text, std::string code,
                                                       std::string client_ip) {
  auto email = normalize_email(email_text);
  if (!email) co_return Refused{Failure::invalid_email};
  if (auto wait = co_await over_rate("verify", client_ip, config_.ip_verify_per_minute)) {
    co_return Refused{Failure::rate_limited, *wait};
  }
  const std::vector<std::string> keys{code_key(*email), budget_key(*email)};
  const std::vector<std::string> args{std::to_string(config_.code_attempts), std::to_string(config_.daily_attempts),
                                      std::to_string(24 * 3600)};
  auto attempt = co_await redis_->eval(kAttempt, keys, args);
  const auto& state = attempt.as_array();
  if (state.empty()) throw redis::Error("attempt script returned nothing");
  const auto mac = code_mac(config_.code_secret, *email, is_code_format(code) ? code : std::string("x"));
  switch (state[0].as_integer()) {
    case -3:
      co_return Refused{Failure::too_many_attempts, seconds(state.at(1).as_integer())};
    case -2:
      co_return Refused{Failure::too_many_attempts, config_.code_ttl};
    case -1: {
      auto expired = co_await redis_->command("GET", expired_key(*email));
      const auto old = expired.as_optional_string();
      co_return Refused{old && constant_time_equal(mac, *old) ? Failure::code_expired : Failure::invalid_code};
    }
    default:
      break;
  }
  const auto& stored = state.at(1).as_string();
  if (!constant_time_equal(mac, stored)) co_return Refused{Failure::invalid_code};
  const std::vector<std::string> consume_keys{code_key(*email), budget_key(*email), expired_key(*email)};
  const std::vector<std::string> consume_args{stored};
  auto consumed = co_await redis_->eval(kConsume, consume_keys, consume_args);
  if (consumed.as_integer() != 1) co_return Refused{Failure::invalid_code};  // used by a concurrent request

  const auto session_id = ids::uuid_v7();
  auto refresh_token = generate_refresh_token();
  auto db = co_await pg_->acquire();
  auto r =
      co_await db.query(kCreateSession, pg::params(ids::uuid_v7(), *email, session_id, config_.refresh_absolute.count(),
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
    co_await redis_->command("SET", sid_key(session_id), "1", "EX", std::to_string(config_.access_ttl.count()));
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
    for (int step = 0; step < 16; ++step) {
      auto r = co_await db.query(kTokenRotated, pg::params(to_hex(token_hash(next)), session_id));
      if (r.rows() == 0) {  // a successor issued before this scheme: start a chain from here
        co_await db.query(kAddToken, pg::params(to_hex(token_hash(next)), session_id));
        break;
      }
      if (!r.get_bool(0, 0)) break;
      next = successor_token(config_.code_secret, next);
    }
  }
  co_await db.query(kTouchSession, pg::params(session_id));
  co_await db.execute_script("COMMIT");
  co_return issue(user, session_id, std::move(next));
}

asio::awaitable<void> Service::logout(Claims claims, bool everywhere) {
  auto db = co_await pg_->acquire();
  const auto ttl = std::to_string(config_.access_ttl.count() + 60);
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
