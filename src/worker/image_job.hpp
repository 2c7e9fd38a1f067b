// The image.process job: original from S3 → libvips variants (thumbnails.hpp) → S3 →
// one guarded PostgreSQL statement marks the image ready. Idempotent end to end: object
// keys are derived from the image id, variant rows are upserted, and a job for an image
// that is already ready (or deleted) is acknowledged without work.
//
// Attempts are counted in the image's row when the job is taken, before any work: a job
// that crashes its worker while decoding counts too, and one taken with the limit
// already spent fails the image instead of starting again. A worker death outside the
// decode (or during another image's decode) is charged to no one: the image's row says
// whether it was decoding (docs/adr/0010).
//
// Decoded memory: the original's header tells what decoding it will hold
// (images::decode_cost); over NIMBUS_IMAGE_MAX_DECODE_BYTES the image fails unread by
// libvips, and within it the job waits for that much of the worker's DecodeBudget, so
// decodes running at once never hold more than one such bound together. The original is HEADed first: one larger than
// the upload limit, or not the object that was checked (size, SHA-256), fails the image
// unread; it is read bounded.
//
// Failures: an image that cannot be used fails at once (status `failed`, reason kept,
// message dead-lettered). Anything else (S3, PostgreSQL) is retried through the delay
// exchanges (1 s, 5 s, 30 s, 120 s); the 5th failed attempt fails the image.
//
// Shutdown: cancel() makes jobs in flight stop at their next step (an S3 request is
// aborted): the image goes back to `queued`, this attempt uncounted, and the message
// back to the queue.
#pragma once

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "images/repository.hpp"
#include "ops/metrics.hpp"
#include "queue/amqp/consumer.hpp"
#include "queue/amqp/publisher.hpp"
#include "storage/s3/client.hpp"
#include "worker/decode_budget.hpp"

namespace nimbus::worker {

struct ImageJobConfig {
  int threads = 2;
  int max_attempts = 5;
  std::uint64_t max_pixels = 50'000'000;
  std::size_t max_bytes = 25 * 1024 * 1024;  // originals above this are not read
  // A decode's bound, and what all of this worker's decodes hold together.
  std::uint64_t max_decode_bytes = 256ULL * 1024 * 1024;
  std::chrono::milliseconds sweep_interval{60'000};
  std::chrono::milliseconds stuck_after{300'000};
  // Direct-upload reservations never completed are removed after this.
  std::chrono::milliseconds abandoned_after{3'600'000};
  // Objects without a row are removed once their id (UUIDv7: its creation time) is
  // this old; they are looked for every `orphan_sweep_every` sweeps.
  std::chrono::milliseconds orphan_grace{3'600'000};
  int orphan_sweep_every = 10;

  // NIMBUS_IMAGE_THREADS, NIMBUS_IMAGE_MAX_PIXELS, NIMBUS_IMAGE_MAX_BYTES, NIMBUS_IMAGE_MAX_DECODE_BYTES,
  // NIMBUS_IMAGE_SWEEP_INTERVAL, NIMBUS_IMAGE_STUCK_AFTER, NIMBUS_IMAGE_ABANDONED_AFTER,
  // NIMBUS_IMAGE_ORPHAN_GRACE.
  static ImageJobConfig from_env();
};

class ImageJobs {
 public:
  ImageJobs(boost::asio::io_context& ioc, std::shared_ptr<images::Repository> images, std::shared_ptr<s3::Client> s3,
            amqp::Publisher& publisher, ImageJobConfig config)
      : ioc_(ioc),
        images_(std::move(images)),
        s3_(std::move(s3)),
        publisher_(publisher),
        config_(config),
        budget_(config.max_decode_bytes) {}

  // Runs on a consumer thread (blocking is fine there); I/O goes through the io_context,
  // which must run until every handler has returned.
  amqp::Outcome handle(const amqp::Delivery& delivery);
  // Jobs in flight stop at their next step and go back to the queue (any thread).
  void cancel() {
    cancelled_ = true;
    budget_.cancel();
  }
  void export_metrics(ops::Metrics& metrics);

 private:
  template <typename T>
  T await(boost::asio::awaitable<T> work);
  amqp::Outcome give_back(const std::string& id);

  boost::asio::io_context& ioc_;
  std::shared_ptr<images::Repository> images_;
  std::shared_ptr<s3::Client> s3_;
  amqp::Publisher& publisher_;
  ImageJobConfig config_;
  DecodeBudget budget_;
  std::atomic<bool> cancelled_{false};
  std::atomic<std::uint64_t> ready_{0}, failed_{0}, retried_{0}, skipped_{0}, returned_{0};
  std::atomic<std::uint64_t> busy_ms_{0};  // time spent on jobs that made variants
  // Wall time per stage of the jobs that made variants, in microseconds.
  std::atomic<std::uint64_t> fetch_us_{0}, decode_us_{0}, encode_us_{0}, store_us_{0};
};

}  // namespace nimbus::worker
