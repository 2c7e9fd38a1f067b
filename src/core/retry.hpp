// Start-up work that needs a dependency, retried until it succeeds.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <functional>
#include <string>

namespace nimbus {

// Runs `attempt` until it succeeds, with jittered exponential backoff (250 ms → 5 s)
// between failures, logging each; used for start-up work that needs a dependency
// (migrations, topology) without making start-up wait for it.
boost::asio::awaitable<void> retry_until_done(std::string what, std::function<boost::asio::awaitable<void>()> attempt);

}  // namespace nimbus
