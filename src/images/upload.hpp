// The upload story, from request bytes (or a presigned PUT) to a queued image.
//
// Pieces, each testable alone: FileReader (the file's bytes, raw body or the last field
// of a multipart form), judge_head (format, dimensions and limits from the first bytes,
// before a byte is stored), pipe_to_storage (a bounded pipe into one S3 PUT, hashing and
// keeping the ending), check_stored (the completion check of an object already in
// storage). Uploads strings them together with the repository.
//
// Error policy: what depends on the input is a Refused value — one Refusal enum, mapped
// to HTTP in one place (to_response); infrastructure failures throw.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "core/clock.hpp"
#include "core/sha256.hpp"
#include "http/message.hpp"
#include "images/multipart.hpp"
#include "images/repository.hpp"
#include "images/sniff.hpp"
#include "storage/s3/client.hpp"

namespace nimbus::images {

struct UploadLimits {
  std::size_t max_bytes = 25 * 1024 * 1024;
  std::uint64_t max_pixels = 50'000'000;
  // What a full decode may hold, as its header tells (images::decode_cost): the bound
  // the workers keep too, so an upload they would refuse is refused here.
  std::uint64_t max_decode_bytes = 256ULL * 1024 * 1024;
  // Direct uploads: open reservations per user, and the presigned PUT's life.
  int max_open_uploads = 10;
  std::chrono::seconds upload_url_ttl{120};
  // Uploads (streamed, and direct ones reserved) per user and minute, over every
  // instance: one account cannot fill the storage and the image queue (429 rate_limited).
  int uploads_per_minute = 30;

  // NIMBUS_IMAGE_MAX_BYTES, NIMBUS_IMAGE_MAX_PIXELS, NIMBUS_IMAGE_MAX_DECODE_BYTES,
  // NIMBUS_IMAGE_OPEN_UPLOADS, NIMBUS_IMAGE_UPLOAD_URL_TTL, NIMBUS_LIMIT_UPLOADS_PER_MINUTE.
  static UploadLimits from_env();
};

enum class Refusal {
  unsupported_media_type,  // 415: neither an image/* body nor a multipart form
  length_required,         // 411
  empty_file,              // 422
  too_large,               // 413
  missing_file,            // 400: a form without a "file" field
  multipart_layout,        // 400: see multipart.hpp
  unsupported_image_type,  // 415: the bytes are no accepted format
  corrupt_image,           // 422: a header that is not valid, or a truncated file
  too_many_pixels,         // 422
  too_costly_to_decode,    // 422: the header says a decode would hold more than the bound
  invalid_content_type,    // 422 (reservation)
  invalid_bytes,           // 422 (reservation)
  too_many_uploads,        // 429 + Retry-After: open reservations per user
  not_uploading,           // 409: no reservation of this user waiting under this id
  upload_missing,          // 409: nothing was PUT yet
  upload_mismatch,         // 422: the object is not of the declared size
};

struct Refused {
  Refusal refusal;
  std::string detail;  // for the client; empty: the refusal's usual words
  std::chrono::seconds retry_after{0};
};

template <typename T>
using Outcome = std::variant<T, Refused>;

// The one mapping of refusals to HTTP (problem+json with a stable code).
http::Response to_response(const Refused& refused, const UploadLimits& limits);

// --- The head judgement ---

struct NeedMore {};
struct Accepted {
  Format format;
  Dimensions size;
};
using Judged = std::variant<NeedMore, Accepted, Refused>;

inline constexpr std::size_t kHeadLimit = 1024 * 1024;  // header bytes read before deciding

// The verdict on a file from its first bytes (`at_end`: there are no more): its format
// from the magic bytes, its dimensions from the header, within the limits.
Judged judge_head(std::string_view head, bool at_end, const UploadLimits& limits);

// --- What the bytes were, as they passed ---

// SHA-256 of every byte, the first `head_limit` kept (the header walk of the ending
// check, the head judgement), the last 32 kept for the ending itself.
class Digest {
 public:
  void update(std::string_view bytes);
  std::uint64_t size() const { return size_; }
  std::string sha256() { return hash_.hex(); }
  const std::string& head() const { return head_; }
  // Whether the file ends as a whole file of `format` does.
  bool ends_complete(Format format) const;

  explicit Digest(std::size_t head_limit) : head_limit_(head_limit) {}

 private:
  std::size_t head_limit_;
  Sha256 hash_;
  std::string head_, tail_;
  std::uint64_t size_ = 0;
};

// --- The file's bytes from the request ---

// A raw image body, or the "file" field of a multipart form, its exact size known up
// front (see multipart.hpp). Reads from `body`, which must outlive it.
class FileReader {
 public:
  FileReader(http::BodyReader& body, std::uint64_t length, std::optional<std::string> boundary)
      : body_(body), length_(length), boundary_(std::move(boundary)) {}

  // Reads until the file starts; a refusal when the body cannot be an upload.
  boost::asio::awaitable<std::optional<Refused>> open();
  std::uint64_t size() const { return size_; }
  // The next bytes of the file; empty at its end. Throws LayoutError if the form turns
  // out not to be laid out as its length promised; http::BodyError from the body.
  boost::asio::awaitable<std::string> next();

  struct LayoutError : std::runtime_error {
    LayoutError() : std::runtime_error("multipart layout") {}
  };

 private:
  boost::asio::awaitable<void> check_trailer();

  http::BodyReader& body_;
  std::uint64_t length_;
  std::optional<std::string> boundary_;
  std::uint64_t size_ = 0, delivered_ = 0;
  std::string pending_, tail_extra_;
  std::optional<DelimiterScan> scan_;
};

struct Stored {
  std::string sha256;
  bool complete = false;  // the format's ending was there
};

// Pumps the file (`first`, then the rest of `file`) through a bounded pipe into one S3
// PUT of its exact size at `key`. Throws FileReader::LayoutError, http::BodyError, or
// a storage failure; the object may then exist and is the caller's to remove.
boost::asio::awaitable<Stored> pipe_to_storage(FileReader& file, std::string first, Format format,
                                               const std::string& key, s3::Client& s3);

// --- The completion check of an object in storage ---

struct Checked {
  Format format;
  Dimensions size;
  std::uint64_t bytes = 0;
  std::string sha256;
};

// Reads the object at `key` through once (never more than `declared` bytes), and judges
// it as an upload: the declared size, a real image within the limits, ending whole.
// nullopt-like outcome upload_missing when there is no object.
boost::asio::awaitable<Outcome<Checked>> check_stored(s3::Client& s3, const std::string& key, std::uint64_t declared,
                                                      const UploadLimits& limits);

// --- What to do after a failure whose outcome is unknown ---

// The queueing transaction failed. `refused_by_server`: PostgreSQL answered with an
// error, so it cannot have committed. Otherwise (a lost connection, a lost COMMIT
// reply) the outcome is unknown: `reread` is what the row says now (nullopt: no row),
// when reading it worked (`reread_ok`).
enum class AfterFailure {
  queued,     // it committed: the upload succeeded, keep everything
  roll_back,  // it cannot commit: remove the objects and the row
  leave,      // unknown (a COMMIT may still land): touch nothing; the sweepers remove
              // an upload still not queued after an hour
};
AfterFailure after_failure(bool refused_by_server, bool reread_ok, std::optional<ImageStatus> reread);

// --- The flows ---

struct DirectUpload {
  std::string id, url, content_type;
  std::uint64_t bytes = 0;
  std::chrono::system_clock::time_point expires;
};

class Uploads {
 public:
  // `clock` dates the presigned PUTs. (Image ids stay minted on the real clock: the
  // storage sweeper reads their age from them.)
  Uploads(std::shared_ptr<Repository> images, std::shared_ptr<s3::Client> s3, UploadLimits limits,
          std::shared_ptr<const core::Clock> clock = core::Clock::system())
      : images_(std::move(images)), s3_(std::move(s3)), limits_(limits), clock_(std::move(clock)) {}

  // POST /v1/images: a raw image body (`content_type` image/*) or a multipart form. The
  // id of the queued image.
  boost::asio::awaitable<Outcome<std::string>> receive(http::BodyReader& body, std::string_view content_type,
                                                       const std::string& owner_id);
  // POST /v1/images/uploads: a reservation and a presigned PUT bound to the declared
  // type and size.
  boost::asio::awaitable<Outcome<DirectUpload>> reserve(const std::string& owner_id,
                                                        std::optional<std::string> content_type,
                                                        std::optional<std::int64_t> bytes);
  // POST /v1/images/{id}/complete: the object is copied to the key only the server
  // writes, checked there, and queued (ADR 0005).
  boost::asio::awaitable<Outcome<std::monostate>> complete(const std::string& id, const std::string& owner_id);

  const UploadLimits& limits() const { return limits_; }

 private:
  // Removes what a refused or failed upload left (objects first, then the row).
  boost::asio::awaitable<void> roll_back(const std::string& id, std::vector<std::string> keys);
  // Queues a checked upload; after a failure of unknown outcome, re-reads before
  // deciding. True: queued.
  boost::asio::awaitable<bool> queue_or_roll_back(const NewImage& image, std::vector<std::string> keys);

  std::shared_ptr<Repository> images_;
  std::shared_ptr<s3::Client> s3_;
  UploadLimits limits_;
  std::shared_ptr<const core::Clock> clock_;
};

}  // namespace nimbus::images
