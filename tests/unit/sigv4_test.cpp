// SigV4 against the examples AWS publishes in its S3 documentation ("Signature
// Calculations for the Authorization Header" and "Authenticating Requests: Using Query
// Parameters"): same inputs, same signatures, byte for byte.
#include "storage/s3/sigv4.hpp"

#include <gtest/gtest.h>

using namespace nimbus::s3;

namespace {

const Credentials kAws{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1"};
const auto kWhen = std::chrono::system_clock::from_time_t(1369353600);  // 2013-05-24T00:00:00Z
const std::string kHost = "examplebucket.s3.amazonaws.com";

std::string authorization(const SignedRequest& r) {
  for (const auto& [k, v] : r.headers) {
    if (k == "authorization") return v;
  }
  return {};
}

}  // namespace

TEST(SigV4, AmzDate) {
  EXPECT_EQ(amz_date(kWhen), "20130524T000000Z");
}

TEST(SigV4, UriEncoding) {
  EXPECT_EQ(uri_encode("a b/c~d$e", true), "a%20b/c~d%24e");
  EXPECT_EQ(uri_encode("a b/c", false), "a%20b%2Fc");
  EXPECT_EQ(uri_encode("nimbus:app", false), "nimbus%3Aapp");
}

TEST(SigV4, AwsExampleGetObject) {
  auto r = sign(kAws, "GET", kHost, "/test.txt", {}, {{"range", "bytes=0-9"}}, kEmptyPayloadHash, kWhen);
  EXPECT_EQ(authorization(r),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

TEST(SigV4, AwsExamplePutObject) {
  const std::string payload = "Welcome to Amazon S3.";
  EXPECT_EQ(sha256_hex(payload), "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  auto r = sign(kAws, "PUT", kHost, "/" + uri_encode("test$file.text", true), {},
                {{"date", "Fri, 24 May 2013 00:00:00 GMT"}, {"x-amz-storage-class", "REDUCED_REDUNDANCY"}},
                sha256_hex(payload), kWhen);
  EXPECT_EQ(authorization(r),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, "
            "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

TEST(SigV4, AwsExampleGetBucketLifecycle) {
  auto r = sign(kAws, "GET", kHost, "/", {{"lifecycle", ""}}, {}, kEmptyPayloadHash, kWhen);
  EXPECT_NE(authorization(r).find("Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"),
            std::string::npos)
      << r.canonical_request;
}

TEST(SigV4, AwsExampleListObjects) {
  auto r = sign(kAws, "GET", kHost, "/", {{"max-keys", "2"}, {"prefix", "J"}}, {}, kEmptyPayloadHash, kWhen);
  EXPECT_NE(authorization(r).find("Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
            std::string::npos)
      << r.canonical_request;
}

TEST(SigV4, AwsExamplePresignedUrl) {
  auto url = presign(kAws, "GET", "https", kHost, "/test.txt", std::chrono::seconds(86400), kWhen);
  EXPECT_EQ(url,
            "https://examplebucket.s3.amazonaws.com/test.txt"
            "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
            "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
            "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
}

TEST(SigV4, ADifferentSecretGivesADifferentSignature) {
  Credentials wrong = kAws;
  wrong.secret_key += "x";
  auto a = sign(kAws, "GET", kHost, "/test.txt", {}, {}, kEmptyPayloadHash, kWhen);
  auto b = sign(wrong, "GET", kHost, "/test.txt", {}, {}, kEmptyPayloadHash, kWhen);
  EXPECT_NE(authorization(a), authorization(b));
}
