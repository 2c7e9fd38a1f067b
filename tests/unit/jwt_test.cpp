// Access-token signing and verification, including tokens made by an independent
// implementation (PyJWT with cryptography, from Debian) and a suite of forged tokens.
#include "auth/jwt.hpp"

#include <boost/json/parse.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

using namespace nimbus::auth;
using namespace std::chrono_literals;

namespace {

const auto kNow = std::chrono::system_clock::from_time_t(1'800'000'000);
const std::int64_t kT = 1'800'000'000;
constexpr std::string_view kIss = "https://nimbus.test";
constexpr std::string_view kAud = "nimbus-api";

Claims claims() {
  return {std::string(kIss), std::string(kAud), "user-1", "session-1", "jti-1", kT, kT + 900, std::nullopt};
}

// Runs python3 (Debian's, with python3-jwt) and returns its stdout.
std::string python(const std::string& script) {
  auto dir = std::filesystem::temp_directory_path() / ("nimbus-jwt-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto file = dir / "script.py";
  std::ofstream(file) << script;
  std::string out;
  FILE* p = ::popen(("/usr/bin/python3 " + file.string() + " 2>&1").c_str(), "r");
  char buf[4096];
  while (p && std::fgets(buf, sizeof buf, p)) out += buf;
  if (p) ::pclose(p);
  std::filesystem::remove_all(dir);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// A token with this header and payload, signed by `key` (or with `signature`).
std::string forge(const std::string& header, const std::string& payload, const Key* key,
                  const std::string& signature = "") {
  auto input = base64url_encode(header) + "." + base64url_encode(payload);
  return input + "." + base64url_encode(key ? key->sign(input) : signature);
}

std::string payload(std::int64_t exp = kT + 900, std::string aud = std::string(kAud),
                    std::string iss = std::string(kIss), std::string extra = "") {
  return R"({"iss":")" + iss + R"(","aud":")" + aud + R"(","sub":"user-1","sid":"s","jti":"j","iat":)" +
         std::to_string(kT) + R"(,"exp":)" + std::to_string(exp) + extra + "}";
}

class JwtTest : public ::testing::Test {
 protected:
  Key signing = Key::generate("k2");
  Key old = Key::generate("k1");
  KeySet keys{{old, signing}, "k2"};

  VerifyResult check(const std::string& token) const { return keys.verify(token, kIss, kAud, kNow); }
};

}  // namespace

TEST(Base64Url, RoundTripsAndRejectsNonCanonicalText) {
  for (const std::string& s :
       std::vector<std::string>{"", "f", "fo", "foo", "foob", "fooba", "foobar", std::string("\xff\xfe\x00", 3)}) {
    EXPECT_EQ(base64url_decode(base64url_encode(s)), s);
  }
  EXPECT_EQ(base64url_encode("\xfb\xff"), "-_8");
  EXPECT_FALSE(base64url_decode("ab=="));  // padding is not base64url
  EXPECT_FALSE(base64url_decode("a+/b"));  // standard alphabet
  EXPECT_FALSE(base64url_decode("abd"));   // leftover bits set: not canonical
  EXPECT_TRUE(base64url_decode("abA"));
  EXPECT_FALSE(base64url_decode("a"));  // no length gives 1 leftover char
}

TEST_F(JwtTest, SignedTokenVerifiesWithItsClaims) {
  auto token = keys.sign(claims());
  auto r = check(token);
  ASSERT_TRUE(r.ok()) << to_string(r.error);
  EXPECT_EQ(r.claims->sub, "user-1");
  EXPECT_EQ(r.claims->sid, "session-1");
  EXPECT_EQ(r.claims->exp, kT + 900);
  auto header = boost::json::parse(*base64url_decode(token.substr(0, token.find('.')))).as_object();
  EXPECT_EQ(header.at("alg").as_string(), "EdDSA");
  EXPECT_EQ(header.at("typ").as_string(), "JWT");
  EXPECT_EQ(header.at("kid").as_string(), "k2");
}

TEST_F(JwtTest, OldKeysStillVerifyAfterRotation) {
  KeySet before{{old}, "k1"};
  auto token = before.sign(claims());
  EXPECT_TRUE(check(token).ok()) << "a token signed before rotation stays valid";
}

TEST_F(JwtTest, JwksPublishesEveryPublicKey) {
  auto jwks = boost::json::parse(keys.jwks()).as_object();
  auto& list = jwks.at("keys").as_array();
  ASSERT_EQ(list.size(), 2U);
  for (auto& k : list) {
    EXPECT_EQ(k.at("kty").as_string(), "OKP");
    EXPECT_EQ(k.at("crv").as_string(), "Ed25519");
    EXPECT_FALSE(k.as_object().contains("d")) << "no private part";
  }
}

TEST_F(JwtTest, ForgedTokensAreRejected) {
  const auto good = payload();
  // alg none, unsigned.
  EXPECT_EQ(check(forge(R"({"alg":"none","typ":"JWT","kid":"k2"})", good, nullptr)).error, VerifyError::bad_header);
  EXPECT_EQ(check(base64url_encode(R"({"alg":"none"})") + "." + base64url_encode(good) + ".").error,
            VerifyError::bad_header);
  // HS256 "signed" with the public key as the HMAC secret (key confusion).
  EXPECT_EQ(check(forge(R"({"alg":"HS256","typ":"JWT","kid":"k2"})", good, nullptr, signing.public_raw())).error,
            VerifyError::bad_header);
  // RS256 claimed.
  EXPECT_EQ(check(forge(R"({"alg":"RS256","typ":"JWT","kid":"k2"})", good, &signing)).error, VerifyError::bad_header);
  // Unknown kid, signed by a key of the attacker's.
  auto attacker = Key::generate("k9");
  EXPECT_EQ(check(forge(R"({"alg":"EdDSA","typ":"JWT","kid":"k9"})", good, &attacker)).error, VerifyError::unknown_key);
  // Our kid, the attacker's signature.
  EXPECT_EQ(check(forge(R"({"alg":"EdDSA","typ":"JWT","kid":"k2"})", good, &attacker)).error,
            VerifyError::bad_signature);
  // The attacker's key embedded in the header (jwk) or named by URL (jku, x5u).
  const auto x = base64url_encode(attacker.public_raw());
  EXPECT_EQ(check(forge(R"({"alg":"EdDSA","kid":"k2","jwk":{"kty":"OKP","crv":"Ed25519","x":")" + x + R"("}})", good,
                        &attacker))
                .error,
            VerifyError::bad_header);
  EXPECT_EQ(check(forge(R"({"alg":"EdDSA","kid":"k2","jku":"http://evil.invalid/jwks"})", good, &attacker)).error,
            VerifyError::bad_header);
  EXPECT_EQ(check(forge(R"({"alg":"EdDSA","kid":"k2","x5u":"http://evil.invalid/cert"})", good, &attacker)).error,
            VerifyError::bad_header);
  // Tampered payload: signed, then sub changed.
  auto token = keys.sign(claims());
  auto dot1 = token.find('.'), dot2 = token.rfind('.');
  auto evil = base64url_encode(payload(kT + 900, std::string(kAud), std::string(kIss), R"(,"admin":true)"));
  EXPECT_EQ(check(token.substr(0, dot1 + 1) + evil + token.substr(dot2)).error, VerifyError::bad_signature);
  // Truncated signature, garbage, wrong part count.
  EXPECT_FALSE(check(token.substr(0, token.size() - 4)).ok());
  EXPECT_EQ(check("not.a.jwt").error, VerifyError::malformed);
  EXPECT_EQ(check(token + ".extra").error, VerifyError::malformed);
}

TEST_F(JwtTest, TimeAndAudienceAreChecked) {
  const std::string header = R"({"alg":"EdDSA","typ":"JWT","kid":"k2"})";
  EXPECT_EQ(check(forge(header, payload(kT - 60), &signing)).error, VerifyError::expired);
  EXPECT_TRUE(check(forge(header, payload(kT - 10), &signing)).ok()) << "within the 30 s leeway";
  EXPECT_EQ(
      check(forge(header,
                  payload(kT + 900, std::string(kAud), std::string(kIss), R"(,"nbf":)" + std::to_string(kT + 120)),
                  &signing))
          .error,
      VerifyError::not_yet_valid);
  EXPECT_EQ(check(forge(header, payload(kT + 900, "other-api"), &signing)).error, VerifyError::wrong_audience);
  EXPECT_EQ(check(forge(header, payload(kT + 900, std::string(kAud), "https://evil.invalid"), &signing)).error,
            VerifyError::wrong_issuer);
  EXPECT_EQ(
      check(forge(header, R"({"iss":"https://nimbus.test","aud":"nimbus-api","exp":1800000900})", &signing)).error,
      VerifyError::missing_claims);
}

TEST_F(JwtTest, TokensFromPyJwtVerify) {
  const auto pem = signing.private_pem();
  const auto token = python(R"(
import jwt
key = """)" + pem + R"("""
print(jwt.encode({"iss": "https://nimbus.test", "aud": "nimbus-api", "sub": "py-user", "sid": "s", "jti": "j",
                  "iat": 1800000000, "exp": 1800000900}, key, algorithm="EdDSA", headers={"kid": "k2"}))
)");
  auto r = check(token);
  ASSERT_TRUE(r.ok()) << token << " -> " << to_string(r.error);
  EXPECT_EQ(r.claims->sub, "py-user");
}

TEST_F(JwtTest, OurTokensVerifyInPyJwtAgainstTheJwks) {
  auto token = keys.sign(claims());
  const auto out = python(R"(
import json, jwt
jwks = json.loads(')" + keys.jwks() +
                          R"(')
token = ")" + token + R"("
kid = jwt.get_unverified_header(token)["kid"]
key = next(jwt.PyJWK(k) for k in jwks["keys"] if k["kid"] == kid)
claims = jwt.decode(token, key.key, algorithms=["EdDSA"], audience="nimbus-api", issuer="https://nimbus.test",
                    options={"verify_exp": False, "verify_iat": False})
print(claims["sub"])
)");
  EXPECT_EQ(out, "user-1");
}
