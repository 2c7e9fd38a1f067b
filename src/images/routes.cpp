#include "images/routes.hpp"

#include <boost/json/serialize.hpp>
#include <ctime>

#include "auth/routes.hpp"
#include "http/json_body.hpp"
#include "http/paging.hpp"
#include "http/problem.hpp"

namespace nimbus::images {

namespace asio = boost::asio;
namespace json = boost::json;
using http::Request;
using http::Response;

namespace {

constexpr std::size_t kFormOverhead = 64 * 1024;  // multipart framing allowed on top of the file

std::string format_time(std::chrono::system_clock::time_point t) {
  const auto secs = std::chrono::system_clock::to_time_t(t);
  std::tm utc{};
  gmtime_r(&secs, &utc);
  char out[32];
  std::strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return out;
}

Response image_not_found() {
  return http::not_found("No image with this id.");
}

Response queued(const std::string& id) {
  auto res = http::json(202, json::serialize(json::object{{"id", id}, {"status", "queued"}}));
  res.headers.set("Location", "/v1/images/" + id);
  return res;
}

// A 429 when the user started more uploads this minute than the limit, before any byte
// of this one is read or any row written.
asio::awaitable<std::optional<Response>> over_limit(std::shared_ptr<redis::RateLimiter> rates, std::string user_id,
                                                    int limit) {
  if (auto wait = co_await rates->hit("rl:uploads:" + user_id, limit)) {
    co_return http::rate_limited("This account started the most uploads allowed per minute.", *wait);
  }
  co_return std::nullopt;
}

// POST /v1/images: a raw image/* body or a multipart form with a "file" field.
asio::awaitable<Response> upload(std::shared_ptr<Uploads> uploads, std::shared_ptr<redis::RateLimiter> rates,
                                 Request& req, auth::Claims who) {
  if (auto refused = co_await over_limit(rates, who.sub, uploads->limits().uploads_per_minute)) co_return *refused;
  auto outcome = co_await uploads->receive(*req.body_reader, req.header("Content-Type").value_or(""), who.sub);
  if (auto* r = std::get_if<Refused>(&outcome)) co_return to_response(*r, uploads->limits());
  co_return queued(std::get<std::string>(outcome));
}

// POST /v1/images/uploads {content_type, bytes}: a presigned PUT straight to storage.
asio::awaitable<Response> create_upload(std::shared_ptr<Uploads> uploads, std::shared_ptr<redis::RateLimiter> rates,
                                        Request& req, auth::Claims who) {
  auto parsed = http::json_object_body(req);
  if (auto* problem = std::get_if<Response>(&parsed)) co_return std::move(*problem);
  if (auto refused = co_await over_limit(rates, who.sub, uploads->limits().uploads_per_minute)) co_return *refused;
  const auto& body = std::get<json::object>(parsed);
  // (Named first: GCC 12 miscompiles a conditional inside a co_await expression, ADR 0001.)
  auto type = http::string_field(body, "content_type", 100);
  std::optional<std::int64_t> bytes;
  if (const auto* field = body.if_contains("bytes"); field != nullptr && field->is_int64()) bytes = field->as_int64();
  auto outcome = co_await uploads->reserve(who.sub, std::move(type), bytes);
  if (auto* r = std::get_if<Refused>(&outcome)) co_return to_response(*r, uploads->limits());
  const auto& up = std::get<DirectUpload>(outcome);
  // The PUT must carry exactly these headers: the signature covers them (and the
  // declared size, which HTTP clients send as Content-Length by themselves).
  json::object out{{"id", up.id},
                   {"upload_url", up.url},
                   {"method", "PUT"},
                   {"headers", json::object{{"Content-Type", up.content_type}}},
                   {"expires_at", format_time(up.expires)}};
  auto res = http::json(201, json::serialize(out));
  res.headers.set("Location", "/v1/images/" + up.id);
  co_return res;
}

// POST /v1/images/{id}/complete: the object is checked, then queued like a streamed upload.
asio::awaitable<Response> complete(std::shared_ptr<Uploads> uploads, Request& req, auth::Claims who) {
  const auto id = req.uuid_param("id").value_or("");
  if (id.empty()) co_return image_not_found();
  auto outcome = co_await uploads->complete(id, who.sub);
  if (auto* r = std::get_if<Refused>(&outcome)) co_return to_response(*r, uploads->limits());
  co_return queued(id);
}

asio::awaitable<Response> get(std::shared_ptr<Service> images, Request& req, auth::Claims who) {
  const auto id = req.uuid_param("id").value_or("");
  if (id.empty()) co_return image_not_found();
  auto image = co_await images->get(id, who.sub);
  if (!image) co_return image_not_found();
  co_return http::json(200, json::serialize(*image));
}

// GET /v1/me/images?limit=&cursor=
asio::awaitable<Response> list(std::shared_ptr<Service> images, Request& req, auth::Claims who) {
  auto paging = http::page_request(req);
  if (auto* problem = std::get_if<Response>(&paging)) co_return std::move(*problem);
  const auto [limit, after] = std::get<http::PageRequest>(paging);
  auto page = co_await images->list(who.sub, after, limit);
  json::array items;
  for (auto& i : page.items) items.push_back(std::move(i));
  json::object body{{"items", std::move(items)}, {"next_cursor", nullptr}};
  if (page.next_after) body["next_cursor"] = http::page_cursor(*page.next_after);
  co_return http::json(200, json::serialize(body));
}

asio::awaitable<Response> download(std::shared_ptr<Service> images, Request& req, auth::Claims who, bool original) {
  const auto id = req.uuid_param("id").value_or("");
  if (id.empty()) co_return image_not_found();
  std::optional<std::string> variant;
  if (!original) variant = std::string(req.param("name"));
  auto url = co_await images->download_url(id, who.sub, variant);
  if (!url) co_return http::not_found("No such image or variant (yet).");
  auto res = http::empty(302);
  res.headers.set("Location", *url);
  res.headers.set("Cache-Control", "private, no-store");
  co_return res;
}

asio::awaitable<Response> remove(std::shared_ptr<Service> images, Request& req, auth::Claims who) {
  const auto id = req.uuid_param("id").value_or("");
  if (id.empty()) co_return image_not_found();
  if (!co_await images->remove(id, who.sub)) co_return image_not_found();
  co_return http::empty(204);
}

}  // namespace

void add_routes(http::Router& router, std::shared_ptr<Service> images, std::shared_ptr<auth::Service> accounts,
                UploadLimits limits, std::shared_ptr<redis::RateLimiter> rates) {
  using Claims = auth::Claims;
  auto uploads = std::make_shared<Uploads>(images->repository(), images->storage(), limits);
  const http::RouteOptions streamed{.body_limit = limits.max_bytes + kFormOverhead, .stream_body = true};
  router.add(http::Method::post, "/v1/images",
             auth::authenticated(
                 accounts, [uploads, rates](Request& r, const Claims& c) { return upload(uploads, rates, r, c); }),
             streamed);
  router.add(
      http::Method::post, "/v1/images/uploads",
      auth::authenticated(
          accounts, [uploads, rates](Request& r, const Claims& c) { return create_upload(uploads, rates, r, c); }),
      http::RouteOptions{.body_limit = 16 * 1024});
  router.add(http::Method::post, "/v1/images/{id}/complete",
             auth::authenticated(accounts, [uploads](Request& r, const Claims& c) { return complete(uploads, r, c); }));
  router.add(http::Method::get, "/v1/images/{id}",
             auth::authenticated(accounts, [images](Request& r, const Claims& c) { return get(images, r, c); }));
  router.add(http::Method::get, "/v1/me/images",
             auth::authenticated(accounts, [images](Request& r, const Claims& c) { return list(images, r, c); }));
  router.add(
      http::Method::get, "/v1/images/{id}/original",
      auth::authenticated(accounts, [images](Request& r, const Claims& c) { return download(images, r, c, true); }));
  router.add(
      http::Method::get, "/v1/images/{id}/variants/{name}",
      auth::authenticated(accounts, [images](Request& r, const Claims& c) { return download(images, r, c, false); }));
  router.add(http::Method::del, "/v1/images/{id}",
             auth::authenticated(accounts, [images](Request& r, const Claims& c) { return remove(images, r, c); }));
}

}  // namespace nimbus::images
