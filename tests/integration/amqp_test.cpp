// Publisher confirms and consumer acks against the stack's real RabbitMQ.
#include <mutex>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "core/errors.hpp"
#include "core/random.hpp"
#include "queue/amqp/consumer.hpp"
#include "queue/amqp/publisher.hpp"
#include "support/run.hpp"

namespace asio = boost::asio;
using namespace nimbus;
using namespace std::chrono_literals;

namespace {

class AmqpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    NIMBUS_REQUIRE_STACK("NIMBUS_TEST_AMQP_URL");
    config_ = amqp::Config::from_url(test::stack_env("NIMBUS_TEST_AMQP_URL"));
    queue_ = "test." + random::hex(6);
    amqp::Connection admin(config_);
    admin.declare_topology();
    admin.declare_work_queue(queue_);
  }
  void TearDown() override {
    if (queue_.empty() || config_.host.empty()) return;
    try {
      amqp::Connection admin(config_);
      admin.delete_queue(queue_);
      admin.delete_queue(amqp::topology::dead_letter_queue(queue_));
    } catch (const std::exception&) {
    }
  }

  std::vector<amqp::Message> batch(int n, const std::string& tag = "m") {
    std::vector<amqp::Message> out;
    for (int i = 0; i < n; ++i) {
      amqp::Message m;
      m.routing_key = queue_;
      m.message_id = tag + std::to_string(i);
      m.body = R"({"n":)" + std::to_string(i) + "}";
      m.headers["x-nimbus-test"] = "yes";
      out.push_back(std::move(m));
    }
    return out;
  }

  void publish(amqp::Publisher& p, std::vector<amqp::Message> messages) {
    test::run(ioc_, [&]() -> asio::awaitable<void> { co_await p.publish(std::move(messages)); });
  }

  // Consumes until `n` distinct message ids arrived (or the time is up: the wait ends at
  // the n-th message, so its bound is generous; a short one checks that none comes).
  std::set<std::string> consume(int n, amqp::Outcome outcome = amqp::Outcome::ack, std::string queue = {},
                                std::chrono::milliseconds wait = 30s) {
    std::mutex m;
    std::set<std::string> ids;
    amqp::Consumer consumer(config_, queue.empty() ? queue_ : queue, 4, [&](const amqp::Delivery& d) {
      std::lock_guard lock(m);
      EXPECT_EQ(d.message.headers.at("x-nimbus-test"), "yes");
      ids.insert(d.message.message_id);
      return outcome;
    });
    consumer.start();
    for (auto until = std::chrono::steady_clock::now() + wait; std::chrono::steady_clock::now() < until;) {
      {
        std::lock_guard lock(m);
        if (static_cast<int>(ids.size()) >= n) break;
      }
      std::this_thread::sleep_for(20ms);
    }
    consumer.stop(2s);
    return ids;
  }

  asio::io_context ioc_;
  amqp::Config config_;
  std::string queue_;
};

TEST_F(AmqpTest, ConfirmedMessagesAreConsumedAndAcked) {
  amqp::Publisher publisher(config_);
  publish(publisher, batch(50));
  auto ids = consume(50);
  EXPECT_EQ(ids.size(), 50U);
  EXPECT_TRUE(consume(1, amqp::Outcome::ack, {}, 1s).empty()) << "acked messages are gone";
}

TEST_F(AmqpTest, UnroutableMessageIsAnError) {
  amqp::Publisher publisher(config_);
  auto messages = batch(1);
  messages[0].routing_key = "no.such.queue." + random::hex(4);
  EXPECT_THROW(publish(publisher, messages), DependencyUnavailable);
  publish(publisher, batch(1));  // the publisher is still fine afterwards
}

TEST_F(AmqpTest, RequeuedMessageComesBackWithADeliveryCount) {
  amqp::Publisher publisher(config_);
  publish(publisher, batch(1));
  std::mutex m;
  std::vector<std::int64_t> counts;
  amqp::Consumer consumer(config_, queue_, 1, [&](const amqp::Delivery& d) {
    std::lock_guard lock(m);
    counts.push_back(d.delivery_count);
    return counts.size() < 3 ? amqp::Outcome::requeue : amqp::Outcome::ack;
  });
  consumer.start();
  for (const auto until = std::chrono::steady_clock::now() + 30s; std::chrono::steady_clock::now() < until;) {
    {
      std::lock_guard lock(m);
      if (counts.size() >= 3) break;
    }
    std::this_thread::sleep_for(20ms);
  }
  consumer.stop(2s);
  ASSERT_EQ(counts.size(), 3U);
  EXPECT_EQ(counts[0], 0);
  EXPECT_EQ(counts[1], 1);
  EXPECT_EQ(counts[2], 2);
}

TEST_F(AmqpTest, DeadLetteredMessageLandsInTheDeadLetterQueue) {
  amqp::Publisher publisher(config_);
  publish(publisher, batch(3, "dl"));
  EXPECT_EQ(consume(3, amqp::Outcome::dead_letter).size(), 3U);
  auto dead = consume(3, amqp::Outcome::ack, amqp::topology::dead_letter_queue(queue_));
  EXPECT_EQ(dead, (std::set<std::string>{"dl0", "dl1", "dl2"}));
}

TEST_F(AmqpTest, NoConfirmedMessageIsLostAcrossABrokerRestart) {
  NIMBUS_REQUIRE_STACK("NIMBUS_STACK_SUPERVISOR_CONF");
  amqp::Publisher publisher(config_);
  publish(publisher, batch(20, "before"));
  ASSERT_EQ(test::stack_ctl("restart rabbitmq"), 0);

  // The same publisher reconnects by itself; publishes fail until the broker is back.
  // The broker being back is the event; the bound only ends a failure, and is above
  // the 90 s that ./stack itself gives RabbitMQ to start on a loaded machine.
  bool published = false;
  for (const auto until = std::chrono::steady_clock::now() + 120s;
       !published && std::chrono::steady_clock::now() < until;) {
    try {
      publish(publisher, batch(20, "after"));
      published = true;
    } catch (const DependencyUnavailable&) {
      std::this_thread::sleep_for(200ms);
    }
  }
  ASSERT_TRUE(published);
  auto ids = consume(40);
  EXPECT_EQ(ids.size(), 40U) << "every confirmed message survives the restart";
}

}  // namespace
