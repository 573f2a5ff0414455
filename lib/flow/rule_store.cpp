#include "lib/flow/rule_store.h"

#include <rte_errno.h>
#include <rte_malloc.h>

#include <algorithm>
#include <new>
#include <numeric>
#include <string_view>
#include <unordered_map>

namespace sluice::flow {
namespace {

double ms_since(RuleStore::Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(RuleStore::Clock::now() - t).count();
}

// Rows hold at least one entry so an empty rule set still has a valid pointer per worker.
size_t row_entries(const Generation& g) {
  return std::max<size_t>(g.table ? g.table->rule_count() : 0, 1);
}

}  // namespace

Generation::~Generation() {
  for (auto* row : hits) rte_free(row);
}

Result<std::unique_ptr<RuleStore>> RuleStore::create(std::shared_ptr<const config::Flows> flows,
                                                     std::vector<int> worker_sockets,
                                                     int acl_socket, std::string name) {
  std::unique_ptr<RuleStore> s(new RuleStore());
  s->name_ = std::move(name);
  s->sockets_ = std::move(worker_sockets);
  s->acl_socket_ = acl_socket;
  const auto threads = static_cast<uint32_t>(std::max<size_t>(s->sockets_.size(), 1));
  const size_t size = rte_rcu_qsbr_get_memsize(threads);
  s->qsbr_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("sluice_qsbr", size, RTE_CACHE_LINE_SIZE));
  if (s->qsbr_ == nullptr || rte_rcu_qsbr_init(s->qsbr_, threads) != 0) {
    return Error{"flow table: cannot set up RCU for " + std::to_string(threads) +
                 " workers: out of DPDK memory (" + std::to_string(size) + " bytes)"};
  }
  // Registered but offline until each worker comes online on its lcore: a grace period never
  // waits for a worker that is not running.
  for (uint32_t w = 0; w < s->sockets_.size(); ++w) rte_rcu_qsbr_thread_register(s->qsbr_, w);

  auto built = s->build(std::move(flows));
  if (!built) return Error{built.error()};
  s->publish(std::move(built->gen));
  return s;
}

RuleStore::~RuleStore() {
  current_.store(nullptr, std::memory_order_release);
  slots_.clear();
  retiring_.clear();
  owned_.reset();
  rte_free(qsbr_);
}

Result<RuleStore::Built> RuleStore::build(std::shared_ptr<const config::Flows> flows) {
  const auto start = Clock::now();
  auto gen = std::make_unique<Generation>();
  auto table = FlowTable::build(*flows, name_ + "-" + std::to_string(++builds_), acl_socket_);
  if (!table) return Error{table.error()};
  gen->table = std::move(*table);
  gen->flows = std::move(flows);
  const size_t entries = row_entries(*gen);
  const size_t bytes = entries * sizeof(stats::PacketBytes);
  for (int socket : sockets_) {
    auto* row = static_cast<stats::PacketBytes*>(
        rte_zmalloc_socket("sluice_rule_hits", bytes, RTE_CACHE_LINE_SIZE, socket));
    if (row == nullptr) {
      return Error{"flow table: per-rule counters: out of DPDK memory (" + std::to_string(bytes) +
                   " bytes per worker on socket " + std::to_string(socket) + ")"};
    }
    for (size_t i = 0; i < entries; ++i) new (row + i) stats::PacketBytes();
    gen->hits.push_back(row);
  }
  return Built{std::move(gen), ms_since(start)};
}

uint64_t RuleStore::publish(std::unique_ptr<Generation> gen) {
  gen->number = next_number_++;
  Generation* next = gen.get();
  std::unique_ptr<Generation> old = std::move(owned_);
  owned_ = std::move(gen);
  // The swap: workers see the new generation from their next burst on.
  current_.store(next, std::memory_order_release);
  uint64_t replaced = 0;
  const Generation* before = old.get();
  if (old) {
    replaced = old->number;
    // The token is taken after the swap: a worker that reports it has finished every burst
    // that could have read the old pointer.
    retiring_.push_back(Pending{std::move(old), rte_rcu_qsbr_start(qsbr_), Clock::now()});
  }
  renumber(before);
  // The grace clock starts once the control plane is done publishing, so grace_ms is how long
  // the workers took to pass a quiescent state (plus the control loop's own latency).
  if (!retiring_.empty() && before != nullptr) retiring_.back().since = Clock::now();
  return replaced;
}

void RuleStore::renumber(const Generation* before) {
  // The new slot table: the new rules in file order, then the rules of the generation just
  // replaced that the new one lacks (removed by this reload). The names viewed here live in
  // the generations' flows, which outlive this function.
  const auto& rules = owned_->flows->rules;
  std::vector<uint32_t> identity(rules.size());
  std::iota(identity.begin(), identity.end(), 0u);
  // Usually a reload keeps every rule's name in its place (the slot table's head is the
  // replaced generation's rules, which are then all in the new one): the table stands as it is.
  bool unchanged = names_.size() == rules.size();
  for (size_t i = 0; unchanged && i < rules.size(); ++i) unchanged = names_[i] == rules[i].name;
  if (unchanged) {
    slots_.emplace_back(owned_.get(), std::move(identity));
    return;
  }
  std::unordered_map<std::string_view, uint32_t> slot;
  slot.reserve(rules.size() + (before ? before->flows->rules.size() : 0));
  std::vector<std::string> names;
  names.reserve(rules.size());
  for (const auto& r : rules) {
    slot.emplace(r.name, static_cast<uint32_t>(names.size()));
    names.push_back(r.name);
  }
  if (before != nullptr) {
    for (const auto& r : before->flows->rules) {
      if (slot.emplace(r.name, static_cast<uint32_t>(names.size())).second) names.push_back(r.name);
    }
  }
  // Old slot -> new slot; names listed no more (removed two reloads ago) drop their counts.
  std::vector<uint32_t> moved(names_.size(), kNoSlot);
  std::vector<stats::Totals> carried(names.size());
  for (size_t i = 0; i < names_.size(); ++i) {
    if (auto it = slot.find(names_[i]); it != slot.end()) {
      moved[i] = it->second;
      carried[it->second] = carried_[i];
    }
  }
  names_ = std::move(names);
  carried_ = std::move(carried);
  // Live generations keep their rule -> slot maps, renumbered; the new one maps to itself.
  for (auto& [g, map] : slots_) {
    for (uint32_t& m : map) m = m == kNoSlot ? kNoSlot : moved[m];
  }
  slots_.emplace_back(owned_.get(), std::move(identity));
}

std::vector<RuleStore::Retired> RuleStore::poll() {
  std::vector<Retired> done;
  while (!retiring_.empty()) {
    Pending& p = retiring_.front();
    if (rte_rcu_qsbr_check(qsbr_, p.token, false) != 1) break;  // later tokens wait too
    // Every worker is past its last use of p.gen: its counts are final. Fold them in by name.
    auto it = std::find_if(slots_.begin(), slots_.end(),
                           [&](const auto& s) { return s.first == p.gen.get(); });
    if (it != slots_.end()) {
      const std::vector<uint32_t>& map = it->second;
      for (const stats::PacketBytes* row : p.gen->hits) {
        for (size_t i = 0; i < map.size(); ++i) {
          if (map[i] == kNoSlot) continue;
          carried_[map[i]].packets += row[i].packets.get();
          carried_[map[i]].bytes += row[i].bytes.get();
        }
      }
      slots_.erase(it);
    }
    done.push_back(Retired{p.gen->number, ms_since(p.since)});
    retiring_.erase(retiring_.begin());
  }
  return done;
}

std::vector<std::pair<std::string, stats::Totals>> RuleStore::rule_totals(
    std::vector<uint64_t>* per_worker) const {
  std::vector<stats::Totals> totals = carried_;
  const size_t nw = workers();
  if (per_worker != nullptr) per_worker->assign(names_.size() * nw, 0);
  for (const auto& [gen, map] : slots_) {
    for (size_t w = 0; w < gen->hits.size(); ++w) {
      const stats::PacketBytes* row = gen->hits[w];
      for (size_t i = 0; i < map.size(); ++i) {
        if (map[i] == kNoSlot) continue;
        const uint64_t packets = row[i].packets.get();
        totals[map[i]].packets += packets;
        totals[map[i]].bytes += row[i].bytes.get();
        if (per_worker != nullptr && w < nw) (*per_worker)[map[i] * nw + w] += packets;
      }
    }
  }
  std::vector<std::pair<std::string, stats::Totals>> out;
  out.reserve(names_.size());
  for (size_t i = 0; i < names_.size(); ++i) out.emplace_back(names_[i], totals[i]);
  return out;
}

}  // namespace sluice::flow
