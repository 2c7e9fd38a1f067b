#include "auth/codes.hpp"

#include <map>

#include <gtest/gtest.h>

using namespace nimbus::auth;

TEST(Email, NormalizesAndRejects) {
  EXPECT_EQ(normalize_email("  Alice@Example.COM "), "alice@example.com");
  EXPECT_EQ(normalize_email("a.b+tag@sub.example.org"), "a.b+tag@sub.example.org");
  for (const char* bad :
       {"", "alice", "@example.com", "alice@", "alice@example", "a@b@c.com", "a b@c.com", "alice@.com",
        "alice@example..com", "alice@example.com.", "al\"ice@example.com", "alice@exa<mple.com"}) {
    EXPECT_FALSE(normalize_email(bad)) << bad;
  }
  EXPECT_FALSE(normalize_email(std::string(250, 'a') + "@x.io"));
  EXPECT_FALSE(normalize_email(std::string("a\r\nBcc: x@y.z@x.io")));
}

TEST(Codes, SixDigitsUniformEnough) {
  std::map<char, int> first_digit;
  for (int i = 0; i < 5000; ++i) {
    auto c = generate_code();
    ASSERT_TRUE(is_code_format(c)) << c;
    ++first_digit[c[0]];
  }
  EXPECT_EQ(first_digit.size(), 10U);
  for (auto& [d, n] : first_digit) EXPECT_GT(n, 350) << d;  // 500 expected each
  EXPECT_FALSE(is_code_format("12345"));
  EXPECT_FALSE(is_code_format("12345a"));
}

TEST(Codes, LongCodesAreTwentyDigitsInGroupsAndReadBackAsTyped) {
  std::map<char, int> digit;
  for (int i = 0; i < 500; ++i) {
    const auto c = generate_long_code();
    ASSERT_EQ(c.size(), 24U) << c;
    ASSERT_EQ(c[4], ' ') << c;
    const auto digits = long_code_digits(c);
    ASSERT_TRUE(digits) << c;
    EXPECT_FALSE(is_code_format(*digits));
    for (char d : *digits) ++digit[d];
  }
  EXPECT_EQ(digit.size(), 10U);
  for (auto& [d, n] : digit) EXPECT_GT(n, 800) << d;  // 1000 expected each
  EXPECT_EQ(long_code_digits("1234-5678-9012-3456-7890"), "12345678901234567890");
  EXPECT_EQ(long_code_digits("12345678901234567890"), "12345678901234567890");
  for (const char* bad : {"", "123456", "1234 5678 9012 3456 789", "1234 5678 9012 3456 78901", " 1234567890123456789",
                          "1234567890123456789 ", "1234_5678_9012_3456_7890", "1234 5678 9012 3456 789x"}) {
    EXPECT_FALSE(long_code_digits(bad)) << bad;
  }
}

TEST(Codes, MacBindsEmailAndCode) {
  const std::string secret(32, 's');
  auto a = code_mac(secret, "a@x.io", "123456");
  EXPECT_EQ(a.size(), 64U);
  EXPECT_EQ(a, code_mac(secret, "a@x.io", "123456"));
  EXPECT_NE(a, code_mac(secret, "b@x.io", "123456"));
  EXPECT_NE(a, code_mac(secret, "a@x.io", "123457"));
  EXPECT_NE(a, code_mac(std::string(32, 't'), "a@x.io", "123456"));
  EXPECT_TRUE(constant_time_equal(a, a));
  EXPECT_FALSE(constant_time_equal(a, a.substr(1)));
}

TEST(Tokens, RefreshTokensAre256BitAndHashed) {
  auto t = generate_refresh_token();
  EXPECT_EQ(t.size(), 43U);  // 32 bytes in base64url
  EXPECT_NE(t, generate_refresh_token());
  EXPECT_EQ(token_hash(t).size(), 32U);
}

TEST(Emails, NonAsciiAddressesAreRefusedNotStored) {
  // Two spellings of one Unicode address must not become two accounts, and the mail
  // path has no SMTPUTF8: refused up front (422), never a failure after the code.
  EXPECT_FALSE(normalize_email("j\xC3\xB6rg@example.com"));
  EXPECT_FALSE(
      normalize_email("user@b\xC3\xBC"
                      "cher.example"));
  EXPECT_FALSE(normalize_email("user@example.com\x7F"));
  EXPECT_EQ(normalize_email("User@XN--BCHER-KVA.example").value_or(""), "user@xn--bcher-kva.example");
}

TEST(Tokens, SuccessorIsDerivedSoReplaysGetTheSameOne) {
  const std::string secret(32, 's');
  auto t = generate_refresh_token();
  auto next = successor_token(secret, t);
  EXPECT_EQ(next.size(), 43U);
  EXPECT_EQ(next, successor_token(secret, t));
  EXPECT_NE(next, t);
  EXPECT_NE(next, successor_token(std::string(32, 't'), t));
  EXPECT_NE(successor_token(secret, next), next);
}

TEST(RateSubjects, IPv6CountsPerSlash64) {
  EXPECT_EQ(rate_subject("203.0.113.7"), "203.0.113.7");
  EXPECT_EQ(rate_subject("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
  EXPECT_EQ(rate_subject("2001:db8:1:2::1"), rate_subject("2001:db8:1:2:ffff::9"));
  EXPECT_NE(rate_subject("2001:db8:1:2::1"), rate_subject("2001:db8:1:3::1"));
  EXPECT_EQ(rate_subject("::ffff:198.51.100.4"), "198.51.100.4");
  EXPECT_EQ(rate_subject("not an address"), "not an address");
}
