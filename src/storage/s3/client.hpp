// An S3 client: libcurl for HTTP, SigV4 for authentication. Talks to AWS S3, MinIO,
// Ceph and Swift's s3api alike (path-style addressing by default).
//
// libcurl's easy interface blocks, so every request runs on the client's own small
// thread pool and the calling coroutine awaits it: no I/O thread ever blocks. Each
// pool thread keeps one curl handle, so connections to the endpoint are reused.
//
// Error policy: a missing object is a value (nullopt/false); S3 refusing a request is
// s3::Error (status + S3 code); an unreachable endpoint or 5xx after retries is
// DependencyUnavailable. Idempotent requests are retried on 5xx and network errors.
//
// Deadlines: every call ends within `call_timeout` (retries and the wait for a pool
// thread included; a streamed upload gets at least one whole `request_timeout`), or
// fails with DependencyUnavailable; the request still running on its thread is then
// aborted at its next progress tick.
#pragma once

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "storage/s3/sigv4.hpp"

namespace nimbus::s3 {

struct Config {
  std::string endpoint = "http://127.0.0.1:8090";  // scheme://host[:port]
  // Where clients reach S3 for presigned URLs, if not at `endpoint` (e.g. through a
  // public hostname). The signature covers the host, so this is signed as such.
  std::string public_endpoint;
  std::string bucket = "nimbus";
  Credentials credentials;
  std::chrono::milliseconds connect_timeout{2'000};
  std::chrono::milliseconds request_timeout{60'000};
  std::chrono::milliseconds call_timeout{30'000};
  int retries = 3;
  int threads = 8;

  // NIMBUS_S3_ENDPOINT, NIMBUS_S3_PUBLIC_ENDPOINT, NIMBUS_S3_BUCKET, NIMBUS_S3_REGION,
  // NIMBUS_S3_ACCESS_KEY, NIMBUS_S3_SECRET_KEY, NIMBUS_S3_THREADS, NIMBUS_S3_TIMEOUT,
  // NIMBUS_S3_CALL_TIMEOUT.
  static Config from_env();
};

class Error : public std::runtime_error {
 public:
  Error(long status, std::string code, const std::string& message)
      : std::runtime_error(message), status_(status), code_(std::move(code)) {}
  long status() const { return status_; }
  const std::string& code() const { return code_; }

 private:
  long status_;
  std::string code_;
};

struct ObjectInfo {
  std::uint64_t size = 0;
  std::string content_type;
  std::string etag;
};

struct Listing {
  std::vector<std::pair<std::string, std::uint64_t>> objects;  // key, size
  std::optional<std::string> next;                             // continuation token
};

struct Part {
  int number;
  std::string etag;
};

// Pulls the next bytes of a streamed upload into `buf`; returns how many (0 = end,
// kReadAbort = fail the upload). Runs on a pool thread.
using Reader = std::function<std::size_t(char* buf, std::size_t size)>;
inline constexpr std::size_t kReadAbort = 0x10000000;  // CURL_READFUNC_ABORT
// Receives the next bytes of a download; returns false to abort. Runs on a pool thread.
using Writer = std::function<bool(const char* data, std::size_t size)>;

class Client {
 public:
  explicit Client(Config config);
  ~Client();

  boost::asio::awaitable<std::string> put_object(std::string key, std::string data, std::string content_type);
  // Streams `size` bytes from `read` without buffering the object (UNSIGNED-PAYLOAD).
  boost::asio::awaitable<std::string> put_object_stream(std::string key, std::uint64_t size, Reader read,
                                                        std::string content_type);
  boost::asio::awaitable<std::optional<std::string>> get_object(std::string key);
  // Streams the object to `write`; false when it does not exist.
  boost::asio::awaitable<bool> get_object_to(std::string key, Writer write);
  boost::asio::awaitable<std::optional<ObjectInfo>> head_object(std::string key);
  boost::asio::awaitable<void> delete_object(std::string key);
  // Server-side copy of `from` to `to` with `content_type`; false when `from` does not
  // exist.
  boost::asio::awaitable<bool> copy_object(std::string from, std::string to, std::string content_type);
  boost::asio::awaitable<Listing> list_objects(std::string prefix, std::optional<std::string> continuation = {},
                                               int max_keys = 1000);

  boost::asio::awaitable<std::string> create_multipart_upload(std::string key, std::string content_type);
  boost::asio::awaitable<std::string> upload_part(std::string key, std::string upload_id, int number, std::string data);
  boost::asio::awaitable<void> complete_multipart_upload(std::string key, std::string upload_id,
                                                         std::vector<Part> parts);
  boost::asio::awaitable<void> abort_multipart_upload(std::string key, std::string upload_id);

  // Presigned URLs for clients to GET or PUT an object directly, valid for `expires`.
  // `query`: e.g. response-content-type; `signed_headers`: what the PUT must carry.
  std::string presign_get(const std::string& key, std::chrono::seconds expires, const QueryList& query = {}) const;
  // `signed_at`: the instant the URL's validity starts from (the caller's clock).
  std::string presign_put(const std::string& key, std::chrono::seconds expires, const HeaderList& signed_headers = {},
                          std::chrono::system_clock::time_point signed_at = std::chrono::system_clock::now()) const;

  // Every request in flight, and every later one, fails at once (DependencyUnavailable):
  // for a shutdown that must not wait out storage timeouts.
  void cancel_requests() { cancelled_ = true; }

  // Readiness: HEAD on the bucket.
  boost::asio::awaitable<bool> ping();

  const Config& config() const { return config_; }

 private:
  struct Request;
  struct Response;
  struct Call;
  Response perform(const Request& request, const Call& call) const;  // blocking: pool threads only
  template <typename Fn>
  boost::asio::awaitable<std::invoke_result_t<Fn, const Call&>> offload(Fn fn, std::chrono::milliseconds timeout);
  template <typename Fn>
  boost::asio::awaitable<std::invoke_result_t<Fn, const Call&>> offload(Fn fn) {
    return offload(std::move(fn), config_.call_timeout);
  }
  std::string path_for(const std::string& key) const;

  Config config_;
  std::string scheme_, host_;                // of endpoint
  std::string public_scheme_, public_host_;  // of public_endpoint
  std::atomic<bool> cancelled_{false};
  boost::asio::thread_pool pool_;
};

}  // namespace nimbus::s3
