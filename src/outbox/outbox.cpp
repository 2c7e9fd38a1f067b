#include "outbox/outbox.hpp"

namespace nimbus::outbox {

namespace {
constexpr std::string_view kEnqueue =
    "INSERT INTO outbox (exchange, routing_key, payload, sensitive) VALUES ($1, $2, $3::jsonb, $4) "
    "RETURNING message_id";
}  // namespace

pg::Statement enqueue_statement(const Message& message) {
  return {kEnqueue, pg::params(message.exchange, message.routing_key, message.payload, message.sensitive)};
}

boost::asio::awaitable<std::string> enqueue(pg::Lease& db, const Message& message) {
  auto statement = enqueue_statement(message);
  auto r = co_await db.query(statement.sql, statement.params);
  co_return std::string(r.get(0, 0));
}

}  // namespace nimbus::outbox
