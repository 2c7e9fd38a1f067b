// The routing table: {method, path pattern, handler}, with path parameters.
//
// Patterns are literal segments and `{name}` captures (one whole segment each). The
// router tells "no such path" (404) apart from "path exists, wrong method" (405 +
// Allow). It is built once at start-up and read-only afterwards, so lookups from any
// I/O thread need no lock.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "http/message.hpp"

namespace nimbus::http {

using Handler = std::function<boost::asio::awaitable<Response>(Request&)>;

struct RouteOptions {
  // Largest request body this route accepts; 0 means the server default.
  std::size_t body_limit = 0;
  // The handler reads the body itself, piece by piece (Request::body_reader), instead
  // of receiving it whole: uploads stream through with bounded memory.
  bool stream_body = false;
};

struct Route {
  Method method;
  std::string pattern;
  Handler handler;
  RouteOptions options;
  std::size_t index = 0;  // position in the table, used as a metrics slot
  std::vector<std::string> segments;
};

struct RouteMatch {
  const Route* route = nullptr;
  std::vector<std::pair<std::string, std::string>> params;
};
struct PathNotFound {};
struct MethodNotAllowed {
  std::string allow;  // e.g. "GET, HEAD, POST"
};
using MatchResult = std::variant<RouteMatch, PathNotFound, MethodNotAllowed>;

class Router {
 public:
  // Throws std::invalid_argument on a malformed pattern or a duplicate route.
  void add(Method method, std::string pattern, Handler handler, RouteOptions options = {});

  // `path` is the decoded path without query. HEAD falls back to GET routes.
  MatchResult match(Method method, std::string_view path) const;

  const std::vector<Route>& routes() const { return routes_; }

 private:
  std::vector<Route> routes_;
};

// Splits "/a/b/" into {"a", "b", ""}; "/" into {""}.
std::vector<std::string_view> split_path(std::string_view path);

}  // namespace nimbus::http
