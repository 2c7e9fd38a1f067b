// Routes that exist only to test the server itself (NIMBUS_DEBUG_ROUTES=1, off by
// default): a request that takes a chosen time, to prove drains and timeouts.
#pragma once

#include "http/router.hpp"

namespace nimbus::api {

void add_debug_routes(http::Router& router);

}  // namespace nimbus::api
