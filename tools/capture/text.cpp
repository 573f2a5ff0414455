// sluice-capture's text (text.h).

#include "tools/capture/text.h"

#include <ctime>

#include <fmt/format.h>

namespace sluice::capture_tool {

namespace {

constexpr uint64_t kNsPerSecond = 1000000000;

bool digit(char c) {
  return c >= '0' && c <= '9';
}

// n digits at s[at...] as a number; false when they are not all digits.
bool digits(std::string_view s, size_t at, size_t n, int* out) {
  if (at + n > s.size()) return false;
  int v = 0;
  for (size_t i = at; i < at + n; ++i) {
    if (!digit(s[i])) return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

// ".123" -> nanoseconds (digits past the ninth are dropped); pos moves past them.
bool fraction(std::string_view s, size_t* pos, uint64_t* ns) {
  *ns = 0;
  if (*pos >= s.size() || s[*pos] != '.') return true;
  ++*pos;
  size_t n = 0;
  uint64_t scale = kNsPerSecond / 10;
  while (*pos < s.size() && digit(s[*pos])) {
    if (n++ < 9) {
      *ns += static_cast<uint64_t>(s[*pos] - '0') * scale;
      scale /= 10;
    }
    ++*pos;
  }
  return n > 0;
}

std::optional<uint64_t> parse_epoch(std::string_view s) {
  size_t pos = 0;
  uint64_t secs = 0;
  while (pos < s.size() && digit(s[pos])) {
    if (secs > (UINT64_MAX / kNsPerSecond) / 10) return std::nullopt;
    secs = secs * 10 + static_cast<uint64_t>(s[pos++] - '0');
  }
  if (pos == 0) return std::nullopt;
  uint64_t ns = 0;
  if (!fraction(s, &pos, &ns) || pos != s.size()) return std::nullopt;
  if (secs > (UINT64_MAX - ns) / kNsPerSecond) return std::nullopt;
  return secs * kNsPerSecond + ns;
}

std::optional<uint64_t> parse_rfc3339(std::string_view s) {
  int y, mo, d, h, mi, sec;
  if (!digits(s, 0, 4, &y) || s.size() < 19 || s[4] != '-' || !digits(s, 5, 2, &mo) ||
      s[7] != '-' || !digits(s, 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
      !digits(s, 11, 2, &h) || s[13] != ':' || !digits(s, 14, 2, &mi) || s[16] != ':' ||
      !digits(s, 17, 2, &sec)) {
    return std::nullopt;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return std::nullopt;
  size_t pos = 19;
  uint64_t ns = 0;
  if (!fraction(s, &pos, &ns) || pos >= s.size()) return std::nullopt;
  int64_t offset_s = 0;
  if (s[pos] == 'Z' || s[pos] == 'z') {
    ++pos;
  } else if (s[pos] == '+' || s[pos] == '-') {
    int oh, om;
    if (!digits(s, pos + 1, 2, &oh) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
        !digits(s, pos + 4, 2, &om) || oh > 23 || om > 59) {
      return std::nullopt;
    }
    offset_s = (s[pos] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  const int64_t t = static_cast<int64_t>(timegm(&tm)) - offset_s;
  if (t < 0) return std::nullopt;
  return static_cast<uint64_t>(t) * kNsPerSecond + ns;
}

}  // namespace

std::optional<uint64_t> parse_time(std::string_view s) {
  if (s.size() >= 5 && s[4] == '-') return parse_rfc3339(s);
  return parse_epoch(s);
}

std::string format_time(uint64_t ns) {
  const auto secs = static_cast<time_t>(ns / kNsPerSecond);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:09}Z", stamp, ns % kNsPerSecond);
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
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
        // Control bytes and, to keep the output valid UTF-8 whatever a file name holds,
        // bytes past ASCII are escaped one by one.
        if (c < 0x20 || c >= 0x7F) {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out += ch;
        }
    }
  }
  out += '"';
  return out;
}

}  // namespace sluice::capture_tool
