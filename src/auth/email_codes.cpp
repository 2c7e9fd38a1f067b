// Sign-in by email code: Service::start_email and Service::verify_email, and the Redis
// state they share (docs/adr/0009).
//
// What bounds guessing, and why nobody without the mailbox can keep the owner out:
// - Only a guess at a live 6-digit code counts, and only a wrong one (a right one gives
//   its reservation back). With no code outstanding a guess is just `invalid_code`: it
//   costs nobody anything, so made-up codes sent by the thousand lock nobody out.
// - A code is burnt after `code_attempts` wrong guesses; asking again gives a fresh one.
// - Per UTC day (the service's clock), an address takes `daily_attempts` wrong guesses
//   from all clients together and `client_daily_attempts` from any one client (its
//   IPv4 address or IPv6 /64, as rate_subject() counts); it is sent `daily_codes`
//   6-digit codes. Once a client's or the address's share is spent, 6-digit guesses
//   from there are refused unseen (`too_many_attempts`).
// - From then on a code asked for comes in its long form (20 digits): not worth
//   guessing, so no budget limits it, and a new code voids no live long one. The owner
//   asks again and signs in with it, whatever any number of clients did.
// So per address and UTC day at most min(daily_attempts, daily_codes × code_attempts)
// wrong 6-digit guesses are ever compared with a code: 20 with the defaults (each right
// with probability 10⁻⁶); any one client gets at most client_daily_attempts of them.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include "auth/codes.hpp"
#include "auth/service.hpp"
#include "core/log.hpp"
#include "outbox/outbox.hpp"

namespace nimbus::auth {

namespace asio = boost::asio;
using std::chrono::seconds;

namespace {

constexpr seconds kDay{24 * 3600};

// Starts a code: refuses within the resend cooldown (returns its TTL), else voids the
// live 6-digit code and stores the new one, 6-digit while the day's budgets allow (0)
// or long (-1). A 6-digit code's MAC is remembered past its expiry, and so is a long
// code's: that marker tells "expired" from "wrong" only to someone who holds the code
// itself; a stranger guessing learns nothing about whether the address signed in.
// KEYS: cooldown, code, expired marker, codes sent today, the address's wrong guesses
// today, the asking client's, long code, long code's marker. ARGV: cooldown, code's
// MAC, code TTL, marker TTL, codes per day, wrong guesses per day per address, per
// client, the day's TTL.
const redis::Script kStart(R"(
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return math.max(redis.call('TTL', KEYS[1]), 1)
end
redis.call('DEL', KEYS[2])
local closed = tonumber(redis.call('GET', KEYS[5]) or '0') >= tonumber(ARGV[6])
  or tonumber(redis.call('GET', KEYS[6]) or '0') >= tonumber(ARGV[7])
if not closed then
  local sent = redis.call('INCR', KEYS[4])
  if sent == 1 then redis.call('EXPIRE', KEYS[4], ARGV[8]) end
  closed = sent > tonumber(ARGV[5])
end
if closed then
  redis.call('SET', KEYS[7], '1', 'EX', ARGV[3])
  redis.call('SET', KEYS[8], '1', 'EX', ARGV[4])
  return -1
end
redis.call('HSET', KEYS[2], 'mac', ARGV[2], 'attempts', 0)
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[4])
return 0)");

// Reserves a guess at the live 6-digit code, atomically against every budget, before
// the caller compares it: concurrent guesses can never be compared more often than the
// budgets allow. Nothing is counted when nothing is compared (a refusal, no live code).
// KEYS: code, the address's wrong guesses today, the client's. ARGV: wrong guesses per
// code, per day per address, per client, the day's TTL.
// {-3} client's day spent, {-4} address's day spent, {-1} no live code, {-2} the code's
// guesses spent (burnt), else {n, mac}.
const redis::Script kAttempt(R"(
if tonumber(redis.call('GET', KEYS[3]) or '0') >= tonumber(ARGV[3]) then return {-3} end
if tonumber(redis.call('GET', KEYS[2]) or '0') >= tonumber(ARGV[2]) then return {-4} end
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local n = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if n > tonumber(ARGV[1]) then return {-2} end
for i = 2, 3 do
  if redis.call('INCR', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], ARGV[4]) end
end
return {n, redis.call('HGET', KEYS[1], 'mac')}
)");

// Single use: only the first verifier of a given code consumes it. A right code gives
// its reservation back to the day's budgets (KEYS[2], KEYS[3]) and clears the expiry
// marker (KEYS[4]).
const redis::Script kConsume(R"(
if redis.call('HGET', KEYS[1], 'mac') == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[4])
  for i = 2, 3 do
    if redis.call('DECR', KEYS[i]) < 0 then redis.call('DEL', KEYS[i]) end
  end
  return 1
end
return 0)");

// A long code: 1 consumed (single use: the first verifier only), -1 expired or used
// (its marker is there), 0 unknown. KEYS: long code, its marker.
const redis::Script kConsumeLong(R"(
if redis.call('DEL', KEYS[1]) == 1 then
  redis.call('DEL', KEYS[2])
  return 1
end
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
return 0)");

std::string code_key(const std::string& email) {
  return "auth:code:" + email;
}
std::string cooldown_key(const std::string& email) {
  return "auth:cooldown:" + email;
}
std::string expired_key(const std::string& email) {
  return "auth:expired:" + email;
}
std::string sent_key(const std::string& email, const DayWindow& day) {
  return "auth:sent:" + email + ":" + std::to_string(day.day);
}
// (an address holds no ':', a client's subject may: the two never share a key)
std::string guesses_key(const std::string& email, const DayWindow& day) {
  return "auth:guesses:" + email + ":" + std::to_string(day.day);
}
std::string guesses_key(const std::string& email, const std::string& client_ip, const DayWindow& day) {
  return "auth:guesses:" + email + ":" + rate_subject(client_ip) + ":" + std::to_string(day.day);
}
std::string long_key(const std::string& email, const std::string& mac) {
  return "auth:long:" + email + ":" + mac;
}
std::string long_expired_key(const std::string& email, const std::string& mac) {
  return "auth:long-expired:" + email + ":" + mac;
}

// A day's counters outlive the day by a minute: instances whose clocks lag (by less
// than the leeway) still count in it.
std::string day_ttl(const DayWindow& day) {
  return std::to_string((day.left + seconds(60)).count());
}

boost::json::object code_mail(const Config& config, const std::string& email, const std::string& code, bool long_form) {
  const auto expires = "It expires in " + std::to_string(config.code_ttl.count() / 60) + " minutes.";
  const std::string why =
      long_form ? " It is longer than usual: this address has had many sign-in attempts today." : "";
  return {{"to", email},
          {"from", config.mail_from},
          {"subject", "Your Nimbus sign-in code: " + code},
          {"text", "Your Nimbus sign-in code is " + code + ".\r\n\r\n" + expires + why +
                       " If you did not ask for it, ignore this email.\r\n"}};
}

}  // namespace

DayWindow day_window(std::chrono::system_clock::time_point now) {
  const auto t = std::chrono::duration_cast<seconds>(now.time_since_epoch()).count();
  return {t / kDay.count(), seconds(kDay.count() - t % kDay.count())};
}

asio::awaitable<Outcome<Started>> Service::start_email(std::string email_text, std::string client_ip) {
  auto email = normalize_email(email_text);
  if (!email) co_return Refused{Failure::invalid_email};
  if (auto wait = co_await over_rate("start", client_ip, config_.ip_start_per_minute)) {
    co_return Refused{Failure::rate_limited, *wait};
  }
  const auto executor = co_await asio::this_coro::executor;
  const auto day = day_window(clock_->system_now());
  // Both forms are drawn; the script decides which one is stored and mailed.
  const auto code = codes_.short_code();
  const auto long_code = codes_.long_code();
  const auto mac = code_mac(config_.code_secret, *email, code);
  const auto long_mac = code_mac(config_.code_secret, *email, long_code_digits(long_code).value_or(long_code));
  const std::vector<std::string> keys{cooldown_key(*email),       code_key(*email),
                                      expired_key(*email),        sent_key(*email, day),
                                      guesses_key(*email, day),   guesses_key(*email, client_ip, day),
                                      long_key(*email, long_mac), long_expired_key(*email, long_mac)};
  const std::vector<std::string> args{std::to_string(config_.resend_cooldown.count()),
                                      mac,
                                      std::to_string(config_.code_ttl.count()),
                                      std::to_string(kDay.count()),
                                      std::to_string(config_.daily_codes),
                                      std::to_string(config_.daily_attempts),
                                      std::to_string(config_.client_daily_attempts),
                                      day_ttl(day)};
  auto started = co_await redis_->eval(kStart, keys, args);
  if (started.as_integer() > 0) co_return Refused{Failure::resend_cooldown, seconds(started.as_integer())};
  const bool long_form = started.as_integer() < 0;
  if (long_form) log::info("sign-in code sent in its long form", {{"day", day.day}});

  // The email goes out through the outbox; its row is cleared once published, so the
  // plain code lives only in the message on its way to the mail server.
  const auto mail = code_mail(config_, *email, long_form ? long_code : code, long_form);
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
  if (auto digits = long_code_digits(code)) {
    const auto mac = code_mac(config_.code_secret, *email, *digits);
    const std::vector<std::string> keys{long_key(*email, mac), long_expired_key(*email, mac)};
    const std::vector<std::string> no_args;  // (named: no braced list in a co_await, docs/adr/0001)
    auto used = co_await redis_->eval(kConsumeLong, keys, no_args);
    if (used.as_integer() < 0) co_return Refused{Failure::code_expired};
    if (used.as_integer() == 0) co_return Refused{Failure::invalid_code};
    co_return co_await open_session(*email);
  }

  // One reading of the clock: the counters reserved are the ones given back.
  const auto day = day_window(clock_->system_now());
  const std::vector<std::string> keys{code_key(*email), guesses_key(*email, day), guesses_key(*email, client_ip, day)};
  const std::vector<std::string> args{std::to_string(config_.code_attempts), std::to_string(config_.daily_attempts),
                                      std::to_string(config_.client_daily_attempts), day_ttl(day)};
  auto attempt = co_await redis_->eval(kAttempt, keys, args);
  const auto& state = attempt.as_array();
  if (state.empty()) throw redis::Error("attempt script returned nothing");
  const auto mac = code_mac(config_.code_secret, *email, is_code_format(code) ? code : std::string("x"));
  switch (state[0].as_integer()) {
    case -4:
    case -3:
      co_return Refused{Failure::too_many_attempts, day.left};
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
  const std::vector<std::string> consume_keys{code_key(*email), guesses_key(*email, day),
                                              guesses_key(*email, client_ip, day), expired_key(*email)};
  const std::vector<std::string> consume_args{stored};
  auto consumed = co_await redis_->eval(kConsume, consume_keys, consume_args);
  if (consumed.as_integer() != 1) co_return Refused{Failure::invalid_code};  // used by a concurrent request
  co_return co_await open_session(*email);
}

}  // namespace nimbus::auth
