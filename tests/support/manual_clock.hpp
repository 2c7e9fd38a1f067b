// A clock that stands still until a test moves it, for services that take a
// core::Clock. Wall and monotonic time move together: advance() adds the same amount
// to both; set() places the wall time and leaves the monotonic one alone (monotonic
// time never jumps back, as the real one does not).
#pragma once

#include <chrono>
#include <memory>
#include <mutex>

#include "core/clock.hpp"

namespace nimbus::test {

class ManualClock final : public core::Clock {
 public:
  explicit ManualClock(std::chrono::system_clock::time_point start = std::chrono::system_clock::now())
      : system_(start) {}

  static std::shared_ptr<ManualClock> at(std::chrono::system_clock::time_point start) {
    return std::make_shared<ManualClock>(start);
  }

  std::chrono::system_clock::time_point system_now() const override {
    std::lock_guard lock(mutex_);
    return system_;
  }
  std::chrono::steady_clock::time_point steady_now() const override {
    std::lock_guard lock(mutex_);
    return steady_;
  }

  void set(std::chrono::system_clock::time_point t) {
    std::lock_guard lock(mutex_);
    system_ = t;
  }
  template <typename Rep, typename Period>
  void advance(std::chrono::duration<Rep, Period> by) {
    std::lock_guard lock(mutex_);
    system_ += std::chrono::duration_cast<std::chrono::system_clock::duration>(by);
    steady_ += std::chrono::duration_cast<std::chrono::steady_clock::duration>(by);
  }

 private:
  mutable std::mutex mutex_;
  std::chrono::system_clock::time_point system_;
  // Not the real steady time: nothing may compare it with the real clock.
  std::chrono::steady_clock::time_point steady_{std::chrono::hours(1)};
};

// Whole seconds of `t` since the epoch.
inline std::int64_t unix_of(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

}  // namespace nimbus::test
