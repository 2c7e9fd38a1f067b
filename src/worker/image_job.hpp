// The image.process job: original from S3 → libvips variants → S3 → one guarded
// PostgreSQL statement marks the image ready. Idempotent end to end: object keys are
// derived from the image id, variant rows are upserted, and a job for an image that
// is already ready (or deleted) is acknowledged without work.
//
// Failures: an image libvips cannot decode fails at once (status `failed`, reason
// kept, message dead-lettered). Anything else (S3, PostgreSQL) is retried through the
// delay exchanges (1 s, 5 s, 30 s, 120 s); the 5th failed attempt (attempts are counted
// in the image's row) marks the image failed and dead-letters the job.
#pragma once

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "http/metrics.hpp"
#include "queue/amqp/consumer.hpp"
#include "queue/amqp/publisher.hpp"
#include "storage/s3/client.hpp"
#include "store/pg/pool.hpp"

namespace nimbus::worker {

struct Variant {
  std::string name, content_type, data;
  int width = 0, height = 0;
};

// An image libvips will not or cannot turn into variants; retrying will not help.
class UndecodableImage : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Once per process, before any job: loaders limited to JPEG, PNG, GIF, WebP and HEIF,
// untrusted loaders blocked, operation cache off, one libvips thread per job.
void init_vips(const char* argv0);

// thumb: 256×256 cover crop, WebP q80. preview: within 1280×1280, JPEG q82. Both
// auto-rotated by EXIF orientation, sRGB, metadata stripped, first frame only.
// Throws UndecodableImage.
std::vector<Variant> make_variants(const std::string& original, std::uint64_t max_pixels);

struct ImageJobConfig {
  int threads = 2;
  int max_attempts = 5;
  std::uint64_t max_pixels = 50'000'000;
  std::chrono::milliseconds sweep_interval{60'000};
  std::chrono::milliseconds stuck_after{300'000};

  // NIMBUS_IMAGE_THREADS, NIMBUS_IMAGE_MAX_PIXELS, NIMBUS_IMAGE_SWEEP_INTERVAL,
  // NIMBUS_IMAGE_STUCK_AFTER.
  static ImageJobConfig from_env();
};

// Re-queues images stuck in queued/processing longer than `stuck_after` — a lost
// message, a worker killed mid-job — through the outbox, so none stays stuck. Returns
// how many were re-queued.
boost::asio::awaitable<std::int64_t> requeue_stuck(std::shared_ptr<pg::Pool> pg, std::chrono::milliseconds stuck_after);

// Removes direct uploads reserved but never completed within `older_than` (the
// presigned URL has long expired): their objects, then their rows.
boost::asio::awaitable<std::int64_t> purge_abandoned_uploads(std::shared_ptr<pg::Pool> pg,
                                                             std::shared_ptr<s3::Client> s3,
                                                             std::chrono::milliseconds older_than);

class ImageJobs {
 public:
  ImageJobs(boost::asio::io_context& ioc, std::shared_ptr<pg::Pool> pg, std::shared_ptr<s3::Client> s3,
            amqp::Publisher& publisher, ImageJobConfig config)
      : ioc_(ioc), pg_(std::move(pg)), s3_(std::move(s3)), publisher_(publisher), config_(config) {}

  // Runs on a consumer thread (blocking is fine there); I/O goes through the io_context.
  amqp::Outcome handle(const amqp::Delivery& delivery);
  void export_metrics(http::Metrics& metrics);

 private:
  template <typename T>
  T await(boost::asio::awaitable<T> work);

  boost::asio::io_context& ioc_;
  std::shared_ptr<pg::Pool> pg_;
  std::shared_ptr<s3::Client> s3_;
  amqp::Publisher& publisher_;
  ImageJobConfig config_;
  std::atomic<std::uint64_t> ready_{0}, failed_{0}, retried_{0}, skipped_{0};
  std::atomic<std::uint64_t> busy_ms_{0};  // time spent on jobs that made variants
};

}  // namespace nimbus::worker
