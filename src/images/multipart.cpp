#include "images/multipart.hpp"

#include <algorithm>
#include <cctype>

namespace nimbus::images {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

// The value of `name` in a header's parameters (`; name="value"` or `; name=value`).
std::optional<std::string> parameter(std::string_view header, std::string_view name) {
  const auto l = lower(header);
  std::size_t at = 0;
  while ((at = l.find(name, at)) != std::string::npos) {
    const bool starts = at > 0 && (l[at - 1] == ';' || l[at - 1] == ' ' || l[at - 1] == '\t');
    const auto eq = at + name.size();
    if (!starts || eq >= l.size() || l[eq] != '=') {
      at = eq;
      continue;
    }
    auto value = header.substr(eq + 1);
    if (!value.empty() && value.front() == '"') {
      auto close = value.find('"', 1);
      if (close == std::string_view::npos) return std::nullopt;
      return std::string(value.substr(1, close - 1));
    }
    auto end = value.find_first_of("; \t");
    return std::string(value.substr(0, end));
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> form_boundary(std::string_view content_type) {
  const auto type = lower(content_type.substr(0, content_type.find(';')));
  if (type.find("multipart/form-data") == std::string::npos) return std::nullopt;
  auto b = parameter(content_type, "boundary");
  // RFC 2046: 1 to 70 characters.
  if (!b || b->empty() || b->size() > 70) return std::nullopt;
  return b;
}

FilePart find_file_part(std::string_view body, std::string_view boundary) {
  const std::string dash = "--" + std::string(boundary);
  // The first delimiter may follow a preamble; later ones follow a CRLF.
  auto at = body.find(dash);
  if (at == std::string_view::npos)
    return {body.size() > 4096 ? FilePart::State::malformed : FilePart::State::need_more, 0};
  for (;;) {
    const auto line_end = at + dash.size();
    if (body.size() < line_end + 2) return {};
    if (body.substr(line_end, 2) == "--") return {FilePart::State::missing, 0};  // close delimiter
    if (body.substr(line_end, 2) != "\r\n") return {FilePart::State::malformed, 0};
    const auto head_start = line_end + 2;
    const auto head_end = body.find("\r\n\r\n", head_start);
    if (head_end == std::string_view::npos) return {};
    bool is_file = false;
    for (auto line_at = head_start; line_at < head_end;) {
      auto eol = body.find("\r\n", line_at);
      if (eol == std::string_view::npos || eol > head_end) eol = head_end;
      const auto line = body.substr(line_at, eol - line_at);
      if (lower(line.substr(0, line.find(':'))) == "content-disposition") {
        is_file = parameter(line, "name") == std::optional<std::string>("file");
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
