// A blocking rabbitmq-c connection with one channel, and the broker topology.
//
// rabbitmq-c is synchronous and not thread-safe: a Connection belongs to exactly one
// thread (the publisher's or the consumer's), never to an Asio I/O thread.
#pragma once

#include <amqp.h>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace nimbus::amqp {

struct Config {
  std::string host = "127.0.0.1";
  std::uint16_t port = 5672;
  std::string user = "guest";
  std::string password = "guest";
  std::string vhost = "/";
  int heartbeat_seconds = 30;
  std::chrono::milliseconds connect_timeout{3'000};

  // NIMBUS_AMQP_URL: amqp://user:password@host:port/vhost
  static Config from_env();
  static Config from_url(const std::string& url);  // throws std::invalid_argument
};

// Names of the broker objects every Nimbus process agrees on.
namespace topology {
inline constexpr std::string_view kExchange = "nimbus";                // direct; routing key = queue name
inline constexpr std::string_view kDeadLetterExchange = "nimbus.dlx";  // direct; key = queue name
inline constexpr std::string_view kImageProcess = "image.process";
inline constexpr std::string_view kEmailSend = "email.send";
// Work queues: quorum queues (replicated when clustered, x-delivery-count on every
// redelivery), poison messages dead-lettered after this many deliveries.
inline constexpr int kDeliveryLimit = 10;
// Retry delays: a message published to "nimbus.retry.<seconds>" waits that long, then
// dead-letters back to "nimbus" with its original routing key.
inline constexpr int kRetryDelaysSeconds[] = {1, 5, 30, 120};
std::vector<std::string_view> work_queues();
std::string dead_letter_queue(std::string_view queue);  // "<queue>.dlq"
std::string retry_exchange(int delay_seconds);
}  // namespace topology

class Connection {
 public:
  // Connects, logs in and opens channel 1; throws DependencyUnavailable.
  explicit Connection(const Config& config);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  amqp_connection_state_t state() { return state_; }
  static constexpr amqp_channel_t kChannel = 1;

  // Declares exchanges and queues; idempotent (same arguments every time).
  void declare_topology();
  // A quorum work queue bound to the main exchange by its name, with its dead-letter
  // queue. Part of declare_topology(); tests declare private ones.
  void declare_work_queue(std::string_view queue);
  void delete_queue(std::string_view queue);
  // Throws DependencyUnavailable describing `reply` unless it is normal.
  void check(const amqp_rpc_reply_t& reply, std::string_view what);
  void check_status(int status, std::string_view what);

 private:
  void open(const Config& config);  // the constructor's work, so that it can clean up
  amqp_connection_state_t state_ = nullptr;
};

// A message as published and as delivered.
struct Message {
  std::string exchange{topology::kExchange};
  std::string routing_key;
  std::string body;
  std::string message_id;  // consumers deduplicate on it
  std::string content_type = "application/json";
  std::map<std::string, std::string> headers;
};

}  // namespace nimbus::amqp
