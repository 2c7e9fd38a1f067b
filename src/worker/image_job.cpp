#include "worker/image_job.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>
#include <vips/vips8>

#include "core/env.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "images/service.hpp"

namespace nimbus::worker {

namespace asio = boost::asio;
using vips::VImage;

void init_vips(const char* argv0) {
  if (VIPS_INIT(argv0) != 0) throw std::runtime_error("libvips failed to start");
  vips_cache_set_max(0);  // jobs never repeat an operation; the cache would only hold memory
  vips_concurrency_set(1);
  vips_block_untrusted_set(TRUE);
  vips_operation_block_set("VipsForeignLoad", TRUE);
  for (const char* allowed : {"VipsForeignLoadJpeg", "VipsForeignLoadPng", "VipsForeignLoadNsgif",
                              "VipsForeignLoadWebp", "VipsForeignLoadHeif"}) {
    vips_operation_block_set(allowed, FALSE);
  }
}

namespace {

// A saved buffer as a string, the blob released.
std::string take(VipsBlob* blob) {
  std::size_t size = 0;
  const auto* data = static_cast<const char*>(vips_blob_get(blob, &size));
  std::string out(data, size);
  vips_area_unref(VIPS_AREA(blob));
  return out;
}

VImage to_srgb(VImage image) {
  const auto space = image.interpretation();
  if (space != VIPS_INTERPRETATION_sRGB && space != VIPS_INTERPRETATION_B_W) {
    image = image.colourspace(VIPS_INTERPRETATION_sRGB);
  }
  return image;
}

// cover: exactly size×size, cropped to the centre (enlarging a smaller image).
// Otherwise: within size×size, never enlarged.
VImage thumbnail(VipsBlob* blob, int size, bool cover) {
  auto* options = VImage::option()
                      ->set("height", size)
                      ->set("size", cover ? VIPS_SIZE_BOTH : VIPS_SIZE_DOWN)
                      // A truncated or corrupt file is an error, not a half-grey thumbnail.
                      ->set("option_string", "fail_on=error");
  if (cover) options->set("crop", VIPS_INTERESTING_CENTRE);
  return to_srgb(VImage::thumbnail_buffer(blob, size, options));
}

}  // namespace

std::vector<Variant> make_variants(const std::string& original, std::uint64_t max_pixels) {
  try {
    // Header only: refuse a decompression bomb before decoding a pixel.
    auto header = VImage::new_from_buffer(original.data(), original.size(), "");
    const auto pixels = static_cast<std::uint64_t>(header.width()) * static_cast<std::uint64_t>(header.height());
    if (pixels > max_pixels) throw UndecodableImage("image has more than the allowed pixels");

    VipsBlob* blob = vips_blob_new(nullptr, original.data(), original.size());
    std::vector<Variant> out;
    try {
      auto thumb = thumbnail(blob, 256, true);
      out.push_back(Variant{"thumb", "image/webp",
                            take(thumb.webpsave_buffer(VImage::option()->set("Q", 80)->set("strip", true))),
                            thumb.width(), thumb.height()});
      auto preview = thumbnail(blob, 1280, false);
      if (preview.has_alpha())
        preview = preview.flatten(VImage::option()->set("background", std::vector<double>{255.0}));
      out.push_back(Variant{"preview", "image/jpeg",
                            take(preview.jpegsave_buffer(VImage::option()
                                                             ->set("Q", 82)
                                                             ->set("strip", true)
                                                             ->set("optimize_coding", true)
                                                             ->set("interlace", true))),
                            preview.width(), preview.height()});
    } catch (...) {
      vips_area_unref(VIPS_AREA(blob));
      throw;
    }
    vips_area_unref(VIPS_AREA(blob));
    return out;
  } catch (const vips::VError& e) {
    std::string reason = e.what();
    while (!reason.empty() && (reason.back() == '\n' || reason.back() == ' ')) reason.pop_back();
    vips_error_clear();
    throw UndecodableImage(reason.substr(0, 300));
  }
}

ImageJobConfig ImageJobConfig::from_env() {
  ImageJobConfig c;
  c.threads = static_cast<int>(env::integer("NIMBUS_IMAGE_THREADS", c.threads, 1, 64));
  c.max_pixels = static_cast<std::uint64_t>(
      env::integer("NIMBUS_IMAGE_MAX_PIXELS", static_cast<std::int64_t>(c.max_pixels), 1, 1'000'000'000));
  c.sweep_interval = env::duration("NIMBUS_IMAGE_SWEEP_INTERVAL", c.sweep_interval);
  c.stuck_after = env::duration("NIMBUS_IMAGE_STUCK_AFTER", c.stuck_after);
  return c;
}

namespace {

// Several workers may sweep at once: SKIP LOCKED gives each a different set.
constexpr std::string_view kRequeueStuck = R"(
WITH stuck AS (
  SELECT id FROM images
   WHERE status IN ('queued', 'processing') AND updated_at < now() - make_interval(secs => $1::double precision)
   ORDER BY updated_at LIMIT 100
   FOR UPDATE SKIP LOCKED),
touched AS (
  UPDATE images i SET updated_at = now() FROM stuck WHERE i.id = stuck.id RETURNING i.id),
queued AS (
  INSERT INTO outbox (exchange, routing_key, payload, sensitive)
  SELECT 'nimbus', 'image.process', json_build_object('image_id', id)::jsonb, false FROM touched
  RETURNING 1)
SELECT count(*) FROM queued)";

}  // namespace

asio::awaitable<std::int64_t> purge_abandoned_uploads(std::shared_ptr<pg::Pool> pg, std::shared_ptr<s3::Client> s3,
                                                      std::chrono::milliseconds older_than) {
  pg::Result r;
  {
    auto db = co_await pg->acquire();
    r = co_await db.query(
        "DELETE FROM images WHERE status = 'uploading' AND created_at < now() - make_interval(secs => $1::double "
        "precision) "
        "RETURNING id",
        pg::params(std::chrono::duration<double>(older_than).count()));
  }
  for (int i = 0; i < r.rows(); ++i) co_await s3->delete_object(images::original_key(std::string(r.get(i, 0))));
  co_return r.rows();
}

asio::awaitable<std::int64_t> requeue_stuck(std::shared_ptr<pg::Pool> pg, std::chrono::milliseconds stuck_after) {
  auto db = co_await pg->acquire();
  auto r = co_await db.query(kRequeueStuck, pg::params(std::chrono::duration<double>(stuck_after).count()));
  co_return r.get_int(0, 0);
}

namespace {

constexpr std::string_view kStart = R"(
UPDATE images SET status = 'processing', attempts = attempts + 1, updated_at = now()
 WHERE id = $1 AND status IN ('queued', 'processing')
RETURNING attempts)";
constexpr std::string_view kStatus = "SELECT status FROM images WHERE id = $1";

// Variants and status in one statement, guarded: only an image still waiting for
// them becomes ready (a deleted one is left alone and its objects are removed).
constexpr std::string_view kFinish = R"(
WITH img AS (
  UPDATE images SET status = 'ready', error = NULL, updated_at = now()
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
UPDATE images SET status = 'failed', error = $2, updated_at = now()
 WHERE id = $1 AND status IN ('queued', 'processing'))";

std::string join_numbers(const std::vector<Variant>& vs, int Variant::*field) {
  std::string out = "{";
  for (std::size_t i = 0; i < vs.size(); ++i) out += (i ? "," : "") + std::to_string(vs[i].*field);
  return out + "}";
}

enum class Found { process, done, gone };
struct Begun {
  Found found;
  int attempts = 0;  // processing starts of this image, this one included
};

asio::awaitable<Begun> begin_job(std::shared_ptr<pg::Pool> pg, std::string id) {
  auto db = co_await pg->acquire();
  auto started = co_await db.query(kStart, pg::params(id));
  if (started.rows() == 1) co_return Begun{Found::process, static_cast<int>(started.get_int(0, 0))};
  auto status = co_await db.query(kStatus, pg::params(id));
  co_return Begun{status.rows() == 0 ? Found::gone : Found::done, 0};  // ready or failed: nothing to do
}

asio::awaitable<std::optional<std::string>> fetch(std::shared_ptr<s3::Client> s3, std::string id) {
  co_return co_await s3->get_object(images::original_key(id));
}

// Stores the variants, then commits; false if the image was deleted meanwhile (its
// new objects are removed again).
asio::awaitable<bool> finish(std::shared_ptr<pg::Pool> pg, std::shared_ptr<s3::Client> s3, std::string id,
                             std::vector<Variant> variants) {
  std::vector<std::string> names, types, bytes;
  for (const auto& v : variants) {
    co_await s3->put_object(images::variant_key(id, v.name), v.data, v.content_type);
    names.push_back(v.name);
    types.push_back(v.content_type);
    bytes.push_back(std::to_string(v.data.size()));
  }
  std::int64_t updated = 0;
  {
    auto db = co_await pg->acquire();
    auto r =
        co_await db.query(kFinish, pg::params(id, pg::array_literal(names), join_numbers(variants, &Variant::width),
                                              join_numbers(variants, &Variant::height), pg::array_literal(types),
                                              pg::array_literal(bytes)));
    updated = r.get_int(0, 0);
  }
  if (updated == 1) co_return true;
  for (const auto& v : variants) co_await s3->delete_object(images::variant_key(id, v.name));
  co_return false;
}

asio::awaitable<void> mark_failed(std::shared_ptr<pg::Pool> pg, std::string id, std::string reason) {
  auto db = co_await pg->acquire();
  co_await db.query(kFail, pg::params(id, reason));
}

asio::awaitable<void> publish(amqp::Publisher& publisher, amqp::Message message) {
  std::vector<amqp::Message> batch;
  batch.push_back(std::move(message));
  co_await publisher.publish(std::move(batch));
}

}  // namespace

void ImageJobs::export_metrics(http::Metrics& metrics) {
  metrics.counter_fn("nimbus_image_jobs_ready_total", "Images this worker made ready.",
                     [this] { return static_cast<double>(ready_.load()); });
  metrics.counter_fn("nimbus_image_jobs_failed_total", "Images this worker marked failed.",
                     [this] { return static_cast<double>(failed_.load()); });
  metrics.counter_fn("nimbus_image_jobs_retried_total", "Image jobs sent back for a delayed retry.",
                     [this] { return static_cast<double>(retried_.load()); });
  metrics.counter_fn("nimbus_image_jobs_skipped_total", "Image jobs with nothing to do (ready or deleted).",
                     [this] { return static_cast<double>(skipped_.load()); });
  metrics.counter_fn("nimbus_image_jobs_seconds_total", "Time spent on image jobs that made variants.",
                     [this] { return static_cast<double>(busy_ms_.load()) / 1000.0; });
}

template <typename T>
T ImageJobs::await(asio::awaitable<T> work) {
  return asio::co_spawn(ioc_, std::move(work), asio::use_future).get();
}

amqp::Outcome ImageJobs::handle(const amqp::Delivery& delivery) {
  boost::system::error_code ec;
  auto body = boost::json::parse(delivery.message.body, ec);
  const auto* field = !ec && body.is_object() ? body.as_object().if_contains("image_id") : nullptr;
  if (field == nullptr || !field->is_string() || !ids::is_uuid(std::string(field->as_string()))) {
    log::error("image job malformed: dead-lettered", {{"message_id", delivery.message.message_id}});
    return amqp::Outcome::dead_letter;
  }
  const std::string id(field->as_string());
  // Attempts are counted in the image's row (each processing start), so redeliveries
  // after a crash, delayed retries and sweeper re-queues all count. 0: not known (the
  // database did not answer), and then the job is retried without a limit.
  int attempts = 0;
  const auto started = std::chrono::steady_clock::now();
  try {
    auto begun = await(begin_job(pg_, id));
    attempts = begun.attempts;
    if (begun.found != Found::process) {
      log::info("image job without work",
                {{"image_id", id}, {"reason", begun.found == Found::gone ? "deleted" : "done"}});
      ++skipped_;
      return amqp::Outcome::ack;
    }
    auto original = await(fetch(s3_, id));
    if (!original) throw UndecodableImage("the original is missing from storage");
    auto variants = make_variants(*original, config_.max_pixels);
    original.reset();
    const bool kept = await(finish(pg_, s3_, id, std::move(variants)));
    const auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    log::info(kept ? "image ready" : "image deleted while processing", {{"image_id", id}, {"duration_ms", ms}});
    ++(kept ? ready_ : skipped_);
    busy_ms_ += static_cast<std::uint64_t>(ms);
    return amqp::Outcome::ack;
  } catch (const UndecodableImage& e) {
    log::warn("image cannot be processed", {{"image_id", id}, {"reason", e.what()}});
    try {
      await(mark_failed(pg_, id, e.what()));
    } catch (const std::exception& db) {
      log::warn("marking an image failed did not work; requeued", {{"image_id", id}, {"error", db.what()}});
      return amqp::Outcome::requeue;
    }
    ++failed_;
    return amqp::Outcome::dead_letter;
  } catch (const std::exception& e) {
    if (attempts >= config_.max_attempts) {
      log::error("image job gave up", {{"image_id", id}, {"attempts", attempts}, {"error", e.what()}});
      try {
        await(mark_failed(pg_, id, "processing failed " + std::to_string(attempts) + " times: " + e.what()));
      } catch (const std::exception&) {
        return amqp::Outcome::requeue;
      }
      ++failed_;
      return amqp::Outcome::dead_letter;
    }
    // Back off through a delay exchange; this delivery is done with.
    const auto& delays = amqp::topology::kRetryDelaysSeconds;
    const auto step = static_cast<std::size_t>(attempts == 0 ? 1 : attempts - 1);
    const int delay = delays[std::min(step, std::size(delays) - 1)];
    amqp::Message retry = delivery.message;
    retry.exchange = amqp::topology::retry_exchange(delay);
    retry.routing_key = std::string(amqp::topology::kImageProcess);
    log::warn("image job failed; retrying",
              {{"image_id", id}, {"attempts", attempts}, {"delay_s", delay}, {"error", e.what()}});
    try {
      await(publish(publisher_, std::move(retry)));
    } catch (const std::exception&) {
      return amqp::Outcome::requeue;
    }
    ++retried_;
    return amqp::Outcome::ack;
  }
}

}  // namespace nimbus::worker
