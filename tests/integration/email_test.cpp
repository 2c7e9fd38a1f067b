// The email.send job against a scripted SMTP server on loopback (no stack needed): a
// server that refuses for now, never answers, or is not there gets the message
// requeued (RabbitMQ redelivers it, and its delivery limit dead-letters a message that
// keeps failing); the next attempt delivers it once; a job that can never be sent is
// dead-lettered without a connection.
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "worker/email_job.hpp"

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace nimbus;
using namespace std::chrono_literals;

namespace {

class FakeSmtp {
 public:
  enum class Mode {
    deliver,      // a normal dialogue, the message taken
    busy,         // 451 to MAIL FROM (a temporary failure)
    refuse_data,  // 554 after the data (refused when already sent)
    silent,       // accepts the connection and never says a word
    hang_up,      // closes the connection at once
  };

  // One mode per connection, in order; the last one repeats.
  explicit FakeSmtp(std::vector<Mode> script)
      : script_(std::move(script)), acceptor_(ioc_, {asio::ip::make_address("127.0.0.1"), 0}) {
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeSmtp() {
    stopping_ = true;
    boost::system::error_code ec;
    tcp::socket wake(ioc_);
    wake.connect(acceptor_.local_endpoint(), ec);  // unblocks accept()
    thread_.join();
  }

  int port() const { return acceptor_.local_endpoint().port(); }
  int connections() const { return connections_.load(); }
  std::vector<std::string> messages() {
    std::lock_guard lock(mutex_);
    return messages_;
  }

 private:
  void serve() {
    while (!stopping_) {
      tcp::socket s(ioc_);
      boost::system::error_code ec;
      acceptor_.accept(s, ec);
      if (ec || stopping_) return;
      const auto n = connections_++;
      const auto mode = script_[std::min<std::size_t>(n, script_.size() - 1)];
      talk(s, mode);
    }
  }

  static std::string line(tcp::socket& s) {
    std::string out;
    char c;
    boost::system::error_code ec;
    while (!out.ends_with("\r\n")) {
      if (asio::read(s, asio::buffer(&c, 1), ec) != 1) return {};
      out += c;
    }
    return out;
  }
  static void say(tcp::socket& s, std::string_view text) {
    boost::system::error_code ec;
    asio::write(s, asio::buffer(text), ec);
  }

  void talk(tcp::socket& s, Mode mode) {
    if (mode == Mode::hang_up) return;
    if (mode == Mode::silent) {
      while (!line(s).empty()) {
      }  // until the client gives up and closes
      return;
    }
    say(s, "220 fake ESMTP\r\n");
    for (;;) {
      const auto command = line(s);
      if (command.empty()) return;
      const auto verb = command.substr(0, 4);
      if (verb == "EHLO" || verb == "HELO") {
        say(s, "250 fake\r\n");
      } else if (verb == "MAIL") {
        say(s, mode == Mode::busy ? "451 4.3.2 try again later\r\n" : "250 2.1.0 ok\r\n");
      } else if (verb == "RCPT") {
        say(s, "250 2.1.5 ok\r\n");
      } else if (verb == "DATA") {
        say(s, "354 go ahead\r\n");
        std::string data;
        for (std::string l = line(s); !l.empty() && l != ".\r\n"; l = line(s)) data += l;
        if (mode == Mode::refuse_data) {
          say(s, "554 5.6.0 refused\r\n");
        } else {
          std::lock_guard lock(mutex_);
          messages_.push_back(data);
          say(s, "250 2.0.0 queued\r\n");
        }
      } else if (verb == "QUIT") {
        say(s, "221 bye\r\n");
        return;
      } else {
        say(s, "250 ok\r\n");
      }
    }
  }

  std::vector<Mode> script_;
  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::mutex mutex_;
  std::vector<std::string> messages_;
};

amqp::Delivery job(std::string body, std::int64_t deliveries = 0) {
  amqp::Delivery d;
  d.message.body = std::move(body);
  d.message.message_id = "mail-1";
  d.delivery_count = deliveries;
  return d;
}

const std::string kJob =
    R"({"from":"Nimbus <no-reply@nimbus.localhost>","to":"someone@example.com","subject":"Your code",)"
    R"("text":"Your sign-in code is 123456."})";

mail::SmtpConfig to(const FakeSmtp& server) {
  mail::SmtpConfig c;
  c.port = server.port();
  c.timeout = 2s;
  return c;
}

TEST(EmailJob, ATemporaryFailureIsRequeuedAndTheRetryDeliversOnce) {
  FakeSmtp server({FakeSmtp::Mode::busy, FakeSmtp::Mode::deliver});
  EXPECT_EQ(worker::send_email(to(server), job(kJob)), amqp::Outcome::requeue);
  EXPECT_TRUE(server.messages().empty());
  EXPECT_EQ(worker::send_email(to(server), job(kJob, 1)), amqp::Outcome::ack);
  const auto got = server.messages();
  ASSERT_EQ(got.size(), 1U);
  EXPECT_NE(got[0].find("To: someone@example.com\r\n"), std::string::npos) << got[0];
  EXPECT_NE(got[0].find("Subject: Your code\r\n"), std::string::npos) << got[0];
  EXPECT_NE(got[0].find("Message-ID: <mail-1@nimbus>\r\n"), std::string::npos) << got[0];
  EXPECT_NE(got[0].find("Your sign-in code is 123456."), std::string::npos) << got[0];
  EXPECT_EQ(server.connections(), 2);
}

TEST(EmailJob, AServerThatNeverAnswersIsRequeuedByTheTimeout) {
  FakeSmtp server({FakeSmtp::Mode::silent});
  auto config = to(server);
  config.timeout = 300ms;
  const auto began = std::chrono::steady_clock::now();
  EXPECT_EQ(worker::send_email(config, job(kJob)), amqp::Outcome::requeue);
  // Ended by the 300 ms timeout, not hung: 5 s is headroom for a loaded machine.
  EXPECT_LT(std::chrono::steady_clock::now() - began, 5s);
}

TEST(EmailJob, AServerThatHangsUpOrRefusesTheDataIsRequeued) {
  FakeSmtp server({FakeSmtp::Mode::hang_up, FakeSmtp::Mode::refuse_data});
  EXPECT_EQ(worker::send_email(to(server), job(kJob)), amqp::Outcome::requeue);
  EXPECT_EQ(worker::send_email(to(server), job(kJob)), amqp::Outcome::requeue);
  EXPECT_TRUE(server.messages().empty());
}

TEST(EmailJob, NoServerAtAllIsRequeued) {
  int port = 0;
  {
    FakeSmtp gone({FakeSmtp::Mode::deliver});
    port = gone.port();
  }  // closed: nothing listens there now
  mail::SmtpConfig config;
  config.port = port;
  config.timeout = 2s;
  EXPECT_EQ(worker::send_email(config, job(kJob)), amqp::Outcome::requeue);
}

TEST(EmailJob, AJobThatCanNeverBeSentIsDeadLetteredWithoutAConnection) {
  FakeSmtp server({FakeSmtp::Mode::deliver});
  for (const std::string& body : {std::string("not json"), std::string("[1,2]"),
                                  std::string(R"({"to":"someone@example.com","subject":"s","text":"t"})"),
                                  std::string(R"({"from":"a@b.c","to":"not an address","subject":"s","text":"t"})"),
                                  std::string(R"({"from":"a@b.c","to":42,"subject":"s","text":"t"})")}) {
    EXPECT_EQ(worker::send_email(to(server), job(body)), amqp::Outcome::dead_letter) << body;
  }
  EXPECT_EQ(server.connections(), 0);
}

TEST(EmailJob, HeaderFieldsCannotInjectHeaders) {
  FakeSmtp server({FakeSmtp::Mode::deliver});
  const std::string body = R"({"from":"Nimbus <no-reply@nimbus.localhost>","to":"someone@example.com",)"
                           R"("subject":"Hi\r\nBcc: victim@example.com","text":"t"})";
  EXPECT_EQ(worker::send_email(to(server), job(body)), amqp::Outcome::ack);
  const auto got = server.messages();
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].find("\r\nBcc:"), std::string::npos) << got[0];
}

}  // namespace
