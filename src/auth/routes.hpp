// HTTP handlers of the accounts API (DESIGN.md, "Accounts and sessions"): parse, call
// the service, map the outcome. Also the one place that turns a bearer token into the
// caller's claims for every other module (`authenticated`).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <functional>
#include <memory>

#include "auth/service.hpp"
#include "http/router.hpp"

namespace nimbus::auth {

void add_routes(http::Router& router, std::shared_ptr<Service> service);

// The client's address: the peer, or the last X-Forwarded-For hop when the request
// proves it came through the gateway (X-Nimbus-Gateway carries the shared secret).
std::string client_ip(const http::Request& req, const Config& config);

// Wraps a handler that needs a signed-in caller: 401 with WWW-Authenticate otherwise.
using AuthedHandler = std::function<boost::asio::awaitable<http::Response>(http::Request&, const Claims&)>;
http::Handler authenticated(std::shared_ptr<Service> service, AuthedHandler handler);

}  // namespace nimbus::auth
