#include "worker/thumbnails.hpp"

#include <vips/vips8>

namespace nimbus::worker {

using vips::VImage;

void init_vips(const char* argv0) {
  if (VIPS_INIT(argv0) != 0) throw std::runtime_error("libvips failed to start");
  vips_cache_set_max(0);  // jobs never repeat an operation; the cache would only hold memory
  vips_concurrency_set(1);
  vips_block_untrusted_set(TRUE);
  vips_operation_block_set("VipsForeignLoad", TRUE);
  for (const char* allowed : {"VipsForeignLoadJpeg", "VipsForeignLoadPng", "VipsForeignLoadNsgif",
                              "VipsForeignLoadWebp", "VipsForeignLoadHeif"}) {
    vips_operation_block_set(allowed, FALSE);
  }
}

namespace {

// A saved buffer as a string, the blob released.
std::string take(VipsBlob* blob) {
  std::size_t size = 0;
  const auto* data = static_cast<const char*>(vips_blob_get(blob, &size));
  std::string out(data, size);
  vips_area_unref(VIPS_AREA(blob));
  return out;
}

VImage to_srgb(VImage image) {
  const auto space = image.interpretation();
  if (space != VIPS_INTERPRETATION_sRGB && space != VIPS_INTERPRETATION_B_W) {
    image = image.colourspace(VIPS_INTERPRETATION_sRGB);
  }
  return image;
}

// cover: exactly size×size, cropped to the centre (enlarging a smaller image).
// Otherwise: within size×size, never enlarged.
VImage thumbnail(VipsBlob* blob, int size, bool cover) {
  auto* options = VImage::option()
                      ->set("height", size)
                      ->set("size", cover ? VIPS_SIZE_BOTH : VIPS_SIZE_DOWN)
                      // A truncated or corrupt file is an error, not a half-grey thumbnail.
                      ->set("option_string", "fail_on=error");
  if (cover) options->set("crop", VIPS_INTERESTING_CENTRE);
  return to_srgb(VImage::thumbnail_buffer(blob, size, options));
}

}  // namespace

std::vector<Variant> make_variants(const std::string& original, std::uint64_t max_pixels) {
  try {
    // Header only: refuse a decompression bomb before decoding a pixel.
    auto header = VImage::new_from_buffer(original.data(), original.size(), "");
    const auto pixels = static_cast<std::uint64_t>(header.width()) * static_cast<std::uint64_t>(header.height());
    if (pixels > max_pixels) throw UndecodableImage("image has more than the allowed pixels");

    VipsBlob* blob = vips_blob_new(nullptr, original.data(), original.size());
    std::vector<Variant> out;
    try {
      auto thumb = thumbnail(blob, 256, true);
      out.push_back(Variant{"thumb", "image/webp",
                            take(thumb.webpsave_buffer(VImage::option()->set("Q", 80)->set("strip", true))),
                            thumb.width(), thumb.height()});
      auto preview = thumbnail(blob, 1280, false);
      if (preview.has_alpha())
        preview = preview.flatten(VImage::option()->set("background", std::vector<double>{255.0}));
      out.push_back(Variant{"preview", "image/jpeg",
                            take(preview.jpegsave_buffer(VImage::option()
                                                             ->set("Q", 82)
                                                             ->set("strip", true)
                                                             ->set("optimize_coding", true)
                                                             ->set("interlace", true))),
                            preview.width(), preview.height()});
    } catch (...) {
      vips_area_unref(VIPS_AREA(blob));
      throw;
    }
    vips_area_unref(VIPS_AREA(blob));
    return out;
  } catch (const vips::VError& e) {
    std::string reason = e.what();
    while (!reason.empty() && (reason.back() == '\n' || reason.back() == ' ')) reason.pop_back();
    vips_error_clear();
    throw UndecodableImage(reason.substr(0, 300));
  }
}

}  // namespace nimbus::worker
