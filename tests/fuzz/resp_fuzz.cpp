// RESP replies on arbitrary bytes, fed in chunks the bytes choose to the client's own
// hiredis reader (make_reader), each reply converted with to_reply() as the client
// does. Checks: the conversion keeps every string, integer and element count; the
// reader ends with a reply, a wait for more bytes, or a protocol error, never a loop.
#include <algorithm>
#include <cstdint>
#include <hiredis/hiredis.h>
#include <memory>
#include <string_view>

#include "fuzz_check.hpp"
#include "store/redis/resp.hpp"

using nimbus::redis::Reply;

namespace {

void check_same(const redisReply* r, const Reply& out, int depth) {
  FUZZ_CHECK(depth < 16);
  switch (r->type) {
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
    case REDIS_REPLY_STRING:
      FUZZ_CHECK(out.str.size() == r->len && std::string_view(r->str, r->len) == out.str);
      FUZZ_CHECK(out.type == (r->type == REDIS_REPLY_STATUS  ? Reply::Type::status
                              : r->type == REDIS_REPLY_ERROR ? Reply::Type::error
                                                             : Reply::Type::string));
      break;
    case REDIS_REPLY_INTEGER:
      FUZZ_CHECK(out.type == Reply::Type::integer && out.integer == r->integer);
      break;
    case REDIS_REPLY_ARRAY:
      FUZZ_CHECK(out.type == Reply::Type::array && out.elements.size() == r->elements);
      for (std::size_t i = 0; i < r->elements; ++i) check_same(r->element[i], out.elements[i], depth + 1);
      break;
    default:
      FUZZ_CHECK(out.type == Reply::Type::nil);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::unique_ptr<redisReader, decltype(&redisReaderFree)> reader(nimbus::redis::make_reader(), redisReaderFree);
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  std::size_t at = 0, replies = 0;
  bool failed = false;
  while (at < bytes.size() && !failed) {
    const std::size_t n = std::min<std::size_t>(1 + static_cast<unsigned char>(bytes[at]) % 64, bytes.size() - at);
    redisReaderFeed(reader.get(), bytes.data() + at, n);
    at += n;
    for (;;) {
      void* raw = nullptr;
      if (redisReaderGetReply(reader.get(), &raw) != REDIS_OK) {
        failed = true;
        break;
      }
      if (raw == nullptr) break;
      const Reply r = nimbus::redis::to_reply(static_cast<redisReply*>(raw));
      check_same(static_cast<redisReply*>(raw), r, 0);
      freeReplyObject(raw);
      FUZZ_CHECK(++replies <= size);  // every reply takes at least 3 bytes
    }
  }
  return 0;
}
