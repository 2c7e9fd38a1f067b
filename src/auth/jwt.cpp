#include "auth/jwt.hpp"

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdexcept>

namespace nimbus::auth {

namespace json = boost::json;

namespace {

EVP_PKEY* raw(const std::shared_ptr<void>& p) {
  return static_cast<EVP_PKEY*>(p.get());
}
std::shared_ptr<void> own(EVP_PKEY* k) {
  return {k, [](void* p) { EVP_PKEY_free(static_cast<EVP_PKEY*>(p)); }};
}

}  // namespace

Key Key::from_private_pem(std::string kid, std::string_view pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  EVP_PKEY* k = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
  if (k == nullptr || EVP_PKEY_get_id(k) != EVP_PKEY_ED25519) {
    if (k) EVP_PKEY_free(k);
    throw std::invalid_argument("not an Ed25519 private key in PEM form");
  }
  return Key(std::move(kid), own(k), true);
}

Key Key::from_public_raw(std::string kid, std::string_view raw32) {
  EVP_PKEY* k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                            reinterpret_cast<const unsigned char*>(raw32.data()), raw32.size());
  if (k == nullptr) throw std::invalid_argument("not a 32-byte Ed25519 public key");
  return Key(std::move(kid), own(k), false);
}

Key Key::generate(std::string kid) {
  EVP_PKEY* k = nullptr;
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr),
                                                                  EVP_PKEY_CTX_free);
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) <= 0 || EVP_PKEY_keygen(ctx.get(), &k) <= 0) {
    throw std::runtime_error("Ed25519 key generation failed");
  }
  return Key(std::move(kid), own(k), true);
}

std::string Key::sign(std::string_view data) const {
  if (!has_private_) throw std::logic_error("verify-only key cannot sign");
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  std::string sig(64, '\0');
  std::size_t len = sig.size();
  if (EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, raw(pkey_)) <= 0 ||
      EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(data.data()), data.size()) <= 0) {
    throw std::runtime_error("Ed25519 signing failed");
  }
  sig.resize(len);
  return sig;
}

bool Key::verify(std::string_view data, std::string_view signature) const {
  if (signature.size() != 64) return false;
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  return EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, raw(pkey_)) > 0 &&
         EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                          reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
}

std::string Key::public_raw() const {
  std::string out(32, '\0');
  std::size_t len = out.size();
  EVP_PKEY_get_raw_public_key(raw(pkey_), reinterpret_cast<unsigned char*>(out.data()), &len);
  out.resize(len);
  return out;
}

std::string Key::private_pem() const {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  PEM_write_bio_PrivateKey(bio.get(), raw(pkey_), nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

std::string_view to_string(VerifyError e) {
  switch (e) {
    case VerifyError::malformed:
      return "malformed";
    case VerifyError::bad_header:
      return "bad_header";
    case VerifyError::unknown_key:
      return "unknown_key";
    case VerifyError::bad_signature:
      return "bad_signature";
    case VerifyError::expired:
      return "expired";
    case VerifyError::not_yet_valid:
      return "not_yet_valid";
    case VerifyError::wrong_issuer:
      return "wrong_issuer";
    case VerifyError::wrong_audience:
      return "wrong_audience";
    case VerifyError::missing_claims:
      return "missing_claims";
  }
  return "malformed";
}

KeySet::KeySet(std::vector<Key> keys, std::string signing_kid) : signing_kid_(std::move(signing_kid)) {
  for (auto& k : keys) keys_.emplace(k.kid(), std::move(k));
  auto it = keys_.find(signing_kid_);
  if (it == keys_.end() || !it->second.can_sign()) {
    throw std::invalid_argument("the signing key \"" + signing_kid_ + "\" is not among the private keys");
  }
}

std::string KeySet::sign(const Claims& c) const {
  json::object header{{"alg", "EdDSA"}, {"typ", "JWT"}, {"kid", signing_kid_}};
  json::object payload{{"iss", c.iss}, {"aud", c.aud}, {"sub", c.sub}, {"sid", c.sid},
                       {"jti", c.jti}, {"iat", c.iat}, {"exp", c.exp}};
  if (c.nbf) payload["nbf"] = *c.nbf;
  const auto signing_input =
      base64url_encode(json::serialize(header)) + "." + base64url_encode(json::serialize(payload));
  return signing_input + "." + base64url_encode(keys_.at(signing_kid_).sign(signing_input));
}

VerifyResult KeySet::verify(std::string_view token, std::string_view issuer, std::string_view audience,
                            std::chrono::system_clock::time_point now, std::chrono::seconds leeway) const {
  auto fail = [](VerifyError e) { return VerifyResult{std::nullopt, e}; };
  if (token.size() > 4096) return fail(VerifyError::malformed);
  const auto dot1 = token.find('.');
  const auto dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return fail(VerifyError::malformed);
  }
  const auto header_text = base64url_decode(token.substr(0, dot1));
  const auto payload_text = base64url_decode(token.substr(dot1 + 1, dot2 - dot1 - 1));
  const auto signature = base64url_decode(token.substr(dot2 + 1));
  if (!header_text || !payload_text || !signature) return fail(VerifyError::malformed);

  boost::system::error_code ec;
  auto header_value = json::parse(*header_text, ec);
  if (ec || !header_value.is_object()) return fail(VerifyError::malformed);
  const auto& header = header_value.as_object();
  for (const char* forbidden : {"jwk", "jku", "x5u", "x5c", "crit"}) {
    if (header.contains(forbidden)) return fail(VerifyError::bad_header);
  }
  const auto* alg = header.if_contains("alg");
  const auto* typ = header.if_contains("typ");
  const auto* kid = header.if_contains("kid");
  if (!alg || !alg->is_string() || alg->as_string() != "EdDSA") return fail(VerifyError::bad_header);
  if (typ && (!typ->is_string() || typ->as_string() != "JWT")) return fail(VerifyError::bad_header);
  if (!kid || !kid->is_string()) return fail(VerifyError::unknown_key);
  auto key = keys_.find(std::string(kid->as_string()));
  if (key == keys_.end()) return fail(VerifyError::unknown_key);
  if (!key->second.verify(token.substr(0, dot2), *signature)) return fail(VerifyError::bad_signature);

  // Only now, with the signature good, look at what the payload claims.
  auto payload_value = json::parse(*payload_text, ec);
  if (ec || !payload_value.is_object()) return fail(VerifyError::malformed);
  const auto& p = payload_value.as_object();
  auto str = [&p](const char* name) -> std::optional<std::string> {
    const auto* v = p.if_contains(name);
    if (!v || !v->is_string()) return std::nullopt;
    return std::string(v->as_string());
  };
  auto num = [&p](const char* name) -> std::optional<std::int64_t> {
    const auto* v = p.if_contains(name);
    if (!v || !v->is_int64()) return std::nullopt;
    return v->as_int64();
  };
  Claims c;
  auto iss = str("iss"), aud = str("aud"), sub = str("sub"), sid = str("sid"), jti = str("jti");
  auto iat = num("iat"), exp = num("exp");
  if (!iss || !aud || !sub || !sid || !jti || !iat || !exp) return fail(VerifyError::missing_claims);
  const auto t = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  if (*exp + leeway.count() <= t) return fail(VerifyError::expired);
  if (auto nbf = num("nbf"); nbf && *nbf - leeway.count() > t) return fail(VerifyError::not_yet_valid);
  if (p.contains("nbf") && !num("nbf")) return fail(VerifyError::malformed);
  if (*iat - leeway.count() > t) return fail(VerifyError::not_yet_valid);
  if (*iss != issuer) return fail(VerifyError::wrong_issuer);
  if (*aud != audience) return fail(VerifyError::wrong_audience);
  c.iss = *iss;
  c.aud = *aud;
  c.sub = *sub;
  c.sid = *sid;
  c.jti = *jti;
  c.iat = *iat;
  c.exp = *exp;
  c.nbf = num("nbf");
  return {c, VerifyError::malformed};
}

std::string KeySet::jwks() const {
  json::array keys;
  for (const auto& [kid, key] : keys_) {
    keys.push_back(json::object{{"kty", "OKP"},
                                {"crv", "Ed25519"},
                                {"x", base64url_encode(key.public_raw())},
                                {"kid", kid},
                                {"use", "sig"},
                                {"alg", "EdDSA"}});
  }
  return json::serialize(json::object{{"keys", std::move(keys)}});
}

}  // namespace nimbus::auth
