#pragma once
// What this host offers a DPDK appliance, read from sysfs and procfs: CPUs and their NUMA
// nodes and isolation, hugepages per node, hugetlbfs mounts, PCI devices (NUMA node, driver,
// IOMMU group), CPU frequency governors, the kernel command line, capabilities. DPDK-free:
// sluice --doctor reads it before anything starts, and the appliance at startup.
//
// Every file is read under host_root(): "" (the real /sys, /proc, /dev), or the folder named
// by $SLUICE_HOST_ROOT, which only tests set, to read a fake tree instead. The parsers are
// pure functions over the text, tested alone.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::sys {

// ---- parsers (pure) ----

// A kernel CPU list such as "0-3,8,10-11" (sorted, unique). "" and "(null)" are empty;
// nullopt when the text is not a CPU list.
std::optional<std::vector<unsigned>> parse_cpu_list(std::string_view text);
// The shortest kernel CPU list for cpus: "1-3,5".
std::string cpu_list_text(std::vector<unsigned> cpus);

// The value of NAME=VALUE on a kernel command line (the last one wins); "" for a bare NAME;
// nullopt when absent. Quotes around a value are removed.
std::optional<std::string> cmdline_value(std::string_view cmdline, std::string_view name);

// The CPUs an isolcpus= value names, without its flags ("nohz,domain,2-3" -> 2,3).
std::optional<std::vector<unsigned>> isolcpus_cpus(std::string_view value);

// A "Key:   123 kB" or "Key: 123" line of /proc/meminfo or /proc/self/status (the number).
std::optional<uint64_t> field_number(std::string_view text, std::string_view key, int base = 10);

struct Mount {
  std::string source;
  std::string point;
  std::string type;
  std::string options;
};
// /proc/mounts, in order.
std::vector<Mount> parse_mounts(std::string_view text);

// ---- probes (read the host) ----

// The folder every probe reads under: "" or $SLUICE_HOST_ROOT (tests).
const std::string& host_root();
// host_root() + absolute.
std::string host_path(std::string_view absolute);
// A small host file's content (at most 1 MiB); nullopt when it cannot be read.
std::optional<std::string> read_host_file(std::string_view absolute);

// /sys/devices/system/cpu/online; nullopt when it cannot be read.
std::optional<std::vector<unsigned>> online_cpus();
// CPUs taken from the scheduler's load balancing: /sys/devices/system/cpu/isolated
// (isolcpus=), or isolcpus= of /proc/cmdline on kernels without that file.
std::optional<std::vector<unsigned>> isolated_cpus();
// Tickless CPUs: /sys/devices/system/cpu/nohz_full, or nohz_full= of /proc/cmdline.
std::optional<std::vector<unsigned>> nohz_full_cpus();
// CPUs whose RCU callbacks are offloaded: rcu_nocbs= of /proc/cmdline (a bare rcu_nocbs:
// every online CPU), and the nohz_full CPUs, which the kernel offloads too.
std::optional<std::vector<unsigned>> rcu_nocbs_cpus();
// Whether cpu is isolated (isolcpus=): what a worker lcore wants. False when unknown.
bool cpu_isolated(unsigned cpu);
// NUMA node of a CPU (from /sys/devices/system/node/node*/cpulist); -1 when unknown.
int cpu_numa_node(unsigned cpu);
// The CPUs of a NUMA node; nullopt when unknown.
std::optional<std::vector<unsigned>> node_cpus(int node);
// The value of a kernel command line parameter (/proc/cmdline), as cmdline_value.
std::optional<std::string> cmdline_param(std::string_view name);

// Hugepages of one size on one NUMA node (node -1: the host has no per-node counts).
struct Hugepages {
  int node = -1;
  uint64_t page_bytes = 0;
  uint64_t total = 0;  // pages reserved (nr_hugepages)
  uint64_t free = 0;   // of those, not in use
};
// Every node and page size; empty when the kernel shows none (no hugetlb support).
std::vector<Hugepages> hugepages();
// Hugepagesize of /proc/meminfo, in bytes; 0 when unknown.
uint64_t default_hugepage_bytes();
// hugetlbfs mounts of /proc/mounts.
std::vector<Mount> hugetlbfs_mounts();

struct PciDevice {
  bool present = false;  // /sys/bus/pci/devices/<address> exists
  int numa_node = -1;    // -1: not reported (no NUMA, or a VM)
  std::string driver;    // bound driver ("vfio-pci", "ixgbe", ...); "" when none
  int iommu_group = -1;  // -1: none
  std::string netdev;    // its kernel network interface ("eth0"), when a kernel driver has one
};
PciDevice pci_device(const std::string& address);
// Entries of /sys/kernel/iommu_groups (0 when there is no IOMMU, or it is off).
unsigned iommu_group_count();
// vfio's no-IOMMU mode is on (/sys/module/vfio/parameters/enable_unsafe_noiommu_mode).
bool vfio_noiommu();
// scaling_governor of a CPU; nullopt when the CPU has no cpufreq (a VM, fixed frequency).
std::optional<std::string> cpu_governor(unsigned cpu);
// CapEff of /proc/self/status; nullopt when it cannot be read.
std::optional<uint64_t> effective_capabilities();

// ---- for the appliance at startup ----

// The boot parameters that isolate cpus: "isolcpus=2,3 nohz_full=2,3 rcu_nocbs=2,3 on the
// kernel command line".
std::string isolation_fix(const std::vector<unsigned>& cpus);
// One warning per lcore of `lcores` whose CPU (cpus[i]; cpus empty: lcore N on CPU N, as EAL's
// -l maps them) is not isolated, each naming the boot parameters that isolate all of them
// (and the CPUs isolated now); empty when every one is isolated or the host does not say.
std::vector<std::string> isolation_warnings(const std::vector<unsigned>& lcores,
                                            const std::vector<unsigned>& cpus = {});

}  // namespace sluice::sys
