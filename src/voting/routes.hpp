// HTTP handlers of polls and votes (DESIGN.md, "Polls and votes").
#pragma once

#include <memory>

#include "auth/service.hpp"
#include "http/router.hpp"
#include "store/redis/rate_limit.hpp"
#include "voting/live.hpp"
#include "voting/service.hpp"

namespace nimbus::voting {

// What one user may create per minute, over every instance: a single account cannot
// fill the database with polls or the ballot box with votes (429 `rate_limited`).
struct UserLimits {
  int polls_per_minute = 10;
  int votes_per_minute = 120;

  // NIMBUS_LIMIT_POLLS_PER_MINUTE, NIMBUS_LIMIT_VOTES_PER_MINUTE.
  static UserLimits from_env();
};

void add_routes(http::Router& router, std::shared_ptr<Service> polls, std::shared_ptr<LiveResults> live,
                std::shared_ptr<StreamSlots> slots, std::shared_ptr<auth::Service> accounts,
                std::shared_ptr<redis::RateLimiter> rates, UserLimits limits);

}  // namespace nimbus::voting
