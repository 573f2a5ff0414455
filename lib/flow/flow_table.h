#pragma once
// The flow table: rules of a flows file compiled into rte_acl contexts (one for IPv4, one
// for IPv6), classified a burst at a time on the data path.
//
// Priority semantics (CONTRACT): higher priority wins; on equal priority the rule earlier in
// the file wins. rte_acl leaves ties undefined, so rules get unique ACL priorities by rank.

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lib/config/config.h"
#include "lib/sys/result.h"
#include "simd/validate.h"

struct rte_acl_ctx;

namespace sluice::flow {

inline constexpr uint32_t kNoRule = UINT32_MAX;     // no rule matched: the default action
inline constexpr uint32_t kNonIp = UINT32_MAX - 1;  // key of a non-IP frame: the non_ip action
inline constexpr uint16_t kNoPort = UINT16_MAX;

// What a rule does, flattened for the data path.
struct RuleAction {
  config::Action action;
  bool capture;     // a copy goes to the capture store
  uint16_t to;      // egress port id, kNoPort for drop
  uint16_t mirror;  // mirror port id, kNoPort for none
};

class FlowTable {
 public:
  // Compiles the rules. name must be unique among live tables (rte_acl context names are
  // global); socket_id is where the ACL tries live (SOCKET_ID_ANY is fine).
  static Result<std::unique_ptr<FlowTable>> build(const config::Flows& flows,
                                                  const std::string& name, int socket_id);
  ~FlowTable();
  FlowTable(const FlowTable&) = delete;
  FlowTable& operator=(const FlowTable&) = delete;

  // Classifies n keys of packets that passed validation. out[i] is the index of the winning
  // rule (into rules()), kNoRule when none matches, kNonIp for a non-IP key. n <= 64.
  void classify(const simd::FlowKey* const* keys, uint16_t n, uint32_t* out) const noexcept;

  const RuleAction& action(uint32_t rule) const noexcept { return actions_[rule]; }
  const RuleAction& fallback() const noexcept { return fallback_; }
  const RuleAction& non_ip() const noexcept { return non_ip_; }
  size_t rule_count() const noexcept { return actions_.size(); }
  const std::vector<std::string>& rule_names() const noexcept { return names_; }
  size_t rules_v4() const noexcept { return rules_v4_; }  // rules in the IPv4 context
  size_t rules_v6() const noexcept { return rules_v6_; }  // rules in the IPv6 context

 private:
  FlowTable() = default;
  // A key is classified in one of four lanes: its family, with ports or without (a non-first
  // fragment, or a protocol without ports: such keys match only rules without port fields).
  // Without any port rule in a family both lanes share its context; a null lane matches
  // nothing.
  static constexpr unsigned kLaneV4 = 0, kLaneV6 = 2, kLanes = 4;
  std::array<rte_acl_ctx*, kLanes> lane_{};
  std::array<rte_acl_ctx*, kLanes> owned_{};  // what the destructor frees
  std::vector<RuleAction> actions_;
  std::vector<std::string> names_;
  RuleAction fallback_{};
  RuleAction non_ip_{};
  size_t rules_v4_ = 0;
  size_t rules_v6_ = 0;
};

}  // namespace sluice::flow
