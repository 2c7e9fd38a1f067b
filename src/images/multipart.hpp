// Just enough of multipart/form-data (RFC 7578) to stream one file field.
//
// The upload is streamed to S3 with its exact size, which a multipart body does not
// state. It follows from the request's Content-Length when the file is the last part
// and the body ends with the close delimiter — the layout browsers, curl and HTTP
// libraries send: size = Content-Length − bytes before the file − "\r\n--B--\r\n".
// The stream is checked as it passes: a delimiter inside the counted bytes, or any
// other ending, fails the upload (400 `multipart_layout`) and nothing is kept.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace nimbus::images {

// The boundary of a multipart/form-data Content-Type, or nullopt.
std::optional<std::string> form_boundary(std::string_view content_type);

struct FilePart {
  enum class State { need_more, found, malformed, missing } state = State::need_more;
  std::size_t data_offset = 0;  // where the file's bytes begin in the body
};

// Looks for the part named "file" at the start of the body (other fields may come
// first). need_more: its head is not complete in `body` yet.
FilePart find_file_part(std::string_view body, std::string_view boundary);

// What must follow the file's last byte: the close delimiter and CRLF.
std::string closing_trailer(std::string_view boundary);

// Finds "\r\n--<boundary>" across chunk borders in the file's bytes.
class DelimiterScan {
 public:
  explicit DelimiterScan(std::string_view boundary) : delimiter_("\r\n--" + std::string(boundary)) {}
  // True once the delimiter has been seen in the bytes fed so far.
  bool feed(std::string_view bytes);

 private:
  std::string delimiter_;
  std::string carry_;
  bool found_ = false;
};

}  // namespace nimbus::images
