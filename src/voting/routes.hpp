// HTTP handlers of polls and votes (DESIGN.md, "Polls and votes").
#pragma once

#include <memory>

#include "auth/service.hpp"
#include "http/router.hpp"
#include "voting/live.hpp"
#include "voting/service.hpp"

namespace nimbus::voting {

void add_routes(http::Router& router, std::shared_ptr<Service> polls, std::shared_ptr<LiveResults> live,
                std::shared_ptr<StreamSlots> slots, std::shared_ptr<auth::Service> accounts);

}  // namespace nimbus::voting
