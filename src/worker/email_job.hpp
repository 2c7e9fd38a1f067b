// The email.send consumer: one outbox message → one SMTP delivery.
#pragma once

#include "mail/smtp.hpp"
#include "queue/amqp/consumer.hpp"

namespace nimbus::worker {

// Acks once the mail server took the message; requeues on SMTP failure (the queue's
// delivery limit dead-letters a message that keeps failing); dead-letters a message
// that can never be sent (bad JSON, bad address).
amqp::Outcome send_email(const mail::SmtpConfig& smtp, const amqp::Delivery& delivery);

}  // namespace nimbus::worker
