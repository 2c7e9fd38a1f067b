// The transactional outbox (DESIGN.md invariant 3): a message is written in the same
// PostgreSQL transaction as the domain row it belongs to, and the relay publishes it.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <string>

#include "store/pg/pool.hpp"

namespace nimbus::outbox {

struct Message {
  std::string exchange = "nimbus";
  std::string routing_key;  // the work queue's name
  std::string payload;      // JSON text
  // Holds a secret (a sign-in code): the row's payload is cleared once published.
  bool sensitive = false;
};

// The INSERT to run inside the caller's transaction (e.g. as one statement of a
// pipeline that also writes the domain row). Yields the message id.
pg::Statement enqueue_statement(const Message& message);

// Same, executed on `db`, which must be inside the caller's transaction.
boost::asio::awaitable<std::string> enqueue(pg::Lease& db, const Message& message);

}  // namespace nimbus::outbox
