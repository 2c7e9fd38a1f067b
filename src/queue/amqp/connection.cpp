#include "queue/amqp/connection.hpp"

#include <amqp_tcp_socket.h>
#include <boost/url/parse.hpp>

#include "core/env.hpp"
#include "core/errors.hpp"

namespace nimbus::amqp {

namespace {
constexpr const char* kDependency = "rabbitmq";

amqp_bytes_t bytes(std::string_view s) {
  return {s.size(), const_cast<char*>(s.data())};
}

amqp_table_entry_t entry(std::string_view key, std::string_view value) {
  amqp_table_entry_t e;
  e.key = bytes(key);
  e.value.kind = AMQP_FIELD_KIND_UTF8;
  e.value.value.bytes = bytes(value);
  return e;
}

amqp_table_entry_t entry(std::string_view key, std::int64_t value) {
  amqp_table_entry_t e;
  e.key = bytes(key);
  e.value.kind = AMQP_FIELD_KIND_I64;
  e.value.value.i64 = value;
  return e;
}

}  // namespace

Config Config::from_url(const std::string& url) {
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed || parsed->scheme() != "amqp") throw std::invalid_argument("expected amqp://user:pass@host:port/vhost");
  Config c;
  if (!parsed->host().empty()) c.host = parsed->host();
  if (parsed->has_port()) c.port = parsed->port_number();
  if (parsed->has_userinfo()) {
    c.user = parsed->user();
    c.password = parsed->password();
  }
  auto path = parsed->path();  // decoded: "/" is the default vhost, "/x" is "x"
  if (path.size() > 1) c.vhost = path.substr(1);
  return c;
}

Config Config::from_env() {
  auto url = env::required_string("NIMBUS_AMQP_URL");
  try {
    return from_url(url);
  } catch (const std::invalid_argument& e) {
    throw env::ConfigError(std::string("NIMBUS_AMQP_URL is invalid: ") + e.what());
  }
}

std::vector<std::string_view> topology::work_queues() {
  return {kImageProcess, kEmailSend};
}
std::string topology::dead_letter_queue(std::string_view queue) {
  return std::string(queue) + ".dlq";
}
std::string topology::retry_exchange(int delay_seconds) {
  return "nimbus.retry." + std::to_string(delay_seconds);
}

Connection::Connection(const Config& config) {
  state_ = amqp_new_connection();
  try {
    open(config);
  } catch (...) {
    // A constructor that throws runs no destructor: the half-open state goes here
    // (found by LeakSanitizer: every failed reconnect leaked 200 KB).
    amqp_destroy_connection(state_);
    throw;
  }
}

void Connection::open(const Config& config) {
  amqp_socket_t* socket = amqp_tcp_socket_new(state_);
  if (socket == nullptr) throw DependencyUnavailable(kDependency, "cannot create socket");
  timeval tv{static_cast<time_t>(config.connect_timeout.count() / 1000),
             static_cast<suseconds_t>((config.connect_timeout.count() % 1000) * 1000)};
  check_status(amqp_socket_open_noblock(socket, config.host.c_str(), config.port, &tv), "connect");
  amqp_set_handshake_timeout(state_, &tv);
  amqp_set_rpc_timeout(state_, &tv);
  check(amqp_login(state_, config.vhost.c_str(), 0, 131072, config.heartbeat_seconds, AMQP_SASL_METHOD_PLAIN,
                   config.user.c_str(), config.password.c_str()),
        "login");
  amqp_channel_open(state_, kChannel);
  check(amqp_get_rpc_reply(state_), "channel open");
}

Connection::~Connection() {
  amqp_channel_close(state_, kChannel, AMQP_REPLY_SUCCESS);
  amqp_connection_close(state_, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(state_);
}

void Connection::check_status(int status, std::string_view what) {
  if (status != AMQP_STATUS_OK) {
    throw DependencyUnavailable(kDependency, std::string(what) + ": " + amqp_error_string2(status));
  }
}

void Connection::check(const amqp_rpc_reply_t& reply, std::string_view what) {
  switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return;
    case AMQP_RESPONSE_NONE:
      throw DependencyUnavailable(kDependency, std::string(what) + ": missing reply");
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      throw DependencyUnavailable(kDependency, std::string(what) + ": " + amqp_error_string2(reply.library_error));
    case AMQP_RESPONSE_SERVER_EXCEPTION: {
      std::string detail = "server closed the channel";
      if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD || reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        const auto* m = static_cast<amqp_channel_close_t*>(reply.reply.decoded);
        detail = std::string(static_cast<const char*>(m->reply_text.bytes), m->reply_text.len);
      }
      throw DependencyUnavailable(kDependency, std::string(what) + ": " + detail);
    }
  }
}

void Connection::declare_topology() {
  using namespace topology;
  amqp_exchange_declare(state_, kChannel, bytes(kExchange), amqp_cstring_bytes("direct"), 0, 1, 0, 0, amqp_empty_table);
  check(amqp_get_rpc_reply(state_), "declare exchange");
  amqp_exchange_declare(state_, kChannel, bytes(kDeadLetterExchange), amqp_cstring_bytes("direct"), 0, 1, 0, 0,
                        amqp_empty_table);
  check(amqp_get_rpc_reply(state_), "declare dead-letter exchange");

  for (auto queue : work_queues()) declare_work_queue(queue);

  for (int delay : kRetryDelaysSeconds) {
    const auto name = retry_exchange(delay);
    amqp_exchange_declare(state_, kChannel, bytes(name), amqp_cstring_bytes("fanout"), 0, 1, 0, 0, amqp_empty_table);
    check(amqp_get_rpc_reply(state_), "declare retry exchange");
    amqp_table_entry_t args[] = {entry("x-message-ttl", std::int64_t{delay} * 1000),
                                 entry("x-dead-letter-exchange", kExchange)};
    amqp_queue_declare(state_, kChannel, bytes(name), 0, 1, 0, 0, {2, args});
    check(amqp_get_rpc_reply(state_), "declare retry queue");
    amqp_queue_bind(state_, kChannel, bytes(name), bytes(name), amqp_empty_bytes, amqp_empty_table);
    check(amqp_get_rpc_reply(state_), "bind retry queue");
  }
}

void Connection::declare_work_queue(std::string_view queue) {
  using namespace topology;
  amqp_table_entry_t args[] = {entry("x-queue-type", "quorum"), entry("x-dead-letter-exchange", kDeadLetterExchange),
                               entry("x-delivery-limit", std::int64_t{kDeliveryLimit})};
  amqp_queue_declare(state_, kChannel, bytes(queue), 0, 1, 0, 0, {3, args});
  check(amqp_get_rpc_reply(state_), "declare queue");
  amqp_queue_bind(state_, kChannel, bytes(queue), bytes(kExchange), bytes(queue), amqp_empty_table);
  check(amqp_get_rpc_reply(state_), "bind queue");

  const auto dlq = dead_letter_queue(queue);
  amqp_queue_declare(state_, kChannel, bytes(dlq), 0, 1, 0, 0, amqp_empty_table);
  check(amqp_get_rpc_reply(state_), "declare dead-letter queue");
  amqp_queue_bind(state_, kChannel, bytes(dlq), bytes(kDeadLetterExchange), bytes(queue), amqp_empty_table);
  check(amqp_get_rpc_reply(state_), "bind dead-letter queue");
}

void Connection::delete_queue(std::string_view queue) {
  amqp_queue_delete(state_, kChannel, bytes(queue), 0, 0);
  check(amqp_get_rpc_reply(state_), "delete queue");
}

}  // namespace nimbus::amqp
