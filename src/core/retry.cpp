#include "core/retry.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/log.hpp"
#include "core/random.hpp"

namespace nimbus {

namespace asio = boost::asio;

asio::awaitable<void> retry_until_done(std::string what, std::function<asio::awaitable<void>()> attempt) {
  std::chrono::milliseconds backoff{250};
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    try {
      co_await attempt();
      co_return;
    } catch (const std::exception& e) {
      log::warn("start-up step failed; retrying", {{"step", what}, {"error", e.what()}, {"retry_ms", backoff.count()}});
    }
    timer.expires_after(backoff / 2 + random::jitter(backoff / 2));
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;  // shutting down
    backoff = std::min(backoff * 2, std::chrono::milliseconds(5'000));
  }
}

}  // namespace nimbus
