#include "worker/image_job.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>

#include "core/env.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "core/sha256.hpp"
#include "images/sniff.hpp"
#include "worker/thumbnails.hpp"

namespace nimbus::worker {

namespace asio = boost::asio;
using images::Begun;

ImageJobConfig ImageJobConfig::from_env() {
  ImageJobConfig c;
  c.threads = static_cast<int>(env::integer("NIMBUS_IMAGE_THREADS", c.threads, 1, 64));
  c.max_pixels = static_cast<std::uint64_t>(
      env::integer("NIMBUS_IMAGE_MAX_PIXELS", static_cast<std::int64_t>(c.max_pixels), 1, 1'000'000'000));
  c.max_bytes = env::bytes("NIMBUS_IMAGE_MAX_BYTES", c.max_bytes);
  c.max_decode_bytes = env::bytes("NIMBUS_IMAGE_MAX_DECODE_BYTES", c.max_decode_bytes);
  if (c.max_decode_bytes < 16 * 1024 * 1024) {
    throw env::ConfigError("NIMBUS_IMAGE_MAX_DECODE_BYTES must be at least 16m");
  }
  c.sweep_interval = env::duration("NIMBUS_IMAGE_SWEEP_INTERVAL", c.sweep_interval);
  c.stuck_after = env::duration("NIMBUS_IMAGE_STUCK_AFTER", c.stuck_after);
  c.abandoned_after = env::duration("NIMBUS_IMAGE_ABANDONED_AFTER", c.abandoned_after);
  c.orphan_grace = env::duration("NIMBUS_IMAGE_ORPHAN_GRACE", c.orphan_grace);
  if (c.orphan_grace < std::chrono::minutes(10)) {
    // Less could remove the object of an upload still in progress.
    throw env::ConfigError("NIMBUS_IMAGE_ORPHAN_GRACE must be at least 10m");
  }
  return c;
}

namespace {

// Thrown at a job's next step once the worker is shutting down.
struct Cancelled : std::runtime_error {
  Cancelled() : std::runtime_error("cancelled by shutdown") {}
};

// The original as it was checked, in one GET read no further than the checked upload's
// size (or the limit, for an upload checked before sizes were recorded): a larger
// object — a bug, an operator, a leaked credential — is cut off there, never read
// whole, and the SHA-256 the upload's check recorded must match what was read. (No
// HEAD first: one storage request per image fewer, the same bound on what is read.)
asio::awaitable<std::string> fetch_original(std::shared_ptr<s3::Client> s3, std::string id, Begun begun,
                                            std::size_t max_bytes) {
  const auto key = images::original_key(id);
  const std::size_t limit = begun.bytes != 0 ? std::min<std::size_t>(begun.bytes, max_bytes) : max_bytes;
  struct Read {
    std::string data;
    bool over = false;
  };
  auto read = std::make_shared<Read>();
  read->data.reserve(limit);
  s3::Writer writer = [read, limit](const char* data, std::size_t n) {
    if (read->data.size() + n > limit) {
      read->over = true;
      return false;
    }
    read->data.append(data, n);
    return true;
  };
  bool found = false;
  std::exception_ptr failure;
  try {
    found = co_await s3->get_object_to(key, std::move(writer));
  } catch (...) {
    failure = std::current_exception();
  }
  if (read->over) {
    throw UndecodableImage(begun.bytes != 0 ? "the original in storage is larger than the upload that was checked (" +
                                                  std::to_string(begun.bytes) + " bytes): not read further"
                                            : "the original in storage is over the limit of " +
                                                  std::to_string(max_bytes) + " bytes: not read further");
  }
  if (failure) std::rethrow_exception(failure);
  if (!found) throw UndecodableImage("the original is missing from storage");
  if (begun.bytes != 0 && read->data.size() != begun.bytes) {
    throw UndecodableImage("the original in storage is not the upload that was checked (" +
                           std::to_string(read->data.size()) + " bytes, not " + std::to_string(begun.bytes) + ")");
  }
  if (begun.sha256 && Sha256::hex_of(read->data) != *begun.sha256) {
    throw UndecodableImage("the original in storage is not the upload that was checked (SHA-256 differs)");
  }
  co_return std::move(read->data);
}

// Stores the variants, then commits; false if the image was no longer waiting for them.
// Its new objects are removed again only if the image was deleted meanwhile: when a
// concurrent delivery of the same job (a redelivery, a sweep) finished it first, the
// objects under these keys are that delivery's too, and the ready image needs them.
asio::awaitable<bool> store(std::shared_ptr<images::Repository> images, std::shared_ptr<s3::Client> s3, std::string id,
                            std::vector<Variant> variants) {
  std::vector<images::VariantRow> rows;
  for (const auto& v : variants) {
    co_await s3->put_object(images::variant_key(id, v.name), v.data, v.content_type);
    rows.push_back({v.name, v.content_type, v.width, v.height, static_cast<std::int64_t>(v.data.size())});
  }
  if (co_await images->finish(id, rows)) co_return true;
  if (co_await images->status(id)) co_return false;
  for (const auto& v : variants) co_await s3->delete_object(images::variant_key(id, v.name));
  co_return false;
}

// What decoding the original will hold, from its header: the format sniffed again from
// the bytes (the loader is pinned to it), refused over the bound before libvips reads a
// pixel — an original queued before the API checked this, or put there behind its back.
struct Decode {
  images::Format format;
  std::uint64_t cost = 0;
};
Decode judge_decode(const std::string& original, std::uint64_t max_decode_bytes) {
  const auto format = images::sniff(original);
  if (!format) throw UndecodableImage("the original is no accepted image format");
  const auto header = images::read_header(*format, original);
  if (header.state != images::HeaderState::ok) throw UndecodableImage("the original's header is not valid");
  const auto cost = images::decode_cost(header);
  if (cost > max_decode_bytes) {
    constexpr std::uint64_t kMiB = 1024 * 1024;
    throw UndecodableImage("too costly to decode: about " + std::to_string((cost + kMiB - 1) / kMiB) +
                           " MiB for this " + std::to_string(header.size.width) + "x" +
                           std::to_string(header.size.height) + " image, over the limit of " +
                           std::to_string(max_decode_bytes / kMiB) + " MiB; refused before decoding");
  }
  return Decode{*format, cost};
}

asio::awaitable<void> publish(amqp::Publisher& publisher, amqp::Message message) {
  std::vector<amqp::Message> batch;
  batch.push_back(std::move(message));
  co_await publisher.publish(std::move(batch));
}

}  // namespace

void ImageJobs::export_metrics(ops::Metrics& metrics) {
  metrics.counter_fn("nimbus_image_jobs_ready_total", "Images this worker made ready.",
                     [this] { return static_cast<double>(ready_.load()); });
  metrics.counter_fn("nimbus_image_jobs_failed_total", "Images this worker marked failed.",
                     [this] { return static_cast<double>(failed_.load()); });
  metrics.counter_fn("nimbus_image_jobs_retried_total", "Image jobs sent back for a delayed retry.",
                     [this] { return static_cast<double>(retried_.load()); });
  metrics.counter_fn("nimbus_image_jobs_skipped_total", "Image jobs with nothing to do (ready or deleted).",
                     [this] { return static_cast<double>(skipped_.load()); });
  metrics.counter_fn("nimbus_image_jobs_returned_total", "Image jobs handed back to the queue at shutdown.",
                     [this] { return static_cast<double>(returned_.load()); });
  metrics.counter_fn("nimbus_image_jobs_seconds_total", "Time spent on image jobs that made variants.",
                     [this] { return static_cast<double>(busy_ms_.load()) / 1000.0; });
  const std::pair<const char*, std::atomic<std::uint64_t>*> stages[] = {
      {"nimbus_image_fetch_seconds_total", &fetch_us_},
      {"nimbus_image_decode_seconds_total", &decode_us_},
      {"nimbus_image_encode_seconds_total", &encode_us_},
      {"nimbus_image_store_seconds_total", &store_us_}};
  for (const auto& [name, counter] : stages) {
    metrics.counter_fn(name,
                       "Wall time of the image jobs that made variants, by stage: fetching the original, decoding "
                       "and resizing it, encoding the variants, storing them.",
                       [counter] { return static_cast<double>(counter->load()) / 1e6; });
  }
}

template <typename T>
T ImageJobs::await(asio::awaitable<T> work) {
  return asio::co_spawn(ioc_, std::move(work), asio::use_future).get();
}

amqp::Outcome ImageJobs::give_back(const std::string& id) {
  try {
    await(images_->give_back(id));
  } catch (const std::exception& e) {
    // The attempt stays counted; the job still goes back.
    log::warn("handing an image job back did not uncount its attempt", {{"image_id", id}, {"error", e.what()}});
  }
  log::info("image job handed back at shutdown", {{"image_id", id}});
  ++returned_;
  return amqp::Outcome::requeue;
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
  if (cancelled_) return amqp::Outcome::requeue;  // not started: nothing to hand back
  // 0: not known (the database did not answer), and then the job is retried without
  // a limit.
  int attempts = 0;
  bool started = false;
  const auto began = std::chrono::steady_clock::now();
  auto step = [this] {
    if (cancelled_) throw Cancelled();
  };
  try {
    auto begun = await(images_->begin_processing(id, config_.max_attempts));
    attempts = begun.attempts;
    switch (begun.found) {
      case Begun::Found::gone:
      case Begun::Found::done:
        log::info("image job without work",
                  {{"image_id", id}, {"reason", begun.found == Begun::Found::gone ? "deleted" : "done"}});
        ++skipped_;
        return amqp::Outcome::ack;
      case Begun::Found::gave_up:
        log::error("image job taken with its attempts spent: the image failed", {{"image_id", id}});
        ++failed_;
        return amqp::Outcome::dead_letter;
      case Begun::Found::process:
        break;
    }
    started = true;
    step();
    auto micros_since = [](std::chrono::steady_clock::time_point t) {
      return static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t).count());
    };
    const auto fetching = std::chrono::steady_clock::now();
    auto original = await(fetch_original(s3_, id, begun, config_.max_bytes));
    const auto fetched_us = micros_since(fetching);
    step();
    const auto decode = judge_decode(original, config_.max_decode_bytes);
    // Waits while other decodes of this worker hold the budget (shutdown ends the wait).
    auto lease = budget_.acquire(decode.cost);
    if (!lease) throw Cancelled();
    step();
    // From here to the end of the decode, a death of this worker is charged to this image.
    await(images_->decoding(id, true));
    VariantCost cost;
    auto variants = make_variants(original, decode.format, config_.max_pixels, &cost);
    lease.reset();
    original = std::string();
    await(images_->decoding(id, false));
    step();
    const auto storing = std::chrono::steady_clock::now();
    const bool kept = await(store(images_, s3_, id, std::move(variants)));
    fetch_us_ += fetched_us;
    decode_us_ += static_cast<std::uint64_t>(cost.decode * 1e6);
    encode_us_ += static_cast<std::uint64_t>(cost.encode * 1e6);
    store_us_ += micros_since(storing);
    const auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - began).count();
    log::info(kept ? "image ready" : "image finished by another delivery, or deleted, while processing",
              {{"image_id", id}, {"duration_ms", ms}});
    ++(kept ? ready_ : skipped_);
    busy_ms_ += static_cast<std::uint64_t>(ms);
    return amqp::Outcome::ack;
  } catch (const UndecodableImage& e) {
    log::warn("image cannot be processed", {{"image_id", id}, {"reason", e.what()}});
    try {
      await(images_->fail(id, e.what()));
    } catch (const std::exception& db) {
      log::warn("marking an image failed did not work; requeued", {{"image_id", id}, {"error", db.what()}});
      return amqp::Outcome::requeue;
    }
    ++failed_;
    return amqp::Outcome::dead_letter;
  } catch (const std::exception& e) {
    // Cut off by the shutdown (at a step, or by an aborted storage request).
    if (cancelled_) return started ? give_back(id) : amqp::Outcome::requeue;
    if (attempts >= config_.max_attempts) {
      log::error("image job gave up", {{"image_id", id}, {"attempts", attempts}, {"error", e.what()}});
      try {
        await(images_->fail(id, "processing failed " + std::to_string(attempts) + " times: " + e.what()));
      } catch (const std::exception&) {
        return amqp::Outcome::requeue;
      }
      ++failed_;
      return amqp::Outcome::dead_letter;
    }
    // Back off through a delay exchange; this delivery is done with.
    const auto& delays = amqp::topology::kRetryDelaysSeconds;
    const auto index = static_cast<std::size_t>(attempts == 0 ? 1 : attempts - 1);
    const int delay = delays[std::min(index, std::size(delays) - 1)];
    amqp::Message retry = delivery.message;
    retry.exchange = amqp::topology::retry_exchange(delay);
    retry.routing_key = std::string(amqp::topology::kImageProcess);
    log::warn("image job failed; retrying",
              {{"image_id", id}, {"attempts", attempts}, {"delay_s", delay}, {"error", e.what()}});
    // The attempt is over and counted (before the retry can arrive): taken again, the
    // job is not a worker's death.
    try {
      await(images_->retry_later(id));
    } catch (const std::exception& db) {
      // Then the next start gives this attempt back (it looks like a death outside the
      // decode): one more try, no worse.
      log::warn("marking an image job as retrying did not work", {{"image_id", id}, {"error", db.what()}});
    }
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
