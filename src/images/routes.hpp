// HTTP handlers of images (DESIGN.md, "Images"): streamed uploads, direct uploads,
// status, history, downloads by redirect, deletion. Owner only: another user's image
// is a 404. Thin: parse, call upload.hpp / service.hpp, map the outcome.
#pragma once

#include <memory>

#include "auth/service.hpp"
#include "http/router.hpp"
#include "images/service.hpp"
#include "images/upload.hpp"
#include "store/redis/rate_limit.hpp"

namespace nimbus::images {

// `rates` counts the uploads per user and minute (UploadLimits::uploads_per_minute).
void add_routes(http::Router& router, std::shared_ptr<Service> images, std::shared_ptr<auth::Service> accounts,
                UploadLimits limits, std::shared_ptr<redis::RateLimiter> rates);

}  // namespace nimbus::images
