// The upload story's pieces without I/O: refusals and their HTTP answers, the head
// judgement, the file reader over a scripted body, what a failed queueing leaves, object
// keys and the ids' time, presigned PUTs bound to headers.
#include <boost/asio/io_context.hpp>

#include <gtest/gtest.h>

#include "core/ids.hpp"
#include "core/sha256.hpp"
#include "images/repository.hpp"
#include "images/upload.hpp"
#include "storage/s3/sigv4.hpp"
#include "support/run.hpp"
#include "support/scripted_body.hpp"

using namespace nimbus;
using namespace nimbus::images;
namespace asio = boost::asio;

namespace {

std::string be32(std::uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>((v >> 16) & 0xFF), static_cast<char>((v >> 8) & 0xFF),
          static_cast<char>(v & 0xFF)};
}

std::string png(std::uint32_t w, std::uint32_t h) {
  return std::string("\x89PNG\r\n\x1a\n", 8) + be32(13) + "IHDR" + be32(w) + be32(h) +
         std::string("\x08\x02\0\0\0", 5) + be32(0) + std::string(40, 'd') + be32(0) + "IEND" +
         std::string("\xae\x42\x60\x82", 4);
}

using test::ScriptedBody;

// The whole file as FileReader gives it, or the refusal/layout error.
struct Read {
  std::optional<Refusal> refusal;
  bool layout_error = false;
  std::string file;
};

Read read_all(const std::string& body, std::optional<std::string> boundary, std::size_t piece) {
  asio::io_context ioc;
  return test::run(ioc, [&]() -> asio::awaitable<Read> {
    ScriptedBody source(body, piece);
    FileReader reader(source, body.size(), boundary);
    Read out;
    if (auto r = co_await reader.open()) {
      out.refusal = r->refusal;
      co_return out;
    }
    try {
      for (;;) {
        auto chunk = co_await reader.next();
        if (chunk.empty()) break;
        out.file += chunk;
      }
    } catch (const FileReader::LayoutError&) {
      out.layout_error = true;
    }
    co_return out;
  });
}

std::string form(const std::vector<std::pair<std::string, std::string>>& parts) {
  std::string out;
  for (const auto& [name, data] : parts) {
    out += "--XyZ\r\nContent-Disposition: form-data; name=\"" + name + "\"; filename=\"a\"\r\n" +
           "Content-Type: application/octet-stream\r\n\r\n" + data + "\r\n";
  }
  return out + "--XyZ--\r\n";
}

}  // namespace

TEST(UploadRefusals, EachMapsToOneStatusAndCode) {
  const UploadLimits limits;
  struct Case {
    Refusal refusal;
    unsigned status;
    std::string code;
  };
  for (const auto& c : std::vector<Case>{{Refusal::unsupported_media_type, 415, "unsupported_media_type"},
                                         {Refusal::length_required, 411, "length_required"},
                                         {Refusal::empty_file, 422, "empty_file"},
                                         {Refusal::too_large, 413, "payload_too_large"},
                                         {Refusal::missing_file, 400, "missing_file"},
                                         {Refusal::multipart_layout, 400, "multipart_layout"},
                                         {Refusal::unsupported_image_type, 415, "unsupported_image_type"},
                                         {Refusal::corrupt_image, 422, "corrupt_image"},
                                         {Refusal::too_many_pixels, 422, "too_many_pixels"},
                                         {Refusal::too_costly_to_decode, 422, "too_costly_to_decode"},
                                         {Refusal::invalid_content_type, 422, "invalid_content_type"},
                                         {Refusal::invalid_bytes, 422, "invalid_bytes"},
                                         {Refusal::too_many_uploads, 429, "too_many_uploads"},
                                         {Refusal::not_uploading, 409, "not_uploading"},
                                         {Refusal::upload_missing, 409, "upload_missing"},
                                         {Refusal::upload_mismatch, 422, "upload_mismatch"}}) {
    auto res = to_response(Refused{c.refusal, "", std::chrono::seconds(0)}, limits);
    EXPECT_EQ(res.status, c.status) << c.code;
    EXPECT_NE(res.body.find("\"code\":\"" + c.code + "\""), std::string::npos) << res.body;
    EXPECT_EQ(res.headers.get("Content-Type").value_or(""), "application/problem+json") << c.code;
  }
}

TEST(UploadRefusals, TooManyUploadsSaysWhenToComeBack) {
  auto res = to_response(Refused{Refusal::too_many_uploads, "", std::chrono::seconds(42)}, UploadLimits{});
  EXPECT_EQ(res.status, 429U);
  EXPECT_EQ(res.headers.get("Retry-After").value_or(""), "42");
}

TEST(JudgeHead, WaitsForTwelveBytesThenJudgesByTheBytesAlone) {
  UploadLimits limits;
  const auto image = png(800, 600);
  EXPECT_TRUE(std::holds_alternative<NeedMore>(judge_head(image.substr(0, 8), false, limits)));
  auto accepted = judge_head(image, false, limits);
  ASSERT_TRUE(std::holds_alternative<Accepted>(accepted));
  EXPECT_EQ(std::get<Accepted>(accepted).format, Format::png);
  EXPECT_EQ(std::get<Accepted>(accepted).size.width, 800U);
  auto svg = judge_head("<svg xmlns=\"http://www.w3.org/2000/svg\"></svg>", true, limits);
  ASSERT_TRUE(std::holds_alternative<Refused>(svg));
  EXPECT_EQ(std::get<Refused>(svg).refusal, Refusal::unsupported_image_type);
  auto cut = judge_head(image.substr(0, 10), true, limits);
  ASSERT_TRUE(std::holds_alternative<Refused>(cut));
  EXPECT_EQ(std::get<Refused>(cut).refusal, Refusal::corrupt_image) << "a PNG cut short is corrupt, not unknown";
}

TEST(JudgeHead, AnFtypBoxLongerThanTheBytesAtHandIsWaitedFor) {
  // A HEIC whose major brand is mif1 names heic only among the compatible brands,
  // further into the ftyp box than the first read may reach.
  std::string ftyp(
      "\0\0\0\x20"
      "ftyp"
      "mif1"
      "\0\0\0\0"
      "mif1"
      "miaf"
      "MiHB"
      "heic",
      32);
  const UploadLimits limits;
  EXPECT_TRUE(std::holds_alternative<NeedMore>(judge_head(ftyp.substr(0, 16), false, limits)));
  EXPECT_TRUE(std::holds_alternative<NeedMore>(judge_head(ftyp.substr(0, 28), false, limits)));
  // With the whole ftyp box at hand, it is a HEIC (whose header follows).
  EXPECT_FALSE(std::holds_alternative<Refused>(judge_head(ftyp, false, limits)));
  // An ftyp box of other brands only is refused once it is whole.
  std::string mp4(
      "\0\0\0\x18"
      "ftyp"
      "isom"
      "\0\0\0\0"
      "isom"
      "mp41",
      24);
  EXPECT_TRUE(std::holds_alternative<NeedMore>(judge_head(mp4.substr(0, 16), false, limits)));
  EXPECT_TRUE(std::holds_alternative<Refused>(judge_head(mp4, false, limits)));
}

TEST(JudgeHead, RefusesTooManyPixelsFromTheHeader) {
  UploadLimits limits;
  limits.max_pixels = 1'000'000;
  auto judged = judge_head(png(1001, 1000), false, limits);
  ASSERT_TRUE(std::holds_alternative<Refused>(judged));
  EXPECT_EQ(std::get<Refused>(judged).refusal, Refusal::too_many_pixels);
  EXPECT_TRUE(std::holds_alternative<Accepted>(judge_head(png(1000, 1000), false, limits)));
}

// Issue 22, item 7: within the pixel limit, but an interlaced 16-bit RGBA frame the
// decoder must hold whole (384 MB, twice with alpha) is over the decode bound; the same image
// non-interlaced streams, and is accepted.
TEST(JudgeHead, RefusesWhatWouldBeTooCostlyToDecodeFromTheHeader) {
  UploadLimits limits;
  auto head = [](int interlace) {
    return std::string("\x89PNG\r\n\x1a\n", 8) + be32(13) + "IHDR" + be32(8000) + be32(6000) +
           std::string{16, 6, 0, 0, static_cast<char>(interlace)};
  };
  auto judged = judge_head(head(1), false, limits);
  ASSERT_TRUE(std::holds_alternative<Refused>(judged));
  const auto& refused = std::get<Refused>(judged);
  EXPECT_EQ(refused.refusal, Refusal::too_costly_to_decode);
  EXPECT_NE(refused.detail.find("733 MiB"), std::string::npos) << refused.detail;
  EXPECT_TRUE(std::holds_alternative<Accepted>(judge_head(head(0), false, limits)));
  limits.max_decode_bytes = 800'000'000;
  EXPECT_TRUE(std::holds_alternative<Accepted>(judge_head(head(1), false, limits)));
}

TEST(Digest, HashesEverythingAndKnowsTheEnding) {
  const auto image = png(10, 10);
  Digest whole(64);
  for (std::size_t at = 0; at < image.size(); at += 7) whole.update(std::string_view(image).substr(at, 7));
  EXPECT_EQ(whole.size(), image.size());
  EXPECT_TRUE(whole.ends_complete(Format::png));
  EXPECT_EQ(whole.sha256(), Sha256::hex_of(image));
  Digest cut(64);
  cut.update(std::string_view(image).substr(0, image.size() - 3));
  EXPECT_FALSE(cut.ends_complete(Format::png));
}

TEST(FileReader, ARawBodyIsTheFile) {
  const std::string body(200'000, 'b');
  auto read = read_all(body, std::nullopt, 3000);
  EXPECT_FALSE(read.refusal);
  EXPECT_EQ(read.file, body);
}

TEST(FileReader, TheFileFieldOfAFormIsExactlyItsBytes) {
  const std::string file = "\r\n--Xy not the boundary\r\n" + std::string(100'000, 'f');
  for (std::size_t piece : {1UL, 7UL, 65536UL}) {
    auto read = read_all(form({{"note", "hello"}, {"file", file}}), "XyZ", piece);
    EXPECT_FALSE(read.refusal) << piece;
    EXPECT_FALSE(read.layout_error) << piece;
    EXPECT_EQ(read.file, file) << piece;
  }
}

TEST(FileReader, AFieldAfterTheFileIsALayoutError) {
  auto read = read_all(form({{"file", std::string(5000, 'f')}, {"note", "after"}}), "XyZ", 1000);
  EXPECT_TRUE(read.layout_error || read.refusal == Refusal::multipart_layout);
}

TEST(FileReader, PartHeadersBeyondTheFramingAllowanceAreALayoutError) {
  std::string body = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\nX-Pad: " +
                     std::string(100 * 1024, 'p') + "\r\n\r\n" + std::string(5000, 'f') + "\r\n--XyZ--\r\n";
  EXPECT_EQ(read_all(body, "XyZ", 65536).refusal, Refusal::multipart_layout);
}

TEST(FileReader, AFormWithoutAFileFieldIsRefused) {
  auto read = read_all(form({{"photo", "abc"}}), "XyZ", 1000);
  EXPECT_EQ(read.refusal, Refusal::missing_file);
}

// Issue 10, item 10: the queueing transaction of an upload failed. Deleting the object
// then is only right when the row cannot have committed; a COMMIT whose reply was lost
// may have, and its image must keep its original.
TEST(AfterFailure, ALostCommitReplyIsReadBackBeforeAnythingIsDeleted) {
  // The re-read shows it committed: the upload succeeded.
  EXPECT_EQ(after_failure(false, true, ImageStatus::queued), AfterFailure::queued);
  EXPECT_EQ(after_failure(false, true, ImageStatus::ready), AfterFailure::queued);
  // Still uploading: the COMMIT may yet land, so nothing is deleted now (the sweeper
  // removes an upload still not queued an hour later).
  EXPECT_EQ(after_failure(false, true, ImageStatus::uploading), AfterFailure::leave);
  // Nothing could be read: nothing is deleted.
  EXPECT_EQ(after_failure(false, false, std::nullopt), AfterFailure::leave);
  // The server refused a statement: the transaction is aborted, so clean up.
  EXPECT_EQ(after_failure(true, false, std::nullopt), AfterFailure::roll_back);
  // No row at all: nothing will ever point at the object.
  EXPECT_EQ(after_failure(false, true, std::nullopt), AfterFailure::roll_back);
}

TEST(ImageKeys, EachObjectKeyNamesItsImage) {
  const std::string id = "01a2290b-1c2d-7e3f-8a4b-5c6d7e8f9a0b";
  EXPECT_EQ(image_id_of_key(original_key(id)), id);
  EXPECT_EQ(image_id_of_key(upload_key(id)), id);
  EXPECT_EQ(image_id_of_key(variant_key(id, "thumb")), id);
  EXPECT_EQ(image_id_of_key("originals/" + id + "/x"), std::nullopt);
  EXPECT_EQ(image_id_of_key("variants/" + id), std::nullopt);
  EXPECT_EQ(image_id_of_key("test/abc/" + id), std::nullopt);
  EXPECT_EQ(image_id_of_key("originals/not-a-uuid"), std::nullopt);
}

TEST(ImageKeys, AnIdCarriesTheTimeItWasMinted) {
  const auto t = std::chrono::system_clock::time_point(std::chrono::milliseconds(1'790'000'000'123));
  const auto id = ids::uuid_v7(t);
  EXPECT_EQ(minted_at(id), t);
  EXPECT_EQ(minted_at("01a2290b-1c2d-4e3f-8a4b-5c6d7e8f9a0b"), std::nullopt) << "not a v7: no time";
  EXPECT_EQ(minted_at("nope"), std::nullopt);
}

TEST(PresignedPut, IsBoundToTheSignedHeaders) {
  const s3::Credentials creds{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1"};
  const auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1'790'000'000));
  auto url = [&](std::string length, std::string type) {
    return s3::presign(creds, "PUT", "http", "s3.local:9000", "/b/uploads/x", std::chrono::seconds(120), now, {},
                       {{"content-length", length}, {"content-type", type}});
  };
  const auto signed_url = url("1000", "image/jpeg");
  EXPECT_NE(signed_url.find("X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost"), std::string::npos)
      << signed_url;
  EXPECT_NE(signed_url.find("X-Amz-Expires=120"), std::string::npos);
  auto signature = [](const std::string& u) { return u.substr(u.find("X-Amz-Signature=")); };
  EXPECT_NE(signature(signed_url), signature(url("1001", "image/jpeg")));
  EXPECT_NE(signature(signed_url), signature(url("1000", "text/html")));
  const auto host_only =
      s3::presign(creds, "PUT", "http", "s3.local:9000", "/b/uploads/x", std::chrono::seconds(120), now);
  EXPECT_NE(host_only.find("X-Amz-SignedHeaders=host&"), std::string::npos);
}
