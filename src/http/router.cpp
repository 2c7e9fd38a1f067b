#include "http/router.hpp"

#include <stdexcept>

namespace nimbus::http {
namespace {

bool is_capture(std::string_view segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

bool matches(const Route& route, const std::vector<std::string_view>& parts,
             std::vector<std::pair<std::string, std::string>>* params) {
  if (route.segments.size() != parts.size()) return false;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const auto& seg = route.segments[i];
    if (is_capture(seg)) {
      if (parts[i].empty()) return false;
      if (params) params->emplace_back(seg.substr(1, seg.size() - 2), std::string(parts[i]));
    } else if (seg != parts[i]) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> parts;
  if (!path.empty() && path.front() == '/') path.remove_prefix(1);
  while (true) {
    auto slash = path.find('/');
    parts.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return parts;
}

void Router::add(Method method, std::string pattern, Handler handler, RouteOptions options) {
  if (pattern.empty() || pattern.front() != '/') throw std::invalid_argument("route pattern must start with /");
  Route route{method, pattern, std::move(handler), options, routes_.size(), {}};
  for (auto part : split_path(pattern)) {
    if (part.find_first_of("{}") != std::string_view::npos && !is_capture(part)) {
      throw std::invalid_argument("malformed capture in route pattern " + pattern);
    }
    route.segments.emplace_back(part);
  }
  for (const auto& existing : routes_) {
    if (existing.method == method && existing.segments == route.segments) {
      throw std::invalid_argument("duplicate route " + std::string(to_string(method)) + " " + pattern);
    }
  }
  routes_.push_back(std::move(route));
}

MatchResult Router::match(Method method, std::string_view path) const {
  auto parts = split_path(path);
  const Route* get_fallback = nullptr;
  std::string allow;
  for (const auto& route : routes_) {
    if (!matches(route, parts, nullptr)) continue;
    if (route.method == method || (method == Method::head && route.method == Method::get)) {
      if (route.method == method) {
        RouteMatch m{&route, {}};
        matches(route, parts, &m.params);
        return m;
      }
      get_fallback = &route;
    }
    if (!allow.empty()) allow += ", ";
    allow += to_string(route.method);
    if (route.method == Method::get) allow += ", HEAD";
  }
  if (get_fallback != nullptr) {
    RouteMatch m{get_fallback, {}};
    matches(*get_fallback, parts, &m.params);
    return m;
  }
  if (allow.empty()) return PathNotFound{};
  return MethodNotAllowed{allow};
}

}  // namespace nimbus::http
