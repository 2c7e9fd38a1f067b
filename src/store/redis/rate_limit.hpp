// Fixed one-minute windows counted in Redis, shared by every instance: the per-IP limits
// of sign-in (auth) and the per-user limits on creating polls, voting and uploading.
//
// A window is the clock's minute; its counter's key ends in the minute's number and
// expires with it, so nothing is kept past it. A burst across a boundary may see up to
// twice the limit within sixty seconds: the price of one INCR per request.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/clock.hpp"
#include "store/redis/client.hpp"

namespace nimbus::redis {

// The window at `now`: its number (part of the counter's key) and the time left in it
// (a refusal's Retry-After).
struct RateWindow {
  std::int64_t minute = 0;
  std::chrono::seconds left{0};
};
RateWindow rate_window(std::chrono::system_clock::time_point now);

// Thread-safety: as the client's (any thread).
class RateLimiter {
 public:
  explicit RateLimiter(std::shared_ptr<Client> redis, std::shared_ptr<const core::Clock> clock = core::Clock::system())
      : redis_(std::move(redis)), clock_(std::move(clock)) {}

  // Counts one request under `key` in the current window: nullopt while the count is
  // within `limit`, else the time left in the window. Throws DependencyUnavailable when
  // Redis is away (the request fails closed, 503, like the others that need Redis).
  boost::asio::awaitable<std::optional<std::chrono::seconds>> hit(std::string key, int limit);

 private:
  std::shared_ptr<Client> redis_;
  std::shared_ptr<const core::Clock> clock_;
};

}  // namespace nimbus::redis
