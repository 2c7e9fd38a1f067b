// The image sweeper: what no message or request will ever finish.
//
//   - images stuck in queued/processing for `stuck_after` (a lost message, a killed
//     worker) are queued again through the outbox — or failed, at the attempt limit;
//   - direct-upload reservations never completed are removed with their objects;
//   - objects without a row (a crash between storing and writing, a PUT to a presigned
//     URL after its upload was completed, refused or deleted) are removed once their id
//     (UUIDv7, which carries its creation time) is older than the grace period. Keys
//     are listed in pages, a few per sweep, resuming where the last sweep stopped.
//
// Several workers may sweep at once: the statements skip rows another one holds, and
// deleting an object twice is harmless.
#pragma once

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "images/repository.hpp"
#include "storage/s3/client.hpp"
#include "worker/image_job.hpp"

namespace nimbus::worker {

class Sweeper {
 public:
  Sweeper(std::shared_ptr<images::Repository> images, std::shared_ptr<s3::Client> s3, ImageJobConfig config)
      : images_(std::move(images)), s3_(std::move(s3)), config_(config) {}

  // Sweeps every `sweep_interval` while `running`; failures are logged and retried at
  // the next sweep.
  boost::asio::awaitable<void> run(const std::atomic<bool>* running);
  boost::asio::awaitable<void> sweep(bool with_orphans);
  // One pass over a few pages of each prefix; how many objects were removed.
  boost::asio::awaitable<std::int64_t> remove_orphans();

 private:
  std::shared_ptr<images::Repository> images_;
  std::shared_ptr<s3::Client> s3_;
  ImageJobConfig config_;
  std::map<std::string, std::optional<std::string>> resume_;  // prefix → continuation
};

}  // namespace nimbus::worker
