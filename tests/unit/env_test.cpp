#include "core/env.hpp"

#include <cstdlib>

#include <gtest/gtest.h>

using namespace nimbus;
using namespace std::chrono_literals;

TEST(EnvParse, Durations) {
  EXPECT_EQ(env::parse_duration("250"), 250ms);
  EXPECT_EQ(env::parse_duration("250ms"), 250ms);
  EXPECT_EQ(env::parse_duration("5s"), 5000ms);
  EXPECT_EQ(env::parse_duration("2m"), 120'000ms);
  EXPECT_EQ(env::parse_duration("1h"), 3'600'000ms);
  EXPECT_FALSE(env::parse_duration(""));
  EXPECT_FALSE(env::parse_duration("s"));
  EXPECT_FALSE(env::parse_duration("-5s"));
  EXPECT_FALSE(env::parse_duration("5 s"));
  EXPECT_FALSE(env::parse_duration("5d"));
  EXPECT_FALSE(env::parse_duration("99999999999999999999h"));
}

TEST(EnvParse, Bytes) {
  EXPECT_EQ(env::parse_bytes("512"), 512U);
  EXPECT_EQ(env::parse_bytes("64k"), 64U * 1024);
  EXPECT_EQ(env::parse_bytes("16M"), 16U * 1024 * 1024);
  EXPECT_EQ(env::parse_bytes("1g"), 1024ULL * 1024 * 1024);
  EXPECT_FALSE(env::parse_bytes("1.5m"));
  EXPECT_FALSE(env::parse_bytes("k"));
  EXPECT_FALSE(env::parse_bytes("12kb"));
}

TEST(EnvRead, ErrorsNameTheVariable) {
  ::setenv("NIMBUS_TEST_INT", "70000", 1);
  try {
    env::integer("NIMBUS_TEST_INT", 1, 0, 65535);
    FAIL() << "expected ConfigError";
  } catch (const env::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("NIMBUS_TEST_INT"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("[0, 65535]"), std::string::npos);
  }
  ::setenv("NIMBUS_TEST_INT", "12abc", 1);
  EXPECT_THROW(env::integer("NIMBUS_TEST_INT", 1, 0, 100), env::ConfigError);
  ::setenv("NIMBUS_TEST_INT", "42", 1);
  EXPECT_EQ(env::integer("NIMBUS_TEST_INT", 1, 0, 100), 42);
  ::unsetenv("NIMBUS_TEST_INT");
  EXPECT_EQ(env::integer("NIMBUS_TEST_INT", 7, 0, 100), 7);
}

TEST(EnvRead, BooleansAndRequired) {
  ::setenv("NIMBUS_TEST_BOOL", "maybe", 1);
  EXPECT_THROW(env::boolean("NIMBUS_TEST_BOOL", false), env::ConfigError);
  ::setenv("NIMBUS_TEST_BOOL", "on", 1);
  EXPECT_TRUE(env::boolean("NIMBUS_TEST_BOOL", false));
  ::setenv("NIMBUS_TEST_BOOL", "", 1);  // empty counts as unset
  EXPECT_TRUE(env::boolean("NIMBUS_TEST_BOOL", true));
  ::unsetenv("NIMBUS_TEST_BOOL");
  EXPECT_THROW(env::required_string("NIMBUS_TEST_MISSING"), env::ConfigError);
}
