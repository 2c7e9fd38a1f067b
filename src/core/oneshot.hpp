// A value handed from any thread to one waiting coroutine, with a deadline.
//
// Built on Asio's concurrent_channel (thread-safe, capacity 1), so set() may run
// before, during or after the wait without a race or a lost wake-up.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <optional>

namespace nimbus {

template <typename T>
class OneShot {
 public:
  explicit OneShot(boost::asio::any_io_executor executor) : channel_(std::move(executor), 1) {}

  // Returns false if a value was already set.
  bool set(T value) { return channel_.try_send(boost::system::error_code{}, std::move(value)); }

  // The value, or nullopt when `deadline` passes first.
  boost::asio::awaitable<std::optional<T>> wait_until(std::chrono::steady_clock::time_point deadline) {
    using namespace boost::asio::experimental::awaitable_operators;
    boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, deadline);
    auto outcome = co_await (channel_.async_receive(boost::asio::as_tuple(boost::asio::use_awaitable)) ||
                             timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable)));
    if (outcome.index() == 0) {
      auto [ec, value] = std::get<0>(std::move(outcome));
      if (!ec) co_return std::optional<T>(std::move(value));
    }
    co_return std::nullopt;
  }

  // A value already set (after a timeout raced with set()).
  std::optional<T> take_now() {
    std::optional<T> out;
    channel_.try_receive([&out](boost::system::error_code ec, T value) {
      if (!ec) out = std::move(value);
    });
    return out;
  }

 private:
  boost::asio::experimental::concurrent_channel<void(boost::system::error_code, T)> channel_;
};

}  // namespace nimbus
