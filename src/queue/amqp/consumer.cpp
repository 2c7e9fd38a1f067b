#include "queue/amqp/consumer.hpp"

#include "core/errors.hpp"
#include "core/log.hpp"

namespace nimbus::amqp {

namespace {

std::string to_string(amqp_bytes_t b) {
  return {static_cast<const char*>(b.bytes), b.len};
}

Delivery to_delivery(const amqp_envelope_t& env) {
  Delivery d;
  d.tag = env.delivery_tag;
  d.redelivered = env.redelivered != 0;
  d.message.exchange = to_string(env.exchange);
  d.message.routing_key = to_string(env.routing_key);
  d.message.body = to_string(env.message.body);
  const auto& p = env.message.properties;
  if (p._flags & AMQP_BASIC_MESSAGE_ID_FLAG) d.message.message_id = to_string(p.message_id);
  if (p._flags & AMQP_BASIC_CONTENT_TYPE_FLAG) d.message.content_type = to_string(p.content_type);
  if (p._flags & AMQP_BASIC_HEADERS_FLAG) {
    for (int i = 0; i < p.headers.num_entries; ++i) {
      const auto& e = p.headers.entries[i];
      const auto key = to_string(e.key);
      switch (e.value.kind) {
        case AMQP_FIELD_KIND_UTF8:
        case AMQP_FIELD_KIND_BYTES:
          d.message.headers[key] = to_string(e.value.value.bytes);
          break;
        case AMQP_FIELD_KIND_I64:
          d.message.headers[key] = std::to_string(e.value.value.i64);
          break;
        case AMQP_FIELD_KIND_U64:
          d.message.headers[key] = std::to_string(e.value.value.u64);
          break;
        case AMQP_FIELD_KIND_I32:
          d.message.headers[key] = std::to_string(e.value.value.i32);
          break;
        default:
          break;
      }
    }
    if (auto it = d.message.headers.find("x-delivery-count"); it != d.message.headers.end()) {
      d.delivery_count = std::stoll(it->second);
    }
  }
  return d;
}

}  // namespace

Consumer::Consumer(Config config, std::string queue, int concurrency, Handler handler)
    : config_(std::move(config)), queue_(std::move(queue)), concurrency_(concurrency), handler_(std::move(handler)) {}

Consumer::~Consumer() {
  stop(std::chrono::seconds(0));
}

void Consumer::start() {
  for (int i = 0; i < concurrency_; ++i) workers_.emplace_back([this] { work(); });
  thread_ = std::jthread([this] { run(); });
}

void Consumer::stop(std::chrono::milliseconds drain) {
  {
    std::unique_lock lock(mutex_);
    if (stopping_ && !thread_.joinable()) return;
    draining_ = true;  // the connection thread stops taking deliveries
    // Deliveries not yet started go back to the broker with the connection.
    todo_.clear();
    all_done_.wait_for(lock, drain, [this] { return in_flight_ == 0; });
    stopping_ = true;
  }
  work_ready_.notify_all();
  if (thread_.joinable()) thread_.join();
  workers_.clear();  // joins
}

void Consumer::work() {
  for (;;) {
    std::pair<std::uint64_t, Delivery> item;
    {
      std::unique_lock lock(mutex_);
      work_ready_.wait(lock, [this] { return stopping_ || !todo_.empty(); });
      if (todo_.empty()) return;  // stopping
      item = std::move(todo_.front());
      todo_.pop_front();
      ++in_flight_;
    }
    Outcome outcome = Outcome::requeue;
    try {
      outcome = handler_(item.second);
    } catch (const std::exception& e) {
      log::error("job handler failed", {{"queue", queue_}, {"error", e.what()}});
    }
    handled_ += 1;
    {
      std::lock_guard lock(mutex_);
      done_.push_back({item.first, item.second.tag, outcome});
      --in_flight_;
    }
    all_done_.notify_all();
  }
}

void Consumer::settle(Connection& conn) {
  std::vector<Done> done;
  {
    std::lock_guard lock(mutex_);
    done.swap(done_);
  }
  for (const auto& d : done) {
    if (d.generation != generation_) continue;  // that connection is gone; the broker requeued it
    int status = AMQP_STATUS_OK;
    switch (d.outcome) {
      case Outcome::ack:
        status = amqp_basic_ack(conn.state(), Connection::kChannel, d.tag, 0);
        break;
      case Outcome::requeue:
        status = amqp_basic_nack(conn.state(), Connection::kChannel, d.tag, 0, 1);
        break;
      case Outcome::dead_letter:
        status = amqp_basic_reject(conn.state(), Connection::kChannel, d.tag, 0);
        break;
    }
    conn.check_status(status, "settle delivery");
  }
}

void Consumer::run() {
  std::unique_ptr<Connection> conn;
  std::chrono::milliseconds backoff{100};
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) break;
    }
    try {
      if (!conn) {
        conn = std::make_unique<Connection>(config_);
        conn->declare_topology();
        amqp_basic_qos(conn->state(), Connection::kChannel, 0, static_cast<std::uint16_t>(concurrency_), 0);
        conn->check(amqp_get_rpc_reply(conn->state()), "basic.qos");
        amqp_basic_consume(conn->state(), Connection::kChannel, amqp_cstring_bytes(queue_.c_str()), amqp_empty_bytes, 0,
                           /*no_ack=*/0, 0, amqp_empty_table);
        conn->check(amqp_get_rpc_reply(conn->state()), "basic.consume");
        ++generation_;
        connected_ = true;
        backoff = std::chrono::milliseconds(100);
        log::info("consuming", {{"queue", queue_}, {"prefetch", concurrency_}});
      }
      settle(*conn);
      bool draining = false;
      {
        std::lock_guard lock(mutex_);
        draining = draining_;
      }
      if (draining) {
        // Keep acking finished work, but take nothing new.
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        amqp_frame_t frame;
        timeval zero{0, 0};
        amqp_simple_wait_frame_noblock(conn->state(), &frame, &zero);  // heartbeats
        continue;
      }
      amqp_maybe_release_buffers(conn->state());
      amqp_envelope_t env;
      timeval tv{0, 50'000};
      auto reply = amqp_consume_message(conn->state(), &env, &tv, 0);
      if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && reply.library_error == AMQP_STATUS_TIMEOUT) continue;
      if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && reply.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
        // A frame other than a delivery (e.g. the broker closing the channel).
        amqp_frame_t frame;
        conn->check_status(amqp_simple_wait_frame(conn->state(), &frame), "read frame");
        if (frame.frame_type == AMQP_FRAME_METHOD && (frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ||
                                                      frame.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD)) {
          throw DependencyUnavailable("rabbitmq", "broker closed the channel");
        }
        continue;
      }
      conn->check(reply, "consume");
      auto delivery = to_delivery(env);
      amqp_destroy_envelope(&env);
      {
        std::lock_guard lock(mutex_);
        todo_.emplace_back(generation_, std::move(delivery));
      }
      work_ready_.notify_one();
    } catch (const std::exception& e) {
      log::warn("rabbitmq consumer down", {{"queue", queue_}, {"error", e.what()}});
      conn.reset();
      connected_ = false;
      {
        // Deliveries not started are requeued by the broker along with the connection.
        std::lock_guard lock(mutex_);
        todo_.clear();
      }
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(2'000));
    }
  }
  if (conn) {
    try {
      settle(*conn);  // last outcomes of the drain
    } catch (const std::exception&) {
    }
  }
  connected_ = false;
}

}  // namespace nimbus::amqp
