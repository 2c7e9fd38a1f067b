#include "http/server.hpp"

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <sstream>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <unordered_map>
#include <vector>

#include "core/env.hpp"
#include "core/errors.hpp"
#include "core/log.hpp"
#include "core/random.hpp"
#include "http/problem.hpp"

namespace nimbus::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using local = asio::local::stream_protocol;
using Clock = std::chrono::steady_clock;

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

ServerConfig ServerConfig::from_env() {
  ServerConfig c;
  c.address = env::string("NIMBUS_HTTP_ADDRESS", c.address);
  c.port = static_cast<std::uint16_t>(env::integer("NIMBUS_HTTP_PORT", c.port, 0, 65535));
  c.socket_path = env::string("NIMBUS_HTTP_SOCKET", c.socket_path);
  if (c.socket_path.size() >= sizeof(sockaddr_un::sun_path))
    throw env::ConfigError("NIMBUS_HTTP_SOCKET is longer than a unix socket's path may be");
  c.instance = env::string("NIMBUS_INSTANCE", c.instance);
  c.header_limit = env::bytes("NIMBUS_HTTP_HEADER_LIMIT", c.header_limit);
  c.body_limit = env::bytes("NIMBUS_HTTP_BODY_LIMIT", c.body_limit);
  c.idle_timeout = env::duration("NIMBUS_HTTP_IDLE_TIMEOUT", c.idle_timeout);
  c.header_timeout = env::duration("NIMBUS_HTTP_HEADER_TIMEOUT", c.header_timeout);
  c.body_timeout = env::duration("NIMBUS_HTTP_BODY_TIMEOUT", c.body_timeout);
  c.body_grace = env::duration("NIMBUS_HTTP_BODY_GRACE", c.body_grace);
  c.body_min_rate = env::bytes("NIMBUS_HTTP_BODY_MIN_RATE", c.body_min_rate);
  c.write_timeout = env::duration("NIMBUS_HTTP_WRITE_TIMEOUT", c.write_timeout);
  c.silent_grace = env::duration("NIMBUS_HTTP_SILENT_GRACE", c.silent_grace);
  c.max_connections = static_cast<std::size_t>(
      env::integer("NIMBUS_HTTP_MAX_CONNECTIONS", static_cast<std::int64_t>(c.max_connections), 1, 1'000'000));
  if (c.header_limit < 1024) throw env::ConfigError("NIMBUS_HTTP_HEADER_LIMIT must be at least 1k");
  return c;
}

bool valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

namespace {

// Registry entry of one open connection. `stream` and `idle` are touched only on the
// connection's strand; the registry map itself is guarded by Impl::mutex. `use` is
// changed from either side, once: a connection that has not sent a byte since it was
// accepted is the first to go when the listener is at its limit.
enum class Use : std::uint8_t { silent, spoke, evicted };

struct Connection {
  beast::tcp_stream* stream = nullptr;
  bool idle = false;
  std::atomic<Use> use{Use::silent};
  bool local = false;  // came through the unix socket: no peer address
  std::chrono::steady_clock::time_point accepted_at = std::chrono::steady_clock::now();

  // Silent -> spoke, from the session when the first bytes arrive; false if the
  // connection was evicted first.
  bool mark_spoke() {
    auto expected = Use::silent;
    return use.compare_exchange_strong(expected, Use::spoke) || expected == Use::spoke;
  }
  // Silent -> evicted, from the acceptor; false if the client spoke first.
  bool evict() {
    auto expected = Use::silent;
    return use.compare_exchange_strong(expected, Use::evicted);
  }
  bool stop_requested = false;
  std::function<void()> on_stop;  // set by a streamed response

  // The request being handled, for the watchdog's report (read from its thread, under
  // the mutex; the mark that sets it is cleared before the request goes away). Pointers,
  // not a copy: this runs on every request.
  std::mutex current_mutex;
  const Request* current = nullptr;
  std::string_view current_route;
};

// Marks a connection's request as in flight for the duration of its handler.
class InFlightMark {
 public:
  InFlightMark(Connection& conn, const Request& req, std::string_view route) : conn_(conn) {
    std::lock_guard lock(conn_.current_mutex);
    conn_.current = &req;
    conn_.current_route = route;
  }
  ~InFlightMark() {
    std::lock_guard lock(conn_.current_mutex);
    conn_.current = nullptr;
  }
  InFlightMark(const InFlightMark&) = delete;
  InFlightMark& operator=(const InFlightMark&) = delete;

 private:
  Connection& conn_;
};

// Sends a streamed body as chunks, each write bounded by the write timeout.
//
// A chunk is first written without waiting: it nearly always fits the socket's send
// buffer, and a stream writes several times a second to thousands of sockets, where
// arming the stream's deadline for each write cost more than the write itself. Only
// what did not fit is waited for, under the timeout (the socket is in non-blocking mode
// for this: write_stream sets it).
class ChunkWriter final : public StreamWriter {
 public:
  ChunkWriter(beast::tcp_stream& stream, Connection& conn, std::chrono::milliseconds timeout)
      : stream_(stream), conn_(conn), timeout_(timeout) {}

  asio::awaitable<bool> write(std::shared_ptr<const std::string> data) override {
    if (data->empty()) co_return true;  // an empty chunk would end the body
    char size[20];
    const auto digits = static_cast<std::size_t>(std::snprintf(size, sizeof size, "%zx\r\n", data->size()));
    // One sendmsg of the size line, the shared bytes and the CRLF: nothing copied.
    const std::array<asio::const_buffer, 3> chunk{asio::buffer(size, digits), asio::buffer(*data),
                                                  asio::buffer("\r\n", 2)};
    const std::size_t total = digits + data->size() + 2;
    boost::system::error_code ec;
    std::size_t sent = stream_.socket().write_some(chunk, ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      sent = 0;
      ec = {};
    }
    if (ec) co_return false;
    if (sent == total) co_return true;
    // The socket's buffer is full (a slow client): what is left, under the timeout.
    std::string rest;
    rest.reserve(total - sent);
    for (const auto& b : chunk) rest.append(static_cast<const char*>(b.data()), b.size());
    rest.erase(0, sent);
    stream_.expires_after(timeout_);
    auto [wait_ec, n] = co_await asio::async_write(stream_, asio::buffer(rest), use_tuple);
    co_return !wait_ec;
  }
  void on_stop(std::function<void()> wake) override {
    if (conn_.stop_requested) {
      wake();
    } else {
      conn_.on_stop = std::move(wake);
    }
  }

 private:
  beast::tcp_stream& stream_;
  Connection& conn_;
  std::chrono::milliseconds timeout_;
};

// Reads a request body piece by piece for a streamed route. Each read must make
// progress within `timeout`, and the waits together must keep within the minimum rate
// (ServerConfig::body_min_rate): checked after each read, so that the refusal is a 408
// on a live connection (an expired read closes the socket). The parser enforces the
// route's limit and the framing.
class StreamedBody final : public BodyReader {
 public:
  StreamedBody(beast::tcp_stream& stream, beast::flat_buffer& buffer, bhttp::request_parser<bhttp::buffer_body>& parser,
               const ServerConfig& config, std::size_t limit)
      : stream_(stream),
        buffer_(buffer),
        parser_(parser),
        timeout_(config.body_timeout),
        grace_(config.body_grace),
        min_rate_(config.body_min_rate),
        limit_(limit) {}

  asio::awaitable<std::size_t> read(std::string& out, std::size_t max) override {
    if (parser_.is_done() || max == 0) co_return 0;
    if (under_min_rate()) {
      failed_ = true;
      throw BodyError(408, "body under the minimum rate");
    }
    const auto old = out.size();
    out.resize(old + max);
    std::size_t got = 0;
    while (got == 0 && !parser_.is_done()) {
      auto& body = parser_.get().body();
      body.data = out.data() + old;
      body.size = max;
      stream_.expires_after(timeout_);
      const auto wait_started = Clock::now();
      // (read_some: back with what has arrived, so that a trickle is measured as it comes;
      // async_read would wait for `max` bytes under one timeout)
      auto [ec, n] = co_await bhttp::async_read_some(stream_, buffer_, parser_, use_tuple);
      waited_ += Clock::now() - wait_started;
      got = max - body.size;
      if (ec == bhttp::error::need_buffer) ec = {};
      if (ec) {
        out.resize(old);
        failed_ = true;
        if (ec == bhttp::error::body_limit) throw BodyError(413, "body over " + std::to_string(limit_) + " bytes");
        if (ec == beast::error::timeout) throw BodyError(408, "body timeout");
        throw BodyError(400, "body not received: " + ec.message());
      }
    }
    out.resize(old + got);
    received_ += got;
    co_return got;
  }

  std::optional<std::uint64_t> content_length() const override {
    auto n = parser_.content_length();
    if (!n) return std::nullopt;
    return *n;
  }
  bool failed() const { return failed_; }

 private:
  bool under_min_rate() const {
    if (min_rate_ == 0) return false;
    const auto allowed = grace_ + std::chrono::milliseconds(received_ * 1000 / min_rate_);
    return waited_ > allowed;
  }

  beast::tcp_stream& stream_;
  beast::flat_buffer& buffer_;
  bhttp::request_parser<bhttp::buffer_body>& parser_;
  std::chrono::milliseconds timeout_;
  std::chrono::milliseconds grace_;
  std::size_t min_rate_;
  std::size_t limit_;
  std::uint64_t received_ = 0;
  Clock::duration waited_{};
  bool failed_ = false;
};

}  // namespace

namespace {

// A unix connection as a TCP socket of the same descriptor, on the same strand (a stream
// is a stream to the session; it skips only TCP's options and the peer's address).
// nullopt, the descriptor closed, if it cannot be handed over.
std::optional<tcp::socket> as_tcp(local::socket accepted) {
  boost::system::error_code ec;
  auto executor = accepted.get_executor();
  const auto fd = accepted.release(ec);
  if (ec) return std::nullopt;
  tcp::socket socket(executor);
  socket.assign(tcp::v4(), fd, ec);
  if (ec) {
    ::close(fd);
    return std::nullopt;
  }
  return socket;
}

}  // namespace

struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
  Impl(asio::io_context& io, ServerConfig cfg, const Router& r, ops::Metrics& m)
      : ioc(io),
        config(std::move(cfg)),
        router(r),
        metrics(m),
        acceptor(asio::make_strand(io)),
        local_acceptor(acceptor.get_executor()) {}

  asio::io_context& ioc;
  ServerConfig config;
  const Router& router;
  ops::Metrics& metrics;
  tcp::acceptor acceptor;
  tcp::endpoint bound;  // where listen() bound, kept to listen again after a pause
  // The unix socket (config.socket_path), on the same strand; closed during a pause and
  // bound again after it (see pause_listening).
  local::acceptor local_acceptor;
  std::atomic<bool> draining{false};
  // At the connection limit the listener stops taking connections, keeping its port
  // (see pause_listening); set on the acceptor's strand, read from any thread when a
  // connection ends.
  std::atomic<bool> paused{false};
  bool resuming = false;  // a resume_listening() is running (acceptor's strand only)
  // Which accept loop is current (acceptor's strand only): one paused from outside it
  // ends when its pending accept fails, even if listening has resumed meanwhile.
  std::uint64_t accept_generation = 0;
  std::uint64_t local_generation = 0;  // the same, for the unix socket's loop
  // Connections closed to make room at the limit whose sessions have not ended yet.
  std::atomic<std::int64_t> evicting{0};

  std::mutex mutex;
  std::uint64_t next_id = 0;
  std::unordered_map<std::uint64_t, std::pair<asio::any_io_executor, std::shared_ptr<Connection>>> connections;

  asio::awaitable<void> accept_loop();
  asio::awaitable<void> local_accept_loop();
  bool admit(tcp::socket socket, bool from_unix);
  void listen_local();
  asio::awaitable<void> session(tcp::socket socket, std::uint64_t id, std::shared_ptr<Connection> conn);
  asio::awaitable<Response> respond(Request& req, MatchResult matched);
  asio::awaitable<void> write_error(beast::tcp_stream& stream, Request& req, Response res, unsigned version);
  asio::awaitable<void> write_stream(beast::tcp_stream& stream, Connection& conn, Response& res, unsigned version);
  asio::awaitable<boost::system::error_code> write_stream_head(beast::tcp_stream& stream, Response& res,
                                                               unsigned version);
  static asio::awaitable<void> linger(beast::tcp_stream& stream);
  Response finish(Request& req, Response res, std::size_t slot);
  asio::awaitable<void> reject_connection(tcp::socket socket);
  bool at_limit() const;
  bool close_a_silent_connection();
  bool has_silent_connection();
  void connection_spoke();
  void pause_listening();
  void connection_closed();
  asio::awaitable<void> resume_listening();
  const std::string too_many_connections = canned_too_many_connections();
  static std::string canned_too_many_connections();
  void close_connections(bool idle_only);
};

namespace {

// What the client sent, in Nimbus's own types. Returns false if the target is not a
// valid origin-form URL.
bool to_request(const bhttp::request_header<>& head, Request& req) {
  req.method = parse_method(std::string_view(head.method_string().data(), head.method_string().size()));
  req.target = std::string(head.target());
  auto url = boost::urls::parse_origin_form(req.target);
  if (!url) return false;
  req.path = url->path();
  req.query = std::string(url->encoded_query());
  for (const auto& field : head) {
    req.headers.add(std::string(field.name_string()), std::string(field.value()));
  }
  return true;
}

bhttp::response<bhttp::string_body> to_beast(Response& res, unsigned version, bool head_request) {
  bhttp::response<bhttp::string_body> out{static_cast<bhttp::status>(res.status), version};
  for (auto& [name, value] : res.headers.items()) out.set(name, value);
  const auto size = res.body.size();
  out.body() = std::move(res.body);
  out.prepare_payload();
  if (head_request) {
    out.body().clear();
    out.content_length(size);
  }
  return out;
}

// What RFC 9112 requires of a request's framing that the parser lets through: a
// transfer coding other than a lone "chunked" (the body's end would be unknown, and
// the bytes after the head would be read as the next request: smuggling), and an
// HTTP/1.1 request without exactly one Host.
std::optional<std::string> framing_error(const bhttp::request_header<>& head) {
  std::size_t codings = 0;
  for (const auto& field : head) {
    if (field.name() != bhttp::field::transfer_encoding) continue;
    ++codings;
    auto value = std::string_view(field.value().data(), field.value().size());
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    if (!beast::iequals(value, "chunked")) return "Transfer-Encoding other than chunked is not accepted.";
  }
  if (codings > 1) return "Transfer-Encoding appears more than once.";
  if (codings == 1 && head.version() < 11) return "Transfer-Encoding is not defined for HTTP/1.0.";
  if (head.version() >= 11) {
    const auto hosts =
        std::distance(head.equal_range(bhttp::field::host).first, head.equal_range(bhttp::field::host).second);
    if (hosts != 1) return "An HTTP/1.1 request carries exactly one Host header.";
  }
  return std::nullopt;
}

// The answer to a framing or limit error found while reading a request.
Response read_error_response(const boost::system::error_code& ec, std::size_t body_limit) {
  if (ec == bhttp::error::header_limit) {
    return problem(431, "header_too_large", "Request header fields too large",
                   "The request head exceeds the server's limit.");
  }
  if (ec == bhttp::error::body_limit) return payload_too_large(body_limit);
  return bad_request("malformed_request", "The request is not valid HTTP/1.1.");
}

}  // namespace

Server::Server(asio::io_context& ioc, ServerConfig config, const Router& router, ops::Metrics& metrics)
    : impl_(std::make_shared<Impl>(ioc, std::move(config), router, metrics)) {
  std::vector<ops::Metrics::RouteName> routes;
  for (const auto& route : router.routes()) routes.push_back({std::string(to_string(route.method)), route.pattern});
  impl_->metrics.bind_routes(routes);
}

Server::~Server() = default;

namespace {

// A port the kernel would pick for `ep` now: bound and let go at once by a socket
// without SO_REUSEPORT, so that no one else shares it meanwhile.
std::uint16_t free_port(const tcp::endpoint& ep) {
  asio::io_context scratch;
  tcp::acceptor probe(scratch, ep.protocol());
  probe.bind(ep);
  return probe.local_endpoint().port();
}

}  // namespace

void Server::listen() {
  auto& a = impl_->acceptor;
  tcp::endpoint ep{asio::ip::make_address(impl_->config.address), impl_->config.port};
  a.open(ep.protocol());
  // SO_REUSEPORT, not SO_REUSEADDR: either lets a restarted instance bind past its
  // predecessor's TIME_WAIT connections and lets the paused listener listen again while
  // its accepted connections hold the port, but a socket with SO_REUSEADDR lets any
  // local process bind the same port with SO_REUSEADDR whenever it is not listening (as
  // during a pause at the connection limit), while SO_REUSEPORT shares a port only with
  // sockets of the same user.
  //
  // The port is bound by number even when the configuration asks for any free one
  // (port 0, as tests do): Linux keeps a port through a pause only for a socket bound to
  // it explicitly, and gives an automatically chosen one back.
  if (ep.port() == 0) ep.port(free_port(ep));
  a.set_option(asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>(true));
  a.bind(ep);
  a.listen(asio::socket_base::max_listen_connections);
  impl_->bound = a.local_endpoint();
  if (!impl_->config.socket_path.empty()) impl_->listen_local();
  asio::co_spawn(a.get_executor(), impl_->accept_loop(), asio::detached);
  if (impl_->local_acceptor.is_open()) asio::co_spawn(a.get_executor(), impl_->local_accept_loop(), asio::detached);
}

// The unix socket at config.socket_path, replacing whatever is there (a predecessor's
// socket: only this instance's user can write in its folder). Readable and writable by
// the socket's group: the folder's owner and group decide who may connect (the gateway),
// and who may bind there — no one else, unlike a port on a shared host.
void Server::Impl::listen_local() {
  boost::system::error_code ec;
  if (local_acceptor.is_open()) local_acceptor.close(ec);
  if (::unlink(config.socket_path.c_str()) != 0 && errno != ENOENT) {
    throw boost::system::system_error(errno, boost::system::system_category(), "unlink " + config.socket_path);
  }
  local::endpoint ep(config.socket_path);
  local_acceptor.open(ep.protocol());
  local_acceptor.bind(ep);
  if (::chmod(config.socket_path.c_str(), 0660) != 0) {
    throw boost::system::system_error(errno, boost::system::system_category(), "chmod " + config.socket_path);
  }
  local_acceptor.listen(asio::socket_base::max_listen_connections);
}

std::uint16_t Server::port() const {
  return impl_->bound.port();
}

bool Server::draining() const {
  return impl_->draining.load();
}

std::string Server::describe_in_flight() const {
  struct Entry {
    std::string what;
    Clock::time_point since;
  };
  std::vector<Entry> entries;
  {
    // try_lock: the watchdog must report even if a stuck thread holds the registry.
    std::unique_lock lock(impl_->mutex, std::try_to_lock);
    if (!lock.owns_lock()) return "(connection registry busy)";
    for (auto& [id, entry] : impl_->connections) {
      auto& conn = *entry.second;
      std::unique_lock current(conn.current_mutex, std::try_to_lock);
      if (!current.owns_lock() || conn.current == nullptr) continue;
      const auto& req = *conn.current;
      const auto route = conn.current_route.empty() ? std::string_view(req.path) : conn.current_route;
      entries.push_back(
          {std::string(to_string(req.method)) + " " + std::string(route) + " " + req.request_id, req.received_at});
    }
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.since < b.since; });
  std::string out;
  const auto now = Clock::now();
  for (std::size_t i = 0; i < entries.size() && i < 10; ++i) {
    if (!out.empty()) out += "; ";
    out += entries[i].what + " (" +
           std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(now - entries[i].since).count()) +
           " ms)";
  }
  if (entries.size() > 10) out += "; and " + std::to_string(entries.size() - 10) + " more";
  return out.empty() ? "(no request in flight)" : out;
}

asio::awaitable<void> Server::Impl::accept_loop() {
  auto self = shared_from_this();
  const auto generation = ++accept_generation;
  while (!draining.load()) {
    tcp::socket socket(asio::make_strand(ioc));
    auto [ec] = co_await acceptor.async_accept(socket, use_tuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open() || paused.load() ||
          generation != accept_generation)
        break;
      // EMFILE and friends: back off briefly instead of spinning.
      log::warn("accept failed", {{"error", ec.message()}});
      asio::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(50));
      co_await pause.async_wait(use_tuple);
      if (generation != accept_generation) break;  // paused and resumed meanwhile: a newer loop runs
      continue;
    }
    if (!admit(std::move(socket), false)) co_return;  // paused: resume_listening() starts a new loop
    if (generation != accept_generation) co_return;   // a newer loop took over while this one waited
  }
}

// The unix socket's accept loop: as accept_loop. Its connections are handed on as TCP
// sockets of the same descriptor (a stream is a stream to the session; only the peer's
// address and TCP's own options differ).
asio::awaitable<void> Server::Impl::local_accept_loop() {
  auto self = shared_from_this();
  const auto generation = ++local_generation;
  while (!draining.load() && local_acceptor.is_open()) {
    local::socket accepted(asio::make_strand(ioc));
    auto [ec] = co_await local_acceptor.async_accept(accepted, use_tuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || !local_acceptor.is_open() || paused.load() ||
          generation != local_generation)
        break;
      log::warn("accept failed", {{"error", ec.message()}, {"socket", config.socket_path}});
      asio::steady_timer pause(local_acceptor.get_executor(), std::chrono::milliseconds(50));
      co_await pause.async_wait(use_tuple);
      if (generation != local_generation) break;
      continue;
    }
    auto socket = as_tcp(std::move(accepted));
    if (!socket) continue;
    if (!admit(std::move(*socket), true)) co_return;
    if (generation != local_generation) co_return;
  }
}

// On the acceptor's strand, with a connection just accepted. At the limit a connection
// that has sent nothing since it was accepted makes room for the new one (a client that
// holds connections open without using them cannot starve those that do, nor make a
// liveness probe fail). False when the listeners paused: the accept loop ends.
bool Server::Impl::admit(tcp::socket socket, bool from_unix) {
  if (at_limit() && !close_a_silent_connection()) {
    auto ex = socket.get_executor();
    asio::co_spawn(ex, reject_connection(std::move(socket)), asio::detached);
    return true;
  }
  boost::system::error_code ignored;
  if (!from_unix) socket.set_option(tcp::no_delay(true), ignored);
  auto conn = std::make_shared<Connection>();
  conn->local = from_unix;
  std::uint64_t id = 0;
  {
    std::lock_guard lock(mutex);
    id = ++next_id;
    connections.emplace(id, std::make_pair(socket.get_executor(), conn));
  }
  metrics.connections().add(1);
  auto ex = socket.get_executor();
  asio::co_spawn(ex, session(std::move(socket), id, std::move(conn)),
                 [self = shared_from_this(), id](std::exception_ptr e) {
                   if (e) {
                     try {
                       std::rethrow_exception(e);
                     } catch (const std::exception& err) {
                       log::error("connection failed", {{"error", err.what()}});
                     }
                   }
                   {
                     std::lock_guard lock(self->mutex);
                     auto it = self->connections.find(id);
                     if (it != self->connections.end() && it->second.second->use.load() == Use::evicted)
                       --self->evicting;
                     self->connections.erase(id);
                   }
                   self->metrics.connections().add(-1);
                   self->connection_closed();
                 });
  if (at_limit() && !has_silent_connection()) {
    pause_listening();
    return false;
  }
  return true;
}

// Any thread: a connection sent its first bytes. If the listener was kept open at the
// limit for silent connections to make room, and none is left, it pauses now.
void Server::Impl::connection_spoke() {
  if (!at_limit() || paused.load()) return;
  asio::post(acceptor.get_executor(), [self = shared_from_this()] {
    if (self->paused.load() || self->draining.load() || !self->at_limit() || self->has_silent_connection()) return;
    self->pause_listening();  // the accept loop's pending accept fails and it ends
  });
}

bool Server::Impl::has_silent_connection() {
  std::lock_guard lock(mutex);
  return std::any_of(connections.begin(), connections.end(),
                     [](const auto& entry) { return entry.second.second->use.load() == Use::silent; });
}

// Closes the oldest connection that has not sent a byte for silent_grace since it was
// accepted; false if there is none. Its slot counts as free at once (`evicting`); its
// session ends on its own strand soon after.
bool Server::Impl::close_a_silent_connection() {
  std::shared_ptr<Connection> victim;
  asio::any_io_executor where;
  {
    std::lock_guard lock(mutex);
    const auto accepted_before = std::chrono::steady_clock::now() - config.silent_grace;
    std::uint64_t oldest = 0;
    for (auto& [id, entry] : connections) {
      if (entry.second->use.load() != Use::silent || entry.second->accepted_at > accepted_before ||
          (oldest != 0 && id > oldest))
        continue;
      oldest = id;
      where = entry.first;
      victim = entry.second;
    }
  }
  if (!victim || !victim->evict()) return false;
  ++evicting;
  metrics.connections_rejected().add(1);
  // A session not started yet sees the mark when it starts; one waiting for its first
  // byte is woken by the close.
  asio::post(where, [victim] {
    if (victim->stream == nullptr || !victim->idle) return;
    boost::system::error_code ec;
    victim->stream->socket().close(ec);
  });
  return true;
}

// Connections being closed to make room do not count: their slots are already given.
bool Server::Impl::at_limit() const {
  return static_cast<std::size_t>(metrics.connections().value() - evicting.load()) >= config.max_connections;
}

// At the limit the instance stops listening, so that a new connection is refused rather
// than answered 503: a refused connect is, to a gateway, an instance that cannot take
// the request — it has sent nothing, so it tries the next instance, for any method —
// while a 503 it passes on to the client (it cannot tell it from a dependency being
// down, which every instance would answer alike). Connections already waiting in the
// kernel's queue are answered 503 too_many_connections first; leaving the listening
// state would reset them.
//
// The port is never given up: shutdown(SHUT_RD) on a listening TCP socket (Linux) takes
// it out of the listening state — connects are refused — while it stays bound, and
// listen() on it again resumes. Closing it instead would let any local process bind
// the port and receive this instance's share of the gateway's traffic (its secret,
// bearer tokens, refresh cookies, sign-in codes). Runs on the acceptor's strand.
void Server::Impl::pause_listening() {
  paused.store(true);
  boost::system::error_code ec;
  acceptor.non_blocking(true, ec);
  while (!ec) {
    tcp::socket queued(asio::make_strand(ioc));
    acceptor.accept(queued, ec);
    if (ec) break;
    auto ex = queued.get_executor();
    asio::co_spawn(ex, reject_connection(std::move(queued)), asio::detached);
  }
  acceptor.non_blocking(false, ec);
  if (::shutdown(acceptor.native_handle(), SHUT_RD) != 0) {
    log::error("cannot pause the listener", {{"error", std::strerror(errno)}});
  }
  // A unix socket cannot listen again after shutdown(): it is closed, its path kept,
  // and bound anew on resume — its folder lets no one else bind there meanwhile.
  if (local_acceptor.is_open()) {
    local_acceptor.non_blocking(true, ec);
    while (!ec) {
      local::socket queued(asio::make_strand(ioc));
      local_acceptor.accept(queued, ec);
      if (ec) break;
      auto socket = as_tcp(std::move(queued));
      if (!socket) continue;
      auto ex = socket->get_executor();
      asio::co_spawn(ex, reject_connection(std::move(*socket)), asio::detached);
    }
    local_acceptor.close(ec);
  }
  log::warn("connection limit reached: not listening until a connection closes",
            {{"connections", metrics.connections().value()}, {"limit", config.max_connections}});
  // A connection that ended while this ran saw no pause to lift; this check sees it.
  connection_closed();
}

// Any thread, after a connection is gone.
void Server::Impl::connection_closed() {
  if (!paused.load() || at_limit() || draining.load()) return;
  asio::co_spawn(acceptor.get_executor(), resume_listening(), asio::detached);
}

// On the acceptor's strand. Puts the paused listener back into the listening state (the
// socket kept its port); if that fails, keeps trying, since without it the instance
// takes no new connection at all.
asio::awaitable<void> Server::Impl::resume_listening() {
  auto self = shared_from_this();
  if (resuming) co_return;
  resuming = true;
  for (int attempt = 0;; ++attempt) {
    if (!paused.load() || draining.load() || at_limit()) {
      resuming = false;
      co_return;
    }
    // The unix socket first: if it cannot be bound, the port stays paused too (listening
    // without an accept loop would queue connections no one takes).
    boost::system::error_code ec;
    if (!config.socket_path.empty()) {
      try {
        listen_local();
      } catch (const boost::system::system_error& e) {
        ec = e.code();
      }
    }
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (!ec) {
      paused.store(false);
      resuming = false;
      log::info("listening again", {{"connections", metrics.connections().value()}});
      if (local_acceptor.is_open()) asio::co_spawn(acceptor.get_executor(), local_accept_loop(), asio::detached);
      co_await accept_loop();
      co_return;
    }
    if (attempt % 50 == 0)
      log::error("cannot listen again", {{"error", ec.message()}, {"address", bound.address().to_string()}});
    asio::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(100));
    co_await pause.async_wait(use_tuple);
  }
}

std::string Server::Impl::canned_too_many_connections() {
  auto res = service_unavailable("too_many_connections", "The server is at its connection limit; retry shortly.");
  auto out = to_beast(res, 11, false);
  out.keep_alive(false);
  std::ostringstream raw;
  raw << out;
  return raw.str();
}

// Answers 503 and closes with a short lingering read, so that the client's unread
// request does not turn our close into a reset that destroys the answer in flight.
asio::awaitable<void> Server::Impl::reject_connection(tcp::socket socket) {
  metrics.connections_rejected().add(1);
  beast::tcp_stream stream(std::move(socket));
  stream.expires_after(std::chrono::seconds(1));
  auto [ec, n] = co_await asio::async_write(stream, asio::buffer(too_many_connections), use_tuple);
  if (!ec) {
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    char sink[1024];
    while (!ec) std::tie(ec, n) = co_await stream.async_read_some(asio::buffer(sink), use_tuple);
  }
  stream.socket().close(ec);
}

Response Server::Impl::finish(Request& req, Response res, std::size_t slot) {
  res.headers.set("X-Request-ID", req.request_id);
  res.headers.set("X-Nimbus-Instance", config.instance);
  const double seconds = std::chrono::duration<double>(Clock::now() - req.received_at).count();
  metrics.observe_request(slot, res.status, seconds);
  log::info("request", {{"request_id", req.request_id},
                        {"method", to_string(req.method)},
                        {"path", req.path},
                        {"route", req.route},
                        {"status", res.status},
                        {"duration_ms", seconds * 1000.0},
                        {"bytes_in", req.body.size()},
                        {"bytes_out", res.body.size()},
                        {"remote", req.remote_addr}});
  return res;
}

asio::awaitable<Response> Server::Impl::respond(Request& req, MatchResult matched) {
  auto* m = std::get_if<RouteMatch>(&matched);
  if (m == nullptr) {
    auto* wrong_method = std::get_if<MethodNotAllowed>(&matched);
    co_return finish(req, wrong_method ? method_not_allowed(wrong_method->allow) : not_found(),
                     metrics.unmatched_slot());
  }
  const Route* route = m->route;
  req.route = route->pattern;
  req.params = std::move(m->params);
  metrics.in_flight().add(1);
  Response res;
  try {
    res = co_await route->handler(req);
  } catch (const BodyError& e) {
    // A streamed body the client did not deliver; the connection cannot be reused.
    log::info("request body failed", {{"request_id", req.request_id}, {"error", e.what()}});
    if (e.status() == 413) {
      res = problem(413, "payload_too_large", "Payload too large", e.what());
    } else if (e.status() == 408) {
      res = problem(408, "request_timeout", "Request timeout", "The request body did not arrive in time.");
    } else {
      res = bad_request("malformed_request", "The request body could not be read.");
    }
    res.close = true;
  } catch (const DependencyUnavailable& e) {
    // Fail fast while a dependency is down; clients and the gateway may retry.
    log::warn("dependency unavailable",
              {{"request_id", req.request_id}, {"dependency", e.dependency()}, {"error", e.what()}});
    res = service_unavailable("dependency_unavailable", "A backing service is unavailable; retry shortly.");
  } catch (const std::exception& e) {
    // The one place where an unexpected failure turns into an opaque 500: the detail
    // goes to the log under the request id, never to the client.
    log::error("handler failed", {{"request_id", req.request_id}, {"route", req.route}, {"error", e.what()}});
    res = internal_error();
  }
  metrics.in_flight().add(-1);
  co_return finish(req, std::move(res), route->index);
}

asio::awaitable<void> Server::Impl::session(tcp::socket socket, std::uint64_t /*id*/,
                                            std::shared_ptr<Connection> conn) {
  beast::tcp_stream stream(std::move(socket));
  conn->stream = &stream;
  // Deregister on every exit path, on the strand, before `stream` is destroyed.
  struct Unhook {
    Connection& c;
    ~Unhook() { c.stream = nullptr; }
  } unhook{*conn};

  boost::system::error_code ec;
  auto remote = conn->local ? tcp::endpoint() : stream.socket().remote_endpoint(ec);
  const std::string remote_addr = conn->local ? std::string("unix") : ec ? std::string() : remote.address().to_string();
  beast::flat_buffer buffer;

  for (;;) {
    // Idle wait for the next request's first byte, distinct from the header deadline.
    if (buffer.size() == 0) {
      conn->idle = true;
      if (draining.load() || conn->use.load() == Use::evicted) break;
      stream.expires_after(config.idle_timeout);
      auto [read_ec, n] = co_await stream.async_read_some(buffer.prepare(4096), use_tuple);
      conn->idle = false;
      if (read_ec) break;
      if (conn->use.load() == Use::silent) {
        if (!conn->mark_spoke()) break;  // evicted at the limit as its first bytes came
        connection_spoke();
      }
      buffer.commit(n);
    }

    Request req;
    req.remote_addr = remote_addr;
    req.received_at = Clock::now();
    // The head first, with no body type; the route then decides how the body is read.
    bhttp::request_parser<bhttp::empty_body> head_parser;
    head_parser.header_limit(static_cast<std::uint32_t>(config.header_limit));
    head_parser.body_limit(boost::none);  // the route decides, once the head is read

    stream.expires_after(config.header_timeout);
    auto [head_ec, head_n] = co_await bhttp::async_read_header(stream, buffer, head_parser, use_tuple);
    if (head_ec) {
      if (head_ec == bhttp::error::end_of_stream || head_ec == asio::error::eof ||
          head_ec == asio::error::operation_aborted || head_ec == asio::error::connection_reset) {
        break;
      }
      if (head_ec == beast::error::timeout) {
        // tcp_stream has already closed the socket; the 408 goes to the log only, as
        // with nginx's client_header_timeout.
        if (req.request_id.empty()) req.request_id = random::hex(16);
        finish(req, problem(408, "request_timeout", "Request timeout"), metrics.unmatched_slot());
        break;
      }
      co_await write_error(stream, req, read_error_response(head_ec, 0), 11);
      break;
    }

    const auto& head = head_parser.get();
    const unsigned version = head.version();
    // The parser checks its limit per read; a head that arrived whole in one read is
    // measured here, so the limit is exact whatever the segmentation.
    if (head_n > config.header_limit) {
      co_await write_error(stream, req, read_error_response(bhttp::error::header_limit, 0), version);
      break;
    }
    if (auto framing = framing_error(head)) {
      co_await write_error(stream, req, bad_request("malformed_request", *framing), version);
      break;
    }
    auto id_header = head["X-Request-ID"];
    req.request_id = valid_request_id(id_header) ? std::string(id_header) : random::hex(16);
    if (!to_request(head, req)) {
      co_await write_error(stream, req, bad_request("malformed_target", "The request target is not a valid path."),
                           version);
      break;
    }

    auto matched = router.match(req.method, req.path);
    const auto* route_match = std::get_if<RouteMatch>(&matched);
    std::size_t limit = config.body_limit;
    if (route_match && route_match->route->options.body_limit != 0) limit = route_match->route->options.body_limit;
    if (!route_match) limit = std::min<std::size_t>(limit, 64 * 1024);

    // Refuse a declared oversized body before reading a byte of it.
    if (auto length = head_parser.content_length(); length && *length > limit) {
      co_await write_error(stream, req, payload_too_large(limit), version);
      break;
    }
    if (!head_parser.is_done() && beast::iequals(head[bhttp::field::expect], "100-continue")) {
      bhttp::response<bhttp::empty_body> cont{bhttp::status::continue_, version};
      stream.expires_after(config.write_timeout);
      auto [cont_ec, cont_n] = co_await bhttp::async_write(stream, cont, use_tuple);
      if (cont_ec) break;
    }

    if (route_match && route_match->route->options.stream_body) {
      bhttp::request_parser<bhttp::buffer_body> body_parser(std::move(head_parser));
      body_parser.body_limit(limit);
      const bool client_keep_alive = body_parser.get().keep_alive();
      StreamedBody body(stream, buffer, body_parser, config, limit);
      req.body_reader = &body;
      InFlightMark mark(*conn, req, route_match->route->pattern);
      Response res = co_await respond(req, std::move(matched));
      req.body_reader = nullptr;
      const bool body_done = body_parser.is_done();
      const bool keep_alive = client_keep_alive && body_done && !res.close && !draining.load();
      auto out = to_beast(res, version, false);
      out.keep_alive(keep_alive);
      stream.expires_after(config.write_timeout);
      auto [write_ec, write_n] = co_await bhttp::async_write(stream, out, use_tuple);
      if (write_ec) break;
      // An answer before the whole body (a refusal): let the client finish sending for
      // a moment so our answer is not destroyed by a reset.
      if (!body_done && !body.failed()) co_await linger(stream);
      if (!keep_alive) break;
      continue;
    }

    bhttp::request_parser<bhttp::string_body> parser(std::move(head_parser));
    parser.body_limit(limit);
    if (!parser.is_done()) {
      stream.expires_after(config.body_timeout);
      auto [body_ec, body_n] = co_await bhttp::async_read(stream, buffer, parser, use_tuple);
      if (body_ec) {
        if (body_ec == asio::error::operation_aborted || body_ec == asio::error::connection_reset) break;
        if (body_ec == beast::error::timeout) {
          finish(req, problem(408, "request_timeout", "Request timeout"), metrics.unmatched_slot());
        } else if (body_ec != bhttp::error::end_of_stream && body_ec != bhttp::error::partial_message) {
          co_await write_error(stream, req, read_error_response(body_ec, limit), version);
        }
        break;
      }
    }
    const bool client_keep_alive = parser.get().keep_alive();
    req.body = std::move(parser.get().body());

    Response res;
    {
      InFlightMark mark(*conn, req, route_match ? std::string_view(route_match->route->pattern) : std::string_view());
      res = co_await respond(req, std::move(matched));
    }
    if (res.stream && req.method != Method::head) {
      // A stream may stay open for hours, thousands at once: what served its request
      // goes first (the read buffer, the parsed head, the request; the stream's producer
      // holds what it needs). The connection ends with the stream, so nothing read
      // after the request is wanted.
      buffer.clear();
      buffer.shrink_to_fit();
      parser.release();
      req = Request{};
      co_await write_stream(stream, *conn, res, version);
      break;
    }

    const bool keep_alive = client_keep_alive && !res.close && !draining.load();
    auto out = to_beast(res, version, req.method == Method::head);
    out.keep_alive(keep_alive);
    stream.expires_after(config.write_timeout);
    auto [write_ec, write_n] = co_await bhttp::async_write(stream, out, use_tuple);
    if (write_ec || !keep_alive) break;
  }

  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream.socket().close(ec);
}

// A streamed response: the head (chunked), then whatever the producer writes, then the
// last chunk. The connection is not reused: a stream lives until one side ends it.
asio::awaitable<void> Server::Impl::write_stream(beast::tcp_stream& stream, Connection& conn, Response& res,
                                                 unsigned version) {
  // The head in a coroutine of its own, whose frame (the serializer, the fields) is gone
  // before the stream's long life begins.
  auto ec = co_await write_stream_head(stream, res, version);
  if (ec) co_return;
  stream.socket().non_blocking(true, ec);
  if (ec) co_return;
  ChunkWriter writer(stream, conn, config.write_timeout);
  try {
    co_await res.stream(writer);
  } catch (const std::exception& e) {
    log::warn("stream ended by an error", {{"error", e.what()}});
  }
  conn.on_stop = nullptr;
  stream.expires_after(config.write_timeout);
  co_await asio::async_write(stream, bhttp::make_chunk_last(), use_tuple);
}

asio::awaitable<boost::system::error_code> Server::Impl::write_stream_head(beast::tcp_stream& stream, Response& res,
                                                                           unsigned version) {
  bhttp::response<bhttp::empty_body> head{static_cast<bhttp::status>(res.status), version};
  for (auto& [name, value] : res.headers.items()) head.set(name, value);
  head.chunked(true);
  head.keep_alive(false);
  bhttp::response_serializer<bhttp::empty_body> serializer{head};
  stream.expires_after(config.write_timeout);
  auto [ec, n] = co_await bhttp::async_write_header(stream, serializer, use_tuple);
  co_return ec;
}

// Answers an error found while reading; the caller then closes the connection, since
// after a framing error the rest of the stream cannot be trusted.
asio::awaitable<void> Server::Impl::write_error(beast::tcp_stream& stream, Request& req, Response res,
                                                unsigned version) {
  if (req.request_id.empty()) req.request_id = random::hex(16);
  res = finish(req, std::move(res), metrics.unmatched_slot());
  auto out = to_beast(res, version, false);
  out.keep_alive(false);
  stream.expires_after(config.write_timeout);
  auto [ec, n] = co_await bhttp::async_write(stream, out, use_tuple);
  if (ec) co_return;
  co_await linger(stream);
}

// Lingering close: the client (or a proxy) may still be sending the body we refused.
// Closing now would reset the connection and destroy our answer in flight, so read
// and discard for a moment (bounded in time and bytes), as nginx does.
asio::awaitable<void> Server::Impl::linger(beast::tcp_stream& stream) {
  boost::system::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream.expires_after(std::chrono::seconds(1));
  std::array<char, 16 * 1024> sink;
  std::size_t drained = 0;
  while (drained < 4 * 1024 * 1024) {
    auto [read_ec, got] = co_await stream.async_read_some(asio::buffer(sink), use_tuple);
    if (read_ec) break;
    drained += got;
  }
}

void Server::Impl::close_connections(bool idle_only) {
  std::lock_guard lock(mutex);
  for (auto& [id, entry] : connections) {
    auto conn = entry.second;
    asio::post(entry.first, [conn, idle_only] {
      conn->stop_requested = true;
      if (conn->on_stop) {
        auto wake = std::move(conn->on_stop);
        conn->on_stop = nullptr;
        wake();
      }
      if (conn->stream == nullptr || (idle_only && !conn->idle)) return;
      boost::system::error_code ec;
      conn->stream->socket().close(ec);
    });
  }
}

asio::awaitable<void> Server::shutdown(std::chrono::milliseconds timeout) {
  auto impl = impl_;
  impl->draining.store(true);
  co_await asio::post(impl->acceptor.get_executor(), asio::use_awaitable);
  boost::system::error_code ec;
  impl->acceptor.close(ec);
  impl->local_acceptor.close(ec);
  co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);

  auto remaining = [&impl] {
    std::lock_guard lock(impl->mutex);
    return impl->connections.size();
  };
  const auto deadline = Clock::now() + timeout;
  asio::steady_timer tick(co_await asio::this_coro::executor);
  // Idle connections are closed at once and again on every tick, since a busy one
  // becomes idle-and-draining only between requests (and then closes itself).
  while (remaining() > 0 && Clock::now() < deadline) {
    impl->close_connections(true);
    tick.expires_after(std::chrono::milliseconds(20));
    co_await tick.async_wait(use_tuple);
  }
  if (auto left = remaining(); left > 0) {
    log::warn("shutdown timeout: closing connections with requests in flight", {{"connections", left}});
    impl->close_connections(false);
    const auto hard_deadline = Clock::now() + std::chrono::seconds(1);
    while (remaining() > 0 && Clock::now() < hard_deadline) {
      tick.expires_after(std::chrono::milliseconds(20));
      co_await tick.async_wait(use_tuple);
    }
  }
}

}  // namespace nimbus::http
