#include "http/message.hpp"

#include <boost/url/decode_view.hpp>
#include <boost/url/parse_query.hpp>

#include "core/ids.hpp"

namespace nimbus::http {

std::string_view to_string(Method m) {
  switch (m) {
    case Method::get:
      return "GET";
    case Method::head:
      return "HEAD";
    case Method::post:
      return "POST";
    case Method::put:
      return "PUT";
    case Method::patch:
      return "PATCH";
    case Method::del:
      return "DELETE";
    case Method::options:
      return "OPTIONS";
    case Method::other:
      return "OTHER";
  }
  return "OTHER";
}

Method parse_method(std::string_view text) {
  if (text == "GET") return Method::get;
  if (text == "HEAD") return Method::head;
  if (text == "POST") return Method::post;
  if (text == "PUT") return Method::put;
  if (text == "PATCH") return Method::patch;
  if (text == "DELETE") return Method::del;
  if (text == "OPTIONS") return Method::options;
  return Method::other;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; };
           return lower(x) == lower(y);
         });
}

std::optional<std::string_view> Headers::get(std::string_view name) const {
  for (const auto& [k, v] : items_) {
    if (iequals(k, name)) return std::string_view(v);
  }
  return std::nullopt;
}

void Headers::set(std::string_view name, std::string value) {
  for (auto& [k, v] : items_) {
    if (iequals(k, name)) {
      v = std::move(value);
      return;
    }
  }
  items_.emplace_back(std::string(name), std::move(value));
}

std::string_view Request::param(std::string_view name) const {
  for (const auto& [k, v] : params) {
    if (k == name) return v;
  }
  return {};
}

std::optional<std::string> Request::uuid_param(std::string_view name) const {
  auto value = param(name);
  if (!ids::is_uuid(value)) return std::nullopt;
  return std::string(value);
}

std::optional<std::string> Request::query_param(std::string_view name) const {
  auto parsed = boost::urls::parse_query(query);
  if (!parsed) return std::nullopt;
  for (auto param : *parsed) {
    if (*param.key != name) continue;
    if (!param.has_value) return std::string();
    auto decoded = *param.value;
    return std::string(decoded.begin(), decoded.end());
  }
  return std::nullopt;
}

Response text(unsigned status, std::string body, std::string_view content_type) {
  Response r;
  r.status = status;
  r.headers.set("Content-Type", std::string(content_type));
  r.body = std::move(body);
  return r;
}

Response empty(unsigned status) {
  Response r;
  r.status = status;
  return r;
}

}  // namespace nimbus::http
