// Query results and parameters in text format, and the errors of the PostgreSQL client.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

struct pg_result;

namespace nimbus::pg {

// A statement the server refused: constraint violations, syntax errors, serialization
// failures. `sqlstate` lets a repository turn the expected ones into domain outcomes.
class Error : public std::runtime_error {
 public:
  Error(std::string sqlstate, const std::string& message, std::string constraint = {})
      : std::runtime_error(message), sqlstate_(std::move(sqlstate)), constraint_(std::move(constraint)) {}
  const std::string& sqlstate() const { return sqlstate_; }
  const std::string& constraint() const { return constraint_; }
  bool unique_violation() const { return sqlstate_ == "23505"; }

 private:
  std::string sqlstate_;
  std::string constraint_;
};

// Parameters are sent in text format; nullopt is SQL NULL.
using Param = std::optional<std::string>;
using Params = std::vector<Param>;

inline Param param(std::nullopt_t) {
  return std::nullopt;
}
inline Param param(std::string_view v) {
  return std::string(v);
}
inline Param param(const std::string& v) {
  return v;
}
inline Param param(const char* v) {
  return std::string(v);
}
inline Param param(bool v) {
  return std::string(v ? "t" : "f");
}
template <typename T>
requires std::is_arithmetic_v<T> &&(!std::is_same_v<T, bool>)Param param(T v) {
  return std::to_string(v);
}
template <typename T>
Param param(const std::optional<T>& v) {
  return v ? param(*v) : std::nullopt;
}
template <typename... Ts>
Params params(const Ts&... values) {
  return Params{param(values)...};
}

// A PostgreSQL array literal in text format ({"a","b"}), every element quoted and
// escaped, for parameters like $1::text[] or $1::uuid[].
std::string array_literal(const std::vector<std::string>& items);

class Result {
 public:
  Result() = default;
  explicit Result(pg_result* res);

  int rows() const;
  int columns() const;
  bool is_null(int row, int col) const;
  std::string_view get(int row, int col) const;
  std::int64_t get_int(int row, int col) const;
  bool get_bool(int row, int col) const;
  std::optional<std::string> get_optional(int row, int col) const;
  // Rows touched by INSERT/UPDATE/DELETE.
  std::int64_t affected() const;

 private:
  std::shared_ptr<pg_result> res_;
};

}  // namespace nimbus::pg
