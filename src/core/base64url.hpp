// base64url without padding (RFC 4648 §5): JWT parts, opaque page cursors.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace nimbus {

std::string base64url_encode(std::string_view data);
// nullopt for padding, characters of the standard alphabet, or an impossible length.
std::optional<std::string> base64url_decode(std::string_view text);

}  // namespace nimbus
