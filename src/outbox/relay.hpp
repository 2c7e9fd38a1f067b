// The outbox relay: publishes outbox rows to RabbitMQ with confirms, then marks them
// sent. Runs in nimbus-worker; any number of relays may run at once.
//
// Each batch is claimed with FOR UPDATE SKIP LOCKED inside a transaction that stays
// open across the publish, so concurrent relays never publish the same row in the
// normal path. A relay that dies between publish and commit leaves its rows unsent:
// they are published again later (at least once), and consumers deduplicate on the
// message id. The relay sleeps on LISTEN outbox (a trigger NOTIFYs on insert, delivered
// at commit) and polls every `poll_interval` as a fallback.
#pragma once

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "queue/amqp/publisher.hpp"
#include "store/pg/pool.hpp"

namespace nimbus::ops {
class Metrics;
}

namespace nimbus::outbox {

struct RelayConfig {
  int batch_size = 200;
  std::chrono::milliseconds poll_interval{1'000};
  std::chrono::hours retention{24};  // published rows are deleted after this
  // The routing keys this relay publishes: the work queues of the topology it
  // declares. (Tests use private ones, so they never race the stack's own workers.)
  std::vector<std::string> routing_keys = default_routing_keys();
  static std::vector<std::string> default_routing_keys();
};

class Relay {
 public:
  Relay(std::shared_ptr<pg::Pool> pool, amqp::Publisher& publisher, RelayConfig config = {});

  // Publishes one batch; returns how many rows it sent. `after_publish` runs between the
  // confirmed publish and the commit (tests use it to simulate a crash there).
  boost::asio::awaitable<int> run_once(std::function<void()> after_publish = {});
  // Until stop(): drain the outbox, then wait for a NOTIFY or the poll interval.
  boost::asio::awaitable<void> run();
  void stop() { stopping_ = true; }
  bool running() const { return running_.load(); }
  void export_metrics(ops::Metrics& metrics);

 private:
  boost::asio::awaitable<void> purge_published();

  std::shared_ptr<pg::Pool> pool_;
  amqp::Publisher& publisher_;
  RelayConfig config_;
  std::string routing_keys_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> running_{false};
  std::atomic<std::uint64_t> published_{0}, failures_{0};
};

}  // namespace nimbus::outbox
