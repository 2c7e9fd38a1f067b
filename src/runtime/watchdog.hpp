// Event-loop watchdog: a stuck instance takes itself out.
//
// A timer on the io_context stamps a heartbeat every `timeout / 10`; a plain thread
// checks the stamp. When the loop has not run the timer for longer than `timeout` (a
// handler spinning on the CPU, a blocking call on the I/O thread), the watchdog logs
// what was in flight (`describe`) and aborts, so that the supervisor — supervisord
// locally, the kubelet in a cluster — restarts the process. A hung process that still
// accepts connections (the kernel queues them) would otherwise hold a third of the
// gateway's traffic until someone noticed.
//
// With several I/O threads the heartbeat runs on whichever thread is free, so only a
// loop with every thread stuck is caught; the stack runs one thread per instance
// (scale by instances), which this covers fully.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace nimbus::runtime {

class Watchdog {
 public:
  using Clock = std::chrono::steady_clock;
  // What happens when the loop is found stuck; aborts by default.
  using OnStall = std::function<void(std::chrono::milliseconds stalled, const std::string& in_flight)>;

  Watchdog(boost::asio::io_context& ioc, std::chrono::milliseconds timeout, std::function<std::string()> describe,
           OnStall on_stall = {});
  ~Watchdog();  // stops
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  void start();
  void stop();

 private:
  struct Beat;
  void watch();

  std::chrono::milliseconds timeout_;
  std::function<std::string()> describe_;
  OnStall on_stall_;
  std::shared_ptr<Beat> beat_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace nimbus::runtime
