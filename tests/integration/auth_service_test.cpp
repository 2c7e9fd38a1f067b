// The accounts service layer against the stack's real PostgreSQL and Redis, driven
// directly (no HTTP) with a manual clock: a token's life, a sign-out's reach and the
// per-IP rate-limit window are decided by the service's clock, to the second.
//
// Sign-in codes are put in Redis by the test (their MAC under its own secret) instead
// of being asked for: asking would send an email through the stack's outbox.
#include <thread>

#include <gtest/gtest.h>

#include "auth/codes.hpp"
#include "auth/routes.hpp"
#include "auth/service.hpp"
#include "core/hex.hpp"
#include "core/random.hpp"
#include "store/pg/migrate.hpp"
#include "support/manual_clock.hpp"
#include "support/stack_test.hpp"

namespace asio = boost::asio;
using namespace nimbus;
using namespace nimbus::auth;
using namespace std::chrono_literals;

namespace {

// A Redis database of these tests' own (the stack uses 0): codes, revocations and
// rate-limit counters dated by the manual clock never meet the stack's.
constexpr int kPrivateRedisDb = 11;
// What verification and the verified-token memo allow past `exp` (their default).
constexpr auto kLeeway = 30s;
constexpr std::string_view kCode = "123456";

// A read for authenticated_read: counts its starts, awaits `confirm` before reading the
// caller's own data, counts those reads.
asio::awaitable<http::Response> own_read(const Confirm& confirm, int* started, int* own) {
  ++*started;
  co_await confirm();
  ++*own;
  co_return http::text(200, "own");
}

// A read of nothing personal: it never asks for the confirm step.
asio::awaitable<http::Response> public_read(int* started) {
  ++*started;
  co_return http::text(200, "public");
}

// Codes the test knows: every start draws the next of two sequences (both forms are
// drawn each time; the service mails one). The wrong guesses the tests send (9xxxxx)
// are never among them.
struct KnownCodes {
  int next_short = 100000, next_long = 1000;
  std::string last_short, last_long;
};
CodeSource known(const std::shared_ptr<KnownCodes>& k) {
  return {[k] { return k->last_short = std::to_string(k->next_short++); },
          [k] { return k->last_long = "1234 5678 9012 3456 " + std::to_string(k->next_long++); }};
}

std::string wrong_guess(int i) {
  return std::to_string(900000 + i % 100000);
}

std::string v6_client() {
  return "2001:db8:" + random::hex(2) + ":" + random::hex(2) + "::" + random::hex(1);
}

class AuthServiceTest : public test::StackTest {
 protected:
  void SetUp() override {
    NIMBUS_REQUIRE_STACK("NIMBUS_TEST_DATABASE_URL");
    NIMBUS_REQUIRE_STACK("NIMBUS_TEST_REDIS_URL");
    pool_ = stack_pool(2);
    redis_ = private_redis(kPrivateRedisDb);
    config_.issuer = "nimbus-clock-test";
    config_.code_secret = random::hex(32);
    config_.keys = std::make_shared<KeySet>(std::vector<Key>{Key::generate("clock")}, "clock");
    // Two hours behind the machine, at a whole minute: a service still reading the real
    // clock would sign tokens two hours off, and count in another minute.
    t0_ = std::chrono::time_point_cast<std::chrono::minutes>(std::chrono::system_clock::now()) - 2h;
    clock_ = test::ManualClock::at(t0_);
    service_ = std::make_shared<Service>(config_, pool_, redis_, clock_);
    email_ = "clock-" + random::hex(8) + "@example.com";
    run([&] { return pg::migrate(*pool_, pg::embedded_migrations()); });
  }
  void TearDown() override {
    if (!pool_) return;
    run([&]() -> asio::awaitable<void> {
      auto db = co_await pool_->acquire();
      co_await db.query("DELETE FROM users WHERE email = $1", pg::params(email_));  // sessions go with it
    });
    redis_->stop();
  }

  // Signs email_ in through the real verify flow (Lua scripts, session row), at the
  // clock's time, from an address of its own.
  Tokens sign_in() { return sign_in(*service_); }
  Tokens sign_in(Service& service) {
    auto outcome = run([&]() -> asio::awaitable<Outcome<Tokens>> {
      co_await redis_->command("HSET", "auth:code:" + email_, "mac", code_mac(config_.code_secret, email_, kCode),
                               "attempts", "0");
      co_await redis_->command("EXPIRE", "auth:code:" + email_, "600");
      co_return co_await service.verify_email(email_, std::string(kCode), unique_ip());
    });
    auto* tokens = std::get_if<Tokens>(&outcome);
    if (!tokens) throw std::runtime_error("sign-in refused");
    return *tokens;
  }

  std::optional<Claims> authenticate(const std::string& access_token) {
    return run([&] { return service_->authenticate("Bearer " + access_token); });
  }

  Outcome<Tokens> refresh(Service& service, const std::string& refresh_token) {
    return run([&] { return service.refresh(refresh_token); });
  }

  // Whether a refresh token is stored, and whether it is still the live end of its chain.
  struct Stored {
    bool stored = false, live = false;
  };
  Stored stored(const std::string& refresh_token) {
    return run([&]() -> asio::awaitable<Stored> {
      auto db = co_await pool_->acquire();
      auto r = co_await db.query("SELECT rotated_at IS NULL FROM refresh_tokens WHERE hash = decode($1, 'hex')",
                                 pg::params(to_hex(token_hash(refresh_token))));
      co_return r.rows() == 0 ? Stored{} : Stored{true, r.get_bool(0, 0)};
    });
  }

  // A service whose codes the test knows, without per-IP limits (they are not the subject).
  std::shared_ptr<Service> coded_service() {
    Config c = config_;
    c.ip_start_per_minute = c.ip_verify_per_minute = 1'000'000;
    return std::make_shared<Service>(c, pool_, redis_, clock_, known(codes_));
  }
  // Asks for a code for email_ as `client` would, the resend cooldown waited out (its
  // key is dated by Redis's real clock; the test's stands still).
  void ask(Service& service, const std::string& client) {
    auto started = run([&]() -> asio::awaitable<Outcome<Started>> {
      co_await redis_->command("DEL", "auth:cooldown:" + email_);
      co_return co_await service.start_email(email_, client);
    });
    ASSERT_TRUE(std::holds_alternative<Started>(started));
  }
  Outcome<Tokens> guess(Service& service, const std::string& client, const std::string& code) {
    return run([&] { return service.verify_email(email_, code, client); });
  }
  static std::optional<Failure> failure(const Outcome<Tokens>& o) {
    if (auto* r = std::get_if<Refused>(&o)) return r->failure;
    return std::nullopt;
  }

  static std::string unique_ip() {
    const auto h = random::hex(3);
    return "10." + std::to_string(std::stoi(h.substr(0, 2), nullptr, 16)) + "." +
           std::to_string(std::stoi(h.substr(2, 2), nullptr, 16)) + "." +
           std::to_string(std::stoi(h.substr(4, 2), nullptr, 16));
  }

  std::shared_ptr<pg::Pool> pool_;
  std::shared_ptr<redis::Client> redis_;
  Config config_;
  std::chrono::system_clock::time_point t0_;
  std::shared_ptr<test::ManualClock> clock_;
  std::shared_ptr<Service> service_;
  std::shared_ptr<KnownCodes> codes_ = std::make_shared<KnownCodes>();
  std::string email_;
};

TEST_F(AuthServiceTest, ATokenLivesUntilItsExpiryByTheClockEvenWhileTheMemoHoldsIt) {
  const auto t = test::unix_of(t0_);
  const auto tokens = sign_in();
  auto claims = authenticate(tokens.access_token);  // verified in full, and memoised
  ASSERT_TRUE(claims);
  EXPECT_EQ(claims->iat, t);
  EXPECT_EQ(claims->exp, t + config_.access_ttl.count());

  clock_->set(t0_ + config_.access_ttl - 1s);
  EXPECT_TRUE(authenticate(tokens.access_token)) << "one second before exp";
  // Past exp the leeway still accepts it (clock skew between instances), to the second.
  clock_->set(t0_ + config_.access_ttl + kLeeway - 1s);
  EXPECT_TRUE(authenticate(tokens.access_token)) << "the memo answers, within the leeway";
  clock_->advance(1s);
  EXPECT_FALSE(authenticate(tokens.access_token)) << "expired, though the memo held it";
  EXPECT_FALSE(authenticate(tokens.access_token)) << "and verifying it afresh agrees";
}

TEST_F(AuthServiceTest, RefreshedTokensAreDatedByTheClock) {
  const auto first = sign_in();
  clock_->advance(100s);
  auto refreshed = run([&] { return service_->refresh(first.refresh_token); });
  auto* tokens = std::get_if<Tokens>(&refreshed);
  ASSERT_TRUE(tokens);
  auto claims = authenticate(tokens->access_token);
  ASSERT_TRUE(claims);
  EXPECT_EQ(claims->iat, test::unix_of(t0_) + 100);
  EXPECT_EQ(claims->exp, test::unix_of(t0_) + 100 + config_.access_ttl.count());
}

TEST_F(AuthServiceTest, SigningOutEverywhereRevokesTokensIssuedUpToThatSecondOnly) {
  const auto before = sign_in();
  clock_->advance(10s);
  const auto r = test::unix_of(clock_->system_now());
  const auto same_second = sign_in();
  auto claims = authenticate(before.access_token);
  ASSERT_TRUE(claims);
  ASSERT_TRUE(authenticate(same_second.access_token));

  run([&] { return service_->logout(*claims, true); });
  auto stamp = run([&] { return redis_->command("GET", "auth:revoked:user:" + claims->sub); }).as_optional_string();
  ASSERT_TRUE(stamp);
  EXPECT_EQ(std::stoll(*stamp), r) << "the sign-out is dated by the clock";
  EXPECT_FALSE(authenticate(before.access_token)) << "issued before the sign-out";
  EXPECT_FALSE(authenticate(same_second.access_token)) << "issued in the sign-out's second";

  clock_->advance(1s);
  const auto after = sign_in();
  auto after_claims = authenticate(after.access_token);
  ASSERT_TRUE(after_claims) << "issued after the sign-out: valid";
  EXPECT_EQ(after_claims->iat, r + 1);
  EXPECT_FALSE(authenticate(before.access_token)) << "the old one stays revoked";
}

TEST_F(AuthServiceTest, ThePerIpLimitCountsInTheClocksMinuteAndSaysWhenItEnds) {
  Config small = config_;
  small.ip_verify_per_minute = 2;
  small.ip_start_per_minute = 0;  // refuses every request: no code is ever sent
  Service limited(small, pool_, redis_, clock_);
  const auto ip = unique_ip();
  auto verify = [&] { return run([&] { return limited.verify_email(email_, "000000", ip); }); };
  auto failure = [](const Outcome<Tokens>& o) { return std::get<Refused>(o); };

  clock_->set(t0_ + 45s);
  EXPECT_EQ(failure(verify()).failure, Failure::invalid_code);
  EXPECT_EQ(failure(verify()).failure, Failure::invalid_code);
  auto third = failure(verify());
  EXPECT_EQ(third.failure, Failure::rate_limited);
  EXPECT_EQ(third.retry_after, 15s) << "clock at :45, the window ends at :00";
  clock_->advance(14s);
  auto at_59 = failure(verify());
  EXPECT_EQ(at_59.failure, Failure::rate_limited) << "still the same minute";
  EXPECT_EQ(at_59.retry_after, 1s);
  clock_->advance(1s);
  EXPECT_EQ(failure(verify()).failure, Failure::invalid_code) << "a new minute: counted afresh";

  clock_->set(t0_ + 20s);
  auto started = run([&] { return limited.start_email(email_, ip); });
  ASSERT_TRUE(std::holds_alternative<Refused>(started));
  EXPECT_EQ(std::get<Refused>(started).failure, Failure::rate_limited);
  EXPECT_EQ(std::get<Refused>(started).retry_after, 40s);
}

// authenticated_read: the handler starts beside the revocation check (not after it), its
// answer waits for the check, and its confirm step ends a revoked token's request
// before it reads anything of the caller's own — the same 401 either way.
TEST_F(AuthServiceTest, AReadStartsBesideTheRevocationCheckAndARevokedTokenGetsNothing) {
  int started = 0, own = 0, public_started = 0;
  auto personal = authenticated_read(service_, [&](http::Request&, const Claims&, const Confirm& confirm) {
    return own_read(confirm, &started, &own);
  });
  auto general = authenticated_read(
      service_, [&](http::Request&, const Claims&, const Confirm&) { return public_read(&public_started); });
  const auto tokens = sign_in();
  http::Request req;
  req.headers.add("Authorization", "Bearer " + tokens.access_token);
  EXPECT_EQ(run([&] { return personal(req); }).status, 200U);
  EXPECT_EQ(run([&] { return general(req); }).status, 200U);
  EXPECT_EQ(own, 1);

  auto claims = authenticate(tokens.access_token);
  ASSERT_TRUE(claims);
  run([&] { return service_->logout(*claims, false); });
  EXPECT_EQ(run([&] { return personal(req); }).status, 401U);
  EXPECT_EQ(started, 2) << "the read started beside the check";
  EXPECT_EQ(own, 1) << "and read nothing of the caller's own";
  EXPECT_EQ(run([&] { return general(req); }).status, 401U) << "a finished answer is dropped for the 401";
  EXPECT_EQ(public_started, 2);
}

// Issue 22, item 11: a refresh token exchanged again after its grace window revokes the
// session in Redis; that revocation must outlive every access token the session was
// given (they are accepted until exp plus the clock leeway), or the thief's one works
// again once the key expires. A 2 s access token: the key's expiry is real time.
TEST_F(AuthServiceTest, AReuseRevocationOutlivesEveryAccessTokenOfTheSession) {
  Config quick = config_;
  quick.access_ttl = 2s;
  quick.refresh_grace = 0s;
  Service service(quick, pool_, redis_, clock_);
  const auto first = sign_in(service);
  auto rotated = refresh(service, first.refresh_token);
  ASSERT_TRUE(std::holds_alternative<Tokens>(rotated));
  const auto thief = std::get<Tokens>(rotated);  // whoever refreshed first: here, the thief
  auto claims = authenticate(thief.access_token);
  ASSERT_TRUE(claims);

  auto reuse = refresh(service, first.refresh_token);  // the owner's copy, past its grace
  ASSERT_TRUE(std::holds_alternative<Refused>(reuse));
  EXPECT_EQ(std::get<Refused>(reuse).failure, Failure::invalid_token);
  const auto ttl = run([&] { return redis_->command("TTL", "auth:revoked:sid:" + claims->sid); }).as_integer();
  EXPECT_GE(ttl, (quick.access_ttl + kLeeway).count()) << "the revocation outlives exp plus the leeway";

  // Past the access token's lifetime in real time, within exp + leeway by the clock.
  std::this_thread::sleep_for(quick.access_ttl + 500ms);  // (the key's real-time expiry is the point)
  clock_->set(t0_ + quick.access_ttl + kLeeway - 1s);
  EXPECT_FALSE(authenticate(thief.access_token)) << "the thief's access token stays revoked";
}

// A rotated token replayed within its grace window gets the live end of its chain; the
// walk there is bounded. Past the bound it must not hand out the token where it stopped
// (never checked: already rotated, or not stored at all) but refuse.
TEST_F(AuthServiceTest, TheRefreshChainWalkHandsOutOnlyTheStoredLiveEndOfTheChain) {
  const auto first = sign_in();
  std::string newest = first.refresh_token;
  auto rotate = [&](int times) {
    for (int i = 0; i < times; ++i) {
      auto next = refresh(*service_, newest);
      ASSERT_TRUE(std::holds_alternative<Tokens>(next)) << "rotation " << i;
      newest = std::get<Tokens>(next).refresh_token;
    }
  };
  rotate(16);
  auto replay = refresh(*service_, first.refresh_token);  // within the 10 s grace window
  ASSERT_TRUE(std::holds_alternative<Tokens>(replay));
  EXPECT_EQ(std::get<Tokens>(replay).refresh_token, newest) << "16 successors: the walk reaches the end";

  rotate(2);  // 18 rotations since the replayed token: longer than the walk goes
  auto far = refresh(*service_, first.refresh_token);
  if (auto* tokens = std::get_if<Tokens>(&far)) {
    const auto found = stored(tokens->refresh_token);
    EXPECT_TRUE(found.stored && found.live) << "handed out a token that is not the stored live end of the chain";
    EXPECT_EQ(tokens->refresh_token, newest);
  }
  ASSERT_TRUE(std::holds_alternative<Refused>(far)) << "past the walk's bound: refused, fail closed";
  EXPECT_EQ(std::get<Refused>(far).failure, Failure::refresh_chain_too_long);
  EXPECT_TRUE(stored(newest).live) << "the session's live token is untouched";
  auto go_on = refresh(*service_, newest);
  EXPECT_TRUE(std::holds_alternative<Tokens>(go_on)) << "and the session goes on";
}

// Issue 22, item 2: only a guess at a live code counts. Made-up codes by the hundred,
// with no code outstanding, cost the address nothing: its owner signs in after them.
TEST_F(AuthServiceTest, MadeUpCodesWithNoCodeOutstandingCostNothing) {
  auto service = coded_service();
  const auto stranger = unique_ip();
  for (int i = 0; i < 5 * config_.daily_attempts; ++i) {
    ASSERT_EQ(failure(guess(*service, stranger, wrong_guess(i))), Failure::invalid_code) << i;
  }
  const auto day = day_window(clock_->system_now()).day;
  EXPECT_EQ(
      run([&] { return redis_->command("EXISTS", "auth:guesses:" + email_ + ":" + std::to_string(day)); }).as_integer(),
      0);
  const auto owner = unique_ip();
  ask(*service, owner);
  EXPECT_TRUE(std::holds_alternative<Tokens>(guess(*service, owner, codes_->last_short)));
}

// One client, asking for code after code and guessing each until refused, spends its
// own share of the address's day only: the code is burnt after its guesses, the client
// is refused once its share is spent, and the owner (another client) signs in with a
// 6-digit code all along.
TEST_F(AuthServiceTest, OneClientSpendsOnlyItsOwnShareOfTheAddressesDay) {
  auto service = coded_service();
  const auto attacker = v6_client();
  int taken = 0;
  for (int code = 0; code < config_.daily_codes; ++code) {
    ask(*service, attacker);
    for (int i = 0; i <= config_.code_attempts; ++i) {
      auto f = failure(guess(*service, attacker, wrong_guess(taken)));
      if (f == Failure::too_many_attempts) break;
      ASSERT_EQ(f, Failure::invalid_code);
      ++taken;
    }
    if (code == 0) {
      EXPECT_EQ(taken, config_.code_attempts);
      EXPECT_EQ(failure(guess(*service, unique_ip(), codes_->last_short)), Failure::too_many_attempts)
          << "burnt: its right code is refused too";
    }
  }
  EXPECT_EQ(taken, config_.client_daily_attempts);
  // Another address in the attacker's /64 is the same client.
  const auto neighbour = attacker.substr(0, attacker.rfind(':')) + ":ffff";
  auto refused = guess(*service, neighbour, wrong_guess(0));
  ASSERT_EQ(failure(refused), Failure::too_many_attempts);
  EXPECT_EQ(std::get<Refused>(refused).retry_after, day_window(clock_->system_now()).left) << "until the UTC day ends";

  const auto owner = unique_ip();
  ask(*service, owner);
  EXPECT_EQ(failure(guess(*service, owner, wrong_guess(1))), Failure::invalid_code) << "a typo of the owner's";
  EXPECT_TRUE(std::holds_alternative<Tokens>(guess(*service, owner, codes_->last_short)));
}

// Any number of clients together: wrong 6-digit guesses compared with live codes of one
// address in a day never exceed min(daily_attempts, daily_codes × code_attempts); past
// that a guess is refused unseen, and a code asked for comes in its long form, with
// which the owner signs in. The next UTC day 6-digit codes work again.
TEST_F(AuthServiceTest, GuessingIsBoundedPerAddressPerDayAndTheOwnerStillSignsIn) {
  auto service = coded_service();
  clock_->set(std::chrono::time_point_cast<std::chrono::hours>(t0_) - 2h);
  std::vector<std::string> clients;
  for (int i = 0; i < 8; ++i) clients.push_back(i % 2 ? unique_ip() : v6_client());
  const auto asker = unique_ip();
  const int bound = std::min(config_.daily_attempts, config_.daily_codes * config_.code_attempts);
  int taken = 0;
  for (int code = 0; code < config_.daily_codes; ++code) {
    ask(*service, asker);
    int this_code = 0;
    for (const auto& client : clients) {
      int by_client = 0;
      for (int i = 0; i <= config_.code_attempts; ++i) {
        auto f = failure(guess(*service, client, wrong_guess(taken)));
        if (f == Failure::too_many_attempts) break;
        ASSERT_EQ(f, Failure::invalid_code);
        ++by_client;
      }
      EXPECT_LE(by_client, config_.code_attempts);
      this_code += by_client;
    }
    taken += this_code;
    if (this_code == 0) break;
  }
  EXPECT_EQ(taken, bound) << "every guess the budgets allow, and not one more";
  auto late = guess(*service, unique_ip(), wrong_guess(0));
  ASSERT_EQ(failure(late), Failure::too_many_attempts) << "a fresh client is refused unseen";
  EXPECT_EQ(std::get<Refused>(late).retry_after, day_window(clock_->system_now()).left);

  const auto owner = unique_ip();
  ask(*service, owner);
  EXPECT_EQ(failure(guess(*service, owner, codes_->last_short)), Failure::too_many_attempts)
      << "no 6-digit code was sent, and none is compared";
  const auto long_code = codes_->last_long;
  EXPECT_TRUE(std::holds_alternative<Tokens>(guess(*service, owner, long_code))) << "the long code signs in";
  EXPECT_EQ(failure(guess(*service, owner, long_code)), Failure::invalid_code) << "once";

  ask(*service, unique_ip());  // an attacker's new code voids no long code
  const auto owners_next = codes_->last_long;
  ask(*service, unique_ip());
  EXPECT_TRUE(std::holds_alternative<Tokens>(guess(*service, owner, owners_next)));

  clock_->set(std::chrono::time_point_cast<std::chrono::hours>(t0_) + 24h);  // the next UTC day, or later
  ask(*service, owner);
  EXPECT_TRUE(std::holds_alternative<Tokens>(guess(*service, owner, codes_->last_short))) << "a new day";
}

// The day's 6-digit codes are counted too: past daily_codes an address is sent long
// codes, so asking again and again (each new code voids the last 6-digit one) cannot
// keep its owner from a code that works.
TEST_F(AuthServiceTest, PastTheDailyCountCodesComeLong) {
  auto service = coded_service();
  const auto owner = unique_ip();
  for (int i = 0; i < config_.daily_codes; ++i) ask(*service, unique_ip());
  const auto last_short = codes_->last_short;
  ask(*service, unique_ip());
  const auto long_code = codes_->last_long;
  EXPECT_EQ(failure(guess(*service, owner, codes_->last_short)), Failure::invalid_code) << "not sent";
  EXPECT_EQ(failure(guess(*service, owner, last_short)), Failure::code_expired) << "voided by the long one";
  EXPECT_TRUE(std::holds_alternative<Tokens>(guess(*service, owner, long_code)));
}

}  // namespace
