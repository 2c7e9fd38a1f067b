// Image records as their owner reads them, their downloads and their deletion (the
// upload story is in upload.hpp; every `images` statement in repository.hpp).
//
// Objects: originals/<id> (the upload as checked) and variants/<id>/<name> (made by the
// workers); uploads/<id> while a direct upload waits for completion. Clients never get
// S3 credentials: downloads are short-lived presigned URLs, answered as redirects.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "images/repository.hpp"
#include "storage/s3/client.hpp"
#include "store/pg/pool.hpp"

namespace nimbus::images {

struct JsonPage {
  std::vector<boost::json::object> items;
  std::optional<std::string> next_after;
};

class Service {
 public:
  Service(std::shared_ptr<pg::Pool> pg, std::shared_ptr<s3::Client> s3, std::chrono::seconds url_ttl)
      : images_(std::make_shared<Repository>(std::move(pg))), s3_(std::move(s3)), url_ttl_(url_ttl) {}

  // The image as its owner sees it; nullopt if it does not exist or is not theirs.
  boost::asio::awaitable<std::optional<boost::json::object>> get(std::string id, std::string owner_id);
  boost::asio::awaitable<JsonPage> list(std::string owner_id, std::optional<std::string> after, int limit);
  // A presigned URL for the original or a variant, if the owner has it.
  boost::asio::awaitable<std::optional<std::string>> download_url(std::string id, std::string owner_id,
                                                                  std::optional<std::string> variant);
  // The row, then its objects. False if there is no such image of this owner.
  boost::asio::awaitable<bool> remove(std::string id, std::string owner_id);

  const std::shared_ptr<Repository>& repository() const { return images_; }
  const std::shared_ptr<s3::Client>& storage() const { return s3_; }

 private:
  boost::json::object to_json(const Image& image) const;

  std::shared_ptr<Repository> images_;
  std::shared_ptr<s3::Client> s3_;
  std::chrono::seconds url_ttl_;
};

}  // namespace nimbus::images
