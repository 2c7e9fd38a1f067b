#include "voting/service.hpp"

#include <boost/json/parse.hpp>

#include "core/ids.hpp"

namespace nimbus::voting {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

#define NIMBUS_TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

constexpr std::string_view kCreate = R"(
WITH p AS (
  INSERT INTO polls (id, owner_id, title, description, max_choices, results_visibility, opens_at, closes_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7::timestamptz, $8::timestamptz) RETURNING id)
INSERT INTO poll_options (poll_id, id, position, text)
SELECT (SELECT id FROM p), u.id, u.pos, u.text
  FROM unnest($9::uuid[], $10::text[]) WITH ORDINALITY AS u(id, text, pos))";

const std::string kPollColumns =
    "p.id, p.owner_id, p.title, p.description, p.max_choices, p.results_visibility, " NIMBUS_TS(
        "p.opens_at") ", " NIMBUS_TS("p.closes_at") ", " NIMBUS_TS("p.closed_at") ", " NIMBUS_TS("p.created_at") R"(,
       CASE WHEN p.closed_at IS NOT NULL OR (p.closes_at IS NOT NULL AND p.closes_at <= now()) THEN 'closed'
            WHEN p.opens_at IS NOT NULL AND p.opens_at > now() THEN 'scheduled' ELSE 'open' END,
       (SELECT json_agg(json_build_object('id', o.id, 'text', o.text) ORDER BY o.position)
          FROM poll_options o WHERE o.poll_id = p.id))";

const std::string kGet = "SELECT " + kPollColumns + " FROM polls p WHERE p.id = $1";

// Keyset pagination, newest first; the cursor is the last poll of the previous page.
const std::string kList = "SELECT " + kPollColumns + R"( FROM polls p
 WHERE ($1::text = 'all'
        OR ($1::text = 'open' AND p.closed_at IS NULL AND (p.closes_at IS NULL OR p.closes_at > now()))
        OR ($1::text = 'closed' AND (p.closed_at IS NOT NULL OR (p.closes_at IS NOT NULL AND p.closes_at <= now()))))
   AND ($2::uuid IS NULL OR p.owner_id = $2::uuid)
   AND ($3::uuid IS NULL OR (p.created_at, p.id) < (SELECT c.created_at, c.id FROM polls c WHERE c.id = $3::uuid))
 ORDER BY p.created_at DESC, p.id DESC
 LIMIT $4)";

// One statement, one round trip: is the poll there, is it open, is the selection within
// max_choices, then the ballot (ON CONFLICT: someone — maybe this same client on a
// retry — voted first) and its choices.
constexpr std::string_view kVote = R"(
WITH poll AS (
  SELECT id, max_choices,
         closed_at IS NULL AND (opens_at IS NULL OR opens_at <= now())
                           AND (closes_at IS NULL OR closes_at > now()) AS open
    FROM polls WHERE id = $1),
b AS (
  INSERT INTO ballots (poll_id, user_id, option_ids)
  SELECT id, $2, $3::uuid[] FROM poll WHERE open AND cardinality($3::uuid[]) <= max_choices
  ON CONFLICT (poll_id, user_id) DO NOTHING
  RETURNING poll_id),
c AS (
  INSERT INTO ballot_choices (poll_id, user_id, option_id)
  SELECT $1, $2, unnest($3::uuid[]) FROM b)
SELECT (SELECT count(*) FROM poll), coalesce((SELECT open FROM poll), false),
       coalesce((SELECT cardinality($3::uuid[]) <= max_choices FROM poll), false),
       (SELECT count(*) FROM b),
       (SELECT option_ids::text FROM ballots WHERE poll_id = $1 AND user_id = $2))";

constexpr std::string_view kMyBallot = "SELECT option_ids::text FROM ballots WHERE poll_id = $1 AND user_id = $2";
constexpr std::string_view kOwner = "SELECT owner_id FROM polls WHERE id = $1";
constexpr std::string_view kClose = "UPDATE polls SET closed_at = coalesce(closed_at, now()) WHERE id = $1";
constexpr std::string_view kDelete = "DELETE FROM polls WHERE id = $1";
constexpr std::string_view kCounts = R"(
SELECT o.id, o.text, count(c.option_id)
  FROM poll_options o
  LEFT JOIN ballot_choices c ON c.poll_id = o.poll_id AND c.option_id = o.id
 WHERE o.poll_id = $1
 GROUP BY o.id, o.text, o.position
 ORDER BY o.position)";
constexpr std::string_view kVisibility = R"(
SELECT results_visibility, owner_id = $2,
       closed_at IS NOT NULL OR (closes_at IS NOT NULL AND closes_at <= now()),
       EXISTS (SELECT 1 FROM ballots WHERE poll_id = $1 AND user_id = $2),
       (SELECT count(*) FROM ballots WHERE poll_id = $1)
  FROM polls WHERE id = $1)";

#undef NIMBUS_TS

json::value nullable(const pg::Result& r, int row, int col) {
  if (r.is_null(row, col)) return nullptr;
  return json::string(r.get(row, col));
}

json::object poll_json(const pg::Result& r, int i) {
  return {{"id", r.get(i, 0)},
          {"owner_id", r.get(i, 1)},
          {"title", r.get(i, 2)},
          {"description", nullable(r, i, 3)},
          {"max_choices", r.get_int(i, 4)},
          {"results_visibility", r.get(i, 5)},
          {"opens_at", nullable(r, i, 6)},
          {"closes_at", nullable(r, i, 7)},
          {"closed_at", nullable(r, i, 8)},
          {"created_at", r.get(i, 9)},
          {"status", r.get(i, 10)},
          {"options", json::parse(r.get(i, 11))}};
}

// "{a,b}" (PostgreSQL's text form of uuid[]) → ids.
std::vector<std::string> parse_uuid_array(std::string_view text) {
  std::vector<std::string> out;
  if (text.size() < 2) return out;
  text = text.substr(1, text.size() - 2);
  while (!text.empty()) {
    auto comma = text.find(',');
    out.emplace_back(text.substr(0, comma));
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

}  // namespace

asio::awaitable<json::object> Service::create(std::string owner_id, NewPoll poll) {
  const auto id = ids::uuid_v7();
  std::vector<std::string> option_ids;
  for (std::size_t i = 0; i < poll.options.size(); ++i) option_ids.push_back(ids::uuid_v7());
  {
    auto db = co_await pg_->acquire();
    co_await db.query(kCreate, pg::params(id, owner_id, poll.title, poll.description, poll.max_choices,
                                          poll.results_visibility, poll.opens_at, poll.closes_at,
                                          pg::array_literal(option_ids), pg::array_literal(poll.options)));
  }
  auto created = co_await get(id);
  co_return std::move(*created);
}

asio::awaitable<std::optional<json::object>> Service::get(std::string poll_id) {
  auto db = co_await pg_->acquire();
  auto r = co_await db.query(kGet, pg::params(poll_id));
  if (r.rows() == 0) co_return std::nullopt;
  co_return poll_json(r, 0);
}

asio::awaitable<Page> Service::list(std::string status, std::optional<std::string> owner_id,
                                    std::optional<std::string> after, int limit) {
  auto db = co_await pg_->acquire();
  auto r = co_await db.query(kList, pg::params(status, owner_id, after, limit + 1));
  Page page;
  const int n = std::min(r.rows(), limit);
  for (int i = 0; i < n; ++i) page.items.push_back(poll_json(r, i));
  if (r.rows() > limit) page.next_after = std::string(r.get(limit - 1, 0));
  co_return page;
}

asio::awaitable<OwnerAction> Service::as_owner(std::string poll_id, std::string user_id, std::string_view sql) {
  auto db = co_await pg_->acquire();
  auto owner = co_await db.query(kOwner, pg::params(poll_id));
  if (owner.rows() == 0) co_return OwnerAction::not_found;
  if (owner.get(0, 0) != user_id) co_return OwnerAction::forbidden;
  co_await db.query(sql, pg::params(poll_id));
  co_return OwnerAction::done;
}

asio::awaitable<OwnerAction> Service::close(std::string poll_id, std::string user_id) {
  return as_owner(std::move(poll_id), std::move(user_id), kClose);
}

asio::awaitable<OwnerAction> Service::remove(std::string poll_id, std::string user_id) {
  return as_owner(std::move(poll_id), std::move(user_id), kDelete);
}

asio::awaitable<VoteResult> Service::vote(std::string poll_id, std::string user_id,
                                          std::vector<std::string> option_ids) {
  auto db = co_await pg_->acquire();
  pg::Result r;
  try {
    r = co_await db.query(kVote, pg::params(poll_id, user_id, pg::array_literal(option_ids)));
  } catch (const pg::Error& e) {
    // 23503: an option of another poll (or none); 23505 cannot happen (ids are distinct).
    if (e.sqlstate() != "23503") throw;
    r = pg::Result();
  }
  if (r.rows() == 0) co_return VoteResult{VoteOutcome::invalid_options, {}};
  if (r.get_int(0, 0) == 0) co_return VoteResult{VoteOutcome::not_found, {}};
  if (r.get_int(0, 3) == 1) co_return VoteResult{VoteOutcome::created, option_ids};
  if (!r.is_null(0, 4)) {
    auto stored = parse_uuid_array(r.get(0, 4));
    co_return VoteResult{stored == option_ids ? VoteOutcome::same_again : VoteOutcome::already_voted, stored};
  }
  if (!r.get_bool(0, 1)) co_return VoteResult{VoteOutcome::poll_closed, {}};
  if (!r.get_bool(0, 2)) co_return VoteResult{VoteOutcome::invalid_options, {}};  // over max_choices
  // Open, within max_choices, not inserted, yet no ballot in our snapshot: a concurrent
  // vote of this user committed after the statement began. Read it with a new snapshot.
  auto again = co_await db.query(kMyBallot, pg::params(poll_id, user_id));
  if (again.rows() == 0) throw std::runtime_error("ballot conflict without a ballot");
  auto stored = parse_uuid_array(again.get(0, 0));
  co_return VoteResult{stored == option_ids ? VoteOutcome::same_again : VoteOutcome::already_voted, stored};
}

asio::awaitable<std::optional<std::vector<std::string>>> Service::my_ballot(std::string poll_id, std::string user_id) {
  auto db = co_await pg_->acquire();
  auto r = co_await db.query(kMyBallot, pg::params(poll_id, user_id));
  if (r.rows() == 0) co_return std::nullopt;
  co_return parse_uuid_array(r.get(0, 0));
}

asio::awaitable<Service::Results> Service::results(std::string poll_id, std::string user_id) {
  auto db = co_await pg_->acquire();
  auto v = co_await db.query(kVisibility, pg::params(poll_id, user_id));
  if (v.rows() == 0) co_return Results{};
  const auto visibility = parse_visibility(v.get(0, 0)).value_or(Visibility::always);
  const bool closed = v.get_bool(0, 2);
  if (!results_visible(visibility, v.get_bool(0, 3), closed, v.get_bool(0, 1))) co_return Results{{}, true};
  auto counts = co_await db.query(kCounts, pg::params(poll_id));
  json::array options;
  for (int i = 0; i < counts.rows(); ++i) {
    options.push_back(
        json::object{{"id", counts.get(i, 0)}, {"text", counts.get(i, 1)}, {"votes", counts.get_int(i, 2)}});
  }
  json::object body{
      {"poll_id", poll_id}, {"total_votes", v.get_int(0, 4)}, {"options", std::move(options)}, {"closed", closed}};
  co_return Results{std::move(body), false};
}

}  // namespace nimbus::voting
