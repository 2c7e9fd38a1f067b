#include "queue/amqp/publisher.hpp"

#include <boost/asio/this_coro.hpp>
#include <set>

#include "core/errors.hpp"
#include "core/log.hpp"
#include "core/oneshot.hpp"

namespace nimbus::amqp {

namespace asio = boost::asio;

namespace {

amqp_bytes_t bytes(std::string_view s) {
  return {s.size(), const_cast<char*>(s.data())};
}

}  // namespace

struct Publisher::Job {
  Job(asio::any_io_executor ex, std::vector<Message> m) : messages(std::move(m)), done(std::move(ex)) {}
  std::vector<Message> messages;
  OneShot<std::string> done;  // empty: every message confirmed; else why not
};

Publisher::Publisher(Config config, std::chrono::milliseconds confirm_timeout)
    : config_(std::move(config)), confirm_timeout_(confirm_timeout), thread_([this] { run(); }) {}

Publisher::~Publisher() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

asio::awaitable<void> Publisher::publish(std::vector<Message> batch) {
  if (batch.empty()) co_return;
  auto job = std::make_shared<Job>(co_await asio::this_coro::executor, std::move(batch));
  {
    std::lock_guard lock(mutex_);
    if (stopping_) throw DependencyUnavailable("rabbitmq", "publisher stopped");
    jobs_.push_back(job);
  }
  wake_.notify_one();
  // The thread always answers (within the confirm timeout plus a reconnect), so the
  // generous deadline here only guards against a wedged broker socket.
  auto outcome = co_await job->done.wait_until(std::chrono::steady_clock::now() + confirm_timeout_ * 3);
  if (!outcome) throw DependencyUnavailable("rabbitmq", "publish timed out");
  if (!outcome->empty()) throw DependencyUnavailable("rabbitmq", *outcome);
}

void Publisher::run() {
  std::unique_ptr<Connection> conn;
  std::chrono::milliseconds backoff{100};
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(mutex_);
      // Wake at least every second so heartbeats are answered while idle.
      wake_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_ || !jobs_.empty(); });
      if (stopping_) {
        for (auto& j : jobs_) j->done.set("publisher stopped");
        jobs_.clear();
        break;
      }
      if (!jobs_.empty()) {
        job = jobs_.front();
        jobs_.pop_front();
      }
    }
    try {
      if (!conn) {
        conn = std::make_unique<Connection>(config_);
        amqp_confirm_select(conn->state(), Connection::kChannel);
        conn->check(amqp_get_rpc_reply(conn->state()), "confirm.select");
        conn->declare_topology();
        next_tag_ = 1;
        connected_ = true;
        backoff = std::chrono::milliseconds(100);
      }
      if (job) {
        publish_now(*conn, *job);
        job->done.set({});
      } else {
        // Idle: let rabbitmq-c read and answer heartbeats.
        amqp_frame_t frame;
        timeval zero{0, 0};
        const int status = amqp_simple_wait_frame_noblock(conn->state(), &frame, &zero);
        if (status != AMQP_STATUS_OK && status != AMQP_STATUS_TIMEOUT) {
          throw DependencyUnavailable("rabbitmq", amqp_error_string2(status));
        }
      }
    } catch (const std::exception& e) {
      if (job) job->done.set(e.what());
      if (conn || job) log::warn("rabbitmq publisher down", {{"error", e.what()}});
      conn.reset();
      connected_ = false;
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(2'000));
    }
  }
}

void Publisher::publish_now(Connection& conn, Job& job) {
  const std::uint64_t first = next_tag_;
  for (const auto& m : job.messages) {
    std::vector<amqp_table_entry_t> headers;
    headers.reserve(m.headers.size());
    for (const auto& [k, v] : m.headers) {
      amqp_table_entry_t e;
      e.key = bytes(k);
      e.value.kind = AMQP_FIELD_KIND_UTF8;
      e.value.value.bytes = bytes(v);
      headers.push_back(e);
    }
    amqp_basic_properties_t props{};
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |
                   AMQP_BASIC_HEADERS_FLAG;
    props.delivery_mode = 2;  // persistent
    props.content_type = bytes(m.content_type);
    props.message_id = bytes(m.message_id);
    props.headers = {static_cast<int>(headers.size()), headers.data()};
    conn.check_status(amqp_basic_publish(conn.state(), Connection::kChannel, bytes(m.exchange), bytes(m.routing_key),
                                         /*mandatory=*/1, /*immediate=*/0, &props, bytes(m.body)),
                      "publish");
    ++next_tag_;
  }

  // Wait until the broker acknowledged every tag in [first, next_tag_).
  std::set<std::uint64_t> unconfirmed;
  for (auto tag = first; tag < next_tag_; ++tag) unconfirmed.insert(unconfirmed.end(), tag);
  std::string returned;
  const auto deadline = std::chrono::steady_clock::now() + confirm_timeout_;
  while (!unconfirmed.empty()) {
    const auto left =
        std::chrono::duration_cast<std::chrono::microseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) throw DependencyUnavailable("rabbitmq", "confirm timeout");
    timeval tv{static_cast<time_t>(left.count() / 1'000'000), static_cast<suseconds_t>(left.count() % 1'000'000)};
    amqp_frame_t frame;
    const int status = amqp_simple_wait_frame_noblock(conn.state(), &frame, &tv);
    if (status == AMQP_STATUS_TIMEOUT) continue;
    conn.check_status(status, "wait for confirm");
    if (frame.frame_type != AMQP_FRAME_METHOD) continue;
    switch (frame.payload.method.id) {
      case AMQP_BASIC_ACK_METHOD: {
        const auto* ack = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
        if (ack->multiple) {
          unconfirmed.erase(unconfirmed.begin(), unconfirmed.upper_bound(ack->delivery_tag));
        } else {
          unconfirmed.erase(ack->delivery_tag);
        }
        break;
      }
      case AMQP_BASIC_NACK_METHOD:
        throw DependencyUnavailable("rabbitmq", "broker refused a message (nack)");
      case AMQP_BASIC_RETURN_METHOD: {
        const auto* ret = static_cast<amqp_basic_return_t*>(frame.payload.method.decoded);
        returned = std::string(static_cast<const char*>(ret->routing_key.bytes), ret->routing_key.len);
        amqp_message_t message;
        conn.check(amqp_read_message(conn.state(), Connection::kChannel, &message, 0), "read returned message");
        amqp_destroy_message(&message);
        break;
      }
      case AMQP_CHANNEL_CLOSE_METHOD:
      case AMQP_CONNECTION_CLOSE_METHOD:
        throw DependencyUnavailable("rabbitmq", "broker closed the channel");
      default:
        break;
    }
  }
  // A returned (unroutable) message is still acked by the broker: it went nowhere.
  if (!returned.empty()) throw DependencyUnavailable("rabbitmq", "no queue bound for routing key " + returned);
}

}  // namespace nimbus::amqp
