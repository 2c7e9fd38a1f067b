#include "voting/tally.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/this_coro.hpp>

#include "core/errors.hpp"
#include "core/log.hpp"

namespace nimbus::voting {

namespace asio = boost::asio;

namespace {

std::string key(const std::string& poll_id, std::string_view what) {
  return "poll:{" + poll_id + "}:" + std::string(what);
}

// KEYS: ballots, tally. ARGV: channel, then user, "opt,opt" pairs. A deleted poll
// (a ballot committed just before the delete, counted just after) counts nothing.
const redis::Script kCount(R"(
if redis.call('HEXISTS', KEYS[2], '_deleted') == 1 then return 0 end
local added = 0
for i = 2, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    for option in string.gmatch(ARGV[i + 1], '[^,]+') do redis.call('HINCRBY', KEYS[2], option, 1) end
    added = added + 1
  end
end
if added > 0 then
  redis.call('PUBLISH', ARGV[1], redis.call('HINCRBY', KEYS[2], '_total', added))
end
return added)");

// KEYS: tally. ARGV: "1" if the row says closed early. Marks a rebuilt tally ready,
// unless a change began (or a delete ended) while it was rebuilt. Closing is one way:
// "_closed" is set, never cleared.
const redis::Script kRebuilt(R"(
if redis.call('HEXISTS', KEYS[1], '_changing') == 1 or redis.call('HEXISTS', KEYS[1], '_deleted') == 1 then
  return 0
end
if ARGV[1] == '1' then redis.call('HSET', KEYS[1], '_closed', '1') end
redis.call('HSET', KEYS[1], '_ready', '1')
return 1)");

// No rows: the poll does not exist (every poll has options).
constexpr std::string_view kPgStanding = R"(
SELECT p.closed_at IS NOT NULL, o.id, count(c.option_id), (SELECT count(*) FROM ballots WHERE poll_id = $1)
  FROM polls p
  JOIN poll_options o ON o.poll_id = p.id
  LEFT JOIN ballot_choices c ON c.poll_id = o.poll_id AND c.option_id = o.id
 WHERE p.id = $1
 GROUP BY p.closed_at, o.id)";
constexpr std::string_view kPgRow = "SELECT closed_at IS NOT NULL FROM polls WHERE id = $1";

// How long a deleted poll's tombstone stays: longer than any change or rebuild takes.
// (After it, a reader asks PostgreSQL, finds nothing, and a rebuild lays it again.)
constexpr std::string_view kTombstoneSeconds = "86400";

// Keyset pages over the primary key (poll_id, user_id).
constexpr std::string_view kBallotPage = R"(
SELECT user_id, array_to_string(option_ids, ',') FROM ballots
 WHERE poll_id = $1 AND user_id > $2::uuid ORDER BY user_id LIMIT 2000)";

// Keeps the tally alive for a rebuild that outlives the request that started it.
asio::awaitable<void> rebuild_kept(std::shared_ptr<Tally> self, std::string poll_id) {
  co_await self->rebuild(std::move(poll_id));
}

}  // namespace

std::string changed_channel(const std::string& poll_id) {
  return key(poll_id, "changed");
}

std::string join_ids(const std::vector<std::string>& ids) {
  std::string out;
  for (const auto& id : ids) {
    if (!out.empty()) out += ',';
    out += id;
  }
  return out;
}

std::vector<std::string> split_ids(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    auto comma = text.find(',');
    if (comma != 0) out.emplace_back(text.substr(0, comma));
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

asio::awaitable<std::int64_t> Tally::count(const std::vector<Ballot>& ballots) {
  // One script call per poll (its keys share a slot), all in one pipeline.
  std::map<std::string, redis::Client::Call> by_poll;
  for (const auto& b : ballots) {
    auto& call = by_poll[b.poll_id];
    if (call.keys.empty()) {
      call.keys = {key(b.poll_id, "ballots"), key(b.poll_id, "tally")};
      call.args.push_back(changed_channel(b.poll_id));
    }
    call.args.push_back(b.user_id);
    call.args.push_back(join_ids(b.option_ids));
  }
  std::vector<redis::Client::Call> calls;
  calls.reserve(by_poll.size());
  for (auto& [poll, call] : by_poll) calls.push_back(std::move(call));
  auto replies = co_await redis_->eval_many(kCount, std::move(calls));
  std::int64_t added = 0;
  for (const auto& r : replies) {
    added += r.as_integer();
  }
  co_return added;
}

asio::awaitable<void> Tally::mark_active(const std::vector<std::string>& poll_ids) {
  const auto now = core::unix_seconds(*clock_);
  redis::Command cmd{"ZADD", "tally:active"};
  for (const auto& id : poll_ids) {
    cmd.push_back(std::to_string(now));
    cmd.push_back(id);
  }
  co_await redis_->command(std::move(cmd));
}

asio::awaitable<std::vector<std::string>> Tally::active_since(std::int64_t since) {
  std::vector<redis::Command> cmds;
  cmds.push_back({"ZREMRANGEBYSCORE", "tally:active", "-inf", "(" + std::to_string(since)});
  cmds.push_back({"ZRANGEBYSCORE", "tally:active", std::to_string(since), "+inf"});
  auto replies = co_await redis_->pipeline(std::move(cmds));
  std::vector<std::string> out;
  for (const auto& e : replies[1].as_array()) out.push_back(e.as_string());
  co_return out;
}

asio::awaitable<std::optional<std::int64_t>> Tally::counted_total(std::string poll_id) {
  auto r = co_await redis_->command("HMGET", key(poll_id, "tally"), "_total", "_ready");
  const auto& e = r.as_array();
  if (e.size() != 2 || e[1].is_nil()) co_return std::nullopt;
  co_return e[0].as_optional_number().value_or(0);
}

asio::awaitable<void> Tally::start(const std::string& poll_id) {
  co_await redis_->command("HSET", key(poll_id, "tally"), "_total", "0", "_ready", "1");
}

asio::awaitable<std::optional<std::vector<std::string>>> Tally::ballot_of(std::string poll_id, std::string user_id) {
  auto r = co_await redis_->command("HGET", key(poll_id, "ballots"), user_id);
  auto ballot = r.as_optional_string();
  if (!ballot) co_return std::nullopt;
  co_return split_ids(*ballot);
}

asio::awaitable<Standing> Tally::standing(std::string poll_id) {
  try {
    if (auto known = co_await standing_from_redis(poll_id)) co_return *known;
  } catch (const DependencyUnavailable&) {
    // Redis down or still loading its data after a restart: the truth is still there,
    // only slower.
  }
  co_return co_await standing_from_pg(poll_id);
}

asio::awaitable<Counts> Tally::counts(std::string poll_id) {
  co_return (co_await standing(std::move(poll_id))).counts;
}

asio::awaitable<std::optional<Standing>> Tally::standing_from_redis(std::string poll_id) {
  auto tally = co_await redis_->command("HGETALL", key(poll_id, "tally"));
  Standing s;
  bool ready = false, changing = false;
  const auto& e = tally.as_array();
  for (std::size_t i = 0; i + 1 < e.size(); i += 2) {
    const auto& field = e[i].as_string();
    if (field.starts_with('_')) {
      if (field == "_ready") ready = true;
      if (field == "_total") s.counts.total = e[i + 1].as_optional_number().value_or(0);
      if (field == "_closed") s.closed_early = true;
      if (field == "_changing") changing = true;
      if (field == "_deleted") {
        s.exists = false;
        s.counts = {};
        co_return s;  // for good: no marker can undo a delete
      }
    } else {
      s.counts.by_option[field] = e[i + 1].as_optional_number().value_or(0);
    }
  }
  if (changing) co_return std::nullopt;  // a close or delete under way: ask the row
  if (ready) co_return s;
  // Incomplete (Redis lost it, or it was never built): one instance rebuilds it in
  // the background while every reader gets exact counts from PostgreSQL meanwhile.
  auto lock = co_await redis_->command("SET", key(poll_id, "rebuild"), "1", "NX", "PX", "60000");
  if (lock.type == redis::Reply::Type::status) {
    auto ex = co_await asio::this_coro::executor;
    asio::co_spawn(ex, rebuild_kept(shared_from_this(), poll_id), [poll_id](std::exception_ptr failure) {
      if (!failure) return;
      try {
        std::rethrow_exception(failure);
      } catch (const std::exception& err) {
        log::warn("tally rebuild failed", {{"poll_id", poll_id}, {"error", err.what()}});
      }
    });
  }
  co_return std::nullopt;
}

asio::awaitable<Standing> Tally::standing_from_pg(std::string poll_id) {
  auto db = co_await pg_->acquire();
  auto r = co_await db.query(kPgStanding, pg::params(poll_id));
  Standing s;
  s.exists = r.rows() > 0;
  for (int i = 0; i < r.rows(); ++i) {
    s.closed_early = r.get_bool(i, 0);
    s.counts.by_option[std::string(r.get(i, 1))] = r.get_int(i, 2);
    s.counts.total = r.get_int(i, 3);
  }
  co_return s;
}

asio::awaitable<void> Tally::rebuild(std::string poll_id) {
  std::string after = "00000000-0000-0000-0000-000000000000";
  std::size_t seen = 0;
  for (;;) {
    pg::Result page;
    {
      auto db = co_await pg_->acquire();
      page = co_await db.query(kBallotPage, pg::params(poll_id, after));
    }
    if (page.rows() == 0) break;
    std::vector<Ballot> ballots;
    for (int i = 0; i < page.rows(); ++i) {
      ballots.push_back(Ballot{poll_id, std::string(page.get(i, 0)), split_ids(page.get(i, 1))});
    }
    after = ballots.back().user_id;
    seen += ballots.size();
    co_await count(ballots);
  }
  // The row after the ballots: a close or delete committed before this read is in it;
  // one begun after it has its marker in the hash by now, and the script sees it.
  pg::Result row;
  {
    auto db = co_await pg_->acquire();
    row = co_await db.query(kPgRow, pg::params(poll_id));
  }
  if (row.rows() == 0) {
    co_await deleted(poll_id);
  } else {
    std::vector<std::string> keys{key(poll_id, "tally")};
    std::vector<std::string> args{row.get_bool(0, 0) ? "1" : "0"};
    co_await redis_->eval(kRebuilt, std::move(keys), std::move(args));
  }
  co_await redis_->command("DEL", key(poll_id, "rebuild"));
  log::info("tally rebuilt", {{"poll_id", poll_id}, {"ballots", seen}});
}

asio::awaitable<void> Tally::begin_change(std::string poll_id) {
  // The index first: a marker in a hash always has its entry, for the reconciler.
  std::vector<redis::Command> cmds;
  const auto now = std::to_string(core::unix_seconds(*clock_));
  cmds.push_back({"ZADD", "tally:changing", now, poll_id});
  cmds.push_back({"HSET", key(poll_id, "tally"), "_changing", now});
  co_await redis_->pipeline(std::move(cmds));
}

asio::awaitable<void> Tally::closed(std::string poll_id) {
  std::vector<redis::Command> cmds;
  cmds.push_back({"HSET", key(poll_id, "tally"), "_closed", "1"});
  cmds.push_back({"HDEL", key(poll_id, "tally"), "_changing"});
  cmds.push_back({"ZREM", "tally:changing", poll_id});
  cmds.push_back({"PUBLISH", changed_channel(poll_id), "closed"});
  co_await redis_->pipeline(std::move(cmds));
}

asio::awaitable<void> Tally::deleted(std::string poll_id) {
  // The tombstone replaces the tally (and its marker) in one step.
  std::vector<redis::Command> cmds;
  cmds.push_back({"DEL", key(poll_id, "ballots"), key(poll_id, "tally")});
  cmds.push_back({"HSET", key(poll_id, "tally"), "_deleted", "1"});
  cmds.push_back({"EXPIRE", key(poll_id, "tally"), std::string(kTombstoneSeconds)});
  cmds.push_back({"ZREM", "tally:changing", poll_id});
  cmds.push_back({"PUBLISH", changed_channel(poll_id), "deleted"});
  co_await redis_->pipeline(std::move(cmds));
}

asio::awaitable<void> Tally::settle_from_row(std::string poll_id) {
  pg::Result row;
  {
    auto db = co_await pg_->acquire();
    row = co_await db.query(kPgRow, pg::params(poll_id));
  }
  if (row.rows() == 0) co_return co_await deleted(poll_id);
  if (row.get_bool(0, 0)) co_return co_await closed(poll_id);
  // Not changed after all (the statement failed): only the marker goes.
  std::vector<redis::Command> cmds;
  cmds.push_back({"HDEL", key(poll_id, "tally"), "_changing"});
  cmds.push_back({"ZREM", "tally:changing", poll_id});
  co_await redis_->pipeline(std::move(cmds));
}

asio::awaitable<std::int64_t> Tally::settle_stale_changes(std::int64_t before) {
  auto stale = co_await redis_->command("ZRANGEBYSCORE", "tally:changing", "-inf", "(" + std::to_string(before));
  std::int64_t settled = 0;
  for (const auto& poll : stale.as_array()) {
    const auto& id = poll.as_string();
    log::warn("a poll change was left unfinished: settling it from its row", {{"poll_id", id}});
    co_await settle_from_row(id);
    ++settled;
  }
  co_return settled;
}

}  // namespace nimbus::voting
