#pragma once

// The flows file's fast reader (flows_fast.cpp) and what it shares with config.cpp's
// decoders. Internal to lib/config: callers use load_flows and parse_flows.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "lib/config/config.h"

namespace sluice::config::detail {

// The Flows in `text` when the fast reader takes it (valid, and in the part of YAML it
// reads); std::nullopt when yaml-cpp and the decoders must read it.
std::optional<Flows> read_flows_fast(const std::string& text, const std::string& path,
                                     const Appliance& app);

// The decoders' own checks, for the fast reader.
std::string cidr_problem(const std::string& text, Cidr& out);  // empty when fine, else why
std::optional<int64_t> decimal(std::string_view text);         // all of text, or nothing
bool rule_name_ok(const std::string& name);
std::optional<uint8_t> proto_number(std::string_view name);  // "tcp" -> 6; not a number

}  // namespace sluice::config::detail
