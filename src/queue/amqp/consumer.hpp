// Consuming with manual acknowledgement.
//
// One thread owns the broker connection: it receives deliveries (at most `prefetch`
// unacknowledged at a time) and hands each to `handler` on a pool of `concurrency`
// threads; the outcome comes back to the connection thread, which acks, requeues or
// dead-letters it. A delivery is acknowledged only after its handler returned, so a
// crash at any point leaves the message in the queue for another worker. After a
// reconnect, outcomes of deliveries from the old connection are dropped: the broker
// has already requeued those messages.
//
// stop(): no new deliveries; in-flight handlers get `drain` to finish and be acked;
// whatever is still running then is requeued by closing the connection.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "queue/amqp/connection.hpp"

namespace nimbus::amqp {

struct Delivery {
  Message message;
  std::uint64_t tag = 0;
  bool redelivered = false;
  std::int64_t delivery_count = 0;  // x-delivery-count (quorum queues): earlier deliveries
};

enum class Outcome {
  ack,          // done (or a duplicate): remove from the queue
  requeue,      // not done; give it to a worker again now
  dead_letter,  // never going to work: to the dead-letter queue
};

class Consumer {
 public:
  using Handler = std::function<Outcome(const Delivery&)>;

  Consumer(Config config, std::string queue, int concurrency, Handler handler);
  ~Consumer();
  Consumer(const Consumer&) = delete;
  Consumer& operator=(const Consumer&) = delete;

  void start();
  void stop(std::chrono::milliseconds drain = std::chrono::seconds(20));
  bool connected() const { return connected_.load(); }
  std::uint64_t handled() const { return handled_.load(); }

 private:
  struct Done {
    std::uint64_t generation, tag;
    Outcome outcome;
  };
  void run();
  void work();
  void settle(Connection& conn);

  Config config_;
  std::string queue_;
  int concurrency_;
  Handler handler_;

  std::mutex mutex_;
  std::condition_variable work_ready_, all_done_;
  std::deque<std::pair<std::uint64_t, Delivery>> todo_;  // generation, delivery
  std::vector<Done> done_;
  int in_flight_ = 0;
  bool stopping_ = false;
  bool draining_ = false;
  std::atomic<bool> connected_{false};
  std::atomic<std::uint64_t> handled_{0};
  std::uint64_t generation_ = 0;  // owned by the connection thread
  std::vector<std::jthread> workers_;
  std::jthread thread_;
};

}  // namespace nimbus::amqp
