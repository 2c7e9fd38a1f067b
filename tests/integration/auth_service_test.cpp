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
  EXPECT_TRUE(stored(newest).live) << "the session's live token is untouched";
  auto go_on = refresh(*service_, newest);
  EXPECT_TRUE(std::holds_alternative<Tokens>(go_on)) << "and the session goes on";
}

}  // namespace
