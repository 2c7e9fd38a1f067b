#include "auth/codes.hpp"

#include <arpa/inet.h>
#include <array>
#include <cstdint>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "auth/jwt.hpp"
#include "core/hex.hpp"
#include "core/random.hpp"

namespace nimbus::auth {

std::optional<std::string> normalize_email(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  if (text.empty() || text.size() > 254) return std::nullopt;
  const auto at = text.find('@');
  if (at == std::string_view::npos || at == 0 || text.find('@', at + 1) != std::string_view::npos) {
    return std::nullopt;
  }
  const auto local = text.substr(0, at), domain = text.substr(at + 1);
  if (local.size() > 64 || domain.size() < 3) return std::nullopt;
  const auto dot = domain.find('.');
  if (dot == std::string_view::npos || dot == 0 || domain.back() == '.' ||
      domain.find("..") != std::string_view::npos) {
    return std::nullopt;
  }
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    // ASCII only: internationalised addresses (RFC 6531) need SMTPUTF8 end to end, and
    // two spellings of one Unicode address must not become two accounts. Domains can
    // be given in their ASCII (xn--) form.
    if (c <= 0x20 || c >= 0x7F || c == '"' || c == '(' || c == ')' || c == ',' || c == ':' || c == ';' || c == '<' ||
        c == '>' || c == '[' || c == ']' || c == '\\') {
      return std::nullopt;
    }
    out += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  }
  return out;
}

namespace {

// `width` decimal digits (≤ 9), uniform: 2^32 - (2^32 mod 10^width) is the largest
// multiple of 10^width below 2^32; values at or above it are redrawn, so every string
// of digits is equally likely.
std::string uniform_digits(int width) {
  std::uint64_t range = 1;
  for (int i = 0; i < width; ++i) range *= 10;
  const std::uint64_t limit = (std::uint64_t{1} << 32) - ((std::uint64_t{1} << 32) % range);
  for (;;) {
    std::array<std::uint8_t, 4> b{};
    random::fill(b);
    const std::uint64_t v =
        (std::uint64_t{b[0]} << 24) | (std::uint64_t{b[1]} << 16) | (std::uint64_t{b[2]} << 8) | b[3];
    if (v >= limit) continue;
    auto s = std::to_string(v % range);
    return std::string(static_cast<std::size_t>(width) - s.size(), '0') + s;
  }
}

constexpr std::size_t kLongCodeDigits = 20;

}  // namespace

std::string generate_code() {
  return uniform_digits(6);
}

std::string generate_long_code() {
  std::string out;
  for (std::size_t group = 0; group < kLongCodeDigits / 4; ++group) {
    if (group > 0) out += ' ';
    out += uniform_digits(4);
  }
  return out;
}

std::optional<std::string> long_code_digits(std::string_view text) {
  // (digits gathered in a fixed array: GCC 12 misreads appends to a std::string here as
  // an overread, -Wstringop-overread)
  std::array<char, kLongCodeDigits> digits{};
  std::size_t n = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c >= '0' && c <= '9') {
      if (n == digits.size()) return std::nullopt;
      digits[n++] = c;
    } else if ((c != ' ' && c != '-') || n == 0 || i + 1 == text.size()) {
      return std::nullopt;  // a separator only between digits
    }
  }
  if (n != digits.size()) return std::nullopt;
  return std::string(digits.data(), digits.size());
}

bool is_code_format(std::string_view code) {
  if (code.size() != 6) return false;
  for (char c : code) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

std::string code_mac(std::string_view secret, std::string_view email, std::string_view code) {
  const std::string message = std::string(email) + ":" + std::string(code);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), out, &len);
  return to_hex(out, len);
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string generate_refresh_token() {
  std::array<std::uint8_t, 32> b{};
  random::fill(b);
  return base64url_encode(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
}

std::string successor_token(std::string_view secret, std::string_view token) {
  const std::string message = "refresh:" + std::string(token);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), out, &len);
  return base64url_encode(std::string_view(reinterpret_cast<const char*>(out), len));
}

std::string rate_subject(std::string_view ip) {
  in6_addr v6{};
  const std::string text(ip);
  if (text.find(':') == std::string::npos || inet_pton(AF_INET6, text.c_str(), &v6) != 1) return text;
  if (IN6_IS_ADDR_V4MAPPED(&v6)) {
    char v4[INET_ADDRSTRLEN];
    return inet_ntop(AF_INET, &v6.s6_addr[12], v4, sizeof v4) ? std::string(v4) : text;
  }
  for (int i = 8; i < 16; ++i) v6.s6_addr[i] = 0;
  char out[INET6_ADDRSTRLEN];
  if (!inet_ntop(AF_INET6, &v6, out, sizeof out)) return text;
  return std::string(out) + "/64";
}

std::string token_hash(std::string_view token) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof digest);
}

}  // namespace nimbus::auth
