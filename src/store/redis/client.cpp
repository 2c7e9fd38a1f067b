#include "store/redis/client.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/url/parse.hpp>
#include <charconv>
#include <deque>
#include <hiredis/hiredis.h>
#include <mutex>
#include <openssl/sha.h>
#include <set>

#include "core/env.hpp"
#include "core/errors.hpp"
#include "core/hex.hpp"
#include "core/log.hpp"
#include "core/oneshot.hpp"
#include "core/random.hpp"
#include "store/redis/resp.hpp"

namespace nimbus::redis {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using namespace asio::experimental::awaitable_operators;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr const char* kDependency = "redis";

// ---------------------------------------------------------------- config, encoding

Config Config::from_url(const std::string& url) {
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed || parsed->scheme() != "redis") throw std::invalid_argument("expected redis://host:port[/db]");
  Config c;
  if (!parsed->host().empty()) c.host = parsed->host();
  if (parsed->has_port()) c.port = parsed->port_number();
  if (parsed->has_password()) {
    c.username = parsed->user();
    c.password = parsed->password();
  }
  auto path = parsed->path();
  if (path.size() > 1) {
    auto db = std::string_view(path).substr(1);
    auto [ptr, ec] = std::from_chars(db.data(), db.data() + db.size(), c.db);
    if (ec != std::errc{} || ptr != db.data() + db.size() || c.db < 0) throw std::invalid_argument("bad db number");
  }
  return c;
}

Config Config::from_env() {
  auto url = env::required_string("NIMBUS_REDIS_URL");
  Config c;
  try {
    c = from_url(url);
  } catch (const std::invalid_argument& e) {
    throw env::ConfigError(std::string("NIMBUS_REDIS_URL is invalid: ") + e.what());
  }
  c.command_timeout = env::duration("NIMBUS_REDIS_TIMEOUT", c.command_timeout);
  return c;
}

std::string encode(const Command& cmd) {
  std::string out = "*" + std::to_string(cmd.size()) + "\r\n";
  for (const auto& arg : cmd) {
    out += "$" + std::to_string(arg.size()) + "\r\n";
    out += arg;
    out += "\r\n";
  }
  return out;
}

Script::Script(std::string src) : source(std::move(src)) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(source.data()), source.size(), digest);
  sha1 = to_hex(digest, sizeof digest);
}

namespace {

[[noreturn]] void wrong_type(const Reply& r, std::string_view wanted) {
  if (r.is_error()) throw Error("error reply where " + std::string(wanted) + " was expected: " + r.str);
  throw Error("reply of type " + std::to_string(static_cast<int>(r.type)) + " where " + std::string(wanted) +
              " was expected");
}

}  // namespace

std::int64_t Reply::as_integer() const {
  if (type != Type::integer) wrong_type(*this, "an integer");
  return integer;
}

const std::string& Reply::as_string() const {
  if (type != Type::string && type != Type::status) wrong_type(*this, "a string");
  return str;
}

const std::vector<Reply>& Reply::as_array() const {
  if (type != Type::array) wrong_type(*this, "an array");
  return elements;
}

std::optional<std::string> Reply::as_optional_string() const {
  if (is_nil()) return std::nullopt;
  return as_string();
}

std::optional<std::int64_t> Reply::as_optional_number() const {
  if (is_nil()) return std::nullopt;
  const auto& s = as_string();
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size()) throw Error("not a number: " + s.substr(0, 32));
  return value;
}

bool transient_error(std::string_view message) {
  constexpr std::string_view kinds[] = {"LOADING",  "BUSY",       "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN",
                                        "READONLY", "NOREPLICAS", "OOM",        "MISCONF"};
  for (auto kind : kinds) {
    if (message.starts_with(kind) && (message.size() == kind.size() || message[kind.size()] == ' ')) return true;
  }
  return false;
}

namespace {

std::chrono::milliseconds jittered(std::chrono::milliseconds& backoff) {
  backoff = std::min(std::chrono::milliseconds(2'000), backoff * 2);
  return backoff / 2 + random::jitter(backoff / 2);
}

// One TCP connection to Redis, used only on its owner's strand: connect and
// handshake, a write queue that coalesces everything sent while a write is in flight,
// and a reply reader.
class Link : public std::enable_shared_from_this<Link> {
 public:
  explicit Link(asio::any_io_executor ex) : socket_(ex), reader_(make_reader()) {}
  ~Link() { redisReaderFree(reader_); }

  asio::awaitable<void> connect(const Config& config) {
    tcp::resolver resolver(socket_.get_executor());
    auto [rec, endpoints] = co_await resolver.async_resolve(config.host, std::to_string(config.port), use_tuple);
    if (rec) throw DependencyUnavailable(kDependency, "resolve failed: " + rec.message());
    asio::steady_timer timer(socket_.get_executor(), config.connect_timeout);
    auto outcome = co_await (asio::async_connect(socket_, endpoints, use_tuple) || timer.async_wait(use_tuple));
    if (outcome.index() == 1) throw DependencyUnavailable(kDependency, "connect timeout");
    if (auto [ec, ep] = std::get<0>(outcome); ec)
      throw DependencyUnavailable(kDependency, "connect failed: " + ec.message());
    socket_.set_option(tcp::no_delay(true));
    // (named commands: GCC 12 miscompiles braced temporaries inside co_await)
    if (!config.password.empty()) {
      const Command auth = config.username.empty() ? Command{"AUTH", config.password}
                                                   : Command{"AUTH", config.username, config.password};
      co_await handshake(auth);
    }
    if (config.db != 0) {
      const Command select{"SELECT", std::to_string(config.db)};
      co_await handshake(select);
    }
  }

  void send(std::string bytes) {
    out_ += bytes;
    if (!writing_) {
      writing_ = true;
      // The loop keeps the link alive until its last write completes.
      asio::co_spawn(
          socket_.get_executor(), [self = shared_from_this()] { return self->write_loop(); }, asio::detached);
    }
  }

  // The next reply; throws DependencyUnavailable when the connection ends.
  asio::awaitable<Reply> read_reply() {
    for (;;) {
      void* raw = nullptr;
      if (redisReaderGetReply(reader_, &raw) != REDIS_OK) throw DependencyUnavailable(kDependency, "protocol error");
      if (raw != nullptr) {
        Reply r = to_reply(static_cast<redisReply*>(raw));
        freeReplyObject(raw);
        co_return r;
      }
      auto [ec, n] = co_await socket_.async_read_some(asio::buffer(buf_), use_tuple);
      if (ec) throw DependencyUnavailable(kDependency, "connection lost: " + ec.message());
      redisReaderFeed(reader_, buf_.data(), n);
    }
  }

  void close() {
    boost::system::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
  }

 private:
  asio::awaitable<void> handshake(const Command& cmd) {
    send(encode(cmd));
    auto r = co_await read_reply();
    if (r.is_error()) throw DependencyUnavailable(kDependency, "handshake refused: " + r.str);
  }

  asio::awaitable<void> write_loop() {
    std::string sending;
    while (!out_.empty()) {
      sending.swap(out_);
      out_.clear();
      auto [ec, n] = co_await asio::async_write(socket_, asio::buffer(sending), use_tuple);
      if (ec) {
        close();  // the reader sees it and fails what is pending
        break;
      }
      sending.clear();
    }
    writing_ = false;
  }

  tcp::socket socket_;
  redisReader* reader_;
  std::array<char, 16 * 1024> buf_{};
  std::string out_;
  bool writing_ = false;
};

// Keeps one Link up on a strand: connect, run the session until the link fails, back
// off with jitter, again — until stopped. Client and Subscriber differ only in their
// session and in what they do when the link goes down.
struct LinkOwner : std::enable_shared_from_this<LinkOwner> {
  LinkOwner(asio::any_io_executor ex, Config c, std::string what)
      : strand(asio::make_strand(ex)), config(std::move(c)), name(std::move(what)) {}
  virtual ~LinkOwner() = default;

  // Runs on the strand once connected; returns only by throwing (link lost).
  virtual asio::awaitable<void> session() = 0;
  virtual void on_down(const std::string& /*why*/) {}

  asio::awaitable<void> keep_connected() {
    auto self = shared_from_this();
    std::chrono::milliseconds backoff{50};
    asio::steady_timer timer(strand);
    sleeper = &timer;
    while (!stopped) {
      link = std::make_shared<Link>(strand);
      try {
        co_await link->connect(config);
        if (backoff > std::chrono::milliseconds(100)) log::info("redis reachable again", {{"link", name}});
        backoff = std::chrono::milliseconds(50);
        up = true;
        co_await session();
      } catch (const std::exception& e) {
        up = false;
        link->close();
        on_down(e.what());
        if (!stopped) log::warn("redis link down", {{"link", name}, {"error", e.what()}});
      }
      if (stopped) break;
      timer.expires_after(jittered(backoff));
      co_await timer.async_wait(use_tuple);
    }
    sleeper = nullptr;
    link.reset();
  }

  void start() { asio::co_spawn(strand, keep_connected(), asio::detached); }

  void stop() {
    asio::post(strand, [self = shared_from_this()] {
      self->stopped = true;
      if (self->link) self->link->close();
      if (self->sleeper) self->sleeper->cancel();
    });
  }

  asio::strand<asio::any_io_executor> strand;
  Config config;
  std::string name;
  // Owned by the strand:
  std::shared_ptr<Link> link;
  bool stopped = false;
  asio::steady_timer* sleeper = nullptr;
  std::atomic<bool> up{false};  // read from any thread
};

}  // namespace

// ---------------------------------------------------------------- client

struct Client::Impl : LinkOwner {
  using Outcome = std::pair<std::vector<Reply>, std::string>;  // replies, or an error text
  struct Pending {
    Pending(asio::any_io_executor ex, std::size_t n) : done(std::move(ex)), expected(n) {}
    OneShot<Outcome> done;
    std::size_t expected;
    std::vector<Reply> replies;
    Clock::time_point sent = Clock::now();
  };
  // A connection whose oldest command has waited this many deadlines is stuck (a hung
  // server, a silent peer): it is reset. One command past its deadline is not.
  static constexpr int kStuckAfterDeadlines = 4;

  Impl(asio::any_io_executor ex, Config c) : LinkOwner(std::move(ex), std::move(c), "client") {}

  std::deque<std::shared_ptr<Pending>> pending;  // owned by the strand

  void on_down(const std::string& why) override {
    for (auto& p : pending) p->done.set({{}, why});
    pending.clear();
  }

  asio::awaitable<void> session() override {
    for (;;) {
      Reply r = co_await link->read_reply();
      if (pending.empty()) throw DependencyUnavailable(kDependency, "unexpected reply");
      auto& front = pending.front();
      front->replies.push_back(std::move(r));
      if (front->replies.size() == front->expected) {
        front->done.set({std::move(front->replies), {}});
        pending.pop_front();
      }
    }
  }

  // Queues the commands for the link's next write; the replies come to the returned
  // Pending (or its failure does: not connected, link lost).
  std::shared_ptr<Pending> send(asio::any_io_executor ex, std::vector<Command> cmds) {
    auto p = std::make_shared<Pending>(std::move(ex), cmds.size());
    if (cmds.empty()) {
      p->done.set({{}, {}});  // nothing to send: no reply would ever complete it
      return p;
    }
    if (!up) {
      p->done.set({{}, "not connected"});
      return p;
    }
    std::string bytes;
    for (const auto& c : cmds) bytes += encode(c);
    auto self = std::static_pointer_cast<Impl>(shared_from_this());
    asio::post(strand, [self, p, bytes = std::move(bytes)]() mutable {
      if (!self->up || !self->link) {
        p->done.set({{}, "not connected"});
        return;
      }
      self->pending.push_back(p);
      self->link->send(std::move(bytes));
    });
    return p;
  }

  asio::awaitable<std::vector<Reply>> receive(std::shared_ptr<Pending> p) {
    auto outcome = co_await p->done.wait_until(p->sent + config.command_timeout);
    if (!outcome) {
      // The command stays queued: its late reply is matched to it and dropped, and the
      // commands behind it get theirs. Resetting here would fail every command in
      // flight because one was slow (a starved instance: all of them at once). Only a
      // connection stuck for several deadlines is reset.
      auto self = std::static_pointer_cast<Impl>(shared_from_this());
      asio::post(strand, [self] {
        const auto stuck = std::chrono::steady_clock::now() - kStuckAfterDeadlines * self->config.command_timeout;
        if (self->link && !self->pending.empty() && self->pending.front()->sent < stuck) self->link->close();
      });
      throw DependencyUnavailable(kDependency, "command timed out");
    }
    if (!outcome->second.empty()) throw DependencyUnavailable(kDependency, outcome->second);
    for (const auto& r : outcome->first) {
      if (r.is_error() && transient_error(r.str)) throw DependencyUnavailable(kDependency, r.str);
    }
    co_return std::move(outcome->first);
  }

  asio::awaitable<std::vector<Reply>> submit(std::vector<Command> cmds) {
    // (named, not a temporary in the co_await: docs/adr/0001)
    auto sent = send(co_await asio::this_coro::executor, std::move(cmds));
    co_return co_await receive(std::move(sent));
  }
};

Client::Client(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() {
  stop();
}

std::shared_ptr<Client> Client::create(asio::any_io_executor executor, Config config) {
  return std::shared_ptr<Client>(new Client(std::make_shared<Impl>(std::move(executor), std::move(config))));
}

void Client::start() {
  impl_->start();
}
void Client::stop() {
  impl_->stop();
}

bool Client::connected() const {
  return impl_->up.load();
}

asio::awaitable<Reply> Client::command(Command cmd) {
  std::vector<Command> one;
  one.push_back(std::move(cmd));
  auto replies = co_await impl_->submit(std::move(one));
  if (replies.front().is_error()) throw Error(replies.front().str);
  co_return std::move(replies.front());
}

asio::awaitable<std::vector<Reply>> Client::pipeline(std::vector<Command> cmds) {
  if (cmds.empty()) co_return std::vector<Reply>{};
  co_return co_await impl_->submit(std::move(cmds));
}

Client::InFlight Client::send(asio::any_io_executor executor, std::vector<Command> cmds) {
  return InFlight(impl_, impl_->send(std::move(executor), std::move(cmds)));
}

asio::awaitable<std::vector<Reply>> Client::InFlight::replies() {
  if (!impl_) throw std::logic_error("redis: replies() of an empty or spent InFlight");
  auto impl = std::move(impl_);
  auto pending = std::static_pointer_cast<Impl::Pending>(std::move(pending_));
  co_return co_await impl->receive(std::move(pending));
}

asio::awaitable<Reply> Client::eval(const Script& script, std::vector<std::string> keys,
                                    std::vector<std::string> args) {
  std::vector<Call> calls;
  calls.push_back(Call{std::move(keys), std::move(args)});
  auto replies = co_await eval_many(script, std::move(calls));
  if (replies.front().is_error()) throw Error("script failed: " + replies.front().str);
  co_return std::move(replies.front());
}

asio::awaitable<std::vector<Reply>> Client::eval_many(const Script& script, std::vector<Call> calls) {
  std::vector<Command> cmds;
  cmds.reserve(calls.size());
  for (auto& call : calls) {
    Command cmd{"EVALSHA", script.sha1, std::to_string(call.keys.size())};
    cmd.insert(cmd.end(), call.keys.begin(), call.keys.end());
    cmd.insert(cmd.end(), call.args.begin(), call.args.end());
    cmds.push_back(std::move(cmd));
  }
  auto replies = co_await pipeline(cmds);
  const bool unknown = std::any_of(replies.begin(), replies.end(),
                                   [](const Reply& r) { return r.is_error() && r.str.starts_with("NOSCRIPT"); });
  if (unknown) {
    std::vector<Command> retry;
    retry.push_back({"SCRIPT", "LOAD", script.source});
    std::vector<std::size_t> slots;
    for (std::size_t i = 0; i < replies.size(); ++i) {
      if (replies[i].is_error() && replies[i].str.starts_with("NOSCRIPT")) {
        retry.push_back(cmds[i]);
        slots.push_back(i);
      }
    }
    auto again = co_await pipeline(std::move(retry));
    if (again.front().is_error()) throw Error("script load failed: " + again.front().str);
    for (std::size_t k = 0; k < slots.size(); ++k) replies[slots[k]] = std::move(again[k + 1]);
  }
  co_return replies;
}

asio::awaitable<bool> Client::ping() {
  try {
    Command ping_cmd{"PING"};
    auto r = co_await command(std::move(ping_cmd));
    co_return r.type == Reply::Type::status&& r.str == "PONG";
  } catch (const std::exception&) {
    co_return false;
  }
}

// ---------------------------------------------------------------- subscriber

struct Subscriber::Impl : LinkOwner {
  Impl(asio::any_io_executor ex, Config c, Handler h, ConnectedHandler ch)
      : LinkOwner(std::move(ex), std::move(c), "subscriber"), on_message(std::move(h)), on_connected(std::move(ch)) {}

  Handler on_message;
  ConnectedHandler on_connected;
  std::set<std::string> channels;  // owned by the strand

  asio::awaitable<void> session() override {
    std::size_t confirmations = channels.size();
    for (const auto& c : channels) link->send(encode({"SUBSCRIBE", c}));
    if (confirmations == 0 && on_connected) on_connected();
    for (;;) {
      Reply r = co_await link->read_reply();
      if (r.type != Reply::Type::array || r.elements.size() < 3) continue;
      const auto& kind = r.elements[0].str;
      if (kind == "message") {
        on_message(r.elements[1].str, r.elements[2].str);
      } else if (kind == "subscribe" && confirmations > 0 && --confirmations == 0 && on_connected) {
        on_connected();
      }
    }
  }
};

Subscriber::Subscriber(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Subscriber::~Subscriber() {
  stop();
}

std::shared_ptr<Subscriber> Subscriber::create(asio::any_io_executor executor, Config config, Handler on_message,
                                               ConnectedHandler on_connected) {
  return std::shared_ptr<Subscriber>(new Subscriber(
      std::make_shared<Impl>(std::move(executor), std::move(config), std::move(on_message), std::move(on_connected))));
}

void Subscriber::start() {
  impl_->start();
}
void Subscriber::stop() {
  impl_->stop();
}

void Subscriber::subscribe(const std::string& channel) {
  asio::post(impl_->strand, [impl = impl_, channel] {
    if (impl->channels.insert(channel).second && impl->up) impl->link->send(encode({"SUBSCRIBE", channel}));
  });
}

void Subscriber::unsubscribe(const std::string& channel) {
  asio::post(impl_->strand, [impl = impl_, channel] {
    if (impl->channels.erase(channel) > 0 && impl->up) impl->link->send(encode({"UNSUBSCRIBE", channel}));
  });
}

}  // namespace nimbus::redis
