#include "core/log.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <memory>
#include <mutex>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>
#include <stdexcept>
#include <vector>

namespace nimbus::log {
namespace {

struct State {
  std::string service = "nimbus";
  std::string instance;
  Level level = Level::info;
  std::shared_ptr<spdlog::logger> logger;
  std::FILE* out = nullptr;  // where lines go, from init() on
};

// Lines into a stdio stream's buffer, which reaches the file when full, at flush() (every
// second, and at once from a warning up) and at exit. spdlog's own stdout sink flushes
// after every line: one write(2) per request, and on the local stack a wake-up of the
// supervisor that copies the pipe to the log file.
class BufferedSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit BufferedSink(std::FILE* out) : out_(out) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    std::fwrite(msg.payload.data(), 1, msg.payload.size(), out_);
    std::fputc('\n', out_);
  }
  void flush_() override { std::fflush(out_); }

 private:
  std::FILE* out_;
};

spdlog::level::level_enum spdlog_level(Level level) {
  switch (level) {
    case Level::debug:
      return spdlog::level::debug;
    case Level::info:
      return spdlog::level::info;
    case Level::warn:
      return spdlog::level::warn;
    case Level::error:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

// The buffers given to setvbuf, one per init() (which a process calls once). Never
// freed, and reachable to the end: the stream may use its buffer until the process
// exits, after every static destructor has run.
std::vector<std::unique_ptr<char[]>>& stream_buffers() {
  static auto* kept = new std::vector<std::unique_ptr<char[]>>();  // NOLINT(cppcoreguidelines-owning-memory)
  return *kept;
}

State& state() {
  static State s;
  return s;
}

std::string_view level_name(Level level) {
  switch (level) {
    case Level::debug:
      return "debug";
    case Level::info:
      return "info";
    case Level::warn:
      return "warn";
    case Level::error:
      return "error";
  }
  return "info";
}

void append_string(std::string& out, std::string_view s) {
  out += boost::json::serialize(boost::json::string_view(s.data(), s.size()));
}

void append_double(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  out += buf;
}

void append_timestamp(std::string& out) {
  using namespace std::chrono;
  auto now = system_clock::now();
  auto secs = time_point_cast<seconds>(now);
  auto micros = duration_cast<microseconds>(now - secs).count();
  std::time_t t = system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long>(micros));
  out += '"';
  out += buf;
  out += '"';
}

}  // namespace

Level parse_level(std::string_view text) {
  if (text == "debug") return Level::debug;
  if (text == "info") return Level::info;
  if (text == "warn" || text == "warning") return Level::warn;
  if (text == "error") return Level::error;
  throw std::invalid_argument("unknown log level");
}

void init(const Options& options) {
  auto& s = state();
  s.service = options.service;
  s.instance = options.instance;
  s.level = options.level;
  // Lines go into the stream's buffer on the calling thread and reach the pipe in 64 KiB
  // writes, every second, or at once from a warning up — as nginx buffers its access
  // log. A line per write(2), or a hand-off to a logging thread per line, cost an API
  // instance more CPU than a cached read (a wake-up and a context switch per request on
  // 2 cores). A process killed outright loses at most its last second of info lines.
  constexpr std::size_t kBuffer = 64 * 1024;
  auto& buffer = stream_buffers().emplace_back(std::make_unique<char[]>(kBuffer));
  std::setvbuf(options.out, buffer.get(), _IOFBF, kBuffer);
  s.out = options.out;
  s.logger = std::make_shared<spdlog::logger>("nimbus", std::make_shared<BufferedSink>(options.out));
  s.logger->set_level(spdlog::level::trace);
  s.logger->flush_on(spdlog::level::warn);
  spdlog::register_logger(s.logger);
  spdlog::flush_every(std::chrono::seconds(1));
}

void shutdown() {
  auto& s = state();
  if (s.logger) s.logger->flush();
  s.logger.reset();
  spdlog::shutdown();  // stops the periodic flush, and drops the registered logger
}

void flush_if_free() {
  auto* out = state().out;
  if (out == nullptr || ::ftrylockfile(out) != 0) return;
  ::fflush_unlocked(out);
  ::funlockfile(out);
}

bool enabled(Level level) {
  return level >= state().level;
}

std::string format(Level level, std::string_view msg, Fields fields) {
  const auto& s = state();
  std::string line;
  line.reserve(160 + msg.size() + fields.size() * 24);
  line += "{\"ts\":";
  append_timestamp(line);
  line += ",\"level\":\"";
  line += level_name(level);
  line += "\",\"service\":";
  append_string(line, s.service);
  if (!s.instance.empty()) {
    line += ",\"instance\":";
    append_string(line, s.instance);
  }
  line += ",\"msg\":";
  append_string(line, msg);
  for (const auto& f : fields) {
    line += ',';
    append_string(line, f.key);
    line += ':';
    std::visit(
        [&line](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::string_view>)
            append_string(line, v);
          else if constexpr (std::is_same_v<T, bool>)
            line += v ? "true" : "false";
          else if constexpr (std::is_same_v<T, double>)
            append_double(line, v);
          else
            line += std::to_string(v);
        },
        f.value);
  }
  line += '}';
  return line;
}

void write(Level level, std::string_view msg, Fields fields) {
  if (!enabled(level)) return;
  auto line = format(level, msg, fields);
  auto& s = state();
  if (s.logger) {
    s.logger->log(spdlog_level(level), line);
  } else {
    std::fputs(line.c_str(), stderr);
    std::fputc('\n', stderr);
  }
}

}  // namespace nimbus::log
