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

// KEYS: ballots, tally. ARGV: channel, then user, "opt,opt" pairs.
const redis::Script kCount(R"(
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

constexpr std::string_view kPgCounts = R"(
SELECT o.id, count(c.option_id), (SELECT count(*) FROM ballots WHERE poll_id = $1)
  FROM poll_options o
  LEFT JOIN ballot_choices c ON c.poll_id = o.poll_id AND c.option_id = o.id
 WHERE o.poll_id = $1
 GROUP BY o.id)";

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

asio::awaitable<Counts> Tally::counts(std::string poll_id) {
  try {
    if (auto counted = co_await counts_from_redis(poll_id)) co_return *counted;
  } catch (const DependencyUnavailable&) {
    // Redis down or still loading its data after a restart: the truth is still there,
    // only slower.
  }
  co_return co_await counts_from_pg(poll_id);
}

asio::awaitable<std::optional<Counts>> Tally::counts_from_redis(const std::string& poll_id) {
  auto tally = co_await redis_->command("HGETALL", key(poll_id, "tally"));
  Counts c;
  bool ready = false;
  const auto& e = tally.as_array();
  for (std::size_t i = 0; i + 1 < e.size(); i += 2) {
    const auto& field = e[i].as_string();
    if (field == "_ready") {
      ready = true;
    } else if (field == "_total") {
      c.total = e[i + 1].as_optional_number().value_or(0);
    } else {
      c.by_option[field] = e[i + 1].as_optional_number().value_or(0);
    }
  }
  if (ready) co_return c;
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

asio::awaitable<Counts> Tally::counts_from_pg(const std::string& poll_id) {
  auto db = co_await pg_->acquire();
  auto r = co_await db.query(kPgCounts, pg::params(poll_id));
  Counts c;
  for (int i = 0; i < r.rows(); ++i) {
    c.by_option[std::string(r.get(i, 0))] = r.get_int(i, 1);
    c.total = r.get_int(i, 2);
  }
  co_return c;
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
  co_await redis_->command("HSET", key(poll_id, "tally"), "_ready", "1");
  co_await redis_->command("DEL", key(poll_id, "rebuild"));
  log::info("tally rebuilt", {{"poll_id", poll_id}, {"ballots", seen}});
}

asio::awaitable<void> Tally::announce(std::string poll_id) {
  co_await redis_->command("PUBLISH", changed_channel(poll_id), "closed");
}

asio::awaitable<void> Tally::forget(std::string poll_id) {
  co_await redis_->command("DEL", key(poll_id, "ballots"), key(poll_id, "tally"));
  co_await announce(poll_id);
}

}  // namespace nimbus::voting
