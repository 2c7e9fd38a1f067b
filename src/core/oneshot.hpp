// A value handed from any thread to one waiting coroutine, with a deadline.
//
// Built on Asio's concurrent_channel (thread-safe, capacity 1), so set() may run
// before, during or after the wait without a race or a lost wake-up. The deadline is a
// timer that cancels the wait, not an awaitable-operators race: this is on the path of
// every Redis command and every vote, and `a || b` costs two spawned coroutines and a
// shared cancellation state per wait.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <memory>
#include <optional>

namespace nimbus {

template <typename T>
class OneShot {
 public:
  explicit OneShot(boost::asio::any_io_executor executor)
      : channel_(std::make_shared<Channel>(std::move(executor), 1)) {}

  // Returns false if a value was already set.
  bool set(T value) { return channel_->try_send(boost::system::error_code{}, std::move(value)); }

  // The value, or nullopt when `deadline` passes first.
  boost::asio::awaitable<std::optional<T>> wait_until(std::chrono::steady_clock::time_point deadline) {
    boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, deadline);
    // The timer's handler may run after this wait has ended (it fired just as the value
    // came): it holds the channel, and cancelling a channel nobody waits on does nothing.
    timer.async_wait([channel = channel_](boost::system::error_code ec) {
      if (!ec) channel->cancel();
    });
    auto [ec, value] = co_await channel_->async_receive(boost::asio::as_tuple(boost::asio::use_awaitable));
    timer.cancel();
    if (!ec) co_return std::optional<T>(std::move(value));
    co_return std::nullopt;
  }

  // A value already set (after a timeout raced with set()).
  std::optional<T> take_now() {
    std::optional<T> out;
    channel_->try_receive([&out](boost::system::error_code ec, T value) {
      if (!ec) out = std::move(value);
    });
    return out;
  }

 private:
  using Channel = boost::asio::experimental::concurrent_channel<void(boost::system::error_code, T)>;
  std::shared_ptr<Channel> channel_;
};

}  // namespace nimbus
