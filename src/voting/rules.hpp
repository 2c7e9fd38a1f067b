// The rules of polls and ballots, as plain functions (no I/O), unit-tested.
#pragma once

#include <boost/json/object.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace nimbus::voting {

struct NewPoll {
  std::string title;
  std::optional<std::string> description;
  std::vector<std::string> options;
  int max_choices = 1;
  std::optional<std::string> opens_at, closes_at;  // RFC 3339, checked by PostgreSQL
  std::string results_visibility = "always";
};

struct RuleError {
  std::string code;    // stable, e.g. "invalid_options"
  std::string detail;  // for people
};

// Validates a create-poll body. Limits: title 1–200, description ≤ 2000, 2–20 options
// of 1–200 characters, distinct; 1 ≤ max_choices ≤ number of options.
std::variant<NewPoll, RuleError> parse_new_poll(const boost::json::object& body);

// A ballot's selection: 1..max_choices distinct option ids (UUIDs), sorted so that the
// same selection in any order compares equal.
std::variant<std::vector<std::string>, RuleError> parse_selection(const boost::json::object& body);

enum class Visibility { always, after_vote, after_close };
std::optional<Visibility> parse_visibility(std::string_view text);
bool results_visible(Visibility v, bool voted, bool closed, bool owner);

}  // namespace nimbus::voting
