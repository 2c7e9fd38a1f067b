#include "images/multipart.hpp"

#include <algorithm>

namespace nimbus::images {

// The body is untrusted bytes: headers may hold any octet (>= 0x80 included), so
// case folding is ASCII-only and never goes through <cctype>'s locale tables. Every
// decision other than need_more depends only on the bytes already seen, so reading
// more never changes it.

namespace {

// A preamble before the first delimiter is allowed (RFC 2046) but never sent by real
// clients beyond a line or two.
constexpr std::size_t kMaxPreamble = 4096;

char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return ascii_lower(x) == ascii_lower(y); });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The parameters after a header's first ';' (`; name="value"` or `; name=value`),
// split where no quoted string is open. A quoted value may escape a character with
// '\'. nullopt when `wanted` is absent or its quoted value is not closed.
std::optional<std::string> parameter(std::string_view header, std::string_view wanted) {
  std::size_t at = header.find(';');
  while (at != std::string_view::npos && at < header.size()) {
    ++at;  // past ';'
    const auto eq = header.find('=', at);
    const auto semi = header.find(';', at);
    if (eq == std::string_view::npos || (semi != std::string_view::npos && semi < eq)) {
      at = semi;  // a parameter without a value
      continue;
    }
    const auto name = trim(header.substr(at, eq - at));
    std::size_t v = eq + 1;
    while (v < header.size() && (header[v] == ' ' || header[v] == '\t')) ++v;
    std::string value;
    if (v < header.size() && header[v] == '"') {
      bool closed = false;
      for (++v; v < header.size(); ++v) {
        if (header[v] == '\\' && v + 1 < header.size()) {
          value.push_back(header[++v]);
        } else if (header[v] == '"') {
          closed = true;
          ++v;
          break;
        } else {
          value.push_back(header[v]);
        }
      }
      if (!closed) return std::nullopt;
      at = header.find(';', v);
    } else {
      at = header.find(';', v);
      value = std::string(trim(header.substr(v, at == std::string_view::npos ? std::string_view::npos : at - v)));
    }
    if (iequals(name, wanted)) return value;
  }
  return std::nullopt;
}

// RFC 2046 §5.1.1: 1 to 70 of these, not ending with a space.
bool valid_boundary(std::string_view b) {
  if (b.empty() || b.size() > 70 || b.back() == ' ') return false;
  return std::all_of(b.begin(), b.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           std::string_view("'()+_,-./:=? ").find(c) != std::string_view::npos;
  });
}

}  // namespace

std::optional<std::string> form_boundary(std::string_view content_type) {
  if (!iequals(trim(content_type.substr(0, content_type.find(';'))), "multipart/form-data")) return std::nullopt;
  auto b = parameter(content_type, "boundary");
  if (!b || !valid_boundary(*b)) return std::nullopt;
  return b;
}

FilePart find_file_part(std::string_view body, std::string_view boundary) {
  const std::string dash = "--" + std::string(boundary);
  // The first delimiter starts the body or a line of the preamble.
  std::size_t at = 0;
  if (!body.starts_with(dash)) {
    if (body.size() < dash.size() && std::string_view(dash).starts_with(body)) return {};
    const auto line = body.find("\r\n" + dash);
    if (line == std::string_view::npos) {
      // Whatever follows, the delimiter would start past the preamble's limit.
      const bool too_far = body.size() > kMaxPreamble + dash.size() + 2;
      return {too_far ? FilePart::State::malformed : FilePart::State::need_more, 0};
    }
    if (line > kMaxPreamble) return {FilePart::State::malformed, 0};
    at = line + 2;
  }
  for (;;) {
    const auto line_end = at + dash.size();
    if (body.size() < line_end + 2) return {};
    if (body.substr(line_end, 2) == "--") return {FilePart::State::missing, 0};  // close delimiter
    if (body.substr(line_end, 2) != "\r\n") return {FilePart::State::malformed, 0};
    // The part's head: header lines up to an empty line (the first CRLF right after
    // the delimiter's when the part has no headers).
    const auto head_end = body.find("\r\n\r\n", line_end);
    if (head_end == std::string_view::npos) return {};
    bool is_file = false;
    for (auto line_at = line_end + 2; line_at < head_end + 2;) {
      const auto eol = body.find("\r\n", line_at);  // found: head_end + 2 ends the last line
      const auto line = body.substr(line_at, eol - line_at);
      const auto colon = line.find(':');
      if (colon != std::string_view::npos && iequals(trim(line.substr(0, colon)), "content-disposition")) {
        is_file = parameter(line.substr(colon + 1), "name") == std::optional<std::string>("file");
      }
      line_at = eol + 2;
    }
    const auto data = head_end + 4;
    if (is_file) return {FilePart::State::found, data};
    // Another field: skip to the next delimiter.
    const auto next = body.find("\r\n" + dash, data);
    if (next == std::string_view::npos) return {};
    at = next + 2;
  }
}

std::string closing_trailer(std::string_view boundary) {
  return "\r\n--" + std::string(boundary) + "--\r\n";
}

bool DelimiterScan::feed(std::string_view bytes) {
  if (found_) return true;
  carry_.append(bytes.data(), bytes.size());
  if (carry_.find(delimiter_) != std::string::npos) return found_ = true;
  if (carry_.size() >= delimiter_.size()) carry_.erase(0, carry_.size() - (delimiter_.size() - 1));
  return false;
}

}  // namespace nimbus::images
