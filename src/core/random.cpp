#include "core/random.hpp"

#include <cerrno>
#include <random>
#include <stdexcept>
#include <sys/random.h>
#include <vector>

#include "core/hex.hpp"

namespace nimbus::random {

void fill(std::span<std::uint8_t> out) {
  std::size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::getrandom(out.data() + done, out.size() - done, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("getrandom failed");
    }
    done += static_cast<std::size_t>(n);
  }
}

std::string hex(std::size_t n) {
  std::vector<std::uint8_t> bytes(n);
  fill(bytes);
  return to_hex(bytes.data(), bytes.size());
}

std::chrono::milliseconds jitter(std::chrono::milliseconds max) {
  thread_local std::minstd_rand rng{static_cast<std::uint_fast32_t>(std::random_device{}() | 1U)};
  if (max.count() <= 0) return std::chrono::milliseconds(0);
  return std::chrono::milliseconds(std::uniform_int_distribution<long>(0, static_cast<long>(max.count()))(rng));
}

}  // namespace nimbus::random
