// The time a service decides by, injected so that tests can set it.
//
// Every service reads "now" through a Clock it received in its constructor (the real
// one, Clock::system(), unless a test hands it a manual one). Only decisions go through
// it: a token's iat/exp, a rate-limit window, how long a cache entry is fresh, which
// marks are recent. Two kinds of time stay outside it, on purpose:
// - Deadlines of real waits (asio timers, wait_until on a coroutine's result): they
//   measure time the process actually spends, which a manual clock cannot make pass.
// - `now()` in SQL: the database's clock is the one source of truth every instance
//   shares (reservations, sessions, leases), so it stays in the queries.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

namespace nimbus::core {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall time: timestamps others see (tokens, URLs, Redis scores).
  virtual std::chrono::system_clock::time_point system_now() const = 0;
  // Monotonic time: intervals measured within this process (cache ages).
  virtual std::chrono::steady_clock::time_point steady_now() const = 0;

  // The process-wide real clock (std::chrono's clocks); safe from any thread.
  static std::shared_ptr<const Clock> system();
};

// Seconds since the epoch by `clock`'s wall time.
inline std::int64_t unix_seconds(const Clock& clock) {
  return std::chrono::duration_cast<std::chrono::seconds>(clock.system_now().time_since_epoch()).count();
}

}  // namespace nimbus::core
