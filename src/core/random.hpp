// Randomness from the operating system's CSPRNG (getrandom), safe on any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace nimbus::random {

void fill(std::span<std::uint8_t> out);
// n random bytes as lowercase hex (2n characters).
std::string hex(std::size_t n);

}  // namespace nimbus::random
