// sluice --doctor: the checks of lcores, memory and CPUs (CONTRACT "Operations"), and the
// list of every check. They read the host through lib/sys/host (sysfs and procfs text, under
// $SLUICE_HOST_ROOT in tests) and reuse what --check and startup compute (port::size_pool,
// capture::layout_of).

#include <algorithm>
#include <map>

#include "app/doctor_plan.h"
#include "lib/capture/capture_lcore.h"
#include "lib/nvme/queue_pair.h"
#include "lib/port/ports.h"

namespace sluice::app {
namespace doctor {

Plan make_plan(const config::Appliance& app, const EalView& eal) {
  Plan p{app, eal};
  p.lcores = app.workers.lcores;
  if (app.capture) p.lcores.push_back(app.capture->lcore);
  for (unsigned l : p.lcores) p.cpus.push_back(eal.cpu(l));
  for (unsigned l : app.workers.lcores) p.worker_nodes.push_back(sys::cpu_numa_node(eal.cpu(l)));
  const int worker_node = std::max(0, p.worker_nodes.front());
  for (const auto& port : app.ports) {
    auto addr = config::pci_address(std::string_view(port.device).substr(0, port.device.find(',')));
    sys::PciDevice d;
    if (addr) {
      d = sys::pci_device(*addr);
      p.has_pci = true;
      p.uio |= uio_driver(d.driver);
      p.vfio |= !bifurcated(d.driver) && !uio_driver(d.driver);
    }
    // As port::Ports::open places it: the device's node, else the first worker's.
    p.port_nodes.push_back(d.numa_node >= 0 ? d.numa_node : worker_node);
    p.pci.push_back(addr);
    p.devices.push_back(d);
  }
  std::map<int, std::vector<size_t>> by_node;
  for (size_t i = 0; i < app.ports.size(); ++i) by_node[p.port_nodes[i]].push_back(i);
  std::vector<std::string> why;
  for (const auto& [node, ports] : by_node) {
    const port::PoolSizing s = port::size_pool(app, ports);
    p.need[node] += s.mib() * kMiB;
    why.push_back(fmt::format("mbuf pool {} MiB on node {}", s.mib(), node));
  }
  if (app.capture) {
    const uint64_t bytes = capture::layout_of(*app.capture).buffer_bytes;
    p.need[std::max(0, sys::cpu_numa_node(eal.cpu(app.capture->lcore)))] += bytes;
    why.push_back("capture chunk buffers " + mib_text(bytes));
  }
  for (const auto& [node, bytes] : p.need) p.need_total += bytes;
  p.need_total += kEalOverheadMiB * kMiB;
  why.push_back(fmt::format("EAL {} MiB", kEalOverheadMiB));
  p.need_why = fmt::format("{}", fmt::join(why, " + "));
  return p;
}

// "lcore 2" or, where --lcores maps it elsewhere, "lcore 2 (CPU 0)".
static std::string lcore_text(const Plan& p, size_t i) {
  return p.cpus[i] == p.lcores[i] ? fmt::format("lcore {}", p.lcores[i])
                                  : fmt::format("lcore {} (CPU {})", p.lcores[i], p.cpus[i]);
}

void check_lcores(const Plan& p, std::vector<Check>& out) {
  const auto online = sys::online_cpus();
  std::vector<std::string> bad;
  std::string fix;
  for (size_t i = 0; i < p.lcores.size(); ++i) {
    if (online && !contains(*online, p.cpus[i])) {
      bad.push_back(fmt::format("{}: CPU {} is not online here (online: {})", lcore_text(p, i),
                                p.cpus[i], list(*online)));
      fix = fmt::format(
          "use online CPUs ({}) for workers.lcores and capture.lcore (or map lcores onto them "
          "with EAL's --lcores, such as --lcores=0@0,1@1,2@0)",
          list(*online));
    }
  }
  if (p.eal.bad_lcores) bad.push_back("EAL's -l, -c or --lcores value is not understood");
  if (p.eal.lcores && !p.eal.lcores->empty()) {
    std::vector<unsigned> want = *p.eal.lcores;
    bool below_main = false;
    for (unsigned l : p.lcores) {
      if (p.eal.main_lcore && l == *p.eal.main_lcore) {
        bad.push_back(fmt::format("lcore {} is EAL's main lcore (the control plane)", l));
        if (fix.empty())
          fix = "give workers and the capture loop lcores other than EAL's main lcore";
      } else if (!contains(want, l)) {
        bad.push_back(fmt::format("lcore {} is not in EAL's lcore set {}", l, list(*p.eal.lcores)));
        want.push_back(l);
        below_main |= p.eal.main_lcore && l < *p.eal.main_lcore;
      }
    }
    if (fix.empty() && !bad.empty()) {
      fix = fmt::format("-l {}{} among the EAL options", list(want),
                        below_main ? fmt::format(" --main-lcore {}", *p.eal.main_lcore) : "");
    }
  }
  if (!bad.empty()) {
    out.push_back({"lcores", Status::kFail, fmt::format("{}", fmt::join(bad, "; ")), fix});
    return;
  }
  std::string seen = fmt::format("workers [{}]", fmt::join(p.app.workers.lcores, ", "));
  if (p.app.capture) seen += fmt::format(", capture {}", p.app.capture->lcore);
  seen += online ? "; online CPUs " + list(*online)
                 : std::string("; could not read /sys/devices/system/cpu/online");
  if (!p.eal.lcores) {
    seen += fmt::format("; EAL options will need -l MAIN,{} (MAIN: the control plane's lcore)",
                        fmt::join(p.lcores, ","));
  }
  out.push_back({"lcores", Status::kOk, seen, ""});
}

void check_hugepages(const Plan& p, std::vector<Check>& out) {
  const HugeNeed need = huge_need(p.eal, p.has_pci);
  const auto pools = sys::hugepages();
  std::map<int, uint64_t> free_bytes, total_bytes;
  std::vector<std::string> seen;
  for (const auto& h : pools) {
    free_bytes[h.node] += h.free * h.page_bytes;
    total_bytes[h.node] += h.total * h.page_bytes;
    if (h.total == 0 && h.page_bytes != sys::default_hugepage_bytes()) continue;
    seen.push_back(fmt::format("{}{} x {} ({} free)",
                               h.node < 0 ? "" : fmt::format("node{}: ", h.node), h.total,
                               mib_text(h.page_bytes), h.free));
  }
  uint64_t free_total = 0;
  for (const auto& [node, bytes] : free_bytes) free_total += bytes;
  const std::string have = pools.empty()
                               ? std::string(
                                     "this kernel shows no hugepages (no /sys/kernel/mm/hugepages, "
                                     "no HugePages_Total in /proc/meminfo)")
                               : fmt::format("{}", fmt::join(seen, ", "));
  const std::string needs = fmt::format("needs {} ({})", mib_text(p.need_total), p.need_why);
  if (need == HugeNeed::kNo) {
    out.push_back({"hugepages", Status::kOk,
                   "not needed: EAL runs with --no-huge (plain memory); " + have, ""});
    const uint64_t mem = p.eal.mem_mib.value_or(kNoHugeDefaultMiB) * kMiB;
    const std::string m = p.eal.mem_mib ? fmt::format("-m {}", *p.eal.mem_mib)
                                        : fmt::format("no -m (EAL's {} MiB)", kNoHugeDefaultMiB);
    if (mem < p.need_total) {
      out.push_back({"memory", Status::kFail, fmt::format("--no-huge with {}; sluice {}", m, needs),
                     fmt::format("-m {} among the EAL options", (p.need_total + kMiB - 1) / kMiB)});
    } else {
      out.push_back(
          {"memory", Status::kOk, fmt::format("--no-huge with {}; sluice {}", m, needs), ""});
    }
    return;
  }
  if (p.eal.mem_mib && *p.eal.mem_mib * kMiB < p.need_total) {
    // EAL reserves -m MiB of hugepages at start and no more.
    out.push_back({"memory", Status::kFail,
                   fmt::format("EAL -m {}; sluice {}", *p.eal.mem_mib, needs),
                   fmt::format("-m {} among the EAL options (or leave -m out)",
                               (p.need_total + kMiB - 1) / kMiB)});
  }
  const uint64_t page =
      sys::default_hugepage_bytes() != 0 ? sys::default_hugepage_bytes() : 2 * kMiB;
  auto pages_for = [&](uint64_t bytes) { return (bytes + page - 1) / page; };
  std::string short_of;
  std::string fix;
  const bool per_node = !free_bytes.empty() && free_bytes.begin()->first >= 0;
  if (per_node && free_bytes.size() > 1) {
    for (const auto& [node, bytes] : p.need) {
      if (free_bytes[node] >= bytes) continue;
      short_of = fmt::format("node {} has {} free, its ports and capture need {}", node,
                             mib_text(free_bytes[node]), mib_text(bytes));
      const uint64_t in_use = (total_bytes[node] - free_bytes[node]) / page;
      fix = fmt::format(
          "echo {} > /sys/devices/system/node/node{}/hugepages/hugepages-{}kB/nr_hugepages",
          in_use + pages_for(bytes + kEalOverheadMiB * kMiB), node, page >> 10);
      break;
    }
  }
  if (short_of.empty() && free_total < p.need_total) {
    uint64_t total = 0;
    for (const auto& [node, bytes] : total_bytes) total += bytes;
    short_of = fmt::format("{} free", mib_text(free_total));
    fix = fmt::format("echo {} > /proc/sys/vm/nr_hugepages",
                      (total - free_total) / page + pages_for(p.need_total));
  }
  if (short_of.empty()) {
    out.push_back({"hugepages", Status::kOk, fmt::format("{}; {}", have, needs), ""});
    return;
  }
  if (need == HugeNeed::kUnknown) {
    fix +=
        fmt::format(", or run sluice with the EAL options --no-huge -m {} (virtual devices only)",
                    (p.need_total + kMiB - 1) / kMiB);
  }
  out.push_back({"hugepages", short_status(need),
                 fmt::format("{}: {}; sluice {}{}", have, short_of, needs,
                             need == HugeNeed::kUnknown
                                 ? " (no EAL options given: with --no-huge it needs none)"
                                 : ""),
                 fix});
}

void check_hugetlbfs(const Plan& p, std::vector<Check>& out) {
  const HugeNeed need = huge_need(p.eal, p.has_pci);
  const auto mounts = sys::hugetlbfs_mounts();
  std::vector<std::string> seen;
  for (const auto& m : mounts) seen.push_back(m.point + " (" + m.options + ")");
  const std::string have = mounts.empty() ? std::string("no hugetlbfs mount in /proc/mounts")
                                          : fmt::format("mounted at {}", fmt::join(seen, ", "));
  if (need == HugeNeed::kNo) {
    out.push_back({"hugetlbfs", Status::kOk, "not needed (--no-huge); " + have, ""});
    return;
  }
  const std::string dir = p.eal.huge_dir.value_or("/dev/hugepages");
  const auto at = std::find_if(mounts.begin(), mounts.end(), [&](const sys::Mount& m) {
    return p.eal.huge_dir ? m.point == *p.eal.huge_dir : true;
  });
  if (at == mounts.end()) {
    out.push_back({"hugetlbfs", short_status(need),
                   have + (p.eal.huge_dir ? "; --huge-dir " + dir + " is not one" : ""),
                   fmt::format("mkdir -p {0} && mount -t hugetlbfs nodev {0}", dir)});
    return;
  }
  if (geteuid() != 0 && access(sys::host_path(at->point).c_str(), W_OK | X_OK) != 0) {
    out.push_back({"hugetlbfs", short_status(need),
                   fmt::format("{}; not writable by {}, who runs this", have, user_name()),
                   fmt::format("chown {0} {1} (or mount it with -o uid={2})", user_name(),
                               at->point, geteuid())});
    return;
  }
  out.push_back({"hugetlbfs", Status::kOk, have, ""});
}

void check_isolation(const Plan& p, std::vector<Check>& out) {
  const auto isolated = sys::isolated_cpus();
  const auto nohz = sys::nohz_full_cpus();
  const auto nocbs = sys::rcu_nocbs_cpus();
  if (!isolated) {
    out.push_back({"isolation", Status::kWarn,
                   "could not read /sys/devices/system/cpu/isolated or /proc/cmdline",
                   sys::isolation_fix(p.cpus)});
    return;
  }
  std::vector<unsigned> all = *isolated;
  all.insert(all.end(), p.cpus.begin(), p.cpus.end());
  const std::string fix = sys::isolation_fix(all);
  for (size_t i = 0; i < p.lcores.size(); ++i) {
    const unsigned cpu = p.cpus[i];
    std::vector<std::string> missing;
    if (!contains(*isolated, cpu)) {
      missing.push_back("not in isolcpus (isolated: " + list(*isolated) + ")");
    }
    if (nohz && !contains(*nohz, cpu)) missing.push_back("not nohz_full");
    if (nocbs && !contains(*nocbs, cpu)) missing.push_back("not rcu_nocbs");
    const std::string name = fmt::format("isolation lcore {}", p.lcores[i]);
    if (missing.empty()) {
      out.push_back(
          {name, Status::kOk, fmt::format("CPU {}: isolcpus, nohz_full, rcu_nocbs", cpu), ""});
    } else {
      out.push_back({name, Status::kWarn,
                     fmt::format("CPU {}: {}: other tasks, timer ticks and RCU callbacks "
                                 "interrupt the loop",
                                 cpu, fmt::join(missing, ", ")),
                     fix});
    }
  }
}

void check_governor(const Plan& p, std::vector<Check>& out) {
  std::vector<unsigned> none, slow;
  std::vector<std::string> seen;
  std::vector<unsigned> cpus = p.cpus;
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  for (unsigned cpu : cpus) {
    auto g = sys::cpu_governor(cpu);
    if (!g) {
      none.push_back(cpu);
    } else {
      seen.push_back(fmt::format("CPU {} {}", cpu, *g));
      if (*g != "performance") slow.push_back(cpu);
    }
  }
  if (!slow.empty()) {
    out.push_back({"cpu governor", Status::kWarn,
                   fmt::format("{}: the clock drops while a worker polls", fmt::join(seen, ", ")),
                   fmt::format("cpupower -c {} frequency-set -g performance", list(slow))});
  } else if (seen.empty()) {
    out.push_back({"cpu governor", Status::kOk,
                   fmt::format("CPUs {}: no cpufreq (a VM, or the firmware fixes the frequency): "
                               "nothing to set",
                               list(none)),
                   ""});
  } else {
    out.push_back({"cpu governor", Status::kOk,
                   fmt::format("{}{}", fmt::join(seen, ", "),
                               none.empty() ? "" : "; CPUs " + list(none) + " have no cpufreq"),
                   ""});
  }
}

}  // namespace doctor

std::vector<Check> doctor_checks(const config::Config* cfg, const std::string& config_error,
                                 const EalView& eal) {
  std::vector<Check> out;
  if (cfg == nullptr) {
    // The host is checked against a config: without one there is nothing to compare.
    out.push_back(
        {"config", Status::kFail, config_error + " (the host was not checked)",
         config_error.starts_with("cannot ")
             ? fmt::format("-c FILE naming a readable appliance config (default {})",
                           kDefaultConfig)
             : "correct the file at the place named (sluice --check -c FILE validates it)"});
    return out;
  }
  const auto& app = cfg->appliance;
  out.push_back({"config", Status::kOk,
                 fmt::format("{}: {} port(s), {} worker lcore(s), {} rule(s) from {}", app.path,
                             app.ports.size(), app.workers.lcores.size(), cfg->flows.rules.size(),
                             cfg->flows.path),
                 ""});
  using namespace doctor;
  const Plan p = make_plan(app, eal);
  check_lcores(p, out);
  check_hugepages(p, out);
  check_hugetlbfs(p, out);
  check_ports(p, out);
  check_iommu(p, out);
  check_isolation(p, out);
  check_governor(p, out);
  check_privileges(p, out);
  check_uring(p, out);
  check_capture(p, out);
  return out;
}

}  // namespace sluice::app
