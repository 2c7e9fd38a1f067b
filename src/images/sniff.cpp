#include "images/sniff.hpp"

namespace nimbus::images {

namespace {

std::uint32_t be16(std::string_view s, std::size_t at) {
  return (static_cast<std::uint32_t>(static_cast<unsigned char>(s[at])) << 8) | static_cast<unsigned char>(s[at + 1]);
}
std::uint32_t be32(std::string_view s, std::size_t at) {
  return (be16(s, at) << 16) | be16(s, at + 2);
}
std::uint32_t le16(std::string_view s, std::size_t at) {
  return static_cast<unsigned char>(s[at]) | (static_cast<std::uint32_t>(static_cast<unsigned char>(s[at + 1])) << 8);
}
std::uint32_t le24(std::string_view s, std::size_t at) {
  return le16(s, at) | (static_cast<std::uint32_t>(static_cast<unsigned char>(s[at + 2])) << 16);
}
std::uint32_t le32(std::string_view s, std::size_t at) {
  return le16(s, at) | (le16(s, at + 2) << 16);
}
unsigned char byte(std::string_view s, std::size_t at) {
  return static_cast<unsigned char>(s[at]);
}

Header ok(std::uint32_t w, std::uint32_t h) {
  if (w == 0 || h == 0) return Header{HeaderState::corrupt, {}};
  return Header{HeaderState::ok, {w, h}};
}
constexpr Header kMore{HeaderState::need_more, {}};
constexpr Header kCorrupt{HeaderState::corrupt, {}};

// Walks the marker segments up to the first frame header (SOF).
Header jpeg_header(std::string_view s) {
  std::size_t at = 2;
  for (;;) {
    if (at + 4 > s.size()) return kMore;
    if (byte(s, at) != 0xFF) return kCorrupt;
    const unsigned marker = byte(s, at + 1);
    if (marker == 0xFF) {  // fill byte
      ++at;
      continue;
    }
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {  // no length
      at += 2;
      continue;
    }
    if (marker == 0xD9 || marker == 0xDA) return kCorrupt;  // image end / scan before any frame
    const std::uint32_t length = be16(s, at + 2);
    if (length < 2) return kCorrupt;
    const bool sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (sof) {
      if (at + 9 > s.size()) return kMore;
      return ok(be16(s, at + 7), be16(s, at + 5));
    }
    at += 2 + length;
  }
}

Header png_header(std::string_view s) {
  if (s.size() < 24) return kMore;
  if (s.substr(12, 4) != "IHDR") return kCorrupt;
  return ok(be32(s, 16), be32(s, 20));
}

Header gif_header(std::string_view s) {
  if (s.size() < 10) return kMore;
  return ok(le16(s, 6), le16(s, 8));
}

Header webp_header(std::string_view s) {
  if (s.size() < 30) return kMore;
  const auto chunk = s.substr(12, 4);
  if (chunk == "VP8 ") {
    // Frame tag (3 bytes), start code 9d 01 2a, then 14-bit width and height.
    if (byte(s, 23) != 0x9D || byte(s, 24) != 0x01 || byte(s, 25) != 0x2A) return kCorrupt;
    return ok(le16(s, 26) & 0x3FFF, le16(s, 28) & 0x3FFF);
  }
  if (chunk == "VP8L") {
    if (byte(s, 20) != 0x2F) return kCorrupt;
    const std::uint32_t bits = le32(s, 21);
    return ok((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1);
  }
  if (chunk == "VP8X") return ok(le24(s, 24) + 1, le24(s, 27) + 1);
  return kCorrupt;
}

}  // namespace

std::optional<Format> sniff(std::string_view h) {
  if (h.size() >= 3 && byte(h, 0) == 0xFF && byte(h, 1) == 0xD8 && byte(h, 2) == 0xFF) return Format::jpeg;
  if (h.size() >= 8 && h.substr(0, 8) == std::string_view("\x89PNG\r\n\x1a\n", 8)) return Format::png;
  if (h.size() >= 6 && (h.substr(0, 6) == "GIF87a" || h.substr(0, 6) == "GIF89a")) return Format::gif;
  if (h.size() >= 12 && h.substr(0, 4) == "RIFF" && h.substr(8, 4) == "WEBP") return Format::webp;
  return std::nullopt;
}

std::string_view content_type(Format f) {
  switch (f) {
    case Format::jpeg:
      return "image/jpeg";
    case Format::png:
      return "image/png";
    case Format::gif:
      return "image/gif";
    case Format::webp:
      return "image/webp";
  }
  return "application/octet-stream";
}

Header read_header(Format f, std::string_view head) {
  switch (f) {
    case Format::jpeg:
      return jpeg_header(head);
    case Format::png:
      return png_header(head);
    case Format::gif:
      return gif_header(head);
    case Format::webp:
      return webp_header(head);
  }
  return kCorrupt;
}

bool ends_complete(Format f, std::string_view tail, std::uint64_t total_size, std::string_view head) {
  switch (f) {
    case Format::jpeg:
      // End-of-image marker, allowing the few bytes of padding some encoders append.
      return tail.find("\xFF\xD9") != std::string_view::npos;
    case Format::png:
      return tail.size() >= 12 && tail.substr(tail.size() - 12) == std::string_view("\0\0\0\0IEND\xAE\x42\x60\x82", 12);
    case Format::gif:
      return !tail.empty() && tail.back() == ';';
    case Format::webp:
      return head.size() >= 8 && le32(head, 4) + 8ULL == total_size;
  }
  return false;
}

}  // namespace nimbus::images
