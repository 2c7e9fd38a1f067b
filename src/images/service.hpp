// Image records (PostgreSQL) and their objects (S3), for the API.
//
// Objects: originals/<id> (the upload as received) and variants/<id>/<name> (made by
// the workers). Keys are derived from the id, so a retried job overwrites, never
// duplicates. Clients never get S3 credentials: downloads are short-lived presigned
// URLs, answered as redirects.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "storage/s3/client.hpp"
#include "store/pg/pool.hpp"

namespace nimbus::images {

std::string original_key(const std::string& image_id);
std::string variant_key(const std::string& image_id, const std::string& name);

struct NewImage {
  std::string id, owner_id, content_type, sha256;
  std::uint64_t bytes = 0;
  std::uint32_t width = 0, height = 0;
};

struct ImagePage {
  std::vector<boost::json::object> items;
  std::optional<std::string> next_after;
};

class Service {
 public:
  Service(std::shared_ptr<pg::Pool> pg, std::shared_ptr<s3::Client> s3, std::chrono::seconds url_ttl)
      : pg_(std::move(pg)), s3_(std::move(s3)), url_ttl_(url_ttl) {}

  // The record (queued) and its processing job, in one transaction.
  boost::asio::awaitable<void> create(NewImage image);
  // Direct upload, step 1: a record waiting for its object (status `uploading`).
  boost::asio::awaitable<void> reserve(std::string id, std::string owner_id, std::string content_type,
                                       std::uint64_t bytes);
  // Direct upload, step 2: what was declared, if this owner's image is still waiting.
  struct Reserved {
    std::string content_type;
    std::uint64_t bytes = 0;
  };
  boost::asio::awaitable<std::optional<Reserved>> reserved(std::string id, std::string owner_id);
  // Direct upload, checked: queued with its job, in one transaction. False if it was
  // no longer waiting (completed twice at once, or deleted).
  boost::asio::awaitable<bool> queue_reserved(NewImage image);
  // The image as its owner sees it; nullopt if it does not exist or is not theirs.
  boost::asio::awaitable<std::optional<boost::json::object>> get(std::string id, std::string owner_id);
  boost::asio::awaitable<ImagePage> list(std::string owner_id, std::optional<std::string> after, int limit);
  // A presigned URL for the original or a variant, if the owner has it.
  boost::asio::awaitable<std::optional<std::string>> download_url(std::string id, std::string owner_id,
                                                                  std::optional<std::string> variant);
  // The row, then its objects. False if there is no such image of this owner.
  boost::asio::awaitable<bool> remove(std::string id, std::string owner_id);

  s3::Client& storage() { return *s3_; }

 private:
  boost::json::object to_json(const pg::Result& r, int row, const boost::json::array& variants) const;
  std::shared_ptr<pg::Pool> pg_;
  std::shared_ptr<s3::Client> s3_;
  std::chrono::seconds url_ttl_;
};

}  // namespace nimbus::images
