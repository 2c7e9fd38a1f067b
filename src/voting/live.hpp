// Live results: one Redis subscription per watched poll per instance, fanned out to
// every stream open on this instance.
//
// A vote on any instance publishes on the poll's channel (see tally.hpp). Here a
// message marks the poll changed; at most one refresh per poll per `coalesce` interval
// reads the results once and hands the same bytes to every watcher, so a burst of a
// thousand votes costs each stream a few events a second and Redis/PostgreSQL one read
// per interval, however many streams are open. Watchers hold only the latest state
// (a slow one skips to it; it never queues stale ones). After a Redis reconnect every
// watched poll is refreshed, since pub/sub loses messages sent while disconnected.
//
// Thread-safety: every member may be called from any thread.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "core/clock.hpp"
#include "store/redis/client.hpp"

namespace nimbus::voting {

struct LiveConfig {
  std::chrono::milliseconds coalesce{250};
  std::chrono::milliseconds heartbeat{15'000};
  // Open streams per user, over all instances.
  int streams_per_user = 8;

  // NIMBUS_LIVE_COALESCE, NIMBUS_LIVE_HEARTBEAT, NIMBUS_LIVE_STREAMS_PER_USER.
  static LiveConfig from_env();
};

// One open stream's view of a poll: the latest results, a doorbell, and a close flag.
//
// next() waits on the doorbell alone. Its deadline is a timer that rings the same bell,
// armed once per deadline (a heartbeat apart) rather than once per wait: with ten
// thousand streams woken several times a second, arming and cancelling a timer, or
// racing two operations, on every wake-up cost more than the write each one leads to.
// The timer's handler holds the bell, not the watcher, so a watcher may go while its
// timer is still armed.
class Watcher {
 public:
  explicit Watcher(const boost::asio::any_io_executor& executor)
      : bell_(std::make_shared<Bell>(executor, 1)), timer_(executor) {}

  struct Event {
    enum class Kind { update, timeout, closed } kind;
    // An update's bytes as every stream of the poll sends them (a results event), shared
    // by all of them: rendered once per refresh, never copied per stream.
    std::shared_ptr<const std::string> data;
  };
  // The next update, or timeout after `wait`, or closed (server stopping).
  boost::asio::awaitable<Event> next(std::chrono::milliseconds wait);

  void offer(std::shared_ptr<const std::string> latest);
  void close();

 private:
  using Bell = boost::asio::experimental::concurrent_channel<void(boost::system::error_code)>;
  // A deadline may be kept this much late rather than re-armed: the waits a stream asks
  // for end at the same instant give or take the millisecond it rounds them to.
  static constexpr std::chrono::milliseconds kSlack{5};

  std::shared_ptr<Bell> bell_;
  // Touched only by next(), one call at a time (the stream's strand).
  boost::asio::steady_timer timer_;
  std::chrono::steady_clock::time_point armed_{};  // when timer_ rings; past: not armed
  std::mutex mutex_;
  std::shared_ptr<const std::string> latest_;
  bool closed_ = false;
};

// One server-sent event: `event: <name>` and its data line, then the blank line.
std::string sse_event(std::string_view name, std::string_view data);

class LiveResults : public std::enable_shared_from_this<LiveResults> {
 public:
  // Reads a poll's current results as JSON (nullopt: the poll is gone).
  using Reader = std::function<boost::asio::awaitable<std::optional<std::string>>(std::string poll_id)>;

  static std::shared_ptr<LiveResults> create(boost::asio::any_io_executor executor, redis::Config redis, Reader reader,
                                             LiveConfig config);
  void start();
  // Ends every stream (they finish with their last event) and the subscription.
  void stop();

  // Watches a poll until the returned handle is destroyed.
  class Handle {
   public:
    Handle(std::shared_ptr<LiveResults> live, std::string poll_id, std::shared_ptr<Watcher> watcher)
        : live_(std::move(live)), poll_id_(std::move(poll_id)), watcher_(std::move(watcher)) {}
    ~Handle();
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    Watcher& watcher() { return *watcher_; }
    std::shared_ptr<Watcher> shared_watcher() { return watcher_; }

   private:
    std::shared_ptr<LiveResults> live_;
    std::string poll_id_;
    std::shared_ptr<Watcher> watcher_;
  };
  std::unique_ptr<Handle> watch(const std::string& poll_id);
  const LiveConfig& config() const { return config_; }

 private:
  struct Poll {
    std::set<std::shared_ptr<Watcher>> watchers;
    bool refresh_pending = false;
    std::chrono::steady_clock::time_point last_refresh{};
  };
  LiveResults(boost::asio::any_io_executor executor, Reader reader, LiveConfig config);
  void unwatch(const std::string& poll_id, const std::shared_ptr<Watcher>& watcher);
  void changed(const std::string& poll_id);
  static boost::asio::awaitable<void> refresh(std::shared_ptr<LiveResults> self, std::string poll_id,
                                              std::chrono::steady_clock::time_point not_before);

  boost::asio::any_io_executor executor_;
  Reader reader_;
  LiveConfig config_;
  std::shared_ptr<redis::Subscriber> subscriber_;
  std::mutex mutex_;
  std::map<std::string, Poll> polls_;
  bool stopped_ = false;
};

// Caps the live-results streams one user holds open, over every instance. Each stream
// leases a slot in the user's Redis sorted set (member: stream id, score: lease end),
// renewed at every heartbeat, so the slots of an instance that died expire on their own.
// A renewal that finds its slot gone (the key expired or was lost) takes a free one, and
// fails when the user's other streams hold them all: the cap holds after a Redis loss.
// Lease ends are wall times of `clock`.
class StreamSlots {
 public:
  StreamSlots(std::shared_ptr<redis::Client> redis, int per_user, std::chrono::milliseconds lease,
              std::shared_ptr<const core::Clock> clock = core::Clock::system())
      : redis_(std::move(redis)), per_user_(per_user), lease_(lease), clock_(std::move(clock)) {}

  // False when the user already holds every slot.
  boost::asio::awaitable<bool> acquire(const std::string& user_id, const std::string& stream_id);
  // False when the slot was gone and every other one is taken: the stream must end.
  boost::asio::awaitable<bool> renew(std::string user_id, std::string stream_id);
  boost::asio::awaitable<void> release(const std::string& user_id, const std::string& stream_id);
  std::chrono::milliseconds lease() const { return lease_; }

 private:
  std::int64_t unix_ms() const;
  // acquire() and renew() are one script: keep or take a slot, if one is free.
  boost::asio::awaitable<bool> keep_or_take(std::string user_id, std::string stream_id);

  std::shared_ptr<redis::Client> redis_;
  int per_user_;
  std::chrono::milliseconds lease_;
  std::shared_ptr<const core::Clock> clock_;
};

// One stream's slot from acquire() on, given back exactly once: by release() when the
// stream ends, or else by the destructor — a stream that never ran (a HEAD, a response
// head that could not be written, a server stopping first) — in the background on the
// executor it is given, so that such a slot is not held until its lease runs out.
class HeldSlot {
 public:
  HeldSlot(std::shared_ptr<StreamSlots> slots, std::string user_id, std::string stream_id,
           boost::asio::any_io_executor executor)
      : slots_(std::move(slots)),
        user_id_(std::move(user_id)),
        stream_id_(std::move(stream_id)),
        executor_(std::move(executor)) {}
  ~HeldSlot();
  HeldSlot(const HeldSlot&) = delete;
  HeldSlot& operator=(const HeldSlot&) = delete;

  // StreamSlots::renew() of this slot.
  boost::asio::awaitable<bool> renew();
  // Gives the slot back; when Redis is away its lease runs out by itself.
  boost::asio::awaitable<void> release();

 private:
  std::shared_ptr<StreamSlots> slots_;
  std::string user_id_, stream_id_;
  boost::asio::any_io_executor executor_;
  bool released_ = false;
};

}  // namespace nimbus::voting
