#include "lib/flow/flow_table.h"

#include <rte_acl.h>
#include <rte_errno.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <numeric>
#include <optional>
#include <type_traits>

namespace sluice::flow {
namespace {

// Cost: 49, 53, 72, 302 cycles/packet at 100, 1k, 10k, 100k rules of tools/bench/rules.py
// (tools/bench/run classify, 2.6 GHz EPYC VM, with the address order below): 1.00x to 1.17x
// dpdk-test-acl's speed on the same rules and trace.

inline constexpr uint16_t kMaxBurst = 64;
inline constexpr uint32_t kAddChunk = 256;  // rules copied into a context per rte_acl_add_rules

// The ACL input is simd::FlowKey itself, laid out as dpdk-test-acl's 5-tuple: the first field
// is one byte (proto), every later input group is 4 bytes loaded from its first field's
// offset, and the fields of a group tile its 4 bytes. Rule values are host order, keys network
// order, as rte_acl expects (it walks each field's bytes most significant first).
//   input 0: proto (byte 0)
//   inputs 1.., the two addresses: one 4-byte word each (one for IPv4, four for IPv6), the
//     one whose prefixes are longer over the context's rules first (AddressOrder below)
//   next input: src_port, dst_port (bytes 4..7)
//   last input, only when a rule of the context matches in_port: bytes 0..3, in_port alone set
// There is no l4_valid field: keys without ports (non-first fragments) are classified in a
// context of the rules without port fields instead (Lane below), so the common case walks 13
// bytes for IPv4, as dpdk-test-acl does, not 17.
struct Layout {
  std::array<rte_acl_field_def, RTE_ACL_MAX_FIELDS> defs{};
  uint32_t num_fields = 0;
  unsigned words = 1;  // 32-bit words per address
  uint8_t src = 0, dst = 0, sport = 0, dport = 0;
  int in_port = -1;  // field index, -1 without the in_port group
};

// rte_acl builds its trie in field order, and a rule whose field is wide (a /8 among /24s)
// is copied under every narrower value it overlaps at that level. Walking the address whose
// prefixes are longer first splits the rules early with little overlap and leaves the wide
// one under already-narrow branches. On tools/bench/rules.py's 100k rules (src /8../32, dst
// /16../32) dst first built in 2.4 s instead of 7.7 s and classified in 173 cycles instead
// of 204; ports before addresses took 36 s. Ties keep src first, dpdk-test-acl's order.
enum class AddressOrder : uint8_t { kSrcFirst, kDstFirst };

Layout layout_of(uint8_t fam, bool with_in_port, AddressOrder order) {
  using simd::FlowKey;
  Layout l;
  l.words = fam == 4 ? 1 : 4;
  uint8_t field = 0, input = 0;
  auto add = [&](uint8_t type, uint8_t size, size_t offset) {
    l.defs[field] = rte_acl_field_def{type, size, field, input, static_cast<uint32_t>(offset)};
    return field++;
  };
  auto add_address = [&](size_t offset) {
    const uint8_t first = field;
    for (unsigned w = 0; w < l.words; ++w, ++input) add(RTE_ACL_FIELD_TYPE_MASK, 4, offset + 4 * w);
    return first;
  };
  add(RTE_ACL_FIELD_TYPE_BITMASK, 1, offsetof(FlowKey, proto));
  ++input;
  if (order == AddressOrder::kDstFirst) {
    l.dst = add_address(offsetof(FlowKey, dst));
    l.src = add_address(offsetof(FlowKey, src));
  } else {
    l.src = add_address(offsetof(FlowKey, src));
    l.dst = add_address(offsetof(FlowKey, dst));
  }
  l.sport = add(RTE_ACL_FIELD_TYPE_RANGE, 2, offsetof(FlowKey, src_port));
  l.dport = add(RTE_ACL_FIELD_TYPE_RANGE, 2, offsetof(FlowKey, dst_port));
  ++input;
  if (with_in_port) {
    add(RTE_ACL_FIELD_TYPE_BITMASK, 1, offsetof(FlowKey, proto));  // wild: tiles the group
    l.in_port = add(RTE_ACL_FIELD_TYPE_BITMASK, 1, offsetof(FlowKey, in_port));
    add(RTE_ACL_FIELD_TYPE_BITMASK, 1, offsetof(FlowKey, l4_valid));  // wild
    add(RTE_ACL_FIELD_TYPE_BITMASK, 1, offsetof(FlowKey, family));    // wild
  }
  l.num_fields = field;
  return l;
}

// One rule in rte_acl's layout (RTE_ACL_RULE_DEF) for N fields.
template <size_t N>
struct AclRule {
  rte_acl_rule_data data;
  std::array<rte_acl_field, N> field;
};
inline constexpr size_t kFields4 = 5, kFields6 = 11, kInPortFields = 4;
static_assert(sizeof(AclRule<kFields4>) == RTE_ACL_RULE_SZ(kFields4));
static_assert(sizeof(AclRule<kFields6 + kInPortFields>) ==
              RTE_ACL_RULE_SZ(kFields6 + kInPortFields));

uint8_t rule_family(const config::Match& m) {
  // Same as config::Match::family(), kept local so this room does not need config.cpp.
  if (m.src) return m.src->family;
  if (m.dst) return m.dst->family;
  return 0;
}

bool has_ports(const config::Match& m) {
  return m.src_port || m.dst_port;
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
void fill_rule(AclRule<N>& r, const Layout& l, const config::Rule& rule, int32_t priority,
               uint32_t userdata) {
  const config::Match& m = rule.match;
  // Every byte zero (= {} need not clear a union beyond its first member): a wildcard field is
  // zero value and mask.
  std::memset(&r, 0, sizeof r);
  r.data.category_mask = 1;
  r.data.priority = priority;
  r.data.userdata = userdata;
  if (m.proto) {
    r.field[0].value.u8 = *m.proto;
    r.field[0].mask_range.u8 = 0xff;
  }
  for (unsigned w = 0; w < l.words; ++w) {
    if (m.src) set_prefix_word(r.field[l.src + w], *m.src, w);
    if (m.dst) set_prefix_word(r.field[l.dst + w], *m.dst, w);
  }
  const config::PortRange any{};
  const config::PortRange& sp = m.src_port ? *m.src_port : any;
  const config::PortRange& dp = m.dst_port ? *m.dst_port : any;
  r.field[l.sport].value.u16 = sp.lo;
  r.field[l.sport].mask_range.u16 = sp.hi;
  r.field[l.dport].value.u16 = dp.lo;
  r.field[l.dport].mask_range.u16 = dp.hi;
  if (l.in_port >= 0 && m.in_port) {
    r.field[l.in_port].value.u8 = static_cast<uint8_t>(*m.in_port);
    r.field[l.in_port].mask_range.u8 = 0xff;
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

// Which rules go into one context, and its name.
struct CtxSpec {
  uint8_t fam;         // 4 or 6
  bool portless_only;  // only rules without port fields (the context for keys without ports)
  std::string name;
};

template <size_t N>
Result<CtxPtr> fill_and_build(rte_acl_ctx* ctx, const Layout& l, const CtxSpec& spec,
                              const config::Flows& flows, const std::vector<uint8_t>& families,
                              const std::vector<int32_t>& rank_prio, const std::string& what) {
  CtxPtr owned(ctx);
  // The context's rules are added in the order of their field values (the layout's field
  // order; file order among equals): rte_acl merges each rule into its trie from the root, and
  // a rule that follows one sharing its path finds those nodes still in cache. The trie is the
  // same (answers come from the rules' ranks, never their order). tools/bench/rules.py's 100k
  // rules, in random file order, in a running sluice: built in 2.2 s instead of 2.75 s,
  // 1,107,003 nodes either way. Only the sort keys are held; rules are copied into the context
  // kAddChunk at a time.
  auto value_of = [&l](const rte_acl_field& f, unsigned field) -> uint32_t {
    switch (l.defs[field].size) {
      case 1:
        return f.value.u8;
      case 2:
        return f.value.u16;
      default:
        return f.value.u32;
    }
  };
  std::vector<std::pair<std::array<uint32_t, N>, uint32_t>> keys;  // values, rule index
  {
    AclRule<N> r;
    for (size_t i = 0; i < flows.rules.size(); ++i) {
      if (families[i] != spec.fam && families[i] != 0) continue;
      if (spec.portless_only && has_ports(flows.rules[i].match)) continue;
      fill_rule(r, l, flows.rules[i], rank_prio[i], static_cast<uint32_t>(i + 1));
      auto& k = keys.emplace_back();
      for (unsigned f = 0; f < N; ++f) k.first[f] = value_of(r.field[f], f);
      k.second = static_cast<uint32_t>(i);
    }
  }
  std::sort(keys.begin(), keys.end());
  std::vector<AclRule<N>> chunk(kAddChunk);
  for (size_t k = 0; k < keys.size(); k += kAddChunk) {
    const size_t used = std::min<size_t>(kAddChunk, keys.size() - k);
    for (size_t j = 0; j < used; ++j) {
      const uint32_t i = keys[k + j].second;
      fill_rule(chunk[j], l, flows.rules[i], rank_prio[i], i + 1);
    }
    if (int rc = rte_acl_add_rules(ctx, reinterpret_cast<const rte_acl_rule*>(chunk.data()),
                                   static_cast<uint32_t>(used));
        rc != 0) {
      return Error{"flow table: adding rules to " + what + " failed: " + errno_text(-rc)};
    }
  }
  keys = {};

  rte_acl_config cfg{};
  cfg.num_categories = 1;
  cfg.num_fields = l.num_fields;
  std::copy(l.defs.begin(), l.defs.begin() + l.num_fields, cfg.defs);
  // No size limit: rte_acl then builds in one pass with its default trie split (what
  // dpdk-test-acl does). A limit makes it start from its largest tries and rebuild, halving,
  // until they fit: 100k rules took minutes and ~10 GB that way.
  cfg.max_size = 0;
  if (int rc = rte_acl_build(ctx, &cfg); rc != 0)
    return Error{
        "flow table: building " + what + " failed: " + errno_text(-rc) +
        (rc == -ENOMEM ? "; simplify or split the rule set, or give the EAL more memory" : "")};
  return owned;
}

// Creates and builds one context, or nullptr when no rule goes into it.
Result<CtxPtr> build_ctx(const CtxSpec& spec, const config::Flows& flows,
                         const std::vector<uint8_t>& families,
                         const std::vector<int32_t>& rank_prio, int socket_id) {
  size_t count = 0;
  bool in_port = false;
  // Host bits summed over the rules, per address (a missing address is all host bits).
  const unsigned bits = spec.fam == 4 ? 32 : 128;
  uint64_t wild_src = 0, wild_dst = 0;
  for (size_t i = 0; i < flows.rules.size(); ++i) {
    if (families[i] != spec.fam && families[i] != 0) continue;
    const config::Match& m = flows.rules[i].match;
    if (spec.portless_only && has_ports(m)) continue;
    ++count;
    in_port |= m.in_port.has_value();
    wild_src += m.src ? bits - m.src->prefix : bits;
    wild_dst += m.dst ? bits - m.dst->prefix : bits;
  }
  if (count == 0) return CtxPtr{};
  const std::string what = (spec.fam == 4 ? "IPv4" : "IPv6") + std::string(" ACL '") + spec.name +
                           "' (" + std::to_string(count) + " rules)";
  if (rte_acl_find_existing(spec.name.c_str()) != nullptr)
    return Error{"flow table: " + what + ": an ACL context of that name already exists"};

  const Layout l = layout_of(
      spec.fam, in_port, wild_dst < wild_src ? AddressOrder::kDstFirst : AddressOrder::kSrcFirst);
  rte_acl_param param{};
  param.name = spec.name.c_str();
  param.socket_id = socket_id;
  param.rule_size = static_cast<uint32_t>(RTE_ACL_RULE_SZ(l.num_fields));
  param.max_rule_num = static_cast<uint32_t>(count);
  rte_acl_ctx* ctx = rte_acl_create(&param);
  if (ctx == nullptr)
    return Error{"flow table: creating " + what + " failed: " + errno_text(rte_errno) +
                 " (rule storage needs " + std::to_string(count * param.rule_size) +
                 " bytes of DPDK memory)"};
  switch (l.num_fields) {
    case kFields4:
      return fill_and_build<kFields4>(ctx, l, spec, flows, families, rank_prio, what);
    case kFields4 + kInPortFields:
      return fill_and_build<kFields4 + kInPortFields>(ctx, l, spec, flows, families, rank_prio,
                                                      what);
    case kFields6:
      return fill_and_build<kFields6>(ctx, l, spec, flows, families, rank_prio, what);
    default:
      return fill_and_build<kFields6 + kInPortFields>(ctx, l, spec, flows, families, rank_prio,
                                                      what);
  }
}

RuleAction to_action(config::Action a, const std::optional<uint16_t>& to,
                     const std::optional<uint16_t>& mirror, bool capture = false) {
  return RuleAction{a, capture, to.value_or(kNoPort), mirror.value_or(kNoPort)};
}

}  // namespace

Result<std::unique_ptr<FlowTable>> FlowTable::build(const config::Flows& flows,
                                                    const std::string& name, int socket_id) {
  if (name.empty() || name.size() + 3 >= RTE_ACL_NAMESIZE)
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

  // Unique ACL priorities by rank: higher priority first, then earlier in the file. Sorted as
  // keys (inverted priority, file index), not indexes into the rules: 100k rules sort in a few
  // ms instead of chasing each comparison into a Rule.
  static_assert(std::is_same_v<decltype(config::Rule::priority), uint16_t>, "the key's high word");
  std::vector<uint64_t> order(n);
  for (size_t i = 0; i < n; ++i) {
    order[i] = uint64_t{static_cast<uint16_t>(UINT16_MAX - flows.rules[i].priority)} << 32 | i;
  }
  std::sort(order.begin(), order.end());
  std::vector<int32_t> rank_prio(n);
  for (size_t r = 0; r < n; ++r) {
    rank_prio[static_cast<uint32_t>(order[r])] = static_cast<int32_t>(n - r);
  }
  order = {};

  std::unique_ptr<FlowTable> t(new FlowTable());
  for (uint8_t fam : {uint8_t{4}, uint8_t{6}}) {
    const unsigned lane = fam == 4 ? kLaneV4 : kLaneV6;
    bool ported = false;  // does a rule of this family match ports?
    for (size_t i = 0; i < n; ++i)
      ported |= (families[i] == fam || families[i] == 0) && has_ports(flows.rules[i].match);
    const std::string tag = fam == 4 ? "4" : "6";
    auto main = build_ctx({fam, false, name + "-v" + tag}, flows, families, rank_prio, socket_id);
    if (!main) return Error{main.error()};
    t->owned_[lane] = t->lane_[lane] = main->release();
    if (!ported) {
      t->lane_[lane + 1] = t->lane_[lane];  // keys without ports see the same rules
      continue;
    }
    auto portless =
        build_ctx({fam, true, name + "-n" + tag}, flows, families, rank_prio, socket_id);
    if (!portless) return Error{portless.error()};
    t->owned_[lane + 1] = t->lane_[lane + 1] = portless->release();
  }
  t->rules_v4_ = count4;
  t->rules_v6_ = count6;

  t->actions_.reserve(n);
  t->names_.reserve(n);
  for (const config::Rule& r : flows.rules) {
    t->actions_.push_back(to_action(r.action, r.to, r.mirror, r.capture));
    t->names_.push_back(r.name);
  }
  t->fallback_ = to_action(flows.fallback.action, flows.fallback.to, std::nullopt);
  t->non_ip_ = to_action(flows.non_ip.action, flows.non_ip.to, std::nullopt);
  return t;
}

FlowTable::~FlowTable() {
  for (rte_acl_ctx* c : owned_) rte_acl_free(c);
}

namespace {

// Runs one lane's gathered keys through its context and scatters the results.
inline void classify_lane(const rte_acl_ctx* ctx, const uint8_t** data, const uint16_t* slot,
                          uint16_t count, uint32_t* out) noexcept {
  if (count == 0) return;
  std::array<uint32_t, kMaxBurst> res;
  if (ctx == nullptr || rte_acl_classify(ctx, data, res.data(), count, 1) != 0) [[unlikely]] {
    for (uint16_t j = 0; j < count; ++j) out[slot[j]] = kNoRule;
    return;
  }
  for (uint16_t j = 0; j < count; ++j) out[slot[j]] = res[j] == 0 ? kNoRule : res[j] - 1;
}

}  // namespace

namespace {

// The two bytes that pick a key's lane: l4_valid (offset 2) and family (offset 3).
inline uint16_t lane_bytes(const simd::FlowKey* k) noexcept {
  static_assert(offsetof(simd::FlowKey, l4_valid) == 2 && offsetof(simd::FlowKey, family) == 3);
  uint16_t v;
  std::memcpy(&v, &k->l4_valid, sizeof v);
  return v;
}

}  // namespace

void FlowTable::classify(const simd::FlowKey* const* keys, uint16_t n,
                         uint32_t* out) const noexcept {
  // n is at most a burst; larger calls are taken a burst at a time rather than overrun.
  for (unsigned base = 0; base < n; base += kMaxBurst) {
    const auto count = static_cast<uint16_t>(std::min<unsigned>(n - base, kMaxBurst));
    const simd::FlowKey* const* k = keys + base;
    uint32_t* res = out + base;

    // Usually every key of a burst takes the same lane (IPv4 with ports): classify the
    // caller's pointers straight into out, as dpdk-test-acl does, and map rte_acl's answer
    // (userdata = rule + 1, 0 for none) in place: 0 - 1 wraps to kNoRule.
    const uint16_t first = lane_bytes(k[0]);
    bool uniform = true;
    for (unsigned i = 1; i < count; ++i) uniform &= lane_bytes(k[i]) == first;
    const simd::Family fam = k[0]->family;
    if (uniform && (fam == simd::Family::kIpv4 || fam == simd::Family::kIpv6)) [[likely]] {
      const rte_acl_ctx* ctx =
          lane_[(fam == simd::Family::kIpv6 ? kLaneV6 : kLaneV4) + (k[0]->l4_valid == 0)];
      // rte_acl_classify does not write the pointer array; its prototype is not const-correct.
      auto** data = const_cast<const uint8_t**>(reinterpret_cast<const uint8_t* const*>(k));
      if (ctx == nullptr || rte_acl_classify(ctx, data, res, count, 1) != 0) [[unlikely]] {
        std::fill(res, res + count, kNoRule);
        continue;
      }
      static_assert(kNoRule == uint32_t{0} - 1);
      for (unsigned i = 0; i < count; ++i) res[i] -= 1;
      continue;
    }

    // Mixed burst: gather each lane's keys, classify per lane, scatter the answers.
    std::array<std::array<const uint8_t*, kMaxBurst>, kLanes> data;
    std::array<std::array<uint16_t, kMaxBurst>, kLanes> slot;
    std::array<uint16_t, kLanes> nb{};
    for (unsigned i = 0; i < count; ++i) {
      unsigned lane;
      if (k[i]->family == simd::Family::kIpv4) {
        lane = kLaneV4;
      } else if (k[i]->family == simd::Family::kIpv6) {
        lane = kLaneV6;
      } else {
        res[i] = kNonIp;
        continue;
      }
      lane += k[i]->l4_valid == 0;  // no ports: the lane of the rules without port fields
      data[lane][nb[lane]] = reinterpret_cast<const uint8_t*>(k[i]);
      slot[lane][nb[lane]++] = static_cast<uint16_t>(i);
    }
    for (unsigned lane = 0; lane < kLanes; ++lane)
      classify_lane(lane_[lane], data[lane].data(), slot[lane].data(), nb[lane], res);
  }
}

}  // namespace sluice::flow
