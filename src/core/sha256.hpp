// SHA-256, whole or incremental (an upload is hashed as it streams), as lowercase hex.
#pragma once

#include <memory>
#include <string>
#include <string_view>

struct evp_md_ctx_st;

namespace nimbus {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(std::string_view bytes);
  // The digest of everything given so far, in hex; the hasher is done after this.
  std::string hex();

  static std::string hex_of(std::string_view bytes);

 private:
  evp_md_ctx_st* ctx_;
};

}  // namespace nimbus
