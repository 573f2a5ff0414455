#pragma once
// A JSON string literal for control-path output (names, messages, paths): the one escaper of
// the rooms that print JSON by hand (sluice --doctor, the statistics JSON). tools/capture keeps
// its own, which also escapes every byte past ASCII (file names need not be UTF-8).

#include <fmt/format.h>

#include <string>
#include <string_view>

namespace sluice::sys {

inline std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

}  // namespace sluice::sys
