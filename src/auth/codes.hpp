// Email verification codes and opaque tokens: the pure parts (no I/O), unit-tested.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace nimbus::auth {

// Lower-cased, trimmed address if it is plausibly deliverable (one @, a dotted domain,
// no spaces or control characters, ≤ 254 bytes); nullopt otherwise.
std::optional<std::string> normalize_email(std::string_view text);

// Six decimal digits from the CSPRNG, uniform (rejection sampling, no modulo bias).
std::string generate_code();
bool is_code_format(std::string_view code);

// The long form a sign-in code takes once an address (or the client asking) has had
// too many wrong 6-digit guesses for the day: 20 digits from the CSPRNG (10^20, 66
// bits: not worth guessing, so it needs no guess budget), shown in five groups of four.
std::string generate_long_code();
// The 20 digits of a long code as typed or pasted (spaces and dashes between digits
// are dropped); nullopt if it is not one.
std::optional<std::string> long_code_digits(std::string_view text);

// Where sign-in codes come from: the CSPRNG; tests pass their own, to know what a mail
// says without reading it.
struct CodeSource {
  std::function<std::string()> short_code = generate_code;
  std::function<std::string()> long_code = generate_long_code;
};

// HMAC-SHA256(secret, email ":" code), hex. Codes are stored only in this form.
std::string code_mac(std::string_view secret, std::string_view email, std::string_view code);

// Constant-time comparison of equal-length secrets (false on different lengths).
bool constant_time_equal(std::string_view a, std::string_view b);

// 256-bit opaque refresh token (base64url) and its storage form (raw SHA-256).
std::string generate_refresh_token();
std::string token_hash(std::string_view token);
// The token that replaces `token` on refresh: HMAC-SHA256(secret, "refresh:" token),
// base64url. Deterministic, so a replay within the grace window gets the same one.
std::string successor_token(std::string_view secret, std::string_view token);

// What per-client limits count: the address itself for IPv4, its /64 for IPv6 (one
// subscriber holds a whole /64, and every address in it is theirs to use).
std::string rate_subject(std::string_view ip);

}  // namespace nimbus::auth
