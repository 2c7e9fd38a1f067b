// Routes that exist only to test the server itself (NIMBUS_DEBUG_ROUTES=1, off by
// default): a request that takes a chosen time, to prove drains and timeouts; a bearer
// token checked without its Redis lookup, to measure what a read's round trip costs.
#pragma once

#include <memory>

#include "auth/service.hpp"
#include "http/router.hpp"

namespace nimbus::api {

void add_debug_routes(http::Router& router, std::shared_ptr<auth::Service> accounts);

}  // namespace nimbus::api
