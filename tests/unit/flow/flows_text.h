#pragma once
// Flows for tests, written as the YAML an operator writes, decoded by the real loader against
// an appliance with ports a, b and c.

#include <memory>
#include <stdexcept>
#include <string>

#include "lib/config/config.h"

namespace sluice::test {

inline const config::Appliance& test_appliance() {
  static const config::Appliance app = [] {
    config::Appliance a;
    for (const char* n : {"a", "b", "c"}) {
      config::PortConfig p;
      p.name = n;
      a.ports.push_back(p);
    }
    return a;
  }();
  return app;
}

// "rules:" and what follows; version, non_ip and default are added (drop, drop).
inline std::shared_ptr<const config::Flows> flows_text(const std::string& rules,
                                                       const std::string& head = "") {
  auto f = config::parse_flows("test.yaml", "version: 1\n" + head + rules, test_appliance());
  if (!f) throw std::runtime_error(f.error());
  return std::make_shared<const config::Flows>(std::move(*f));
}

}  // namespace sluice::test
