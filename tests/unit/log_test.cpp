#include "core/log.hpp"

#include <boost/json/parse.hpp>

#include <gtest/gtest.h>

using namespace nimbus;

TEST(Log, OneJsonObjectPerLineWithFields) {
  auto line = log::format(log::Level::warn, "slow \"query\"\n",
                          {{"request_id", "abc"}, {"status", 503}, {"ms", 12.5}, {"retry", true}});
  EXPECT_EQ(line.find('\n'), std::string::npos);  // newlines inside values are escaped
  auto obj = boost::json::parse(line).as_object();
  EXPECT_EQ(obj.at("level").as_string(), "warn");
  EXPECT_EQ(obj.at("msg").as_string(), "slow \"query\"\n");
  EXPECT_EQ(obj.at("request_id").as_string(), "abc");
  EXPECT_EQ(obj.at("status").as_int64(), 503);
  EXPECT_DOUBLE_EQ(obj.at("ms").as_double(), 12.5);
  EXPECT_TRUE(obj.at("retry").as_bool());
  EXPECT_TRUE(obj.contains("ts"));
}

TEST(Log, ParseLevel) {
  EXPECT_EQ(log::parse_level("debug"), log::Level::debug);
  EXPECT_EQ(log::parse_level("warning"), log::Level::warn);
  EXPECT_THROW(log::parse_level("loud"), std::invalid_argument);
}
