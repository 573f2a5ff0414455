#pragma once
// The appliance config (sluice.yaml) and the flows file (flows.yaml), decoded into plain,
// immutable structs. CONTRACT.md is the schema. Every error names file:line:col and is one
// printable line: it quotes at most one line of the file's text, cut at 120 bytes ("...").

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lib/sys/result.h"

namespace sluice::config {

// Where a value stands in its file. Lines and columns are 1-based, as editors show them.
struct Mark {
  std::string file;
  int line = 0;
  int col = 0;
  std::string str() const;  // "file:line:col"
};

// How a port's packets reach the workers (CONTRACT): the NIC's RSS over one RX queue per worker
// (with a symmetric key, so both directions of a flow meet on one worker), or one RX queue whose
// poller spreads bursts over the workers' hand-off rings by a symmetric flow hash (ports without
// RSS: memif, af_packet, tap, pcap). Auto: rss where the device offers it with enough queues,
// else ring.
enum class Distribute : uint8_t { kAuto, kRss, kRing };

struct PortConfig {
  std::string name;
  std::string device;                 // PCI address or vdev string
  std::optional<uint16_t> rx_queues;  // absent: one per worker
  uint16_t rx_descriptors = 1024;
  uint16_t tx_descriptors = 1024;
  std::optional<uint16_t> mtu;
  Distribute distribute = Distribute::kAuto;
  Mark mark;         // of the list entry
  Mark device_mark;  // of the device value
  Mark distribute_mark;
};

// Each worker's flow cache (lib/flow/flow_cache): entries by default, and at most.
inline constexpr uint32_t kDefaultFlowCache = 8192;
inline constexpr uint32_t kMaxFlowCache = 1u << 20;

struct WorkersConfig {
  std::vector<unsigned> lcores;
  std::vector<Mark> lcore_marks;            // one per lcore
  unsigned burst = 32;                      // 1..64
  uint32_t flow_cache = kDefaultFlowCache;  // entries per worker: 0 (off) or a power of two
};

struct RingsConfig {
  uint32_t size = 4096;  // power of two
};

struct MempoolConfig {
  std::optional<uint32_t> mbufs;  // absent: auto (computed from the rest of the config)
  uint32_t cache = 256;
};

struct TelemetryConfig {
  std::optional<std::string> prometheus;  // "host:port"
  Mark prometheus_mark;
};

// The capture store (CONTRACT "Capture store"). Absent from the file: capture disabled.
enum class CaptureBackend : uint8_t { kAuto, kUring, kPassthru };

struct CaptureConfig {
  unsigned lcore = 0;
  std::string path;  // resolved against the appliance file's folder
  uint64_t chunk_bytes = 1ull << 20;
  uint64_t segment_bytes = 1ull << 30;
  uint64_t retain_bytes = 64ull << 30;
  unsigned queue_depth = 32;
  uint32_t snaplen = 65535;
  CaptureBackend backend = CaptureBackend::kAuto;
  unsigned flush_ms = 1000;
  bool malformed = false;  // also capture every packet that fails validation
  // A block device path without a raw-store header (foreign data, or nothing yet) may be
  // formatted as a new store: its bytes are erased. Never needed for an existing store.
  bool format = false;
  Mark mark;  // of the section
  Mark lcore_mark;
  Mark path_mark;
  Mark backend_mark;
};

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError };

struct LoggingConfig {
  LogLevel level = LogLevel::kInfo;
};

struct Appliance {
  std::string path;  // the file it was read from
  std::vector<PortConfig> ports;
  WorkersConfig workers;
  RingsConfig rings;
  MempoolConfig mempool;
  std::string flows_path;  // resolved against the appliance file's folder
  Mark flows_mark;
  std::optional<CaptureConfig> capture;
  TelemetryConfig telemetry;
  LoggingConfig logging;

  // Port id (index into ports) of a name, or -1.
  int port_index(const std::string& name) const;
};

enum class Action : uint8_t { kForward, kDrop };

struct Cidr {
  uint8_t family = 4;              // 4 or 6
  std::array<uint8_t, 16> addr{};  // network byte order; IPv4 uses the first 4 bytes
  uint8_t prefix = 0;              // 0..32 or 0..128; host bits are zero
};

struct PortRange {
  uint16_t lo = 0;
  uint16_t hi = 65535;
};

struct Match {
  std::optional<uint16_t> in_port;  // port id
  std::optional<uint8_t> proto;
  std::optional<Cidr> src;
  std::optional<Cidr> dst;
  std::optional<PortRange> src_port;
  std::optional<PortRange> dst_port;

  // 4, 6, or 0 when neither src nor dst is given (the rule applies to both families).
  uint8_t family() const;
};

struct Rule {
  std::string name;
  uint16_t priority = 0;
  Match match;
  Action action = Action::kDrop;
  std::optional<uint16_t> to;      // port id; set iff action is forward
  std::optional<uint16_t> mirror;  // port id
  bool capture = false;            // also write a copy to the capture store
  Mark mark;
};

struct PolicyAction {
  Action action = Action::kDrop;
  std::optional<uint16_t> to;  // port id; set iff action is forward
};

struct Flows {
  std::string path;
  int version = 1;
  PolicyAction non_ip;      // default: drop
  PolicyAction fallback;    // the "default" key; default: drop
  std::vector<Rule> rules;  // in file order
};

// Both files, frozen together.
struct Config {
  Appliance appliance;
  Flows flows;
};

// "tcp", "udp", ... for the protocols the flows file names, else the number.
std::string proto_name(uint8_t proto);
// "10.0.0.0/8", "2001:db8::/32"; a full-length prefix prints as the plain address.
std::string cidr_text(const Cidr& c);

// Parses a size: a plain integer or one with a KiB/MiB/GiB suffix.
std::optional<uint64_t> parse_size(const std::string& text);

// The largest files the loaders read. Anything else is refused before its first byte is read,
// as is anything that is not a regular file (a FIFO, a device, a directory): an appliance
// config is a page of YAML; a flows file of 100k rules is about 15 MiB.
inline constexpr uint64_t kMaxApplianceBytes = 1ull << 20;
inline constexpr uint64_t kMaxFlowsBytes = 64ull << 20;

// Loads the appliance file only (flows untouched).
// The PCI address a device name (the text before a device string's first comma) spells,
// DDDD:BB:DD.F or BB:DD.F in hex, as DPDK names the device: lower case, the domain spelt out
// ("3B:00.0" is 0000:3b:00.0). Nothing for any other text.
std::optional<std::string> pci_address(std::string_view name);
// The name DPDK gives the device a port's device string opens: a vdev's driver instance (the
// text before the first comma: "net_null0,no-rx=1" is net_null0), a PCI address as above.
std::string device_name(std::string_view device);

Result<Appliance> load_appliance(const std::string& path);

// Loads a flows file; port names are resolved against the appliance's ports.
Result<Flows> load_flows(const std::string& path, const Appliance& appliance);

// Decodes a flows file already read into text (a reload hashes exactly the bytes it parses);
// path names the file in errors.
Result<Flows> parse_flows(const std::string& path, const std::string& text,
                          const Appliance& appliance);

// parse_flows by yaml-cpp and the decoders alone, without the fast reader that parse_flows
// tries first (tests check that the two agree).
Result<Flows> parse_flows_full(const std::string& path, const std::string& text,
                               const Appliance& appliance);

// The whole content of a flows file (a regular file of at most kMaxFlowsBytes), or why it
// cannot be read.
Result<std::string> read_text(const std::string& path);

// Loads the appliance file and the flows file it names.
Result<std::shared_ptr<const Config>> load(const std::string& appliance_path);

}  // namespace sluice::config
