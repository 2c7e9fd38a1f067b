// The direct-upload reservation of the images service layer against the stack's real
// PostgreSQL, driven directly (no HTTP) with a manual clock: the expiry it reports and
// the presigned PUT it hands out are both dated by the service's clock, at one instant.

#include <gtest/gtest.h>

#include "core/ids.hpp"
#include "images/upload.hpp"
#include "storage/s3/sigv4.hpp"
#include "store/pg/migrate.hpp"
#include "support/manual_clock.hpp"
#include "support/stack_test.hpp"

namespace asio = boost::asio;
using namespace nimbus;
using namespace nimbus::images;
using namespace std::chrono_literals;

namespace {

// The value of query parameter `name` in `url` ("" when absent).
std::string query_value(const std::string& url, const std::string& name) {
  const auto at = url.find(name + "=");
  if (at == std::string::npos) return {};
  const auto begin = at + name.size() + 1;
  return url.substr(begin, url.find('&', begin) - begin);
}

class ImagesServiceTest : public test::StackTest {
 protected:
  void SetUp() override {
    NIMBUS_REQUIRE_STACK("NIMBUS_TEST_DATABASE_URL");
    NIMBUS_REQUIRE_STACK("NIMBUS_TEST_S3_ENDPOINT");
    pool_ = stack_pool(2);
    s3::Config s3_config;
    s3_config.endpoint = test::stack_env("NIMBUS_TEST_S3_ENDPOINT");
    s3_config.bucket = test::stack_env("NIMBUS_TEST_S3_BUCKET");
    s3_config.credentials = {test::stack_env("NIMBUS_TEST_S3_ACCESS_KEY"), test::stack_env("NIMBUS_TEST_S3_SECRET_KEY"),
                             test::stack_env("NIMBUS_TEST_S3_REGION")};
    s3_config.threads = 1;
    s3_ = std::make_shared<s3::Client>(s3_config);
    owner_ = ids::uuid_v7();
    run([&]() -> asio::awaitable<void> {
      co_await pg::migrate(*pool_, pg::embedded_migrations());
      auto db = co_await pool_->acquire();
      co_await db.query("INSERT INTO users (id, email) VALUES ($1::uuid, $2)",
                        pg::params(owner_, owner_ + "@example.com"));
    });
  }
  void TearDown() override {
    if (!pool_) return;
    run([&]() -> asio::awaitable<void> {
      auto db = co_await pool_->acquire();
      co_await db.query("DELETE FROM users WHERE id = $1", pg::params(owner_));  // its reservations go with it
    });
  }

  std::shared_ptr<pg::Pool> pool_;
  std::shared_ptr<s3::Client> s3_;
  std::string owner_;
};

TEST_F(ImagesServiceTest, AReservationExpiresAtTheClockPlusTheUrlLifetime) {
  // Three hours behind the machine, a quarter of a second into a second: an expiry or a
  // URL dated by the real clock could not match.
  const auto t0 = std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now()) - 3h + 250ms;
  auto clock = test::ManualClock::at(t0);
  UploadLimits limits;
  limits.upload_url_ttl = 90s;
  Uploads uploads(std::make_shared<Repository>(pool_), s3_, limits, clock);

  auto outcome = run([&] { return uploads.reserve(owner_, std::string("image/png"), std::int64_t{1000}); });
  auto* up = std::get_if<DirectUpload>(&outcome);
  ASSERT_TRUE(up);
  EXPECT_EQ(up->expires, t0 + 90s);
  // The URL is valid over exactly that span: signed at the clock's instant, for the ttl.
  EXPECT_EQ(query_value(up->url, "X-Amz-Date"), s3::amz_date(t0)) << up->url;
  EXPECT_EQ(query_value(up->url, "X-Amz-Expires"), "90") << up->url;
  // The id stays minted on the real clock: the storage sweeper reads an upload's age from it.
  auto minted = minted_at(up->id);
  ASSERT_TRUE(minted);
  EXPECT_LT(std::chrono::abs(*minted - std::chrono::system_clock::now()), 1min);

  // A later reservation is dated by the clock's later time.
  clock->advance(30s);
  auto later = run([&] { return uploads.reserve(owner_, std::string("image/jpeg"), std::int64_t{2000}); });
  ASSERT_TRUE(std::holds_alternative<DirectUpload>(later));
  EXPECT_EQ(std::get<DirectUpload>(later).expires, t0 + 120s);
  EXPECT_EQ(query_value(std::get<DirectUpload>(later).url, "X-Amz-Date"), s3::amz_date(t0 + 30s));
}

}  // namespace
