#pragma once
// NUMA topology from hwloc: which socket a CPU or a PCI device sits on.

#include <string>

#include "lib/sys/result.h"

struct hwloc_topology;

namespace sluice::sys {

class Topology {
 public:
  static Result<Topology> load();
  Topology(Topology&& other) noexcept;
  Topology& operator=(Topology&&) = delete;
  ~Topology();

  // NUMA node of a CPU; -1 when unknown.
  int socket_of_cpu(unsigned cpu) const;
  // NUMA node of a PCI device given as "0000:3b:00.0"; -1 when unknown (vdevs, no NUMA).
  int socket_of_pci(const std::string& address) const;
  int socket_count() const;

 private:
  explicit Topology(hwloc_topology* t) : topo_(t) {}
  hwloc_topology* topo_;
};

}  // namespace sluice::sys
