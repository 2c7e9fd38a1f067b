// The Redis side of voting: per poll, the ballots already counted and the counters,
// kept so that reads ("did I vote?", results, live updates) never scan PostgreSQL.
//
// PostgreSQL stays the truth. Redis is written only after a ballot is committed, and
// every write goes through one idempotent script: a ballot counts once, when its user
// first appears in the poll's ballot hash. So replaying ballots — after a crash between
// commit and count, after Redis lost its data, or all of them to rebuild — can never
// count one twice. Keys share a hash tag per poll, ready for Redis Cluster:
//   poll:{<id>}:ballots  hash user → "opt1,opt2"
//   poll:{<id>}:tally    hash option → votes, "_total", "_ready" (complete, built from PG),
//                        and the poll's one-way changes: "_closed" (closed early),
//                        "_deleted" (a tombstone), "_changing" (a change's intent marker)
//   poll:{<id>}:changed  pub/sub channel, a message per counted batch (the new total)
//   tally:active         sorted set poll → last time a vote was about to be written
//                        (the reconciler checks these polls)
//   tally:changing       sorted set poll → when a change's intent marker was written
//
// The hash is also where every instance learns, in the same HGETALL a results read
// already makes, whether a poll was closed early or deleted (docs/adr/0008): a change
// writes its marker first, then changes PostgreSQL, then records its outcome and clears
// the marker. A reader seeing a marker, or a hash not ready, asks PostgreSQL; so no
// reader sees a poll open (or present) after its close (or delete) was answered.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.hpp"
#include "store/pg/pool.hpp"
#include "store/redis/client.hpp"

namespace nimbus::voting {

struct Ballot {
  std::string poll_id, user_id;
  std::vector<std::string> option_ids;
};

struct Counts {
  std::map<std::string, std::int64_t> by_option;
  std::int64_t total = 0;
};

// What can change about a poll after its creation, as of now.
struct Standing {
  bool exists = true;
  bool closed_early = false;  // closed by its owner (a closing time is a fact of the poll)
  Counts counts;
};

std::string changed_channel(const std::string& poll_id);

class Tally : public std::enable_shared_from_this<Tally> {
 public:
  // `clock` dates the marks of mark_active (the reconciler's clock reads them).
  Tally(std::shared_ptr<redis::Client> redis, std::shared_ptr<pg::Pool> pg,
        std::shared_ptr<const core::Clock> clock = core::Clock::system())
      : redis_(std::move(redis)), pg_(std::move(pg)), clock_(std::move(clock)) {}

  // Counts committed ballots (any polls, any number), one round trip. Ballots already
  // counted are skipped; returns how many were new. Throws when Redis is unreachable.
  boost::asio::awaitable<std::int64_t> count(const std::vector<Ballot>& ballots);
  // Notes polls that are about to receive ballots (before the commit), so that the
  // reconciler checks them even if the writer dies before counting.
  boost::asio::awaitable<void> mark_active(const std::vector<std::string>& poll_ids);
  // Polls marked since `since` (seconds since the epoch); forgets older marks.
  boost::asio::awaitable<std::vector<std::string>> active_since(std::int64_t since);
  // The counted total, or nullopt when the tally is incomplete (being rebuilt).
  boost::asio::awaitable<std::optional<std::int64_t>> counted_total(std::string poll_id);
  // A new poll has nothing to rebuild: its tally starts complete.
  boost::asio::awaitable<void> start(const std::string& poll_id);
  // The stored selection if Redis knows it; nullopt means "ask PostgreSQL".
  boost::asio::awaitable<std::optional<std::vector<std::string>>> ballot_of(std::string poll_id, std::string user_id);
  // The poll's exact standing. From Redis when its tally is complete and no change is
  // under way; otherwise from PostgreSQL (after starting a rebuild of an incomplete
  // tally, one instance at a time, under a lock).
  boost::asio::awaitable<Standing> standing(std::string poll_id);
  boost::asio::awaitable<Counts> counts(std::string poll_id);
  // Re-counts every ballot of the poll from PostgreSQL into Redis, then marks it ready
  // with the poll's row as it is then (closed early, or a tombstone if deleted) — unless
  // a change began meanwhile, which leaves it for the next reader to rebuild.
  boost::asio::awaitable<void> rebuild(std::string poll_id);

  // A close or delete: begin_change before PostgreSQL is touched (throws when Redis is
  // unreachable, and then nothing must be changed), one of the outcomes after the
  // commit. The outcomes also tell live subscribers. A change whose writer died in
  // between is settled by settle_stale_changes.
  boost::asio::awaitable<void> begin_change(std::string poll_id);
  boost::asio::awaitable<void> closed(std::string poll_id);
  boost::asio::awaitable<void> deleted(std::string poll_id);
  // Settles the changes begun before `before` (seconds since the epoch) from their
  // rows; returns how many.
  boost::asio::awaitable<std::int64_t> settle_stale_changes(std::int64_t before);

 private:
  boost::asio::awaitable<Standing> standing_from_pg(std::string poll_id);
  // The standing when Redis knows it; nullopt when PostgreSQL must be asked (after
  // starting a rebuild if the tally is incomplete).
  boost::asio::awaitable<std::optional<Standing>> standing_from_redis(std::string poll_id);
  // Records a settled change from the row: kept, closed or gone.
  boost::asio::awaitable<void> settle_from_row(std::string poll_id);
  std::shared_ptr<redis::Client> redis_;
  std::shared_ptr<pg::Pool> pg_;
  std::shared_ptr<const core::Clock> clock_;
};

// "a,b" ↔ {"a","b"}
std::string join_ids(const std::vector<std::string>& ids);
std::vector<std::string> split_ids(std::string_view text);

}  // namespace nimbus::voting
