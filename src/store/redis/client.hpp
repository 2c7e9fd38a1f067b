// Redis: an Asio TCP connection speaking RESP, with hiredis's reply parser.
//
// Commands from any coroutine are queued on the client's strand and written together
// (automatic pipelining: concurrent requests share round trips). A background loop
// keeps the connection up and reconnects with jittered backoff; while Redis is down,
// commands fail at once with DependencyUnavailable. A command that misses its deadline
// fails alone (its late reply is still matched to it, in order, and dropped); only a
// connection whose oldest command has waited several deadlines is reset.
//
// Thread-safety: every public member may be called from any thread.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace nimbus::redis {

// An error reply where the caller expected none (WRONGTYPE, a script error, a reply of
// another type than the command returns). A bug or a misconfigured server: a 500.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One RESP reply. Read it through the checked accessors: a reply of another type than
// the caller expects (an error reply above all) must never pass for a value — an error
// read as "0" once turned a revoked session into a valid one.
struct Reply {
  enum class Type { nil, status, error, integer, string, array };
  Type type = Type::nil;
  std::string str;  // status, error or string
  std::int64_t integer = 0;
  std::vector<Reply> elements;

  bool is_nil() const { return type == Type::nil; }
  bool is_error() const { return type == Type::error; }

  // Each throws redis::Error when the reply is of another type.
  std::int64_t as_integer() const;
  const std::string& as_string() const;  // a bulk string or a status
  const std::vector<Reply>& as_array() const;
  std::optional<std::string> as_optional_string() const;  // nil → nullopt
  // A bulk string holding a decimal integer (HGET of a counter); nil → nullopt.
  std::optional<std::int64_t> as_optional_number() const;
};

// Whether an error reply means "the server cannot serve now" (loading its dataset after
// a restart, a busy script, a failover, out of memory, persistence failing) rather than
// "this command is wrong". Such replies fail the command with DependencyUnavailable: a
// 503 with Retry-After for the client, never a value and never a 500.
bool transient_error(std::string_view message);

struct Config {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  std::string username;  // an ACL user; empty: the default user (requirepass)
  std::string password;
  int db = 0;
  std::chrono::milliseconds connect_timeout{1'000};
  std::chrono::milliseconds command_timeout{1'000};

  // NIMBUS_REDIS_URL (redis://[[user]:password@]host:port[/db], both percent-decoded),
  // NIMBUS_REDIS_TIMEOUT. With a password every connection starts with AUTH.
  static Config from_env();
  static Config from_url(const std::string& url);  // throws std::invalid_argument
};

using Command = std::vector<std::string>;

// A Lua script run by EVALSHA, loaded on demand when the server does not know it.
struct Script {
  explicit Script(std::string source);
  std::string source;
  std::string sha1;
};

class Client : public std::enable_shared_from_this<Client> {
  struct Impl;

 public:
  static std::shared_ptr<Client> create(boost::asio::any_io_executor executor, Config config);
  ~Client();

  // Starts the connection loop; stop() ends it and fails what is pending.
  void start();
  void stop();

  // One command. An error reply throws: DependencyUnavailable when it is transient
  // (see transient_error), redis::Error otherwise.
  boost::asio::awaitable<Reply> command(Command cmd);
  // command("SET", key, value): builds the Command outside the coroutine (GCC 12
  // miscompiles braced lists of strings inside co_await expressions).
  template <typename... Args>
  requires(sizeof...(Args) > 0 && (std::is_convertible_v<const Args&, std::string_view> &&
                                   ...)) boost::asio::awaitable<Reply> command(const Args&... args) {
    return command(Command{std::string(std::string_view(args))...});
  }
  // Several commands in one write and one round trip; replies in order. A transient
  // error reply in any slot throws DependencyUnavailable; other error replies stay in
  // their slots (the checked accessors throw on them).
  boost::asio::awaitable<std::vector<Reply>> pipeline(std::vector<Command> cmds);
  // A pipeline sent now, its replies awaited later: what the caller does in between
  // (another command, most often) rides the same write and round trip. The replies are
  // judged as pipeline() judges them; commands whose replies nobody awaits still run.
  class InFlight {
   public:
    InFlight() = default;
    boost::asio::awaitable<std::vector<Reply>> replies();  // once

   private:
    friend class Client;
    InFlight(std::shared_ptr<Impl> impl, std::shared_ptr<void> pending)
        : impl_(std::move(impl)), pending_(std::move(pending)) {}
    std::shared_ptr<Impl> impl_;
    std::shared_ptr<void> pending_;
  };
  InFlight send(boost::asio::any_io_executor executor, std::vector<Command> cmds);
  // EVALSHA, loading the script once if the server does not know it (NOSCRIPT).
  // Throws redis::Error on a script error.
  boost::asio::awaitable<Reply> eval(const Script& script, std::vector<std::string> keys,
                                     std::vector<std::string> args);
  // The same script over several key/argument sets in one pipeline (one round trip),
  // loading it once if the server does not know it. Replies in order; an error reply
  // stays in its slot for the caller to judge.
  struct Call {
    std::vector<std::string> keys, args;
  };
  boost::asio::awaitable<std::vector<Reply>> eval_many(const Script& script, std::vector<Call> calls);
  boost::asio::awaitable<bool> ping();
  bool connected() const;

 private:
  explicit Client(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

// A connection in subscriber mode. Messages are delivered to `on_message` on the
// subscriber's strand, in order. After a reconnect every channel is subscribed again;
// messages published while disconnected are lost (pub/sub is fire-and-forget), so
// consumers must be able to re-read the truth (e.g. a snapshot on reconnect).
class Subscriber : public std::enable_shared_from_this<Subscriber> {
 public:
  using Handler = std::function<void(const std::string& channel, const std::string& payload)>;
  // Called after every (re)connect, once the subscriptions are active again.
  using ConnectedHandler = std::function<void()>;

  static std::shared_ptr<Subscriber> create(boost::asio::any_io_executor executor, Config config, Handler on_message,
                                            ConnectedHandler on_connected = {});
  ~Subscriber();
  void start();
  void stop();
  void subscribe(const std::string& channel);
  void unsubscribe(const std::string& channel);

 private:
  struct Impl;
  explicit Subscriber(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

// RESP encoding of a command (exposed for tests).
std::string encode(const Command& cmd);

}  // namespace nimbus::redis
