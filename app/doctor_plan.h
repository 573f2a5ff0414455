#pragma once
// sluice --doctor, inside: what the checks derive from the config once (Plan) and the checks
// themselves (doctor_checks.cpp: lcores, memory, CPUs; doctor_devices.cpp: ports, privileges,
// io_uring, the capture store). Only app/doctor*.cpp include this.

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "app/doctor.h"
#include "lib/sys/host.h"

namespace sluice::app::doctor {

inline constexpr uint64_t kMiB = 1ull << 20;
inline constexpr uint64_t kEalOverheadMiB = 64;    // EAL's own (--check prints the same)
inline constexpr uint64_t kNoHugeDefaultMiB = 64;  // EAL's memory with --no-huge and no -m

// "512 MiB" (rounded up), or "64 KiB" below a MiB.
inline std::string mib_text(uint64_t bytes) {
  if (bytes < kMiB) return fmt::format("{} KiB", (bytes + 1023) / 1024);
  return fmt::format("{} MiB", (bytes + kMiB - 1) / kMiB);
}

inline std::string list(const std::vector<unsigned>& cpus) {
  return cpus.empty() ? std::string("none") : sys::cpu_list_text(cpus);
}

inline bool contains(const std::vector<unsigned>& v, unsigned x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

inline std::string user_name() {
  const passwd* pw = getpwuid(geteuid());
  return pw != nullptr ? pw->pw_name : std::to_string(geteuid());
}

// Everything the doctor derives from the config once.
struct Plan {
  const config::Appliance& app;
  const EalView& eal;
  std::vector<unsigned> lcores;  // workers, then the capture lcore
  std::vector<unsigned> cpus;    // the CPU each of lcores runs on
  std::vector<int> worker_nodes;
  std::vector<std::optional<std::string>> pci;  // per port: its PCI address, or a vdev
  std::vector<sys::PciDevice> devices;          // per port (empty for vdevs)
  std::vector<int> port_nodes;                  // per port: where its pool lives
  std::map<int, uint64_t> need;                 // bytes of hugepage memory per NUMA node
  uint64_t need_total = 0;                      // with EAL's own
  std::string need_why;
  bool has_pci = false;
  bool vfio = false;  // a PCI port that is (or is to be) driven through vfio-pci
  bool uio = false;
};

inline bool bifurcated(const std::string& driver) {
  return driver == "mlx5_core" || driver == "mlx4_core" || driver == "mana";
}

inline bool uio_driver(const std::string& driver) {
  return driver == "uio_pci_generic" || driver == "igb_uio";
}

Plan make_plan(const config::Appliance& app, const EalView& eal);

// Whether hugepages are needed: not with --no-huge; yes with other EAL options or PCI ports
// (NICs DMA from hugepage memory); unknown for a vdev-only config without EAL options (sluice
// may be run with --no-huge): missing hugepages are then a WARN, not a FAIL.
enum class HugeNeed { kNo, kYes, kUnknown };

inline HugeNeed huge_need(const EalView& eal, bool has_pci) {
  if (eal.no_huge) return HugeNeed::kNo;
  if (eal.given || has_pci) return HugeNeed::kYes;
  return HugeNeed::kUnknown;
}

inline Status short_status(HugeNeed n) {
  return n == HugeNeed::kYes ? Status::kFail : Status::kWarn;
}

void check_lcores(const Plan& p, std::vector<Check>& out);
void check_hugepages(const Plan& p, std::vector<Check>& out);
void check_hugetlbfs(const Plan& p, std::vector<Check>& out);
void check_ports(const Plan& p, std::vector<Check>& out);
void check_iommu(const Plan& p, std::vector<Check>& out);
void check_isolation(const Plan& p, std::vector<Check>& out);
void check_governor(const Plan& p, std::vector<Check>& out);
void check_privileges(const Plan& p, std::vector<Check>& out);
void check_uring(const Plan& p, std::vector<Check>& out);
void check_capture(const Plan& p, std::vector<Check>& out);

}  // namespace sluice::app::doctor
