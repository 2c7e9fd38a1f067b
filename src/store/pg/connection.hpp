// One PostgreSQL connection driven by Asio: libpq in non-blocking mode, its socket
// watched by a stream_descriptor, so no call ever blocks an I/O thread.
//
// Ownership: a Connection is used by one coroutine at a time (the pool's lease makes
// that so); it is not thread-safe. Completions resume on the awaiting coroutine's
// executor.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "store/pg/result.hpp"

struct pg_conn;
struct pg_result;

namespace nimbus::pg {

using Clock = std::chrono::steady_clock;

// One statement of a pipeline: SQL (prepared on first use) and its parameters.
struct Statement {
  std::string_view sql;
  Params params;
};

struct Notification {
  std::string channel;
  std::string payload;
};

class Connection {
 public:
  explicit Connection(boost::asio::any_io_executor executor);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Throws DependencyUnavailable when the server cannot be reached by `deadline`.
  boost::asio::awaitable<void> connect(const std::string& conninfo, Clock::time_point deadline);

  // Runs one statement with parameters (extended protocol, prepared once per
  // connection). Throws pg::Error for a statement the server refused (SQLSTATE kept),
  // DependencyUnavailable when the connection is lost or the deadline passes.
  boost::asio::awaitable<Result> query(std::string_view sql, const Params& params, Clock::time_point deadline);

  // Runs several statements in one round trip (libpq pipeline mode). Each is its own
  // implicit transaction unless the pipeline opens one with BEGIN.
  boost::asio::awaitable<std::vector<Result>> pipeline(const std::vector<Statement>& statements,
                                                       Clock::time_point deadline);

  // Simple-protocol text: several statements, no parameters (migrations, LISTEN).
  boost::asio::awaitable<void> execute_script(std::string_view sql, Clock::time_point deadline);

  // Waits until a NOTIFY arrives or `deadline`; returns what arrived (maybe nothing).
  boost::asio::awaitable<std::vector<Notification>> wait_notifications(Clock::time_point deadline);

  // False once the connection failed or the server went away. Checks the socket
  // without blocking, so a connection that sat idle across a server restart is found
  // dead before it is used.
  bool alive();
  // True when no transaction is open (safe to hand to the next user).
  bool idle_in_no_transaction() const;

 private:
  enum class Wait { read, write };
  boost::asio::awaitable<void> wait(Wait what, Clock::time_point deadline);
  boost::asio::awaitable<void> flush(Clock::time_point deadline);
  boost::asio::awaitable<pg_result*> next_result(Clock::time_point deadline);
  boost::asio::awaitable<std::vector<Result>> collect(std::size_t expected, bool pipeline, Clock::time_point deadline);
  boost::asio::awaitable<void> prepare(const std::string& name, std::string_view sql, Clock::time_point deadline);
  [[noreturn]] void fail(const std::string& what);
  void bind_socket();

  pg_conn* conn_ = nullptr;
  boost::asio::posix::stream_descriptor socket_;
  std::unordered_set<std::string> prepared_;
  bool broken_ = false;
  bool guard_deadlines_ = true;  // only while connecting; see wait()
};

// Statement name for `sql`: the same text is prepared once per connection.
std::string statement_name(std::string_view sql);

}  // namespace nimbus::pg
