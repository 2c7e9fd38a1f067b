// The bytes this worker's decodes may hold at once: a counting semaphore in bytes.
// A job takes its decode's estimated cost (images::decode_cost) before decoding and
// gives it back after; one that does not fit waits for the decodes running to end,
// rather than decoding beside them — two large decodes in one process do not add up
// past the budget (docs/adr/0010). A cost above the whole budget takes all of it (the
// worker refuses those before asking; this keeps any cost from waiting forever).
//
// Blocking: called on the consumer threads (one job each), never on the io_context.
// Fair in arrival order: a large decode waiting is not overtaken by smaller ones
// without end.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <utility>

namespace nimbus::worker {

class DecodeBudget {
 public:
  explicit DecodeBudget(std::uint64_t capacity) : capacity_(capacity) {}

  // Held bytes, given back when it goes.
  class Lease {
   public:
    Lease(Lease&& other) noexcept : budget_(std::exchange(other.budget_, nullptr)), bytes_(other.bytes_) {}
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    std::uint64_t bytes() const { return bytes_; }

   private:
    friend class DecodeBudget;
    Lease(DecodeBudget* budget, std::uint64_t bytes) : budget_(budget), bytes_(bytes) {}
    DecodeBudget* budget_;
    std::uint64_t bytes_;
  };

  // Waits until `bytes` (at most the capacity) are free; nullopt once cancel() was called.
  std::optional<Lease> acquire(std::uint64_t bytes);
  // Wakes every waiter with nullopt, now and from now on (shutdown).
  void cancel();

  std::uint64_t capacity() const { return capacity_; }
  std::uint64_t in_use() const;
  int waiting() const;

 private:
  void release(std::uint64_t bytes);

  const std::uint64_t capacity_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::uint64_t in_use_ = 0;
  std::uint64_t next_ticket_ = 0, serving_ = 0;  // arrival order
  int waiting_ = 0;
  bool cancelled_ = false;
};

}  // namespace nimbus::worker
