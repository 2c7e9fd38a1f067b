#include "core/log.hpp"

#include <boost/json/parse.hpp>
#include <cstdio>
#include <fcntl.h>
#include <string>
#include <unistd.h>

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

namespace {

// What the pipe holds now (its read end is non-blocking).
std::string drain(int fd) {
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  return out;
}

}  // namespace

// A request's line costs no write(2) of its own: info lines wait in the buffer (for the
// periodic flush), a warning takes everything before it out at once, in order.
TEST(Log, InfoLinesAreBufferedAWarningFlushes) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_NONBLOCK), 0);
  std::FILE* out = ::fdopen(fds[1], "w");
  ASSERT_NE(out, nullptr);
  log::init({.service = "log-test", .instance = "t", .level = log::Level::info, .out = out});
  log::info("first", {{"n", 1}});
  log::info("second", {{"n", 2}});
  EXPECT_EQ(drain(fds[0]), "");
  log::warn("third");
  auto lines = drain(fds[0]);
  EXPECT_NE(lines.find("\"msg\":\"first\""), std::string::npos) << lines;
  EXPECT_LT(lines.find("\"first\""), lines.find("\"second\""));
  EXPECT_LT(lines.find("\"second\""), lines.find("\"third\""));
  EXPECT_EQ(lines.back(), '\n');
  log::info("last");
  log::shutdown();  // flushes what is left
  EXPECT_NE(drain(fds[0]).find("\"last\""), std::string::npos);
  std::fclose(out);
  ::close(fds[0]);
}
