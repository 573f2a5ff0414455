#include "lib/flow/flow_table.h"

#include <rte_acl.h>
#include <rte_errno.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <numeric>
#include <optional>

namespace sluice::flow {
namespace {

// Cost: ~57 cycles/packet for 100 to 10,000 IPv4 rules, bursts of 32 (sluice-bench-stages,
// 2.6 GHz EPYC VM; rte_acl picks its AVX-512 method there); ~105 with 100k mixed v4/v6 rules.

inline constexpr uint16_t kMaxBurst = 64;
inline constexpr uint32_t kAddChunk = 256;  // rules copied into a context per rte_acl_add_rules
// Try to keep one context's run-time tries under this; a rule set that needs more is rebuilt
// with no limit (rte_acl then splits it into more, slower tries).
inline constexpr size_t kAclMaxSize = size_t{256} << 20;

// The ACL input is simd::FlowKey itself. rte_acl consumes the first field as one byte, then
// every input group as 4 bytes loaded from the group's first offset, so fields must tile
// 1 + 4k bytes. FlowKey's useful bytes are proto (0), in_port (1), l4_valid (2), the ports
// (4..7) and the addresses (8..39): group 1 re-reads bytes 0..3 with proto and family wild
// to cover in_port and l4_valid. Rule values are host order, keys network order, as
// rte_acl expects (it walks each field's bytes most significant first).
enum CommonField : uint8_t {
  kProto,       // input 0: the single first byte
  kProtoAgain,  // input 1: bytes 0..3, proto and family wild
  kInPort,
  kL4Valid,
  kFamily,
  kSrcPort,  // input 2: bytes 4..7
  kDstPort,
  kCommonCount
};
enum Field4 : uint8_t { k4Src = kCommonCount, k4Dst, k4Count };
enum Field6 : uint8_t {
  k6Src0 = kCommonCount,  // four 32-bit words, most significant first
  k6Dst0 = k6Src0 + 4,
  k6Count = k6Dst0 + 4
};

constexpr rte_acl_field_def field_def(uint8_t type, uint8_t size, uint8_t index, uint8_t input,
                                      size_t offset) {
  return rte_acl_field_def{type, size, index, input, static_cast<uint32_t>(offset)};
}

// Fields common to both families: input groups 0..2.
template <size_t N>
constexpr std::array<rte_acl_field_def, N> common_defs() {
  using simd::FlowKey;
  std::array<rte_acl_field_def, N> d{};
  constexpr uint8_t kBitmask = RTE_ACL_FIELD_TYPE_BITMASK, kRange = RTE_ACL_FIELD_TYPE_RANGE;
  d[kProto] = field_def(kBitmask, 1, kProto, 0, offsetof(FlowKey, proto));
  d[kProtoAgain] = field_def(kBitmask, 1, kProtoAgain, 1, offsetof(FlowKey, proto));
  d[kInPort] = field_def(kBitmask, 1, kInPort, 1, offsetof(FlowKey, in_port));
  d[kL4Valid] = field_def(kBitmask, 1, kL4Valid, 1, offsetof(FlowKey, l4_valid));
  d[kFamily] = field_def(kBitmask, 1, kFamily, 1, offsetof(FlowKey, family));
  d[kSrcPort] = field_def(kRange, 2, kSrcPort, 2, offsetof(FlowKey, src_port));
  d[kDstPort] = field_def(kRange, 2, kDstPort, 2, offsetof(FlowKey, dst_port));
  return d;
}

constexpr std::array<rte_acl_field_def, k4Count> defs4() {
  auto d = common_defs<k4Count>();
  d[k4Src] = field_def(RTE_ACL_FIELD_TYPE_MASK, 4, k4Src, 3, offsetof(simd::FlowKey, src));
  d[k4Dst] = field_def(RTE_ACL_FIELD_TYPE_MASK, 4, k4Dst, 4, offsetof(simd::FlowKey, dst));
  return d;
}

constexpr std::array<rte_acl_field_def, k6Count> defs6() {
  auto d = common_defs<k6Count>();
  for (uint8_t w = 0; w < 4; ++w) {
    d[k6Src0 + w] = field_def(RTE_ACL_FIELD_TYPE_MASK, 4, k6Src0 + w, 3 + w,
                              offsetof(simd::FlowKey, src) + 4 * w);
    d[k6Dst0 + w] = field_def(RTE_ACL_FIELD_TYPE_MASK, 4, k6Dst0 + w, 7 + w,
                              offsetof(simd::FlowKey, dst) + 4 * w);
  }
  return d;
}

constexpr auto kDefs4 = defs4();
constexpr auto kDefs6 = defs6();

// One rule in rte_acl's layout (RTE_ACL_RULE_DEF) for N fields.
template <size_t N>
struct AclRule {
  rte_acl_rule_data data;
  std::array<rte_acl_field, N> field;
};
static_assert(sizeof(AclRule<k4Count>) == RTE_ACL_RULE_SZ(k4Count));
static_assert(sizeof(AclRule<k6Count>) == RTE_ACL_RULE_SZ(k6Count));

uint8_t rule_family(const config::Match& m) {
  // Same as config::Match::family(), kept local so this room does not need config.cpp.
  if (m.src) return m.src->family;
  if (m.dst) return m.dst->family;
  return 0;
}

// Network-order bytes at p -> host-order 32-bit word.
uint32_t load_be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

// A prefix over the 32-bit word w (0-based) of an address: value and the prefix length that
// falls in that word. Host bits are cleared.
void set_prefix_word(rte_acl_field& f, const config::Cidr& c, unsigned w) {
  const int len = std::clamp(static_cast<int>(c.prefix) - 32 * static_cast<int>(w), 0, 32);
  const uint32_t mask = len == 0 ? 0 : UINT32_MAX << (32 - len);
  f.value.u32 = load_be32(c.addr.data() + 4 * w) & mask;
  f.mask_range.u32 = static_cast<uint32_t>(len);
}

template <size_t N>
void set_common(AclRule<N>& r, const config::Rule& rule, int32_t priority, uint32_t userdata) {
  const config::Match& m = rule.match;
  r = {};
  r.data.category_mask = 1;
  r.data.priority = priority;
  r.data.userdata = userdata;
  if (m.proto) {
    r.field[kProto].value.u8 = *m.proto;
    r.field[kProto].mask_range.u8 = 0xff;
  }
  if (m.in_port) {
    r.field[kInPort].value.u8 = static_cast<uint8_t>(*m.in_port);
    r.field[kInPort].mask_range.u8 = 0xff;
  }
  const bool has_ports = m.src_port || m.dst_port;
  if (has_ports) {
    r.field[kL4Valid].value.u8 = 1;
    r.field[kL4Valid].mask_range.u8 = 0xff;
  }
  const config::PortRange any{};
  const config::PortRange& sp = m.src_port ? *m.src_port : any;
  const config::PortRange& dp = m.dst_port ? *m.dst_port : any;
  r.field[kSrcPort].value.u16 = sp.lo;
  r.field[kSrcPort].mask_range.u16 = sp.hi;
  r.field[kDstPort].value.u16 = dp.lo;
  r.field[kDstPort].mask_range.u16 = dp.hi;
}

void fill_rule(AclRule<k4Count>& r, const config::Rule& rule, int32_t prio, uint32_t userdata) {
  set_common(r, rule, prio, userdata);
  if (rule.match.src) set_prefix_word(r.field[k4Src], *rule.match.src, 0);
  if (rule.match.dst) set_prefix_word(r.field[k4Dst], *rule.match.dst, 0);
}

void fill_rule(AclRule<k6Count>& r, const config::Rule& rule, int32_t prio, uint32_t userdata) {
  set_common(r, rule, prio, userdata);
  for (unsigned w = 0; w < 4; ++w) {
    if (rule.match.src) set_prefix_word(r.field[k6Src0 + w], *rule.match.src, w);
    if (rule.match.dst) set_prefix_word(r.field[k6Dst0 + w], *rule.match.dst, w);
  }
}

struct CtxDeleter {
  void operator()(rte_acl_ctx* c) const noexcept { rte_acl_free(c); }
};
using CtxPtr = std::unique_ptr<rte_acl_ctx, CtxDeleter>;

std::string errno_text(int err) {
  switch (err) {
    case ENOMEM:
      return "out of memory";
    case ERANGE:
      return "run-time tables too large";
    case EINVAL:
      return "invalid rule or field layout";
    default:
      return rte_strerror(err);
  }
}

// Creates and builds one context holding the rules of family fam (4 or 6), or nullptr when
// there are none. rank_prio[i] is rule i's ACL priority.
template <size_t N>
Result<CtxPtr> build_ctx(const std::array<rte_acl_field_def, N>& defs, uint8_t fam,
                         const config::Flows& flows, const std::vector<uint8_t>& families,
                         const std::vector<int32_t>& rank_prio, size_t count,
                         const std::string& ctx_name, int socket_id) {
  if (count == 0) return CtxPtr{};
  const std::string what = (fam == 4 ? "IPv4" : "IPv6") + std::string(" ACL '") + ctx_name + "' (" +
                           std::to_string(count) + " rules)";
  if (rte_acl_find_existing(ctx_name.c_str()) != nullptr)
    return Error{"flow table: " + what + ": an ACL context of that name already exists"};

  rte_acl_param param{};
  param.name = ctx_name.c_str();
  param.socket_id = socket_id;
  param.rule_size = sizeof(AclRule<N>);
  param.max_rule_num = static_cast<uint32_t>(count);
  CtxPtr ctx(rte_acl_create(&param));
  if (!ctx)
    return Error{"flow table: creating " + what + " failed: " + errno_text(rte_errno) +
                 " (rule storage needs " + std::to_string(count * sizeof(AclRule<N>)) +
                 " bytes of DPDK memory)"};

  // Copy rules in chunks so build memory stays one context plus a small buffer.
  std::vector<AclRule<N>> chunk(std::min<size_t>(count, kAddChunk));
  size_t used = 0;
  auto flush = [&]() -> int {
    const int rc =
        used ? rte_acl_add_rules(ctx.get(), reinterpret_cast<const rte_acl_rule*>(chunk.data()),
                                 static_cast<uint32_t>(used))
             : 0;
    used = 0;
    return rc;
  };
  for (size_t i = 0; i < flows.rules.size(); ++i) {
    if (families[i] != fam && families[i] != 0) continue;
    fill_rule(chunk[used++], flows.rules[i], rank_prio[i], static_cast<uint32_t>(i + 1));
    if (used == chunk.size()) {
      if (int rc = flush(); rc != 0)
        return Error{"flow table: adding rules to " + what + " failed: " + errno_text(-rc)};
    }
  }
  if (int rc = flush(); rc != 0)
    return Error{"flow table: adding rules to " + what + " failed: " + errno_text(-rc)};

  rte_acl_config cfg{};
  cfg.num_categories = 1;
  cfg.num_fields = N;
  std::copy(defs.begin(), defs.end(), cfg.defs);
  cfg.max_size = kAclMaxSize;
  int rc = rte_acl_build(ctx.get(), &cfg);
  if (rc == -ERANGE) {
    cfg.max_size = 0;
    rc = rte_acl_build(ctx.get(), &cfg);
  }
  if (rc != 0)
    return Error{
        "flow table: building " + what + " failed: " + errno_text(-rc) +
        (rc == -ENOMEM ? "; simplify or split the rule set, or give the EAL more memory" : "")};
  return ctx;
}

RuleAction to_action(config::Action a, const std::optional<uint16_t>& to,
                     const std::optional<uint16_t>& mirror) {
  return RuleAction{a, to.value_or(kNoPort), mirror.value_or(kNoPort)};
}

}  // namespace

Result<std::unique_ptr<FlowTable>> FlowTable::build(const config::Flows& flows,
                                                    const std::string& name, int socket_id) {
  const std::string name4 = name + "-v4";
  const std::string name6 = name + "-v6";
  if (name.empty() || name6.size() >= RTE_ACL_NAMESIZE)
    return Error{"flow table: name '" + name + "' must be 1.." +
                 std::to_string(RTE_ACL_NAMESIZE - 4) + " characters"};
  const size_t n = flows.rules.size();
  if (n >= static_cast<size_t>(RTE_ACL_MAX_PRIORITY))
    return Error{"flow table: " + std::to_string(n) + " rules is more than rte_acl can rank"};

  // Check what the ACL layout depends on, and sort the families out.
  std::vector<uint8_t> families(n);
  size_t count4 = 0, count6 = 0;
  for (size_t i = 0; i < n; ++i) {
    const config::Rule& r = flows.rules[i];
    const config::Match& m = r.match;
    const std::string where = "flow table: rule '" + r.name + "': ";
    if (m.src && m.dst && m.src->family != m.dst->family)
      return Error{where + "src and dst are of different families"};
    for (const auto* c : {&m.src, &m.dst}) {
      if (!*c) continue;
      if ((*c)->family != 4 && (*c)->family != 6)
        return Error{where + "address family must be 4 or 6"};
      if ((*c)->prefix > ((*c)->family == 4 ? 32 : 128))
        return Error{where + "prefix length out of range"};
    }
    if (m.in_port && *m.in_port > UINT8_MAX)
      return Error{where + "in_port id " + std::to_string(*m.in_port) +
                   " does not fit the flow key (at most 255)"};
    for (const auto* p : {&m.src_port, &m.dst_port})
      if (*p && (*p)->lo > (*p)->hi) return Error{where + "port range is empty"};
    families[i] = rule_family(m);
    count4 += families[i] != 6;
    count6 += families[i] != 4;
  }

  // Unique ACL priorities by rank: higher priority first, then earlier in the file.
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    return flows.rules[a].priority > flows.rules[b].priority;
  });
  std::vector<int32_t> rank_prio(n);
  for (size_t r = 0; r < n; ++r) rank_prio[order[r]] = static_cast<int32_t>(n - r);
  order = {};

  std::unique_ptr<FlowTable> t(new FlowTable());
  auto c4 = build_ctx(kDefs4, 4, flows, families, rank_prio, count4, name4, socket_id);
  if (!c4) return Error{c4.error()};
  auto c6 = build_ctx(kDefs6, 6, flows, families, rank_prio, count6, name6, socket_id);
  if (!c6) return Error{c6.error()};
  t->ctx4_ = c4->release();
  t->ctx6_ = c6->release();
  t->rules_v4_ = count4;
  t->rules_v6_ = count6;

  t->actions_.reserve(n);
  t->names_.reserve(n);
  for (const config::Rule& r : flows.rules) {
    t->actions_.push_back(to_action(r.action, r.to, r.mirror));
    t->names_.push_back(r.name);
  }
  t->fallback_ = to_action(flows.fallback.action, flows.fallback.to, std::nullopt);
  t->non_ip_ = to_action(flows.non_ip.action, flows.non_ip.to, std::nullopt);
  return t;
}

FlowTable::~FlowTable() {
  rte_acl_free(ctx4_);
  rte_acl_free(ctx6_);
}

namespace {

// Runs one family's gathered keys through its context and scatters the results.
inline void classify_family(const rte_acl_ctx* ctx, const uint8_t** data, const uint16_t* slot,
                            uint16_t count, uint32_t* out) noexcept {
  if (count == 0) return;
  std::array<uint32_t, kMaxBurst> res;
  if (rte_acl_classify(ctx, data, res.data(), count, 1) != 0) [[unlikely]] {
    for (uint16_t j = 0; j < count; ++j) out[slot[j]] = kNoRule;
    return;
  }
  for (uint16_t j = 0; j < count; ++j) out[slot[j]] = res[j] == 0 ? kNoRule : res[j] - 1;
}

}  // namespace

void FlowTable::classify(const simd::FlowKey* const* keys, uint16_t n,
                         uint32_t* out) const noexcept {
  std::array<const uint8_t*, kMaxBurst> data4, data6;
  std::array<uint16_t, kMaxBurst> slot4, slot6;
  // n is at most a burst; larger calls are taken a burst at a time rather than overrun.
  for (unsigned base = 0; base < n; base += kMaxBurst) {
    const unsigned end = std::min<unsigned>(n, base + kMaxBurst);
    uint16_t n4 = 0, n6 = 0;
    for (unsigned i = base; i < end; ++i) {
      const simd::FlowKey* k = keys[i];
      if (k->family == simd::Family::kIpv4) {
        if (ctx4_) {
          data4[n4] = reinterpret_cast<const uint8_t*>(k);
          slot4[n4++] = static_cast<uint16_t>(i);
        } else {
          out[i] = kNoRule;
        }
      } else if (k->family == simd::Family::kIpv6) {
        if (ctx6_) {
          data6[n6] = reinterpret_cast<const uint8_t*>(k);
          slot6[n6++] = static_cast<uint16_t>(i);
        } else {
          out[i] = kNoRule;
        }
      } else {
        out[i] = kNonIp;
      }
    }
    classify_family(ctx4_, data4.data(), slot4.data(), n4, out);
    classify_family(ctx6_, data6.data(), slot6.data(), n6, out);
  }
}

}  // namespace sluice::flow
