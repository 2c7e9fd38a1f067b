// The Redis reply reader fed as a socket feeds it: replies cut at every byte, several
// replies in one read, a reply spread over many reads. hiredis parses; to_reply copies.
#include "store/redis/resp.hpp"

#include <hiredis/hiredis.h>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace {

using nimbus::redis::Reply;
using ReaderPtr = std::unique_ptr<redisReader, decltype(&redisReaderFree)>;

// Feeds `bytes` in pieces cut at `cuts` (offsets), taking every complete reply after
// each piece; fails the test at a protocol error.
std::vector<Reply> read_in_pieces(std::string_view bytes, const std::vector<std::size_t>& cuts) {
  ReaderPtr reader(nimbus::redis::make_reader(), redisReaderFree);
  std::vector<Reply> out;
  std::size_t from = 0;
  auto take = [&] {
    for (;;) {
      void* raw = nullptr;
      if (redisReaderGetReply(reader.get(), &raw) != REDIS_OK) {
        ADD_FAILURE() << "protocol error after " << from << " bytes";
        return;
      }
      if (raw == nullptr) return;  // incomplete: wait for more bytes
      out.push_back(nimbus::redis::to_reply(static_cast<redisReply*>(raw)));
      freeReplyObject(raw);
    }
  };
  for (auto cut : cuts) {
    redisReaderFeed(reader.get(), bytes.data() + from, cut - from);
    from = cut;
    take();
  }
  redisReaderFeed(reader.get(), bytes.data() + from, bytes.size() - from);
  take();
  return out;
}

// Three replies as a pipeline returns them: a nested array (bulk with CRLF inside, a
// negative integer, a nil, a status, an empty bulk), an error, a large bulk string.
const std::string kLarge(70'000, 'x');
const std::string kStream = "*4\r\n$12\r\nhello\r\nworld\r\n*2\r\n:-42\r\n$-1\r\n+OK\r\n$0\r\n\r\n" +
                            std::string("-ERR wrong number of arguments\r\n") + "$70000\r\n" + kLarge + "\r\n";

void check(const std::vector<Reply>& replies, const std::string& how) {
  ASSERT_EQ(replies.size(), 3U) << how;
  const auto& a = replies[0];
  ASSERT_EQ(a.type, Reply::Type::array) << how;
  ASSERT_EQ(a.elements.size(), 4U) << how;
  EXPECT_EQ(a.elements[0].str, "hello\r\nworld") << how;
  ASSERT_EQ(a.elements[1].elements.size(), 2U) << how;
  EXPECT_EQ(a.elements[1].elements[0].integer, -42) << how;
  EXPECT_TRUE(a.elements[1].elements[1].is_nil()) << how;
  EXPECT_EQ(a.elements[2].type, Reply::Type::status) << how;
  EXPECT_EQ(a.elements[2].str, "OK") << how;
  EXPECT_EQ(a.elements[3].type, Reply::Type::string) << how;
  EXPECT_TRUE(a.elements[3].str.empty()) << how;
  EXPECT_TRUE(replies[1].is_error()) << how;
  EXPECT_EQ(replies[1].str, "ERR wrong number of arguments") << how;
  EXPECT_EQ(replies[2].str, kLarge) << how;
}

TEST(RespReader, AllAtOnce) {
  check(read_in_pieces(kStream, {}), "whole");
}

TEST(RespReader, OneByteAtATime) {
  std::vector<std::size_t> cuts;
  for (std::size_t i = 1; i < kStream.size(); ++i) cuts.push_back(i);
  check(read_in_pieces(kStream, cuts), "byte by byte");
}

TEST(RespReader, CutAtEveryPlaceOnce) {
  // Two pieces, cut at each offset in turn: inside a length, between CR and LF, inside
  // a nested array, at a reply's boundary.
  for (std::size_t cut = 1; cut < kStream.size() - kLarge.size(); ++cut) {
    check(read_in_pieces(kStream, {cut}), "cut at " + std::to_string(cut));
  }
}

TEST(RespReader, APartialReplyIsNotAReply) {
  ReaderPtr reader(nimbus::redis::make_reader(), redisReaderFree);
  const std::string_view partial = "*2\r\n$5\r\nhel";
  redisReaderFeed(reader.get(), partial.data(), partial.size());
  void* raw = nullptr;
  ASSERT_EQ(redisReaderGetReply(reader.get(), &raw), REDIS_OK);
  EXPECT_EQ(raw, nullptr) << "no reply before its last byte";
}

TEST(RespReader, GarbageIsAProtocolErrorNotAReply) {
  for (const std::string_view bad : {"?what\r\n", "$abc\r\n", "*-5x\r\n", ":12a\r\n"}) {
    ReaderPtr reader(nimbus::redis::make_reader(), redisReaderFree);
    redisReaderFeed(reader.get(), bad.data(), bad.size());
    void* raw = nullptr;
    EXPECT_EQ(redisReaderGetReply(reader.get(), &raw), REDIS_ERR) << bad;
    EXPECT_EQ(raw, nullptr) << bad;
  }
}

}  // namespace
