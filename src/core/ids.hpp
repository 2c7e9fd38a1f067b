// Identifiers: UUIDv7 (RFC 9562) — time-ordered, so new rows land at the end of
// B-tree indexes and ids sort by creation, yet unguessable (74 random bits).
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace nimbus::ids {

std::string uuid_v7(std::chrono::system_clock::time_point now = std::chrono::system_clock::now());
// Canonical lowercase 8-4-4-4-12 form, any version.
bool is_uuid(std::string_view text);

}  // namespace nimbus::ids
