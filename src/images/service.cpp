#include "images/service.hpp"

#include "core/log.hpp"

namespace nimbus::images {

namespace asio = boost::asio;
namespace json = boost::json;

json::object Service::to_json(const Image& image) const {
  auto nullable = [](const auto& v) -> json::value {
    if (!v) return nullptr;
    return json::value(*v);
  };
  json::array variants;
  for (const auto& v : image.variants) {
    variants.push_back(json::object{{"name", v.name},
                                    {"width", v.width},
                                    {"height", v.height},
                                    {"content_type", v.content_type},
                                    {"bytes", v.bytes},
                                    {"url", s3_->presign_get(variant_key(image.id, v.name), url_ttl_)}});
  }
  json::object body{{"id", image.id},
                    {"status", to_string(image.status)},
                    {"content_type", image.content_type},
                    {"bytes", image.bytes},
                    {"width", nullable(image.width)},
                    {"height", nullable(image.height)},
                    {"sha256", nullable(image.sha256)},
                    {"created_at", image.created_at},
                    {"variants", std::move(variants)}};
  if (image.error) body["error"] = *image.error;
  return body;
}

asio::awaitable<std::optional<json::object>> Service::get(std::string id, std::string owner_id) {
  auto image = co_await images_->get(id, owner_id);
  if (!image) co_return std::nullopt;
  co_return to_json(*image);
}

asio::awaitable<JsonPage> Service::list(std::string owner_id, std::optional<std::string> after, int limit) {
  auto page = co_await images_->list(owner_id, std::move(after), limit);
  JsonPage out{{}, std::move(page.next_after)};
  for (const auto& image : page.items) out.items.push_back(to_json(image));
  co_return out;
}

asio::awaitable<std::optional<std::string>> Service::download_url(std::string id, std::string owner_id,
                                                                  std::optional<std::string> variant) {
  auto found = co_await images_->downloadable(id, owner_id, variant.value_or(""));
  if (!found.image) co_return std::nullopt;
  if (!variant) {
    // Served as the type the upload was checked to be, whatever the object says.
    co_return s3_->presign_get(original_key(id), url_ttl_, {{"response-content-type", found.content_type}});
  }
  if (!found.variant) co_return std::nullopt;
  co_return s3_->presign_get(variant_key(id, *variant), url_ttl_);
}

asio::awaitable<bool> Service::remove(std::string id, std::string owner_id) {
  auto names = co_await images_->remove(id, owner_id);
  if (!names) co_return false;
  // The row goes first: an object left behind by a failure below is garbage for the
  // orphan sweeper, never a row pointing at nothing. (A worker that finishes after this
  // finds no row and removes what it wrote.)
  std::vector<std::string> keys{original_key(id), upload_key(id)};
  for (const auto& name : *names) keys.push_back(variant_key(id, name));
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
