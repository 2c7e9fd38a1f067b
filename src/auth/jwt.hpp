// Access tokens: JWTs signed with Ed25519 (alg "EdDSA").
//
// Verification trusts nothing the token says about how to verify it: the algorithm is
// allow-listed (EdDSA only — never "none", HS*, RS*), the key is looked up by `kid` in
// our own key set (never a `jwk`, `jku`, `x5u` or `x5c` from the token, which are refused
// outright), and `exp`, `nbf`, `iss`, `aud` are checked with a small leeway. Several keys
// may verify while one signs, so keys rotate without downtime. The clock is a parameter.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/base64url.hpp"

namespace nimbus::auth {

using nimbus::base64url_decode;
using nimbus::base64url_encode;

// One Ed25519 key pair (the private half may be absent: verify-only).
class Key {
 public:
  // From a PEM private key ("-----BEGIN PRIVATE KEY-----"); throws std::invalid_argument.
  static Key from_private_pem(std::string kid, std::string_view pem);
  // From the raw 32-byte public key (tests, JWKS of others).
  static Key from_public_raw(std::string kid, std::string_view raw32);
  static Key generate(std::string kid);

  const std::string& kid() const { return kid_; }
  bool can_sign() const { return has_private_; }
  std::string sign(std::string_view data) const;  // 64-byte signature
  bool verify(std::string_view data, std::string_view signature) const;
  std::string public_raw() const;  // 32 bytes
  std::string private_pem() const;

 private:
  Key(std::string kid, std::shared_ptr<void> pkey, bool has_private)
      : kid_(std::move(kid)), pkey_(std::move(pkey)), has_private_(has_private) {}
  std::string kid_;
  std::shared_ptr<void> pkey_;  // EVP_PKEY
  bool has_private_ = false;
};

struct Claims {
  std::string iss, aud, sub, sid, jti;
  std::int64_t iat = 0, exp = 0;
  std::optional<std::int64_t> nbf;
};

enum class VerifyError {
  malformed,    // not three base64url parts of JSON
  bad_header,   // typ/alg wrong, or key material/URLs in the header
  unknown_key,  // kid not in our key set
  bad_signature,
  expired,
  not_yet_valid,
  wrong_issuer,
  wrong_audience,
  missing_claims,
};
std::string_view to_string(VerifyError e);

struct VerifyResult {
  std::optional<Claims> claims;
  VerifyError error = VerifyError::malformed;
  bool ok() const { return claims.has_value(); }
};

// How far past `exp` (and before `iat`/`nbf`) a token is still accepted: the clocks of
// the instances that sign and verify differ by that much at most. Whatever must outlive
// a token (a revocation) outlives exp plus this.
inline constexpr std::chrono::seconds kClockLeeway{30};

class KeySet {
 public:
  // `signing_kid` must name a key that can sign.
  KeySet(std::vector<Key> keys, std::string signing_kid);

  std::string sign(const Claims& claims) const;
  VerifyResult verify(std::string_view token, std::string_view issuer, std::string_view audience,
                      std::chrono::system_clock::time_point now, std::chrono::seconds leeway = kClockLeeway) const;
  // {"keys":[{"kty":"OKP","crv":"Ed25519","x":...,"kid":...,"use":"sig","alg":"EdDSA"}]}
  std::string jwks() const;

 private:
  std::map<std::string, Key> keys_;
  std::string signing_kid_;
};

}  // namespace nimbus::auth
