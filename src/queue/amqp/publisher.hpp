// Publishing with publisher confirms, from coroutines.
//
// A dedicated thread owns the broker connection: it declares the topology on every
// (re)connect, publishes each batch as persistent, mandatory messages, and waits until
// the broker has confirmed every one. publish() completes only then — a confirmed
// message is on disk in a durable queue — and throws DependencyUnavailable otherwise
// (broker down, nack, unroutable, timeout), so the caller can retry the whole batch.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "queue/amqp/connection.hpp"

namespace nimbus::amqp {

class Publisher {
 public:
  explicit Publisher(Config config, std::chrono::milliseconds confirm_timeout = std::chrono::seconds(10));
  ~Publisher();
  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;

  boost::asio::awaitable<void> publish(std::vector<Message> batch);
  bool connected() const { return connected_.load(); }

 private:
  struct Job;
  void run();
  void publish_now(Connection& conn, Job& job);

  Config config_;
  std::chrono::milliseconds confirm_timeout_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Job>> jobs_;
  bool stopping_ = false;
  std::atomic<bool> connected_{false};
  std::uint64_t next_tag_ = 1;  // delivery tag of the next publish on this connection
  std::jthread thread_;
};

}  // namespace nimbus::amqp
