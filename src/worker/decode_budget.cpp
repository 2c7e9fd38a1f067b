#include "worker/decode_budget.hpp"

#include <algorithm>

namespace nimbus::worker {

DecodeBudget::Lease::~Lease() {
  if (budget_ != nullptr) budget_->release(bytes_);
}

std::optional<DecodeBudget::Lease> DecodeBudget::acquire(std::uint64_t bytes) {
  bytes = std::min(bytes, capacity_);
  std::unique_lock lock(mutex_);
  const auto ticket = next_ticket_++;
  ++waiting_;
  changed_.wait(lock, [&] { return cancelled_ || (serving_ == ticket && in_use_ + bytes <= capacity_); });
  --waiting_;
  if (cancelled_) {
    // Our turn may have come with the cancel: pass it on, or the next in line waits on it.
    if (serving_ == ticket) ++serving_;
    changed_.notify_all();
    return std::nullopt;
  }
  ++serving_;
  in_use_ += bytes;
  changed_.notify_all();  // the next in line may fit too
  return Lease(this, bytes);
}

void DecodeBudget::release(std::uint64_t bytes) {
  {
    std::lock_guard lock(mutex_);
    in_use_ -= bytes;
  }
  changed_.notify_all();
}

void DecodeBudget::cancel() {
  {
    std::lock_guard lock(mutex_);
    cancelled_ = true;
  }
  changed_.notify_all();
}

std::uint64_t DecodeBudget::in_use() const {
  std::lock_guard lock(mutex_);
  return in_use_;
}

int DecodeBudget::waiting() const {
  std::lock_guard lock(mutex_);
  return waiting_;
}

}  // namespace nimbus::worker
