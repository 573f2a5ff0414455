#include "app/check.h"

#include <fmt/format.h>

#include <numeric>

#include "lib/flow/diff.h"
#include "lib/port/ports.h"

namespace sluice::app {

namespace {

std::string action_text(const config::Config& cfg, const config::PolicyAction& a) {
  if (a.action == config::Action::kDrop) return "drop";
  return "forward to " + cfg.appliance.ports[*a.to].name;
}

}  // namespace

std::string check_summary(const config::Config& cfg) {
  const auto& app = cfg.appliance;
  std::string o = fmt::format("config OK: {}\n", app.path);
  o += fmt::format("  ports ({}):\n", app.ports.size());
  for (size_t i = 0; i < app.ports.size(); ++i) {
    const auto& p = app.ports[i];
    o += fmt::format(
        "    {} {:<10} {}  rx_queues {}, descriptors rx {} tx {}{}\n", i, p.name, p.device,
        p.rx_queues.value_or(static_cast<uint16_t>(app.workers.lcores.size())), p.rx_descriptors,
        p.tx_descriptors, p.mtu ? fmt::format(", mtu {}", *p.mtu) : "");
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
  std::vector<size_t> all(app.ports.size());
  std::iota(all.begin(), all.end(), 0);
  auto s = port::size_pool(app, all);
  o += fmt::format(
      "  memory: {} MiB for the mbuf pool if all ports share one NUMA socket "
      "({} mbufs x {} B; {})\n",
      s.mib(), s.mbufs, s.object_bytes, s.breakdown);
  o += fmt::format("    EAL needs at least -m {} (or that much in hugepages on the socket)\n",
                   s.mib() + 64);
  return o;
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
