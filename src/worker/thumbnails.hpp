// libvips, and only here: the variants of an image, from its bytes. Pure CPU work on
// the calling thread (one libvips thread per job), no I/O.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "images/sniff.hpp"

namespace nimbus::worker {

struct Variant {
  std::string name, content_type, data;
  int width = 0, height = 0;
};

// An image that will not or cannot become variants; retrying will not help.
class UndecodableImage : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Once per process, before any job: loaders limited to JPEG, PNG, GIF, WebP and HEIF,
// untrusted loaders blocked, operation cache off, one libvips thread per job.
void init_vips(const char* argv0);
// The libvips version this process runs, e.g. "8.14.1".
std::string libvips_version();

// Where a job's time went, in seconds: decoding and resizing, then encoding the two
// variants. Wall time: libvips computes on threads of its own pool, so the calling
// thread's CPU clock would miss it; with one job per core it is close to CPU time.
struct VariantCost {
  double decode = 0, encode = 0;
};

// thumb: 256×256 cover crop, WebP q80. preview: within 1280×1280, JPEG q82. Both
// auto-rotated by EXIF orientation, sRGB, metadata stripped, first frame only.
// The original is decoded once, at the preview's scale (a JPEG by the decoder's own
// DCT scaling); the thumbnail is made from the preview. Only the loader of `format` (the
// format the upload was checked to be, sniffed again from the bytes) reads it: bytes
// that libvips would take for another format are refused, never decoded. Throws
// UndecodableImage.
std::vector<Variant> make_variants(const std::string& original, images::Format format, std::uint64_t max_pixels,
                                   VariantCost* cost = nullptr);

}  // namespace nimbus::worker
