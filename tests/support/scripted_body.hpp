// A request body handed out in pieces of `piece` bytes, as a socket would: for unit
// tests of code that reads through http::BodyReader.
#pragma once

#include <algorithm>
#include <boost/asio/awaitable.hpp>
#include <string>

#include "http/message.hpp"

namespace nimbus::test {

class ScriptedBody : public http::BodyReader {
 public:
  ScriptedBody(std::string bytes, std::size_t piece) : bytes_(std::move(bytes)), piece_(piece) {}
  boost::asio::awaitable<std::size_t> read(std::string& out, std::size_t max) override {
    const auto n = std::min({max, piece_, bytes_.size() - at_});
    out.append(bytes_, at_, n);
    at_ += n;
    co_return n;
  }
  std::optional<std::uint64_t> content_length() const override { return bytes_.size(); }

 private:
  std::string bytes_;
  std::size_t piece_;
  std::size_t at_ = 0;
};

}  // namespace nimbus::test
