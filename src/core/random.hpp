// Randomness from the operating system's CSPRNG (getrandom), safe on any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace nimbus::random {

void fill(std::span<std::uint8_t> out);
// n random bytes as lowercase hex (2n characters).
std::string hex(std::size_t n);

// A uniformly random duration in [0, max], for jittered backoff. A plain function on
// purpose: its thread_local engine must not be touched from a coroutine frame, which
// may resume on another thread with a stale thread-local address.
std::chrono::milliseconds jitter(std::chrono::milliseconds max);

}  // namespace nimbus::random
