#include "images/sniff.hpp"

#include <algorithm>
#include <vector>

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

// ISO BMFF boxes (HEIF): size (32-bit, or 1 = 64-bit follows, 0 = to the end), type.
struct Box {
  std::uint64_t size = 0;  // whole box; 0 when it runs to the end of the file
  std::size_t header = 8;
  std::string_view type;
};
std::optional<Box> box_at(std::string_view s, std::size_t at) {
  if (at + 8 > s.size()) return std::nullopt;
  Box b{be32(s, at), 8, s.substr(at + 4, 4)};
  if (b.size == 1) {
    if (at + 16 > s.size()) return std::nullopt;
    b.size = (static_cast<std::uint64_t>(be32(s, at + 8)) << 32) | be32(s, at + 12);
    b.header = 16;
  }
  return b;
}

// The largest `ispe` (image spatial extents) under meta/iprp/ipco: the primary image
// is the largest one (the others are thumbnails or grid tiles).
Header heif_header(std::string_view s) {
  // Descends into the container boxes on the way to ispe; `full` boxes carry 4 more
  // bytes (version, flags) before their children.
  struct Frame {
    std::size_t at, end;
  };
  std::uint32_t best_w = 0, best_h = 0;
  bool meta_seen = false, meta_complete = false;
  std::vector<Frame> stack{{0, s.size()}};
  while (!stack.empty()) {
    auto& f = stack.back();
    auto box = box_at(s, f.at);
    if (!box || f.at >= f.end) {
      stack.pop_back();
      continue;
    }
    const std::size_t size = box->size == 0 ? f.end - f.at : static_cast<std::size_t>(box->size);
    if (size < box->header) return kCorrupt;
    const std::size_t start = f.at, end = start + size;
    f.at = end;
    if (box->type == "meta") {
      meta_seen = true;
      meta_complete = end <= s.size();
      stack.push_back({start + box->header + 4, std::min(end, s.size())});
    } else if (box->type == "iprp" || box->type == "ipco") {
      stack.push_back({start + box->header, std::min(end, s.size())});
    } else if (box->type == "ispe" && start + box->header + 12 <= s.size()) {
      const auto w = be32(s, start + box->header + 4), h = be32(s, start + box->header + 8);
      if (static_cast<std::uint64_t>(w) * h > static_cast<std::uint64_t>(best_w) * best_h) {
        best_w = w;
        best_h = h;
      }
    } else if (box->type == "mdat" && !meta_seen && stack.size() == 1) {
      return kMore;  // pixels first, description later: it is past the bytes at hand
    }
  }
  if (!meta_seen || !meta_complete) return kMore;
  return ok(best_w, best_h);
}

// A HEIF file whose top-level boxes, as far as the head shows them, claim more bytes
// than the file has was cut short.
bool heif_complete(std::string_view head, std::uint64_t total) {
  std::uint64_t at = 0;
  while (at < head.size()) {
    auto box = box_at(head, static_cast<std::size_t>(at));
    if (!box) return true;  // the next header is past the head: cannot tell
    if (box->size == 0) return true;
    at += box->size;
  }
  return at <= total && (at == total || at >= head.size());
}

}  // namespace

std::optional<Format> sniff(std::string_view h) {
  if (h.size() >= 3 && byte(h, 0) == 0xFF && byte(h, 1) == 0xD8 && byte(h, 2) == 0xFF) return Format::jpeg;
  if (h.size() >= 8 && h.substr(0, 8) == std::string_view("\x89PNG\r\n\x1a\n", 8)) return Format::png;
  if (h.size() >= 6 && (h.substr(0, 6) == "GIF87a" || h.substr(0, 6) == "GIF89a")) return Format::gif;
  if (h.size() >= 12 && h.substr(0, 4) == "RIFF" && h.substr(8, 4) == "WEBP") return Format::webp;
  if (h.size() >= 16 && h.substr(4, 4) == "ftyp") {
    // The major brand, then the compatible ones.
    const auto ftyp = std::min<std::size_t>(be32(h, 0), h.size());
    for (std::size_t at = 8; at + 4 <= ftyp; at += at == 8 ? 8 : 4) {
      const auto brand = h.substr(at, 4);
      if (brand == "avif" || brand == "avis") return Format::avif;
      if (brand == "heic" || brand == "heix" || brand == "heim" || brand == "heis") return Format::heic;
    }
  }
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
    case Format::avif:
      return "image/avif";
    case Format::heic:
      return "image/heic";
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
    case Format::avif:
    case Format::heic:
      return heif_header(head);
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
    case Format::avif:
    case Format::heic:
      return heif_complete(head, total_size);
  }
  return false;
}

}  // namespace nimbus::images
