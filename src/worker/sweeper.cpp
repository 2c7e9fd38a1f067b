#include "worker/sweeper.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <unordered_map>
#include <vector>

#include "core/log.hpp"

namespace nimbus::worker {

namespace asio = boost::asio;

namespace {

constexpr int kPagesPerSweep = 5;
constexpr int kPageSize = 1000;

}  // namespace

asio::awaitable<std::int64_t> Sweeper::remove_orphans() {
  const auto cutoff = std::chrono::system_clock::now() - config_.orphan_grace;
  std::int64_t removed = 0;
  for (const std::string prefix : {"originals/", "uploads/", "variants/"}) {
    for (int page = 0; page < kPagesPerSweep; ++page) {
      auto listing = co_await s3_->list_objects(prefix, resume_[prefix], kPageSize);
      resume_[prefix] = listing.next;                        // nullopt: the next pass starts over
      std::vector<std::pair<std::string, std::string>> old;  // key, id
      std::vector<std::string> ids;
      for (const auto& [key, size] : listing.objects) {
        auto id = images::image_id_of_key(key);
        auto minted = id ? images::minted_at(*id) : std::nullopt;
        if (!minted || *minted > cutoff) continue;  // not ours, or within its grace period
        old.emplace_back(key, *id);
        ids.push_back(*id);
      }
      std::unordered_map<std::string, images::ImageStatus> rows;
      auto found = co_await images_->existing(ids);
      for (auto& [id, status] : found) rows.emplace(std::move(id), status);
      for (const auto& [key, id] : old) {
        auto row = rows.find(id);
        // A staging object is garbage once its upload is no longer waiting.
        const bool garbage =
            row == rows.end() || (prefix == "uploads/" && row->second != images::ImageStatus::uploading);
        if (!garbage) continue;
        co_await s3_->delete_object(key);
        log::info("removed an object without an image", {{"key", key}});
        ++removed;
      }
      if (!listing.next) break;
    }
  }
  co_return removed;
}

asio::awaitable<void> Sweeper::sweep(bool with_orphans) {
  auto swept = co_await images_->requeue_stuck(config_.stuck_after, config_.max_attempts);
  if (!swept.requeued.empty()) log::warn("re-queued stuck images", {{"images", swept.requeued.size()}});
  if (swept.failed > 0) log::error("stuck images at the attempt limit failed", {{"images", swept.failed}});
  auto abandoned = co_await images_->purge_abandoned(config_.abandoned_after);
  for (const auto& id : abandoned) {
    co_await s3_->delete_object(images::upload_key(id));
    co_await s3_->delete_object(images::original_key(id));
  }
  if (!abandoned.empty()) log::info("removed abandoned uploads", {{"images", abandoned.size()}});
  if (with_orphans) co_await remove_orphans();
}

asio::awaitable<void> Sweeper::run(const std::atomic<bool>* running) {
  asio::steady_timer tick(co_await asio::this_coro::executor);
  for (std::int64_t n = 1; running->load(); ++n) {
    tick.expires_after(config_.sweep_interval);
    co_await tick.async_wait(asio::as_tuple(asio::use_awaitable));
    if (!running->load()) break;
    try {
      co_await sweep(n % config_.orphan_sweep_every == 0);
    } catch (const std::exception& e) {
      log::warn("image sweep failed", {{"error", e.what()}});
    }
  }
}

}  // namespace nimbus::worker
