// HTTP handlers of the accounts API (DESIGN.md, "Accounts and sessions"): parse, call
// the service, map the outcome. Also the one place that turns a bearer token into the
// caller's claims for every other module (`authenticated`).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <functional>
#include <memory>
#include <variant>

#include "auth/service.hpp"
#include "http/router.hpp"

namespace nimbus::auth {

void add_routes(http::Router& router, std::shared_ptr<Service> service);

// The client's address: the peer, or the last X-Forwarded-For hop when the request
// proves it came through the gateway (X-Nimbus-Gateway carries the shared secret).
std::string client_ip(const http::Request& req, const Config& config);

// The bearer token's claims as this instance checks them (signature, audience, expiry),
// not yet its revocation in Redis; or the 401 (with WWW-Authenticate) to answer.
std::variant<Claims, http::Response> bearer_claims(Service& service, const http::Request& req);

// Wraps a handler that needs a signed-in caller: 401 with WWW-Authenticate otherwise.
using AuthedHandler = std::function<boost::asio::awaitable<http::Response>(http::Request&, const Claims&)>;
http::Handler authenticated(std::shared_ptr<Service> service, AuthedHandler handler);

// The same for a handler that only reads (nothing it does needs undoing when its
// answer is dropped): it runs while the token's revocation check is in flight, which
// saves a Redis round trip when it reads Redis itself; its answer still waits for the
// check. Before it reads anything of the caller's own (whether they voted, say), it
// awaits `confirm`, which ends the request with the 401 when the token was revoked.
using Confirm = std::function<boost::asio::awaitable<void>()>;
using ReadHandler =
    std::function<boost::asio::awaitable<http::Response>(http::Request&, const Claims&, const Confirm&)>;
http::Handler authenticated_read(std::shared_ptr<Service> service, ReadHandler handler);

}  // namespace nimbus::auth
