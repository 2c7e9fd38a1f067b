#include "voting/routes.hpp"

#include <boost/asio/this_coro.hpp>
#include <boost/json/serialize.hpp>

#include "auth/jwt.hpp"
#include "auth/routes.hpp"
#include "core/env.hpp"
#include "core/errors.hpp"
#include "core/ids.hpp"
#include "core/random.hpp"
#include "core/sha256.hpp"
#include "http/json_body.hpp"
#include "http/paging.hpp"
#include "http/problem.hpp"

namespace nimbus::voting {

namespace asio = boost::asio;
namespace json = boost::json;
using http::Request;
using http::Response;

UserLimits UserLimits::from_env() {
  UserLimits l;
  l.polls_per_minute =
      static_cast<int>(env::integer("NIMBUS_LIMIT_POLLS_PER_MINUTE", l.polls_per_minute, 1, 1'000'000));
  l.votes_per_minute =
      static_cast<int>(env::integer("NIMBUS_LIMIT_VOTES_PER_MINUTE", l.votes_per_minute, 1, 1'000'000));
  return l;
}

namespace {

// The per-user limits, counted before the work they bound.
struct Limited {
  std::shared_ptr<redis::RateLimiter> rates;
  UserLimits limits;
};

// A 429 when the user made more than `limit` requests of `kind` this minute.
asio::awaitable<std::optional<Response>> over_limit(std::shared_ptr<const Limited> limited, std::string kind,
                                                    std::string user_id, int limit) {
  if (auto wait = co_await limited->rates->hit("rl:" + kind + ":" + user_id, limit)) {
    co_return http::rate_limited("This account made the most requests of this kind allowed per minute.", *wait);
  }
  co_return std::nullopt;
}

Response poll_not_found() {
  return http::not_found("No poll with this id.");
}

Response owner_refusal(OwnerAction a) {
  if (a == OwnerAction::not_found) return poll_not_found();
  return http::problem(403, "not_owner", "Forbidden", "Only the poll's owner may do this.");
}

Response results_hidden() {
  return http::problem(403, "results_hidden", "Results hidden",
                       "This poll shows its results only after you vote or after it closes.");
}

Response ballot_json(unsigned status, const std::string& poll_id, const std::vector<std::string>& ids) {
  json::array options;
  for (const auto& id : ids) options.emplace_back(id);
  return http::json(status, json::serialize(json::object{{"poll_id", poll_id}, {"option_ids", std::move(options)}}));
}

asio::awaitable<Response> create(std::shared_ptr<Service> polls, std::shared_ptr<const Limited> limited, Request& req,
                                 auth::Claims who) {
  auto parsed = http::json_object_body(req);
  if (auto* problem = std::get_if<Response>(&parsed)) co_return std::move(*problem);
  auto poll = parse_new_poll(std::get<json::object>(parsed));
  if (auto* e = std::get_if<RuleError>(&poll)) co_return http::invalid_field(e->code, e->detail);
  if (auto refused = co_await over_limit(limited, "polls", who.sub, limited->limits.polls_per_minute))
    co_return *refused;
  std::optional<Idempotency> idempotency;
  if (auto key = req.header("Idempotency-Key")) {
    const bool printable = std::all_of(key->begin(), key->end(), [](char c) { return c >= 0x21 && c <= 0x7E; });
    if (key->empty() || key->size() > 255 || !printable) {
      co_return http::invalid_field("invalid_idempotency_key", "Idempotency-Key is 1 to 255 visible ASCII characters.");
    }
    idempotency = Idempotency{std::string(*key), Sha256::hex_of(req.body)};
  }
  try {
    auto created = co_await polls->create(who.sub, std::move(std::get<NewPoll>(poll)), std::move(idempotency));
    if (created.outcome == CreateOutcome::gone) co_return poll_not_found();
    if (created.outcome == CreateOutcome::key_reused) {
      co_return http::problem(422, "idempotency_key_reused", "Idempotency key reused",
                              "This Idempotency-Key was used for another request.");
    }
    auto res = http::json(201, json::serialize(created.poll));
    res.headers.set("Location", "/v1/polls/" + std::string(created.poll.at("id").as_string()));
    if (created.outcome == CreateOutcome::replayed) res.headers.set("Idempotent-Replayed", "true");
    co_return res;
  } catch (const pg::Error& e) {
    // 22007/22008: a time PostgreSQL cannot read; 23514: closes_at not after opens_at.
    if (e.sqlstate() != "22007" && e.sqlstate() != "22008" && e.sqlstate() != "23514") throw;
  }
  co_return http::invalid_field("invalid_time", "opens_at/closes_at are RFC 3339 times, closes_at after opens_at.");
}

// GET /v1/polls?status=open|closed|all&mine=true&limit=20&cursor=...
asio::awaitable<Response> list(std::shared_ptr<Service> polls, std::shared_ptr<auth::Service> accounts, Request& req) {
  const auto status = req.query_param("status").value_or("all");
  if (status != "open" && status != "closed" && status != "all") {
    co_return http::invalid_field("invalid_status", "status is open, closed or all.");
  }
  auto paging = http::page_request(req);
  if (auto* problem = std::get_if<Response>(&paging)) co_return std::move(*problem);
  const auto [limit, after] = std::get<http::PageRequest>(paging);
  std::optional<std::string> owner;
  if (req.query_param("mine").value_or("false") == "true") {
    // (an if, not a conditional expression: GCC 12 mis-compiles co_await inside ?:)
    std::optional<auth::Claims> claims;
    if (auto header = req.header("Authorization")) {
      std::string value(*header);
      claims = co_await accounts->authenticate(std::move(value));
    }
    if (!claims) {
      auto res = http::problem(401, "invalid_token", "Unauthorized", "mine=true needs a valid access token.");
      res.headers.set("WWW-Authenticate", R"(Bearer realm="nimbus", error="invalid_token")");
      co_return res;
    }
    owner = claims->sub;
  }
  auto page = co_await polls->list(status, owner, after, limit);
  json::array items;
  for (auto& p : page.items) items.push_back(std::move(p));
  json::object body{{"items", std::move(items)}, {"next_cursor", nullptr}};
  if (page.next_after) body["next_cursor"] = http::page_cursor(*page.next_after);
  co_return http::json(200, json::serialize(body));
}

asio::awaitable<Response> get(std::shared_ptr<Service> polls, Request& req) {
  const auto id = req.uuid_param("id").value_or("");
  if (id.empty()) co_return poll_not_found();
  auto poll = co_await polls->get(id);
  if (!poll) co_return poll_not_found();
  co_return http::json(200, json::serialize(*poll));
}

asio::awaitable<Response> close(std::shared_ptr<Service> polls, Request& req, auth::Claims who) {
  const auto id = req.uuid_param("id").value_or("");
  if (id.empty()) co_return poll_not_found();
  auto done = co_await polls->close(id, who.sub);
  if (done != OwnerAction::done) co_return owner_refusal(done);
  auto poll = co_await polls->get(id);
  if (!poll) co_return poll_not_found();  // deleted in between
  co_return http::json(200, json::serialize(*poll));
}

asio::awaitable<Response> remove(std::shared_ptr<Service> polls, Request& req, auth::Claims who) {
  const auto id = req.uuid_param("id").value_or("");
  if (id.empty()) co_return poll_not_found();
  auto done = co_await polls->remove(id, who.sub);
  if (done != OwnerAction::done) co_return owner_refusal(done);
  co_return http::empty(204);
}

asio::awaitable<Response> vote(std::shared_ptr<Service> polls, std::shared_ptr<const Limited> limited, Request& req,
                               auth::Claims who) {
  const auto id = req.uuid_param("id").value_or("");
  if (id.empty()) co_return poll_not_found();
  auto parsed = http::json_object_body(req);
  if (auto* problem = std::get_if<Response>(&parsed)) co_return std::move(*problem);
  auto selection = parse_selection(std::get<json::object>(parsed));
  if (auto* e = std::get_if<RuleError>(&selection)) co_return http::invalid_field(e->code, e->detail);
  if (auto refused = co_await over_limit(limited, "votes", who.sub, limited->limits.votes_per_minute))
    co_return *refused;
  auto result = co_await polls->vote(id, who.sub, std::move(std::get<std::vector<std::string>>(selection)));
  switch (result.outcome) {
    case VoteOutcome::created:
      co_return ballot_json(201, id, result.option_ids);
    case VoteOutcome::same_again:
      co_return ballot_json(200, id, result.option_ids);
    case VoteOutcome::already_voted:
      co_return http::problem(409, "already_voted", "Already voted", "You voted in this poll with another selection.");
    case VoteOutcome::poll_closed:
      co_return http::problem(409, "poll_closed", "Poll closed", "The poll is not open for votes.");
    case VoteOutcome::not_found:
      co_return poll_not_found();
    case VoteOutcome::invalid_options:
      co_return http::invalid_field("invalid_options",
                                    "Choose between 1 and max_choices distinct options of this poll.");
  }
  co_return http::internal_error();
}

asio::awaitable<Response> my_ballot(std::shared_ptr<Service> polls, Request& req, auth::Claims who) {
  const auto id = req.uuid_param("id").value_or("");
  if (id.empty()) co_return poll_not_found();
  auto ballot = co_await polls->my_ballot(id, who.sub);
  if (!ballot) co_return http::not_found("You have not voted in this poll.");
  co_return ballot_json(200, id, *ballot);
}

asio::awaitable<Response> results(std::shared_ptr<Service> polls, Request& req, auth::Claims who,
                                  auth::Confirm confirm) {
  const auto id = req.uuid_param("id").value_or("");
  if (id.empty()) co_return poll_not_found();
  auto r = co_await polls->results(id, who.sub, confirm);
  if (r.hidden) co_return results_hidden();
  if (!r.body) co_return poll_not_found();
  co_return http::json(200, std::move(*r.body));
}

// The body of a results stream: the current results at once, then the results again
// whenever they change (coalesced), a comment as heartbeat when nothing happens, and
// the end of the stream when the server shuts down or the poll is deleted (clients
// reconnect, through the gateway, to another instance).
//
// A stream is only as good as the token that opened it: it ends when that token
// expires, and when its session or user is signed out (checked every heartbeat
// interval, failing closed while that cannot be known). The last event before such an
// end says why (`event: end`), so a client refreshes its token before reconnecting.
//
// A stream holds its slot (StreamSlots) while it runs. The slot is renewed with every
// check: a stream whose slot is gone and cannot be taken again (the user's other streams
// hold every one) ends too, as one over the cap would have been refused.
struct StreamContext {
  std::shared_ptr<LiveResults> live;
  std::unique_ptr<HeldSlot> slot;
  std::shared_ptr<auth::Service> accounts;
  auth::Claims who;
  std::string poll_id, first;
};

std::string end_event(std::string_view reason) {
  return sse_event("end", json::serialize(json::object{{"reason", reason}}));
}

// Why the stream must end now, if it must.
asio::awaitable<std::optional<std::string_view>> must_end(const StreamContext& s) {
  try {
    if (co_await s.accounts->revoked(s.who)) co_return "token_revoked";
    if (!co_await s.slot->renew()) co_return "too_many_streams";
  } catch (const DependencyUnavailable&) {
    co_return "unavailable";
  }
  co_return std::nullopt;
}

const std::shared_ptr<const std::string>& heartbeat_comment() {
  static const auto bytes = std::make_shared<const std::string>(": heartbeat\n\n");
  return bytes;
}

asio::awaitable<void> stream_events(const StreamContext& s, http::StreamWriter& out) {
  // Real time, not an injected clock: every deadline here bounds a real wait (next()).
  using Clock = std::chrono::system_clock;
  auto handle = s.live->watch(s.poll_id);
  std::weak_ptr<Watcher> watcher = handle->shared_watcher();
  out.on_stop([watcher] {
    if (auto w = watcher.lock()) w->close();
  });
  // retry: how long a client waits before reconnecting after the stream ends.
  std::string opening = "retry: 1000\n\n" + sse_event("results", s.first);
  if (!co_await out.write(std::move(opening))) co_return;
  const auto heartbeat = s.live->config().heartbeat;
  const auto expires = Clock::from_time_t(static_cast<std::time_t>(s.who.exp));
  // The first check at a random point of the first interval: streams opened together (a
  // crowd arriving as a poll opens) would otherwise check together every interval after.
  auto next_check = Clock::now() + random::jitter(heartbeat);
  for (;;) {
    const auto now = Clock::now();
    if (now >= expires) {
      co_await out.write(end_event("token_expired"));
      co_return;
    }
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(std::min(expires, next_check) - now) +
                      std::chrono::milliseconds(1);
    auto event = co_await handle->watcher().next(wait);
    if (event.kind == Watcher::Event::Kind::closed) co_return;
    if (Clock::now() >= next_check) {
      next_check = Clock::now() + heartbeat;
      if (auto reason = co_await must_end(s)) {
        co_await out.write(end_event(*reason));
        co_return;
      }
      if (!event.data) event.data = heartbeat_comment();
    }
    if (event.data && !co_await out.write(std::move(event.data))) co_return;
  }
}

asio::awaitable<void> stream_results(std::shared_ptr<StreamContext> s, http::StreamWriter& out) {
  std::exception_ptr failure;
  try {
    co_await stream_events(*s, out);
  } catch (...) {
    failure = std::current_exception();  // rethrown once the slot is given back
  }
  co_await s->slot->release();
  if (failure) std::rethrow_exception(failure);
}

asio::awaitable<Response> results_stream(std::shared_ptr<Service> polls, std::shared_ptr<LiveResults> live,
                                         std::shared_ptr<StreamSlots> slots, std::shared_ptr<auth::Service> accounts,
                                         Request& req, auth::Claims who) {
  const auto id = req.uuid_param("id").value_or("");
  if (id.empty()) co_return poll_not_found();
  auto r = co_await polls->results(id, who.sub);
  if (r.hidden) co_return results_hidden();
  if (!r.body) co_return poll_not_found();
  auto stream_id = random::hex(8);
  if (!co_await slots->acquire(who.sub, stream_id)) {
    auto res = http::problem(429, "too_many_streams", "Too many streams",
                             "This account has the most live-results streams open at once; close one first.");
    res.headers.set("Retry-After",
                    std::to_string(std::chrono::duration_cast<std::chrono::seconds>(slots->lease()).count()));
    co_return res;
  }
  auto slot =
      std::make_unique<HeldSlot>(std::move(slots), who.sub, std::move(stream_id), co_await asio::this_coro::executor);
  Response res;
  res.headers.set("Content-Type", "text/event-stream");
  res.headers.set("Cache-Control", "no-cache");
  res.headers.set("X-Accel-Buffering", "no");  // nginx: pass events through at once
  if (req.method == http::Method::head) {
    // The server sends no body for a HEAD: the answer a GET would get (429 included,
    // above), and the slot back at once.
    co_await slot->release();
    co_return res;
  }
  auto context = std::make_shared<StreamContext>(
      StreamContext{live, std::move(slot), std::move(accounts), std::move(who), id, std::move(*r.body)});
  res.stream = [context](http::StreamWriter& out) { return stream_results(context, out); };
  co_return res;
}

}  // namespace

void add_routes(http::Router& router, std::shared_ptr<Service> polls, std::shared_ptr<LiveResults> live,
                std::shared_ptr<StreamSlots> slots, std::shared_ptr<auth::Service> accounts,
                std::shared_ptr<redis::RateLimiter> rates, UserLimits limits) {
  const http::RouteOptions small{.body_limit = 16 * 1024};
  using Claims = auth::Claims;
  auto limited = std::make_shared<const Limited>(Limited{std::move(rates), limits});
  router.add(http::Method::post, "/v1/polls",
             auth::authenticated(
                 accounts, [polls, limited](Request& r, const Claims& c) { return create(polls, limited, r, c); }),
             small);
  router.add(http::Method::get, "/v1/polls", [polls, accounts](Request& r) { return list(polls, accounts, r); });
  router.add(http::Method::get, "/v1/polls/{id}", [polls](Request& r) { return get(polls, r); });
  router.add(http::Method::post, "/v1/polls/{id}/close",
             auth::authenticated(accounts, [polls](Request& r, const Claims& c) { return close(polls, r, c); }), small);
  router.add(http::Method::del, "/v1/polls/{id}",
             auth::authenticated(accounts, [polls](Request& r, const Claims& c) { return remove(polls, r, c); }));
  router.add(http::Method::post, "/v1/polls/{id}/votes",
             auth::authenticated(accounts,
                                 [polls, limited](Request& r, const Claims& c) { return vote(polls, limited, r, c); }),
             small);
  router.add(http::Method::get, "/v1/polls/{id}/votes/me",
             auth::authenticated(accounts, [polls](Request& r, const Claims& c) { return my_ballot(polls, r, c); }));
  router.add(http::Method::get, "/v1/polls/{id}/results",
             auth::authenticated_read(accounts, [polls](Request& r, const Claims& c, const auth::Confirm& confirm) {
               return results(polls, r, c, confirm);
             }));
  router.add(http::Method::get, "/v1/polls/{id}/results/stream",
             auth::authenticated(accounts, [polls, live, slots, accounts](Request& r, const Claims& c) {
               return results_stream(polls, live, slots, accounts, r, c);
             }));
}

}  // namespace nimbus::voting
