#include "core/retry.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <random>

#include "core/log.hpp"

namespace nimbus {

namespace asio = boost::asio;

asio::awaitable<void> retry_until_done(std::string what, std::function<asio::awaitable<void>()> attempt) {
  thread_local std::minstd_rand rng{std::random_device{}()};
  std::chrono::milliseconds backoff{250};
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    try {
      co_await attempt();
      co_return;
    } catch (const std::exception& e) {
      log::warn("start-up step failed; retrying", {{"step", what}, {"error", e.what()}, {"retry_ms", backoff.count()}});
    }
    timer.expires_after(backoff / 2 +
                        std::chrono::milliseconds(std::uniform_int_distribution<long>(0, backoff.count() / 2)(rng)));
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;  // shutting down
    backoff = std::min(backoff * 2, std::chrono::milliseconds(5'000));
  }
}

}  // namespace nimbus
