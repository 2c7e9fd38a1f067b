// HTTP handlers of images (DESIGN.md, "Images"): streamed uploads, direct uploads,
// status, history, downloads by redirect, deletion. Owner only: another user's image
// is a 404. Thin: parse, call upload.hpp / service.hpp, map the outcome.
#pragma once

#include <memory>

#include "auth/service.hpp"
#include "http/router.hpp"
#include "images/service.hpp"
#include "images/upload.hpp"

namespace nimbus::images {

void add_routes(http::Router& router, std::shared_ptr<Service> images, std::shared_ptr<auth::Service> accounts,
                UploadLimits limits);

}  // namespace nimbus::images
