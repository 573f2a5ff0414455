// Decoding of sluice.yaml and flows.yaml (schema: CONTRACT.md).
//
// Every decoder takes a Value (a node, where it stands, and its dotted path such as
// "ports[1].mtu") and throws Failure on the first problem. Exceptions never leave this file:
// load_appliance/load_flows catch them and return a Result whose message reads
// "FILE:LINE:COL: what is wrong; what was expected".
//
// Decoders are plain functions rather than YAML::convert<T> specialisations: convert<T> can
// only answer true/false, which loses the message and the mark, and port names in the flows
// file need the appliance's port table to resolve.

#include "lib/config/config.h"

#include "lib/config/flows_fast.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <map>
#include <optional>
#include <string_view>
#include <utility>

namespace sluice::config {

namespace {

constexpr size_t kMaxPorts = 32;     // pipeline::kMaxPorts (the config room stays DPDK-free)
constexpr int64_t kMaxLcore = 1023;  // >= RTE_MAX_LCORE - 1; EAL checks the real lcore set
constexpr int64_t kMinRing = 64;
constexpr int64_t kMaxRing = 1 << 20;

constexpr std::string_view kApplianceKeys[] = {"ports", "workers",   "rings",   "mempool",
                                               "flows", "telemetry", "logging", "capture"};
// Room in a chunk beyond one snaplen packet: the section header (SHB and an IDB per port,
// about 2.3 KiB for 32 ports with 31-character names), the EPB header and the trailer.
constexpr uint64_t kChunkHeadroom = 8192;
constexpr uint64_t kMinChunk = 8192;
constexpr uint64_t kMaxChunk = 64ull << 20;

// A problem at a place in the file being decoded. Thrown only inside this file.
struct Failure {
  YAML::Mark mark;
  std::string message;
};

// A file that cannot be read (no mark: there is no content to point into).
struct ReadFailure {
  std::string message;
};

[[noreturn]] void fail(const YAML::Mark& mark, std::string message) {
  throw Failure{mark, std::move(message)};
}

Mark to_mark(const std::string& file, const YAML::Mark& m) {
  if (m.is_null() || m.line < 0) return Mark{file, 1, 1};
  return Mark{file, m.line + 1, m.column + 1};
}

std::string join(const auto& items, std::string_view sep = ", ") {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += sep;
    out += item;
  }
  return out;
}

// Escapes what a terminal should not get raw: control bytes and bytes that are not UTF-8.
void escape_byte(std::string& out, unsigned char c) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += "\\x";
  out += kHex[c >> 4];
  out += kHex[c & 15];
}

// Length of the well-formed UTF-8 sequence at s[i], or 0.
size_t utf8_length(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (n == 0 || (n > 1 && c < 0xc2) || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return 0;
  }
  return n;
}

// Appends s to out with control bytes and non-UTF-8 bytes as \xNN, stopping before out would
// pass `max` bytes; returns whether all of s fitted.
bool append_printable(std::string& out, std::string_view s, size_t max) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x20 || c == 0x7f ? 0 : utf8_length(s, i);
    if (out.size() + (n == 0 ? 4 : n) > max) return false;
    if (n == 0) {
      escape_byte(out, c);
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return true;
}

// What a message quotes of the file's own text: its first line, at most kExcerpt bytes, with
// "..." where it was cut (a binary or one-line file is not printed whole).
constexpr size_t kExcerpt = 120;
std::string excerpt(std::string_view text) {
  const size_t eol = text.find_first_of("\r\n");
  std::string out;
  const bool whole = append_printable(out, text.substr(0, eol), kExcerpt);
  const bool more = eol != std::string_view::npos &&
                    text.find_first_not_of(" \t\r\n", eol) != std::string_view::npos;
  if (!whole || more) out += "...";
  return out;
}

// A message as it leaves this file: one line, printable (yaml-cpp quotes raw bytes too).
std::string printable(std::string_view message) {
  std::string out;
  (void)append_printable(out, message, std::numeric_limits<size_t>::max());
  return out;
}

bool has_control(std::string_view s) {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

// A node, where problems with it are reported, and its path for messages.
struct Value {
  YAML::Node node;
  YAML::Mark mark;      // the value's own mark (its key's when the value is empty)
  YAML::Mark key_mark;  // of its key in the parent map; the value's mark for list items
  std::string path;     // "ports[1].mtu"; empty for the document root
};

std::string describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return n.Tag() == "!" ? "the string \"" + excerpt(n.Scalar()) + "\""
                            : "'" + excerpt(n.Scalar()) + "'";
    default:
      return "nothing";
  }
}

// "path: " or "" at the document root.
std::string at(const Value& v) {
  return v.path.empty() ? std::string() : v.path + ": ";
}

[[noreturn]] void wrong(const Value& v, std::string_view expected) {
  fail(v.mark, at(v) + "got " + describe(v.node) + "; expected " + std::string(expected));
}

// The fields of a map, checked against the keys it may hold.
class Fields {
 public:
  Fields(const Value& v, std::initializer_list<std::string_view> allowed)
      : Fields(v, std::vector<std::string_view>(allowed)) {}

  Fields(const Value& v, const std::vector<std::string_view>& allowed) : self_(v) {
    std::vector<std::string> names(allowed.begin(), allowed.end());
    allowed_ = join(names);
    if (v.node.IsNull()) return;  // "section:" with nothing under it: all defaults
    if (!v.node.IsMap()) wrong(v, "a map with keys " + allowed_);
    for (auto it = v.node.begin(); it != v.node.end(); ++it) {
      const YAML::Node key = it->first;
      const YAML::Node value = it->second;
      if (!key.IsScalar()) {
        fail(key.Mark(), at(v) + "got " + describe(key) + " as a key; expected one of " + allowed_);
      }
      const std::string& name = key.Scalar();
      if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
        fail(key.Mark(), at(v) + "unknown key '" + excerpt(name) + "'" +
                             (v.path.empty() ? " at the top level" : "") + "; expected one of " +
                             allowed_);
      }
      if (const Value* first = find(name)) {
        fail(key.Mark(), at(v) + "duplicate key '" + excerpt(name) + "' (first at line " +
                             std::to_string(first->key_mark.line + 1) +
                             "); expected each key once");
      }
      const YAML::Mark mark = value.IsNull() ? key.Mark() : value.Mark();
      names_.push_back(name);
      fields_.push_back(Value{value, mark, key.Mark(), child(name)});
    }
  }

  const Value* find(std::string_view name) const {
    for (size_t i = 0; i < names_.size(); ++i) {
      if (names_[i] == name) return &fields_[i];
    }
    return nullptr;
  }

  const Value& need(std::string_view name, std::string_view hint = {}) const {
    if (const Value* f = find(name)) return *f;
    std::string msg = at(self_) + "missing required key '" + std::string(name) + "'";
    if (!hint.empty()) msg += "; expected " + std::string(hint);
    fail(self_.mark, std::move(msg));
  }

 private:
  std::string child(std::string_view name) const {
    return self_.path.empty() ? std::string(name) : self_.path + "." + std::string(name);
  }

  Value self_;
  std::string allowed_;
  std::vector<std::string> names_;
  std::vector<Value> fields_;  // parallel to names_, in file order
};

std::vector<Value> as_list(const Value& v, std::string_view expected) {
  if (!v.node.IsSequence()) wrong(v, expected);
  std::vector<Value> items;
  for (size_t i = 0; i < v.node.size(); ++i) {
    const YAML::Node item = v.node[i];
    const YAML::Mark mark = item.IsNull() || item.Mark().is_null() ? v.mark : item.Mark();
    items.push_back(Value{item, mark, mark, v.path + "[" + std::to_string(i) + "]"});
  }
  return items;
}

// A decimal integer; `text` must be all of it.
std::optional<int64_t> to_int(std::string_view text, bool* overflow = nullptr) {
  int64_t out = 0;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, out);
  if (overflow) *overflow = ec == std::errc::result_out_of_range;
  if (text.empty() || ec != std::errc() || p != end) return std::nullopt;
  return out;
}

std::string range_text(int64_t lo, int64_t hi) {
  if (hi == std::numeric_limits<int64_t>::max()) return "an integer >= " + std::to_string(lo);
  return "an integer " + std::to_string(lo) + ".." + std::to_string(hi);
}

// An unquoted integer in lo..hi. A quoted "5" is a string and is refused.
int64_t as_int(const Value& v, int64_t lo, int64_t hi, std::string expected = {}) {
  if (expected.empty()) expected = range_text(lo, hi);
  if (!v.node.IsScalar() || v.node.Tag() == "!") wrong(v, expected);
  bool overflow = false;
  auto n = to_int(v.node.Scalar(), &overflow);
  if (!n && !overflow) wrong(v, expected);
  if (overflow || *n < lo || *n > hi) {
    fail(v.mark, at(v) + excerpt(v.node.Scalar()) + " is out of range; expected " + expected);
  }
  return *n;
}

std::string as_string(const Value& v, std::string_view expected) {
  if (!v.node.IsScalar()) wrong(v, expected);
  return v.node.Scalar();
}

bool as_bool(const Value& v) {
  bool b = false;
  if (!v.node.IsScalar() || v.node.Tag() == "!" || !YAML::convert<bool>::decode(v.node, b)) {
    wrong(v, "true or false");
  }
  return b;
}

// One of a fixed set of words; returns its index.
size_t as_choice(const Value& v, std::initializer_list<std::string_view> choices) {
  std::vector<std::string> names(choices.begin(), choices.end());
  const std::string expected = join(names, "|");
  const std::string text = as_string(v, expected);
  for (size_t i = 0; i < names.size(); ++i) {
    if (text == names[i]) return i;
  }
  wrong(v, expected);
}

bool name_ok(const std::string& s, size_t max, std::string_view extra, bool upper) {
  if (s.empty() || s.size() > max) return false;
  return std::all_of(s.begin(), s.end(), [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (upper && c >= 'A' && c <= 'Z') ||
           extra.find(c) != std::string_view::npos;
  });
}

// ---- the appliance file ----

PortConfig decode_port(const Value& v) {
  Fields f(
      v, {"name", "device", "rx_queues", "rx_descriptors", "tx_descriptors", "mtu", "distribute"});
  PortConfig p;
  p.mark = to_mark("", v.mark);
  const Value& name = f.need("name", "a port name such as wan");
  p.name = as_string(name, "a port name");
  if (!name_ok(p.name, 31, "_-", false)) {
    fail(name.mark, name.path + ": '" + excerpt(p.name) +
                        "' is not a valid port name; expected 1 to 31 characters from a-z, 0-9, "
                        "'_' and '-'");
  }
  const std::string kDevice =
      "a PCI address (\"0000:3b:00.0\") or a vdev string (\"net_pcap0,iface=eth0\")";
  const Value& device = f.need("device", kDevice);
  p.device = as_string(device, kDevice);
  if (p.device.empty()) fail(device.mark, device.path + ": empty device; expected " + kDevice);
  // A vdev's name has no ':' (a driver name and an instance number): text with one was meant as
  // a PCI address, and one that does not parse would only fail at start as an unknown vdev.
  if (const std::string name = p.device.substr(0, p.device.find(','));
      name.find(':') != std::string::npos && !pci_address(name)) {
    fail(device.mark, device.path + ": '" + excerpt(name) +
                          "' is not a PCI address; expected DDDD:BB:DD.F in hex (bus 00..ff, "
                          "device 00..1f, function 0..7), such as 0000:3b:00.0, or a vdev string "
                          "(\"net_pcap0,iface=eth0\")");
  }
  p.device_mark = to_mark("", device.mark);
  if (auto* q = f.find("rx_queues")) p.rx_queues = static_cast<uint16_t>(as_int(*q, 1, 64));
  if (auto* d = f.find("rx_descriptors")) {
    p.rx_descriptors = static_cast<uint16_t>(as_int(*d, 64, 32768));
  }
  if (auto* d = f.find("tx_descriptors")) {
    p.tx_descriptors = static_cast<uint16_t>(as_int(*d, 64, 32768));
  }
  if (auto* m = f.find("mtu")) p.mtu = static_cast<uint16_t>(as_int(*m, 68, 9600));
  if (auto* d = f.find("distribute")) {
    p.distribute = static_cast<Distribute>(as_choice(*d, {"auto", "rss", "ring"}));
    p.distribute_mark = to_mark("", d->mark);
    if (p.distribute == Distribute::kRing && p.rx_queues && *p.rx_queues > 1) {
      fail(d->mark, d->path +
                        ": ring gives the port one RX queue, whose poller spreads it over "
                        "the workers; remove rx_queues (" +
                        std::to_string(*p.rx_queues) + ") or say distribute: rss");
    }
  }
  return p;
}

std::vector<PortConfig> decode_ports(const Value& v) {
  const auto items = as_list(v, "a list of ports, each with a name and a device");
  if (items.empty()) wrong(v, "at least one port");
  if (items.size() > kMaxPorts) {
    fail(items[kMaxPorts].mark, v.path + ": " + std::to_string(items.size()) +
                                    " ports; expected at most " + std::to_string(kMaxPorts));
  }
  std::vector<PortConfig> ports;
  std::map<std::string, int> lines;
  std::map<std::string, size_t> devices;  // device_name -> index in ports
  for (const auto& item : items) {
    PortConfig p = decode_port(item);
    auto [it, fresh] = lines.emplace(p.name, p.mark.line);
    if (!fresh) {
      fail(item.node["name"].Mark(), item.path + ".name: duplicate port name '" + p.name +
                                         "' (first at line " + std::to_string(it->second) +
                                         "); expected unique port names");
    }
    // Two ports on one device would be one DPDK port under two names (the second's arguments
    // ignored): an error here, not a surprise at run time.
    const std::string id = device_name(p.device);
    if (auto d = devices.find(id); d != devices.end()) {
      fail(item.node["device"].Mark(),
           item.path + ".device: \"" + p.device + "\" is device " + id + ", which port '" +
               ports[d->second].name + "' already uses (line " +
               std::to_string(ports[d->second].device_mark.line) +
               "); expected one device per port (DPDK names a vdev by the text before its first "
               "comma: number the instances, such as net_null0 and net_null1)");
    }
    devices.emplace(id, ports.size());
    ports.push_back(std::move(p));
  }
  return ports;
}

WorkersConfig decode_workers(const Value& v) {
  Fields f(v, {"lcores", "burst", "flow_cache"});
  WorkersConfig w;
  const Value& lcores = f.need("lcores", "a list of worker lcores such as [1, 2]");
  const auto items = as_list(lcores, "a list of lcore numbers such as [1, 2]");
  if (items.empty()) wrong(lcores, "at least one lcore");
  for (const auto& item : items) {
    const auto l = static_cast<unsigned>(as_int(item, 0, kMaxLcore));
    for (size_t i = 0; i < w.lcores.size(); ++i) {
      if (w.lcores[i] == l) {
        fail(item.mark, lcores.path + ": lcore " + std::to_string(l) +
                            " is listed twice (first at line " +
                            std::to_string(w.lcore_marks[i].line) + "); expected distinct lcores");
      }
    }
    w.lcores.push_back(l);
    w.lcore_marks.push_back(to_mark("", item.mark));
  }
  if (auto* b = f.find("burst")) w.burst = static_cast<unsigned>(as_int(*b, 1, 64));
  if (auto* c = f.find("flow_cache")) {
    const std::string expected = "0 (off) or a power of two 2..1048576 (entries per worker)";
    const int64_t n = as_int(*c, 0, kMaxFlowCache, expected);
    if (n == 1 || (n & (n - 1)) != 0) {
      int64_t up = 2;
      while (up < n) up <<= 1;
      fail(c->mark, c->path + ": " + std::to_string(n) +
                        " is not a power of two from 2; expected " + expected + " (did you mean " +
                        std::to_string(up) + "?)");
    }
    w.flow_cache = static_cast<uint32_t>(n);
  }
  return w;
}

RingsConfig decode_rings(const Value& v) {
  Fields f(v, {"size"});
  RingsConfig r;
  if (auto* s = f.find("size")) {
    const std::string expected = "a power of two 64..1048576";
    const int64_t n = as_int(*s, kMinRing, kMaxRing, expected);
    if ((n & (n - 1)) != 0) {
      int64_t up = kMinRing;
      while (up < n) up <<= 1;
      fail(s->mark, s->path + ": " + std::to_string(n) + " is not a power of two; expected " +
                        expected + " (did you mean " + std::to_string(up) + "?)");
    }
    r.size = static_cast<uint32_t>(n);
  }
  return r;
}

MempoolConfig decode_mempool(const Value& v) {
  Fields f(v, {"mbufs", "cache"});
  MempoolConfig m;
  if (auto* n = f.find("mbufs")) {
    if (!(n->node.IsScalar() && n->node.Tag() != "!" && n->node.Scalar() == "auto")) {
      m.mbufs = static_cast<uint32_t>(
          as_int(*n, 1024, std::numeric_limits<uint32_t>::max(), "auto or an integer >= 1024"));
    }
  }
  if (auto* c = f.find("cache")) m.cache = static_cast<uint32_t>(as_int(*c, 0, 512));
  return m;
}

// "host:port" or "[v6]:port". Returns an empty string when fine, else what is wrong.
std::string check_host_port(const std::string& s) {
  std::string host, port;
  if (!s.empty() && s[0] == '[') {
    const size_t close = s.find(']');
    if (close == std::string::npos || close + 1 >= s.size() || s[close + 1] != ':') {
      return "'" + excerpt(s) + "' is not host:port";
    }
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
  } else {
    const size_t colon = s.rfind(':');
    if (colon == std::string::npos) return "'" + excerpt(s) + "' has no port";
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      return "'" + excerpt(s) + "' has an IPv6 host without brackets";
    }
  }
  if (host.empty()) return "'" + excerpt(s) + "' has no host";
  // An address, as the listener binds it (lib/stats/prometheus_server.cpp): a name such as
  // localhost would pass here and fail at start, after --check and ExecStartPre said OK.
  in6_addr addr;
  if (inet_pton(AF_INET, host.c_str(), &addr) != 1 &&
      inet_pton(AF_INET6, host.c_str(), &addr) != 1) {
    return "'" + excerpt(s) + "' has host '" + excerpt(host) +
           "', not an IPv4 or IPv6 address (names are not resolved)";
  }
  auto n = to_int(port);
  if (!n || *n < 1 || *n > 65535 || port[0] == '+' || port[0] == '-') {
    return "'" + excerpt(s) + "' has port '" + excerpt(port) + "', not 1..65535";
  }
  return {};
}

TelemetryConfig decode_telemetry(const Value& v) {
  Fields f(v, {"prometheus"});
  TelemetryConfig t;
  if (auto* p = f.find("prometheus")) {
    const std::string expected = "host:port such as 127.0.0.1:9464 (port 1..65535)";
    const std::string text = as_string(*p, expected);
    if (const std::string why = check_host_port(text); !why.empty()) {
      fail(p->mark, p->path + ": " + why + "; expected " + expected);
    }
    t.prometheus = text;
    t.prometheus_mark = to_mark("", p->mark);
  }
  return t;
}

LoggingConfig decode_logging(const Value& v) {
  Fields f(v, {"level"});
  LoggingConfig l;
  if (auto* level = f.find("level")) {
    l.level = static_cast<LogLevel>(as_choice(*level, {"trace", "debug", "info", "warn", "error"}));
  }
  return l;
}

// A size: a plain integer or one with a KiB/MiB/GiB suffix, at least lo.
uint64_t as_size(const Value& v, uint64_t lo, std::string_view what) {
  const std::string expected =
      std::string(what) + " (an integer, or with a KiB, MiB or GiB suffix such as 1MiB)";
  if (!v.node.IsScalar()) wrong(v, expected);
  auto n = parse_size(v.node.Scalar());
  if (!n) wrong(v, expected);
  if (*n < lo) {
    fail(v.mark, at(v) + excerpt(v.node.Scalar()) + " is too small; expected at least " +
                     std::to_string(lo) + " bytes");
  }
  return *n;
}

std::string size_text(uint64_t n) {
  if (n % (1ull << 30) == 0) return std::to_string(n >> 30) + "GiB";
  if (n % (1ull << 20) == 0) return std::to_string(n >> 20) + "MiB";
  if (n % (1ull << 10) == 0) return std::to_string(n >> 10) + "KiB";
  return std::to_string(n);
}

CaptureConfig decode_capture(const Value& v, const WorkersConfig& workers) {
  Fields f(v, {"lcore", "path", "chunk_bytes", "segment_bytes", "retain_bytes", "queue_depth",
               "snaplen", "backend", "flush_ms", "malformed", "format"});
  CaptureConfig c;
  c.mark = to_mark("", v.mark);
  const Value& lcore = f.need("lcore", "the lcore of the capture loop, such as lcore: 2");
  c.lcore = static_cast<unsigned>(as_int(lcore, 0, kMaxLcore));
  c.lcore_mark = to_mark("", lcore.mark);
  for (size_t i = 0; i < workers.lcores.size(); ++i) {
    if (workers.lcores[i] == c.lcore) {
      fail(lcore.mark, lcore.path + ": lcore " + std::to_string(c.lcore) +
                           " is also a worker lcore (line " +
                           std::to_string(workers.lcore_marks[i].line) +
                           "); expected an lcore of its own, in EAL's -l and not a worker");
    }
  }
  const std::string kPath =
      "the directory of the capture store, such as /var/lib/sluice/capture, or a block device";
  const Value& path = f.need("path", kPath);
  c.path = as_string(path, kPath);
  if (c.path.empty()) fail(path.mark, path.path + ": empty path; expected " + kPath);
  if (has_control(c.path)) {
    fail(path.mark,
         path.path + ": the path has a control character (a line break?); expected " + kPath);
  }
  c.path_mark = to_mark("", path.mark);

  const Value* chunk = f.find("chunk_bytes");
  if (chunk) {
    c.chunk_bytes = as_size(*chunk, kMinChunk, "a multiple of 4096 from 8KiB to 64MiB");
    if (c.chunk_bytes % 4096 != 0 || c.chunk_bytes > kMaxChunk) {
      fail(chunk->mark, chunk->path + ": " + excerpt(chunk->node.Scalar()) +
                            " is not a multiple of 4096 from 8KiB to 64MiB; expected one such "
                            "as 1MiB (chunks are written by aligned direct I/O)");
    }
  }
  if (auto* s = f.find("snaplen")) c.snaplen = static_cast<uint32_t>(as_int(*s, 64, 65535));
  if (c.snaplen + kChunkHeadroom > c.chunk_bytes) {
    const Value& where = f.find("snaplen") ? *f.find("snaplen") : (chunk ? *chunk : v);
    fail(where.mark,
         "capture: snaplen " + std::to_string(c.snaplen) + " does not fit in a chunk of " +
             size_text(c.chunk_bytes) + " with its headers; expected snaplen at most " +
             std::to_string(c.chunk_bytes - kChunkHeadroom) + " or a larger chunk_bytes");
  }
  if (auto* s = f.find("segment_bytes")) {
    c.segment_bytes = as_size(*s, 1, "a segment size larger than chunk_bytes");
  }
  if (c.segment_bytes <= c.chunk_bytes) {
    const Value* s = f.find("segment_bytes");
    fail(s ? s->mark : v.mark, "capture.segment_bytes: " + size_text(c.segment_bytes) +
                                   " is not larger than chunk_bytes (" + size_text(c.chunk_bytes) +
                                   "); expected segments of several chunks, such as 1GiB");
  }
  if (auto* r = f.find("retain_bytes")) {
    c.retain_bytes = as_size(*r, 1, "a retention size larger than segment_bytes");
  }
  if (c.retain_bytes <= c.segment_bytes) {
    const Value* r = f.find("retain_bytes");
    fail(r ? r->mark : v.mark, "capture.retain_bytes: " + size_text(c.retain_bytes) +
                                   " is not larger than segment_bytes (" +
                                   size_text(c.segment_bytes) +
                                   "); expected room for more than one segment, such as 64GiB");
  }
  if (auto* q = f.find("queue_depth")) c.queue_depth = static_cast<unsigned>(as_int(*q, 1, 1024));
  if (auto* b = f.find("backend")) {
    c.backend = static_cast<CaptureBackend>(as_choice(*b, {"auto", "uring", "passthru"}));
    c.backend_mark = to_mark("", b->mark);
  }
  if (auto* m = f.find("flush_ms")) c.flush_ms = static_cast<unsigned>(as_int(*m, 1, 3600000));
  if (auto* m = f.find("malformed")) c.malformed = as_bool(*m);
  if (auto* m = f.find("format")) c.format = as_bool(*m);
  return c;
}

Appliance decode_appliance(const YAML::Node& root, const std::string& path) {
  const Value doc{root, root.Mark(), root.Mark(), ""};
  Fields f(doc,
           std::vector<std::string_view>(std::begin(kApplianceKeys), std::end(kApplianceKeys)));
  Appliance a;
  a.path = path;
  a.ports = decode_ports(f.need("ports", "a list of ports"));
  a.workers = decode_workers(f.need("workers", "workers: { lcores: [1] }"));
  if (auto* r = f.find("rings")) a.rings = decode_rings(*r);
  if (auto* m = f.find("mempool")) a.mempool = decode_mempool(*m);
  if (auto* t = f.find("telemetry")) a.telemetry = decode_telemetry(*t);
  if (auto* l = f.find("logging")) a.logging = decode_logging(*l);
  if (auto* c = f.find("capture")) {
    a.capture = decode_capture(*c, a.workers);
    const std::filesystem::path cp(a.capture->path);
    if (!cp.is_absolute()) {
      a.capture->path = (std::filesystem::path(path).parent_path() / cp).string();
    }
    a.capture->mark.file = a.capture->lcore_mark.file = a.capture->path_mark.file = path;
    a.capture->backend_mark.file = path;
  }

  const std::string kFlows = "the path of the flows file (relative to this file's folder)";
  const Value& flows = f.need("flows", kFlows);
  const std::string flows_path = as_string(flows, kFlows);
  if (flows_path.empty()) fail(flows.mark, "flows: empty path; expected " + kFlows);
  if (has_control(flows_path)) {
    fail(flows.mark, "flows: the path has a control character (a line break?); expected " + kFlows);
  }
  const std::filesystem::path p(flows_path);
  a.flows_path =
      p.is_absolute() ? flows_path : (std::filesystem::path(path).parent_path() / p).string();
  a.flows_mark = to_mark("", flows.mark);

  // Marks were made without the file name (decoders do not know it); add it once here.
  for (auto& port : a.ports) {
    port.mark.file = path;
    port.device_mark.file = port.distribute_mark.file = path;
  }
  for (auto& m : a.workers.lcore_marks) m.file = path;
  a.flows_mark.file = path;
  a.telemetry.prometheus_mark.file = path;
  return a;
}

// ---- the flows file ----

struct Protocol {
  std::string_view name;
  uint8_t number;
};
constexpr Protocol kProtocols[] = {{"tcp", 6},    {"udp", 17}, {"icmp", 1}, {"icmpv6", 58},
                                   {"sctp", 132}, {"gre", 47}, {"esp", 50}};

uint16_t decode_port_ref(const Value& v, const Appliance& app) {
  std::vector<std::string> names;
  for (const auto& p : app.ports) names.push_back(p.name);
  const std::string expected = "one of the configured ports: " + join(names);
  const std::string name = as_string(v, "a port name, " + expected);
  const int id = app.port_index(name);
  if (id < 0) {
    fail(v.mark, v.path + ": unknown port '" + excerpt(name) + "'; expected " + expected);
  }
  return static_cast<uint16_t>(id);
}

uint8_t decode_proto(const Value& v) {
  const std::string expected = "tcp|udp|icmp|icmpv6|sctp|gre|esp or a number 0..255";
  const std::string text = as_string(v, expected);
  for (const auto& p : kProtocols) {
    if (text == p.name) return p.number;
  }
  auto n = to_int(text);
  if (!n || *n < 0 || *n > 255 || text[0] == '-') wrong(v, expected);
  return static_cast<uint8_t>(*n);
}

// Parses a CIDR; returns an empty string when fine, else what is wrong.
std::string parse_cidr(const std::string& text, Cidr& out) {
  const size_t slash = text.find('/');
  const std::string addr = text.substr(0, slash);
  if (inet_pton(AF_INET, addr.c_str(), out.addr.data()) == 1) {
    out.family = 4;
  } else if (inet_pton(AF_INET6, addr.c_str(), out.addr.data()) == 1) {
    out.family = 6;
  } else {
    return "'" + excerpt(addr) + "' is not an IPv4 or IPv6 address";
  }
  const int max = out.family == 4 ? 32 : 128;
  int prefix = max;
  if (slash != std::string::npos) {
    const std::string ptext = text.substr(slash + 1);
    auto n = to_int(ptext);
    if (!n || ptext[0] == '-' || ptext[0] == '+' || *n > max) {
      return "prefix '/" + excerpt(ptext) + "' is out of range for IPv" +
             std::to_string(out.family) + " (0.." + std::to_string(max) + ")";
    }
    prefix = static_cast<int>(*n);
  }
  out.prefix = static_cast<uint8_t>(prefix);
  Cidr masked = out;
  const int bytes = max / 8;
  for (int i = 0; i < bytes; ++i) {
    const int keep = std::clamp(prefix - i * 8, 0, 8);
    masked.addr[i] &= static_cast<uint8_t>(keep == 0 ? 0 : 0xff << (8 - keep));
  }
  if (masked.addr != out.addr) {
    std::array<char, INET6_ADDRSTRLEN> buf{};
    inet_ntop(out.family == 4 ? AF_INET : AF_INET6, masked.addr.data(), buf.data(), buf.size());
    return excerpt(text) + " has host bits set; did you mean " + buf.data() + "/" +
           std::to_string(prefix) + "?";
  }
  return {};
}

Cidr decode_cidr(const Value& v) {
  const std::string expected =
      "an IPv4 or IPv6 address or CIDR such as 10.0.0.0/8, 2001:db8::/32 or 192.0.2.1";
  const std::string text = as_string(v, expected);
  Cidr c;
  if (const std::string why = parse_cidr(text, c); !why.empty()) {
    fail(v.mark, v.path + ": " + why + "; expected " + expected);
  }
  return c;
}

PortRange decode_port_range(const Value& v) {
  const std::string expected = "a port 0..65535 or a range LO-HI such as 1024-65535";
  const std::string text = as_string(v, expected);
  const size_t dash = text.find('-');
  const std::string lo_text = text.substr(0, dash);
  const std::string hi_text = dash == std::string::npos ? lo_text : text.substr(dash + 1);
  auto lo = to_int(lo_text), hi = to_int(hi_text);
  if (!lo || !hi || lo_text[0] == '+' || hi_text[0] == '+' || hi_text[0] == '-') {
    wrong(v, expected);
  }
  if (*lo < 0 || *hi < 0 || *lo > 65535 || *hi > 65535) {
    fail(v.mark, v.path + ": " + excerpt(text) + " is out of range; expected " + expected);
  }
  if (*lo > *hi) {
    fail(v.mark, v.path + ": " + excerpt(text) +
                     " has LO above HI; expected LO <= HI (did you mean " + excerpt(hi_text) + "-" +
                     excerpt(lo_text) + "?)");
  }
  return PortRange{static_cast<uint16_t>(*lo), static_cast<uint16_t>(*hi)};
}

Match decode_match(const Value& v, const Appliance& app) {
  Fields f(v, {"in_port", "proto", "src", "dst", "src_port", "dst_port"});
  Match m;
  if (auto* p = f.find("in_port")) m.in_port = decode_port_ref(*p, app);
  if (auto* p = f.find("proto")) m.proto = decode_proto(*p);
  if (auto* s = f.find("src")) m.src = decode_cidr(*s);
  if (auto* d = f.find("dst")) {
    m.dst = decode_cidr(*d);
    if (m.src && m.src->family != m.dst->family) {
      fail(d->mark, d->path + ": dst is IPv" + std::to_string(m.dst->family) + " but src is IPv" +
                        std::to_string(m.src->family) +
                        "; expected src and dst of the same family (or split the rule in two)");
    }
  }
  const bool ported = m.proto && (*m.proto == 6 || *m.proto == 17 || *m.proto == 132);
  for (const char* key : {"src_port", "dst_port"}) {
    const Value* p = f.find(key);
    if (!p) continue;
    if (!ported) {
      const std::string got = m.proto ? "proto " + proto_name(*m.proto) : "no proto";
      fail(p->key_mark, p->path + ": port match with " + got +
                            "; expected proto tcp, udp or sctp in the same match");
    }
    (std::string_view(key) == "src_port" ? m.src_port : m.dst_port) = decode_port_range(*p);
  }
  return m;
}

// action and to, shared by rules and the non_ip/default policies.
PolicyAction decode_action(const Fields& f, const Appliance& app) {
  PolicyAction a;
  const Value& action = f.need("action", "action: forward or action: drop");
  a.action = as_choice(action, {"forward", "drop"}) == 0 ? Action::kForward : Action::kDrop;
  const Value* to = f.find("to");
  if (a.action == Action::kForward) {
    if (!to) {
      fail(action.mark, action.path + ": forward without a port; expected 'to: PORT' beside it");
    }
    a.to = decode_port_ref(*to, app);
  } else if (to) {
    fail(to->key_mark, to->path + ": 'to' with action drop; expected no 'to' (or action: forward)");
  }
  return a;
}

PolicyAction decode_policy(const Value& v, const Appliance& app) {
  return decode_action(Fields(v, {"action", "to"}), app);
}

Rule decode_rule(const Value& v, const Appliance& app) {
  Fields f(v, {"name", "priority", "match", "action", "to", "mirror", "capture"});
  Rule r;
  r.mark = to_mark("", v.mark);
  const Value& name = f.need("name", "a rule name such as drop-telnet");
  r.name = as_string(name, "a rule name");
  if (!name_ok(r.name, 63, "_.-", true)) {
    fail(name.mark, name.path + ": '" + excerpt(r.name) +
                        "' is not a valid rule name; expected 1 to 63 characters from A-Z, a-z, "
                        "0-9, '_', '.' and '-'");
  }
  if (auto* p = f.find("priority")) r.priority = static_cast<uint16_t>(as_int(*p, 0, 65535));
  if (auto* m = f.find("match")) r.match = decode_match(*m, app);

  const PolicyAction a = decode_action(f, app);
  r.action = a.action;
  r.to = a.to;
  if (auto* m = f.find("mirror")) {
    r.mirror = decode_port_ref(*m, app);
    if (r.to && *r.to == *r.mirror) {
      fail(m->mark, m->path + ": mirror is the same port as 'to' (" + app.ports[*r.to].name +
                        "); expected a different port");
    }
  }
  if (auto* c = f.find("capture"); c && as_bool(*c)) {
    if (!app.capture) {
      fail(c->mark, c->path + ": capture: true but " + app.path +
                        " has no capture section; expected a capture: section there (see "
                        "CONTRACT) or capture: false");
    }
    r.capture = true;
  }
  return r;
}

Flows decode_flows(const YAML::Node& root, const std::string& path, const Appliance& app) {
  const Value doc{root, root.Mark(), root.Mark(), ""};
  Fields f(doc, {"version", "non_ip", "default", "rules"});
  Flows flows;
  flows.path = path;
  const Value& version = f.need("version", "version: 1");
  if (!version.node.IsScalar() || version.node.Tag() == "!" || version.node.Scalar() != "1") {
    fail(version.mark, "version: " + describe(version.node) +
                           " is not a flows file version this build reads; expected version: 1");
  }
  flows.version = 1;
  if (auto* n = f.find("non_ip")) flows.non_ip = decode_policy(*n, app);
  if (auto* d = f.find("default")) flows.fallback = decode_policy(*d, app);
  if (auto* rules = f.find("rules"); rules && !rules->node.IsNull()) {
    std::map<std::string, int> lines;
    for (const auto& item : as_list(*rules, "a list of rules (- name: ...)")) {
      Rule r = decode_rule(item, app);
      r.mark.file = path;
      auto [it, fresh] = lines.emplace(r.name, r.mark.line);
      if (!fresh) {
        const YAML::Node name = item.node["name"];
        fail(name.Mark(), item.path + ".name: duplicate rule name '" + r.name +
                              "' (first at line " + std::to_string(it->second) +
                              "); expected unique rule names");
      }
      flows.rules.push_back(std::move(r));
    }
  }
  return flows;
}

// ---- files ----

// What a path that is not a regular file is, for the message that refuses it.
const char* file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

std::string byte_size(uint64_t n) {
  char buf[32];
  if (n >= (1ull << 30)) {
    std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(n) / (1ull << 30));
  } else if (n >= (1ull << 20)) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(n) / (1ull << 20));
  } else {
    std::snprintf(buf, sizeof buf, "%llu bytes", static_cast<unsigned long long>(n));
  }
  return buf;
}

// Reads a whole file that must be a regular file of at most max_bytes. Opened non-blocking
// and checked with fstat before the first read, so a FIFO, /dev/zero, a directory or a huge
// (sparse) file is refused at once instead of hanging or filling memory.
std::string read_file(const std::string& path, uint64_t max_bytes, std::string_view what) {
  const std::string name = printable(path);
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) throw ReadFailure{"cannot read " + name + ": " + std::strerror(errno)};
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw ReadFailure{"cannot stat " + name + ": " + std::strerror(errno)};
  const std::string expected = "; expected " + std::string(what) + " as a regular file";
  if (!S_ISREG(st.st_mode)) {
    throw ReadFailure{"cannot read " + name + ": it is " + file_kind(st.st_mode) + expected};
  }
  const auto too_big = [&](uint64_t seen) {
    return ReadFailure{"cannot read " + name + ": it is " + byte_size(seen) + ", more than the " +
                       byte_size(max_bytes) + " " + std::string(what) +
                       " may be; expected a smaller file (is this the right file?)"};
  };
  if (static_cast<uint64_t>(st.st_size) > max_bytes) throw too_big(st.st_size);
  std::string data;
  data.reserve(static_cast<size_t>(st.st_size));
  std::array<char, 65536> buf;
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw ReadFailure{"cannot read " + name + ": " + std::strerror(errno)};
    if (n == 0) break;
    data.append(buf.data(), static_cast<size_t>(n));
    if (data.size() > max_bytes) throw too_big(data.size());  // it grew while read
  }
  return data;
}

YAML::Node parse_text(const std::string& text) {
  // YAML is text: a NUL byte means a binary file (yaml-cpp would report an odd escape).
  if (const size_t nul = text.find('\0'); nul != std::string::npos) {
    YAML::Mark at = YAML::Mark::null_mark();
    at.pos = static_cast<int>(nul);
    at.line = static_cast<int>(std::count(text.begin(), text.begin() + nul, '\n'));
    const size_t bol = text.rfind('\n', nul);
    at.column = static_cast<int>(bol == std::string::npos ? nul : nul - bol - 1);
    fail(at, "a NUL byte: this is not a text file (a binary?); expected YAML text");
  }
  try {
    return YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    fail(e.mark, "invalid YAML: " + e.msg +
                     "; expected well-formed YAML (check indentation, "
                     "quotes and brackets here or just above)");
  }
}

// The flows file in `text`: by the fast reader where it can, else by yaml-cpp and the decoders.
Flows decode_flows_text(const std::string& text, const std::string& path, const Appliance& app) {
  if (auto flows = detail::read_flows_fast(text, path, app)) return std::move(*flows);
  return decode_flows(parse_text(text), path, app);
}

YAML::Node parse(const std::string& path, uint64_t max_bytes, std::string_view what) {
  return parse_text(read_file(path, max_bytes, what));
}

constexpr std::string_view kApplianceWhat = "an appliance config";
constexpr std::string_view kFlowsWhat = "a flows file";

// Runs a decoder and turns its exceptions into an Error naming file:line:col. A read failure
// gets `read_prefix` (the mark that named the file) in front.
template <class F>
auto guarded(const std::string& file, F&& decode, const std::string& read_prefix = {})
    -> Result<decltype(decode())> {
  try {
    return decode();
  } catch (const Failure& e) {
    return Error{printable(to_mark(file, e.mark).str() + ": " + e.message)};
  } catch (const ReadFailure& e) {
    return Error{printable(read_prefix + e.message)};
  } catch (const YAML::Exception& e) {
    return Error{printable(to_mark(file, e.mark).str() + ": " + excerpt(e.msg))};
  }
}

}  // namespace

namespace detail {

std::string cidr_problem(const std::string& text, Cidr& out) {
  return parse_cidr(text, out);
}

std::optional<int64_t> decimal(std::string_view text) {
  return to_int(text);
}

bool rule_name_ok(const std::string& name) {
  return name_ok(name, 63, "_.-", true);
}

std::optional<uint8_t> proto_number(std::string_view name) {
  for (const auto& p : kProtocols) {
    if (name == p.name) return p.number;
  }
  return std::nullopt;
}

}  // namespace detail

std::string Mark::str() const {
  return file + ":" + std::to_string(line) + ":" + std::to_string(col);
}

int Appliance::port_index(const std::string& name) const {
  for (size_t i = 0; i < ports.size(); ++i) {
    if (ports[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

uint8_t Match::family() const {
  if (src) return src->family;
  if (dst) return dst->family;
  return 0;
}

std::string proto_name(uint8_t n) {
  for (const auto& p : kProtocols) {
    if (p.number == n) return std::string(p.name);
  }
  return std::to_string(n);
}

std::string cidr_text(const Cidr& c) {
  std::array<char, INET6_ADDRSTRLEN> buf{};
  inet_ntop(c.family == 4 ? AF_INET : AF_INET6, c.addr.data(), buf.data(), buf.size());
  const unsigned full = c.family == 4 ? 32 : 128;
  return c.prefix == full ? std::string(buf.data())
                          : std::string(buf.data()) + "/" + std::to_string(c.prefix);
}

std::optional<uint64_t> parse_size(const std::string& text) {
  static constexpr std::pair<std::string_view, int> kSuffixes[] = {
      {"KiB", 10}, {"MiB", 20}, {"GiB", 30}};
  std::string_view s = text;
  int shift = 0;
  for (const auto& [suffix, bits] : kSuffixes) {
    if (s.size() > suffix.size() && s.ends_with(suffix)) {
      s.remove_suffix(suffix.size());
      shift = bits;
      break;
    }
  }
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  uint64_t n = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  if (shift > 0 && n > (std::numeric_limits<uint64_t>::max() >> shift)) return std::nullopt;
  return n << shift;
}

std::optional<std::string> pci_address(std::string_view name) {
  if (name.empty() ||
      name.find_first_not_of("0123456789abcdefABCDEF:.") != std::string_view::npos) {
    return std::nullopt;
  }
  const std::string text(name);
  unsigned dom = 0, bus = 0, dev = 0, fn = 0;
  int used = 0;
  bool ok = std::sscanf(text.c_str(), "%x:%x:%x.%x%n", &dom, &bus, &dev, &fn, &used) == 4 &&
            used == static_cast<int>(text.size());
  if (!ok) {
    dom = 0;
    used = 0;
    ok = std::sscanf(text.c_str(), "%x:%x.%x%n", &bus, &dev, &fn, &used) == 3 &&
         used == static_cast<int>(text.size());
  }
  // The domain is 32 bits (Intel VMD's are above 0xffff); bus, device and function as PCI's.
  if (!ok || bus > 0xFF || dev > 0x1F || fn > 7) return std::nullopt;
  char pci[32];
  std::snprintf(pci, sizeof pci, "%04x:%02x:%02x.%x", dom, bus, dev, fn);
  return std::string(pci);
}

std::string device_name(std::string_view device) {
  const std::string_view name = device.substr(0, device.find(','));
  return pci_address(name).value_or(std::string(name));
}

Result<Appliance> load_appliance(const std::string& path) {
  return guarded(path, [&] {
    return decode_appliance(parse(path, kMaxApplianceBytes, kApplianceWhat), path);
  });
}

Result<Flows> load_flows(const std::string& path, const Appliance& appliance) {
  return guarded(path, [&] {
    return decode_flows_text(read_file(path, kMaxFlowsBytes, kFlowsWhat), path, appliance);
  });
}

Result<Flows> parse_flows(const std::string& path, const std::string& text,
                          const Appliance& appliance) {
  return guarded(path, [&] { return decode_flows_text(text, path, appliance); });
}

Result<Flows> parse_flows_full(const std::string& path, const std::string& text,
                               const Appliance& appliance) {
  return guarded(path, [&] { return decode_flows(parse_text(text), path, appliance); });
}

Result<std::string> read_text(const std::string& path) {
  return guarded(path, [&] { return read_file(path, kMaxFlowsBytes, kFlowsWhat); });
}

Result<std::shared_ptr<const Config>> load(const std::string& appliance_path) {
  auto app = load_appliance(appliance_path);
  if (!app) return Error{app.error()};
  const Appliance& a = *app;
  auto flows = guarded(
      a.flows_path,
      [&] {
        return decode_flows_text(read_file(a.flows_path, kMaxFlowsBytes, kFlowsWhat), a.flows_path,
                                 a);
      },
      a.flows_mark.str() + ": flows: ");
  if (!flows) return Error{flows.error()};
  return std::shared_ptr<const Config>(
      std::make_shared<Config>(Config{std::move(*app), std::move(*flows)}));
}

}  // namespace sluice::config
