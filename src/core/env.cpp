#include "core/env.hpp"

#include <charconv>
#include <cstdlib>
#include <limits>

namespace nimbus::env {
namespace {

std::optional<std::uint64_t> parse_unsigned(std::string_view text, std::string_view& rest) {
  std::uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || ptr == text.data()) return std::nullopt;
  rest = text.substr(static_cast<std::size_t>(ptr - text.data()));
  return value;
}

[[noreturn]] void fail(std::string_view name, std::string_view value, std::string_view expected) {
  throw ConfigError(std::string(name) + "=\"" + std::string(value) + "\" is invalid: expected " +
                    std::string(expected));
}

}  // namespace

std::optional<std::string> raw(std::string_view name) {
  const char* value = std::getenv(std::string(name).c_str());
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

std::string string(std::string_view name, std::string_view fallback) {
  return raw(name).value_or(std::string(fallback));
}

std::string required_string(std::string_view name) {
  auto value = raw(name);
  if (!value) throw ConfigError(std::string(name) + " is required but not set");
  return *value;
}

std::int64_t integer(std::string_view name, std::int64_t fallback, std::int64_t min, std::int64_t max) {
  auto value = raw(name);
  if (!value) return fallback;
  std::int64_t parsed = 0;
  auto [ptr, ec] = std::from_chars(value->data(), value->data() + value->size(), parsed);
  if (ec != std::errc{} || ptr != value->data() + value->size() || parsed < min || parsed > max) {
    fail(name, *value, "an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  return parsed;
}

bool boolean(std::string_view name, bool fallback) {
  auto value = raw(name);
  if (!value) return fallback;
  if (*value == "1" || *value == "true" || *value == "yes" || *value == "on") return true;
  if (*value == "0" || *value == "false" || *value == "no" || *value == "off") return false;
  fail(name, *value, "one of 1/0, true/false, yes/no, on/off");
}

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  std::string_view unit;
  auto value = parse_unsigned(text, unit);
  if (!value) return std::nullopt;
  std::uint64_t factor = 0;
  if (unit.empty() || unit == "ms")
    factor = 1;
  else if (unit == "s")
    factor = 1000;
  else if (unit == "m")
    factor = 60'000;
  else if (unit == "h")
    factor = 3'600'000;
  else
    return std::nullopt;
  if (*value > std::numeric_limits<std::int64_t>::max() / factor) return std::nullopt;
  return std::chrono::milliseconds(static_cast<std::int64_t>(*value * factor));
}

std::optional<std::size_t> parse_bytes(std::string_view text) {
  std::string_view unit;
  auto value = parse_unsigned(text, unit);
  if (!value) return std::nullopt;
  std::uint64_t factor = 0;
  if (unit.empty())
    factor = 1;
  else if (unit == "k" || unit == "K")
    factor = 1024;
  else if (unit == "m" || unit == "M")
    factor = 1024 * 1024;
  else if (unit == "g" || unit == "G")
    factor = 1024ULL * 1024 * 1024;
  else
    return std::nullopt;
  if (*value > std::numeric_limits<std::size_t>::max() / factor) return std::nullopt;
  return static_cast<std::size_t>(*value * factor);
}

std::chrono::milliseconds duration(std::string_view name, std::chrono::milliseconds fallback) {
  auto value = raw(name);
  if (!value) return fallback;
  auto parsed = parse_duration(*value);
  if (!parsed) fail(name, *value, "a duration such as 250ms, 5s, 2m or 1h");
  return *parsed;
}

std::size_t bytes(std::string_view name, std::size_t fallback) {
  auto value = raw(name);
  if (!value) return fallback;
  auto parsed = parse_bytes(*value);
  if (!parsed) fail(name, *value, "a size such as 512, 64k, 16m or 1g");
  return *parsed;
}

}  // namespace nimbus::env
