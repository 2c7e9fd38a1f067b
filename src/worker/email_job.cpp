#include "worker/email_job.hpp"

#include <boost/json/parse.hpp>

#include "auth/codes.hpp"
#include "core/log.hpp"

namespace nimbus::worker {

amqp::Outcome send_email(const mail::SmtpConfig& smtp, const amqp::Delivery& delivery) {
  boost::system::error_code ec;
  auto value = boost::json::parse(delivery.message.body, ec);
  const auto* o = value.if_object();
  auto field = [o](const char* name) -> std::string {
    const auto* v = o ? o->if_contains(name) : nullptr;
    return v && v->is_string() ? std::string(v->as_string()) : std::string();
  };
  mail::Email email{field("from"), field("to"), field("subject"), field("text"), delivery.message.message_id};
  if (ec || !o || !auth::normalize_email(email.to) || email.from.empty()) {
    log::error("email job malformed: dead-lettered", {{"message_id", delivery.message.message_id}});
    return amqp::Outcome::dead_letter;
  }
  try {
    mail::send(smtp, email);
  } catch (const std::exception& e) {
    log::warn(
        "email send failed; requeued",
        {{"message_id", delivery.message.message_id}, {"error", e.what()}, {"deliveries", delivery.delivery_count}});
    return amqp::Outcome::requeue;
  }
  log::info("email sent", {{"message_id", delivery.message.message_id}});
  return amqp::Outcome::ack;
}

}  // namespace nimbus::worker
