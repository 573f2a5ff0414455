// sluice --doctor: the checks of ports (PCI driver, NUMA node, IOMMU), privileges (memlock,
// capabilities), io_uring and the capture store.

#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cctype>
#include <filesystem>
#include <set>

#include "app/doctor_plan.h"
#include "lib/capture/capture_lcore.h"
#include "lib/capture/raw_device.h"
#include "lib/nvme/queue_pair.h"

namespace sluice::app::doctor {

namespace fs = std::filesystem;

void check_ports(const Plan& p, std::vector<Check>& out) {
  for (size_t i = 0; i < p.app.ports.size(); ++i) {
    const auto& port = p.app.ports[i];
    const std::string name = "port " + port.name;
    if (!p.pci[i]) {
      std::string driver = port.device.substr(0, port.device.find(','));
      while (!driver.empty() && std::isdigit(static_cast<unsigned char>(driver.back()))) {
        driver.pop_back();
      }
      out.push_back(
          {name, Status::kOk, fmt::format("virtual device ({}): no PCI checks", driver), ""});
      continue;
    }
    const std::string& addr = *p.pci[i];
    const sys::PciDevice& d = p.devices[i];
    const std::string bind = fmt::format("dpdk-devbind.py -b vfio-pci {}", addr);
    if (!d.present) {
      out.push_back(
          {name, Status::kFail,
           fmt::format("no PCI device {} on this host ({})", addr, port.device_mark.str()),
           "lspci -D -d ::0200 lists the Ethernet devices; name one in ports[].device"});
      continue;
    }
    const std::string where =
        d.numa_node >= 0 ? fmt::format(", NUMA node {}", d.numa_node) : std::string();
    if (d.driver == "vfio-pci") {
      out.push_back({name, Status::kOk, fmt::format("{} bound to vfio-pci{}", addr, where), ""});
    } else if (bifurcated(d.driver)) {
      out.push_back({name, Status::kOk,
                     fmt::format("{} on {}{}: a bifurcated driver (stays bound to the kernel)",
                                 addr, d.driver, where),
                     ""});
    } else if (uio_driver(d.driver)) {
      const bool root = geteuid() == 0;
      out.push_back({name, root ? Status::kOk : Status::kFail,
                     fmt::format("{} bound to {}{} (no IOMMU protection{})", addr, d.driver, where,
                                 root ? "" : "; uio needs root for physical addresses"),
                     root ? "" : bind});
    } else if (d.driver.empty()) {
      out.push_back({name, Status::kFail, fmt::format("{} is bound to no driver", addr),
                     "modprobe vfio-pci && " + bind});
    } else {
      out.push_back(
          {name, Status::kFail,
           fmt::format("{} is bound to the kernel driver {}{}, which DPDK cannot use", addr,
                       d.driver, d.netdev.empty() ? "" : " (interface " + d.netdev + ")"),
           (d.netdev.empty() ? "" : "ip link set " + d.netdev + " down && ") +
               "modprobe vfio-pci && " + bind});
    }
    // NUMA: every worker polls a queue of every port (one per worker by default).
    if (d.numa_node < 0) {
      out.push_back({"numa " + port.name, Status::kOk,
                     fmt::format("{} reports no NUMA node (a single-node host or a VM)", addr),
                     ""});
      continue;
    }
    std::vector<std::string> far;
    for (size_t w = 0; w < p.worker_nodes.size(); ++w) {
      if (p.worker_nodes[w] >= 0 && p.worker_nodes[w] != d.numa_node) {
        far.push_back(fmt::format("worker lcore {} is on node {}", p.app.workers.lcores[w],
                                  p.worker_nodes[w]));
      }
    }
    if (far.empty()) {
      out.push_back({"numa " + port.name, Status::kOk,
                     fmt::format("{} on node {}, as its worker lcores", addr, d.numa_node), ""});
    } else {
      const auto cpus = sys::node_cpus(d.numa_node);
      out.push_back(
          {"numa " + port.name, Status::kWarn,
           fmt::format("{} is on node {} but {}: every packet crosses the interconnect", addr,
                       d.numa_node, fmt::join(far, ", ")),
           fmt::format("workers.lcores from node {} (CPUs {}), or move the NIC to a slot of "
                       "the workers' node",
                       d.numa_node, cpus ? list(*cpus) : std::string("?"))});
    }
  }
}

void check_iommu(const Plan& p, std::vector<Check>& out) {
  if (!p.vfio) {
    out.push_back({"iommu", Status::kOk,
                   p.has_pci ? "not needed: no PCI port is driven through vfio-pci"
                             : "not needed: no PCI ports (virtual devices only)",
                   ""});
    return;
  }
  const unsigned groups = sys::iommu_group_count();
  const std::string boot = "intel_iommu=on iommu=pt on the kernel command line (AMD: amd_iommu=on)";
  if (groups == 0 && sys::vfio_noiommu()) {
    out.push_back({"iommu", Status::kWarn,
                   "no IOMMU; vfio runs in no-IOMMU mode: devices may DMA anywhere (unsafe)",
                   boot});
    return;
  }
  if (groups == 0) {
    out.push_back({"iommu", Status::kFail,
                   "no IOMMU groups in /sys/kernel/iommu_groups: the IOMMU is off or absent, so "
                   "vfio-pci cannot drive the ports",
                   boot + "; in a VM without a vIOMMU: echo 1 > "
                          "/sys/module/vfio/parameters/enable_unsafe_noiommu_mode"});
    return;
  }
  if (geteuid() != 0) {
    for (const auto& d : p.devices) {
      if (d.driver != "vfio-pci" || d.iommu_group < 0) continue;
      const std::string dev = fmt::format("/dev/vfio/{}", d.iommu_group);
      if (access(sys::host_path(dev).c_str(), R_OK | W_OK) != 0) {
        out.push_back({"iommu", Status::kFail,
                       fmt::format("{} IOMMU groups; {} is not read-writable by {}", groups, dev,
                                   user_name()),
                       fmt::format("chown {} {} (a udev rule makes it last)", user_name(), dev)});
        return;
      }
    }
  }
  out.push_back({"iommu", Status::kOk, fmt::format("on: {} IOMMU groups", groups), ""});
}

static bool has_cap(const std::optional<uint64_t>& caps, int cap) {
  return caps && ((*caps >> cap) & 1u) != 0;
}

void check_privileges(const Plan& p, std::vector<Check>& out) {
  const auto caps = sys::effective_capabilities();
  const std::string exe = [] {
    std::error_code ec;
    auto e = fs::read_symlink("/proc/self/exe", ec);
    return ec ? std::string("sluice") : e.string();
  }();
  // memlock: vfio pins the DMA memory (all of it), io_uring the registered chunk buffers.
  rlimit rl{};
  getrlimit(RLIMIT_MEMLOCK, &rl);
  const bool unlimited = rl.rlim_cur == RLIM_INFINITY;
  const std::string limit = unlimited ? "unlimited" : mib_text(rl.rlim_cur);
  const uint64_t pin = p.vfio && !p.eal.no_huge ? p.need_total : 0;
  const uint64_t reg = p.app.capture ? capture::layout_of(*p.app.capture).buffer_bytes : 0;
  const std::string memlock_fix = fmt::format(
      "ulimit -l unlimited (systemd: LimitMEMLOCK=infinity), or setcap cap_ipc_lock+ep {}", exe);
  if (has_cap(caps, CAP_IPC_LOCK) || unlimited) {
    out.push_back({"memlock", Status::kOk,
                   fmt::format("RLIMIT_MEMLOCK {}{}", limit,
                               has_cap(caps, CAP_IPC_LOCK) ? "; CAP_IPC_LOCK: not limited" : ""),
                   ""});
  } else if (rl.rlim_cur < pin) {
    out.push_back(
        {"memlock", Status::kFail,
         fmt::format("RLIMIT_MEMLOCK {}: vfio pins the {} of DMA memory", limit, mib_text(pin)),
         memlock_fix});
  } else if (rl.rlim_cur < reg) {
    out.push_back({"memlock", Status::kWarn,
                   fmt::format("RLIMIT_MEMLOCK {}: the {} of capture chunk buffers cannot be "
                               "registered with io_uring (slower unregistered writes)",
                               limit, mib_text(reg)),
                   memlock_fix});
  } else {
    out.push_back({"memlock", Status::kOk, "RLIMIT_MEMLOCK " + limit + ": enough", ""});
  }

  // Capabilities the ports need (a root without them is a container).
  struct Need {
    int cap;
    const char* name;
    std::string why;
  };
  std::vector<Need> needs;
  for (size_t i = 0; i < p.app.ports.size(); ++i) {
    const auto& dev = p.app.ports[i].device;
    const std::string why = "port " + p.app.ports[i].name;
    if (dev.starts_with("net_af_packet") || dev.starts_with("net_af_xdp") ||
        (dev.starts_with("net_pcap") && dev.find("iface=") != std::string::npos)) {
      needs.push_back({CAP_NET_RAW, "cap_net_raw", why});
    }
    if (dev.starts_with("net_tap") || dev.starts_with("net_tun") || dev.starts_with("net_af_xdp")) {
      needs.push_back({CAP_NET_ADMIN, "cap_net_admin", why});
    }
    if (uio_driver(p.devices[i].driver)) needs.push_back({CAP_SYS_ADMIN, "cap_sys_admin", why});
  }
  std::set<std::string> missing_names;
  std::vector<std::string> missing;
  for (const auto& n : needs) {
    if (has_cap(caps, n.cap)) continue;
    missing.push_back(fmt::format("{} ({})", n.name, n.why));
    missing_names.insert(n.name);
  }
  const std::string eff = caps ? fmt::format("CapEff {:#x}", *caps) : "CapEff unreadable";
  const std::string who = geteuid() == 0 ? "root" : user_name();
  if (missing.empty()) {
    out.push_back(
        {"capabilities", Status::kOk,
         fmt::format("{} ({}): {}", who, eff,
                     needs.empty() ? "the ports need none" : "the ports have what they need"),
         ""});
  } else {
    out.push_back({"capabilities", Status::kFail,
                   fmt::format("{} ({}) lacks {}", who, eff, fmt::join(missing, ", ")),
                   fmt::format("setcap {}+ep {} (systemd: AmbientCapabilities=)",
                               fmt::join(missing_names, ","), exe)});
  }
}

void check_uring(const Plan& p, std::vector<Check>& out) {
  const auto u = nvme::uring_available();
  if (u) {
    out.push_back({"io_uring", Status::kOk, "available", ""});
  } else if (!p.app.capture) {
    out.push_back({"io_uring", Status::kOk, "not needed (no capture section): " + u.error(), ""});
  } else {
    // The message names the fix (sysctl, seccomp, memlock).
    out.push_back(
        {"io_uring", Status::kFail, "capture writes through io_uring: not available", u.error()});
  }
}

// Bytes of the store's own segments: retention counts them against retain_bytes.
static uint64_t store_bytes(const std::string& dir) {
  uint64_t n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.starts_with("sluice-") && e.is_regular_file(ec)) n += e.file_size(ec);
  }
  return n;
}

void check_capture(const Plan& p, std::vector<Check>& out) {
  if (!p.app.capture) {
    out.push_back({"capture", Status::kOk, "off (no capture section)", ""});
    return;
  }
  const auto& c = *p.app.capture;
  struct stat st {};
  if (stat(c.path.c_str(), &st) != 0 && c.backend == config::CaptureBackend::kPassthru) {
    auto k = capture::raw_kind(c);
    out.push_back({"capture path", Status::kFail, k ? c.path + " does not exist" : k.error(),
                   "point capture.path at a namespace's generic char device (ls /dev/ng*), or "
                   "set capture.backend: auto for a directory"});
    return;
  }
  if (stat(c.path.c_str(), &st) != 0) {
    out.push_back(
        {"capture path", Status::kFail,
         fmt::format("{} does not exist ({}): sluice will not start", c.path, c.path_mark.str()),
         geteuid() == 0 ? fmt::format("mkdir -p {}", c.path)
                        : fmt::format("mkdir -p {0} && chown {1} {0}", c.path, user_name())});
    return;
  }
  if (S_ISBLK(st.st_mode) || S_ISCHR(st.st_mode) ||
      c.backend == config::CaptureBackend::kPassthru) {
    // The raw-device ring store: no filesystem, so no free space or O_DIRECT to probe.
    if (auto k = capture::raw_kind(c); !k) {
      out.push_back({"capture path", Status::kFail, k.error(),
                     c.backend == config::CaptureBackend::kPassthru
                         ? "point capture.path at a namespace's generic char device /dev/ngXnY, "
                           "or set capture.backend: auto for a directory or a block device"
                         : "set capture.backend: passthru (or auto) for an NVMe generic device "
                           "/dev/ngXnY, or point capture.path at a directory or a block device"});
      return;
    }
    const capture::RawDeviceState d = capture::describe_raw_device(c);
    if (d.ok) {
      out.push_back({"capture path", Status::kOk, c.path + ": " + d.text, ""});
    } else {
      out.push_back({"capture path", Status::kFail, c.path + ": " + d.text,
                     "set capture.format: true to give sluice a device without a store, use a "
                     "device of at least two chunks, or match capture.chunk_bytes to its store"});
    }
    return;
  }
  if (!S_ISDIR(st.st_mode)) {
    out.push_back({"capture path", Status::kFail, c.path + " is neither a directory nor a device",
                   "set capture.path to a directory (mkdir -p DIR), a block device or an NVMe "
                   "generic device /dev/ngXnY"});
    return;
  }
  if (access(c.path.c_str(), W_OK | X_OK) != 0) {
    out.push_back({"capture path", Status::kFail,
                   fmt::format("{} is not writable by {}", c.path, user_name()),
                   fmt::format("chown {} {}", user_name(), c.path)});
    return;
  }
  out.push_back({"capture path", Status::kOk, c.path + ": a writable directory", ""});

  struct statvfs vfs {};
  if (statvfs(c.path.c_str(), &vfs) == 0) {
    const uint64_t free = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    const uint64_t room = free + store_bytes(c.path);
    const auto gib = [](uint64_t b) {
      return b < (1ull << 30) ? mib_text(b)
                              : fmt::format("{:.1f} GiB", static_cast<double>(b) / (1ull << 30));
    };
    const std::string seen =
        fmt::format("{} free, {} with the store's own segments; retain_bytes {}, segment_bytes {}",
                    gib(free), gib(room), gib(c.retain_bytes), gib(c.segment_bytes));
    if (room < c.segment_bytes) {
      out.push_back(
          {"capture space", Status::kFail, seen + ": not even one segment fits",
           fmt::format("free space on the filesystem of {}, or lower capture.segment_bytes "
                       "and capture.retain_bytes",
                       c.path)});
    } else if (room < c.retain_bytes) {
      out.push_back({"capture space", Status::kWarn,
                     seen + ": the disk fills before retention deletes (the oldest make room then)",
                     fmt::format("set capture.retain_bytes to at most {}MiB, or free space there",
                                 room >> 20)});
    } else {
      out.push_back({"capture space", Status::kOk, seen, ""});
    }
  }
  auto direct = nvme::probe_direct(c.path);
  if (!direct) {
    out.push_back({"capture O_DIRECT", Status::kWarn, direct.error(),
                   "put capture.path on a local ext4 or xfs filesystem"});
  } else if (*direct) {
    out.push_back({"capture O_DIRECT", Status::kOk, "writes bypass the page cache", ""});
  } else {
    out.push_back(
        {"capture O_DIRECT", Status::kWarn,
         c.path + " does not take O_DIRECT (tmpfs?): buffered fallback through the page cache",
         "put capture.path on a local ext4 or xfs filesystem"});
  }
}

}  // namespace sluice::app::doctor
