// Access-token verification on arbitrary strings, against a fixed key set. Mode 0 feeds
// the bytes as a token; mode 1 signs arbitrary header and payload JSON with the real
// key first, so the claim checks behind the signature are reached too. Checks: a token
// that verifies names our issuer and audience and is unexpired at `now`; its claims,
// signed again, verify to the same claims.
#include <boost/json/parse.hpp>
#include <chrono>
#include <cstdint>
#include <fuzzer/FuzzedDataProvider.h>
#include <string>

#include "auth/jwt.hpp"
#include "fuzz_check.hpp"

using namespace nimbus::auth;

namespace {

constexpr std::string_view kIssuer = "nimbus", kAudience = "nimbus-api";
const auto kNow = std::chrono::system_clock::time_point(std::chrono::seconds(1'767'225'600));  // 2026-01-01

// An Ed25519 key from a fixed 32-byte seed (PKCS#8: a constant prefix, then the seed):
// the same key on every run, so saved crashes replay. A fuzzing key, not a credential.
Key seeded_key(std::string kid, unsigned char fill) {
  std::string der("\x30\x2e\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x70\x04\x22\x04\x20", 16);
  der.append(32, static_cast<char>(fill));
  static constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string b64;
  for (std::size_t i = 0; i < der.size(); i += 3) {  // 48 bytes: no padding
    const auto v = (static_cast<unsigned char>(der[i]) << 16) | (static_cast<unsigned char>(der[i + 1]) << 8) |
                   static_cast<unsigned char>(der[i + 2]);
    for (int s = 18; s >= 0; s -= 6) b64.push_back(kB64[(v >> s) & 63]);
  }
  return Key::from_private_pem(std::move(kid), "-----BEGIN PRIVATE KEY-----\n" + b64 + "\n-----END PRIVATE KEY-----\n");
}

const KeySet& keys() {
  static const KeySet set = [] {
    std::vector<Key> all;
    all.push_back(seeded_key("k1", 0x11));
    all.push_back(Key::from_public_raw("k2", seeded_key("k2", 0x22).public_raw()));
    return KeySet(std::move(all), "k1");
  }();
  return set;
}

// The kid the header names, as the verifier reads it.
std::string names_key(const std::string& header) {
  boost::system::error_code ec;
  const auto v = boost::json::parse(header, ec);
  if (ec || !v.is_object()) return {};
  const auto* kid = v.as_object().if_contains("kid");
  return kid && kid->is_string() ? std::string(kid->as_string()) : std::string();
}

void check(const VerifyResult& r) {
  if (!r.ok()) return;
  const auto& c = *r.claims;
  FUZZ_CHECK(c.iss == kIssuer && c.aud == kAudience);
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(kNow.time_since_epoch()).count();
  FUZZ_CHECK(c.exp + 30 > now);
  FUZZ_CHECK(c.iat - 30 <= now);
  const auto again = keys().verify(keys().sign(c), kIssuer, kAudience, kNow);
  FUZZ_CHECK(again.ok());
  const auto& d = *again.claims;
  FUZZ_CHECK(d.sub == c.sub && d.sid == c.sid && d.jti == c.jti && d.iat == c.iat && d.exp == c.exp && d.nbf == c.nbf);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  const bool sign_first = in.ConsumeBool();
  if (!sign_first) {
    check(keys().verify(in.ConsumeRemainingBytesAsString(), kIssuer, kAudience, kNow));
    return 0;
  }
  const auto header = in.ConsumeRandomLengthString(512);
  const auto payload = in.ConsumeRemainingBytesAsString();
  const auto input = base64url_encode(header) + "." + base64url_encode(payload);
  static const Key signer = seeded_key("k1", 0x11);
  const auto signature = signer.sign(input);
  const auto token = input + "." + base64url_encode(signature);
  const auto r = keys().verify(token, kIssuer, kAudience, kNow);
  if (r.error == VerifyError::bad_signature) FUZZ_CHECK(names_key(header) != "k1");  // signed by k1
  check(r);
  return 0;
}
