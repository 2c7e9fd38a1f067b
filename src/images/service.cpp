#include "images/service.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "core/log.hpp"
#include "outbox/outbox.hpp"

namespace nimbus::images {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

constexpr std::string_view kInsert = R"(
INSERT INTO images (id, owner_id, status, content_type, bytes, width, height, sha256)
VALUES ($1, $2, 'queued', $3, $4, $5, $6, $7))";

#define NIMBUS_IMAGE_COLUMNS                                                                  \
  "i.id, i.status, i.content_type, i.bytes, i.width, i.height, i.sha256, i.error, "           \
  "to_char(i.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "           \
  "(SELECT json_agg(json_build_object('name', v.name, 'width', v.width, 'height', v.height, " \
  "'content_type', v.content_type, 'bytes', v.bytes) ORDER BY v.name) FROM image_variants v WHERE v.image_id = i.id)"

constexpr std::string_view kGet = "SELECT " NIMBUS_IMAGE_COLUMNS " FROM images i WHERE i.id = $1 AND i.owner_id = $2";

// Newest first; the cursor is the last image of the previous page.
constexpr std::string_view kList = "SELECT " NIMBUS_IMAGE_COLUMNS R"( FROM images i
 WHERE i.owner_id = $1
   AND ($2::uuid IS NULL OR (i.created_at, i.id) < (SELECT c.created_at, c.id FROM images c WHERE c.id = $2::uuid))
 ORDER BY i.created_at DESC, i.id DESC
 LIMIT $3)";

#undef NIMBUS_IMAGE_COLUMNS

constexpr std::string_view kReserve = R"(
INSERT INTO images (id, owner_id, status, content_type, bytes) VALUES ($1, $2, 'uploading', $3, $4))";
constexpr std::string_view kReserved =
    "SELECT content_type, bytes FROM images WHERE id = $1 AND owner_id = $2 AND status = 'uploading'";
constexpr std::string_view kQueueReserved = R"(
UPDATE images SET status = 'queued', content_type = $2, width = $3, height = $4, sha256 = $5, updated_at = now()
 WHERE id = $1 AND status = 'uploading')";

constexpr std::string_view kVariantExists = R"(
SELECT EXISTS (SELECT 1 FROM images WHERE id = $1 AND owner_id = $2),
       EXISTS (SELECT 1 FROM image_variants WHERE image_id = $1 AND name = $3))";

constexpr std::string_view kDelete = R"(
WITH gone AS (DELETE FROM images WHERE id = $1 AND owner_id = $2 RETURNING id)
SELECT coalesce((SELECT string_agg(name, ',') FROM image_variants WHERE image_id = $1), ''), count(*) FROM gone)";

}  // namespace

std::string original_key(const std::string& image_id) {
  return "originals/" + image_id;
}

std::string variant_key(const std::string& image_id, const std::string& name) {
  return "variants/" + image_id + "/" + name;
}

asio::awaitable<void> Service::create(NewImage image) {
  auto db = co_await pg_->acquire();
  outbox::Message job{"nimbus", "image.process", json::serialize(json::object{{"image_id", image.id}}), false};
  try {
    co_await db.execute_script("BEGIN");
    co_await db.query(kInsert,
                      pg::params(image.id, image.owner_id, image.content_type, static_cast<std::int64_t>(image.bytes),
                                 static_cast<int>(image.width), static_cast<int>(image.height), image.sha256));
    co_await outbox::enqueue(db, job);
    co_await db.execute_script("COMMIT");
  } catch (...) {
    db.discard();  // a connection left inside a failed transaction is not reused
    throw;
  }
}

asio::awaitable<void> Service::reserve(std::string id, std::string owner_id, std::string content_type,
                                       std::uint64_t bytes) {
  auto db = co_await pg_->acquire();
  co_await db.query(kReserve, pg::params(id, owner_id, content_type, static_cast<std::int64_t>(bytes)));
}

asio::awaitable<std::optional<Service::Reserved>> Service::reserved(std::string id, std::string owner_id) {
  auto db = co_await pg_->acquire();
  auto r = co_await db.query(kReserved, pg::params(id, owner_id));
  if (r.rows() == 0) co_return std::nullopt;
  co_return Reserved{std::string(r.get(0, 0)), static_cast<std::uint64_t>(r.get_int(0, 1))};
}

asio::awaitable<bool> Service::queue_reserved(NewImage image) {
  auto db = co_await pg_->acquire();
  outbox::Message job{"nimbus", "image.process", json::serialize(json::object{{"image_id", image.id}}), false};
  bool queued = false;
  try {
    co_await db.execute_script("BEGIN");
    auto r = co_await db.query(kQueueReserved, pg::params(image.id, image.content_type, static_cast<int>(image.width),
                                                          static_cast<int>(image.height), image.sha256));
    queued = r.affected() == 1;
    if (queued) co_await outbox::enqueue(db, job);
    co_await db.execute_script("COMMIT");
  } catch (...) {
    db.discard();
    throw;
  }
  co_return queued;
}

json::object Service::to_json(const pg::Result& r, int i, const json::array& variants) const {
  const std::string id(r.get(i, 0));
  auto nullable_int = [&r, i](int col) -> json::value {
    if (r.is_null(i, col)) return nullptr;
    return r.get_int(i, col);
  };
  json::array out;
  for (const auto& v : variants) {
    auto o = v.as_object();
    o["url"] = s3_->presign_get(variant_key(id, std::string(o.at("name").as_string())), url_ttl_);
    out.push_back(std::move(o));
  }
  json::object body{{"id", id},
                    {"status", r.get(i, 1)},
                    {"content_type", r.get(i, 2)},
                    {"bytes", r.get_int(i, 3)},
                    {"width", nullable_int(4)},
                    {"height", nullable_int(5)},
                    {"sha256", r.is_null(i, 6) ? json::value(nullptr) : json::value(r.get(i, 6))},
                    {"created_at", r.get(i, 8)},
                    {"variants", std::move(out)}};
  if (!r.is_null(i, 7)) body["error"] = r.get(i, 7);
  return body;
}

asio::awaitable<std::optional<json::object>> Service::get(std::string id, std::string owner_id) {
  auto db = co_await pg_->acquire();
  auto r = co_await db.query(kGet, pg::params(id, owner_id));
  if (r.rows() == 0) co_return std::nullopt;
  const json::array variants = r.is_null(0, 9) ? json::array() : json::parse(r.get(0, 9)).as_array();
  co_return to_json(r, 0, variants);
}

asio::awaitable<ImagePage> Service::list(std::string owner_id, std::optional<std::string> after, int limit) {
  auto db = co_await pg_->acquire();
  auto r = co_await db.query(kList, pg::params(owner_id, after, limit + 1));
  ImagePage page;
  const int n = std::min(r.rows(), limit);
  for (int i = 0; i < n; ++i) {
    const json::array variants = r.is_null(i, 9) ? json::array() : json::parse(r.get(i, 9)).as_array();
    page.items.push_back(to_json(r, i, variants));
  }
  if (r.rows() > limit) page.next_after = std::string(r.get(limit - 1, 0));
  co_return page;
}

asio::awaitable<std::optional<std::string>> Service::download_url(std::string id, std::string owner_id,
                                                                  std::optional<std::string> variant) {
  auto db = co_await pg_->acquire();
  auto r = co_await db.query(kVariantExists, pg::params(id, owner_id, variant.value_or("")));
  if (!r.get_bool(0, 0)) co_return std::nullopt;
  if (!variant) co_return s3_->presign_get(original_key(id), url_ttl_);
  if (!r.get_bool(0, 1)) co_return std::nullopt;
  co_return s3_->presign_get(variant_key(id, *variant), url_ttl_);
}

asio::awaitable<bool> Service::remove(std::string id, std::string owner_id) {
  pg::Result r;
  {
    auto db = co_await pg_->acquire();
    r = co_await db.query(kDelete, pg::params(id, owner_id));
  }
  if (r.get_int(0, 1) == 0) co_return false;
  // The row goes first: an object left behind by a failure below is unreachable
  // garbage, never a row pointing at nothing. (A worker that finishes after this
  // finds no row and removes what it wrote.)
  std::vector<std::string> keys{original_key(id)};
  std::string names(r.get(0, 0));
  for (std::size_t at = 0; at < names.size();) {
    auto comma = names.find(',', at);
    if (comma == std::string::npos) comma = names.size();
    keys.push_back(variant_key(id, names.substr(at, comma - at)));
    at = comma + 1;
  }
  for (const auto& key : keys) {
    try {
      co_await s3_->delete_object(key);
    } catch (const std::exception& e) {
      log::warn("deleting an image object failed", {{"key", key}, {"error", e.what()}});
    }
  }
  co_return true;
}

}  // namespace nimbus::images
