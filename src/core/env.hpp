// Typed reads of configuration from environment variables (12-factor).
//
// Every reader validates its variable and throws ConfigError naming it, so a bad deploy
// fails at start-up with one clear line instead of misbehaving later.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace nimbus::env {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The raw value, or nullopt when unset. An empty value counts as unset.
std::optional<std::string> raw(std::string_view name);

std::string string(std::string_view name, std::string_view fallback);
std::string required_string(std::string_view name);
std::int64_t integer(std::string_view name, std::int64_t fallback, std::int64_t min, std::int64_t max);
bool boolean(std::string_view name, bool fallback);
// Accepts "250ms", "5s", "2m", "1h" or a bare number of milliseconds.
std::chrono::milliseconds duration(std::string_view name, std::chrono::milliseconds fallback);
// Accepts "512", "64k", "16m", "1g" (powers of 1024).
std::size_t bytes(std::string_view name, std::size_t fallback);

// Parsers used by the readers above; exposed for unit tests.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);
std::optional<std::size_t> parse_bytes(std::string_view text);

}  // namespace nimbus::env
