#include "images/sniff.hpp"

#include <algorithm>
#include <limits>

namespace nimbus::images {

// Every parser here reads bytes an attacker chose, on the I/O thread. Rules kept by
// each of them: an offset is compared with what remains before anything is read or
// added (never add-then-compare), every loop moves forward, and every walk has a bound
// (segments, boxes, depth). A decision other than need_more depends only on the bytes
// already read, so more bytes never change it (the fuzz targets check this).

namespace {

std::uint32_t be16(std::string_view s, std::size_t at) {
  return (static_cast<std::uint32_t>(static_cast<unsigned char>(s[at])) << 8) | static_cast<unsigned char>(s[at + 1]);
}
std::uint32_t be32(std::string_view s, std::size_t at) {
  return (be16(s, at) << 16) | be16(s, at + 2);
}
std::uint64_t be64(std::string_view s, std::size_t at) {
  return (static_cast<std::uint64_t>(be32(s, at)) << 32) | be32(s, at + 4);
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
  if (w == 0 || h == 0) return Header{HeaderState::corrupt, {}, {}};
  return Header{HeaderState::ok, {w, h}, {}};
}
constexpr Header kMore{HeaderState::need_more, {}, {}};
constexpr Header kCorrupt{HeaderState::corrupt, {}, {}};

// Real files carry a few dozen segments before the frame header (APPn, DQT, DHT; an
// ICC profile takes at most 255 APP2 chunks).
constexpr int kMaxJpegSegments = 512;

// Walks the marker segments up to the first frame header (SOF).
Header jpeg_header(std::string_view s) {
  std::size_t at = 2;
  for (int segments = 0;;) {
    if (s.size() < 4 || at > s.size() - 4) return kMore;
    if (byte(s, at) != 0xFF) return kCorrupt;
    const unsigned marker = byte(s, at + 1);
    if (marker == 0xFF) {  // fill byte
      ++at;
      continue;
    }
    if (++segments > kMaxJpegSegments) return kCorrupt;
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {  // no length
      at += 2;
      continue;
    }
    // A stuffed zero (only inside scans), image start/end, or a scan before any frame.
    if (marker == 0x00 || marker == 0xD8 || marker == 0xD9 || marker == 0xDA) return kCorrupt;
    const std::uint32_t length = be16(s, at + 2);  // counts itself, not the marker
    if (length < 2) return kCorrupt;
    const bool sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (sof) {
      if (length < 8) return kCorrupt;  // precision, height, width, components
      if (s.size() - at < 10) return kMore;
      const unsigned components = byte(s, at + 9);
      if (components < 1 || components > 4 || length < 8 + 3 * components) return kCorrupt;
      if (s.size() - at < 10 + 3 * components) return kMore;
      // Each component: id, sampling factors (horizontal, vertical: 1-4 each), table.
      unsigned h_max = 1, v_max = 1, samples = 0;
      for (unsigned c = 0; c < components; ++c) {
        const unsigned factors = byte(s, at + 11 + 3 * c), h = factors >> 4, v = factors & 0x0F;
        if (h < 1 || h > 4 || v < 1 || v > 4) return kCorrupt;
        h_max = std::max(h_max, h);
        v_max = std::max(v_max, v);
        samples += h * v;
      }
      auto header = ok(be16(s, at + 7), be16(s, at + 5));
      if (header.state != HeaderState::ok) return header;
      header.decoding.bands = static_cast<std::uint8_t>(components);
      // Progressive (SOF2, 6, 10, 14): libjpeg keeps every DCT coefficient (2 bytes) of
      // the whole image until the last scan, whatever the shrink-on-load.
      const bool progressive = marker == 0xC2 || marker == 0xC6 || marker == 0xCA || marker == 0xCE;
      if (progressive) header.decoding.held_x16 = (32 * samples + h_max * v_max - 1) / (h_max * v_max);
      return header;
    }
    at += 2 + length;  // at most 65,537 past an offset within the string: no overflow
  }
}

// IHDR: width, height, bit depth, colour type, compression, filter, interlace.
Header png_header(std::string_view s) {
  if (s.size() < 29) return kMore;
  if (be32(s, 8) != 13 || s.substr(12, 4) != "IHDR") return kCorrupt;
  const auto w = be32(s, 16), h = be32(s, 20);
  constexpr std::uint32_t kMax = 0x7FFFFFFF;  // PNG's limit on either side
  if (w > kMax || h > kMax) return kCorrupt;
  const unsigned depth = byte(s, 24), colour = byte(s, 25), interlace = byte(s, 28);
  const bool low_depth = depth == 1 || depth == 2 || depth == 4;
  std::uint8_t bands = 0;
  switch (colour) {
    case 0:  // grey
      bands = low_depth || depth == 8 || depth == 16 ? 1 : 0;
      break;
    case 2:  // RGB
      bands = depth == 8 || depth == 16 ? 3 : 0;
      break;
    case 3:  // palette: RGB, or RGBA with a tRNS chunk (the header does not say)
      bands = low_depth || depth == 8 ? 4 : 0;
      break;
    case 4:  // grey and alpha
      bands = depth == 8 || depth == 16 ? 2 : 0;
      break;
    case 6:  // RGBA
      bands = depth == 8 || depth == 16 ? 4 : 0;
      break;
    default:
      break;
  }
  if (bands == 0 || interlace > 1) return kCorrupt;  // no such combination; no such method
  auto header = ok(w, h);
  if (header.state != HeaderState::ok) return header;
  header.decoding.bands = bands;
  header.decoding.bytes_per_band = depth == 16 ? 2 : 1;
  // Adam7: the last pass completes every row, so the decoder holds the whole image —
  // twice over with an alpha band (measured: a 50 MP interlaced RGBA PNG peaks at 1.8
  // frames above the process's baseline, an RGB one at 1.2; bench/decode_memory.py).
  const unsigned copies = colour == 3 || colour == 4 || colour == 6 ? 2 : 1;
  if (interlace == 1) header.decoding.held_x16 = 16U * bands * header.decoding.bytes_per_band * copies;
  return header;
}

// The logical screen; libnsgif composes every frame on an RGBA canvas of that size.
Header gif_header(std::string_view s) {
  if (s.size() < 10) return kMore;
  auto header = ok(le16(s, 6), le16(s, 8));
  if (header.state == HeaderState::ok) header.decoding.held_x16 = 16 * 4;
  return header;
}

Header webp_header(std::string_view s) {
  if (s.size() < 30) return kMore;
  const auto chunk = s.substr(12, 4);
  if (chunk == "VP8 ") {
    // Frame tag (3 bytes), start code 9d 01 2a, then 14-bit width and height.
    if (byte(s, 23) != 0x9D || byte(s, 24) != 0x01 || byte(s, 25) != 0x2A) return kCorrupt;
    // Lossy, no alpha: libwebp decodes row by row, scaled on load.
    auto header = ok(le16(s, 26) & 0x3FFF, le16(s, 28) & 0x3FFF);
    if (header.state == HeaderState::ok) header.decoding.bands = 3;
    return header;
  }
  // Lossless: libwebp decodes the whole ARGB image before scaling it. Extended (VP8X):
  // an animation's canvas, or a lossless image inside — the header does not say which.
  Header header = kCorrupt;
  if (chunk == "VP8L") {
    if (byte(s, 20) != 0x2F) return kCorrupt;
    const std::uint32_t bits = le32(s, 21);
    header = ok((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1);
  } else if (chunk == "VP8X") {
    header = ok(le24(s, 24) + 1, le24(s, 27) + 1);
  }
  if (header.state == HeaderState::ok) header.decoding.held_x16 = 16 * 4;
  return header;
}

// ---------------------------------------------------------------- ISO BMFF (HEIF)

// Boxes: size (32-bit; 1 = a 64-bit size follows the type; 0 = to the end of the
// enclosing box, or of the file), type, body. Real files have a handful of top-level
// boxes and at most a few hundred item properties; 4,096 is far above either.
constexpr int kMaxBoxes = 4096;
constexpr std::uint64_t kToTheEnd = std::numeric_limits<std::uint64_t>::max();

struct Box {
  std::uint64_t start = 0, end = 0;  // end may lie past the bytes at hand, or be kToTheEnd
  std::uint64_t header = 8;          // size and type (and the 64-bit size)
  std::string_view type;
  std::uint64_t body() const { return start + header; }
};

// The boxes in [at, end) of `s`, one by one. `end` is the enclosing box's end
// (kToTheEnd at the top level); the walk never reads past `s`.
class BoxWalk {
 public:
  enum class Step { box, done, past_head, corrupt };
  BoxWalk(std::string_view s, std::uint64_t at, std::uint64_t end, int& budget)
      : s_(s), at_(at), end_(end), budget_(budget) {}

  Step next(Box& out) {
    if (at_ >= end_) return Step::done;
    const std::uint64_t room = end_ - at_;                                // what the enclosing box has left
    if (room < 8) return end_ == kToTheEnd ? Step::corrupt : Step::done;  // padding inside a box
    if (--budget_ < 0) return Step::corrupt;
    if (at_ >= s_.size() || s_.size() - at_ < 8) return Step::past_head;
    const auto at = static_cast<std::size_t>(at_);
    Box b{at_, 0, 8, s_.substr(at + 4, 4)};
    std::uint64_t size = be32(s_, at);
    if (size == 1) {
      if (room < 16) return Step::corrupt;
      if (s_.size() - at < 16) return Step::past_head;
      size = be64(s_, at + 8);
      b.header = 16;
    } else if (size == 0) {
      size = room;  // to the end of the enclosing box (or of the file)
    }
    if (size < b.header || size > room) return Step::corrupt;
    b.end = size == room ? end_ : at_ + size;  // no overflow: size <= end - at
    at_ = b.end;
    out = b;
    return Step::box;
  }

 private:
  std::string_view s_;
  std::uint64_t at_, end_;
  int& budget_;
};

Header from_step(BoxWalk::Step step) {
  return step == BoxWalk::Step::past_head ? kMore : kCorrupt;
}

// libheif decodes the whole image: its YUV planes (4:2:0, 1.5 samples a pixel), then
// the interleaved RGB(A) image libvips reads.
Header heif_decoding(std::uint32_t w, std::uint32_t h, unsigned bits, bool alpha) {
  auto header = ok(w, h);
  if (header.state != HeaderState::ok) return header;
  header.decoding.bands = alpha ? 4 : 3;
  header.decoding.bytes_per_band = bits > 8 ? 2 : 1;
  header.decoding.held_x16 = header.decoding.bytes_per_band * (16U * header.decoding.bands + 24U);
  return header;
}

// ipco's `ispe` (image spatial extents) properties: the primary image is the largest
// one (the others are thumbnails or grid tiles), so the pixel limit sees the largest.
// The deepest `pixi` (bits per channel) and any `auxC` (an auxiliary image: alpha, or
// depth) count as the primary's too: the worst case.
Header heif_properties(std::string_view s, const Box& ipco, int& budget) {
  std::uint32_t best_w = 0, best_h = 0;
  unsigned bits = 8;
  bool aux = false;
  BoxWalk walk(s, ipco.body(), ipco.end, budget);
  for (Box b;;) {
    const auto step = walk.next(b);
    if (step == BoxWalk::Step::done) return heif_decoding(best_w, best_h, bits, aux);
    if (step != BoxWalk::Step::box) return from_step(step);
    if (b.type == "auxC") aux = true;
    if (b.type == "pixi") {
      // A full box: version and flags, a channel count, then each channel's depth.
      if (b.end - b.start < b.header + 5) return kCorrupt;
      if (b.body() + 5 > s.size()) return kMore;
      const auto at = static_cast<std::size_t>(b.body());
      const unsigned channels = byte(s, at + 4);
      if (b.end - b.start < b.header + 5 + channels) return kCorrupt;
      if (b.body() + 5 + channels > s.size()) return kMore;
      for (unsigned c = 0; c < channels; ++c) {
        const unsigned depth = byte(s, at + 5 + c);
        if (depth == 0 || depth > 16) return kCorrupt;
        bits = std::max(bits, depth);
      }
      continue;
    }
    if (b.type != "ispe") continue;
    // A full box: version and flags, then width and height.
    if (b.end - b.start < b.header + 12) return kCorrupt;
    if (b.body() + 12 > s.size()) return kMore;
    const auto at = static_cast<std::size_t>(b.body());
    const auto w = be32(s, at + 4), h = be32(s, at + 8);
    if (static_cast<std::uint64_t>(w) * h > static_cast<std::uint64_t>(best_w) * best_h) {
      best_w = w;
      best_h = h;
    }
  }
}

// Finds the child of `parent` of type `type` (the first one) and reads it with `read`.
template <typename Read>
Header heif_child(std::string_view s, const Box& parent, std::uint64_t skip, std::string_view type, int& budget,
                  Read read) {
  if (parent.end - parent.start < parent.header + skip) return kCorrupt;
  BoxWalk walk(s, parent.body() + skip, parent.end, budget);
  for (Box b;;) {
    const auto step = walk.next(b);
    if (step == BoxWalk::Step::done) return kCorrupt;  // no such child: no size to read
    if (step != BoxWalk::Step::box) return from_step(step);
    if (b.type == type) return read(b);
  }
}

// meta (a full box: 4 bytes of version and flags) → iprp → ipco → ispe. The meta box
// may come after the pixels (mdat); it is read wherever it is in the head.
Header heif_header(std::string_view s) {
  int budget = kMaxBoxes;
  BoxWalk top(s, 0, kToTheEnd, budget);
  for (Box b;;) {
    const auto step = top.next(b);
    if (step == BoxWalk::Step::done) return kCorrupt;  // a box ran to the end of the file: no meta
    if (step != BoxWalk::Step::box) return from_step(step);
    if (b.type != "meta") continue;
    return heif_child(s, b, 4, "iprp", budget, [&](const Box& iprp) {
      return heif_child(s, iprp, 0, "ipco", budget, [&](const Box& ipco) {
        auto header = heif_properties(s, ipco, budget);
        // The size is final only once the whole meta box is at hand.
        if (header.state == HeaderState::ok && b.end > s.size()) return kMore;
        return header;
      });
    });
  }
}

// A HEIF file whose top-level boxes, as far as the head shows them, claim more bytes
// than the file has was cut short.
bool heif_complete(std::string_view head, std::uint64_t total) {
  if (head.size() > total) return false;
  int budget = kMaxBoxes;
  BoxWalk top(head.substr(0, static_cast<std::size_t>(total)), 0, total, budget);
  for (Box b;;) {
    switch (top.next(b)) {
      case BoxWalk::Step::box:
        continue;
      case BoxWalk::Step::done:       // the boxes fill the file exactly (or a few bytes pad it)
      case BoxWalk::Step::past_head:  // the next box header is past the head: cannot tell
        return true;
      case BoxWalk::Step::corrupt:  // a box claims more than the file has, or is malformed
        return false;
    }
  }
}

}  // namespace

std::optional<Format> sniff(std::string_view h) {
  if (h.size() >= 3 && byte(h, 0) == 0xFF && byte(h, 1) == 0xD8 && byte(h, 2) == 0xFF) return Format::jpeg;
  if (h.size() >= 8 && h.substr(0, 8) == std::string_view("\x89PNG\r\n\x1a\n", 8)) return Format::png;
  if (h.size() >= 6 && (h.substr(0, 6) == "GIF87a" || h.substr(0, 6) == "GIF89a")) return Format::gif;
  if (h.size() >= 12 && h.substr(0, 4) == "RIFF" && h.substr(8, 4) == "WEBP") return Format::webp;
  if (h.size() >= 12 && h.substr(4, 4) == "ftyp") {
    // The major brand (bytes 8-11), then past the minor version the compatible ones,
    // all within the ftyp box as far as the head shows it.
    const auto ftyp = std::min<std::size_t>(be32(h, 0), h.size());
    for (std::size_t at = 8; at < ftyp && ftyp - at >= 4; at += at == 8 ? 8 : 4) {
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

std::uint64_t decode_cost(const Header& header) {
  if (header.state != HeaderState::ok) return 0;
  const auto& d = header.decoding;
  const std::uint64_t w = header.size.width, h = header.size.height;
  if (d.held_x16 == 0) return w * d.bands * d.bytes_per_band * kStripRows;  // < 2^31 * 4 * 2 * 64
  const std::uint64_t pixels = w * h;                                       // < 2^62
  constexpr auto kMax = std::numeric_limits<std::uint64_t>::max();
  if (pixels > kMax / d.held_x16) return kMax;
  return pixels * d.held_x16 / 16;
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
