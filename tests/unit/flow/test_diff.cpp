// lib/flow/diff: what a reload changes, as the log line and `sluice --check --diff` print it.

#include "lib/flow/diff.h"

#include <gtest/gtest.h>

#include "tests/unit/flow/flows_text.h"

namespace sluice::flow {
namespace {

using test::flows_text;
using test::test_appliance;

constexpr const char* kWeb = R"(  - name: web
    priority: 10
    match: { proto: tcp, dst: 10.0.0.0/8, dst_port: 80 }
    action: forward
    to: a
)";
constexpr const char* kDns = R"(  - name: dns
    match: { proto: udp, dst_port: 53 }
    action: forward
    to: b
    mirror: c
)";
constexpr const char* kTelnet = R"(  - name: telnet
    match: { proto: tcp, dst_port: 23 }
    action: drop
)";
const std::string kOld = std::string("rules:\n") + kWeb + kDns + kTelnet;

TEST(Diff, IdenticalFilesHaveNoChanges) {
  auto d = diff_flows(*flows_text(kOld), *flows_text(kOld), test_appliance());
  EXPECT_TRUE(d.empty());
  EXPECT_EQ(diff_line(d), "no rule changes");
  EXPECT_EQ(diff_text(d), "");
}

TEST(Diff, AddedRemovedChangedByName) {
  auto after = flows_text(R"(rules:
  - name: web
    priority: 20
    match: { proto: tcp, dst: 10.1.0.0/16, dst_port: 80-81 }
    action: forward
    to: b
  - name: dns
    match: { proto: udp, dst_port: 53 }
    action: forward
    to: b
  - name: ssh
    match: { proto: tcp, dst_port: 22 }
    action: drop
)");
  auto d = diff_flows(*flows_text(kOld), *after, test_appliance());
  EXPECT_EQ(d.added, std::vector<std::string>{"ssh"});
  EXPECT_EQ(d.removed, std::vector<std::string>{"telnet"});
  ASSERT_EQ(d.changed.size(), 2u);
  EXPECT_EQ(d.changed[0].name, "web");
  EXPECT_EQ(d.changed[0].what,
            (std::vector<std::string>{"priority 10 -> 20", "dst 10.0.0.0/8 -> 10.1.0.0/16",
                                      "dst_port 80 -> 80-81", "forward to a -> forward to b"}));
  EXPECT_EQ(d.changed[1].name, "dns");
  EXPECT_EQ(d.changed[1].what, std::vector<std::string>{"mirror c -> any"});
  EXPECT_TRUE(d.other.empty());
  EXPECT_EQ(diff_line(d),
            "1 added, 1 removed, 2 changed (added: ssh; removed: telnet; changed: web, dns)");
  EXPECT_EQ(diff_text(d),
            "+ ssh\n- telnet\n"
            "~ web: priority 10 -> 20, dst 10.0.0.0/8 -> 10.1.0.0/16, dst_port 80 -> 80-81, "
            "forward to a -> forward to b\n"
            "~ dns: mirror c -> any\n");
}

TEST(Diff, PolicyActionsAndOrderOfSurvivingRules) {
  auto after = flows_text(std::string("rules:\n") + kTelnet + kWeb + kDns,
                          "non_ip: { action: forward, to: c }\n");
  auto d = diff_flows(*flows_text(kOld), *after, test_appliance());
  EXPECT_TRUE(d.added.empty() && d.removed.empty() && d.changed.empty());
  EXPECT_EQ(d.other, (std::vector<std::string>{"non_ip: drop -> forward to c",
                                               "order of the surviving rules changed"}));
  EXPECT_EQ(diff_line(d),
            "0 added, 0 removed, 0 changed (non_ip: drop -> forward to c; order of the surviving "
            "rules changed)");
}

TEST(Diff, MatchFieldsAppearingAndLongNameListsAreCut) {
  std::string many = "rules:\n";
  for (int i = 0; i < 12; ++i) many += "  - name: r" + std::to_string(i) + "\n    action: drop\n";
  auto d = diff_flows(*flows_text("rules: []\n"), *flows_text(many), test_appliance());
  EXPECT_EQ(d.added.size(), 12u);
  EXPECT_EQ(diff_line(d, 3), "12 added, 0 removed, 0 changed (added: r0, r1, r2, ... (+9 more))");

  auto before = flows_text("rules:\n  - name: x\n    action: drop\n");
  auto after = flows_text(
      "rules:\n  - name: x\n    match: { in_port: a, proto: 47, src: \"2001:db8::1\" }\n"
      "    action: drop\n");
  auto c = diff_flows(*before, *after, test_appliance());
  ASSERT_EQ(c.changed.size(), 1u);
  EXPECT_EQ(c.changed[0].what, (std::vector<std::string>{"in_port any -> a", "proto any -> gre",
                                                         "src any -> 2001:db8::1"}));
}

// Rules in the same places pair up by position, the rest by name: a change behind a shared
// head, a swap after it, a removal that keeps the order.
TEST(Diff, RulesInTheSamePlacesThenTheRest) {
  auto rule = [](const char* name, const char* action) {
    return std::string("  - name: ") + name + "\n    action: " + action + "\n";
  };
  const auto before = flows_text("rules:\n" + rule("a", "drop") + rule("b", "drop") +
                                 rule("c", "drop") + rule("d", "drop"));
  auto swapped =
      diff_flows(*before,
                 *flows_text("rules:\n" + rule("a", "drop") + rule("b", "forward\n    to: a") +
                             rule("d", "drop") + rule("c", "drop")),
                 test_appliance());
  EXPECT_EQ(diff_line(swapped),
            "0 added, 0 removed, 1 changed (changed: b; order of the surviving rules changed)");
  auto removed = diff_flows(*before,
                            *flows_text("rules:\n" + rule("a", "drop") + rule("c", "drop") +
                                        rule("d", "forward\n    to: b") + rule("e", "drop")),
                            test_appliance());
  EXPECT_EQ(diff_line(removed), "1 added, 1 removed, 1 changed (added: e; removed: b; changed: d)");
}

// A reload asks only which rules changed (DiffDetail::kNames, no words formatted for 100k
// changed rules): the same rules as the full diff, for a change of any one field, and none
// for a rule that did not change.
TEST(Diff, NamesOnlyListsTheSameChangedRules) {
  const std::string base =
      "  - name: x\n    priority: 5\n    match: { in_port: a, proto: tcp, src: 10.0.0.0/8, "
      "dst: 192.168.0.0/16, src_port: 1000-2000, dst_port: 80 }\n    action: forward\n    to: "
      "b\n    mirror: c\n";
  auto with = [&](const std::string& from, const std::string& to) {
    std::string r = base;
    const size_t at = r.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return r.replace(at, from.size(), to);
  };
  const std::vector<std::string> variants = {
      base,  // unchanged
      with("priority: 5", "priority: 6"),
      with("in_port: a, ", ""),
      with("proto: tcp", "proto: udp"),
      with("src: 10.0.0.0/8", "src: 10.0.0.0/9"),
      with("dst: 192.168.0.0/16", "dst: 192.168.0.1"),
      with("src_port: 1000-2000", "src_port: 1000-2001"),
      with("dst_port: 80", "dst_port: 81"),
      with("to: b", "to: a"),
      with("action: forward\n    to: b\n", "action: drop\n"),
      with("    mirror: c\n", ""),
  };
  const auto before = flows_text("rules:\n" + base);
  auto check = [&](const config::Flows& after, bool changed) {
    const FlowsDiff full = diff_flows(*before, after, test_appliance(), DiffDetail::kChanges);
    const FlowsDiff names = diff_flows(*before, after, test_appliance(), DiffDetail::kNames);
    EXPECT_EQ(full.changed.size(), changed ? 1u : 0u);
    ASSERT_EQ(names.changed.size(), full.changed.size());
    for (const RuleChange& c : names.changed) EXPECT_TRUE(c.what.empty()) << c.name;
    EXPECT_EQ(diff_line(names), diff_line(full));
  };
  for (const std::string& v : variants) {
    SCOPED_TRACE(v);
    check(*flows_text("rules:\n" + v), v != base);
  }
  config::Flows captured = *before;  // (capture: true needs a capture section to parse)
  captured.rules[0].capture = true;
  check(captured, true);
}

}  // namespace
}  // namespace sluice::flow
