#include "lib/sys/host.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <system_error>

namespace sluice::sys {

namespace fs = std::filesystem;

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

template <class T>
std::optional<T> to_number(std::string_view s, int base = 10) {
  T v{};
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// A one-number sysfs file.
std::optional<int64_t> read_number(const std::string& absolute) {
  auto text = read_host_file(absolute);
  if (!text) return std::nullopt;
  return to_number<int64_t>(trim(*text));
}

std::optional<std::vector<unsigned>> cpu_list_file(const std::string& absolute) {
  auto text = read_host_file(absolute);
  if (!text) return std::nullopt;
  return parse_cpu_list(*text);
}

std::vector<unsigned> merge(std::vector<unsigned> a, const std::vector<unsigned>& b) {
  a.insert(a.end(), b.begin(), b.end());
  std::sort(a.begin(), a.end());
  a.erase(std::unique(a.begin(), a.end()), a.end());
  return a;
}

// The last path component a sysfs symlink points to ("vfio-pci" for .../drivers/vfio-pci).
std::string link_name(const std::string& absolute) {
  std::error_code ec;
  const fs::path target = fs::read_symlink(host_path(absolute), ec);
  return ec ? std::string() : target.filename().string();
}

// "hugepages-2048kB" -> 2 MiB.
std::optional<uint64_t> hugepage_dir_bytes(std::string_view name) {
  if (!name.starts_with("hugepages-") || !name.ends_with("kB")) return std::nullopt;
  name.remove_prefix(10);
  name.remove_suffix(2);
  auto kb = to_number<uint64_t>(name);
  if (!kb) return std::nullopt;
  return *kb << 10;
}

// The page pools under one folder of hugepages-<size>kB entries.
void read_pools(const std::string& dir, int node, std::vector<Hugepages>& out) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(host_path(dir), ec)) {
    const std::string name = e.path().filename().string();
    auto bytes = hugepage_dir_bytes(name);
    if (!bytes) continue;
    auto total = read_number(dir + "/" + name + "/nr_hugepages");
    auto free = read_number(dir + "/" + name + "/free_hugepages");
    if (!total) continue;
    out.push_back(Hugepages{node, *bytes, static_cast<uint64_t>(*total),
                            static_cast<uint64_t>(free.value_or(0))});
  }
}

// NUMA node ids of /sys/devices/system/node (node0, node1, ...), sorted.
std::vector<int> numa_nodes() {
  std::vector<int> nodes;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(host_path("/sys/devices/system/node"), ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() < 5 || !name.starts_with("node")) continue;
    if (auto n = to_number<int>(std::string_view(name).substr(4))) nodes.push_back(*n);
  }
  std::sort(nodes.begin(), nodes.end());
  return nodes;
}

}  // namespace

// ---- parsers ----

std::optional<std::vector<unsigned>> parse_cpu_list(std::string_view text) {
  text = trim(text);
  std::vector<unsigned> cpus;
  if (text.empty() || text == "(null)") return cpus;
  while (!text.empty()) {
    const size_t comma = text.find(',');
    const std::string_view item = trim(text.substr(0, comma));
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    const size_t dash = item.find('-');
    auto lo = to_number<unsigned>(item.substr(0, dash));
    auto hi = dash == std::string_view::npos ? lo : to_number<unsigned>(item.substr(dash + 1));
    if (!lo || !hi || *hi < *lo || *hi - *lo > 65536) return std::nullopt;
    for (unsigned c = *lo; c <= *hi; ++c) cpus.push_back(c);
  }
  return merge(std::move(cpus), {});
}

std::string cpu_list_text(std::vector<unsigned> cpus) {
  cpus = merge(std::move(cpus), {});
  std::string out;
  for (size_t i = 0; i < cpus.size();) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += j == i ? fmt::format("{}", cpus[i]) : fmt::format("{}-{}", cpus[i], cpus[j]);
    i = j + 1;
  }
  return out;
}

std::optional<std::string> cmdline_value(std::string_view cmdline, std::string_view name) {
  std::optional<std::string> found;
  size_t i = 0;
  while (i < cmdline.size()) {
    while (i < cmdline.size() && std::isspace(static_cast<unsigned char>(cmdline[i]))) ++i;
    size_t j = i;
    bool quoted = false;
    while (j < cmdline.size() &&
           (quoted || !std::isspace(static_cast<unsigned char>(cmdline[j])))) {
      if (cmdline[j] == '"') quoted = !quoted;
      ++j;
    }
    const std::string_view word = cmdline.substr(i, j - i);
    i = j;
    if (word.empty()) continue;
    const size_t eq = word.find('=');
    if (word.substr(0, eq) != name) continue;
    std::string value(eq == std::string_view::npos ? std::string_view() : word.substr(eq + 1));
    value.erase(std::remove(value.begin(), value.end(), '"'), value.end());
    found = value;
  }
  return found;
}

std::optional<std::vector<unsigned>> isolcpus_cpus(std::string_view value) {
  // isolcpus=[flag,...,]cpu-list: flags (nohz, domain, managed_irq) come first.
  while (!value.empty() && std::isalpha(static_cast<unsigned char>(value.front()))) {
    const size_t comma = value.find(',');
    value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
  }
  return parse_cpu_list(value);
}

std::optional<uint64_t> field_number(std::string_view text, std::string_view key, int base) {
  size_t at = 0;
  while (at < text.size()) {
    const size_t eol = std::min(text.find('\n', at), text.size());
    const std::string_view line = text.substr(at, eol - at);
    at = eol + 1;
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || line.substr(0, colon) != key) continue;
    std::string_view v = trim(line.substr(colon + 1));
    if (v.ends_with(" kB")) v.remove_suffix(3);
    return to_number<uint64_t>(v, base);
  }
  return std::nullopt;
}

std::vector<Mount> parse_mounts(std::string_view text) {
  std::vector<Mount> mounts;
  size_t at = 0;
  while (at < text.size()) {
    const size_t eol = std::min(text.find('\n', at), text.size());
    const std::string line(text.substr(at, eol - at));
    at = eol + 1;
    std::array<char, 4096> a{}, b{}, c{}, d{};
    if (std::sscanf(line.c_str(), "%4095s %4095s %4095s %4095s", a.data(), b.data(), c.data(),
                    d.data()) == 4) {
      mounts.push_back(Mount{a.data(), b.data(), c.data(), d.data()});
    }
  }
  return mounts;
}

// ---- probes ----

const std::string& host_root() {
  static const std::string root = [] {
    const char* r = std::getenv("SLUICE_HOST_ROOT");
    std::string s = r != nullptr ? r : "";
    while (!s.empty() && s.back() == '/') s.pop_back();
    return s;
  }();
  return root;
}

std::string host_path(std::string_view absolute) {
  return host_root() + std::string(absolute);
}

std::optional<std::string> read_host_file(std::string_view absolute) {
  std::ifstream f(host_path(absolute), std::ios::binary);
  if (!f) return std::nullopt;
  std::string text;
  std::array<char, 4096> buf;
  while (text.size() < (1u << 20) && f.read(buf.data(), buf.size()).gcount() > 0) {
    text.append(buf.data(), static_cast<size_t>(f.gcount()));
  }
  if (f.bad()) return std::nullopt;
  return text;
}

std::optional<std::vector<unsigned>> online_cpus() {
  return cpu_list_file("/sys/devices/system/cpu/online");
}

// A CPU list from sysfs, or from the boot parameter that set it where the kernel has no such
// file (isolcpus_cpus also reads a plain list).
static std::optional<std::vector<unsigned>> sysfs_or_cmdline(const char* file,
                                                             std::string_view param) {
  if (auto cpus = cpu_list_file(file)) return cpus;
  auto v = cmdline_param(param);
  if (!v && !read_host_file("/proc/cmdline")) return std::nullopt;
  return v ? isolcpus_cpus(*v) : std::vector<unsigned>{};
}

std::optional<std::vector<unsigned>> isolated_cpus() {
  return sysfs_or_cmdline("/sys/devices/system/cpu/isolated", "isolcpus");
}

std::optional<std::vector<unsigned>> nohz_full_cpus() {
  return sysfs_or_cmdline("/sys/devices/system/cpu/nohz_full", "nohz_full");
}

std::optional<std::vector<unsigned>> rcu_nocbs_cpus() {
  auto cmdline = read_host_file("/proc/cmdline");
  if (!cmdline) return std::nullopt;
  std::vector<unsigned> cpus = nohz_full_cpus().value_or(std::vector<unsigned>{});
  if (auto v = cmdline_value(*cmdline, "rcu_nocbs")) {
    if (v->empty()) return merge(cpus, online_cpus().value_or(std::vector<unsigned>{}));
    if (auto listed = parse_cpu_list(*v)) cpus = merge(cpus, *listed);
  }
  return cpus;
}

bool cpu_isolated(unsigned cpu) {
  auto cpus = isolated_cpus();
  return cpus && std::binary_search(cpus->begin(), cpus->end(), cpu);
}

int cpu_numa_node(unsigned cpu) {
  for (int node : numa_nodes()) {
    auto cpus = node_cpus(node);
    if (cpus && std::binary_search(cpus->begin(), cpus->end(), cpu)) return node;
  }
  return -1;
}

std::optional<std::vector<unsigned>> node_cpus(int node) {
  return cpu_list_file(fmt::format("/sys/devices/system/node/node{}/cpulist", node));
}

std::optional<std::string> cmdline_param(std::string_view name) {
  auto cmdline = read_host_file("/proc/cmdline");
  if (!cmdline) return std::nullopt;
  return cmdline_value(*cmdline, name);
}

std::vector<Hugepages> hugepages() {
  std::vector<Hugepages> out;
  for (int node : numa_nodes()) {
    read_pools(fmt::format("/sys/devices/system/node/node{}/hugepages", node), node, out);
  }
  if (out.empty()) read_pools("/sys/kernel/mm/hugepages", -1, out);
  if (out.empty()) {
    // A kernel without sysfs hugepage folders still counts the default size here.
    if (auto meminfo = read_host_file("/proc/meminfo")) {
      auto total = field_number(*meminfo, "HugePages_Total");
      auto free = field_number(*meminfo, "HugePages_Free");
      auto kb = field_number(*meminfo, "Hugepagesize");
      if (total && kb) out.push_back(Hugepages{-1, *kb << 10, *total, free.value_or(0)});
    }
  }
  std::sort(out.begin(), out.end(), [](const Hugepages& a, const Hugepages& b) {
    return a.node != b.node ? a.node < b.node : a.page_bytes < b.page_bytes;
  });
  return out;
}

uint64_t default_hugepage_bytes() {
  auto meminfo = read_host_file("/proc/meminfo");
  if (!meminfo) return 0;
  return field_number(*meminfo, "Hugepagesize").value_or(0) << 10;
}

std::vector<Mount> hugetlbfs_mounts() {
  std::vector<Mount> out;
  auto text = read_host_file("/proc/mounts");
  if (!text) return out;
  for (auto& m : parse_mounts(*text)) {
    if (m.type == "hugetlbfs") out.push_back(std::move(m));
  }
  return out;
}

PciDevice pci_device(const std::string& address) {
  PciDevice d;
  const std::string dir = "/sys/bus/pci/devices/" + address;
  std::error_code ec;
  d.present = fs::exists(host_path(dir), ec);
  if (!d.present) return d;
  d.numa_node = static_cast<int>(read_number(dir + "/numa_node").value_or(-1));
  d.driver = link_name(dir + "/driver");
  const std::string group = link_name(dir + "/iommu_group");
  d.iommu_group = to_number<int>(group).value_or(-1);
  for (const auto& e : fs::directory_iterator(host_path(dir + "/net"), ec)) {
    d.netdev = e.path().filename().string();
    break;
  }
  return d;
}

unsigned iommu_group_count() {
  unsigned n = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator(host_path("/sys/kernel/iommu_groups"), ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

bool vfio_noiommu() {
  auto v = read_host_file("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode");
  return v && (trim(*v) == "Y" || trim(*v) == "1");
}

std::optional<std::string> cpu_governor(unsigned cpu) {
  auto g =
      read_host_file(fmt::format("/sys/devices/system/cpu/cpu{}/cpufreq/scaling_governor", cpu));
  if (!g) return std::nullopt;
  return std::string(trim(*g));
}

std::optional<uint64_t> effective_capabilities() {
  auto status = read_host_file("/proc/self/status");
  if (!status) return std::nullopt;
  return field_number(*status, "CapEff", 16);
}

std::string isolation_fix(const std::vector<unsigned>& cpus) {
  const std::string list = cpu_list_text(cpus);
  return fmt::format("isolcpus={0} nohz_full={0} rcu_nocbs={0} on the kernel command line", list);
}

std::vector<std::string> isolation_warnings(const std::vector<unsigned>& lcores,
                                            const std::vector<unsigned>& cpus) {
  std::vector<std::string> out;
  auto isolated = isolated_cpus();
  if (!isolated) return out;
  const std::vector<unsigned>& on = cpus.empty() ? lcores : cpus;
  const std::string fix = isolation_fix(merge(*isolated, on));
  for (size_t i = 0; i < lcores.size() && i < on.size(); ++i) {
    if (std::binary_search(isolated->begin(), isolated->end(), on[i])) continue;
    out.push_back(fmt::format(
        "worker lcore {} runs on CPU {}, which is not isolated (isolated: {}): the kernel may "
        "run other tasks there, and the worker misses packets while it waits; boot with {}",
        lcores[i], on[i], isolated->empty() ? "none" : cpu_list_text(*isolated), fix));
  }
  return out;
}

}  // namespace sluice::sys
