#include "images/routes.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json/serialize.hpp>
#include <ctime>
#include <set>

#include "auth/jwt.hpp"
#include "auth/routes.hpp"
#include "core/env.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "core/oneshot.hpp"
#include "core/sha256.hpp"
#include "http/json_body.hpp"
#include "http/paging.hpp"
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
constexpr std::size_t kHeadLimit = 1024 * 1024;   // header bytes read before deciding
constexpr std::size_t kFormOverhead = 64 * 1024;  // multipart framing allowed on top of the file
constexpr std::chrono::seconds kDirectUploadTtl{600};

std::string format_time(std::chrono::system_clock::time_point t) {
  const auto secs = std::chrono::system_clock::to_time_t(t);
  std::tm utc{};
  gmtime_r(&secs, &utc);
  char out[32];
  std::strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return out;
}

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
  std::uint64_t size_ = 0, delivered_ = 0;
  std::string pending_, tail_extra_;
  std::optional<DelimiterScan> scan_;
};

struct NeedMore {};
struct Accepted {
  Format format;
  Dimensions size;
};
using Judged = std::variant<NeedMore, Accepted, Response>;

// The verdict on a file from its first bytes (`at_end`: there are no more): its
// format from the magic bytes, its dimensions from the header, within the limits.
Judged judge_head(std::string_view head, bool at_end, const UploadLimits& limits) {
  auto unsupported = [] {
    return refuse(415, "unsupported_image_type", "Upload a JPEG, PNG, GIF, WebP, AVIF or HEIC image.");
  };
  if (head.size() < 12 && !at_end) return NeedMore{};
  auto format = sniff(head);
  if (!format) {
    if (head.size() < 12 && sniff(std::string(head) + std::string(12, '\0'))) {
      return refuse(422, "corrupt_image", "The file is truncated.");
    }
    return unsupported();
  }
  auto header = read_header(*format, head);
  if (header.state == HeaderState::need_more && !at_end && head.size() <= kHeadLimit) return NeedMore{};
  if (header.state != HeaderState::ok) return refuse(422, "corrupt_image", "The image header is not valid.");
  const auto pixels = static_cast<std::uint64_t>(header.size.width) * header.size.height;
  if (pixels > limits.max_pixels) {
    return refuse(422, "too_many_pixels",
                  "The image has " + std::to_string(header.size.width) + "x" + std::to_string(header.size.height) +
                      " pixels; the limit is " + std::to_string(limits.max_pixels / 1'000'000) + " megapixels.");
  }
  return Accepted{*format, header.size};
}

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
  asio::co_spawn(executor,
                 s3.put_object_stream(key, upload.size(), std::move(reader), std::string(content_type(format))),
                 [put_done, pipe](std::exception_ptr e, std::string) {
                   // Once the PUT is over (all bytes taken, or failed early) the writer
                   // must not wait for room that will never come.
                   pipe->abort();
                   put_done->set(e);
                 });

  Sha256 hash;
  const std::string head = first.substr(0, 64 * 1024);  // the ending check of HEIF walks its boxes
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
asio::awaitable<Response> upload(std::shared_ptr<Service> images, UploadLimits limits, Request& req, auth::Claims who) {
  const auto type = std::string(req.header("Content-Type").value_or(""));
  auto boundary = form_boundary(type);
  if (!boundary && type.rfind("image/", 0) != 0) {
    co_return refuse(415, "unsupported_media_type",
                     "Send multipart/form-data with a \"file\" field, or an image/* body.");
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
  Judged judged = NeedMore{};
  bool bad_layout = false;
  try {
    for (;;) {
      auto more = co_await file.next();
      first += more;
      judged = judge_head(first, more.empty(), limits);
      if (!std::holds_alternative<NeedMore>(judged)) break;
    }
  } catch (const Upload::LayoutError&) {
    bad_layout = true;
  }
  if (bad_layout) co_return Upload::layout_error();
  if (auto* refusal = std::get_if<Response>(&judged)) co_return std::move(*refusal);
  const auto [format, size] = std::get<Accepted>(judged);
  const auto& header_size = size;

  NewImage image{ids::uuid_v7(),    who.sub,           std::string(content_type(format)), {}, file.size(),
                 header_size.width, header_size.height};
  const auto key = original_key(image.id);
  // (No co_await inside a catch handler: the failure is kept and handled after it.)
  Streamed streamed;
  std::exception_ptr failure;
  bool layout = false;
  try {
    streamed = co_await stream_to_s3(file, std::move(first), format, key, images->storage());
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

// POST /v1/images/uploads {content_type, bytes}: a presigned PUT straight to storage.
asio::awaitable<Response> create_upload(std::shared_ptr<Service> images, UploadLimits limits, Request& req,
                                        auth::Claims who) {
  auto parsed = http::json_object_body(req);
  if (auto* problem = std::get_if<Response>(&parsed)) co_return std::move(*problem);
  const auto& body = std::get<json::object>(parsed);
  auto type = http::string_field(body, "content_type", 100);
  static const std::set<std::string, std::less<>> kTypes = {"image/jpeg", "image/png",  "image/gif",
                                                            "image/webp", "image/avif", "image/heic"};
  if (!type || !kTypes.contains(*type)) {
    co_return http::invalid_field(
        "invalid_content_type",
        "content_type is image/jpeg, image/png, image/gif, image/webp, image/avif or image/heic.");
  }
  const auto* bytes = body.if_contains("bytes");
  if (bytes == nullptr || !bytes->is_int64() || bytes->as_int64() < 1) {
    co_return http::invalid_field("invalid_bytes", "bytes is the file's size, a positive integer.");
  }
  if (static_cast<std::uint64_t>(bytes->as_int64()) > limits.max_bytes)
    co_return http::payload_too_large(limits.max_bytes);
  const auto id = ids::uuid_v7();
  co_await images->reserve(id, who.sub, *type, static_cast<std::uint64_t>(bytes->as_int64()));
  const auto expires = std::chrono::system_clock::now() + kDirectUploadTtl;
  json::object out{{"id", id},
                   {"upload_url", images->storage().presign_put(original_key(id), kDirectUploadTtl)},
                   {"method", "PUT"},
                   {"expires_at", format_time(expires)}};
  auto res = http::json(201, json::serialize(out));
  res.headers.set("Location", "/v1/images/" + id);
  co_return res;
}

// What a stored object turned out to be, read through once from storage.
struct Inspected {
  std::string head, tail;
  std::uint64_t size = 0;
  Sha256 hash;
};

// POST /v1/images/{id}/complete: the object must be there, of the declared size, and a
// real image within the limits; then the image is queued like a streamed upload.
asio::awaitable<Response> complete(std::shared_ptr<Service> images, UploadLimits limits, Request& req,
                                   auth::Claims who) {
  const auto id = req.uuid_param("id").value_or("");
  if (id.empty()) co_return image_not_found();
  auto reserved = co_await images->reserved(id, who.sub);
  if (!reserved)
    co_return http::problem(409, "not_uploading", "Not waiting for an upload",
                            "No upload of yours is waiting under this id (completed, or unknown).");
  auto& s3 = images->storage();
  const auto key = original_key(id);
  auto info = co_await s3.head_object(key);
  if (!info) co_return refuse(409, "upload_missing", "Nothing was uploaded to the URL yet.");
  std::optional<Response> refusal;
  NewImage image{id, who.sub, "", "", info->size, 0, 0};
  if (info->size != reserved->bytes) {
    refusal = refuse(422, "upload_mismatch", "The uploaded object's size is not the declared one.");
  } else {
    auto seen = std::make_shared<Inspected>();
    // Read through once (on a storage thread), keeping only the head and the tail.
    s3::Writer inspect = [seen](const char* data, std::size_t n) {
      std::string_view bytes(data, n);
      if (seen->head.size() < kHeadLimit) seen->head.append(bytes.substr(0, kHeadLimit - seen->head.size()));
      seen->hash.update(bytes);
      seen->tail.append(bytes.substr(n > 32 ? n - 32 : 0));
      if (seen->tail.size() > 32) seen->tail.erase(0, seen->tail.size() - 32);
      seen->size += n;
      return true;
    };
    co_await s3.get_object_to(key, std::move(inspect));
    auto judged = judge_head(seen->head, true, limits);
    if (auto* r = std::get_if<Response>(&judged)) {
      refusal = std::move(*r);
    } else {
      const auto accepted = std::get<Accepted>(judged);
      if (!ends_complete(accepted.format, seen->tail, seen->size, seen->head)) {
        refusal = refuse(422, "corrupt_image", "The image is truncated: it does not end as a whole file does.");
      }
      image.content_type = std::string(content_type(accepted.format));
      image.width = accepted.size.width;
      image.height = accepted.size.height;
      image.sha256 = seen->hash.hex();
    }
  }
  if (refusal) {
    // Refused: the object and the reservation go; the client may start again.
    co_await forget_object(s3, key);
    co_await images->remove(id, who.sub);
    co_return std::move(*refusal);
  }
  if (!co_await images->queue_reserved(image)) {
    co_return http::problem(409, "not_uploading", "Not waiting for an upload", "This upload was already completed.");
  }
  auto res = http::json(202, json::serialize(json::object{{"id", id}, {"status", "queued"}}));
  res.headers.set("Location", "/v1/images/" + id);
  co_return res;
}

asio::awaitable<Response> get(std::shared_ptr<Service> images, Request& req, auth::Claims who) {
  const auto id = req.uuid_param("id").value_or("");
  if (id.empty()) co_return image_not_found();
  auto image = co_await images->get(id, who.sub);
  if (!image) co_return image_not_found();
  co_return http::json(200, json::serialize(*image));
}

// GET /v1/me/images?limit=&cursor=
asio::awaitable<Response> list(std::shared_ptr<Service> images, Request& req, auth::Claims who) {
  auto paging = http::page_request(req);
  if (auto* problem = std::get_if<Response>(&paging)) co_return std::move(*problem);
  const auto [limit, after] = std::get<http::PageRequest>(paging);
  auto page = co_await images->list(who.sub, after, limit);
  json::array items;
  for (auto& i : page.items) items.push_back(std::move(i));
  json::object body{{"items", std::move(items)}, {"next_cursor", nullptr}};
  if (page.next_after) body["next_cursor"] = http::page_cursor(*page.next_after);
  co_return http::json(200, json::serialize(body));
}

asio::awaitable<Response> download(std::shared_ptr<Service> images, Request& req, auth::Claims who, bool original) {
  const auto id = req.uuid_param("id").value_or("");
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
  const auto id = req.uuid_param("id").value_or("");
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
             auth::authenticated(
                 accounts, [images, limits](Request& r, const Claims& c) { return upload(images, limits, r, c); }),
             streamed);
  router.add(
      http::Method::post, "/v1/images/uploads",
      auth::authenticated(
          accounts, [images, limits](Request& r, const Claims& c) { return create_upload(images, limits, r, c); }),
      http::RouteOptions{.body_limit = 16 * 1024});
  router.add(http::Method::post, "/v1/images/{id}/complete",
             auth::authenticated(
                 accounts, [images, limits](Request& r, const Claims& c) { return complete(images, limits, r, c); }));
  router.add(http::Method::get, "/v1/images/{id}",
             auth::authenticated(accounts, [images](Request& r, const Claims& c) { return get(images, r, c); }));
  router.add(http::Method::get, "/v1/me/images",
             auth::authenticated(accounts, [images](Request& r, const Claims& c) { return list(images, r, c); }));
  router.add(
      http::Method::get, "/v1/images/{id}/original",
      auth::authenticated(accounts, [images](Request& r, const Claims& c) { return download(images, r, c, true); }));
  router.add(
      http::Method::get, "/v1/images/{id}/variants/{name}",
      auth::authenticated(accounts, [images](Request& r, const Claims& c) { return download(images, r, c, false); }));
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
