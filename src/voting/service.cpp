#include "voting/service.hpp"

#include <boost/json/parse.hpp>

#include "core/errors.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"

namespace nimbus::voting {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

// Polls whose facts an instance keeps (a few hundred bytes each).
constexpr std::size_t kRememberedPolls = 100'000;

#define NIMBUS_TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

// Returns the new poll's id, or NULL when the owner already has a poll under this
// idempotency key (then nothing is inserted).
constexpr std::string_view kCreate = R"(
WITH p AS (
  INSERT INTO polls (id, owner_id, title, description, max_choices, results_visibility, opens_at, closes_at,
                     idempotency_key, request_fingerprint)
  VALUES ($1, $2, $3, $4, $5, $6, $7::timestamptz, $8::timestamptz, $11, decode($12, 'hex'))
  ON CONFLICT (owner_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
  RETURNING id),
o AS (
  INSERT INTO poll_options (poll_id, id, position, text)
  SELECT p.id, u.id, u.pos, u.text
    FROM p, unnest($9::uuid[], $10::text[]) WITH ORDINALITY AS u(id, text, pos))
SELECT (SELECT id FROM p))";
constexpr std::string_view kByIdempotencyKey =
    "SELECT id, encode(request_fingerprint, 'hex') FROM polls WHERE owner_id = $1 AND idempotency_key = $2";

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
        OR ($1::text = 'open' AND p.closed_at IS NULL AND (p.closes_at IS NULL OR p.closes_at > now())
            AND (p.opens_at IS NULL OR p.opens_at <= now()))
        OR ($1::text = 'closed' AND (p.closed_at IS NOT NULL OR (p.closes_at IS NOT NULL AND p.closes_at <= now()))))
   AND ($2::uuid IS NULL OR p.owner_id = $2::uuid)
   AND ($3::uuid IS NULL OR (p.created_at, p.id) < (SELECT c.created_at, c.id FROM polls c WHERE c.id = $3::uuid))
 ORDER BY p.created_at DESC, p.id DESC
 LIMIT $4)";

constexpr std::string_view kMyBallot =
    "SELECT array_to_string(option_ids, ',') FROM ballots WHERE poll_id = $1 AND user_id = $2";
constexpr std::string_view kOwner = "SELECT owner_id FROM polls WHERE id = $1";
constexpr std::string_view kClose = "UPDATE polls SET closed_at = coalesce(closed_at, now()) WHERE id = $1";
constexpr std::string_view kDelete = "DELETE FROM polls WHERE id = $1";
// What the results need besides the counts and never changes: who may see them, when
// the poll closes by itself, and the options' texts.
constexpr std::string_view kPollFacts = R"(
SELECT p.results_visibility, p.owner_id, (extract(epoch FROM p.closes_at) * 1000)::bigint,
       (SELECT json_agg(json_build_object('id', o.id, 'text', o.text) ORDER BY o.position)
          FROM poll_options o WHERE o.poll_id = p.id)
  FROM polls p WHERE p.id = $1)";

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

// Redis work after a committed change (its outcome, telling live streams): the change
// stands whatever Redis says, so a failure is logged, not answered. Its intent marker
// stays, sending readers to PostgreSQL, until the reconciler settles it.
asio::awaitable<void> best_effort(asio::awaitable<void> work, const std::string& poll_id) {
  try {
    co_await std::move(work);
  } catch (const std::exception& e) {
    log::warn("poll change not told to Redis", {{"poll_id", poll_id}, {"error", e.what()}});
  }
}

}  // namespace

asio::awaitable<Created> Service::create(std::string owner_id, NewPoll poll, std::optional<Idempotency> idempotency) {
  auto id = ids::uuid_v7();
  std::vector<std::string> option_ids;
  for (std::size_t i = 0; i < poll.options.size(); ++i) option_ids.push_back(ids::uuid_v7());
  std::optional<std::string> key, fingerprint;
  if (idempotency) {
    key = idempotency->key;
    fingerprint = idempotency->fingerprint;
  }
  {
    auto db = co_await pg_->acquire();
    auto r = co_await db.query(
        kCreate,
        pg::params(id, owner_id, poll.title, poll.description, poll.max_choices, poll.results_visibility, poll.opens_at,
                   poll.closes_at, pg::array_literal(option_ids), pg::array_literal(poll.options), key, fingerprint));
    if (r.is_null(0, 0)) {
      // Only an idempotency key's conflict inserts nothing.
      if (!key || !fingerprint) throw std::logic_error("poll insert skipped without an idempotency key");
      auto first = co_await db.query(kByIdempotencyKey, pg::params(owner_id, *key));
      if (first.rows() == 0) throw std::runtime_error("idempotency key conflict without a row");
      if (first.get(0, 1) != *fingerprint) co_return Created{CreateOutcome::key_reused, {}};
      auto existing = co_await get(std::string(first.get(0, 0)));
      if (!existing) co_return Created{CreateOutcome::gone, {}};  // deleted since
      co_return Created{CreateOutcome::replayed, std::move(*existing)};
    }
  }
  // The poll is committed: a Redis hiccup now must not turn into an error (a client
  // would retry and create a second poll). A tally that was not started is rebuilt,
  // complete, on its first read.
  try {
    co_await tally_->start(id);
  } catch (const std::exception& e) {
    log::warn("tally not started; first read rebuilds it", {{"poll_id", id}, {"error", e.what()}});
  }
  auto created = co_await get(id);
  // Deleted by its owner in the moment since the commit: nothing left to show.
  if (!created) co_return Created{CreateOutcome::gone, {}};
  co_return Created{CreateOutcome::created, std::move(*created)};
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

asio::awaitable<OwnerAction> Service::change_as_owner(std::string poll_id, std::string user_id, std::string_view sql) {
  {
    auto db = co_await pg_->acquire();
    auto owner = co_await db.query(kOwner, pg::params(poll_id));
    if (owner.rows() == 0) co_return OwnerAction::not_found;
    if (owner.get(0, 0) != user_id) co_return OwnerAction::forbidden;
  }
  // No marker, no change: a change every instance cannot see at once is refused (503).
  co_await tally_->begin_change(poll_id);
  auto db = co_await pg_->acquire();
  co_await db.query(sql, pg::params(poll_id));
  co_return OwnerAction::done;
}

asio::awaitable<OwnerAction> Service::close(std::string poll_id, std::string user_id) {
  auto done = co_await change_as_owner(poll_id, std::move(user_id), kClose);
  if (done == OwnerAction::done) co_await best_effort(tally_->closed(poll_id), poll_id);
  co_return done;
}

asio::awaitable<OwnerAction> Service::remove(std::string poll_id, std::string user_id) {
  auto done = co_await change_as_owner(poll_id, std::move(user_id), kDelete);
  if (done == OwnerAction::done) co_await best_effort(tally_->deleted(poll_id), poll_id);
  co_return done;
}

asio::awaitable<VoteResult> Service::vote(std::string poll_id, std::string user_id,
                                          std::vector<std::string> option_ids) {
  return box_->cast(Ballot{std::move(poll_id), std::move(user_id), std::move(option_ids)});
}

asio::awaitable<std::optional<std::vector<std::string>>> Service::my_ballot(std::string poll_id, std::string user_id) {
  std::optional<std::vector<std::string>> known;
  try {
    known = co_await tally_->ballot_of(poll_id, user_id);
  } catch (const DependencyUnavailable&) {
    // Redis down: ask the truth.
  }
  if (known) co_return known;
  auto db = co_await pg_->acquire();
  auto r = co_await db.query(kMyBallot, pg::params(poll_id, user_id));
  if (r.rows() == 0) co_return std::nullopt;
  co_return split_ids(r.get(0, 0));
}

bool Service::PollFacts::closed(const Standing& standing, std::chrono::system_clock::time_point now) const {
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  return standing.closed_early || (closes_at_ms && *closes_at_ms <= now_ms);
}

asio::awaitable<std::shared_ptr<const Service::PollFacts>> Service::facts(const std::string& poll_id) {
  if (remember_facts_) {
    std::lock_guard lock(facts_mutex_);
    if (auto it = facts_.find(poll_id); it != facts_.end()) co_return it->second;
  }
  pg::Result r;
  {
    auto db = co_await pg_->acquire();
    r = co_await db.query(kPollFacts, pg::params(poll_id));
  }
  if (r.rows() == 0) co_return nullptr;
  auto f = std::make_shared<PollFacts>();
  f->visibility = parse_visibility(r.get(0, 0)).value_or(Visibility::always);
  f->owner_id = std::string(r.get(0, 1));
  if (!r.is_null(0, 2)) f->closes_at_ms = r.get_int(0, 2);
  f->results = ResultsBody(json::parse(r.get(0, 3)).as_array());
  if (remember_facts_) {
    std::lock_guard lock(facts_mutex_);
    // Bounded: an evicted poll only costs a query next time.
    if (facts_.size() >= kRememberedPolls) facts_.erase(facts_.begin());
    facts_.insert_or_assign(poll_id, f);
  }
  co_return f;
}

std::string Service::Current::results(const std::string& poll_id) const {
  return facts->results.render(poll_id, standing.counts.by_option, standing.counts.total, closed);
}

asio::awaitable<std::optional<Service::Current>> Service::current(std::string poll_id) {
  auto facts = co_await this->facts(poll_id);
  if (!facts) co_return std::nullopt;
  auto standing = co_await tally_->standing(poll_id);
  if (!standing.exists) co_return std::nullopt;
  const bool closed = facts->closed(standing, clock_->system_now());
  co_return Current{std::move(facts), std::move(standing), closed};
}

asio::awaitable<Service::Results> Service::results(std::string poll_id, std::string user_id,
                                                   const std::function<asio::awaitable<void>()>& before_own_read) {
  auto poll = co_await current(poll_id);
  if (!poll) co_return Results{};
  const auto& facts = *poll->facts;
  const bool owner = facts.owner_id == user_id;
  // Whether this user voted matters only for after_vote polls still open.
  bool voted = false;
  if (!results_visible(facts.visibility, false, poll->closed, owner)) {
    if (before_own_read) co_await before_own_read();
    auto mine = co_await my_ballot(poll_id, user_id);
    voted = mine.has_value();
  }
  if (!results_visible(facts.visibility, voted, poll->closed, owner)) co_return Results{{}, true};
  co_return Results{poll->results(poll_id), false};
}

asio::awaitable<Service::Results> Service::results(std::string poll_id, std::string user_id) {
  static const std::function<asio::awaitable<void>()> nothing_first;
  return results(std::move(poll_id), std::move(user_id), nothing_first);
}

asio::awaitable<std::optional<std::string>> Service::snapshot(std::string poll_id) {
  auto poll = co_await current(poll_id);
  if (!poll) co_return std::nullopt;
  co_return poll->results(poll_id);
}

}  // namespace nimbus::voting
