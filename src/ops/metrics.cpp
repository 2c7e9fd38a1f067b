#include "ops/metrics.hpp"

#include <cstdio>
#include <set>

namespace nimbus::ops {
namespace {

void append_double(std::string& out, double v, int digits = 6) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  out += buf;
}

void header(std::string& out, std::set<std::string>& seen, const std::string& name, const std::string& help,
            const char* type) {
  if (!seen.insert(name).second) return;
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

std::string braces(const std::string& labels) {
  return labels.empty() ? "" : "{" + labels + "}";
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1)) {}

void Histogram::observe(double value) {
  std::size_t b = 0;
  while (b < bounds_.size() && value > bounds_[b]) ++b;
  counts_[b].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

std::vector<std::uint64_t> Histogram::counts() const {
  std::vector<std::uint64_t> out(bounds_.size() + 1);
  for (std::size_t b = 0; b < out.size(); ++b) out[b] = counts_[b].load(std::memory_order_relaxed);
  return out;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  const std::string prefix = labels.empty() ? "" : labels + ",";
  std::uint64_t cumulative = 0;
  for (std::size_t b = 0; b <= bounds_.size(); ++b) {
    cumulative += counts_[b].load(std::memory_order_relaxed);
    out.append(name).append("_bucket{").append(prefix).append("le=\"");
    if (b < bounds_.size())
      append_double(out, bounds_[b]);
    else
      out += "+Inf";
    out += "\"} " + std::to_string(cumulative) + "\n";
  }
  out += name + "_sum" + braces(labels) + " ";
  append_double(out, sum(), 15);  // a scraper subtracts two sums: keep every digit of a count
  out += "\n" + name + "_count" + braces(labels) + " " + std::to_string(cumulative) + "\n";
}

void Metrics::bind_routes(const std::vector<RouteName>& routes) {
  slots_.clear();
  for (const auto& route : routes) {
    auto slot = std::make_unique<Slot>();
    slot->route = route.pattern;
    slot->method = route.method;
    slots_.push_back(std::move(slot));
  }
  auto unmatched = std::make_unique<Slot>();
  unmatched->route = "unmatched";
  unmatched->method = "*";
  slots_.push_back(std::move(unmatched));
}

void Metrics::observe_request(std::size_t slot, unsigned status, double seconds) {
  if (slot >= slots_.size()) return;
  auto& s = *slots_[slot];
  if (status >= 100 && status < 600) s.by_status[status - 100].fetch_add(1, std::memory_order_relaxed);
  std::size_t b = 0;
  while (b < kLatencyBuckets.size() && seconds > kLatencyBuckets[b]) ++b;
  s.buckets[b].fetch_add(1, std::memory_order_relaxed);
  s.sum_micros.fetch_add(static_cast<std::uint64_t>(seconds * 1e6), std::memory_order_relaxed);
}

Counter& Metrics::counter(std::string name, std::string help, std::string labels) {
  std::lock_guard lock(mutex_);
  for (auto& c : counters_) {
    if (c.name == name && c.labels == labels) return c.metric;
  }
  return counters_.emplace_back(std::move(name), std::move(help), std::move(labels)).metric;
}

Gauge& Metrics::gauge(std::string name, std::string help, std::string labels) {
  std::lock_guard lock(mutex_);
  for (auto& g : gauges_) {
    if (g.name == name && g.labels == labels) return g.metric;
  }
  return gauges_.emplace_back(std::move(name), std::move(help), std::move(labels)).metric;
}

void Metrics::gauge_fn(std::string name, std::string help, std::function<double()> read) {
  std::lock_guard lock(mutex_);
  gauge_fns_.emplace_back(std::move(name), std::move(help), std::move(read));
}

void Metrics::counter_fn(std::string name, std::string help, std::function<double()> read) {
  std::lock_guard lock(mutex_);
  counter_fns_.emplace_back(std::move(name), std::move(help), std::move(read));
}

void Metrics::histogram(std::string name, std::string help, std::shared_ptr<const Histogram> histogram) {
  std::lock_guard lock(mutex_);
  histograms_.emplace_back(std::move(name), std::move(help), std::move(histogram));
}

std::string Metrics::render() const {
  std::string out;
  out.reserve(8192);
  std::set<std::string> seen;

  header(out, seen, "nimbus_http_requests_total", "HTTP requests by route, method and status.", "counter");
  for (const auto& s : slots_) {
    for (std::size_t i = 0; i < s->by_status.size(); ++i) {
      auto n = s->by_status[i].load(std::memory_order_relaxed);
      if (n == 0) continue;
      out += "nimbus_http_requests_total{route=\"" + s->route + "\",method=\"" + s->method + "\",status=\"" +
             std::to_string(i + 100) + "\"} " + std::to_string(n) + "\n";
    }
  }
  header(out, seen, "nimbus_http_request_duration_seconds", "HTTP request latency by route.", "histogram");
  for (const auto& s : slots_) {
    std::uint64_t cumulative = 0;
    std::string labels = "route=\"" + s->route + "\",method=\"" + s->method + "\"";
    for (std::size_t b = 0; b < s->buckets.size(); ++b) {
      cumulative += s->buckets[b].load(std::memory_order_relaxed);
      out += "nimbus_http_request_duration_seconds_bucket{" + labels + ",le=\"";
      if (b < kLatencyBuckets.size())
        append_double(out, kLatencyBuckets[b]);
      else
        out += "+Inf";
      out += "\"} " + std::to_string(cumulative) + "\n";
    }
    out += "nimbus_http_request_duration_seconds_sum{" + labels + "} ";
    append_double(out, static_cast<double>(s->sum_micros.load(std::memory_order_relaxed)) / 1e6);
    out += "\nnimbus_http_request_duration_seconds_count{" + labels + "} " + std::to_string(cumulative) + "\n";
  }
  header(out, seen, "nimbus_http_in_flight_requests", "Requests being handled now.", "gauge");
  out += "nimbus_http_in_flight_requests " + std::to_string(in_flight_.value()) + "\n";
  header(out, seen, "nimbus_http_open_connections", "Client connections open now.", "gauge");
  out += "nimbus_http_open_connections " + std::to_string(connections_.value()) + "\n";
  header(out, seen, "nimbus_http_connections_rejected_total", "Connections refused at the connection limit.",
         "counter");
  out += "nimbus_http_connections_rejected_total " + std::to_string(connections_rejected_.value()) + "\n";

  std::lock_guard lock(mutex_);
  for (const auto& c : counters_) {
    header(out, seen, c.name, c.help, "counter");
    out += c.name + braces(c.labels) + " " + std::to_string(c.metric.value()) + "\n";
  }
  for (const auto& g : gauges_) {
    header(out, seen, g.name, g.help, "gauge");
    out += g.name + braces(g.labels) + " " + std::to_string(g.metric.value()) + "\n";
  }
  for (const auto* fns : {&gauge_fns_, &counter_fns_}) {
    const char* type = fns == &gauge_fns_ ? "gauge" : "counter";
    for (const auto& [name, help, read] : *fns) {
      header(out, seen, name, help, type);
      out += name + " ";
      append_double(out, read());
      out += "\n";
    }
  }
  for (const auto& [name, help, histogram] : histograms_) {
    header(out, seen, name, help, "histogram");
    histogram->render(out, name);
  }
  return out;
}

}  // namespace nimbus::ops
