#include "store/pg/result.hpp"

#include <charconv>
#include <libpq-fe.h>

namespace nimbus::pg {

std::string array_literal(const std::vector<std::string>& items) {
  std::string out = "{";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    out += '"';
    for (char c : items[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

Result::Result(pg_result* res) : res_(res, PQclear) {}

int Result::rows() const {
  return res_ ? PQntuples(res_.get()) : 0;
}
int Result::columns() const {
  return res_ ? PQnfields(res_.get()) : 0;
}
bool Result::is_null(int row, int col) const {
  return PQgetisnull(res_.get(), row, col) != 0;
}

std::string_view Result::get(int row, int col) const {
  return {PQgetvalue(res_.get(), row, col), static_cast<std::size_t>(PQgetlength(res_.get(), row, col))};
}

std::int64_t Result::get_int(int row, int col) const {
  auto text = get(row, col);
  std::int64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || ptr != text.data() + text.size()) {
    throw std::runtime_error("column " + std::to_string(col) + " is not an integer");
  }
  return value;
}

bool Result::get_bool(int row, int col) const {
  return get(row, col) == "t";
}

std::optional<std::string> Result::get_optional(int row, int col) const {
  if (is_null(row, col)) return std::nullopt;
  return std::string(get(row, col));
}

std::int64_t Result::affected() const {
  const char* n = res_ ? PQcmdTuples(res_.get()) : "";
  std::int64_t value = 0;
  std::from_chars(n, n + std::char_traits<char>::length(n), value);
  return value;
}

}  // namespace nimbus::pg
