#include "worker/thumbnails.hpp"

#include <algorithm>
#include <chrono>
#include <malloc.h>
#include <string_view>
#include <vips/vips8>

namespace nimbus::worker {

using vips::VImage;

namespace {

// The libvips loader class of each accepted format (the HEIF family shares one), as
// init_vips allows them; libvips names the buffer loader <class>Buffer.
std::string_view loader_of(images::Format format) {
  switch (format) {
    case images::Format::jpeg:
      return "VipsForeignLoadJpeg";
    case images::Format::png:
      return "VipsForeignLoadPng";
    case images::Format::gif:
      return "VipsForeignLoadNsgif";
    case images::Format::webp:
      return "VipsForeignLoadWebp";
    case images::Format::avif:
    case images::Format::heic:
      return "VipsForeignLoadHeif";
  }
  return "";
}

}  // namespace

void init_vips(const char* argv0) {
  // Image buffers (an original, a decoded preview: megabytes each) are mapped and
  // unmapped, so a worker's memory goes back after each job. Left to itself, glibc
  // raises its mmap threshold to the largest block freed so far, and from then on
  // these buffers come from per-thread arenas, which keep their high-water marks: a
  // worker's peak RSS crept up run after run (142 → 236 → 298 MB over three runs of
  // bench/images.py). Measured with nimbus-bench-variants, 60 files, 4 threads: peak
  // RSS 189 MB instead of 286–294 MB, for about 7 % more CPU (mapping fresh pages).
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  if (VIPS_INIT(argv0) != 0) throw std::runtime_error("libvips failed to start");
  vips_cache_set_max(0);  // jobs never repeat an operation; the cache would only hold memory
  vips_concurrency_set(1);
  vips_block_untrusted_set(TRUE);
  vips_operation_block_set("VipsForeignLoad", TRUE);
  for (auto format :
       {images::Format::jpeg, images::Format::png, images::Format::gif, images::Format::webp, images::Format::heic}) {
    vips_operation_block_set(std::string(loader_of(format)).c_str(), FALSE);
  }
}

std::string libvips_version() {
  return vips_version_string();
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

constexpr int kPreview = 1280, kThumb = 256;

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// The original at the preview's size: within kPreview×kPreview, never enlarged, upright.
//
// libvips' thumbnail keeps a factor of two for its own resize when it picks a JPEG's
// shrink-on-load, so a 12 MP photo is decoded whole for a 1280 px preview. Here the
// decoder's DCT scaling takes the largest power of two that still leaves at least the
// preview's size (what sharp does by default), and a Lanczos-3 resize does the rest.
// Other formats go through libvips' thumbnail, which shrinks on load where it can.
VImage preview_scale(VipsBlob* blob, const VImage& header) {
  if (std::string_view(header.get_string("vips-loader")) != "jpegload_buffer") {
    return to_srgb(VImage::thumbnail_buffer(blob, kPreview,
                                            VImage::option()
                                                ->set("height", kPreview)
                                                ->set("size", VIPS_SIZE_DOWN)
                                                // A truncated or corrupt file is an error, not a half-grey image.
                                                ->set("option_string", "fail_on=error")));
  }
  const double over = static_cast<double>(std::max(header.width(), header.height())) / kPreview;
  int shrink = 1;
  for (const int factor : {8, 4, 2}) {
    if (factor <= over) {
      shrink = factor;
      break;
    }
  }
  auto image =
      VImage::jpegload_buffer(blob, VImage::option()->set("shrink", shrink)->set("fail_on", VIPS_FAIL_ON_ERROR));
  image = to_srgb(image.autorot());
  const double scale = static_cast<double>(kPreview) / std::max(image.width(), image.height());
  if (scale < 1.0) image = image.resize(scale, VImage::option()->set("kernel", VIPS_KERNEL_LANCZOS3));
  return image;
}

// Exactly kThumb×kThumb, cropped to the centre (enlarging a smaller image); the preview
// is sRGB already.
VImage thumb_of(const VImage& preview) {
  return preview.thumbnail_image(
      kThumb,
      VImage::option()->set("height", kThumb)->set("size", VIPS_SIZE_BOTH)->set("crop", VIPS_INTERESTING_CENTRE));
}

}  // namespace

std::vector<Variant> make_variants(const std::string& original, images::Format format, std::uint64_t max_pixels,
                                   VariantCost* cost) {
  try {
    const auto began = std::chrono::steady_clock::now();
    // libvips picks a loader by the bytes, for the header and again in thumbnail: both
    // must be the sniffed format's, or nothing is decoded.
    const char* found = vips_foreign_find_load_buffer(original.data(), original.size());
    vips_error_clear();
    if (found == nullptr || std::string_view(found) != std::string(loader_of(format)) + "Buffer") {
      throw UndecodableImage("the original is not what it was checked to be: libvips would read it with " +
                             (found ? std::string(found) : std::string("no loader")) + ", not " +
                             std::string(loader_of(format)));
    }
    // Header only: refuse a decompression bomb before decoding a pixel. Sequential: the
    // decode that follows reads top to bottom where the format allows.
    auto header = VImage::new_from_buffer(original.data(), original.size(), "",
                                          VImage::option()->set("access", VIPS_ACCESS_SEQUENTIAL));
    const auto pixels = static_cast<std::uint64_t>(header.width()) * static_cast<std::uint64_t>(header.height());
    if (pixels > max_pixels) throw UndecodableImage("image has more than the allowed pixels");

    VipsBlob* blob = vips_blob_new(nullptr, original.data(), original.size());
    std::vector<Variant> out;
    try {
      // Decoded once, into memory: both variants are made from these pixels.
      auto preview = preview_scale(blob, header).copy_memory();
      auto thumb = thumb_of(preview).copy_memory();
      const auto decoded = std::chrono::steady_clock::now();
      out.push_back(Variant{"thumb", "image/webp",
                            take(thumb.webpsave_buffer(VImage::option()->set("Q", 80)->set("strip", true))),
                            thumb.width(), thumb.height()});
      if (preview.has_alpha())
        preview = preview.flatten(VImage::option()->set("background", std::vector<double>{255.0}));
      out.push_back(Variant{"preview", "image/jpeg",
                            take(preview.jpegsave_buffer(VImage::option()
                                                             ->set("Q", 82)
                                                             ->set("strip", true)
                                                             ->set("optimize_coding", true)
                                                             ->set("interlace", true))),
                            preview.width(), preview.height()});
      if (cost != nullptr) *cost = VariantCost{seconds_since(began) - seconds_since(decoded), seconds_since(decoded)};
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
