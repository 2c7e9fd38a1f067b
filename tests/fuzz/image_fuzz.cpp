// Upload sniffing on arbitrary bytes: sniff, read_header for every format, and the
// ending check. Beyond "no crash, no hang": sizes are nonzero when ok, decisions other
// than need_more (and the decode's cost) never change when more bytes arrive, and
// sniff's verdict on a head holds for the whole file.
#include <algorithm>
#include <cstdint>
#include <string_view>

#include "fuzz_check.hpp"
#include "images/sniff.hpp"

using namespace nimbus::images;

namespace {

constexpr Format kFormats[] = {Format::jpeg, Format::png, Format::gif, Format::webp, Format::avif, Format::heic};

void check_header(Format f, std::string_view file, std::size_t cut) {
  const auto whole = read_header(f, file);
  if (whole.state == HeaderState::ok) FUZZ_CHECK(whole.size.width > 0 && whole.size.height > 0);
  if (whole.state != HeaderState::ok) FUZZ_CHECK(whole.size.width == 0 && whole.size.height == 0);
  const auto part = read_header(f, file.substr(0, cut));
  if (part.state != HeaderState::need_more) {
    FUZZ_CHECK(part.state == whole.state);
    FUZZ_CHECK(part.size.width == whole.size.width && part.size.height == whole.size.height);
    FUZZ_CHECK(decode_cost(part) == decode_cost(whole));  // what the decode holds: final too
  }
  // Only a header that was read has a cost; one that streams costs a strip of rows.
  if (whole.state != HeaderState::ok) FUZZ_CHECK(decode_cost(whole) == 0);
  if (whole.state == HeaderState::ok && whole.decoding.held_x16 == 0) {
    FUZZ_CHECK(decode_cost(whole) <= static_cast<std::uint64_t>(whole.size.width) * 8 * kStripRows);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view file(reinterpret_cast<const char*>(data), size);
  // A cut point taken from the bytes themselves, so the fuzzer can steer it.
  const std::size_t cut = size == 0 ? 0 : (static_cast<std::size_t>(data[size - 1]) * 257 + size / 3) % (size + 1);

  const auto format = sniff(file);
  if (cut >= 12) {
    if (auto early = sniff(file.substr(0, cut))) FUZZ_CHECK(format == early);
  }
  for (Format f : kFormats) check_header(f, file, cut);

  const std::string_view tail = file.substr(size > 32 ? size - 32 : 0);
  for (Format f : kFormats) {
    (void)ends_complete(f, tail, size, file);
    (void)ends_complete(f, tail, size + (cut % 17), file.substr(0, cut));
    (void)ends_complete(f, tail, cut, file);  // a head longer than the file: nonsense, but safe
  }
  if (format) {
    // The upload path: what the server would store.
    const auto header = read_header(*format, file);
    if (header.state == HeaderState::ok) {
      const auto pixels = static_cast<std::uint64_t>(header.size.width) * header.size.height;
      FUZZ_CHECK(pixels > 0);
    }
    FUZZ_CHECK(!content_type(*format).empty());
  }
  return 0;
}
