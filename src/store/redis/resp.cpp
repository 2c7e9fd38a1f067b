#include "store/redis/resp.hpp"

#include <hiredis/hiredis.h>
#include <new>

namespace nimbus::redis {

namespace {

// An array reply makes hiredis allocate a pointer per announced element before any
// arrives: "*1000000000\r\n" asked for 8 GB. No reply Nimbus reads comes near this.
constexpr long long kMaxArrayElements = 1 << 20;

}  // namespace

redisReader* make_reader() {
  redisReader* reader = redisReaderCreate();
  if (reader == nullptr) throw std::bad_alloc();
  // hiredis's default reply functions, with the array count checked first (a null
  // object is the reader's out-of-memory error: the reply fails as a protocol error).
  static const redisReplyObjectFunctions* defaults = reader->fn;
  static redisReplyObjectFunctions capped = [] {
    redisReplyObjectFunctions f = *defaults;
    f.createArray = [](const redisReadTask* task, auto elements) -> void* {
      if (elements < 0 || static_cast<long long>(elements) > kMaxArrayElements) return nullptr;
      return defaults->createArray(task, elements);
    };
    return f;
  }();
  reader->fn = &capped;
  return reader;
}

Reply to_reply(const redisReply* r) {
  Reply out;
  switch (r->type) {
    case REDIS_REPLY_STATUS:
      out.type = Reply::Type::status;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = Reply::Type::error;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = Reply::Type::integer;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_STRING:
      out.type = Reply::Type::string;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::Type::array;
      out.elements.reserve(r->elements);
      for (std::size_t i = 0; i < r->elements; ++i) out.elements.push_back(to_reply(r->element[i]));
      break;
    default:
      out.type = Reply::Type::nil;
  }
  return out;
}

}  // namespace nimbus::redis
