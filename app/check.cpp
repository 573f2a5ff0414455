#include "app/check.h"

#include <fmt/format.h>

#include <unistd.h>

#include <sys/stat.h>
#include <numeric>

#include "lib/capture/capture_lcore.h"
#include "lib/capture/raw_device.h"
#include "lib/flow/diff.h"
#include "lib/nvme/queue_pair.h"
#include "lib/port/ports.h"

namespace sluice::app {

namespace {

std::string mib(uint64_t bytes) {
  return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1 << 20));
}

// What sluice would find at capture.path when it starts (checked again then: exit 2).
std::string path_state(const config::CaptureConfig& c) {
  const std::string& path = c.path;
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    if (c.backend == config::CaptureBackend::kPassthru) {
      auto k = capture::raw_kind(c);
      return "MISSING: " + (k ? std::string("sluice will not start") : k.error());
    }
    return fmt::format("MISSING: sluice will not start until it exists (mkdir -p {})", path);
  }
  if (S_ISDIR(st.st_mode) && c.backend == config::CaptureBackend::kPassthru) {
    if (auto k = capture::raw_kind(c); !k) return "NOT USABLE: " + k.error();
  }
  if (S_ISBLK(st.st_mode) || S_ISCHR(st.st_mode)) {
    if (auto k = capture::raw_kind(c); !k) return "NOT USABLE: " + k.error();
    const capture::RawDeviceState d = capture::describe_raw_device(c);
    return d.ok ? d.text : "NOT USABLE: " + d.text;
  }
  if (!S_ISDIR(st.st_mode)) {
    return "NEITHER A DIRECTORY NOR A DEVICE: sluice will not start";
  }
  if (access(path.c_str(), W_OK | X_OK) != 0) {
    return "NOT WRITABLE by this user: sluice will not start as this user";
  }
  auto direct = nvme::probe_direct(path);
  if (!direct) return "writable; O_DIRECT unknown (" + direct.error() + ")";
  return *direct ? "writable, O_DIRECT"
                 : "writable, no O_DIRECT here: buffered fallback (page cache)";
}

std::string action_text(const config::Config& cfg, const config::PolicyAction& a) {
  if (a.action == config::Action::kDrop) return "drop";
  return "forward to " + cfg.appliance.ports[*a.to].name;
}

}  // namespace

std::string check_summary(const config::Config& cfg) {
  const auto& app = cfg.appliance;
  std::string o = fmt::format("config OK: {}\n", app.path);
  o += fmt::format("  ports ({}):\n", app.ports.size());
  std::vector<bool> ring_ports;
  for (size_t i = 0; i < app.ports.size(); ++i) {
    const auto& p = app.ports[i];
    const port::PortInfo d = port::expected_distribution(app, p);
    ring_ports.push_back(d.ring);
    o += fmt::format("    {} {:<10} {}  rx_queues {}, descriptors rx {} tx {}{}\n", i, p.name,
                     p.device, d.rx_queues, p.rx_descriptors, p.tx_descriptors,
                     p.mtu ? fmt::format(", mtu {}", *p.mtu) : "");
    o += fmt::format("      distribute: {}{}\n", d.distribute,
                     p.distribute == config::Distribute::kAuto && app.workers.lcores.size() > 1
                         ? " (expected from the driver's name; the device decides at start)"
                         : "");
  }
  o += fmt::format(
      "  lcores: workers [{}], burst {}; the main lcore (first of EAL -l) runs the "
      "control plane\n",
      fmt::join(app.workers.lcores, ", "), app.workers.burst);
  o += app.workers.flow_cache == 0
           ? std::string("  flow cache: off (every packet is classified by rte_acl)\n")
           : fmt::format("  flow cache: {} entries per worker ({} KiB each)\n",
                         app.workers.flow_cache, app.workers.flow_cache * 64 / 1024);
  size_t v4 = 0, v6 = 0, both = 0;
  for (const auto& r : cfg.flows.rules) {
    switch (r.match.family()) {
      case 4:
        ++v4;
        break;
      case 6:
        ++v6;
        break;
      default:
        ++both;
        break;
    }
  }
  o += fmt::format(
      "  flows: {}: {} rules (IPv4 only {}, IPv6 only {}, both families {}; "
      "IPv4 table {}, IPv6 table {})\n",
      cfg.flows.path, cfg.flows.rules.size(), v4, v6, both, v4 + both, v6 + both);
  o += fmt::format("    non_ip: {}; default: {}\n", action_text(cfg, cfg.flows.non_ip),
                   action_text(cfg, cfg.flows.fallback));
  size_t captured = 0;
  for (const auto& r : cfg.flows.rules) captured += r.capture ? 1 : 0;
  if (app.capture) {
    const auto& c = *app.capture;
    const capture::Layout l = capture::layout_of(c);
    o += fmt::format("  capture: lcore {}, {} rules with capture: true{}\n", c.lcore, captured,
                     c.malformed ? ", and every malformed packet" : "");
    o += fmt::format("    store {}: {}\n", c.path, path_state(c));
    o += fmt::format(
        "    chunks of {} bytes (snaplen {}), segments of {} bytes ({} chunks), {} closed "
        "segments retained under {} bytes; a partly filled chunk is written after {} ms\n",
        c.chunk_bytes, c.snaplen, c.segment_bytes, l.chunks_per_segment, l.segments_retained,
        c.retain_bytes, c.flush_ms);
    o += fmt::format(
        "    memory: {} chunk buffers ({} in flight at queue depth {}) = {}; hand-off rings {} x "
        "{} entries\n",
        l.buffers, c.queue_depth, c.queue_depth, mib(l.buffer_bytes), app.workers.lcores.size(),
        app.rings.size);
  } else {
    o += "  capture: off (no capture section)\n";
  }
  std::vector<size_t> all(app.ports.size());
  std::iota(all.begin(), all.end(), 0);
  auto s = port::size_pool(app, all, ring_ports);
  o += fmt::format(
      "  memory: {} MiB for the mbuf pool if all ports share one NUMA socket "
      "({} mbufs x {} B; {})\n",
      s.mib(), s.mbufs, s.object_bytes, s.breakdown);
  const uint64_t capture_mib = capture_buffer_mib(app);
  o += fmt::format(
      "    EAL needs at least -m {} (or that much in hugepages on the socket){}\n",
      s.mib() + 64 + capture_mib,
      app.capture ? fmt::format(", with {} MiB of it for capture chunk buffers", capture_mib) : "");
  return o;
}

uint64_t capture_buffer_mib(const config::Appliance& app) {
  return app.capture ? (capture::layout_of(*app.capture).buffer_bytes >> 20) + 1 : 0;
}

Result<std::string> check_diff(const config::Config& cfg, const std::string& old_path) {
  auto old = config::load_flows(old_path, cfg.appliance);
  if (!old) return Error{"--diff: " + old.error()};
  const flow::FlowsDiff d = flow::diff_flows(*old, cfg.flows, cfg.appliance);
  std::string o = fmt::format("flows diff {} -> {} (a dry run of a reload): {}\n", old_path,
                              cfg.flows.path, flow::diff_counts(d));
  return o + flow::diff_text(d);
}

}  // namespace sluice::app
