#include "ops/readiness.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/log.hpp"

namespace nimbus::ops {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;

void Readiness::add_check(std::string name, Check check) {
  checks_.emplace_back(std::move(name), std::move(check));
}

asio::awaitable<Readiness::Report> Readiness::report() {
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mutex_);
    // A failing result is kept only briefly, so an instance that just came up (its
    // clients still connecting) turns ready within a tenth of a second, not a TTL later.
    const auto ttl = cached_.ready ? ttl_ : std::min<std::chrono::milliseconds>(ttl_, std::chrono::milliseconds(100));
    if (checked_at_ != std::chrono::steady_clock::time_point{} && now - checked_at_ < ttl) {
      Report r = cached_;
      r.draining = draining();
      r.ready = r.ready && !r.draining;
      co_return r;
    }
  }
  Report fresh;
  fresh.ready = true;
  for (const auto& [name, check] : checks_) {
    bool ok = false;
    try {
      asio::steady_timer deadline(co_await asio::this_coro::executor, check_timeout_);
      auto outcome = co_await (check() || deadline.async_wait(asio::as_tuple(asio::use_awaitable)));
      ok = outcome.index() == 0 && std::get<0>(outcome);
    } catch (const std::exception& e) {
      log::warn("readiness check failed", {{"check", name}, {"error", e.what()}});
    }
    fresh.checks.emplace_back(name, ok);
    fresh.ready = fresh.ready && ok;
  }
  {
    std::lock_guard lock(mutex_);
    cached_ = fresh;
    checked_at_ = std::chrono::steady_clock::now();
  }
  fresh.draining = draining();
  fresh.ready = fresh.ready && !fresh.draining;
  co_return fresh;
}

}  // namespace nimbus::ops
