// The HTTP/1.1 server: accept loop, one coroutine per connection, routing, limits,
// access log, metrics and a bounded graceful shutdown.
//
// Threading: an accepted connection gets its own strand on the shared io_context; its
// session coroutine and every handler it calls run on that strand. Beast lives only in
// server.cpp (pimpl) so that the rest of the tree compiles against message.hpp alone.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "http/router.hpp"
#include "ops/metrics.hpp"

namespace nimbus::http {

struct ServerConfig {
  std::string address = "0.0.0.0";
  std::uint16_t port = 8080;  // 0 picks a free port (tests)
  // Also accepts on a unix socket at this path when set (NIMBUS_HTTP_SOCKET): the
  // gateway's way in on a shared host, where a free port is anyone's to bind but the
  // socket's folder lets only this instance's user create it (docs/adr/0013).
  std::string socket_path;
  std::string instance = "nimbus";  // sent as X-Nimbus-Instance
  std::size_t header_limit = 16 * 1024;
  std::size_t body_limit = 1024 * 1024;  // default for routes that do not set one
  // A keep-alive connection may sit idle this long between requests.
  std::chrono::milliseconds idle_timeout{60'000};
  // Once its first byte arrives, the whole request head must arrive within this
  // (slow-loris defence), and the body within body_timeout.
  std::chrono::milliseconds header_timeout{10'000};
  std::chrono::milliseconds body_timeout{60'000};
  // A streamed body (an upload) must also keep up a minimum rate: the time spent waiting
  // for it may not exceed body_grace plus one second per body_min_rate bytes received,
  // so a trickle that keeps each read inside body_timeout is still cut (408). Only the
  // waits for the client count, not the handler's own (a slow storage write). 0: off.
  std::chrono::milliseconds body_grace{10'000};
  std::size_t body_min_rate = 8 * 1024;  // bytes per second
  std::chrono::milliseconds write_timeout{30'000};
  std::size_t max_connections = 10'000;
  // At max_connections, a connection that has sent nothing for this long since it was
  // accepted is closed to make room for a new one (younger ones may be about to speak).
  std::chrono::milliseconds silent_grace{1'000};

  // Reads NIMBUS_HTTP_* variables; throws env::ConfigError naming a bad one.
  static ServerConfig from_env();
};

class Server {
 public:
  Server(boost::asio::io_context& ioc, ServerConfig config, const Router& router, ops::Metrics& metrics);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and starts accepting. Throws boost::system::system_error if the port is taken.
  void listen();
  std::uint16_t port() const;

  // Graceful stop: close the listener, let every in-flight request finish and answer it
  // with `Connection: close`, close idle keep-alive connections, and after `timeout`
  // cut whatever is still open. Completes when no connection is left.
  boost::asio::awaitable<void> shutdown(std::chrono::milliseconds timeout);
  bool draining() const;
  // The requests being handled, oldest first ("METHOD route request-id (age ms)"), for
  // the event-loop watchdog's report. Safe from any thread.
  std::string describe_in_flight() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// A request id is trusted from the client (nginx sets one) only if it is short and
// plain; otherwise the server makes its own.
bool valid_request_id(std::string_view id);

}  // namespace nimbus::http
