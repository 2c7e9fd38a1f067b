// Inputs the fuzz targets (tests/fuzz) found, each reduced to the smallest bytes that
// showed the fault, kept here so the fault stays fixed without a fuzzing run.
#include <hiredis/hiredis.h>
#include <memory>
#include <string_view>

#include <gtest/gtest.h>

#include "store/redis/resp.hpp"

namespace {

using ReaderPtr = std::unique_ptr<redisReader, decltype(&redisReaderFree)>;

// Found by fuzz_resp: a 13-byte reply announcing 10^9 elements made hiredis allocate
// 8 GB for the element pointers before a single element arrived.
TEST(FuzzRegressions, RespArrayCountIsBoundedBeforeAllocating) {
  ReaderPtr reader(nimbus::redis::make_reader(), redisReaderFree);
  const std::string_view reply = "*1000000000\r\n";
  redisReaderFeed(reader.get(), reply.data(), reply.size());
  void* raw = nullptr;
  EXPECT_EQ(redisReaderGetReply(reader.get(), &raw), REDIS_ERR) << "a protocol error, not an 8 GB allocation";
  EXPECT_EQ(raw, nullptr);

  // Sizes real replies have still read.
  ReaderPtr ok(nimbus::redis::make_reader(), redisReaderFree);
  const std::string_view pair = "*2\r\n$1\r\na\r\n:7\r\n";
  redisReaderFeed(ok.get(), pair.data(), pair.size());
  ASSERT_EQ(redisReaderGetReply(ok.get(), &raw), REDIS_OK);
  ASSERT_NE(raw, nullptr);
  const auto r = nimbus::redis::to_reply(static_cast<redisReply*>(raw));
  freeReplyObject(raw);
  ASSERT_EQ(r.type, nimbus::redis::Reply::Type::array);
  ASSERT_EQ(r.elements.size(), 2U);
  EXPECT_EQ(r.elements[0].str, "a");
  EXPECT_EQ(r.elements[1].integer, 7);
}

}  // namespace
