// The one owner of the `images` and `image_variants` tables: every statement on them
// (API, worker, sweeper) is here, as named constants, with typed rows and an enum for
// the status. Error policy: infrastructure failures throw (pg::Error,
// DependencyUnavailable); "no such row" and lost races are values.
//
// An image's life: uploading (a row reserved before its bytes are stored) → queued
// (checked, its job in the outbox, one transaction) → processing (a worker started it;
// each start counts an attempt) → ready | failed.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "outbox/outbox.hpp"
#include "store/pg/pool.hpp"

namespace nimbus::images {

enum class ImageStatus { uploading, queued, processing, ready, failed };
std::string_view to_string(ImageStatus status);
std::optional<ImageStatus> parse_status(std::string_view text);

// Object keys derive from the image id, so a retried job overwrites, never duplicates.
// originals/ and variants/ are written only by the server; uploads/ is where a
// presigned PUT lands, and nothing is ever read from there but to copy it (ADR 0005).
std::string original_key(const std::string& image_id);
std::string variant_key(const std::string& image_id, const std::string& name);
std::string upload_key(const std::string& image_id);
// The image id an object key belongs to (originals/<id>, uploads/<id>,
// variants/<id>/<name>); nullopt for any other key.
std::optional<std::string> image_id_of_key(std::string_view key);
// When an image id was minted: the time a UUIDv7 carries in its first 48 bits; nullopt
// for any other kind of id.
std::optional<std::chrono::system_clock::time_point> minted_at(std::string_view id);

// The image.process job, the one way it is built (streamed upload, direct upload,
// sweeper).
outbox::Message process_message(const std::string& image_id);

struct NewImage {
  std::string id, owner_id, content_type, sha256;
  std::uint64_t bytes = 0;
  std::uint32_t width = 0, height = 0;
};

struct VariantRow {
  std::string name, content_type;
  int width = 0, height = 0;
  std::int64_t bytes = 0;
};

struct Image {
  std::string id;
  ImageStatus status = ImageStatus::queued;
  std::string content_type;
  std::int64_t bytes = 0;
  std::optional<int> width, height;
  std::optional<std::string> sha256, error;
  std::string created_at;  // RFC 3339, UTC, milliseconds
  std::vector<VariantRow> variants;
};

struct ImagePage {
  std::vector<Image> items;
  std::optional<std::string> next_after;  // id of the last item, when there is more
};

// A direct upload waiting for its object, as declared.
struct Reservation {
  std::string content_type;
  std::uint64_t bytes = 0;
};

// What a worker found when it took a job.
struct Begun {
  enum class Found { process, gave_up, done, gone } found = Found::gone;
  int attempts = 0;  // processing starts of this image, this one included
  std::uint64_t bytes = 0;
  std::optional<std::string> sha256;  // of the checked upload
};

struct Swept {
  std::vector<std::string> requeued;  // their jobs are in the outbox
  std::int64_t failed = 0;            // at the attempt limit: failed instead
};

class Repository {
 public:
  explicit Repository(std::shared_ptr<pg::Pool> pg) : pg_(std::move(pg)) {}

  // --- Uploads (API) ---
  // The row first (status uploading), before a byte is stored, so an object never
  // exists without a row that either queues it or is known to be gone.
  boost::asio::awaitable<void> insert_uploading(const NewImage& image);
  // A direct-upload reservation, unless `owner_id` already holds `max_open` reserved
  // within `window`; then nullopt-like: how long until the oldest of them lapses.
  struct Reserved {
    bool ok = false;
    std::chrono::seconds retry_after{0};
  };
  boost::asio::awaitable<Reserved> reserve(const NewImage& image, int max_open, std::chrono::seconds window);
  // Claims a waiting reservation for one completion check at a time (a lease of
  // `lease`, in case the checking instance dies): the declared type and size, or
  // nullopt if it is not waiting (completed, refused, deleted, or being checked).
  boost::asio::awaitable<std::optional<Reservation>> claim_reservation(const std::string& id,
                                                                       const std::string& owner_id,
                                                                       std::chrono::seconds lease);
  // Drops the claim (the object was not there yet): the client may complete again.
  boost::asio::awaitable<void> release_claim(const std::string& id);
  // uploading → queued with its job, one transaction. False if it was not uploading.
  boost::asio::awaitable<bool> queue(const NewImage& checked);
  // After a failure whose outcome is unknown (e.g. a lost COMMIT reply): what the row
  // says now. nullopt: there is no row.
  boost::asio::awaitable<std::optional<ImageStatus>> status(const std::string& id);
  // A refused or failed upload's row (only while still uploading).
  boost::asio::awaitable<void> remove_uploading(const std::string& id);

  // --- Reads and deletion (API) ---
  boost::asio::awaitable<std::optional<Image>> get(const std::string& id, const std::string& owner_id);
  // Newest first. `after`: the last id of the previous page — a position among the
  // owner's own images; any other id (another user's, a deleted one) is read only for
  // the time it carries (UUIDv7), so a cursor tells nothing about other rows.
  boost::asio::awaitable<ImagePage> list(const std::string& owner_id, std::optional<std::string> after, int limit);
  // Whether the owner has the image, and the variant (when one is named).
  struct Downloadable {
    bool image = false, variant = false;
    std::string content_type;
  };
  boost::asio::awaitable<Downloadable> downloadable(const std::string& id, const std::string& owner_id,
                                                    const std::string& variant);
  // Deletes the row (variants cascade): the variant names it had, or nullopt if the
  // owner has no such image.
  boost::asio::awaitable<std::optional<std::vector<std::string>>> remove(const std::string& id,
                                                                         const std::string& owner_id);

  // --- Jobs (worker) ---
  // Takes a job: counts an attempt and marks the image processing — or, with
  // `max_attempts` starts already spent, marks it failed without starting again. A
  // start whose worker died counts as spent only if it died decoding this image
  // (docs/adr/0010).
  boost::asio::awaitable<Begun> begin_processing(const std::string& id, int max_attempts);
  // Variants and status in one guarded statement: false if the image is no longer
  // waiting for them (deleted meanwhile).
  boost::asio::awaitable<bool> finish(const std::string& id, const std::vector<VariantRow>& variants);
  boost::asio::awaitable<void> fail(const std::string& id, const std::string& reason);
  // Brackets the decode: a worker that dies in between is charged to this image.
  boost::asio::awaitable<void> decoding(std::string id, bool decoding);
  // The attempt failed (it stays counted) and the job waits in a delay queue.
  boost::asio::awaitable<void> retry_later(std::string id);
  // A job cut off by a shutdown goes back to the queue: this start does not count.
  boost::asio::awaitable<void> give_back(const std::string& id);

  // --- Sweeper (worker) ---
  // Images stuck in queued/processing for `stuck_after` are queued again (a lost
  // message, a killed worker), except those at the attempt limit, which fail.
  boost::asio::awaitable<Swept> requeue_stuck(std::chrono::milliseconds stuck_after, int max_attempts);
  // Reservations never completed within `older_than`: their rows go; their ids come back
  // so that their objects go too.
  boost::asio::awaitable<std::vector<std::string>> purge_abandoned(std::chrono::milliseconds older_than);
  // Of `ids`, those with a row, and their status.
  boost::asio::awaitable<std::vector<std::pair<std::string, ImageStatus>>> existing(
      const std::vector<std::string>& ids);

 private:
  std::shared_ptr<pg::Pool> pg_;
};

}  // namespace nimbus::images
