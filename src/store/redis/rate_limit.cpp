#include "store/redis/rate_limit.hpp"

#include <vector>

namespace nimbus::redis {

namespace {

// Fixed-window counter; the first hit of a window sets its expiry.
const Script kRateLimit(R"(
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n)");

}  // namespace

RateWindow rate_window(std::chrono::system_clock::time_point now) {
  const auto t = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  return {t / 60, std::chrono::seconds(60 - t % 60)};
}

boost::asio::awaitable<std::optional<std::chrono::seconds>> RateLimiter::hit(std::string key, int limit) {
  // One reading of the clock: the refusal's Retry-After belongs to the window counted.
  const auto window = rate_window(clock_->system_now());
  std::vector<std::string> keys{std::move(key) + ":" + std::to_string(window.minute)};
  std::vector<std::string> args{"60"};  // (named: GCC 12 fails on a braced list inside co_await)
  auto n = co_await redis_->eval(kRateLimit, std::move(keys), std::move(args));
  if (n.as_integer() <= limit) co_return std::nullopt;
  co_return window.left;
}

}  // namespace nimbus::redis
