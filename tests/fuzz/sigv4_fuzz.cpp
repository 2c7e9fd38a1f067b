// SigV4 canonicalisation on arbitrary strings. Checks: uri_encode keeps only unreserved
// characters (and '/' when asked) and percent-decodes back to its input; the canonical
// query is sorted, '&'-joined pairs of encoded keys and values; signing any path,
// query and headers produces one Authorization header over sorted, lower-case names.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fuzzer/FuzzedDataProvider.h>
#include <string>
#include <utility>
#include <vector>

#include "fuzz_check.hpp"
#include "storage/s3/sigv4.hpp"

using namespace nimbus::s3;

namespace {

bool unreserved(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
         c == '.' || c == '~';
}

std::string percent_decode(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    FUZZ_CHECK(i + 2 < s.size());
    auto hex = [](char c) {
      FUZZ_CHECK((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'));  // uppercase, as AWS wants
      return c <= '9' ? c - '0' : c - 'A' + 10;
    };
    out.push_back(static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2])));
    i += 2;
  }
  return out;
}

void check_encoding(const std::string& text, bool keep_slash) {
  const auto enc = uri_encode(text, keep_slash);
  for (char c : enc) FUZZ_CHECK(unreserved(c) || c == '%' || (keep_slash && c == '/') || (c >= 'A' && c <= 'F'));
  FUZZ_CHECK(enc.size() <= 3 * text.size());
  FUZZ_CHECK(percent_decode(enc) == text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  const auto path = in.ConsumeRandomLengthString(256);
  check_encoding(path, true);
  check_encoding(path, false);

  QueryList query;
  const auto pairs = in.ConsumeIntegralInRange<int>(0, 8);
  for (int i = 0; i < pairs; ++i) {
    auto k = in.ConsumeRandomLengthString(32);
    query.emplace_back(std::move(k), in.ConsumeRandomLengthString(64));
  }
  const auto canonical = canonical_query(query);
  std::vector<std::string> parts;
  for (std::size_t at = 0; !canonical.empty() && at <= canonical.size();) {
    const auto amp = std::min(canonical.find('&', at), canonical.size());
    parts.push_back(canonical.substr(at, amp - at));
    at = amp + 1;
  }
  FUZZ_CHECK(parts.size() == query.size());
  // Sorted by encoded key, then by encoded value.
  std::vector<std::pair<std::string, std::string>> encoded;
  for (const auto& p : parts) {
    FUZZ_CHECK(std::count(p.begin(), p.end(), '=') == 1);
    for (char c : p) FUZZ_CHECK(unreserved(c) || c == '%' || c == '=');
    const auto eq = p.find('=');
    encoded.emplace_back(p.substr(0, eq), p.substr(eq + 1));
  }
  FUZZ_CHECK(std::is_sorted(encoded.begin(), encoded.end()));

  HeaderList headers;
  const auto n = in.ConsumeIntegralInRange<int>(0, 4);
  for (int i = 0; i < n; ++i) {
    auto name = in.ConsumeRandomLengthString(24);
    headers.emplace_back(std::move(name), in.ConsumeRandomLengthString(64));
  }
  const Credentials creds{"fuzz-access", "fuzz-secret", "us-east-1"};
  // Any second from 1970 to 2255 (the system clock counts nanoseconds in 64 bits).
  const auto now = std::chrono::system_clock::time_point(
      std::chrono::seconds(in.ConsumeIntegralInRange<std::int64_t>(0, 9'000'000'000)));
  const auto signed_request =
      sign(creds, "PUT", "s3.local:9000", uri_encode(path, true), query, headers, kUnsignedPayload, now);
  for (const auto& [name, value] : signed_request.headers) {
    FUZZ_CHECK(std::none_of(name.begin(), name.end(), [](char c) { return c >= 'A' && c <= 'Z'; }));
  }
  // The signature comes last, over the sorted names (the caller's own headers never
  // include one).
  FUZZ_CHECK(signed_request.headers.back().first == "authorization");
  FUZZ_CHECK(signed_request.headers.back().second.starts_with("AWS4-HMAC-SHA256 Credential=fuzz-access/"));
  FUZZ_CHECK(std::is_sorted(signed_request.headers.begin(), signed_request.headers.end() - 1));
  FUZZ_CHECK(signed_request.string_to_sign.starts_with("AWS4-HMAC-SHA256\n"));
  return 0;
}
