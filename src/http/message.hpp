// Nimbus's own request/response types.
//
// Handlers see these plain structs, never Beast's templates, so only server.cpp pays
// for Beast at compile time and handlers stay easy to unit-test.
#pragma once

#include <algorithm>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nimbus::http {

enum class Method { get, head, post, put, patch, del, options, other };

std::string_view to_string(Method m);
Method parse_method(std::string_view text);

bool iequals(std::string_view a, std::string_view b);

// Small ordered header list with case-insensitive lookup; requests carry few headers,
// so a vector beats a map.
class Headers {
 public:
  std::optional<std::string_view> get(std::string_view name) const;
  void set(std::string_view name, std::string value);
  void add(std::string name, std::string value) { items_.emplace_back(std::move(name), std::move(value)); }
  const std::vector<std::pair<std::string, std::string>>& items() const { return items_; }

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

// The body of a request whose route streams it (RouteOptions::stream_body).
class BodyReader {
 public:
  virtual ~BodyReader() = default;
  // Appends up to `max` more bytes of the body to `out`; returns how many, 0 at the
  // end of the body. Throws BodyError when the client fails to send it.
  virtual boost::asio::awaitable<std::size_t> read(std::string& out, std::size_t max) = 0;
  virtual std::optional<std::uint64_t> content_length() const = 0;
};

// A streamed body could not be read: the client went away, stalled past the body
// timeout, sent more than the route's limit, or broke the framing. `status` is what
// to answer if anything can still be answered (408, 413 or 400).
class BodyError : public std::runtime_error {
 public:
  BodyError(unsigned status, const std::string& what) : std::runtime_error(what), status_(status) {}
  unsigned status() const { return status_; }

 private:
  unsigned status_;
};

struct Request {
  Method method = Method::get;
  std::string target;  // as received: path plus query
  std::string path;    // decoded path, no query
  std::string query;   // raw query, without '?'
  Headers headers;
  std::string body;
  std::string request_id;
  std::string remote_addr;
  std::string route;                                        // the matched route pattern, for logs and metrics
  std::vector<std::pair<std::string, std::string>> params;  // path parameters
  std::chrono::steady_clock::time_point received_at{};
  BodyReader* body_reader = nullptr;  // streamed routes only; valid during the handler

  std::string_view param(std::string_view name) const;
  // A path parameter that must be a UUID (a record's id): nullopt for anything else, so
  // a malformed id is a plain 404 and never reaches a database.
  std::optional<std::string> uuid_param(std::string_view name) const;
  std::optional<std::string_view> header(std::string_view name) const { return headers.get(name); }
  // First value of a query parameter, percent-decoded.
  std::optional<std::string> query_param(std::string_view name) const;
};

// The body of a streamed response (Server-Sent Events), written piece by piece.
// Every member is called on the connection's strand (where the handler runs).
class StreamWriter {
 public:
  virtual ~StreamWriter() = default;
  // Sends `data` as one chunk. False once the client is gone: stop producing. The bytes
  // are shared, not copied: one rendering may go to ten thousand streams.
  virtual boost::asio::awaitable<bool> write(std::shared_ptr<const std::string> data) = 0;
  boost::asio::awaitable<bool> write(std::string data) {
    return write(std::make_shared<const std::string>(std::move(data)));
  }
  // `wake` runs once, on the connection's strand, when the server starts shutting
  // down (at once if it already has): the producer should finish promptly.
  virtual void on_stop(std::function<void()> wake) = 0;
};

struct Response {
  unsigned status = 200;
  Headers headers;
  std::string body;
  // Ask the server to close the connection after writing this response.
  bool close = false;
  // When set, the server sends the head with chunked encoding, then lets `stream`
  // write the body for as long as it runs, and closes the connection afterwards.
  std::function<boost::asio::awaitable<void>(StreamWriter&)> stream;
};

Response text(unsigned status, std::string body, std::string_view content_type = "text/plain; charset=utf-8");
Response empty(unsigned status);

}  // namespace nimbus::http
