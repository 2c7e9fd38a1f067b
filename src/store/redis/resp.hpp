// RESP replies as Nimbus sees them: hiredis's reader parses the bytes into its reply
// tree, to_reply() copies that tree into a Reply. Apart from the client so that both
// can be tested and fuzzed without a socket.
#pragma once

#include "store/redis/client.hpp"

struct redisReader;  // hiredis/read.h
struct redisReply;   // hiredis/hiredis.h

namespace nimbus::redis {

// A hiredis reader (free it with redisReaderFree).
redisReader* make_reader();

// The reply, with every type hiredis does not know as nil. hiredis bounds nesting
// (7 levels), which bounds the recursion here.
Reply to_reply(const redisReply* r);

}  // namespace nimbus::redis
