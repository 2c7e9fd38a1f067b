// AWS Signature Version 4 for S3: signed request headers and presigned URLs.
//
// Pure functions of their inputs (the clock is a parameter), so unit tests check them
// against AWS's published examples byte for byte.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nimbus::s3 {

struct Credentials {
  std::string access_key;  // for Swift's s3api: "account:user"
  std::string secret_key;
  std::string region = "us-east-1";
};

using HeaderList = std::vector<std::pair<std::string, std::string>>;
using QueryList = std::vector<std::pair<std::string, std::string>>;  // decoded keys and values

struct SignedRequest {
  HeaderList headers;             // to send: host, x-amz-date, x-amz-content-sha256, authorization, and the caller's
  std::string canonical_request;  // for debugging signature mismatches
  std::string string_to_sign;
};

inline constexpr std::string_view kUnsignedPayload = "UNSIGNED-PAYLOAD";
inline constexpr std::string_view kEmptyPayloadHash =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

// AWS URI encoding: unreserved characters kept, everything else %XX (uppercase);
// '/' kept when `keep_slash` (object keys in paths).
std::string uri_encode(std::string_view text, bool keep_slash);
std::string sha256_hex(std::string_view data);
// "20130524T000000Z"
std::string amz_date(std::chrono::system_clock::time_point t);

// Signs a request. `path` is the already-encoded absolute path ("/bucket/key");
// `headers` are extra headers to sign (e.g. content-type, range), lower-case names.
SignedRequest sign(const Credentials& creds, std::string_view method, std::string_view host, std::string_view path,
                   const QueryList& query, const HeaderList& headers, std::string_view payload_hash,
                   std::chrono::system_clock::time_point now);

// A presigned URL ("scheme://host/path?X-Amz-..."), valid for `expires`. Besides host,
// `signed_headers` (lower-case names) are signed: the request must carry exactly these
// values (e.g. content-length and content-type, to bind an upload to what was declared).
std::string presign(const Credentials& creds, std::string_view method, std::string_view scheme, std::string_view host,
                    std::string_view path, std::chrono::seconds expires, std::chrono::system_clock::time_point now,
                    const QueryList& extra_query = {}, const HeaderList& signed_headers = {});

// The query string in SigV4 canonical form (sorted, encoded).
std::string canonical_query(QueryList query);

}  // namespace nimbus::s3
