// What an upload is, from its own bytes: the format from the magic bytes (never from
// the name or the client's Content-Type), the dimensions from the header alone (no
// pixel is decoded), and whether the file ends as its format says it must (a cheap
// truncation check). Plain functions over bytes, unit-tested.
//
// Accepted: JPEG, PNG, GIF, WebP, and the HEIF family (AVIF, HEIC). Anything else —
// SVG (scripts, external references), TIFF, PDF, text — is refused.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace nimbus::images {

enum class Format { jpeg, png, gif, webp, avif, heic };

// Needs the first 12 bytes (a HEIF file whose major brand is not its own, e.g. "mif1",
// is known by a compatible brand later in its ftyp box: pass the head you have, the
// ftyp box comes first); nullopt for anything not accepted.
std::optional<Format> sniff(std::string_view head);
std::string_view content_type(Format f);

struct Dimensions {
  std::uint32_t width = 0, height = 0;
};

// What the header tells of a full decode, for decode_cost. Where a header does not
// say (a PNG palette may gain an alpha band, a HEIF may have one), the worst case.
struct Decoding {
  std::uint8_t bands = 4;           // of the image libvips decodes to
  std::uint8_t bytes_per_band = 1;  // 2 for 16-bit PNG, HEIF deeper than 8 bits
  // What the decoder itself must hold before it hands out the first row, in sixteenths
  // of a byte per pixel: 0 when it reads top to bottom and libvips streams the rows
  // through the shrink (baseline JPEG, non-interlaced PNG, lossy WebP); else the whole
  // frame — an interlaced PNG's pixels (twice, with alpha), a progressive JPEG's coefficients, a GIF's or
  // lossless/animated WebP's canvas, a HEIF's planes and its RGB image.
  std::uint32_t held_x16 = 0;
};

enum class HeaderState { ok, need_more, corrupt };
struct Header {
  HeaderState state = HeaderState::need_more;
  Dimensions size;
  Decoding decoding;  // meaningful when ok
};

// Reads the dimensions from the start of the file. need_more: the header continues
// past `head` (JPEG metadata segments can be long; a HEIF meta box may follow the
// pixels); corrupt: not a valid header, or more segments/boxes than any real file has.
// ok and corrupt are final: more bytes never change them. Any bytes are safe input:
// every length is checked against what remains, and every walk is bounded.
Header read_header(Format f, std::string_view head);

// The bytes a full decode of the image needs at its peak, from its header alone: the
// whole frame (or a JPEG's coefficients) where the decoder cannot stream, else a strip
// of kStripRows rows (libvips' shrink reads a few rows at a time). An estimate of what
// the decoder allocates, above the process's own baseline (docs/adr/0010).
inline constexpr std::uint64_t kStripRows = 64;
std::uint64_t decode_cost(const Header& header);

// Whether the file ends as a whole file of its format does, given its last bytes
// (at least 32, or the whole file if shorter) and its total size.
bool ends_complete(Format f, std::string_view tail, std::uint64_t total_size, std::string_view head);

}  // namespace nimbus::images
