// Readiness: "can this instance serve traffic now?" — false while draining or while a
// dependency check fails. Results are cached briefly so that a burst of probes (nginx,
// Kubernetes, a load balancer per zone) costs the dependencies one check per second.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace nimbus::ops {

class Readiness {
 public:
  using Check = std::function<boost::asio::awaitable<bool>()>;
  struct Report {
    bool ready = false;
    bool draining = false;
    std::vector<std::pair<std::string, bool>> checks;
  };

  explicit Readiness(std::chrono::milliseconds cache_ttl = std::chrono::seconds(1),
                     std::chrono::milliseconds check_timeout = std::chrono::milliseconds(800))
      : ttl_(cache_ttl), check_timeout_(check_timeout) {}

  // Register at start-up, before serving.
  void add_check(std::string name, Check check);
  void set_draining() { draining_.store(true); }
  bool draining() const { return draining_.load(); }

  boost::asio::awaitable<Report> report();

 private:
  std::chrono::milliseconds ttl_;
  std::chrono::milliseconds check_timeout_;
  std::vector<std::pair<std::string, Check>> checks_;
  std::atomic<bool> draining_{false};
  std::mutex mutex_;
  std::chrono::steady_clock::time_point checked_at_{};
  Report cached_;
};

}  // namespace nimbus::ops
