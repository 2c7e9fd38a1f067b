// The worker's two variants, from images made here: their sizes for every shape and
// orientation (the original is decoded once, at the preview's scale), alpha, and the
// refusals (too many pixels, a truncated file).
#include "worker/thumbnails.hpp"

#include <string>
#include <vips/vips8>

#include <gtest/gtest.h>

using nimbus::images::Format;
using nimbus::worker::UndecodableImage;
using nimbus::worker::Variant;
using nimbus::worker::VariantCost;
using vips::VImage;

namespace {

// The images here are JPEG or PNG; the worker passes the format it sniffed.
std::vector<Variant> make_variants(const std::string& original, std::uint64_t max_pixels, VariantCost* cost = nullptr) {
  const auto format = !original.empty() && original[0] == '\x89' ? Format::png : Format::jpeg;
  return nimbus::worker::make_variants(original, format, max_pixels, cost);
}

class Thumbnails : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { nimbus::worker::init_vips("nimbus_thumbnails_tests"); }

  // A smooth gradient (so a decoder has real work), `bands` 3 or 4.
  static VImage picture(int width, int height, int bands = 3) {
    auto xy = VImage::xyz(width, height);
    auto r = xy[0] * (255.0 / width), g = xy[1] * (255.0 / height);
    auto image = r.bandjoin(g).bandjoin(r * 0.5 + 64);
    if (bands == 4) image = image.bandjoin(g);  // alpha: transparent along the top
    return image.cast(VIPS_FORMAT_UCHAR).copy(VImage::option()->set("interpretation", VIPS_INTERPRETATION_sRGB));
  }
  static std::string bytes(VipsBlob* blob) {
    std::size_t n = 0;
    const auto* data = static_cast<const char*>(vips_blob_get(blob, &n));
    std::string out(data, n);
    vips_area_unref(VIPS_AREA(blob));
    return out;
  }
  static std::string jpeg(const VImage& image) { return bytes(image.jpegsave_buffer(VImage::option()->set("Q", 90))); }
  static std::string png(const VImage& image) { return bytes(image.pngsave_buffer()); }

  static const Variant& named(const std::vector<Variant>& variants, const std::string& name) {
    for (const auto& v : variants) {
      if (v.name == name) return v;
    }
    throw std::runtime_error("no variant " + name);
  }
  // The variant decoded again: what a client gets.
  static VImage decoded(const Variant& v) { return VImage::new_from_buffer(v.data.data(), v.data.size(), ""); }

  static void expect_sizes(const std::string& original, int preview_w, int preview_h) {
    auto variants = make_variants(original, 100'000'000);
    ASSERT_EQ(variants.size(), 2u);
    const auto& thumb = named(variants, "thumb");
    const auto& preview = named(variants, "preview");
    EXPECT_EQ(thumb.content_type, "image/webp");
    EXPECT_EQ(preview.content_type, "image/jpeg");
    EXPECT_EQ(thumb.width, 256);
    EXPECT_EQ(thumb.height, 256);
    EXPECT_EQ(preview.width, preview_w);
    EXPECT_EQ(preview.height, preview_h);
    // The recorded sizes are the encoded ones.
    EXPECT_EQ(decoded(thumb).width(), 256);
    EXPECT_EQ(decoded(thumb).height(), 256);
    EXPECT_EQ(decoded(preview).width(), preview_w);
    EXPECT_EQ(decoded(preview).height(), preview_h);
  }
};

TEST_F(Thumbnails, ALargeJpegBecomesAPreviewWithinTheBoxAndASquareThumb) {
  expect_sizes(jpeg(picture(4000, 3000)), 1280, 960);  // shrunk by 2 on load, then resized
  expect_sizes(jpeg(picture(3000, 4000)), 960, 1280);
  expect_sizes(jpeg(picture(2560, 1920)), 1280, 960);  // exactly 2: the decoder does it all
  expect_sizes(jpeg(picture(10240, 640)), 1280, 80);   // shrunk by 8 on load
  expect_sizes(jpeg(picture(1281, 700)), 1280, 699);   // just over: no shrink on load
}

TEST_F(Thumbnails, ASmallImageIsNeverEnlargedForThePreviewButIsForTheThumb) {
  expect_sizes(jpeg(picture(200, 100)), 200, 100);
  expect_sizes(png(picture(1280, 1280)), 1280, 1280);
}

TEST_F(Thumbnails, TheExifOrientationIsApplied) {
  // Stored landscape, to be shown rotated a quarter turn: a portrait preview.
  auto image = picture(4000, 3000);
  image.set("orientation", 6);
  expect_sizes(bytes(image.jpegsave_buffer(VImage::option()->set("Q", 90))), 960, 1280);
}

TEST_F(Thumbnails, AlphaStaysInTheThumbAndIsFlattenedOnWhiteInThePreview) {
  auto variants = make_variants(png(picture(2000, 1000, 4)), 100'000'000);
  auto thumb = decoded(named(variants, "thumb"));
  auto preview = decoded(named(variants, "preview"));
  EXPECT_EQ(thumb.bands(), 4);
  EXPECT_EQ(preview.bands(), 3);
  EXPECT_EQ(preview.width(), 1280);
  // The top row was fully transparent: white in the preview.
  auto top = preview.getpoint(640, 0);
  for (double channel : top) EXPECT_GE(channel, 240.0);
}

TEST_F(Thumbnails, TheCostOfEachStageIsReported) {
  VariantCost cost;
  make_variants(jpeg(picture(4000, 3000)), 100'000'000, &cost);
  EXPECT_GT(cost.decode, 0.0);
  EXPECT_GT(cost.encode, 0.0);
}

TEST_F(Thumbnails, TooManyPixelsAreRefusedBeforeDecoding) {
  EXPECT_THROW(make_variants(jpeg(picture(4000, 3000)), 4000 * 3000 - 1), UndecodableImage);
}

TEST_F(Thumbnails, ATruncatedJpegIsAnErrorNotAHalfGreyImage) {
  auto whole = jpeg(picture(4000, 3000));
  EXPECT_THROW(make_variants(whole.substr(0, whole.size() / 2), 100'000'000), UndecodableImage);
  auto small = jpeg(picture(800, 600));
  EXPECT_THROW(make_variants(small.substr(0, small.size() / 2), 100'000'000), UndecodableImage);
}

// The loader is the checked format's: bytes that libvips would read as another format
// are refused, not decoded (issue 22, item 7).
TEST_F(Thumbnails, OnlyTheLoaderOfTheSniffedFormatReadsTheOriginal) {
  const auto original = png(picture(300, 200));
  EXPECT_EQ(nimbus::worker::make_variants(original, Format::png, 100'000'000).size(), 2u);
  for (Format other : {Format::jpeg, Format::gif, Format::webp, Format::heic}) {
    EXPECT_THROW(nimbus::worker::make_variants(original, other, 100'000'000), UndecodableImage);
  }
}

}  // namespace
