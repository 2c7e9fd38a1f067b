#include "store/pg/connection.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdio>
#include <functional>
#include <libpq-fe.h>
#include <poll.h>

#include "core/errors.hpp"
#include "core/log.hpp"

namespace nimbus::pg {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr const char* kDependency = "postgres";

// SQLSTATEs that mean "the server or the link is gone", not "your statement is wrong".
bool connection_lost(std::string_view sqlstate) {
  return sqlstate.starts_with("08") || sqlstate == "57P01" || sqlstate == "57P02" || sqlstate == "57P03";
}

std::string field(const PGresult* r, int code) {
  const char* v = PQresultErrorField(r, code);
  return v ? v : "";
}

}  // namespace

std::string statement_name(std::string_view sql) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "n%016zx", std::hash<std::string_view>{}(sql));
  return buf;
}

Connection::Connection(asio::any_io_executor executor) : socket_(std::move(executor)) {}

Connection::~Connection() {
  if (socket_.is_open()) socket_.release();  // libpq owns the descriptor
  if (conn_ != nullptr) PQfinish(conn_);
}

void Connection::fail(const std::string& what) {
  broken_ = true;
  std::string message = conn_ ? PQerrorMessage(conn_) : "";
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  throw DependencyUnavailable(kDependency, what + (message.empty() ? "" : ": " + message));
}

void Connection::bind_socket() {
  if (socket_.is_open()) socket_.release();
  const int fd = PQsocket(conn_);
  if (fd < 0) fail("no socket");
  socket_.assign(fd);
}

bool Connection::idle_in_no_transaction() const {
  return conn_ != nullptr && PQtransactionStatus(conn_) == PQTRANS_IDLE;
}

bool Connection::alive() {
  if (broken_ || conn_ == nullptr || PQstatus(conn_) != CONNECTION_OK) return false;
  pollfd p{PQsocket(conn_), POLLIN | POLLRDHUP, 0};
  if (::poll(&p, 1, 0) > 0) {
    // The server closed its end (a restart, pg_terminate_backend): its last words are
    // a FATAL error that libpq reads as a mere notice while idle, and the end of the
    // stream may not be seen by the same read — the hang-up flag is the proof.
    if ((p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) {
      broken_ = true;
      return false;
    }
    // Readable while idle: a notice or a NOTIFY.
    if (PQconsumeInput(conn_) == 0 || PQstatus(conn_) != CONNECTION_OK) {
      broken_ = true;
      return false;
    }
  }
  return true;
}

asio::awaitable<void> Connection::wait(Wait what, Clock::time_point deadline) {
  const auto type =
      what == Wait::read ? asio::posix::stream_descriptor::wait_read : asio::posix::stream_descriptor::wait_write;
  if (!guard_deadlines_) {
    // Hot path (queries): a bare wait. Hangs are bounded below us instead: the server's
    // statement_timeout ends slow statements, and TCP keepalives plus tcp_user_timeout
    // (set at connect) end a connection to a peer that went silent. A timer raced
    // against every wait costs more than half of a local round trip.
    auto [ec] = co_await socket_.async_wait(type, asio::as_tuple(asio::use_awaitable));
    if (ec) fail("socket wait failed: " + ec.message());
    co_return;
  }
  asio::steady_timer timer(co_await asio::this_coro::executor, deadline);
  std::variant<std::monostate, std::monostate> outcome;
  try {
    outcome = co_await (socket_.async_wait(type, asio::use_awaitable) || timer.async_wait(asio::use_awaitable));
  } catch (const boost::system::system_error& e) {
    fail(std::string("socket wait failed: ") + e.what());
  }
  // A statement cut off mid-way leaves the protocol state unknown: never reuse.
  if (outcome.index() == 1) fail("deadline exceeded");
}

asio::awaitable<void> Connection::connect(const std::string& conninfo, Clock::time_point deadline) {
  conn_ = PQconnectStart(conninfo.c_str());
  if (conn_ == nullptr) throw DependencyUnavailable(kDependency, "out of memory");
  if (PQstatus(conn_) == CONNECTION_BAD) fail("connect failed");
  guard_deadlines_ = true;
  auto state = PGRES_POLLING_WRITING;
  while (state != PGRES_POLLING_OK) {
    if (state == PGRES_POLLING_FAILED) fail("connect failed");
    bind_socket();  // libpq may switch sockets between attempts (several hosts)
    co_await wait(state == PGRES_POLLING_READING ? Wait::read : Wait::write, deadline);
    state = PQconnectPoll(conn_);
  }
  guard_deadlines_ = false;
  if (PQsetnonblocking(conn_, 1) != 0) fail("cannot switch to non-blocking mode");
  // Server notices ("already exists, skipping") go to the debug log, not to stderr.
  PQsetNoticeProcessor(
      conn_,
      [](void*, const char* message) {
        log::debug("postgres notice", {{"notice", message}});
      },
      nullptr);
  bind_socket();
}

asio::awaitable<void> Connection::flush(Clock::time_point deadline) {
  for (;;) {
    const int r = PQflush(conn_);
    if (r == 0) co_return;
    if (r < 0) fail("send failed");
    co_await wait(Wait::write, deadline);
  }
}

asio::awaitable<pg_result*> Connection::next_result(Clock::time_point deadline) {
  while (PQisBusy(conn_) != 0) {
    co_await wait(Wait::read, deadline);
    if (PQconsumeInput(conn_) == 0) fail("receive failed");
  }
  co_return PQgetResult(conn_);
}

asio::awaitable<std::vector<Result>> Connection::collect(std::size_t expected, bool pipeline,
                                                         Clock::time_point deadline) {
  std::vector<Result> out;
  out.reserve(expected);
  std::optional<Error> first_error;

  // One statement's results end with a null result; keep the last real one.
  for (std::size_t i = 0; i < expected; ++i) {
    Result kept;
    while (PGresult* r = co_await next_result(deadline)) {
      const auto status = PQresultStatus(r);
      if (status == PGRES_FATAL_ERROR && !first_error) {
        auto state = field(r, PG_DIAG_SQLSTATE);
        auto message = field(r, PG_DIAG_MESSAGE_PRIMARY);
        if (connection_lost(state)) {
          PQclear(r);
          fail("server ended the session (" + state + ")");
        }
        first_error.emplace(state, message, field(r, PG_DIAG_CONSTRAINT_NAME));
      }
      kept = Result(r);
    }
    if (!pipeline && PQstatus(conn_) != CONNECTION_OK) fail("connection lost");
    out.push_back(std::move(kept));
  }
  if (pipeline) {
    PGresult* sync = co_await next_result(deadline);
    const bool ok = sync != nullptr && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
    if (sync) PQclear(sync);
    if (!ok) fail("pipeline out of step");
  }
  if (first_error) throw *first_error;
  co_return out;
}

asio::awaitable<void> Connection::prepare(const std::string& name, std::string_view sql, Clock::time_point deadline) {
  const std::string text(sql);
  if (PQsendPrepare(conn_, name.c_str(), text.c_str(), 0, nullptr) == 0) fail("prepare failed");
  co_await flush(deadline);
  co_await collect(1, false, deadline);
  prepared_.insert(name);
}

namespace {

struct ParamArrays {
  std::vector<const char*> values;
  explicit ParamArrays(const Params& params) {
    values.reserve(params.size());
    for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  }
};

}  // namespace

asio::awaitable<Result> Connection::query(std::string_view sql, const Params& params, Clock::time_point deadline) {
  const auto name = statement_name(sql);
  if (!prepared_.contains(name)) co_await prepare(name, sql, deadline);
  ParamArrays arrays(params);
  if (PQsendQueryPrepared(conn_, name.c_str(), static_cast<int>(params.size()), arrays.values.data(), nullptr, nullptr,
                          0) == 0) {
    fail("send failed");
  }
  co_await flush(deadline);
  auto results = co_await collect(1, false, deadline);
  co_return std::move(results.front());
}

asio::awaitable<std::vector<Result>> Connection::pipeline(const std::vector<Statement>& statements,
                                                          Clock::time_point deadline) {
  std::vector<std::string> names;
  names.reserve(statements.size());
  for (const auto& s : statements) {
    names.push_back(statement_name(s.sql));
    if (!prepared_.contains(names.back())) co_await prepare(names.back(), s.sql, deadline);
  }
  if (PQenterPipelineMode(conn_) == 0) fail("cannot enter pipeline mode");
  for (std::size_t i = 0; i < statements.size(); ++i) {
    ParamArrays arrays(statements[i].params);
    if (PQsendQueryPrepared(conn_, names[i].c_str(), static_cast<int>(statements[i].params.size()),
                            arrays.values.data(), nullptr, nullptr, 0) == 0) {
      fail("send failed");
    }
  }
  if (PQpipelineSync(conn_) == 0) fail("pipeline sync failed");
  co_await flush(deadline);
  std::vector<Result> results;
  std::exception_ptr error;
  try {
    results = co_await collect(statements.size(), true, deadline);
  } catch (const Error&) {
    error = std::current_exception();  // every result was drained: the connection is fine
  }
  if (PQexitPipelineMode(conn_) == 0) fail("cannot leave pipeline mode");
  if (error) std::rethrow_exception(error);
  co_return results;
}

asio::awaitable<void> Connection::execute_script(std::string_view sql, Clock::time_point deadline) {
  const std::string text(sql);
  if (PQsendQuery(conn_, text.c_str()) == 0) fail("send failed");
  co_await flush(deadline);
  // A script yields one result per statement and then null: collect them as one.
  co_await collect(1, false, deadline);
}

asio::awaitable<std::vector<Notification>> Connection::wait_notifications(Clock::time_point deadline) {
  std::vector<Notification> out;
  auto drain = [&] {
    if (PQconsumeInput(conn_) == 0) fail("receive failed");
    while (PGnotify* n = PQnotifies(conn_)) {
      out.push_back({n->relname, n->extra});
      PQfreemem(n);
    }
  };
  drain();
  if (!out.empty()) co_return out;
  asio::steady_timer timer(co_await asio::this_coro::executor, deadline);
  std::variant<std::monostate, std::monostate> outcome;
  try {
    outcome = co_await (socket_.async_wait(asio::posix::stream_descriptor::wait_read, asio::use_awaitable) ||
                        timer.async_wait(asio::use_awaitable));
  } catch (const boost::system::system_error& e) {
    fail(std::string("socket wait failed: ") + e.what());
  }
  if (outcome.index() == 0) drain();
  co_return out;
}

}  // namespace nimbus::pg
