#include "runtime/watchdog.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdio>
#include <cstdlib>

#include "core/log.hpp"

namespace nimbus::runtime {

namespace asio = boost::asio;

// Shared with the timer's handlers, which may outlive the Watchdog by one tick.
struct Watchdog::Beat {
  explicit Beat(asio::io_context& ioc) : timer(ioc) {}
  asio::steady_timer timer;
  std::atomic<Clock::rep> last{Clock::now().time_since_epoch().count()};
  std::atomic<bool> stopped{false};
  std::chrono::milliseconds period{100};

  static void tick(const std::shared_ptr<Beat>& self) {
    self->last.store(Clock::now().time_since_epoch().count());
    if (self->stopped.load()) return;
    self->timer.expires_after(self->period);
    self->timer.async_wait([self](const boost::system::error_code& ec) {
      if (!ec) tick(self);
    });
  }
};

Watchdog::Watchdog(asio::io_context& ioc, std::chrono::milliseconds timeout, std::function<std::string()> describe,
                   OnStall on_stall)
    : timeout_(timeout),
      describe_(std::move(describe)),
      on_stall_(std::move(on_stall)),
      beat_(std::make_shared<Beat>(ioc)) {
  beat_->period = std::max(std::chrono::milliseconds(10), timeout_ / 10);
}

Watchdog::~Watchdog() {
  stop();
}

void Watchdog::start() {
  asio::post(beat_->timer.get_executor(), [beat = beat_] { Beat::tick(beat); });
  thread_ = std::thread([this] { watch(); });
}

void Watchdog::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  beat_->stopped.store(true);
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Watchdog::watch() {
  std::unique_lock lock(mutex_);
  while (!wake_.wait_for(lock, beat_->period, [this] { return stopping_; })) {
    const auto last = Clock::time_point(Clock::duration(beat_->last.load()));
    const auto stalled = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - last);
    if (stalled <= timeout_) continue;
    const auto in_flight = describe_ ? describe_() : std::string();
    if (on_stall_) {
      on_stall_(stalled, in_flight);
      beat_->last.store(Clock::now().time_since_epoch().count());  // once per stall
      continue;
    }
    // The info lines still buffered explain the stall: out first, unless the stuck
    // thread holds the stream. Then this line straight to stderr, synchronously.
    log::flush_if_free();
    const auto line = log::format(log::Level::error, "event loop stuck: aborting",
                                  {{"stalled_ms", stalled.count()}, {"in_flight", in_flight}});
    std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
    std::abort();
  }
}

}  // namespace nimbus::runtime
