// Every number of the accounts flow, from the environment (defaults from OWASP ASVS 5,
// Ory Kratos, GoTrue, Auth0).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "auth/jwt.hpp"

namespace nimbus::auth {

struct Config {
  std::string issuer = "nimbus";
  std::string audience = "nimbus-api";
  std::chrono::seconds access_ttl{15 * 60};
  std::chrono::seconds refresh_idle{14 * 24 * 3600};
  std::chrono::seconds refresh_absolute{30 * 24 * 3600};
  std::chrono::seconds refresh_grace{10};
  std::chrono::seconds code_ttl{10 * 60};
  // The guess budgets of 6-digit codes (docs/adr/0009): only a guess at a live code
  // counts, wrong ones only, per UTC day by the service's clock. A code is burnt after
  // `code_attempts` wrong guesses; an address takes `daily_attempts` from all clients
  // together and `client_daily_attempts` from any one client (IPv4 address, IPv6 /64);
  // it is sent `daily_codes` 6-digit codes. Past any of them, codes are sent in their
  // long form (codes.hpp), which no budget limits: guessing is bounded and nobody
  // without the mailbox can keep its owner from signing in.
  int code_attempts = 5;
  int daily_attempts = 20;
  int client_daily_attempts = 10;
  int daily_codes = 10;
  std::chrono::seconds resend_cooldown{60};
  // Per client IP, per minute, shared by all instances (Redis).
  int ip_start_per_minute = 10;
  int ip_verify_per_minute = 30;
  std::string code_secret;  // HMAC key for stored codes (≥ 32 bytes)
  // X-Forwarded-For counts only on requests that carry this secret in X-Nimbus-Gateway,
  // which the gateway sets (and overwrites on whatever a client sends). Empty: never.
  std::string gateway_secret;
  std::string mail_from = "Nimbus <no-reply@nimbus.localhost>";
  bool cookie_secure = true;  // browser-mode cookie over HTTPS only
  // Keep access tokens whose signature this instance checked (verified_tokens.hpp): a
  // pure function of the token's bytes. Off with NIMBUS_LOCAL_MEMO=0.
  bool remember_verified = true;
  std::shared_ptr<KeySet> keys;

  // NIMBUS_AUTH_ISSUER, NIMBUS_AUTH_AUDIENCE, NIMBUS_AUTH_ACCESS_TTL, NIMBUS_AUTH_REFRESH_IDLE,
  // NIMBUS_AUTH_REFRESH_ABSOLUTE, NIMBUS_AUTH_REFRESH_GRACE, NIMBUS_AUTH_CODE_TTL,
  // NIMBUS_AUTH_CODE_ATTEMPTS, NIMBUS_AUTH_DAILY_ATTEMPTS, NIMBUS_AUTH_CLIENT_DAILY_ATTEMPTS,
  // NIMBUS_AUTH_DAILY_CODES, NIMBUS_AUTH_RESEND_COOLDOWN,
  // NIMBUS_AUTH_IP_START_PER_MINUTE, NIMBUS_AUTH_IP_VERIFY_PER_MINUTE, NIMBUS_AUTH_CODE_SECRET (required),
  // NIMBUS_GATEWAY_SECRET, NIMBUS_MAIL_FROM, NIMBUS_AUTH_COOKIE_SECURE, NIMBUS_LOCAL_MEMO,
  // NIMBUS_JWT_KEYS ("kid=/path/key.pem,kid2=/path/old.pem", required),
  // NIMBUS_JWT_SIGNING_KID (default: the first key).
  static Config from_env();
};

}  // namespace nimbus::auth
