// Sending email over SMTP (libcurl): maildev locally, any provider in production
// (host, port, TLS mode and credentials from config). Blocking: call it from worker
// threads, never from an Asio I/O thread.
#pragma once

#include <chrono>
#include <string>

namespace nimbus::mail {

struct SmtpConfig {
  std::string host = "127.0.0.1";
  int port = 1025;
  enum class Tls { none, starttls, implicit } tls = Tls::none;
  std::string user, password;
  std::chrono::milliseconds timeout{15'000};

  // NIMBUS_SMTP_HOST, NIMBUS_SMTP_PORT, NIMBUS_SMTP_TLS (none|starttls|tls),
  // NIMBUS_SMTP_USER, NIMBUS_SMTP_PASSWORD, NIMBUS_SMTP_TIMEOUT.
  static SmtpConfig from_env();
};

struct Email {
  std::string from;  // "Name <address>" or "address"
  std::string to;    // one address
  std::string subject;
  std::string text;
  std::string message_id;  // becomes the Message-ID header (dedup by receivers)
};

// The RFC 5322 message (headers + body, CRLF line ends). Header values are stripped of
// CR/LF, so no field can inject another header.
std::string render(const Email& email, std::chrono::system_clock::time_point now);

// Throws std::runtime_error with the SMTP failure; the caller decides to retry.
void send(const SmtpConfig& config, const Email& email);

}  // namespace nimbus::mail
