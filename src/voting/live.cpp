#include "voting/live.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <vector>

#include "core/env.hpp"
#include "core/log.hpp"
#include "voting/tally.hpp"

namespace nimbus::voting {

namespace asio = boost::asio;
// Watchers and refreshes wait on real timers, so their deadlines are real time too; the
// one decision by the clock here, a stream slot's lease, reads the injected clock.
using Clock = std::chrono::steady_clock;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

LiveConfig LiveConfig::from_env() {
  LiveConfig c;
  c.coalesce = env::duration("NIMBUS_LIVE_COALESCE", c.coalesce);
  c.heartbeat = env::duration("NIMBUS_LIVE_HEARTBEAT", c.heartbeat);
  c.streams_per_user = static_cast<int>(env::integer("NIMBUS_LIVE_STREAMS_PER_USER", c.streams_per_user, 1, 10'000));
  return c;
}

namespace {

// Takes or renews a slot: a stream that holds one keeps it; one whose slot is gone (the
// key expired or was lost with a Redis failover) takes a free one like a new stream, or
// learns that there is none. KEYS: the user's slots. ARGV: now (ms), lease (ms), cap,
// stream id.
const redis::Script kLease(R"(
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[4]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1)");

std::string slots_key(const std::string& user_id) {
  return "live:streams:" + user_id;
}

}  // namespace

std::string sse_event(std::string_view name, std::string_view data) {
  std::string out;
  out.reserve(16 + name.size() + data.size());
  out.append("event: ").append(name).append("\ndata: ").append(data).append("\n\n");
  return out;
}

std::int64_t StreamSlots::unix_ms() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock_->system_now().time_since_epoch()).count();
}

asio::awaitable<bool> StreamSlots::keep_or_take(std::string user_id, std::string stream_id) {
  const std::vector<std::string> keys{slots_key(user_id)};
  const std::vector<std::string> args{std::to_string(unix_ms()), std::to_string(lease_.count()),
                                      std::to_string(per_user_), stream_id};
  auto r = co_await redis_->eval(kLease, keys, args);
  co_return r.as_integer() == 1;
}

asio::awaitable<bool> StreamSlots::acquire(const std::string& user_id, const std::string& stream_id) {
  co_return co_await keep_or_take(user_id, stream_id);
}

asio::awaitable<bool> StreamSlots::renew(std::string user_id, std::string stream_id) {
  co_return co_await keep_or_take(std::move(user_id), std::move(stream_id));
}

asio::awaitable<void> StreamSlots::release(const std::string& user_id, const std::string& stream_id) {
  co_await redis_->command("ZREM", slots_key(user_id), stream_id);
}

namespace {

asio::awaitable<void> give_back(std::shared_ptr<StreamSlots> slots, std::string user_id, std::string stream_id) {
  try {
    co_await slots->release(user_id, stream_id);
  } catch (const std::exception&) {
    // Redis away: the lease runs out by itself.
  }
}

}  // namespace

HeldSlot::~HeldSlot() {
  if (released_) return;
  asio::co_spawn(executor_, give_back(std::move(slots_), std::move(user_id_), std::move(stream_id_)), asio::detached);
}

asio::awaitable<bool> HeldSlot::renew() {
  co_return co_await slots_->renew(user_id_, stream_id_);
}

asio::awaitable<void> HeldSlot::release() {
  released_ = true;
  co_await give_back(slots_, user_id_, stream_id_);
}

asio::awaitable<Watcher::Event> Watcher::next(std::chrono::milliseconds wait) {
  const auto deadline = Clock::now() + wait;
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (closed_) co_return Event{Event::Kind::closed, {}};
      if (latest_) {
        co_return Event{Event::Kind::update, std::move(latest_)};
      }
    }
    const auto now = Clock::now();
    if (now >= deadline) co_return Event{Event::Kind::timeout, {}};
    // Re-armed only if it would ring too late, or has rung (a ring before the deadline
    // only costs one more turn of this loop).
    if (armed_ <= now || armed_ > deadline + kSlack) {
      armed_ = deadline;
      timer_.expires_at(deadline);  // cancels the wait for the old deadline
      timer_.async_wait([bell = bell_](boost::system::error_code ec) {
        if (!ec) bell->try_send(boost::system::error_code{});
      });
    }
    // A ring may be stale (an offer already taken above): the loop checks again.
    co_await bell_->async_receive(use_tuple);
  }
}

void Watcher::offer(std::shared_ptr<const std::string> latest) {
  {
    std::lock_guard lock(mutex_);
    latest_ = std::move(latest);
  }
  bell_->try_send(boost::system::error_code{});
}

void Watcher::close() {
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
  }
  bell_->try_send(boost::system::error_code{});
}

namespace {

// "poll:{<id>}:changed" → "<id>"
std::optional<std::string> poll_of(const std::string& channel) {
  auto open = channel.find('{');
  auto close = channel.find('}');
  if (open == std::string::npos || close == std::string::npos || close < open) return std::nullopt;
  return channel.substr(open + 1, close - open - 1);
}

}  // namespace

LiveResults::LiveResults(asio::any_io_executor executor, Reader reader, LiveConfig config)
    : executor_(std::move(executor)), reader_(std::move(reader)), config_(config) {}

std::shared_ptr<LiveResults> LiveResults::create(asio::any_io_executor executor, redis::Config redis, Reader reader,
                                                 LiveConfig config) {
  auto live = std::shared_ptr<LiveResults>(new LiveResults(executor, std::move(reader), config));
  std::weak_ptr<LiveResults> weak = live;
  live->subscriber_ = redis::Subscriber::create(
      executor, std::move(redis),
      [weak](const std::string& channel, const std::string&) {
        auto self = weak.lock();
        auto poll = poll_of(channel);
        if (self && poll) self->changed(*poll);
      },
      [weak] {
        // Messages sent while we were disconnected are lost: refresh everything.
        auto self = weak.lock();
        if (!self) return;
        std::vector<std::string> polls;
        {
          std::lock_guard lock(self->mutex_);
          for (const auto& [id, poll] : self->polls_) polls.push_back(id);
        }
        for (const auto& id : polls) self->changed(id);
      });
  return live;
}

void LiveResults::start() {
  subscriber_->start();
}

void LiveResults::stop() {
  std::vector<std::shared_ptr<Watcher>> all;
  {
    std::lock_guard lock(mutex_);
    stopped_ = true;
    for (auto& [id, poll] : polls_) all.insert(all.end(), poll.watchers.begin(), poll.watchers.end());
  }
  for (auto& w : all) w->close();
  subscriber_->stop();
}

LiveResults::Handle::~Handle() {
  live_->unwatch(poll_id_, watcher_);
}

std::unique_ptr<LiveResults::Handle> LiveResults::watch(const std::string& poll_id) {
  auto watcher = std::make_shared<Watcher>(executor_);
  {
    // (Subscribing under the lock keeps subscribe/unsubscribe in the order decided.)
    std::lock_guard lock(mutex_);
    if (stopped_) watcher->close();
    auto& poll = polls_[poll_id];
    if (poll.watchers.empty() && !poll.refresh_pending) subscriber_->subscribe(changed_channel(poll_id));
    poll.watchers.insert(watcher);
  }
  return std::make_unique<Handle>(shared_from_this(), poll_id, std::move(watcher));
}

void LiveResults::unwatch(const std::string& poll_id, const std::shared_ptr<Watcher>& watcher) {
  std::lock_guard lock(mutex_);
  auto it = polls_.find(poll_id);
  if (it == polls_.end()) return;
  it->second.watchers.erase(watcher);
  if (it->second.watchers.empty() && !it->second.refresh_pending) {
    polls_.erase(it);
    subscriber_->unsubscribe(changed_channel(poll_id));
  }
}

void LiveResults::changed(const std::string& poll_id) {
  Clock::time_point not_before;
  {
    std::lock_guard lock(mutex_);
    auto it = polls_.find(poll_id);
    if (stopped_ || it == polls_.end() || it->second.refresh_pending) return;
    it->second.refresh_pending = true;
    not_before = it->second.last_refresh + config_.coalesce;
  }
  asio::co_spawn(executor_, refresh(shared_from_this(), poll_id, not_before), asio::detached);
}

asio::awaitable<void> LiveResults::refresh(std::shared_ptr<LiveResults> self, std::string poll_id,
                                           Clock::time_point not_before) {
  if (Clock::now() < not_before) {
    asio::steady_timer wait(co_await asio::this_coro::executor, not_before);
    co_await wait.async_wait(use_tuple);
  }
  {
    // From here on a new change schedules the next refresh: none is lost.
    std::lock_guard lock(self->mutex_);
    auto& poll = self->polls_[poll_id];
    poll.refresh_pending = false;
    poll.last_refresh = Clock::now();
  }
  std::optional<std::string> results;
  bool failed = false;
  try {
    results = co_await self->reader_(poll_id);
  } catch (const std::exception& e) {
    failed = true;
    log::warn("live results: reading failed", {{"poll_id", poll_id}, {"error", e.what()}});
  }
  std::vector<std::shared_ptr<Watcher>> watchers;
  {
    std::lock_guard lock(self->mutex_);
    auto it = self->polls_.find(poll_id);
    if (it == self->polls_.end()) co_return;
    watchers.assign(it->second.watchers.begin(), it->second.watchers.end());
    if (watchers.empty() && !it->second.refresh_pending) {
      self->polls_.erase(it);
      self->subscriber_->unsubscribe(changed_channel(poll_id));
    }
  }
  if (failed) co_return;
  if (!results) {
    for (auto& w : watchers) w->close();  // the poll was deleted: end its streams
    co_return;
  }
  auto event = std::make_shared<const std::string>(sse_event("results", *results));
  for (auto& w : watchers) w->offer(event);
}

}  // namespace nimbus::voting
