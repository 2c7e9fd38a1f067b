// Structured logging: one JSON object per line on stdout.
//
// Each line carries ts, level, service, instance and msg, plus the caller's fields
// (request_id above all). Lines are formatted on the calling thread into the stream's
// 64 KiB buffer, written out when it fills, every second, and at once from a warning up:
// a request costs no write(2) of its own.
#pragma once

#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <string>
#include <string_view>
#include <variant>

namespace nimbus::log {

enum class Level { debug, info, warn, error };

using Value = std::variant<std::string_view, std::int64_t, double, bool>;
struct Field {
  std::string_view key;
  Value value;
  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const std::string& v) : key(k), value(std::string_view(v)) {}
  Field(std::string_view k, const char* v) : key(k), value(std::string_view(v)) {}
  Field(std::string_view k, bool v) : key(k), value(v) {}
  Field(std::string_view k, double v) : key(k), value(v) {}
  template <typename I>
  requires std::is_integral_v<I> Field(std::string_view k, I v) : key(k), value(static_cast<std::int64_t>(v)) {}
};
using Fields = std::initializer_list<Field>;

struct Options {
  std::string service;
  std::string instance;
  Level level = Level::info;
  // Where lines go (a test's pipe); before any other use of the stream.
  std::FILE* out = stdout;
};

// Call once from main before any other thread logs.
void init(const Options& options);
// Flushes what is buffered and stops the periodic flush; call last, before exit.
void shutdown();
// Writes out what is buffered unless another thread is writing to the stream right
// now (never waits): for a process about to abort.
void flush_if_free();

Level parse_level(std::string_view text);  // throws std::invalid_argument
bool enabled(Level level);
void write(Level level, std::string_view msg, Fields fields = {});

// The JSON line for a record, without trailing newline; exposed for tests.
std::string format(Level level, std::string_view msg, Fields fields);

inline void debug(std::string_view msg, Fields f = {}) {
  write(Level::debug, msg, f);
}
inline void info(std::string_view msg, Fields f = {}) {
  write(Level::info, msg, f);
}
inline void warn(std::string_view msg, Fields f = {}) {
  write(Level::warn, msg, f);
}
inline void error(std::string_view msg, Fields f = {}) {
  write(Level::error, msg, f);
}

}  // namespace nimbus::log
