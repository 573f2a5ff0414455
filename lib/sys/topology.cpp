#include "lib/sys/topology.h"

#include <hwloc.h>

namespace sluice::sys {

Result<Topology> Topology::load() {
  hwloc_topology_t t = nullptr;
  if (hwloc_topology_init(&t) != 0) return Error{"hwloc: cannot initialise the topology"};
  // PCI devices are needed to place ports on their socket.
  hwloc_topology_set_io_types_filter(t, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
  if (hwloc_topology_load(t) != 0) {
    hwloc_topology_destroy(t);
    return Error{"hwloc: cannot load the topology"};
  }
  return Topology(t);
}

Topology::Topology(Topology&& other) noexcept : topo_(other.topo_) {
  other.topo_ = nullptr;
}

Topology::~Topology() {
  if (topo_) hwloc_topology_destroy(topo_);
}

static int numa_of_cpuset(hwloc_topology_t t, hwloc_const_cpuset_t set) {
  hwloc_obj_t numa = nullptr;
  while ((numa = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, numa)) != nullptr) {
    if (hwloc_bitmap_intersects(numa->cpuset, set)) return static_cast<int>(numa->os_index);
  }
  return -1;
}

int Topology::socket_of_cpu(unsigned cpu) const {
  hwloc_bitmap_t set = hwloc_bitmap_alloc();
  hwloc_bitmap_only(set, cpu);
  int s = numa_of_cpuset(topo_, set);
  hwloc_bitmap_free(set);
  return s;
}

int Topology::socket_of_pci(const std::string& address) const {
  hwloc_obj_t dev = hwloc_get_pcidev_by_busidstring(topo_, address.c_str());
  if (dev == nullptr) return -1;
  hwloc_obj_t parent = hwloc_get_non_io_ancestor_obj(topo_, dev);
  if (parent == nullptr || parent->cpuset == nullptr) return -1;
  return numa_of_cpuset(topo_, parent->cpuset);
}

int Topology::socket_count() const {
  int n = hwloc_get_nbobjs_by_type(topo_, HWLOC_OBJ_NUMANODE);
  return n > 0 ? n : 1;
}

}  // namespace sluice::sys
