// HTTP handlers of images (DESIGN.md, "Images"): streamed uploads, status, history,
// downloads by redirect, deletion. Owner only: another user's image is a 404.
#pragma once

#include <cstdint>
#include <memory>

#include "auth/service.hpp"
#include "http/router.hpp"
#include "images/service.hpp"

namespace nimbus::images {

struct UploadLimits {
  std::size_t max_bytes = 25 * 1024 * 1024;
  std::uint64_t max_pixels = 50'000'000;

  // NIMBUS_IMAGE_MAX_BYTES, NIMBUS_IMAGE_MAX_PIXELS.
  static UploadLimits from_env();
};

void add_routes(http::Router& router, std::shared_ptr<Service> images, std::shared_ptr<auth::Service> accounts,
                UploadLimits limits);

}  // namespace nimbus::images
