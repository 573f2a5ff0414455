#pragma once
// sluice-capture's text: times in and out (RFC 3339 UTC with nanoseconds, or epoch seconds)
// and JSON strings.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::capture_tool {

// "2026-12-01T22:00:00Z", "2026-12-01T22:00:00.5+01:00", "1796162400", "1796162400.25" ->
// nanoseconds since the epoch; nullopt when it is neither form or before 1970.
std::optional<uint64_t> parse_time(std::string_view s);
// "2026-12-01T22:00:00.000000000Z".
std::string format_time(uint64_t ns);
// s as a quoted JSON string.
std::string json_string(std::string_view s);

}  // namespace sluice::capture_tool
