// Process metrics in the Prometheus text exposition format.
//
// Per-instance by nature (Prometheus scrapes every instance and sums), so keeping them
// in memory does not break statelessness: losing them on restart loses no user data.
// The request path touches only pre-allocated atomics — no lock, no allocation.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace nimbus::ops {

class Counter {
 public:
  void add(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

class Gauge {
 public:
  void add(std::int64_t n) { value_.fetch_add(n, std::memory_order_relaxed); }
  void set(std::int64_t n) { value_.store(n, std::memory_order_relaxed); }
  std::int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> value_{0};
};

// Counts of observed values by upper bound (Prometheus `le`: a value lands in the first
// bucket whose bound is >= it, or in +Inf), with their sum. Buckets are fixed at
// construction, so observe() is a few relaxed atomic adds: no lock, no allocation.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);

  void observe(double value);

  const std::vector<double>& bounds() const { return bounds_; }
  // Per bucket, not cumulative; the last is +Inf.
  std::vector<std::uint64_t> counts() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }

  // The _bucket (cumulative), _sum and _count lines of `name`, with `labels` if any.
  void render(std::string& out, const std::string& name, const std::string& labels = {}) const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;  // bounds_.size() + 1
  std::atomic<double> sum_{0.0};
};

class Metrics {
 public:
  static constexpr std::array<double, 14> kLatencyBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                             0.1,    0.25,  0.5,    1.0,   2.5,  5.0,   10.0};

  // Creates one slot per route (method, pattern) plus one for unmatched requests. Call
  // before serving.
  struct RouteName {
    std::string method, pattern;
  };
  void bind_routes(const std::vector<RouteName>& routes);
  std::size_t unmatched_slot() const { return slots_.empty() ? 0 : slots_.size() - 1; }
  void observe_request(std::size_t slot, unsigned status, double seconds);

  Gauge& in_flight() { return in_flight_; }
  Gauge& connections() { return connections_; }
  Counter& connections_rejected() { return connections_rejected_; }

  // Extension points for other modules (pools, queues, jobs). Names are full metric
  // names; returned references stay valid for the life of the Metrics object.
  Counter& counter(std::string name, std::string help, std::string labels = {});
  Gauge& gauge(std::string name, std::string help, std::string labels = {});
  void gauge_fn(std::string name, std::string help, std::function<double()> read);
  // A counter kept elsewhere (an atomic of the module that counts), read when scraped.
  void counter_fn(std::string name, std::string help, std::function<double()> read);
  // A histogram kept by the module that observes (so its hot path needs no lookup),
  // rendered when scraped.
  void histogram(std::string name, std::string help, std::shared_ptr<const Histogram> histogram);

  std::string render() const;

 private:
  struct Slot {
    std::string route;
    std::string method;
    std::array<std::atomic<std::uint64_t>, 500> by_status{};  // index: status - 100
    std::array<std::atomic<std::uint64_t>, kLatencyBuckets.size() + 1> buckets{};
    std::atomic<std::uint64_t> sum_micros{0};
  };
  template <typename T>
  struct Named {
    std::string name, help, labels;
    T metric;
  };

  std::vector<std::unique_ptr<Slot>> slots_;
  Gauge in_flight_, connections_;
  Counter connections_rejected_;

  mutable std::mutex mutex_;  // guards registration of the extension metrics below
  std::deque<Named<Counter>> counters_;
  std::deque<Named<Gauge>> gauges_;
  std::vector<std::tuple<std::string, std::string, std::function<double()>>> gauge_fns_, counter_fns_;
  std::vector<std::tuple<std::string, std::string, std::shared_ptr<const Histogram>>> histograms_;
};

}  // namespace nimbus::ops
