// Polls and ballots on PostgreSQL, the truth for "exactly one ballot per (poll, user)".
//
// A vote is one statement: it checks that the poll is open, inserts the ballot (the
// primary key refuses a second one under any concurrency) and its choices (a foreign
// key refuses options of other polls), and reports what happened — one round trip.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "core/clock.hpp"
#include "store/pg/pool.hpp"
#include "voting/ballot_box.hpp"
#include "voting/results_body.hpp"
#include "voting/rules.hpp"
#include "voting/tally.hpp"

namespace nimbus::voting {

enum class OwnerAction { done, not_found, forbidden };

// The client's Idempotency-Key for a creation, and a fingerprint (hex SHA-256) of what
// it asked for.
struct Idempotency {
  std::string key, fingerprint;
};
enum class CreateOutcome { created, replayed, key_reused, gone };
struct Created {
  CreateOutcome outcome;
  boost::json::object poll;  // created or replayed
};

struct Page {
  std::vector<boost::json::object> items;
  std::optional<std::string> next_after;  // id of the last item, when there is more
};

class Service {
 public:
  // `remember_facts`: whether this instance keeps what results need of a poll that
  // never changes after its creation (options, owner, visibility, opening and closing
  // times) — a pure function of the poll id, so no answer depends on it; what does
  // change (closed early, deleted) is read with the counts, every time (tally.hpp).
  // Off with NIMBUS_LOCAL_MEMO=0. Votes always check PostgreSQL. `clock` tells whether
  // a poll's closing time has passed.
  Service(std::shared_ptr<pg::Pool> pg, std::shared_ptr<Tally> tally, std::shared_ptr<BallotBox> box,
          bool remember_facts = true, std::shared_ptr<const core::Clock> clock = core::Clock::system())
      : pg_(std::move(pg)),
        tally_(std::move(tally)),
        box_(std::move(box)),
        remember_facts_(remember_facts),
        clock_(std::move(clock)) {}

  // With an idempotency key, a repeat of the same request returns the first poll; the
  // same key with another request is refused.
  boost::asio::awaitable<Created> create(std::string owner_id, NewPoll poll,
                                         std::optional<Idempotency> idempotency = std::nullopt);
  // The poll as the API shows it, or nullopt.
  boost::asio::awaitable<std::optional<boost::json::object>> get(std::string poll_id);
  // status: "open" | "closed" | "all"; owner_id: only that user's polls.
  boost::asio::awaitable<Page> list(std::string status, std::optional<std::string> owner_id,
                                    std::optional<std::string> after, int limit);
  boost::asio::awaitable<OwnerAction> close(std::string poll_id, std::string user_id);
  boost::asio::awaitable<OwnerAction> remove(std::string poll_id, std::string user_id);
  boost::asio::awaitable<VoteResult> vote(std::string poll_id, std::string user_id,
                                          std::vector<std::string> option_ids);
  // "Did I vote?": Redis first, PostgreSQL (the truth) when Redis does not know.
  boost::asio::awaitable<std::optional<std::vector<std::string>>> my_ballot(std::string poll_id, std::string user_id);
  // Exact counts (Redis tally, PostgreSQL when it is incomplete); `body` is empty when
  // the poll does not exist, `hidden` when its visibility rule hides the results from
  // this user.
  struct Results {
    std::optional<std::string> body;  // JSON
    bool hidden = false;
  };
  // `before_own_read`, when given, is awaited before anything of the user's own is read
  // (whether they voted, for an after_vote poll): see auth::authenticated_read.
  boost::asio::awaitable<Results> results(std::string poll_id, std::string user_id,
                                          const std::function<boost::asio::awaitable<void>()>& before_own_read);
  boost::asio::awaitable<Results> results(std::string poll_id, std::string user_id);
  // The results without the visibility check (for a live stream already allowed).
  boost::asio::awaitable<std::optional<std::string>> snapshot(std::string poll_id);

 private:
  // What never changes about a poll.
  struct PollFacts {
    Visibility visibility = Visibility::always;
    std::string owner_id;
    std::optional<std::int64_t> closes_at_ms;  // since the epoch
    ResultsBody results;                       // the options, rendered once
    bool closed(const Standing& standing, std::chrono::system_clock::time_point now) const;
  };
  // Shared, immutable: a remembered one copies a pointer, not the options.
  boost::asio::awaitable<std::shared_ptr<const PollFacts>> facts(const std::string& poll_id);
  struct Current {
    std::shared_ptr<const PollFacts> facts;
    Standing standing;
    bool closed = false;
    std::string results(const std::string& poll_id) const;  // the results body, rendered
  };
  // The poll as it is now, or nullopt when it does not exist.
  boost::asio::awaitable<std::optional<Current>> current(std::string poll_id);

  // Runs `sql` ($1 = poll id) if `user_id` owns the poll, marked as a change in Redis
  // first (tally.hpp).
  boost::asio::awaitable<OwnerAction> change_as_owner(std::string poll_id, std::string user_id, std::string_view sql);
  std::shared_ptr<pg::Pool> pg_;
  std::shared_ptr<Tally> tally_;
  std::shared_ptr<BallotBox> box_;
  bool remember_facts_;
  std::shared_ptr<const core::Clock> clock_;
  std::mutex facts_mutex_;
  std::unordered_map<std::string, std::shared_ptr<const PollFacts>> facts_;
};

}  // namespace nimbus::voting
