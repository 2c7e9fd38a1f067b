#include "core/clock.hpp"

namespace nimbus::core {

namespace {

class RealClock final : public Clock {
 public:
  std::chrono::system_clock::time_point system_now() const override { return std::chrono::system_clock::now(); }
  std::chrono::steady_clock::time_point steady_now() const override { return std::chrono::steady_clock::now(); }
};

}  // namespace

std::shared_ptr<const Clock> Clock::system() {
  static const auto real = std::make_shared<const RealClock>();
  return real;
}

}  // namespace nimbus::core
