#include "images/repository.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cmath>

#include "core/ids.hpp"

namespace nimbus::images {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

double seconds(std::chrono::duration<double> d) {
  return d.count();
}

// --- Uploads ---

constexpr std::string_view kInsertUploading = R"(
INSERT INTO images (id, owner_id, status, content_type, bytes, width, height)
VALUES ($1, $2, 'uploading', $3, $4, $5, $6))";

// Serialises the reservations of one owner (READ COMMITTED: the count below then sees
// every reservation committed before it).
constexpr std::string_view kLockOwnerUploads =
    "SELECT pg_advisory_xact_lock(hashtextextended('images.uploads:' || $1, 0))";

// Inserted only under the limit; otherwise the seconds until the oldest open
// reservation lapses.
constexpr std::string_view kReserve = R"(
WITH open AS (
  SELECT count(*) AS n, min(created_at) AS oldest FROM images
   WHERE owner_id = $2 AND status = 'uploading' AND created_at > now() - make_interval(secs => $6::double precision)),
ins AS (
  INSERT INTO images (id, owner_id, status, content_type, bytes)
  SELECT $1, $2, 'uploading', $3, $4 FROM open WHERE open.n < $5
  RETURNING 1)
SELECT (SELECT count(*) FROM ins),
       coalesce(ceil(extract(epoch FROM (SELECT oldest FROM open) + make_interval(secs => $6::double precision)
                                         - now())), 1)::bigint)";

constexpr std::string_view kClaim = R"(
UPDATE images SET checking_until = now() + make_interval(secs => $3::double precision)
 WHERE id = $1 AND owner_id = $2 AND status = 'uploading' AND (checking_until IS NULL OR checking_until < now())
RETURNING content_type, bytes)";

constexpr std::string_view kReleaseClaim =
    "UPDATE images SET checking_until = NULL WHERE id = $1 AND status = 'uploading'";

constexpr std::string_view kQueue = R"(
UPDATE images SET status = 'queued', content_type = $2, bytes = $3, width = $4, height = $5, sha256 = $6,
                  checking_until = NULL, updated_at = now()
 WHERE id = $1 AND status = 'uploading')";

constexpr std::string_view kStatus = "SELECT status FROM images WHERE id = $1";

constexpr std::string_view kRemoveUploading = "DELETE FROM images WHERE id = $1 AND status = 'uploading'";

// --- Reads ---

#define NIMBUS_IMAGE_COLUMNS                                                                  \
  "i.id, i.status, i.content_type, i.bytes, i.width, i.height, i.sha256, i.error, "           \
  "to_char(i.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "           \
  "(SELECT json_agg(json_build_object('name', v.name, 'width', v.width, 'height', v.height, " \
  "'content_type', v.content_type, 'bytes', v.bytes) ORDER BY v.name) FROM image_variants v WHERE v.image_id = i.id)"

constexpr std::string_view kGet = "SELECT " NIMBUS_IMAGE_COLUMNS " FROM images i WHERE i.id = $1 AND i.owner_id = $2";

// Newest first. The cursor's position is read from the owner's own row, or else from
// the time a UUIDv7 carries in its first 48 bits: never from another owner's row.
constexpr std::string_view kList = "SELECT " NIMBUS_IMAGE_COLUMNS R"( FROM images i
 WHERE i.owner_id = $1
   AND ($2::uuid IS NULL OR (i.created_at, i.id) < (
        coalesce((SELECT c.created_at FROM images c WHERE c.id = $2::uuid AND c.owner_id = $1),
                 to_timestamp(('x' || substr(replace($2::uuid::text, '-', ''), 1, 12))::bit(48)::bigint / 1000.0)),
        $2::uuid))
 ORDER BY i.created_at DESC, i.id DESC
 LIMIT $3)";

#undef NIMBUS_IMAGE_COLUMNS

constexpr std::string_view kDownloadable = R"(
SELECT EXISTS (SELECT 1 FROM images WHERE id = $1 AND owner_id = $2),
       EXISTS (SELECT 1 FROM image_variants WHERE image_id = $1 AND name = $3),
       (SELECT content_type FROM images WHERE id = $1 AND owner_id = $2))";

constexpr std::string_view kDelete = R"(
WITH gone AS (DELETE FROM images WHERE id = $1 AND owner_id = $2 RETURNING id)
SELECT coalesce((SELECT string_agg(name, ',') FROM image_variants WHERE image_id = $1), ''), count(*) FROM gone)";

// --- Jobs ---

// The attempts an image has spent when its job is taken. Still `processing`: the worker
// that took it before died (or was cut off) without ending its attempt; that attempt
// counts only if the worker was decoding this image then (decoding_since set), else it
// is given back — a worker killed by another image's decode charges nobody else.
#define NIMBUS_SPENT_ATTEMPTS                                                                             \
  "attempts - CASE WHEN status = 'processing' AND decoding_since IS NULL AND attempts > 0 THEN 1 ELSE 0 " \
  "END"

// One statement takes the job: an attempt is counted before any work, so a job that
// kills its worker while decoding still counts; at the limit the image fails instead of
// starting. Starts are counted too, given back only by a clean hand-back: deaths outside
// the decode cost no attempt, but after 4 x the attempts' limit of starts the image
// fails rather than retrying forever.
constexpr std::string_view kBegin = R"(
UPDATE images i SET
  status = CASE WHEN p.spent >= $2 OR p.starts >= 4 * $2 THEN 'failed' ELSE 'processing' END,
  error = CASE WHEN p.spent >= $2
               THEN 'gave up after ' || p.spent || ' processing attempts that did not finish'
               WHEN p.starts >= 4 * $2
               THEN 'gave up after ' || p.starts || ' starts whose workers stopped outside the decode'
               ELSE i.error END,
  attempts = CASE WHEN p.spent >= $2 OR p.starts >= 4 * $2 THEN p.spent ELSE p.spent + 1 END,
  starts = CASE WHEN p.spent >= $2 OR p.starts >= 4 * $2 THEN p.starts ELSE p.starts + 1 END,
  decoding_since = NULL,
  updated_at = now()
  FROM (SELECT id, starts, )" NIMBUS_SPENT_ATTEMPTS R"( AS spent FROM images
         WHERE id = $1 AND status IN ('queued', 'processing') FOR UPDATE) p
 WHERE i.id = p.id
RETURNING i.status, i.attempts, i.bytes, i.sha256)";

// Around the decode only: what a worker death is charged to.
constexpr std::string_view kDecoding = R"(
UPDATE images SET decoding_since = CASE WHEN $2::boolean THEN now() END
 WHERE id = $1 AND status = 'processing')";

// The attempt ended (counted) and the job waits in a delay queue.
constexpr std::string_view kRetryLater = R"(
UPDATE images SET status = 'queued', decoding_since = NULL, updated_at = now()
 WHERE id = $1 AND status = 'processing')";

// Variants and status in one statement, guarded: only an image still waiting for them
// becomes ready (a deleted one is left alone and its objects are removed).
constexpr std::string_view kFinish = R"(
WITH img AS (
  UPDATE images SET status = 'ready', error = NULL, decoding_since = NULL, updated_at = now()
   WHERE id = $1 AND status IN ('queued', 'processing') RETURNING id),
v AS (
  INSERT INTO image_variants (image_id, name, width, height, content_type, bytes)
  SELECT img.id, u.name, u.width, u.height, u.content_type, u.bytes
    FROM img, unnest($2::text[], $3::int[], $4::int[], $5::text[], $6::bigint[])
                AS u(name, width, height, content_type, bytes)
  ON CONFLICT (image_id, name) DO UPDATE
    SET width = EXCLUDED.width, height = EXCLUDED.height, content_type = EXCLUDED.content_type,
        bytes = EXCLUDED.bytes)
SELECT count(*) FROM img)";

constexpr std::string_view kFail = R"(
UPDATE images SET status = 'failed', error = $2, decoding_since = NULL, updated_at = now()
 WHERE id = $1 AND status IN ('queued', 'processing'))";

constexpr std::string_view kGiveBack = R"(
UPDATE images SET status = 'queued', attempts = greatest(attempts - 1, 0), starts = greatest(starts - 1, 0),
       decoding_since = NULL, updated_at = now()
 WHERE id = $1 AND status = 'processing')";

// --- Sweeper ---

// Several workers may sweep at once: SKIP LOCKED gives each a different set.
constexpr std::string_view kSweepStuck = R"(
WITH stuck AS (
  SELECT id, )" NIMBUS_SPENT_ATTEMPTS R"( AS attempts FROM images
   WHERE status IN ('queued', 'processing') AND updated_at < now() - make_interval(secs => $1::double precision)
   ORDER BY updated_at LIMIT 100
   FOR UPDATE SKIP LOCKED),
given_up AS (
  UPDATE images i SET status = 'failed', updated_at = now(),
                      error = 'gave up after ' || i.attempts || ' processing attempts that did not finish'
    FROM stuck WHERE i.id = stuck.id AND stuck.attempts >= $2 RETURNING i.id),
touched AS (
  UPDATE images i SET updated_at = now() FROM stuck WHERE i.id = stuck.id AND stuck.attempts < $2 RETURNING i.id)
SELECT coalesce((SELECT string_agg(id::text, ',') FROM touched), ''), (SELECT count(*) FROM given_up))";

#undef NIMBUS_SPENT_ATTEMPTS

constexpr std::string_view kPurgeAbandoned = R"(
DELETE FROM images WHERE status = 'uploading' AND created_at < now() - make_interval(secs => $1::double precision)
RETURNING id)";

constexpr std::string_view kExisting = "SELECT id, status FROM images WHERE id = ANY($1::uuid[])";

std::vector<std::string> split(std::string_view text) {
  std::vector<std::string> out;
  for (std::size_t at = 0; at < text.size();) {
    auto comma = text.find(',', at);
    if (comma == std::string_view::npos) comma = text.size();
    out.emplace_back(text.substr(at, comma - at));
    at = comma + 1;
  }
  return out;
}

std::string join_numbers(const std::vector<VariantRow>& vs, auto field) {
  std::string out = "{";
  for (std::size_t i = 0; i < vs.size(); ++i) out += (i ? "," : "") + std::to_string(vs[i].*field);
  return out + "}";
}

ImageStatus status_of(std::string_view text) {
  auto s = parse_status(text);
  if (!s) throw std::runtime_error("images: unknown status '" + std::string(text) + "'");
  return *s;
}

Image image_row(const pg::Result& r, int i) {
  Image out;
  out.id = std::string(r.get(i, 0));
  out.status = status_of(r.get(i, 1));
  out.content_type = std::string(r.get(i, 2));
  out.bytes = r.get_int(i, 3);
  if (!r.is_null(i, 4)) out.width = static_cast<int>(r.get_int(i, 4));
  if (!r.is_null(i, 5)) out.height = static_cast<int>(r.get_int(i, 5));
  out.sha256 = r.get_optional(i, 6);
  out.error = r.get_optional(i, 7);
  out.created_at = std::string(r.get(i, 8));
  if (!r.is_null(i, 9)) {
    const auto parsed = json::parse(r.get(i, 9));
    for (const auto& v : parsed.as_array()) {
      const auto& o = v.as_object();
      out.variants.push_back(VariantRow{
          std::string(o.at("name").as_string()), std::string(o.at("content_type").as_string()),
          static_cast<int>(o.at("width").to_number<std::int64_t>()),
          static_cast<int>(o.at("height").to_number<std::int64_t>()), o.at("bytes").to_number<std::int64_t>()});
    }
  }
  return out;
}

}  // namespace

std::string_view to_string(ImageStatus status) {
  switch (status) {
    case ImageStatus::uploading:
      return "uploading";
    case ImageStatus::queued:
      return "queued";
    case ImageStatus::processing:
      return "processing";
    case ImageStatus::ready:
      return "ready";
    case ImageStatus::failed:
      return "failed";
  }
  return "failed";
}

std::optional<ImageStatus> parse_status(std::string_view text) {
  for (auto s : {ImageStatus::uploading, ImageStatus::queued, ImageStatus::processing, ImageStatus::ready,
                 ImageStatus::failed}) {
    if (to_string(s) == text) return s;
  }
  return std::nullopt;
}

std::string original_key(const std::string& image_id) {
  return "originals/" + image_id;
}

std::string variant_key(const std::string& image_id, const std::string& name) {
  return "variants/" + image_id + "/" + name;
}

std::string upload_key(const std::string& image_id) {
  return "uploads/" + image_id;
}

std::optional<std::string> image_id_of_key(std::string_view key) {
  for (std::string_view prefix : {"originals/", "uploads/", "variants/"}) {
    if (!key.starts_with(prefix)) continue;
    auto rest = key.substr(prefix.size());
    const auto slash = rest.find('/');
    if (prefix == "variants/" ? slash == std::string_view::npos : slash != std::string_view::npos) return std::nullopt;
    auto id = std::string(rest.substr(0, slash));
    if (!ids::is_uuid(id)) return std::nullopt;
    return id;
  }
  return std::nullopt;
}

std::optional<std::chrono::system_clock::time_point> minted_at(std::string_view id) {
  if (!ids::is_uuid(id) || id[14] != '7') return std::nullopt;
  std::uint64_t ms = 0;
  for (char c : std::string(id.substr(0, 8)) + std::string(id.substr(9, 4))) {
    ms = ms * 16 + static_cast<std::uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
  }
  return std::chrono::system_clock::time_point(std::chrono::milliseconds(ms));
}

outbox::Message process_message(const std::string& image_id) {
  return outbox::Message{"nimbus", "image.process", json::serialize(json::object{{"image_id", image_id}}), false};
}

asio::awaitable<void> Repository::insert_uploading(const NewImage& image) {
  auto db = co_await pg_->acquire();
  co_await db.query(kInsertUploading,
                    pg::params(image.id, image.owner_id, image.content_type, static_cast<std::int64_t>(image.bytes),
                               static_cast<int>(image.width), static_cast<int>(image.height)));
}

asio::awaitable<Repository::Reserved> Repository::reserve(const NewImage& image, int max_open,
                                                          std::chrono::seconds window) {
  auto db = co_await pg_->acquire();
  Reserved out;
  try {
    co_await db.execute_script("BEGIN");
    co_await db.query(kLockOwnerUploads, pg::params(image.owner_id));
    auto r = co_await db.query(kReserve, pg::params(image.id, image.owner_id, image.content_type,
                                                    static_cast<std::int64_t>(image.bytes), max_open, seconds(window)));
    co_await db.execute_script("COMMIT");
    out = Reserved{r.get_int(0, 0) == 1, std::chrono::seconds(std::max<std::int64_t>(1, r.get_int(0, 1)))};
  } catch (...) {
    db.discard();  // a connection left inside a failed transaction is not reused
    throw;
  }
  co_return out;
}

asio::awaitable<std::optional<Reservation>> Repository::claim_reservation(const std::string& id,
                                                                          const std::string& owner_id,
                                                                          std::chrono::seconds lease) {
  auto db = co_await pg_->acquire();
  auto r = co_await db.query(kClaim, pg::params(id, owner_id, seconds(lease)));
  if (r.rows() == 0) co_return std::nullopt;
  co_return Reservation{std::string(r.get(0, 0)), static_cast<std::uint64_t>(r.get_int(0, 1))};
}

asio::awaitable<void> Repository::release_claim(const std::string& id) {
  auto db = co_await pg_->acquire();
  co_await db.query(kReleaseClaim, pg::params(id));
}

asio::awaitable<bool> Repository::queue(const NewImage& checked) {
  auto db = co_await pg_->acquire();
  bool queued = false;
  try {
    co_await db.execute_script("BEGIN");
    auto r = co_await db.query(
        kQueue, pg::params(checked.id, checked.content_type, static_cast<std::int64_t>(checked.bytes),
                           static_cast<int>(checked.width), static_cast<int>(checked.height), checked.sha256));
    queued = r.affected() == 1;
    if (queued) co_await outbox::enqueue(db, process_message(checked.id));
    co_await db.execute_script("COMMIT");
  } catch (...) {
    db.discard();
    throw;
  }
  co_return queued;
}

asio::awaitable<std::optional<ImageStatus>> Repository::status(const std::string& id) {
  auto db = co_await pg_->acquire();
  auto r = co_await db.query(kStatus, pg::params(id));
  if (r.rows() == 0) co_return std::nullopt;
  co_return status_of(r.get(0, 0));
}

asio::awaitable<void> Repository::remove_uploading(const std::string& id) {
  auto db = co_await pg_->acquire();
  co_await db.query(kRemoveUploading, pg::params(id));
}

asio::awaitable<std::optional<Image>> Repository::get(const std::string& id, const std::string& owner_id) {
  auto db = co_await pg_->acquire();
  auto r = co_await db.query(kGet, pg::params(id, owner_id));
  if (r.rows() == 0) co_return std::nullopt;
  co_return image_row(r, 0);
}

asio::awaitable<ImagePage> Repository::list(const std::string& owner_id, std::optional<std::string> after, int limit) {
  auto db = co_await pg_->acquire();
  auto r = co_await db.query(kList, pg::params(owner_id, after, limit + 1));
  ImagePage page;
  const int n = std::min(r.rows(), limit);
  for (int i = 0; i < n; ++i) page.items.push_back(image_row(r, i));
  if (r.rows() > limit) page.next_after = page.items.back().id;
  co_return page;
}

asio::awaitable<Repository::Downloadable> Repository::downloadable(const std::string& id, const std::string& owner_id,
                                                                   const std::string& variant) {
  auto db = co_await pg_->acquire();
  auto r = co_await db.query(kDownloadable, pg::params(id, owner_id, variant));
  co_return Downloadable{r.get_bool(0, 0), r.get_bool(0, 1), r.get_optional(0, 2).value_or("")};
}

asio::awaitable<std::optional<std::vector<std::string>>> Repository::remove(const std::string& id,
                                                                            const std::string& owner_id) {
  auto db = co_await pg_->acquire();
  auto r = co_await db.query(kDelete, pg::params(id, owner_id));
  if (r.get_int(0, 1) == 0) co_return std::nullopt;
  co_return split(r.get(0, 0));
}

asio::awaitable<Begun> Repository::begin_processing(const std::string& id, int max_attempts) {
  auto db = co_await pg_->acquire();
  auto started = co_await db.query(kBegin, pg::params(id, max_attempts));
  if (started.rows() == 1) {
    Begun out;
    out.found = status_of(started.get(0, 0)) == ImageStatus::failed ? Begun::Found::gave_up : Begun::Found::process;
    out.attempts = static_cast<int>(started.get_int(0, 1));
    out.bytes = static_cast<std::uint64_t>(started.get_int(0, 2));
    out.sha256 = started.get_optional(0, 3);
    co_return out;
  }
  auto status = co_await db.query(kStatus, pg::params(id));
  Begun out;
  out.found = status.rows() == 0 ? Begun::Found::gone : Begun::Found::done;  // ready or failed: nothing to do
  co_return out;
}

asio::awaitable<bool> Repository::finish(const std::string& id, const std::vector<VariantRow>& variants) {
  std::vector<std::string> names, types, bytes;
  for (const auto& v : variants) {
    names.push_back(v.name);
    types.push_back(v.content_type);
    bytes.push_back(std::to_string(v.bytes));
  }
  auto db = co_await pg_->acquire();
  auto r =
      co_await db.query(kFinish, pg::params(id, pg::array_literal(names), join_numbers(variants, &VariantRow::width),
                                            join_numbers(variants, &VariantRow::height), pg::array_literal(types),
                                            pg::array_literal(bytes)));
  co_return r.get_int(0, 0) == 1;
}

asio::awaitable<void> Repository::fail(const std::string& id, const std::string& reason) {
  auto db = co_await pg_->acquire();
  co_await db.query(kFail, pg::params(id, reason));
}

asio::awaitable<void> Repository::decoding(std::string id, bool decoding) {
  auto db = co_await pg_->acquire();
  co_await db.query(kDecoding, pg::params(id, decoding));
}

asio::awaitable<void> Repository::retry_later(std::string id) {
  auto db = co_await pg_->acquire();
  co_await db.query(kRetryLater, pg::params(id));
}

asio::awaitable<void> Repository::give_back(const std::string& id) {
  auto db = co_await pg_->acquire();
  co_await db.query(kGiveBack, pg::params(id));
}

asio::awaitable<Swept> Repository::requeue_stuck(std::chrono::milliseconds stuck_after, int max_attempts) {
  auto db = co_await pg_->acquire();
  Swept out;
  try {
    co_await db.execute_script("BEGIN");
    auto r = co_await db.query(kSweepStuck, pg::params(seconds(stuck_after), max_attempts));
    out = Swept{split(r.get(0, 0)), r.get_int(0, 1)};
    std::vector<pg::Statement> jobs;
    for (const auto& id : out.requeued) jobs.push_back(outbox::enqueue_statement(process_message(id)));
    if (!jobs.empty()) co_await db.pipeline(jobs);
    co_await db.execute_script("COMMIT");
  } catch (...) {
    db.discard();
    throw;
  }
  co_return out;
}

asio::awaitable<std::vector<std::string>> Repository::purge_abandoned(std::chrono::milliseconds older_than) {
  auto db = co_await pg_->acquire();
  auto r = co_await db.query(kPurgeAbandoned, pg::params(seconds(older_than)));
  std::vector<std::string> ids;
  for (int i = 0; i < r.rows(); ++i) ids.emplace_back(r.get(i, 0));
  co_return ids;
}

asio::awaitable<std::vector<std::pair<std::string, ImageStatus>>> Repository::existing(
    const std::vector<std::string>& ids) {
  std::vector<std::pair<std::string, ImageStatus>> out;
  if (ids.empty()) co_return out;
  auto db = co_await pg_->acquire();
  auto r = co_await db.query(kExisting, pg::params(pg::array_literal(ids)));
  for (int i = 0; i < r.rows(); ++i) out.emplace_back(std::string(r.get(i, 0)), status_of(r.get(i, 1)));
  co_return out;
}

}  // namespace nimbus::images
