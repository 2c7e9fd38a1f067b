// Upload sniffing and multipart framing, on bytes made here (and, for the endings of a
// form, through the upload's FileReader over a scripted body).
#include <boost/asio/io_context.hpp>
#include <limits>

#include <gtest/gtest.h>

#include "images/multipart.hpp"
#include "images/sniff.hpp"
#include "images/upload.hpp"
#include "support/run.hpp"
#include "support/scripted_body.hpp"

using namespace nimbus::images;

namespace {

std::string bytes(std::initializer_list<int> values) {
  std::string out;
  for (int v : values) out.push_back(static_cast<char>(v));
  return out;
}

std::string be32(std::uint32_t v) {
  return bytes({static_cast<int>(v >> 24), static_cast<int>((v >> 16) & 0xFF), static_cast<int>((v >> 8) & 0xFF),
                static_cast<int>(v & 0xFF)});
}

std::string png_head(std::uint32_t w, std::uint32_t h, int depth = 8, int colour = 2, int interlace = 0) {
  return std::string("\x89PNG\r\n\x1a\n", 8) + be32(13) + "IHDR" + be32(w) + be32(h) +
         bytes({depth, colour, 0, 0, interlace});
}

// SOI, an APP1 segment of `app_len` bytes, then a frame header (baseline SOF0, or
// progressive SOF2) of three components sampled 4:2:0.
std::string jpeg_head(int w, int h, int app_len, int sof = 0xC0) {
  std::string s = bytes({0xFF, 0xD8, 0xFF, 0xE1, (app_len + 2) >> 8, (app_len + 2) & 0xFF});
  s += std::string(static_cast<std::size_t>(app_len), 'x');
  s += bytes({0xFF, sof, 0x00, 0x11, 0x08, h >> 8, h & 0xFF, w >> 8, w & 0xFF, 0x03});
  s += bytes({1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1});
  return s;
}

std::string box(std::string_view type, const std::string& body, bool full = false) {
  const std::string payload = (full ? std::string(4, '\0') : std::string()) + body;
  return be32(static_cast<std::uint32_t>(8 + payload.size())) + std::string(type) + payload;
}

// ftyp, then meta → iprp → ipco with a thumbnail's and the primary image's ispe, then mdat.
std::string heif(std::string_view brand, std::uint32_t w, std::uint32_t h, std::size_t pixels_bytes) {
  const std::string ispe_small = box("ispe", be32(160) + be32(120), true);
  const std::string ispe = box("ispe", be32(w) + be32(h), true);
  return box("ftyp", std::string(brand) + be32(0) + "mif1" + "miaf") +
         box("meta", box("hdlr", std::string(20, '\0'), true) + box("iprp", box("ipco", ispe_small + ispe)), true) +
         box("mdat", std::string(pixels_bytes, 'p'));
}

TEST(Sniff, KnowsTheHeifFamilyAndReadsItsPrimarySize) {
  const auto avif = heif("avif", 8000, 6000, 100);
  EXPECT_EQ(sniff(avif), Format::avif);
  EXPECT_EQ(sniff(heif("heic", 1, 1, 1)), Format::heic);
  EXPECT_EQ(sniff(heif("mp42", 1, 1, 1)), std::nullopt) << "a video is not an image";
  auto header = read_header(Format::avif, avif);
  ASSERT_EQ(header.state, HeaderState::ok);
  EXPECT_EQ(header.size.width, 8000U);
  EXPECT_EQ(header.size.height, 6000U);
  EXPECT_EQ(read_header(Format::avif, avif.substr(0, 40)).state, HeaderState::need_more);
  EXPECT_TRUE(ends_complete(Format::avif, "", avif.size(), avif));
  EXPECT_FALSE(ends_complete(Format::avif, "", avif.size() - 10, avif.substr(0, avif.size() - 10)));
}

TEST(Sniff, KnowsTheFourFormatsByTheirBytesAlone) {
  EXPECT_EQ(sniff(jpeg_head(1, 1, 4)), Format::jpeg);
  EXPECT_EQ(sniff(png_head(1, 1)), Format::png);
  EXPECT_EQ(sniff(std::string("GIF89a\x01\x00\x01\x00\x00\x00", 12)), Format::gif);
  EXPECT_EQ(sniff(std::string("RIFF\x10\x00\x00\x00WEBPVP8 ", 16)), Format::webp);
  EXPECT_FALSE(sniff("<svg xmlns=\"http://www.w3.org/2000/svg\">"));
  EXPECT_FALSE(sniff("<?xml version=\"1.0\"?><svg>"));
  EXPECT_FALSE(sniff(std::string("MZ\x90\x00", 4) + std::string(20, '\0')));
  EXPECT_FALSE(sniff("II*\x00\x08\x00\x00\x00\x00\x00\x00\x00"));  // TIFF
  EXPECT_FALSE(sniff(""));
}

TEST(Sniff, ReadsDimensionsFromTheHeaderOnly) {
  auto png = read_header(Format::png, png_head(100000, 100000));
  EXPECT_EQ(png.state, HeaderState::ok);
  EXPECT_EQ(png.size.width, 100000U);
  auto jpeg = read_header(Format::jpeg, jpeg_head(4000, 3000, 30000));
  EXPECT_EQ(jpeg.state, HeaderState::ok);
  EXPECT_EQ(jpeg.size.width, 4000U);
  EXPECT_EQ(jpeg.size.height, 3000U);
  // The frame header past the bytes at hand: read more.
  EXPECT_EQ(read_header(Format::jpeg, jpeg_head(4000, 3000, 30000).substr(0, 20000)).state, HeaderState::need_more);
  EXPECT_EQ(read_header(Format::png, png_head(1, 1).substr(0, 20)).state, HeaderState::need_more);
  EXPECT_EQ(read_header(Format::png, png_head(0, 10)).state, HeaderState::corrupt);
  EXPECT_EQ(read_header(Format::jpeg, bytes({0xFF, 0xD8, 0xFF, 0xDA, 0, 4, 0, 0})).state, HeaderState::corrupt);
  EXPECT_EQ(read_header(Format::gif, std::string("GIF89a") + bytes({0x40, 0x01, 0xF0, 0x00})).size.width, 320U);
}

TEST(Sniff, TellsTruncatedFilesByTheirEnding) {
  const std::string iend = std::string("\0\0\0\0IEND\xAE\x42\x60\x82", 12);
  EXPECT_TRUE(ends_complete(Format::png, "....." + iend, 100, ""));
  EXPECT_FALSE(ends_complete(Format::png, iend.substr(0, 10), 100, ""));
  EXPECT_TRUE(ends_complete(Format::jpeg, "abc\xFF\xD9", 100, ""));
  EXPECT_FALSE(ends_complete(Format::jpeg, "abcdef", 100, ""));
  EXPECT_TRUE(ends_complete(Format::gif, "..;", 10, ""));
  const std::string riff = std::string("RIFF") + bytes({92, 0, 0, 0}) + "WEBP";
  EXPECT_TRUE(ends_complete(Format::webp, "", 100, riff));
  EXPECT_FALSE(ends_complete(Format::webp, "", 99, riff));
}

TEST(Multipart, FindsTheFileFieldAfterOtherFields) {
  EXPECT_EQ(form_boundary("multipart/form-data; boundary=abc123"), "abc123");
  EXPECT_EQ(form_boundary("Multipart/Form-Data; charset=utf-8; boundary=\"a b\""), "a b");
  EXPECT_FALSE(form_boundary("image/png"));
  EXPECT_FALSE(form_boundary("multipart/form-data"));
  const std::string body =
      "--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhello\r\n"
      "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
      "Content-Type: image/png\r\n\r\nDATA\r\n--XyZ--\r\n";
  auto part = find_file_part(body, "XyZ");
  ASSERT_EQ(part.state, FilePart::State::found);
  EXPECT_EQ(body.substr(part.data_offset, 4), "DATA");
  EXPECT_EQ(body.size() - part.data_offset - closing_trailer("XyZ").size(), 4U);
  EXPECT_EQ(find_file_part(body.substr(0, 60), "XyZ").state, FilePart::State::need_more);
  EXPECT_EQ(find_file_part("--XyZ--\r\n", "XyZ").state, FilePart::State::missing);
  EXPECT_EQ(
      find_file_part("--XyZ\r\nContent-Disposition: form-data; name=\"filex\"\r\n\r\n1\r\n--XyZ--\r\n", "XyZ").state,
      FilePart::State::missing);
  EXPECT_EQ(find_file_part("--XyZ garbage", "XyZ").state, FilePart::State::malformed);
}

TEST(Multipart, SeesADelimiterSplitAcrossChunks) {
  DelimiterScan scan("XyZ");
  EXPECT_FALSE(scan.feed("image bytes \r"));
  EXPECT_FALSE(scan.feed("\n-"));
  EXPECT_TRUE(scan.feed("-XyZ\r\nContent-Disposition: form-data; name=\"more\""));
  DelimiterScan clean("XyZ");
  EXPECT_FALSE(clean.feed(std::string(100000, 'a') + "\r\n--XyY"));
}

}  // namespace

namespace {

std::string be64(std::uint64_t v) {
  return be32(static_cast<std::uint32_t>(v >> 32)) + be32(static_cast<std::uint32_t>(v));
}

// Issue 10, item 1: 32 bytes — ftyp heic, then a box whose 64-bit size wraps
// `start + size` — made the box walk loop forever on the I/O thread.
TEST(SniffHostile, AHeifBoxWhoseSizeWrapsIsCorruptNotAHang) {
  const std::string file = box("ftyp", std::string("heic") + be32(0)) + be32(1) + "free" + be64(0xFFFFFFFFFFFFFFF0ULL);
  ASSERT_EQ(file.size(), 32U);
  ASSERT_EQ(sniff(file), Format::heic);
  EXPECT_EQ(read_header(Format::heic, file).state, HeaderState::corrupt);
  EXPECT_FALSE(ends_complete(Format::heic, file, file.size(), file));
  const std::string meta = box("ftyp", std::string("heic") + be32(0)) + be32(1) + "meta" + be64(0xFFFFFFFFFFFFFFF8ULL);
  EXPECT_EQ(read_header(Format::heic, meta).state, HeaderState::corrupt);
  EXPECT_FALSE(ends_complete(Format::heic, meta, meta.size(), meta));
}

}  // namespace

namespace {

std::string ftyp(std::string_view brand) {
  return box("ftyp", std::string(brand) + be32(0) + "mif1");
}
std::string heif_meta(std::uint32_t w, std::uint32_t h) {
  return box("meta",
             box("hdlr", std::string(20, '\0'), true) + box("iprp", box("ipco", box("ispe", be32(w) + be32(h), true))),
             true);
}

// Every decision but need_more is final: more bytes never change it.
void expect_prefixes_agree(Format f, const std::string& file) {
  const auto whole = read_header(f, file);
  for (std::size_t n = 0; n <= file.size(); ++n) {
    const auto part = read_header(f, std::string_view(file).substr(0, n));
    if (part.state == HeaderState::need_more) continue;
    ASSERT_EQ(part.state, whole.state) << "prefix of " << n << " bytes";
    EXPECT_EQ(part.size.width, whole.size.width);
    EXPECT_EQ(part.size.height, whole.size.height);
    EXPECT_EQ(decode_cost(part), decode_cost(whole)) << "prefix of " << n << " bytes";
  }
}

TEST(SniffHostile, HeifBoxesThatDoNotFitAreCorrupt) {
  const auto head = ftyp("heic");
  // Smaller than its own header; 64-bit size smaller than the 16-byte header.
  EXPECT_EQ(read_header(Format::heic, head + be32(4) + "free" + heif_meta(1, 1)).state, HeaderState::corrupt);
  EXPECT_EQ(read_header(Format::heic, head + be32(1) + "free" + be64(12) + heif_meta(1, 1)).state,
            HeaderState::corrupt);
  // A child larger than its parent.
  const std::string ispe_too_big = be32(200) + "ispe" + std::string(4, '\0') + be32(10) + be32(10);
  EXPECT_EQ(read_header(Format::heic, head + box("meta", box("iprp", box("ipco", ispe_too_big)), true)).state,
            HeaderState::corrupt);
  // meta without room for its version and flags; an ispe without room for its sizes.
  EXPECT_EQ(read_header(Format::heic, head + be32(10) + "meta" + "\0\0" + heif_meta(1, 1)).state, HeaderState::corrupt);
  EXPECT_EQ(
      read_header(Format::heic, head + box("meta", box("iprp", box("ipco", box("ispe", be32(7), true))), true)).state,
      HeaderState::corrupt);
  // A meta with no size at all.
  EXPECT_EQ(read_header(Format::heic, head + box("meta", box("hdlr", std::string(20, '\0'), true), true)).state,
            HeaderState::corrupt);
}

TEST(SniffHostile, HeifBoxCountIsBounded) {
  std::string many = ftyp("heic");
  for (int i = 0; i < 5000; ++i) many += box("free", "");
  many += heif_meta(10, 10);
  EXPECT_EQ(read_header(Format::heic, many).state, HeaderState::corrupt);
  std::string props;
  for (int i = 0; i < 5000; ++i) props += box("free", "");
  const auto wide = ftyp("heic") + box("meta", box("iprp", box("ipco", props)), true);
  EXPECT_EQ(read_header(Format::heic, wide).state, HeaderState::corrupt);
}

// Issue 10, item 10: pixels first, description after them.
TEST(SniffHostile, HeifWithMdatBeforeMetaIsReadWhenTheMetaIsInTheHead) {
  const auto file = ftyp("avif") + box("mdat", std::string(300, 'p')) + heif_meta(640, 480);
  const auto header = read_header(Format::avif, file);
  ASSERT_EQ(header.state, HeaderState::ok);
  EXPECT_EQ(header.size.width, 640U);
  EXPECT_EQ(header.size.height, 480U);
  EXPECT_TRUE(ends_complete(Format::avif, "", file.size(), file));
  expect_prefixes_agree(Format::avif, file);
  // The meta past the bytes at hand: read more (the caller refuses at its head limit).
  EXPECT_EQ(read_header(Format::avif, file.substr(0, 200)).state, HeaderState::need_more);
  EXPECT_EQ(read_header(Format::avif, file.substr(0, file.size() - 3)).state, HeaderState::need_more);
  // An mdat that runs to the end of the file leaves no room for a meta.
  EXPECT_EQ(read_header(Format::avif, ftyp("avif") + be32(0) + "mdat" + std::string(100, 'p')).state,
            HeaderState::corrupt);
}

TEST(SniffHostile, HeifEndingCheckWalksBoxesSafely) {
  const auto file = heif("heic", 100, 100, 50);
  EXPECT_TRUE(ends_complete(Format::heic, "", file.size(), file));
  EXPECT_FALSE(ends_complete(Format::heic, "", file.size() - 1, file.substr(0, file.size() - 1)));
  // The head ends inside a box that fits the file: cannot tell, so not refused.
  EXPECT_TRUE(ends_complete(Format::heic, "", file.size(), file.substr(0, 40)));
  EXPECT_FALSE(ends_complete(Format::heic, "", file.size(), ftyp("heic") + be32(3) + "free"));
  std::string many = ftyp("heic");
  for (int i = 0; i < 5000; ++i) many += box("free", "");
  EXPECT_FALSE(ends_complete(Format::heic, "", many.size(), many));
}

TEST(SniffHostile, JpegSegmentsAreBoundedAndChecked) {
  std::string many = bytes({0xFF, 0xD8});
  for (int i = 0; i < 600; ++i) many += bytes({0xFF, 0xFE, 0x00, 0x02});  // empty comments
  many += bytes({0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00, 0x10, 0x00, 0x10, 0x03});
  EXPECT_EQ(read_header(Format::jpeg, many).state, HeaderState::corrupt);
  // Fill bytes are not segments.
  std::string filled = bytes({0xFF, 0xD8}) + std::string(5000, '\xFF') + jpeg_head(16, 16, 4).substr(2);
  EXPECT_EQ(read_header(Format::jpeg, filled).state, HeaderState::ok);
  // A frame header too short for its sizes; a stuffed zero where a marker must be.
  EXPECT_EQ(read_header(Format::jpeg, bytes({0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x02, 0x08, 0x00, 0x10, 0x00, 0x10})).state,
            HeaderState::corrupt);
  EXPECT_EQ(read_header(Format::jpeg, bytes({0xFF, 0xD8, 0xFF, 0x00, 0x00, 0x04, 0, 0})).state, HeaderState::corrupt);
  expect_prefixes_agree(Format::jpeg, jpeg_head(300, 200, 100));
}

TEST(SniffHostile, PngHeaderMustBeAnIhdrOfItsSize) {
  auto wrong_length = png_head(10, 10);
  wrong_length[11] = 12;
  EXPECT_EQ(read_header(Format::png, wrong_length).state, HeaderState::corrupt);
  EXPECT_EQ(read_header(Format::png, png_head(0x80000000U, 1)).state, HeaderState::corrupt);
  expect_prefixes_agree(Format::png, png_head(20, 30));
}

TEST(SniffHostile, HeifBrandsAreReadWithinTheFtypBoxOnly) {
  // The major brand is in the first 12 bytes, as sniff's contract says.
  EXPECT_EQ(sniff(be32(24) + "ftypheic"), Format::heic);
  EXPECT_EQ(sniff(be32(8) + "ftypheic" + "heic"), std::nullopt) << "ftyp too short for a brand";
  EXPECT_EQ(sniff(be32(1) + "ftypheic" + be32(0) + be32(32)), std::nullopt) << "64-bit ftyp";
  EXPECT_EQ(sniff(be32(20) + "ftypmif1" + be32(0) + "avif"), Format::avif);
  EXPECT_EQ(sniff(be32(16) + "ftypmif1" + be32(0) + "avif"), std::nullopt) << "brand past the box";
  expect_prefixes_agree(Format::heic, heif("heic", 4032, 3024, 10));
}

TEST(Multipart, ReadsOnlyWellFormedBoundaries) {
  EXPECT_FALSE(form_boundary("multipart/form-data; boundary=\"a\r\nb\""));
  EXPECT_FALSE(form_boundary("multipart/form-data; boundary=\"ab \"")) << "a space may not end it";
  EXPECT_FALSE(form_boundary("xmultipart/form-data-x; boundary=abc"));
  EXPECT_FALSE(form_boundary("multipart/form-data; boundary=" + std::string(71, 'a')));
  EXPECT_EQ(form_boundary("multipart/form-data ; BOUNDARY=abc"), "abc");
  EXPECT_EQ(form_boundary("multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW"),
            "----WebKitFormBoundary7MA4YWxkTrZu0gW");
  EXPECT_FALSE(form_boundary("multipart/form-data; \xC4\xB0=1; boundary=abc\xFF"));
}

TEST(Multipart, FieldNamesComeFromTheirParameterOnly) {
  // "name=file" inside a quoted filename is not the field's name.
  const std::string decoy =
      "--B\r\nContent-Disposition: form-data; filename=\"x; name=file\"; name=\"photo\"\r\n\r\nDATA\r\n--B--\r\n";
  EXPECT_EQ(find_file_part(decoy, "B").state, FilePart::State::missing);
  // A part with no headers at all: its body is not a head.
  const std::string headless = "--B\r\n\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nDATA\r\n--B--\r\n";
  EXPECT_EQ(find_file_part(headless, "B").state, FilePart::State::missing);
  // Bytes >= 0x80 in a header.
  const std::string utf8 =
      "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\xC3\xA9\xFF.png\"\r\n\r\nDATA\r\n--B--\r\n";
  auto part = find_file_part(utf8, "B");
  ASSERT_EQ(part.state, FilePart::State::found);
  EXPECT_EQ(utf8.substr(part.data_offset, 4), "DATA");
}

TEST(Multipart, TheFirstDelimiterStartsALine) {
  const std::string part = "--B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nDATA\r\n--B--\r\n";
  EXPECT_EQ(find_file_part("junk--B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nX", "B").state,
            FilePart::State::need_more);
  auto after_preamble = find_file_part("preamble\r\n" + part, "B");
  ASSERT_EQ(after_preamble.state, FilePart::State::found);
  // A preamble longer than allowed is refused, however the body is cut.
  const std::string long_preamble = std::string(5000, 'p') + "\r\n" + part;
  EXPECT_EQ(find_file_part(long_preamble, "B").state, FilePart::State::malformed);
  for (std::size_t n = 0; n <= long_preamble.size(); n += 97) {
    auto s = find_file_part(std::string_view(long_preamble).substr(0, n), "B").state;
    EXPECT_TRUE(s == FilePart::State::need_more || s == FilePart::State::malformed) << n;
  }
}

// Issue 10, item 10: the file's size follows from Content-Length only with the exact
// closing delimiter; any other ending leaves other bytes where the trailer must be.
TEST(Multipart, OnlyTheExactClosingDelimiterEndsTheFile) {
  EXPECT_EQ(closing_trailer("XyZ"), "\r\n--XyZ--\r\n");
  const std::string head = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n";
  const std::string file = "\x89PNG-bytes\r\n--XyY";
  for (const std::string ending :
       {"\r\n--XyZ--", "\r\n--XyZ--\r\n\r\n", "\r\n--XyZ\r\n", "--XyZ--\r\n", "", "\r\n--XyZ--\r\nepilogue"}) {
    const auto body = head + file + ending;
    auto part = find_file_part(body, "XyZ");
    ASSERT_EQ(part.state, FilePart::State::found);
    const auto trailer = closing_trailer("XyZ");
    if (part.data_offset + trailer.size() > body.size()) continue;  // refused before any byte
    const auto size = body.size() - part.data_offset - trailer.size();
    EXPECT_NE(body.substr(part.data_offset + size), trailer) << ending;
  }
  const auto good = head + file + closing_trailer("XyZ");
  auto part = find_file_part(good, "XyZ");
  ASSERT_EQ(part.state, FilePart::State::found);
  EXPECT_EQ(good.substr(good.size() - closing_trailer("XyZ").size()), closing_trailer("XyZ"));
  DelimiterScan scan("XyZ");
  EXPECT_FALSE(scan.feed(good.substr(part.data_offset, file.size())));
}

}  // namespace

// The same endings through the reader the upload route uses: every ending but the
// exact close delimiter is a layout error (400), however the body is cut into reads.
namespace {

using Pieces = nimbus::test::ScriptedBody;

// "ok", "refused" or "layout" and, for "ok", the file's bytes.
std::pair<std::string, std::string> read_form(const std::string& body, std::size_t piece) {
  boost::asio::io_context ioc;
  return nimbus::test::run(ioc, [&]() -> boost::asio::awaitable<std::pair<std::string, std::string>> {
    Pieces source(body, piece);
    FileReader reader(source, body.size(), std::string("XyZ"));
    if (co_await reader.open()) co_return std::pair<std::string, std::string>{"refused", ""};
    std::string file;
    try {
      for (auto chunk = co_await reader.next(); !chunk.empty(); chunk = co_await reader.next()) file += chunk;
    } catch (const FileReader::LayoutError&) {
      co_return std::pair<std::string, std::string>{"layout", ""};
    }
    co_return std::pair<std::string, std::string>{"ok", file};
  });
}

TEST(Multipart, AFormEndingWithoutTheExactCloseDelimiterIsALayoutError) {
  const std::string head = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n";
  const std::string file = png_head(3, 2) + std::string(300, 'd') + "\r\n--XyY";
  for (std::size_t piece : {1, 7, 64, 100000}) {
    EXPECT_EQ(read_form(head + file + "\r\n--XyZ--\r\n", piece), std::make_pair(std::string("ok"), file)) << piece;
    for (const std::string ending : {"\r\n--XyZ--", "\r\n--XyZ--\r\n\r\n", "\r\n--XyZ\r\n", "--XyZ--\r\n",
                                     "\r\n--XyZ--\r\nepilogue", "\r\n--XYZ--\r\n", "", "\r\n"}) {
      const auto outcome = read_form(head + file + ending, piece).first;
      EXPECT_TRUE(outcome == "layout" || outcome == "refused")
          << "ending " << testing::PrintToString(ending) << ", " << piece << "-byte reads: " << outcome;
    }
  }
}

// --- What a decode costs, from the header (issue 22, item 7) ---

constexpr std::uint64_t kMiB = 1024 * 1024;

TEST(DecodeCost, AnInterlacedPngHoldsItsWholeFrameAPlainOneStreams) {
  // 48 MP, RGBA, 16 bits: within the pixel limit, 384 MB decoded, held twice (alpha).
  const auto interlaced = read_header(Format::png, png_head(8000, 6000, 16, 6, 1));
  ASSERT_EQ(interlaced.state, HeaderState::ok);
  EXPECT_EQ(decode_cost(interlaced), 8000ULL * 6000 * 4 * 2 * 2);
  const auto plain = read_header(Format::png, png_head(8000, 6000, 16, 6, 0));
  EXPECT_EQ(decode_cost(plain), 8000ULL * 4 * 2 * kStripRows) << "a strip of rows, not the frame";
  // Bands by colour type; depths below 8 decode to 8 bits; a palette may gain alpha.
  EXPECT_EQ(decode_cost(read_header(Format::png, png_head(1000, 1000, 8, 0, 1))), 1000ULL * 1000);
  EXPECT_EQ(decode_cost(read_header(Format::png, png_head(1000, 1000, 1, 0, 1))), 1000ULL * 1000);
  EXPECT_EQ(decode_cost(read_header(Format::png, png_head(1000, 1000, 8, 2, 1))), 3ULL * 1000 * 1000);
  EXPECT_EQ(decode_cost(read_header(Format::png, png_head(1000, 1000, 4, 3, 1))), 2 * 4ULL * 1000 * 1000);
  EXPECT_EQ(decode_cost(read_header(Format::png, png_head(1000, 1000, 16, 4, 1))), 2 * 4ULL * 1000 * 1000);
  expect_prefixes_agree(Format::png, png_head(8000, 6000, 16, 6, 1));
}

TEST(DecodeCost, PngHeadersWithoutSuchAColourDepthOrInterlaceAreCorrupt) {
  EXPECT_EQ(read_header(Format::png, png_head(10, 10, 4, 2, 0)).state, HeaderState::corrupt);  // RGB at 4 bits
  EXPECT_EQ(read_header(Format::png, png_head(10, 10, 16, 3, 0)).state, HeaderState::corrupt);
  EXPECT_EQ(read_header(Format::png, png_head(10, 10, 8, 5, 0)).state, HeaderState::corrupt);
  EXPECT_EQ(read_header(Format::png, png_head(10, 10, 8, 2, 2)).state, HeaderState::corrupt);
  EXPECT_EQ(read_header(Format::png, png_head(10, 10).substr(0, 28)).state, HeaderState::need_more);
}

TEST(DecodeCost, AProgressiveJpegHoldsItsCoefficientsABaselineOneStreams) {
  // 4:2:0: 1.5 samples a pixel, 2 bytes each.
  const auto progressive = read_header(Format::jpeg, jpeg_head(8000, 6000, 100, 0xC2));
  ASSERT_EQ(progressive.state, HeaderState::ok);
  EXPECT_EQ(decode_cost(progressive), 8000ULL * 6000 * 3);
  const auto baseline = read_header(Format::jpeg, jpeg_head(8000, 6000, 100));
  EXPECT_EQ(decode_cost(baseline), 8000ULL * 3 * kStripRows);
  // Unsampled (4:4:4): 3 samples a pixel.
  auto full = jpeg_head(1000, 1000, 10, 0xC2);
  full[full.size() - 8] = 0x11;
  EXPECT_EQ(decode_cost(read_header(Format::jpeg, full)), 1000ULL * 1000 * 6);
  expect_prefixes_agree(Format::jpeg, jpeg_head(8000, 6000, 100, 0xC2));
}

TEST(DecodeCost, JpegFrameComponentsAreChecked) {
  auto none = jpeg_head(100, 100, 4);
  none[none.size() - 10] = 0;  // no components
  EXPECT_EQ(read_header(Format::jpeg, none).state, HeaderState::corrupt);
  auto zero_factor = jpeg_head(100, 100, 4);
  zero_factor[zero_factor.size() - 8] = 0x02;
  EXPECT_EQ(read_header(Format::jpeg, zero_factor).state, HeaderState::corrupt);
  // The frame's components past the bytes at hand: read more.
  EXPECT_EQ(read_header(Format::jpeg, jpeg_head(100, 100, 4).substr(0, 20)).state, HeaderState::need_more);
}

TEST(DecodeCost, AGifDecodesOntoAWholeRgbaCanvas) {
  const auto gif = read_header(Format::gif, std::string("GIF89a") + bytes({0x40, 0x1F, 0x70, 0x17}));
  ASSERT_EQ(gif.state, HeaderState::ok);
  EXPECT_EQ(decode_cost(gif), 8000ULL * 6000 * 4);
}

TEST(DecodeCost, WebpLossyStreamsLosslessAndExtendedHoldTheFrame) {
  std::string lossy = std::string("RIFF") + bytes({0, 0, 0, 0}) + "WEBPVP8 " + bytes({0, 0, 0, 0, 0, 0, 0});
  lossy += bytes({0x9D, 0x01, 0x2A, 0x40, 0x1F, 0x70, 0x17});
  EXPECT_EQ(decode_cost(read_header(Format::webp, lossy)), 8000ULL * 3 * kStripRows);
  // VP8X: width and height minus one, 24 bits each.
  std::string extended = std::string("RIFF") + bytes({0, 0, 0, 0}) + "WEBPVP8X" + bytes({10, 0, 0, 0, 0x02, 0, 0, 0});
  extended += bytes({0x3F, 0x1F, 0x00, 0x6F, 0x17, 0x00});
  const auto header = read_header(Format::webp, extended);
  ASSERT_EQ(header.state, HeaderState::ok);
  EXPECT_EQ(decode_cost(header), 8000ULL * 6000 * 4);
}

TEST(DecodeCost, AHeifHoldsItsPlanesAndItsImageDeeperWithMoreBits) {
  EXPECT_EQ(decode_cost(read_header(Format::avif, heif("avif", 8000, 6000, 10))), 8000ULL * 6000 * 9 / 2);
  // 10 bits a channel (pixi), and an alpha plane (auxC).
  const std::string pixi = box("pixi", bytes({3, 10, 10, 10}), true);
  const std::string aux = box("auxC", "urn:mpeg:mpegB:cicp:systems:auxiliary:alpha", true);
  const std::string deep =
      box("ftyp", std::string("avif") + be32(0) + "mif1") +
      box("meta", box("iprp", box("ipco", box("ispe", be32(8000) + be32(6000), true) + pixi + aux)), true);
  const auto header = read_header(Format::avif, deep);
  ASSERT_EQ(header.state, HeaderState::ok);
  EXPECT_EQ(decode_cost(header), 8000ULL * 6000 * 2 * 11 / 2);
  expect_prefixes_agree(Format::avif, deep);
  // A pixi that does not hold its channels is corrupt.
  const std::string short_pixi =
      box("ftyp", std::string("avif") + be32(0) + "mif1") +
      box("meta", box("iprp", box("ipco", box("ispe", be32(10) + be32(10), true) + box("pixi", bytes({3, 8}), true))),
          true);
  EXPECT_EQ(read_header(Format::avif, short_pixi).state, HeaderState::corrupt);
}

TEST(DecodeCost, NeverOverflows) {
  Header huge{HeaderState::ok, {0x7FFFFFFF, 0x7FFFFFFF}, {4, 2, 128}};
  EXPECT_EQ(decode_cost(huge), std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(decode_cost(read_header(Format::png, "nope")), 0U);
  EXPECT_GT(decode_cost(read_header(Format::png, png_head(0x7FFFFFFF, 0x7FFFFFFF, 16, 6, 1))), 256 * kMiB);
}

}  // namespace
