#include "images/upload.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/this_coro.hpp>
#include <set>

#include "core/env.hpp"
#include "core/errors.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "core/oneshot.hpp"
#include "http/problem.hpp"
#include "images/byte_pipe.hpp"
#include "store/pg/result.hpp"

namespace nimbus::images {

namespace asio = boost::asio;

namespace {

constexpr std::size_t kChunk = 64 * 1024;
constexpr std::size_t kPipeCapacity = 256 * 1024;
constexpr std::size_t kFormOverhead = 64 * 1024;  // multipart framing allowed before the file
constexpr std::size_t kEndingHead = 64 * 1024;    // the ending check of HEIF walks its boxes
constexpr std::chrono::seconds kClaimLease{120};  // one completion check at a time

Refused refused(Refusal r, std::string detail = {}) {
  return Refused{r, std::move(detail), std::chrono::seconds(0)};
}

}  // namespace

UploadLimits UploadLimits::from_env() {
  UploadLimits l;
  l.max_bytes = env::bytes("NIMBUS_IMAGE_MAX_BYTES", l.max_bytes);
  l.max_pixels = static_cast<std::uint64_t>(
      env::integer("NIMBUS_IMAGE_MAX_PIXELS", static_cast<std::int64_t>(l.max_pixels), 1, 1'000'000'000));
  l.max_decode_bytes = env::bytes("NIMBUS_IMAGE_MAX_DECODE_BYTES", l.max_decode_bytes);
  if (l.max_decode_bytes < 16 * 1024 * 1024) {
    throw env::ConfigError("NIMBUS_IMAGE_MAX_DECODE_BYTES must be at least 16MiB");
  }
  l.max_open_uploads = static_cast<int>(env::integer("NIMBUS_IMAGE_OPEN_UPLOADS", l.max_open_uploads, 1, 10'000));
  l.uploads_per_minute =
      static_cast<int>(env::integer("NIMBUS_LIMIT_UPLOADS_PER_MINUTE", l.uploads_per_minute, 1, 1'000'000));
  l.upload_url_ttl =
      std::chrono::duration_cast<std::chrono::seconds>(env::duration("NIMBUS_IMAGE_UPLOAD_URL_TTL", l.upload_url_ttl));
  if (l.upload_url_ttl < std::chrono::seconds(1) || l.upload_url_ttl > std::chrono::hours(1)) {
    throw env::ConfigError("NIMBUS_IMAGE_UPLOAD_URL_TTL must be between 1s and 1h");
  }
  return l;
}

http::Response to_response(const Refused& r, const UploadLimits& limits) {
  struct Shape {
    unsigned status;
    std::string_view code, title, detail;
  };
  auto shape = [&]() -> Shape {
    switch (r.refusal) {
      case Refusal::unsupported_media_type:
        return {415, "unsupported_media_type", "Unsupported media type",
                "Send multipart/form-data with a \"file\" field, or an image/* body."};
      case Refusal::length_required:
        return {411, "length_required", "Length required", "Send a Content-Length."};
      case Refusal::empty_file:
        return {422, "empty_file", "Unacceptable upload", "The upload is empty."};
      case Refusal::too_large:
        return {413, "payload_too_large", "Payload too large", ""};
      case Refusal::missing_file:
        return {400, "missing_file", "Unacceptable upload", "The form has no field named \"file\"."};
      case Refusal::multipart_layout:
        return {400, "multipart_layout", "Unacceptable upload",
                "Send one form field named \"file\", last, and end the body with the closing boundary."};
      case Refusal::unsupported_image_type:
        return {415, "unsupported_image_type", "Unsupported media type",
                "Upload a JPEG, PNG, GIF, WebP, AVIF or HEIC image."};
      case Refusal::corrupt_image:
        return {422, "corrupt_image", "Unacceptable upload", "The image header is not valid."};
      case Refusal::too_many_pixels:
        return {422, "too_many_pixels", "Unacceptable upload", "The image has too many pixels."};
      case Refusal::too_costly_to_decode:
        return {422, "too_costly_to_decode", "Unacceptable upload",
                "Decoding the image would take more memory than allowed (an interlaced or progressive file that "
                "large): save it non-interlaced, or smaller."};
      case Refusal::invalid_content_type:
        return {422, "invalid_content_type", "Invalid field",
                "content_type is image/jpeg, image/png, image/gif, image/webp, image/avif or image/heic."};
      case Refusal::invalid_bytes:
        return {422, "invalid_bytes", "Invalid field", "bytes is the file's size, a positive integer."};
      case Refusal::too_many_uploads:
        return {429, "too_many_uploads", "Too many open uploads",
                "Complete or let lapse the direct uploads you reserved before reserving more."};
      case Refusal::not_uploading:
        return {409, "not_uploading", "Not waiting for an upload",
                "No upload of yours is waiting under this id (completed, refused, being checked, or unknown)."};
      case Refusal::upload_missing:
        return {409, "upload_missing", "Nothing uploaded yet", "Nothing was uploaded to the URL yet."};
      case Refusal::upload_mismatch:
        return {422, "upload_mismatch", "Unacceptable upload", "The uploaded object's size is not the declared one."};
    }
    return {500, "internal_error", "Internal error", ""};
  }();
  if (r.refusal == Refusal::too_large) return http::payload_too_large(limits.max_bytes);
  auto res = http::problem(shape.status, shape.code, shape.title, r.detail.empty() ? shape.detail : r.detail);
  if (r.retry_after.count() > 0) res.headers.set("Retry-After", std::to_string(r.retry_after.count()));
  return res;
}

Judged judge_head(std::string_view head, bool at_end, const UploadLimits& limits) {
  if (head.size() < 12 && !at_end) return NeedMore{};
  auto format = sniff(head);
  // The HEIF brands may come late in the ftyp box (major brand "mif1", "heic" among the
  // compatible ones): judge only once the whole box is at hand.
  if (!format && !at_end && head.size() >= 8 && head.substr(4, 4) == "ftyp") {
    const auto box = (static_cast<std::size_t>(static_cast<unsigned char>(head[0])) << 24) |
                     (static_cast<std::size_t>(static_cast<unsigned char>(head[1])) << 16) |
                     (static_cast<std::size_t>(static_cast<unsigned char>(head[2])) << 8) |
                     static_cast<std::size_t>(static_cast<unsigned char>(head[3]));
    if (box > head.size() && box <= 4096 && head.size() < kHeadLimit) return NeedMore{};
  }
  if (!format) {
    if (head.size() < 12 && sniff(std::string(head) + std::string(12, '\0'))) {
      return refused(Refusal::corrupt_image, "The file is truncated.");
    }
    return refused(Refusal::unsupported_image_type);
  }
  auto header = read_header(*format, head);
  if (header.state == HeaderState::need_more && !at_end && head.size() <= kHeadLimit) return NeedMore{};
  if (header.state != HeaderState::ok) return refused(Refusal::corrupt_image);
  const auto pixels = static_cast<std::uint64_t>(header.size.width) * header.size.height;
  if (pixels > limits.max_pixels) {
    return refused(Refusal::too_many_pixels, "The image has " + std::to_string(header.size.width) + "x" +
                                                 std::to_string(header.size.height) + " pixels; the limit is " +
                                                 std::to_string(limits.max_pixels / 1'000'000) + " megapixels.");
  }
  const auto cost = decode_cost(header);
  if (cost > limits.max_decode_bytes) {
    constexpr std::uint64_t kMiB = 1024 * 1024;
    return refused(Refusal::too_costly_to_decode, "Decoding this " + std::to_string(header.size.width) + "x" +
                                                      std::to_string(header.size.height) + " image would take about " +
                                                      std::to_string((cost + kMiB - 1) / kMiB) + " MiB; the limit is " +
                                                      std::to_string(limits.max_decode_bytes / kMiB) +
                                                      " MiB. Save it non-interlaced (not progressive), or smaller.");
  }
  return Accepted{*format, header.size};
}

void Digest::update(std::string_view bytes) {
  hash_.update(bytes);
  if (head_.size() < head_limit_) head_.append(bytes.substr(0, head_limit_ - head_.size()));
  tail_.append(bytes.substr(bytes.size() > 32 ? bytes.size() - 32 : 0));
  if (tail_.size() > 32) tail_.erase(0, tail_.size() - 32);
  size_ += bytes.size();
}

bool Digest::ends_complete(Format format) const {
  return images::ends_complete(format, tail_, size_, head_);
}

asio::awaitable<std::optional<Refused>> FileReader::open() {
  if (!boundary_) {
    size_ = length_;
    co_return std::nullopt;
  }
  std::string head;
  for (;;) {
    auto part = find_file_part(head, *boundary_);
    if (part.state == FilePart::State::found) {
      // The route's body limit allows this much framing on top of the file, no more.
      if (part.data_offset > kFormOverhead) co_return refused(Refusal::multipart_layout);
      const auto trailer = closing_trailer(*boundary_).size();
      if (part.data_offset + trailer > length_) co_return refused(Refusal::multipart_layout);
      size_ = length_ - part.data_offset - trailer;
      pending_ = head.substr(part.data_offset);
      if (pending_.size() > size_) {
        tail_extra_ = pending_.substr(size_);
        pending_.resize(size_);
      }
      scan_.emplace(*boundary_);
      if (scan_->feed(pending_)) co_return refused(Refusal::multipart_layout);
      delivered_ = pending_.size();
      co_return std::nullopt;
    }
    if (part.state == FilePart::State::missing) co_return refused(Refusal::missing_file);
    if (part.state == FilePart::State::malformed || head.size() > kFormOverhead) {
      co_return refused(Refusal::multipart_layout);
    }
    if (co_await body_.read(head, kChunk) == 0) co_return refused(Refusal::multipart_layout);
  }
}

asio::awaitable<std::string> FileReader::next() {
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

asio::awaitable<void> FileReader::check_trailer() {
  std::string rest = std::move(tail_extra_);
  const auto expected = closing_trailer(*boundary_);
  while (rest.size() <= expected.size()) {
    if (co_await body_.read(rest, expected.size() + 1 - rest.size()) == 0) break;
  }
  if (rest != expected) throw LayoutError();
}

asio::awaitable<Stored> pipe_to_storage(FileReader& file, std::string first, Format format, const std::string& key,
                                        s3::Client& s3) {
  auto executor = co_await asio::this_coro::executor;
  auto pipe = std::make_shared<BytePipe>(executor, kPipeCapacity);
  auto put_done = std::make_shared<OneShot<std::exception_ptr>>(executor);
  s3::Reader reader = [pipe](char* buf, std::size_t size) {
    auto n = pipe->read(buf, size, std::chrono::seconds(60));
    return n == BytePipe::kAborted ? s3::kReadAbort : n;
  };
  asio::co_spawn(executor, s3.put_object_stream(key, file.size(), std::move(reader), std::string(content_type(format))),
                 [put_done, pipe](std::exception_ptr e, std::string) {
                   // Once the PUT is over (all bytes taken, or failed early) the writer
                   // must not wait for room that will never come.
                   pipe->abort();
                   put_done->set(e);
                 });

  Digest digest(kEndingHead);
  std::exception_ptr failure;
  bool storage_stopped = false;
  try {
    std::string chunk = std::move(first);
    while (!chunk.empty()) {
      digest.update(chunk);
      if (!co_await pipe->write(std::move(chunk))) {
        storage_stopped = true;  // the PUT ended early: its own error says why
        break;
      }
      chunk = co_await file.next();
    }
    if (!storage_stopped) pipe->close();
  } catch (...) {
    failure = std::current_exception();  // the client's body (timeout, layout, limit)
    pipe->abort();
  }
  // The PUT ends within the storage client's own deadline; this one (a real wait, on the
  // real clock) only guards it.
  auto put_error = co_await put_done->wait_until(std::chrono::steady_clock::now() + std::chrono::minutes(10));
  if (failure) std::rethrow_exception(failure);
  // Storage trouble is the storage's: 503 + Retry-After, never a 500.
  if (!put_error) throw DependencyUnavailable("s3", "storage upload did not finish");
  if (*put_error) std::rethrow_exception(*put_error);
  if (storage_stopped) throw DependencyUnavailable("s3", "storage stopped reading the upload");
  co_return Stored{digest.sha256(), digest.ends_complete(format)};
}

asio::awaitable<Outcome<Checked>> check_stored(s3::Client& s3, const std::string& key, std::uint64_t declared,
                                               const UploadLimits& limits) {
  struct Seen {
    Digest digest{kHeadLimit};
    bool over = false;
  };
  auto seen = std::make_shared<Seen>();
  // Read through once (on a storage thread), keeping only the head and the tail, and
  // never more than was declared.
  s3::Writer inspect = [seen, declared](const char* data, std::size_t n) {
    if (seen->digest.size() + n > declared) {
      seen->over = true;
      return false;
    }
    seen->digest.update(std::string_view(data, n));
    return true;
  };
  bool found = false;
  std::exception_ptr failure;
  try {
    found = co_await s3.get_object_to(key, std::move(inspect));
  } catch (...) {
    failure = std::current_exception();
  }
  if (seen->over) co_return refused(Refusal::upload_mismatch);
  if (failure) std::rethrow_exception(failure);
  if (!found) co_return refused(Refusal::upload_missing);
  if (seen->digest.size() != declared) co_return refused(Refusal::upload_mismatch);
  auto judged = judge_head(seen->digest.head(), true, limits);
  if (auto* r = std::get_if<Refused>(&judged)) co_return std::move(*r);
  const auto accepted = std::get<Accepted>(judged);
  if (!seen->digest.ends_complete(accepted.format)) {
    co_return refused(Refusal::corrupt_image, "The image is truncated: it does not end as a whole file does.");
  }
  co_return Checked{accepted.format, accepted.size, declared, seen->digest.sha256()};
}

AfterFailure after_failure(bool refused_by_server, bool reread_ok, std::optional<ImageStatus> reread) {
  if (refused_by_server) return AfterFailure::roll_back;  // an error inside a transaction aborts it
  if (!reread_ok) return AfterFailure::leave;
  if (!reread) return AfterFailure::roll_back;  // no row: nothing can be queued any more
  if (*reread == ImageStatus::uploading) return AfterFailure::leave;
  return AfterFailure::queued;
}

asio::awaitable<void> Uploads::roll_back(const std::string& id, std::vector<std::string> keys) {
  for (const auto& key : keys) {
    try {
      co_await s3_->delete_object(key);
    } catch (const std::exception& e) {
      // Left for the orphan sweeper: an object without a row goes after its grace period.
      log::warn("removing a refused upload's object failed", {{"key", key}, {"error", e.what()}});
    }
  }
  co_await images_->remove_uploading(id);
}

asio::awaitable<bool> Uploads::queue_or_roll_back(const NewImage& image, std::vector<std::string> keys) {
  bool queued = false;
  std::exception_ptr failure;
  bool refused_by_server = false;
  try {
    queued = co_await images_->queue(image);
  } catch (const pg::Error&) {
    failure = std::current_exception();
    refused_by_server = true;
  } catch (...) {
    failure = std::current_exception();
  }
  if (!failure && queued) co_return true;
  bool reread_ok = true;
  std::optional<ImageStatus> reread;
  try {
    reread = co_await images_->status(image.id);
  } catch (const std::exception& e) {
    reread_ok = false;
    log::warn("re-reading an upload after a failure failed", {{"image_id", image.id}, {"error", e.what()}});
  }
  if (!failure) {
    // Not waiting any more: deleted meanwhile. Its objects go unless a row still holds them.
    if (reread_ok && !reread) co_await roll_back(image.id, keys);
    co_return false;
  }
  switch (after_failure(refused_by_server, reread_ok, reread)) {
    case AfterFailure::queued:
      log::warn("queueing an upload reported a failure but it committed", {{"image_id", image.id}});
      co_return true;
    case AfterFailure::roll_back:
      co_await roll_back(image.id, keys);
      break;
    case AfterFailure::leave:
      break;
  }
  std::rethrow_exception(failure);
}

asio::awaitable<Outcome<std::string>> Uploads::receive(http::BodyReader& body, std::string_view type,
                                                       const std::string& owner_id) {
  auto boundary = form_boundary(type);
  if (!boundary && !type.starts_with("image/")) co_return refused(Refusal::unsupported_media_type);
  auto length = body.content_length();
  if (!length) co_return refused(Refusal::length_required);
  if (*length == 0) co_return refused(Refusal::empty_file);

  FileReader file(body, *length, boundary);
  if (auto refusal = co_await file.open()) co_return std::move(*refusal);
  if (file.size() == 0) co_return refused(Refusal::empty_file);
  if (file.size() > limits_.max_bytes) co_return refused(Refusal::too_large);

  // Enough of the start to know the format and the dimensions, before storing a byte.
  std::string first;
  Judged judged = NeedMore{};
  bool bad_layout = false;
  try {
    for (;;) {
      auto more = co_await file.next();
      first += more;
      judged = judge_head(first, more.empty(), limits_);
      if (!std::holds_alternative<NeedMore>(judged)) break;
    }
  } catch (const FileReader::LayoutError&) {
    bad_layout = true;
  }
  if (bad_layout) co_return refused(Refusal::multipart_layout);
  if (auto* refusal = std::get_if<Refused>(&judged)) co_return std::move(*refusal);
  const auto [format, size] = std::get<Accepted>(judged);

  NewImage image{ids::uuid_v7(), owner_id, std::string(content_type(format)), {}, file.size(), size.width, size.height};
  const auto key = original_key(image.id);
  co_await images_->insert_uploading(image);
  // (No co_await inside a catch handler: the failure is kept and handled after it.)
  Stored stored;
  std::exception_ptr failure;
  bool layout = false;
  try {
    stored = co_await pipe_to_storage(file, std::move(first), format, key, *s3_);
  } catch (const FileReader::LayoutError&) {
    layout = true;
  } catch (...) {
    failure = std::current_exception();  // the client went away, or storage failed
  }
  if (layout || failure || !stored.complete) {
    // A refused or failed upload leaves nothing behind.
    std::vector<std::string> keys{key};
    co_await roll_back(image.id, std::move(keys));
    if (failure) std::rethrow_exception(failure);
    if (layout) co_return refused(Refusal::multipart_layout);
    co_return refused(Refusal::corrupt_image, "The image is truncated: it does not end as a whole file does.");
  }
  image.sha256 = stored.sha256;
  std::vector<std::string> keys{key};
  if (!co_await queue_or_roll_back(image, std::move(keys))) {
    throw std::runtime_error("an upload's row vanished before it was queued");
  }
  co_return image.id;
}

asio::awaitable<Outcome<DirectUpload>> Uploads::reserve(const std::string& owner_id, std::optional<std::string> type,
                                                        std::optional<std::int64_t> bytes) {
  static const std::set<std::string, std::less<>> kTypes = {"image/jpeg", "image/png",  "image/gif",
                                                            "image/webp", "image/avif", "image/heic"};
  if (!type || !kTypes.contains(*type)) co_return refused(Refusal::invalid_content_type);
  if (!bytes || *bytes < 1) co_return refused(Refusal::invalid_bytes);
  if (static_cast<std::uint64_t>(*bytes) > limits_.max_bytes) co_return refused(Refusal::too_large);
  NewImage image{ids::uuid_v7(), owner_id, *type, {}, static_cast<std::uint64_t>(*bytes), 0, 0};
  auto reserved = co_await images_->reserve(image, limits_.max_open_uploads, limits_.upload_url_ttl);
  if (!reserved.ok) {
    co_return Refused{Refusal::too_many_uploads,
                      "You have " + std::to_string(limits_.max_open_uploads) +
                          " direct uploads open; complete one or wait for the oldest to lapse.",
                      reserved.retry_after};
  }
  // The URL is bound to the declared type and size: storage refuses any other. It is
  // signed at the very instant its expiry is counted from.
  const auto now = clock_->system_now();
  DirectUpload out{image.id,
                   s3_->presign_put(upload_key(image.id), limits_.upload_url_ttl,
                                    {{"content-length", std::to_string(image.bytes)}, {"content-type", *type}}, now),
                   *type, image.bytes, now + limits_.upload_url_ttl};
  co_return out;
}

asio::awaitable<Outcome<std::monostate>> Uploads::complete(const std::string& id, const std::string& owner_id) {
  auto reservation = co_await images_->claim_reservation(id, owner_id, kClaimLease);
  if (!reservation) co_return refused(Refusal::not_uploading);
  const auto staged = upload_key(id), original = original_key(id);
  std::optional<Outcome<std::monostate>> answer;
  std::exception_ptr failure;
  try {
    // The object is copied, server-side, to the key only the server writes, and the copy
    // is what gets checked: a PUT to the URL after this point changes nothing the
    // workers or downloads see (ADR 0005).
    if (!co_await s3_->copy_object(staged, original, reservation->content_type)) {
      co_await images_->release_claim(id);
      answer = refused(Refusal::upload_missing);
    } else {
      auto checked = co_await check_stored(*s3_, original, reservation->bytes, limits_);
      if (auto* r = std::get_if<Refused>(&checked)) {
        // Refused: the objects and the reservation go; the client may start again.
        std::vector<std::string> keys{original, staged};
        co_await roll_back(id, std::move(keys));
        answer = std::move(*r);
      } else {
        const auto& c = std::get<Checked>(checked);
        NewImage image{id,           owner_id,     std::string(content_type(c.format)), c.sha256, c.bytes,
                       c.size.width, c.size.height};
        std::vector<std::string> keys{original, staged};
        if (co_await queue_or_roll_back(image, std::move(keys))) {
          answer = std::monostate{};
        } else {
          answer = refused(Refusal::not_uploading);
        }
      }
    }
  } catch (...) {
    failure = std::current_exception();
  }
  if (failure) {
    // Let the client try again at once rather than after the claim's lease.
    try {
      co_await images_->release_claim(id);
    } catch (const std::exception&) {
    }
    std::rethrow_exception(failure);
  }
  if (std::holds_alternative<std::monostate>(*answer)) {
    try {
      co_await s3_->delete_object(staged);
    } catch (const std::exception& e) {
      log::warn("removing a completed upload's staging object failed", {{"key", staged}, {"error", e.what()}});
    }
  }
  co_return std::move(*answer);
}

}  // namespace nimbus::images
