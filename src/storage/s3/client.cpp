#include "storage/s3/client.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/url/parse.hpp>
#include <cstring>
#include <curl/curl.h>
#include <thread>
#include <variant>

#include "core/env.hpp"
#include "core/errors.hpp"
#include "core/log.hpp"
#include "core/oneshot.hpp"

namespace nimbus::s3 {

namespace asio = boost::asio;
constexpr const char* kDependency = "s3";

Config Config::from_env() {
  Config c;
  c.endpoint = env::string("NIMBUS_S3_ENDPOINT", c.endpoint);
  c.public_endpoint = env::string("NIMBUS_S3_PUBLIC_ENDPOINT", "");
  c.bucket = env::string("NIMBUS_S3_BUCKET", c.bucket);
  c.credentials.region = env::string("NIMBUS_S3_REGION", c.credentials.region);
  c.credentials.access_key = env::required_string("NIMBUS_S3_ACCESS_KEY");
  c.credentials.secret_key = env::required_string("NIMBUS_S3_SECRET_KEY");
  c.threads = static_cast<int>(env::integer("NIMBUS_S3_THREADS", c.threads, 1, 256));
  c.request_timeout = env::duration("NIMBUS_S3_TIMEOUT", c.request_timeout);
  c.call_timeout = env::duration("NIMBUS_S3_CALL_TIMEOUT", c.call_timeout);
  return c;
}

namespace {

struct CurlGlobal {
  CurlGlobal() { curl_global_init(CURL_GLOBAL_DEFAULT); }
};

std::pair<std::string, std::string> split_endpoint(const std::string& endpoint) {
  auto url = boost::urls::parse_uri(endpoint);
  if (!url || (url->scheme() != "http" && url->scheme() != "https") || url->host().empty()) {
    throw env::ConfigError("S3 endpoint \"" + endpoint + "\" is not an http(s)://host[:port] URL");
  }
  std::string host = url->host();
  if (url->has_port()) host += ":" + std::string(url->port());
  return {std::string(url->scheme()), host};
}

// The text of the first <tag>...</tag> in an S3 XML answer (their shapes are flat and
// fixed, so a scan is enough; values are XML-unescaped for the few entities S3 uses).
std::string xml_value(std::string_view body, std::string_view tag, std::size_t* from = nullptr) {
  const std::string open = "<" + std::string(tag) + ">", close = "</" + std::string(tag) + ">";
  const auto start = body.find(open, from ? *from : 0);
  if (start == std::string_view::npos) return {};
  const auto end = body.find(close, start);
  if (end == std::string_view::npos) return {};
  if (from) *from = end + close.size();
  std::string v(body.substr(start + open.size(), end - start - open.size()));
  static const std::pair<std::string_view, std::string_view> entities[] = {
      {"&quot;", "\""}, {"&apos;", "'"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&amp;", "&"}};
  for (const auto& [from_text, to] : entities) {
    for (auto pos = v.find(from_text); pos != std::string::npos; pos = v.find(from_text, pos + to.size())) {
      v.replace(pos, from_text.size(), to);
    }
  }
  return v;
}

std::string xml_escape(std::string_view v) {
  std::string out;
  for (char c : v) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

}  // namespace

struct Client::Request {
  std::string method;
  std::string key;  // empty: the bucket itself
  QueryList query;
  HeaderList headers;                      // extra headers, signed
  std::optional<std::string_view> body;    // buffered body (signed by hash)
  std::optional<std::uint64_t> body_size;  // streamed body size
  const Reader* reader = nullptr;
  const Writer* writer = nullptr;  // streamed download
  bool retry = true;               // idempotent
};

// One call's budget, shared by the coroutine that waits and the thread that performs.
struct Client::Call {
  std::chrono::steady_clock::time_point deadline;
  std::shared_ptr<std::atomic<bool>> abandoned = std::make_shared<std::atomic<bool>>(false);
};

struct Client::Response {
  long status = 0;
  std::string body;
  HeaderList headers;  // lower-case names

  std::string header(std::string_view name) const {
    for (const auto& [k, v] : headers) {
      if (k == name) return v;
    }
    return {};
  }
};

Client::Client(Config config) : config_(std::move(config)), pool_(static_cast<std::size_t>(config_.threads)) {
  static CurlGlobal global;
  std::tie(scheme_, host_) = split_endpoint(config_.endpoint);
  std::tie(public_scheme_, public_host_) =
      split_endpoint(config_.public_endpoint.empty() ? config_.endpoint : config_.public_endpoint);
}

Client::~Client() {
  pool_.join();
}

std::string Client::path_for(const std::string& key) const {
  return "/" + uri_encode(config_.bucket, false) + (key.empty() ? "" : "/" + uri_encode(key, true));
}

template <typename Fn>
asio::awaitable<std::invoke_result_t<Fn, const Client::Call&>> Client::offload(Fn fn,
                                                                               std::chrono::milliseconds timeout) {
  // The blocking call runs on the pool; its result (or exception) comes back through a
  // thread-safe one-shot channel to this coroutine, which resumes on its own executor.
  using R = std::invoke_result_t<Fn, const Call&>;
  using Value = std::conditional_t<std::is_void_v<R>, std::monostate, R>;
  using Outcome = std::pair<std::optional<Value>, std::exception_ptr>;
  Call call{std::chrono::steady_clock::now() + timeout};
  auto shot = std::make_shared<OneShot<Outcome>>(co_await asio::this_coro::executor);
  asio::post(pool_, [fn = std::move(fn), shot, call]() mutable {
    try {
      if constexpr (std::is_void_v<R>) {
        fn(call);
        shot->set({std::monostate{}, nullptr});
      } else {
        shot->set({fn(call), nullptr});
      }
    } catch (...) {
      shot->set({std::nullopt, std::current_exception()});
    }
  });
  // perform() keeps to the deadline itself; this one also covers the wait for a free
  // pool thread, and a thread stuck where curl's timeouts do not reach.
  auto outcome = co_await shot->wait_until(call.deadline + std::chrono::seconds(1));
  if (!outcome) outcome = shot->take_now();
  if (!outcome) {
    *call.abandoned = true;  // the thread gives up at its next progress tick
    throw DependencyUnavailable(kDependency, "deadline exceeded");
  }
  if (outcome->second) std::rethrow_exception(outcome->second);
  if constexpr (!std::is_void_v<R>) co_return std::move(*outcome->first);
}

Client::Response Client::perform(const Request& req, const Call& call) const {
  thread_local std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> handle(curl_easy_init(), curl_easy_cleanup);
  CURL* curl = handle.get();
  if (curl == nullptr) throw DependencyUnavailable(kDependency, "curl init failed");

  const auto path = path_for(req.key);
  const auto query = canonical_query(req.query);
  const std::string url = scheme_ + "://" + host_ + path + (query.empty() ? "" : "?" + query);
  std::chrono::milliseconds backoff{100};

  for (int attempt = 0;; ++attempt) {
    if (cancelled_ || *call.abandoned) throw DependencyUnavailable(kDependency, "request cancelled");
    const auto remaining =
        std::chrono::duration_cast<std::chrono::milliseconds>(call.deadline - std::chrono::steady_clock::now());
    if (remaining.count() <= 0) throw DependencyUnavailable(kDependency, "deadline exceeded");
    curl_easy_reset(curl);
    Response res;
    std::string payload_hash = req.body                ? sha256_hex(*req.body)
                               : req.reader != nullptr ? std::string(kUnsignedPayload)
                                                       : std::string(kEmptyPayloadHash);
    auto signed_req = sign(config_.credentials, req.method, host_, path, req.query, req.headers, payload_hash,
                           std::chrono::system_clock::now());
    curl_slist* headers = nullptr;
    for (const auto& [k, v] : signed_req.headers) {
      if (k == "host") continue;  // curl sends it from the URL
      headers = curl_slist_append(headers, (k + ": " + v).c_str());
    }
    headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip

    // Upload source: the buffered body or the caller's reader.
    struct Source {
      std::string_view data;
      std::size_t offset = 0;
      const Reader* reader = nullptr;
    } source{req.body.value_or(std::string_view{}), 0, req.reader};
    struct Sink {
      Response* res;
      const Writer* writer;
      bool aborted = false;
    } sink{&res, req.writer};

    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(config_.connect_timeout.count()));
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(std::min(config_.request_timeout, remaining).count()));
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    // Called about once a second even while waiting: a cancelled or abandoned call stops.
    struct Abort {
      const std::atomic<bool>* cancelled;
      const std::atomic<bool>* abandoned;
    } abort_flags{&cancelled_, call.abandoned.get()};
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &abort_flags);
    curl_easy_setopt(
        curl, CURLOPT_XFERINFOFUNCTION, +[](void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) -> int {
          const auto* a = static_cast<const Abort*>(user);
          return (a->cancelled->load() || a->abandoned->load()) ? 1 : 0;
        });
    if (req.method == "HEAD") {
      curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    } else if (req.method == "PUT" || req.method == "POST") {
      if (req.method == "PUT") curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
      if (req.method == "POST") curl_easy_setopt(curl, CURLOPT_POST, 1L);
      const auto body_size = req.body ? req.body->size() : req.body_size.value_or(0);
      if (req.method == "PUT") curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(body_size));
      if (req.method == "POST") curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body_size));
      curl_easy_setopt(curl, CURLOPT_READDATA, &source);
      curl_easy_setopt(
          curl, CURLOPT_READFUNCTION, +[](char* buf, std::size_t size, std::size_t n, void* user) -> std::size_t {
            auto* s = static_cast<Source*>(user);
            if (s->reader != nullptr) return (*s->reader)(buf, size * n);
            const auto take = std::min(size * n, s->data.size() - s->offset);
            std::memcpy(buf, s->data.data() + s->offset, take);
            s->offset += take;
            return take;
          });
    } else if (req.method != "GET") {
      curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    }
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(
        curl, CURLOPT_WRITEFUNCTION, +[](char* data, std::size_t size, std::size_t n, void* user) -> std::size_t {
          auto* s = static_cast<Sink*>(user);
          // Stream to the caller's writer only for a successful answer; errors are small
          // XML bodies we keep to read the S3 error code.
          if (s->writer != nullptr && s->res->status == 0) {
            if (!(*s->writer)(data, size * n)) {
              s->aborted = true;
              return 0;
            }
            return size * n;
          }
          s->res->body.append(data, size * n);
          return size * n;
        });
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &res);
    curl_easy_setopt(
        curl, CURLOPT_HEADERFUNCTION, +[](char* data, std::size_t size, std::size_t n, void* user) -> std::size_t {
          auto* r = static_cast<Response*>(user);
          std::string_view line(data, size * n);
          if (line.starts_with("HTTP/")) {
            r->headers.clear();
            // A status line: remember non-2xx at once so the body goes to `body`.
            auto sp = line.find(' ');
            if (sp != std::string_view::npos && line.size() > sp + 1 && line[sp + 1] != '2') r->status = -1;
            return size * n;
          }
          auto colon = line.find(':');
          if (colon == std::string_view::npos) return size * n;
          std::string name(line.substr(0, colon));
          for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
          auto value = line.substr(colon + 1);
          while (!value.empty() && (value.front() == ' ')) value.remove_prefix(1);
          while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) {
            value.remove_suffix(1);
          }
          r->headers.emplace_back(std::move(name), std::string(value));
          return size * n;
        });

    const CURLcode rc = curl_easy_perform(curl);
    curl_slist_free_all(headers);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    res.status = status;

    const bool network_error = rc != CURLE_OK && !sink.aborted;
    // A streamed body cannot be replayed, and a streamed download may be half written.
    const bool retryable =
        req.retry && req.reader == nullptr && req.writer == nullptr && (network_error || status >= 500);
    const bool stopped = cancelled_ || *call.abandoned;
    if (retryable && attempt < config_.retries && !stopped &&
        std::chrono::steady_clock::now() + backoff < call.deadline) {
      log::warn("s3 request failed; retrying", {{"method", req.method},
                                                {"status", status},
                                                {"error", rc == CURLE_OK ? "" : curl_easy_strerror(rc)},
                                                {"retry_ms", backoff.count()}});
      std::this_thread::sleep_for(backoff);
      backoff *= 2;
      continue;
    }
    if (sink.aborted) throw std::runtime_error("s3 download aborted by the writer");
    if (stopped && network_error) throw DependencyUnavailable(kDependency, "request cancelled");
    if (network_error) throw DependencyUnavailable(kDependency, curl_easy_strerror(rc));
    if (status >= 500) throw DependencyUnavailable(kDependency, "HTTP " + std::to_string(status));
    return res;
  }
}

namespace {

[[noreturn]] void raise(const std::string& what, long status, const std::string& body) {
  auto code = xml_value(body, "Code");
  throw Error(status, code,
              "s3 " + what + " failed: HTTP " + std::to_string(status) + (code.empty() ? "" : " " + code));
}

}  // namespace

asio::awaitable<std::string> Client::put_object(std::string key, std::string data, std::string content_type) {
  return offload([this, key = std::move(key), data = std::move(data), ct = std::move(content_type)](const Call& call) {
    Request req{.method = "PUT", .key = key, .headers = {{"content-type", ct}}, .body = std::string_view(data)};
    auto res = perform(req, call);
    if (res.status != 200) raise("PUT", res.status, res.body);
    return res.header("etag");
  });
}

asio::awaitable<std::string> Client::put_object_stream(std::string key, std::uint64_t size, Reader read,
                                                       std::string content_type) {
  return offload(
      [this, key = std::move(key), size, read = std::move(read), ct = std::move(content_type)](const Call& call) {
        Request req{.method = "PUT", .key = key, .headers = {{"content-type", ct}}, .body_size = size, .reader = &read};
        auto res = perform(req, call);
        if (res.status != 200) raise("PUT", res.status, res.body);
        return res.header("etag");
      },
      std::max(config_.call_timeout, config_.request_timeout + config_.connect_timeout));
}

asio::awaitable<std::optional<std::string>> Client::get_object(std::string key) {
  return offload([this, key = std::move(key)](const Call& call) -> std::optional<std::string> {
    auto res = perform({.method = "GET", .key = key}, call);
    if (res.status == 404) return std::nullopt;
    if (res.status != 200) raise("GET", res.status, res.body);
    return std::move(res.body);
  });
}

asio::awaitable<bool> Client::get_object_to(std::string key, Writer write) {
  return offload([this, key = std::move(key), write = std::move(write)](const Call& call) {
    auto res = perform({.method = "GET", .key = key, .writer = &write}, call);
    if (res.status == 404) return false;
    if (res.status != 200) raise("GET", res.status, res.body);
    return true;
  });
}

asio::awaitable<std::optional<ObjectInfo>> Client::head_object(std::string key) {
  return offload([this, key = std::move(key)](const Call& call) -> std::optional<ObjectInfo> {
    auto res = perform({.method = "HEAD", .key = key}, call);
    if (res.status == 404) return std::nullopt;
    if (res.status != 200) raise("HEAD", res.status, res.body);
    ObjectInfo info;
    info.size = std::stoull(res.header("content-length").empty() ? "0" : res.header("content-length"));
    info.content_type = res.header("content-type");
    info.etag = res.header("etag");
    return info;
  });
}

asio::awaitable<void> Client::delete_object(std::string key) {
  return offload([this, key = std::move(key)](const Call& call) {
    auto res = perform({.method = "DELETE", .key = key}, call);
    if (res.status != 204 && res.status != 200 && res.status != 404) raise("DELETE", res.status, res.body);
  });
}

asio::awaitable<bool> Client::copy_object(std::string from, std::string to, std::string content_type) {
  return offload([this, from = std::move(from), to = std::move(to), ct = std::move(content_type)](const Call& call) {
    Request req{.method = "PUT",
                .key = to,
                .headers = {{"content-type", ct},
                            {"x-amz-copy-source", path_for(from)},
                            {"x-amz-metadata-directive", "REPLACE"}},
                .body = std::string_view()};
    auto res = perform(req, call);
    if (res.status == 404) return false;
    // A copy may fail after its 200 was sent: the error is then in the body.
    if (res.status != 200 || res.body.find("<Error>") != std::string::npos) raise("COPY", res.status, res.body);
    return true;
  });
}

asio::awaitable<Listing> Client::list_objects(std::string prefix, std::optional<std::string> continuation,
                                              int max_keys) {
  return offload(
      [this, prefix = std::move(prefix), continuation = std::move(continuation), max_keys](const Call& call) {
        Request req{.method = "GET",
                    .query = {{"list-type", "2"}, {"prefix", prefix}, {"max-keys", std::to_string(max_keys)}}};
        if (continuation) req.query.emplace_back("continuation-token", *continuation);
        auto res = perform(req, call);
        if (res.status != 200) raise("LIST", res.status, res.body);
        Listing out;
        std::size_t pos = 0;
        for (;;) {
          auto entry = xml_value(res.body, "Contents", &pos);
          if (entry.empty()) break;
          out.objects.emplace_back(xml_value(entry, "Key"), std::stoull("0" + xml_value(entry, "Size")));
        }
        if (xml_value(res.body, "IsTruncated") == "true") out.next = xml_value(res.body, "NextContinuationToken");
        return out;
      });
}

asio::awaitable<std::string> Client::create_multipart_upload(std::string key, std::string content_type) {
  return offload([this, key = std::move(key), ct = std::move(content_type)](const Call& call) {
    Request req{.method = "POST",
                .key = key,
                .query = {{"uploads", ""}},
                .headers = {{"content-type", ct}},
                .body = std::string_view(),
                .retry = false};
    auto res = perform(req, call);
    if (res.status != 200) raise("CreateMultipartUpload", res.status, res.body);
    auto id = xml_value(res.body, "UploadId");
    if (id.empty()) raise("CreateMultipartUpload", res.status, res.body);
    return id;
  });
}

asio::awaitable<std::string> Client::upload_part(std::string key, std::string upload_id, int number, std::string data) {
  return offload(
      [this, key = std::move(key), id = std::move(upload_id), number, data = std::move(data)](const Call& call) {
        Request req{.method = "PUT",
                    .key = key,
                    .query = {{"partNumber", std::to_string(number)}, {"uploadId", id}},
                    .body = std::string_view(data)};
        auto res = perform(req, call);
        if (res.status != 200) raise("UploadPart", res.status, res.body);
        return res.header("etag");
      });
}

asio::awaitable<void> Client::complete_multipart_upload(std::string key, std::string upload_id,
                                                        std::vector<Part> parts) {
  return offload([this, key = std::move(key), id = std::move(upload_id), parts = std::move(parts)](const Call& call) {
    std::string xml = "<CompleteMultipartUpload>";
    for (const auto& p : parts) {
      xml += "<Part><PartNumber>" + std::to_string(p.number) + "</PartNumber><ETag>" + xml_escape(p.etag) +
             "</ETag></Part>";
    }
    xml += "</CompleteMultipartUpload>";
    Request req{.method = "POST",
                .key = key,
                .query = {{"uploadId", id}},
                .headers = {{"content-type", "application/xml"}},
                .body = std::string_view(xml)};
    auto res = perform(req, call);
    // S3 may answer 200 with an <Error> body when completion fails late.
    if (res.status != 200 || res.body.find("<Error>") != std::string::npos) {
      raise("CompleteMultipartUpload", res.status, res.body);
    }
  });
}

asio::awaitable<void> Client::abort_multipart_upload(std::string key, std::string upload_id) {
  return offload([this, key = std::move(key), id = std::move(upload_id)](const Call& call) {
    auto res = perform({.method = "DELETE", .key = key, .query = {{"uploadId", id}}}, call);
    if (res.status != 204 && res.status != 200 && res.status != 404)
      raise("AbortMultipartUpload", res.status, res.body);
  });
}

std::string Client::presign_get(const std::string& key, std::chrono::seconds expires, const QueryList& query) const {
  return presign(config_.credentials, "GET", public_scheme_, public_host_, path_for(key), expires,
                 std::chrono::system_clock::now(), query);
}

std::string Client::presign_put(const std::string& key, std::chrono::seconds expires, const HeaderList& signed_headers,
                                std::chrono::system_clock::time_point signed_at) const {
  return presign(config_.credentials, "PUT", public_scheme_, public_host_, path_for(key), expires, signed_at, {},
                 signed_headers);
}

asio::awaitable<bool> Client::ping() {
  try {
    auto probe = offload([this](const Call& call) {
      Request req{.method = "HEAD", .retry = false};
      return perform(req, call).status == 200;
    });
    co_return co_await std::move(probe);
  } catch (const std::exception&) {
    co_return false;
  }
}

}  // namespace nimbus::s3
