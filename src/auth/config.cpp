#include "auth/config.hpp"

#include <fstream>
#include <sstream>

#include "core/env.hpp"

namespace nimbus::auth {

namespace {

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, sep);) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::chrono::seconds seconds(const char* name, std::chrono::seconds fallback) {
  return std::chrono::duration_cast<std::chrono::seconds>(
      env::duration(name, std::chrono::duration_cast<std::chrono::milliseconds>(fallback)));
}

}  // namespace

Config Config::from_env() {
  Config c;
  c.issuer = env::string("NIMBUS_AUTH_ISSUER", c.issuer);
  c.audience = env::string("NIMBUS_AUTH_AUDIENCE", c.audience);
  c.access_ttl = seconds("NIMBUS_AUTH_ACCESS_TTL", c.access_ttl);
  c.refresh_idle = seconds("NIMBUS_AUTH_REFRESH_IDLE", c.refresh_idle);
  c.refresh_absolute = seconds("NIMBUS_AUTH_REFRESH_ABSOLUTE", c.refresh_absolute);
  c.refresh_grace = seconds("NIMBUS_AUTH_REFRESH_GRACE", c.refresh_grace);
  c.code_ttl = seconds("NIMBUS_AUTH_CODE_TTL", c.code_ttl);
  c.code_attempts = static_cast<int>(env::integer("NIMBUS_AUTH_CODE_ATTEMPTS", c.code_attempts, 1, 100));
  c.daily_attempts = static_cast<int>(env::integer("NIMBUS_AUTH_DAILY_ATTEMPTS", c.daily_attempts, 1, 1'000'000));
  c.client_daily_attempts =
      static_cast<int>(env::integer("NIMBUS_AUTH_CLIENT_DAILY_ATTEMPTS", c.client_daily_attempts, 1, 1'000'000));
  c.daily_codes = static_cast<int>(env::integer("NIMBUS_AUTH_DAILY_CODES", c.daily_codes, 1, 1'000'000));
  c.resend_cooldown = seconds("NIMBUS_AUTH_RESEND_COOLDOWN", c.resend_cooldown);
  c.ip_start_per_minute =
      static_cast<int>(env::integer("NIMBUS_AUTH_IP_START_PER_MINUTE", c.ip_start_per_minute, 1, 1'000'000));
  c.ip_verify_per_minute =
      static_cast<int>(env::integer("NIMBUS_AUTH_IP_VERIFY_PER_MINUTE", c.ip_verify_per_minute, 1, 1'000'000));
  c.code_secret = env::required_string("NIMBUS_AUTH_CODE_SECRET");
  if (c.code_secret.size() < 32) throw env::ConfigError("NIMBUS_AUTH_CODE_SECRET must be at least 32 bytes");
  c.gateway_secret = env::string("NIMBUS_GATEWAY_SECRET", "");
  if (!c.gateway_secret.empty() && c.gateway_secret.size() < 16) {
    throw env::ConfigError("NIMBUS_GATEWAY_SECRET must be at least 16 bytes");
  }
  c.mail_from = env::string("NIMBUS_MAIL_FROM", c.mail_from);
  c.cookie_secure = env::boolean("NIMBUS_AUTH_COOKIE_SECURE", c.cookie_secure);
  c.remember_verified = env::boolean("NIMBUS_LOCAL_MEMO", c.remember_verified);

  std::vector<Key> keys;
  for (const auto& entry : split(env::required_string("NIMBUS_JWT_KEYS"), ',')) {
    const auto eq = entry.find('=');
    if (eq == std::string::npos || eq == 0) throw env::ConfigError("NIMBUS_JWT_KEYS entries must be kid=/path/key.pem");
    const auto kid = entry.substr(0, eq), path = entry.substr(eq + 1);
    std::ifstream in(path);
    if (!in) throw env::ConfigError("NIMBUS_JWT_KEYS: cannot read " + path);
    std::stringstream pem;
    pem << in.rdbuf();
    try {
      keys.push_back(Key::from_private_pem(kid, pem.str()));
    } catch (const std::invalid_argument& e) {
      throw env::ConfigError("NIMBUS_JWT_KEYS: " + path + ": " + e.what());
    }
  }
  if (keys.empty()) throw env::ConfigError("NIMBUS_JWT_KEYS names no key");
  const auto signing = env::string("NIMBUS_JWT_SIGNING_KID", keys.front().kid());
  try {
    c.keys = std::make_shared<KeySet>(std::move(keys), signing);
  } catch (const std::invalid_argument& e) {
    throw env::ConfigError(std::string("NIMBUS_JWT_SIGNING_KID: ") + e.what());
  }
  return c;
}

}  // namespace nimbus::auth
