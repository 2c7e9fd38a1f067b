#include "images/routes.hpp"

#include <openssl/evp.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json/serialize.hpp>

#include "auth/jwt.hpp"
#include "auth/routes.hpp"
#include "core/env.hpp"
#include "core/hex.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "core/oneshot.hpp"
#include "http/json_body.hpp"
#include "http/problem.hpp"
#include "images/byte_pipe.hpp"
#include "images/multipart.hpp"
#include "images/sniff.hpp"

namespace nimbus::images {

namespace asio = boost::asio;
namespace json = boost::json;
using http::Request;
using http::Response;

namespace {

constexpr std::size_t kChunk = 64 * 1024;
constexpr std::size_t kPipeCapacity = 256 * 1024;
constexpr std::size_t kHeadLimit = 1024 * 1024;  // header bytes read before deciding
constexpr std::size_t kFormOverhead = 64 * 1024;  // multipart framing allowed on top of the file

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) { EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr); }
  void update(std::string_view bytes) { EVP_DigestUpdate(ctx_.get(), bytes.data(), bytes.size()); }
  std::string hex() {
    unsigned char out[32];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_.get(), out, &len);
    return to_hex(std::string_view(reinterpret_cast<const char*>(out), len));
  }

 private:
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx_;
};

Response refuse(unsigned status, std::string_view code, std::string_view detail) {
  return http::problem(status, code, status == 415 ? "Unsupported media type" : "Unacceptable upload", detail);
}

Response image_not_found() {
  return http::not_found("No image with this id.");
}

// The bytes of the uploaded file, whichever way it came: a raw image body, or the
// "file" field of a multipart form (the file's exact size known up front; see
// multipart.hpp).
class Upload {
 public:
  Upload(http::BodyReader& body, std::uint64_t length, std::optional<std::string> boundary)
      : body_(body), length_(length), boundary_(std::move(boundary)) {}

  // Reads until the file starts; `refusal` set when the body cannot be an upload.
  asio::awaitable<std::optional<Response>> open() {
    if (!boundary_) {
      size_ = length_;
      co_return std::nullopt;
    }
    std::string head;
    for (;;) {
      auto part = find_file_part(head, *boundary_);
      if (part.state == FilePart::State::found) {
        const auto trailer = closing_trailer(*boundary_).size();
        if (part.data_offset + trailer > length_) co_return layout_error();
        size_ = length_ - part.data_offset - trailer;
        pending_ = head.substr(part.data_offset);
        consumed_ = head.size();
        if (pending_.size() > size_) {
          tail_extra_ = pending_.substr(size_);
          pending_.resize(size_);
        }
        scan_.emplace(*boundary_);
        if (scan_->feed(pending_)) co_return layout_error();
        delivered_ = pending_.size();
        co_return std::nullopt;
      }
      if (part.state == FilePart::State::missing) {
        co_return refuse(400, "missing_file", "The form has no field named \"file\".");
      }
      if (part.state == FilePart::State::malformed || head.size() > kFormOverhead) co_return layout_error();
      if (co_await body_.read(head, kChunk) == 0) co_return layout_error();
    }
  }

  std::uint64_t size() const { return size_; }

  // The next bytes of the file; empty at its end. Throws LayoutError if the form
  // turns out not to be laid out as its length promised.
  asio::awaitable<std::string> next() {
    if (!pending_.empty()) co_return std::exchange(pending_, std::string());
    std::string out;
    if (delivered_ == size_) {
      if (boundary_) co_await check_trailer();
      co_return out;
    }
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, size_ - delivered_));
    if (co_await body_.read(out, want) == 0) throw http::BodyError(400, "body ended early");
    delivered_ += out.size();
    if (scan_ && scan_->feed(out)) throw LayoutError();
    co_return out;
  }

  struct LayoutError : std::runtime_error {
    LayoutError() : std::runtime_error("multipart layout") {}
  };
  static Response layout_error() {
    return refuse(400, "multipart_layout",
                  "Send one form field named \"file\", last, and end the body with the closing boundary.");
  }

 private:
  asio::awaitable<void> check_trailer() {
    std::string rest = std::move(tail_extra_);
    const auto expected = closing_trailer(*boundary_);
    while (rest.size() <= expected.size()) {
      if (co_await body_.read(rest, expected.size() + 1 - rest.size()) == 0) break;
    }
    if (rest != expected) throw LayoutError();
  }

  http::BodyReader& body_;
  std::uint64_t length_;
  std::optional<std::string> boundary_;
  std::uint64_t size_ = 0, delivered_ = 0, consumed_ = 0;
  std::string pending_, tail_extra_;
  std::optional<DelimiterScan> scan_;
};

struct Streamed {
  std::string sha256;
  bool complete = false;  // the format's ending was there
};

// Pumps the file through a bounded pipe into an S3 PUT of its exact size, hashing
// it and keeping its last bytes for the truncation check.
asio::awaitable<Streamed> stream_to_s3(Upload& upload, std::string first, Format format, const std::string& key,
                                       s3::Client& s3) {
  auto executor = co_await asio::this_coro::executor;
  auto pipe = std::make_shared<BytePipe>(executor, kPipeCapacity);
  auto put_done = std::make_shared<OneShot<std::exception_ptr>>(executor);
  s3::Reader reader = [pipe](char* buf, std::size_t size) {
    auto n = pipe->read(buf, size, std::chrono::seconds(60));
    return n == BytePipe::kAborted ? s3::kReadAbort : n;
  };
  asio::co_spawn(executor, s3.put_object_stream(key, upload.size(), std::move(reader), std::string(content_type(format))),
                 [put_done](std::exception_ptr e, std::string) { put_done->set(e); });

  Sha256 hash;
  const std::string head = first.substr(0, 64);
  std::string tail;
  std::exception_ptr failure;
  try {
    std::string chunk = std::move(first);
    while (!chunk.empty()) {
      hash.update(chunk);
      tail = (tail + chunk.substr(chunk.size() > 32 ? chunk.size() - 32 : 0));
      if (tail.size() > 32) tail.erase(0, tail.size() - 32);
      if (!co_await pipe->write(std::move(chunk))) throw std::runtime_error("storage stopped reading");
      chunk = co_await upload.next();
    }
    pipe->close();
  } catch (...) {
    failure = std::current_exception();
    pipe->abort();
  }
  auto put_error = co_await put_done->wait_until(std::chrono::steady_clock::now() + std::chrono::minutes(10));
  if (failure) std::rethrow_exception(failure);
  if (!put_error) throw std::runtime_error("storage upload did not finish");
  if (*put_error) std::rethrow_exception(*put_error);
  co_return Streamed{hash.hex(), ends_complete(format, tail, upload.size(), head)};
}

asio::awaitable<void> forget_object(s3::Client& s3, const std::string& key) {
  try {
    co_await s3.delete_object(key);
  } catch (const std::exception& e) {
    log::warn("removing a refused upload failed", {{"key", key}, {"error", e.what()}});
  }
}

// POST /v1/images: a raw image/* body or a multipart form with a "file" field.
asio::awaitable<Response> upload(std::shared_ptr<Service> images, UploadLimits limits, Request& req,
                                 auth::Claims who) {
  const auto type = std::string(req.header("Content-Type").value_or(""));
  auto boundary = form_boundary(type);
  if (!boundary && type.rfind("image/", 0) != 0) {
    co_return refuse(415, "unsupported_media_type", "Send multipart/form-data with a \"file\" field, or an image/* body.");
  }
  auto length = req.body_reader->content_length();
  if (!length) co_return http::problem(411, "length_required", "Length required", "Send a Content-Length.");
  if (*length == 0) co_return refuse(422, "empty_file", "The upload is empty.");

  Upload file(*req.body_reader, *length, boundary);
  if (auto refusal = co_await file.open()) co_return std::move(*refusal);
  if (file.size() == 0) co_return refuse(422, "empty_file", "The upload is empty.");
  if (file.size() > limits.max_bytes) co_return http::payload_too_large(limits.max_bytes);

  // Enough of the start to know the format and the dimensions, before storing a byte.
  std::string first;
  std::optional<Format> format;
  Header header;
  for (;;) {
    auto more = co_await file.next();
    if (more.empty()) break;
    first += more;
    if (!format && first.size() >= 12) {
      format = sniff(first);
      if (!format) co_return refuse(415, "unsupported_image_type", "Upload a JPEG, PNG, GIF or WebP image.");
    }
    if (format) {
      header = read_header(*format, first);
      if (header.state != HeaderState::need_more) break;
    }
    if (first.size() > kHeadLimit) break;
  }
  if (!format) {
    if (first.size() < 12 && sniff(first)) co_return refuse(422, "corrupt_image", "The file is truncated.");
    co_return refuse(415, "unsupported_image_type", "Upload a JPEG, PNG, GIF or WebP image.");
  }
  if (header.state != HeaderState::ok) co_return refuse(422, "corrupt_image", "The image header is not valid.");
  const auto pixels = static_cast<std::uint64_t>(header.size.width) * header.size.height;
  if (pixels > limits.max_pixels) {
    co_return refuse(422, "too_many_pixels",
                     "The image has " + std::to_string(header.size.width) + "x" + std::to_string(header.size.height) +
                         " pixels; the limit is " + std::to_string(limits.max_pixels / 1'000'000) + " megapixels.");
  }

  NewImage image{ids::uuid_v7(), who.sub, std::string(content_type(*format)), {}, file.size(), header.size.width,
                 header.size.height};
  const auto key = original_key(image.id);
  // (No co_await inside a catch handler: the failure is kept and handled after it.)
  Streamed streamed;
  std::exception_ptr failure;
  bool layout = false;
  try {
    streamed = co_await stream_to_s3(file, std::move(first), *format, key, images->storage());
    if (streamed.complete) {
      image.sha256 = streamed.sha256;
      co_await images->create(image);
    }
  } catch (const Upload::LayoutError&) {
    layout = true;
  } catch (...) {
    failure = std::current_exception();  // the client went away, or storage failed
  }
  if (layout || failure || !streamed.complete) {
    // A refused or failed upload leaves nothing behind.
    co_await forget_object(images->storage(), key);
    if (failure) std::rethrow_exception(failure);
    if (layout) co_return Upload::layout_error();
    co_return refuse(422, "corrupt_image", "The image is truncated: it does not end as a whole file does.");
  }
  auto res = http::json(202, json::serialize(json::object{{"id", image.id}, {"status", "queued"}}));
  res.headers.set("Location", "/v1/images/" + image.id);
  co_return res;
}

std::optional<std::string> image_id(const Request& req) {
  std::string id(req.param("id"));
  if (!ids::is_uuid(id)) return std::nullopt;
  return id;
}

asio::awaitable<Response> get(std::shared_ptr<Service> images, Request& req, auth::Claims who) {
  const auto id = image_id(req).value_or("");
  if (id.empty()) co_return image_not_found();
  auto image = co_await images->get(id, who.sub);
  if (!image) co_return image_not_found();
  co_return http::json(200, json::serialize(*image));
}

// GET /v1/me/images?limit=&cursor=
asio::awaitable<Response> list(std::shared_ptr<Service> images, Request& req, auth::Claims who) {
  int limit = 20;
  if (auto l = req.query_param("limit")) {
    try {
      std::size_t used = 0;
      limit = std::stoi(*l, &used);
      if (used != l->size()) limit = 0;
    } catch (const std::exception&) {
      limit = 0;
    }
    if (limit < 1 || limit > 100) co_return http::invalid_field("invalid_limit", "limit is an integer from 1 to 100.");
  }
  std::optional<std::string> after;
  if (auto c = req.query_param("cursor")) {
    auto decoded = auth::base64url_decode(*c);
    if (!decoded || !ids::is_uuid(*decoded)) co_return http::invalid_field("invalid_cursor", "cursor is not valid.");
    after = *decoded;
  }
  auto page = co_await images->list(who.sub, after, limit);
  json::array items;
  for (auto& i : page.items) items.push_back(std::move(i));
  json::object body{{"items", std::move(items)}, {"next_cursor", nullptr}};
  if (page.next_after) body["next_cursor"] = auth::base64url_encode(*page.next_after);
  co_return http::json(200, json::serialize(body));
}

asio::awaitable<Response> download(std::shared_ptr<Service> images, Request& req, auth::Claims who,
                                   bool original) {
  const auto id = image_id(req).value_or("");
  if (id.empty()) co_return image_not_found();
  std::optional<std::string> variant;
  if (!original) variant = std::string(req.param("name"));
  auto url = co_await images->download_url(id, who.sub, variant);
  if (!url) co_return http::not_found("No such image or variant (yet).");
  auto res = http::empty(302);
  res.headers.set("Location", *url);
  res.headers.set("Cache-Control", "private, no-store");
  co_return res;
}

asio::awaitable<Response> remove(std::shared_ptr<Service> images, Request& req, auth::Claims who) {
  const auto id = image_id(req).value_or("");
  if (id.empty()) co_return image_not_found();
  if (!co_await images->remove(id, who.sub)) co_return image_not_found();
  co_return http::empty(204);
}

}  // namespace

void add_routes(http::Router& router, std::shared_ptr<Service> images, std::shared_ptr<auth::Service> accounts,
                UploadLimits limits) {
  using Claims = auth::Claims;
  const http::RouteOptions streamed{.body_limit = limits.max_bytes + kFormOverhead, .stream_body = true};
  router.add(http::Method::post, "/v1/images",
             auth::authenticated(accounts,
                                 [images, limits](Request& r, const Claims& c) { return upload(images, limits, r, c); }),
             streamed);
  router.add(http::Method::get, "/v1/images/{id}",
             auth::authenticated(accounts, [images](Request& r, const Claims& c) { return get(images, r, c); }));
  router.add(http::Method::get, "/v1/me/images",
             auth::authenticated(accounts, [images](Request& r, const Claims& c) { return list(images, r, c); }));
  router.add(http::Method::get, "/v1/images/{id}/original",
             auth::authenticated(accounts,
                                 [images](Request& r, const Claims& c) { return download(images, r, c, true); }));
  router.add(http::Method::get, "/v1/images/{id}/variants/{name}",
             auth::authenticated(accounts,
                                 [images](Request& r, const Claims& c) { return download(images, r, c, false); }));
  router.add(http::Method::del, "/v1/images/{id}",
             auth::authenticated(accounts, [images](Request& r, const Claims& c) { return remove(images, r, c); }));
}

}  // namespace nimbus::images

namespace nimbus::images {

UploadLimits UploadLimits::from_env() {
  UploadLimits l;
  l.max_bytes = env::bytes("NIMBUS_IMAGE_MAX_BYTES", l.max_bytes);
  l.max_pixels = static_cast<std::uint64_t>(
      env::integer("NIMBUS_IMAGE_MAX_PIXELS", static_cast<std::int64_t>(l.max_pixels), 1, 1'000'000'000));
  return l;
}

}  // namespace nimbus::images
