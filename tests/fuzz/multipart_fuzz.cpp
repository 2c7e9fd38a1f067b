// multipart/form-data framing on arbitrary bytes. Input: a Content-Type line, then the
// body; the last byte steers the chunking. Checks: a boundary is 1-70 RFC 2046
// characters; a found file part starts right after an empty line inside the body; a
// decision other than need_more holds for every longer body; DelimiterScan over any
// chunking agrees with one search over the whole.
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "images/multipart.hpp"

using namespace nimbus::images;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto eol = input.find('\n');
  const auto content_type = input.substr(0, eol);
  const auto body = eol == std::string_view::npos ? std::string_view() : input.substr(eol + 1);

  auto boundary = form_boundary(content_type);
  if (boundary) {
    FUZZ_CHECK(!boundary->empty() && boundary->size() <= 70);
    FUZZ_CHECK(boundary->find_first_of("\r\n\"") == std::string::npos);
  }
  const std::string b = boundary.value_or("B");

  const auto whole = find_file_part(body, b);
  if (whole.state == FilePart::State::found) {
    FUZZ_CHECK(whole.data_offset >= 4 && whole.data_offset <= body.size());
    FUZZ_CHECK(body.substr(whole.data_offset - 4, 4) == "\r\n\r\n");
  }
  const std::size_t cut =
      size == 0 ? 0 : (static_cast<std::size_t>(data[size - 1]) * 131 + size / 2) % (body.size() + 1);
  const auto part = find_file_part(body.substr(0, cut), b);
  if (part.state != FilePart::State::need_more) {
    FUZZ_CHECK(part.state == whole.state);
    FUZZ_CHECK(part.data_offset == whole.data_offset);
  }

  FUZZ_CHECK(closing_trailer(b) == "\r\n--" + b + "--\r\n");

  // The file's bytes as they would arrive, in chunks sized by the bytes themselves.
  DelimiterScan scan(b);
  bool seen = false;
  std::size_t at = 0, step = 1 + (size == 0 ? 0 : data[0] % 13);
  while (at < body.size()) {
    const auto n = std::min(step, body.size() - at);
    seen = scan.feed(body.substr(at, n));
    at += n;
    step = 1 + (static_cast<unsigned char>(body[at - 1]) % 29);
  }
  FUZZ_CHECK(seen == (body.find("\r\n--" + b) != std::string_view::npos));
  return 0;
}
