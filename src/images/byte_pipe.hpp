// A bounded byte pipe from a coroutine (the request body) to a blocking reader (the S3
// client's upload thread), so an upload moves through memory in small pieces.
//
// The writer awaits room without blocking its event loop: the reader rings a one-slot
// channel whenever it takes bytes. The reader blocks on a condition variable. Either
// side may end it: close() is a normal end, abort() makes the reader fail the upload.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>

namespace nimbus::images {

class BytePipe {
 public:
  static constexpr std::size_t kAborted = static_cast<std::size_t>(-1);

  BytePipe(boost::asio::any_io_executor executor, std::size_t capacity)
      : room_(std::move(executor), 1), capacity_(capacity) {}

  // Waits for room, then queues `bytes`. False if the reader has gone (aborted).
  boost::asio::awaitable<bool> write(std::string bytes) {
    using namespace boost::asio::experimental::awaitable_operators;
    for (;;) {
      {
        std::lock_guard lock(mutex_);
        if (aborted_) co_return false;
        if (buffered_ < capacity_) {
          buffered_ += bytes.size();
          chunks_.push_back(std::move(bytes));
          readable_.notify_one();
          co_return true;
        }
      }
      // A timer bounds the wait so that a lost ring can only delay, never hang.
      boost::asio::steady_timer tick(co_await boost::asio::this_coro::executor, std::chrono::milliseconds(200));
      co_await (room_.async_receive(boost::asio::as_tuple(boost::asio::use_awaitable)) ||
                tick.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable)));
    }
  }

  void close() {
    std::lock_guard lock(mutex_);
    closed_ = true;
    readable_.notify_all();
  }
  void abort() {
    std::lock_guard lock(mutex_);
    aborted_ = true;
    readable_.notify_all();
  }

  // Blocking: up to `size` bytes into `buf`; 0 at the end, kAborted if aborted or if
  // the writer stalls past `stall`.
  std::size_t read(char* buf, std::size_t size, std::chrono::milliseconds stall) {
    std::unique_lock lock(mutex_);
    if (!readable_.wait_for(lock, stall, [this] { return aborted_ || closed_ || !chunks_.empty(); })) {
      aborted_ = true;
      return kAborted;
    }
    if (aborted_) return kAborted;
    std::size_t done = 0;
    while (done < size && !chunks_.empty()) {
      auto& front = chunks_.front();
      const auto take = std::min(size - done, front.size() - offset_);
      std::memcpy(buf + done, front.data() + offset_, take);
      done += take;
      offset_ += take;
      if (offset_ == front.size()) {
        buffered_ -= front.size();
        chunks_.pop_front();
        offset_ = 0;
      }
    }
    lock.unlock();
    room_.try_send(boost::system::error_code{});
    return done;
  }

 private:
  boost::asio::experimental::concurrent_channel<void(boost::system::error_code)> room_;
  std::mutex mutex_;
  std::condition_variable readable_;
  std::deque<std::string> chunks_;
  std::size_t offset_ = 0, buffered_ = 0, capacity_;
  bool closed_ = false, aborted_ = false;
};

}  // namespace nimbus::images
