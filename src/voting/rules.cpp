#include "voting/rules.hpp"

#include <algorithm>
#include <set>

#include "core/ids.hpp"

namespace nimbus::voting {

namespace json = boost::json;

namespace {

std::optional<std::string> text(const json::object& body, std::string_view name) {
  const auto* v = body.if_contains(name);
  if (!v || !v->is_string()) return std::nullopt;
  return std::string(v->as_string());
}

bool blank(std::string_view s) {
  return s.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

// RFC 3339 date-time: 2030-01-02T03:04:05[.fraction](Z|+hh:mm|-hh:mm). PostgreSQL alone
// would also take "tomorrow", "epoch" or "infinity".
bool rfc3339(std::string_view t) {
  auto digits = [&t](std::size_t from, std::size_t n) {
    if (t.size() < from + n) return false;
    for (std::size_t k = from; k < from + n; ++k) {
      if (t[k] < '0' || t[k] > '9') return false;
    }
    return true;
  };
  if (t.size() < 20 || !digits(0, 4) || t[4] != '-' || !digits(5, 2) || t[7] != '-' || !digits(8, 2) ||
      (t[10] != 'T' && t[10] != 't') || !digits(11, 2) || t[13] != ':' || !digits(14, 2) || t[16] != ':' ||
      !digits(17, 2)) {
    return false;
  }
  std::size_t i = 19;
  if (t[i] == '.') {
    const auto start = ++i;
    while (i < t.size() && t[i] >= '0' && t[i] <= '9') ++i;
    if (i == start) return false;
  }
  if (i < t.size() && (t[i] == 'Z' || t[i] == 'z')) return i + 1 == t.size();
  return i + 6 == t.size() && (t[i] == '+' || t[i] == '-') && digits(i + 1, 2) && t[i + 3] == ':' && digits(i + 4, 2);
}

}  // namespace

std::optional<Visibility> parse_visibility(std::string_view t) {
  if (t == "always") return Visibility::always;
  if (t == "after_vote") return Visibility::after_vote;
  if (t == "after_close") return Visibility::after_close;
  return std::nullopt;
}

bool results_visible(Visibility v, bool voted, bool closed, bool owner) {
  if (owner) return true;
  switch (v) {
    case Visibility::always:
      return true;
    case Visibility::after_vote:
      return voted || closed;
    case Visibility::after_close:
      return closed;
  }
  return false;
}

std::variant<NewPoll, RuleError> parse_new_poll(const json::object& body) {
  NewPoll p;
  auto title = text(body, "title");
  if (!title || blank(*title) || title->size() > 200) {
    return RuleError{"invalid_title", "title is a string of 1 to 200 characters."};
  }
  p.title = *title;
  if (const auto* d = body.if_contains("description"); d && !d->is_null()) {
    if (!d->is_string() || d->as_string().size() > 2000) {
      return RuleError{"invalid_description", "description is a string of at most 2000 characters."};
    }
    p.description = std::string(d->as_string());
  }
  const auto* options = body.if_contains("options");
  if (!options || !options->is_array() || options->as_array().size() < 2 || options->as_array().size() > 20) {
    return RuleError{"invalid_options", "options is an array of 2 to 20 strings."};
  }
  std::set<std::string> seen;
  for (const auto& o : options->as_array()) {
    if (!o.is_string() || blank(o.as_string()) || o.as_string().size() > 200) {
      return RuleError{"invalid_options", "each option is a string of 1 to 200 characters."};
    }
    std::string t(o.as_string());
    if (!seen.insert(t).second) return RuleError{"invalid_options", "options must be distinct."};
    p.options.push_back(std::move(t));
  }
  if (const auto* m = body.if_contains("max_choices"); m && !m->is_null()) {
    if (!m->is_int64() || m->as_int64() < 1 || m->as_int64() > static_cast<std::int64_t>(p.options.size())) {
      return RuleError{"invalid_max_choices", "max_choices is an integer from 1 to the number of options."};
    }
    p.max_choices = static_cast<int>(m->as_int64());
  }
  for (const char* name : {"opens_at", "closes_at"}) {
    if (const auto* t = body.if_contains(name); t && !t->is_null()) {
      if (!t->is_string() || t->as_string().size() > 40 || !rfc3339(t->as_string())) {
        return RuleError{"invalid_time", std::string(name) + " is an RFC 3339 timestamp."};
      }
      (std::string_view(name) == "opens_at" ? p.opens_at : p.closes_at) = std::string(t->as_string());
    }
  }
  if (auto v = text(body, "results_visibility")) {
    if (!parse_visibility(*v)) {
      return RuleError{"invalid_results_visibility", "results_visibility is always, after_vote or after_close."};
    }
    p.results_visibility = *v;
  } else if (body.contains("results_visibility")) {
    return RuleError{"invalid_results_visibility", "results_visibility is always, after_vote or after_close."};
  }
  return p;
}

std::variant<std::vector<std::string>, RuleError> parse_selection(const json::object& body) {
  const auto* ids = body.if_contains("option_ids");
  if (!ids || !ids->is_array() || ids->as_array().empty() || ids->as_array().size() > 20) {
    return RuleError{"invalid_options", "option_ids is an array of 1 to 20 option ids."};
  }
  std::vector<std::string> out;
  for (const auto& id : ids->as_array()) {
    if (!id.is_string() || !ids::is_uuid(id.as_string())) {
      return RuleError{"invalid_options", "each option id is a UUID string."};
    }
    out.emplace_back(id.as_string());
  }
  std::sort(out.begin(), out.end());
  if (std::adjacent_find(out.begin(), out.end()) != out.end()) {
    return RuleError{"invalid_options", "option_ids must be distinct."};
  }
  return out;
}

}  // namespace nimbus::voting
