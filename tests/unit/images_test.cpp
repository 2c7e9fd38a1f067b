// Upload sniffing and multipart framing, on bytes made here.
#include <gtest/gtest.h>

#include "images/multipart.hpp"
#include "images/sniff.hpp"

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

std::string png_head(std::uint32_t w, std::uint32_t h) {
  return std::string("\x89PNG\r\n\x1a\n", 8) + be32(13) + "IHDR" + be32(w) + be32(h) + bytes({8, 2, 0, 0, 0});
}

// SOI, an APP1 segment of `app_len` bytes, then a baseline frame header.
std::string jpeg_head(int w, int h, int app_len) {
  std::string s = bytes({0xFF, 0xD8, 0xFF, 0xE1, (app_len + 2) >> 8, (app_len + 2) & 0xFF});
  s += std::string(static_cast<std::size_t>(app_len), 'x');
  s += bytes({0xFF, 0xC0, 0x00, 0x11, 0x08, h >> 8, h & 0xFF, w >> 8, w & 0xFF, 0x03});
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
