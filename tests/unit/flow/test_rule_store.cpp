// lib/flow/rule_store: generations published with RCU, per-rule counts carried over by name,
// the old generation freed only after every online reader passed a quiescent state.

#include "lib/flow/rule_store.h"

#include <rte_rcu_qsbr.h>

#include <atomic>
#include <map>
#include <thread>

#include <gtest/gtest.h>

#include "tests/unit/flow/flows_text.h"

namespace sluice::flow {
namespace {

using test::flows_text;

std::unique_ptr<RuleStore> store_of(const std::string& rules, size_t workers,
                                    const std::string& name) {
  auto s = RuleStore::create(flows_text(rules), std::vector<int>(workers, SOCKET_ID_ANY),
                             SOCKET_ID_ANY, name);
  if (!s) throw std::runtime_error(s.error());
  return std::move(*s);
}

void publish(RuleStore& s, const std::string& rules) {
  auto b = s.build(flows_text(rules));
  if (!b) throw std::runtime_error(b.error());
  s.publish(std::move(b->gen));
}

size_t index_of(const Generation& g, const std::string& rule) {
  for (size_t i = 0; i < g.flows->rules.size(); ++i) {
    if (g.flows->rules[i].name == rule) return i;
  }
  throw std::runtime_error("no rule " + rule);
}

// What a worker does for n packets of len bytes that hit `rule` in generation g.
void hit(const Generation& g, unsigned worker, const std::string& rule, uint64_t n,
         uint64_t len = 100) {
  for (uint64_t i = 0; i < n; ++i) g.hits[worker][index_of(g, rule)].add(len);
}

std::vector<std::string> listed(const RuleStore& s) {
  std::vector<std::string> v;
  for (const auto& [name, t] : s.rule_totals()) v.push_back(name);
  return v;
}

std::map<std::string, uint64_t> packets(const RuleStore& s) {
  std::map<std::string, uint64_t> m;
  for (const auto& [name, t] : s.rule_totals()) m[name] = t.packets;
  return m;
}

std::string drops(std::initializer_list<const char*> names) {
  std::string r = "rules:\n";
  for (const char* n : names) r += std::string("  - name: ") + n + "\n    action: drop\n";
  return r;
}

TEST(RuleStore, CountsCarryOverByNameAndRemovedRulesStayUntilTheNextReload) {
  auto s = store_of(drops({"a", "b", "c"}), 2, "rs-carry");
  const Generation& g1 = s->current();
  hit(g1, 0, "a", 1);
  hit(g1, 1, "b", 2);
  hit(g1, 0, "c", 3);

  // c changes but keeps its name; a goes; d comes.
  publish(*s,
          "rules:\n  - name: b\n    action: drop\n  - name: c\n    match: { proto: udp }\n"
          "    action: drop\n  - name: d\n    action: drop\n");
  EXPECT_EQ(s->generation(), 2u);
  EXPECT_EQ(listed(*s), (std::vector<std::string>{"b", "c", "d", "a"}));
  EXPECT_EQ(packets(*s), (std::map<std::string, uint64_t>{{"a", 1}, {"b", 2}, {"c", 3}, {"d", 0}}));

  // A worker still mid-burst on generation 1 counts there; the counts land on the same names.
  ASSERT_EQ(s->retiring(), 1u);
  hit(g1, 1, "a", 5);
  hit(g1, 0, "b", 1);
  EXPECT_EQ(packets(*s)["a"], 6u);
  EXPECT_EQ(packets(*s)["b"], 3u);

  // No reader is online: the grace period is over at once. Nothing is lost or counted twice.
  auto retired = s->poll();
  ASSERT_EQ(retired.size(), 1u);
  EXPECT_EQ(retired[0].number, 1u);
  EXPECT_EQ(s->retiring(), 0u);
  EXPECT_EQ(packets(*s), (std::map<std::string, uint64_t>{{"a", 6}, {"b", 3}, {"c", 3}, {"d", 0}}));

  hit(s->current(), 0, "b", 10);
  hit(s->current(), 1, "d", 4);
  const auto totals = s->rule_totals();
  EXPECT_EQ(totals[0].second.bytes, 1300u);  // b: 13 packets of 100 bytes

  // The next reload drops a from the list; b and c become the removed ones.
  publish(*s, drops({"d"}));
  s->poll();
  EXPECT_EQ(listed(*s), (std::vector<std::string>{"d", "b", "c"}));
  EXPECT_EQ(packets(*s), (std::map<std::string, uint64_t>{{"b", 13}, {"c", 3}, {"d", 4}}));

  // A name that comes back after two reloads starts from zero.
  publish(*s, drops({"d", "a"}));
  s->poll();
  EXPECT_EQ(packets(*s), (std::map<std::string, uint64_t>{{"a", 0}, {"d", 4}}));
}

// The common reload: every rule keeps its name and place (the slot table stays as it is);
// counts, in-flight ones on the replaced generation too, stay on their names, and a reorder
// after it still follows the names.
TEST(RuleStore, AReloadThatKeepsEveryNameInPlaceKeepsItsCounts) {
  auto s = store_of(drops({"a", "b"}), 1, "rs-same");
  const Generation& g1 = s->current();
  hit(g1, 0, "a", 1);
  publish(*s,
          "rules:\n  - name: a\n    match: { proto: udp }\n    action: drop\n"
          "  - name: b\n    action: drop\n");
  hit(g1, 0, "b", 2);  // a worker still mid-burst on generation 1
  hit(s->current(), 0, "a", 4);
  EXPECT_EQ(listed(*s), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(packets(*s), (std::map<std::string, uint64_t>{{"a", 5}, {"b", 2}}));
  ASSERT_EQ(s->poll().size(), 1u);
  EXPECT_EQ(packets(*s), (std::map<std::string, uint64_t>{{"a", 5}, {"b", 2}}));
  publish(*s, drops({"a", "b"}));  // again in place, with generation 1's counts carried
  ASSERT_EQ(s->poll().size(), 1u);
  EXPECT_EQ(packets(*s), (std::map<std::string, uint64_t>{{"a", 5}, {"b", 2}}));

  publish(*s, drops({"b", "a"}));
  hit(s->current(), 0, "b", 1);
  s->poll();
  EXPECT_EQ(listed(*s), (std::vector<std::string>{"b", "a"}));
  EXPECT_EQ(packets(*s), (std::map<std::string, uint64_t>{{"a", 5}, {"b", 3}}));
}

TEST(RuleStore, OldGenerationIsFreedOnlyAfterEveryOnlineReaderIsQuiescent) {
  auto s = store_of(drops({"a"}), 1, "rs-grace");
  rte_rcu_qsbr_thread_online(s->qsbr(), 0);  // this thread plays worker 0
  const Generation* g1 = s->published()->load(std::memory_order_acquire);

  publish(*s, drops({"a", "b"}));
  EXPECT_NE(s->published()->load(), g1);
  EXPECT_TRUE(s->poll().empty()) << "freed while a reader may still hold it";
  EXPECT_EQ(s->retiring(), 1u);
  hit(*g1, 0, "a", 2);  // still valid: the reader has not reported

  rte_rcu_qsbr_quiescent(s->qsbr(), 0);
  auto retired = s->poll();
  ASSERT_EQ(retired.size(), 1u);
  EXPECT_GE(retired[0].grace_ms, 0.0);
  EXPECT_EQ(packets(*s)["a"], 2u);

  // Several replaced generations wait together and go together.
  publish(*s, drops({"a"}));
  publish(*s, drops({"b"}));
  EXPECT_EQ(s->retiring(), 2u);
  EXPECT_TRUE(s->poll().empty());
  rte_rcu_qsbr_quiescent(s->qsbr(), 0);
  EXPECT_EQ(s->poll().size(), 2u);

  rte_rcu_qsbr_thread_offline(s->qsbr(), 0);  // an offline reader never holds a grace period
  publish(*s, drops({"c"}));
  EXPECT_EQ(s->poll().size(), 1u);
}

// Two reader threads count into whatever generation is published while the control plane
// replaces it 300 times, the rule moving between indices: the total equals what they counted.
TEST(RuleStore, ConcurrentReadersLoseAndDuplicateNothingAcrossReloads) {
  const std::string first = drops({"x", "y", "z"});
  const std::string second = drops({"z", "y", "x"});
  auto s = store_of(first, 2, "rs-race");
  std::atomic<bool> stop{false};
  uint64_t counted[2] = {0, 0};
  auto reader = [&](unsigned id) {
    rte_rcu_qsbr_thread_online(s->qsbr(), id);
    uint64_t n = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      for (int burst = 0; burst < 16; ++burst) {
        const Generation* g = s->published()->load(std::memory_order_acquire);
        const size_t x = g->flows->rules.front().name == "x" ? 0 : 2;
        g->hits[id][x].add(64);
        ++n;
      }
      rte_rcu_qsbr_quiescent(s->qsbr(), id);
      std::this_thread::yield();
    }
    rte_rcu_qsbr_thread_offline(s->qsbr(), id);
    counted[id] = n;
  };
  std::thread r0(reader, 0), r1(reader, 1);
  for (int i = 0; i < 300; ++i) {
    publish(*s, i % 2 == 0 ? second : first);
    s->poll();
  }
  stop = true;
  r0.join();
  r1.join();
  s->poll();
  EXPECT_EQ(s->retiring(), 0u);
  EXPECT_EQ(s->generation(), 301u);
  const auto totals = s->rule_totals();
  ASSERT_EQ(totals[0].first, "x");  // the last one published is `first`
  EXPECT_GT(counted[0] + counted[1], 0u);
  EXPECT_EQ(totals[0].second.packets, counted[0] + counted[1]);
  EXPECT_EQ(totals[0].second.bytes, 64 * (counted[0] + counted[1]));
  EXPECT_EQ(packets(*s)["y"], 0u);
}

TEST(RuleStore, EmptyRuleSetsStillGiveEveryWorkerARow) {
  auto s = store_of("rules: []\n", 3, "rs-empty");
  ASSERT_EQ(s->current().hits.size(), 3u);
  for (auto* row : s->current().hits) EXPECT_NE(row, nullptr);
  EXPECT_TRUE(s->rule_totals().empty());
}

}  // namespace
}  // namespace sluice::flow
