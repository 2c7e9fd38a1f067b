// NIMBUS_REDIS_URL: what a URL sets (host, port, database, the credentials AUTH sends).
#include <gtest/gtest.h>

#include "store/redis/client.hpp"

using nimbus::redis::Config;

TEST(RedisConfig, HostPortAndDatabase) {
  auto c = Config::from_url("redis://cache.internal:6380/3");
  EXPECT_EQ(c.host, "cache.internal");
  EXPECT_EQ(c.port, 6380);
  EXPECT_EQ(c.db, 3);
  EXPECT_TRUE(c.password.empty());
  EXPECT_TRUE(c.username.empty());
}

TEST(RedisConfig, PasswordOfTheDefaultUser) {
  auto c = Config::from_url("redis://:s3cret@127.0.0.1:6379/0");
  EXPECT_EQ(c.password, "s3cret");
  EXPECT_TRUE(c.username.empty());  // AUTH <password>
}

TEST(RedisConfig, AclUserAndPercentDecodedPassword) {
  auto c = Config::from_url("redis://worker:p%40ss%3Aword@127.0.0.1:6379");
  EXPECT_EQ(c.username, "worker");  // AUTH <user> <password>
  EXPECT_EQ(c.password, "p@ss:word");
}

TEST(RedisConfig, RefusesOtherSchemesAndBadDatabases) {
  EXPECT_THROW(Config::from_url("http://127.0.0.1:6379"), std::invalid_argument);
  EXPECT_THROW(Config::from_url("redis://127.0.0.1:6379/x"), std::invalid_argument);
}
