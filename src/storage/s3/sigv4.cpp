#include "storage/s3/sigv4.hpp"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/hex.hpp"
#include "core/sha256.hpp"

namespace nimbus::s3 {
namespace {

std::string hmac(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return std::string(v);
}

std::string lower(std::string_view v) {
  std::string out(v);
  // ASCII only, whatever the process locale: header names are tokens.
  for (auto& c : out) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  return out;
}

std::string scope(const Credentials& creds, std::string_view date) {
  return std::string(date) + "/" + creds.region + "/s3/aws4_request";
}

std::string signature(const Credentials& creds, std::string_view date, std::string_view string_to_sign) {
  auto k_date = hmac("AWS4" + creds.secret_key, date);
  auto k_region = hmac(k_date, creds.region);
  auto k_service = hmac(k_region, "s3");
  auto k_signing = hmac(k_service, "aws4_request");
  auto sig = hmac(k_signing, string_to_sign);
  return to_hex(reinterpret_cast<const unsigned char*>(sig.data()), sig.size());
}

}  // namespace

std::string uri_encode(std::string_view text, bool keep_slash) {
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size() * 3);
  for (unsigned char c : text) {
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (alnum || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(digits[c >> 4]);
      out.push_back(digits[c & 0xF]);
    }
  }
  return out;
}

std::string sha256_hex(std::string_view data) {
  return Sha256::hex_of(data);
}

std::string amz_date(std::chrono::system_clock::time_point t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[20];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

std::string canonical_query(QueryList query) {
  for (auto& [k, v] : query) {
    k = uri_encode(k, false);
    v = uri_encode(v, false);
  }
  std::sort(query.begin(), query.end());
  std::string out;
  for (const auto& [k, v] : query) {
    if (!out.empty()) out += '&';
    out += k + "=" + v;
  }
  return out;
}

SignedRequest sign(const Credentials& creds, std::string_view method, std::string_view host, std::string_view path,
                   const QueryList& query, const HeaderList& headers, std::string_view payload_hash,
                   std::chrono::system_clock::time_point now) {
  const auto datetime = amz_date(now);
  const auto date = datetime.substr(0, 8);

  HeaderList all = {
      {"host", std::string(host)}, {"x-amz-content-sha256", std::string(payload_hash)}, {"x-amz-date", datetime}};
  for (const auto& [k, v] : headers) all.emplace_back(lower(k), trim(v));
  std::sort(all.begin(), all.end());

  std::string canonical_headers, signed_headers;
  for (const auto& [k, v] : all) {
    canonical_headers += k + ":" + v + "\n";
    if (!signed_headers.empty()) signed_headers += ';';
    signed_headers += k;
  }

  SignedRequest out;
  out.canonical_request = std::string(method) + "\n" + std::string(path) + "\n" + canonical_query(query) + "\n" +
                          canonical_headers + "\n" + signed_headers + "\n" + std::string(payload_hash);
  out.string_to_sign =
      "AWS4-HMAC-SHA256\n" + datetime + "\n" + scope(creds, date) + "\n" + sha256_hex(out.canonical_request);
  const auto sig = signature(creds, date, out.string_to_sign);
  out.headers = all;
  out.headers.emplace_back("authorization", "AWS4-HMAC-SHA256 Credential=" + creds.access_key + "/" +
                                                scope(creds, date) + ", SignedHeaders=" + signed_headers +
                                                ", Signature=" + sig);
  return out;
}

std::string presign(const Credentials& creds, std::string_view method, std::string_view scheme, std::string_view host,
                    std::string_view path, std::chrono::seconds expires, std::chrono::system_clock::time_point now,
                    const QueryList& extra_query, const HeaderList& signed_headers) {
  const auto datetime = amz_date(now);
  const auto date = datetime.substr(0, 8);
  HeaderList headers = {{"host", std::string(host)}};
  for (const auto& [k, v] : signed_headers) headers.emplace_back(lower(k), trim(v));
  std::sort(headers.begin(), headers.end());
  std::string canonical_headers, names;
  for (const auto& [k, v] : headers) {
    canonical_headers += k + ":" + v + "\n";
    names += (names.empty() ? "" : ";") + k;
  }
  QueryList query = extra_query;
  query.emplace_back("X-Amz-Algorithm", "AWS4-HMAC-SHA256");
  query.emplace_back("X-Amz-Credential", creds.access_key + "/" + scope(creds, date));
  query.emplace_back("X-Amz-Date", datetime);
  query.emplace_back("X-Amz-Expires", std::to_string(expires.count()));
  query.emplace_back("X-Amz-SignedHeaders", names);
  const auto cq = canonical_query(query);
  const auto canonical_request = std::string(method) + "\n" + std::string(path) + "\n" + cq + "\n" + canonical_headers +
                                 "\n" + names + "\n" + std::string(kUnsignedPayload);
  const auto string_to_sign =
      "AWS4-HMAC-SHA256\n" + datetime + "\n" + scope(creds, date) + "\n" + sha256_hex(canonical_request);
  return std::string(scheme) + "://" + std::string(host) + std::string(path) + "?" + cq +
         "&X-Amz-Signature=" + signature(creds, date, string_to_sign);
}

}  // namespace nimbus::s3
