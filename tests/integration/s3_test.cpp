// The S3 client against the stack's Swift with s3api, which checks every signature.
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#include <gtest/gtest.h>

#include "core/errors.hpp"
#include "core/random.hpp"
#include "storage/s3/client.hpp"
#include "support/run.hpp"

namespace asio = boost::asio;
using namespace nimbus;
using namespace std::chrono_literals;

namespace {

// A plain HTTP request, as a browser would make it with a presigned URL.
std::pair<long, std::string> http(const std::string& method, const std::string& url, const std::string& body = {}) {
  CURL* c = curl_easy_init();
  std::string out;
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method == "PUT") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
  curl_easy_setopt(
      c, CURLOPT_WRITEFUNCTION, +[](char* d, std::size_t s, std::size_t n, void* u) {
        static_cast<std::string*>(u)->append(d, s * n);
        return s * n;
      });
  curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(c);
  return {status, out};
}

std::string random_bytes(std::size_t n) {
  std::string s(n, '\0');
  random::fill(std::span(reinterpret_cast<std::uint8_t*>(s.data()), s.size()));
  return s;
}

class S3Test : public ::testing::Test {
 protected:
  void SetUp() override {
    NIMBUS_REQUIRE_STACK("NIMBUS_TEST_S3_ENDPOINT");
    config_.endpoint = test::stack_env("NIMBUS_TEST_S3_ENDPOINT");
    config_.bucket = test::stack_env("NIMBUS_TEST_S3_BUCKET");
    config_.credentials = {test::stack_env("NIMBUS_TEST_S3_ACCESS_KEY"), test::stack_env("NIMBUS_TEST_S3_SECRET_KEY"),
                           test::stack_env("NIMBUS_TEST_S3_REGION")};
    config_.threads = 4;
    client_ = std::make_unique<s3::Client>(config_);
    prefix_ = "test/" + random::hex(6) + "/";
  }

  template <typename Fn>
  auto run(Fn&& fn) {
    return test::run(ioc_, std::forward<Fn>(fn));
  }

  asio::io_context ioc_;
  s3::Config config_;
  std::unique_ptr<s3::Client> client_;
  std::string prefix_;
};

TEST_F(S3Test, PutGetHeadDelete) {
  const auto data = random_bytes(100'000);
  const auto key = prefix_ + "dir/a file ünïcode.bin";
  run([&]() -> asio::awaitable<void> {
    auto etag = co_await client_->put_object(key, data, "application/octet-stream");
    EXPECT_FALSE(etag.empty());
    auto info = co_await client_->head_object(key);
    EXPECT_TRUE(info.has_value());
    if (info) {
      EXPECT_EQ(info->size, data.size());
      EXPECT_EQ(info->content_type, "application/octet-stream");
    }
    auto back = co_await client_->get_object(key);
    EXPECT_TRUE(back.has_value());
    if (back) {
      EXPECT_EQ(*back, data);
    }
    co_await client_->delete_object(key);
    EXPECT_FALSE((co_await client_->head_object(key)).has_value());
    EXPECT_FALSE((co_await client_->get_object(key)).has_value());
    co_await client_->delete_object(key);  // deleting twice is fine
  });
}

TEST_F(S3Test, StreamedUploadAndDownload) {
  const std::size_t size = 5 * 1024 * 1024 + 123;
  const auto data = random_bytes(size);
  const auto key = prefix_ + "streamed";
  run([&]() -> asio::awaitable<void> {
    std::size_t offset = 0;
    co_await client_->put_object_stream(
        key, size,
        [&](char* buf, std::size_t n) {
          const auto take = std::min(n, size - offset);
          std::memcpy(buf, data.data() + offset, take);
          offset += take;
          return take;
        },
        "image/jpeg");
    std::string received;
    std::size_t chunks = 0;
    bool found = co_await client_->get_object_to(key, [&](const char* d, std::size_t n) {
      received.append(d, n);
      ++chunks;
      return true;
    });
    EXPECT_TRUE(found);
    EXPECT_EQ(received.size(), size);
    EXPECT_TRUE(received == data);
    EXPECT_GT(chunks, 1U) << "delivered in pieces, not buffered whole";
    co_await client_->delete_object(key);
  });
}

TEST_F(S3Test, ListWithPrefixAndPagination) {
  run([&]() -> asio::awaitable<void> {
    for (int i = 0; i < 5; ++i) co_await client_->put_object(prefix_ + "list/" + std::to_string(i), "x", "text/plain");
    std::vector<std::string> keys;
    std::optional<std::string> token;
    int pages = 0;
    do {
      auto page = co_await client_->list_objects(prefix_ + "list/", token, 2);
      for (auto& [k, size] : page.objects) {
        keys.push_back(k);
        EXPECT_EQ(size, 1U);
      }
      token = page.next;
      ++pages;
    } while (token && pages < 10);
    EXPECT_EQ(keys.size(), 5U);
    EXPECT_EQ(pages, 3);
    for (auto& k : keys) co_await client_->delete_object(k);
  });
}

TEST_F(S3Test, MultipartUpload) {
  const auto part1 = random_bytes(5 * 1024 * 1024);
  const auto part2 = random_bytes(1024 * 1024);
  const auto key = prefix_ + "multipart";
  run([&]() -> asio::awaitable<void> {
    auto id = co_await client_->create_multipart_upload(key, "image/png");
    std::vector<s3::Part> parts;
    auto etag1 = co_await client_->upload_part(key, id, 1, part1);
    auto etag2 = co_await client_->upload_part(key, id, 2, part2);
    parts.push_back({1, etag1});
    parts.push_back({2, etag2});
    co_await client_->complete_multipart_upload(key, id, parts);
    auto info = co_await client_->head_object(key);
    EXPECT_TRUE(info.has_value());
    if (info) {
      EXPECT_EQ(info->size, part1.size() + part2.size());
    }
    auto back = co_await client_->get_object(key);
    EXPECT_TRUE(back && *back == part1 + part2);
    co_await client_->delete_object(key);

    auto aborted = co_await client_->create_multipart_upload(key, "image/png");
    co_await client_->upload_part(key, aborted, 1, part2);
    co_await client_->abort_multipart_upload(key, aborted);
    EXPECT_FALSE((co_await client_->head_object(key)).has_value());
  });
}

TEST_F(S3Test, PresignedUrlsWorkAndExpire) {
  const auto key = prefix_ + "presigned";
  auto put_url = client_->presign_put(key, 60s);
  EXPECT_EQ(http("PUT", put_url, "direct upload").first, 200);
  auto get_url = client_->presign_get(key, 60s);
  auto [status, body] = http("GET", get_url);
  EXPECT_EQ(status, 200);
  EXPECT_EQ(body, "direct upload");

  auto tampered = get_url;
  tampered.replace(tampered.find("presigned"), 9, "presignee");
  EXPECT_EQ(http("GET", tampered).first, 403) << "the signature covers the key";

  auto short_lived = client_->presign_get(key, 1s);
  auto short_put = client_->presign_put(key, 1s);
  std::this_thread::sleep_for(2100ms);  // the expiry is the point: past 1 s, in whole seconds of X-Amz-Date
  EXPECT_EQ(http("GET", short_lived).first, 403) << "an expired URL is refused";
  EXPECT_EQ(http("PUT", short_put, "late").first, 403);
  run([&]() -> asio::awaitable<void> { co_await client_->delete_object(key); });
}

TEST_F(S3Test, AWrongSecretIsRefused) {
  auto bad = config_;
  bad.credentials.secret_key += "-wrong";
  s3::Client wrong(bad);
  long status = 0;
  std::string code;
  run([&]() -> asio::awaitable<void> {
    try {
      co_await wrong.put_object(prefix_ + "nope", "x", "text/plain");
    } catch (const s3::Error& e) {
      status = e.status();
      code = e.code();
    }
  });
  EXPECT_EQ(status, 403);
  EXPECT_EQ(code, "SignatureDoesNotMatch");
  EXPECT_FALSE(run([&] { return wrong.ping(); }));
  EXPECT_TRUE(run([&] { return client_->ping(); }));
}

TEST_F(S3Test, UnreachableEndpointIsDependencyUnavailable) {
  auto down = config_;
  down.endpoint = "http://127.0.0.1:1";  // nothing listens there
  down.retries = 1;
  s3::Client client(down);
  bool unavailable = false;
  run([&]() -> asio::awaitable<void> {
    try {
      co_await client.get_object("x");
    } catch (const DependencyUnavailable& e) {
      unavailable = e.dependency() == "s3";
    }
  });
  EXPECT_TRUE(unavailable);
}

// Issue 10, item 10: a call to storage that accepts connections and never answers ends
// by the call's deadline, not after curl's per-attempt timeout times the retries.
TEST_F(S3Test, AStorageThatNeverAnswersFailsByTheCallDeadline) {
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 16), 0);  // connections wait in the backlog, never answered
  socklen_t len = sizeof addr;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  auto silent = config_;
  silent.endpoint = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  silent.request_timeout = 60s;
  silent.call_timeout = 1s;
  s3::Client client(silent);
  const auto started = std::chrono::steady_clock::now();
  bool unavailable = false;
  run([&]() -> asio::awaitable<void> {
    try {
      co_await client.head_object("x");
    } catch (const DependencyUnavailable& e) {
      unavailable = e.dependency() == "s3";
    }
  });
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_TRUE(unavailable);
  EXPECT_LT(took, 5s);
  ::close(listener);
}

TEST_F(S3Test, ServerSideCopy) {
  const auto data = random_bytes(300'000);
  run([&] { return client_->put_object(prefix_ + "from", data, "image/jpeg"); });
  EXPECT_TRUE(run([&] { return client_->copy_object(prefix_ + "from", prefix_ + "to", "image/png"); }));
  EXPECT_EQ(run([&] { return client_->get_object(prefix_ + "to"); }), data);
  auto info = run([&] { return client_->head_object(prefix_ + "to"); });
  ASSERT_TRUE(info);
  EXPECT_EQ(info->content_type, "image/png");
  EXPECT_FALSE(run([&] { return client_->copy_object(prefix_ + "missing", prefix_ + "to2", "image/png"); }));
  for (const auto* key : {"from", "to"}) run([&] { return client_->delete_object(prefix_ + key); });
}

}  // namespace
