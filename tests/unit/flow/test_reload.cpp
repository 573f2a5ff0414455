// lib/flow/reload: all or nothing, the reload counters, and when a trigger reloads at all.

#include "lib/flow/reload.h"

#include <rte_acl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>

#include <gtest/gtest.h>

#include "tests/unit/flow/flows_text.h"

namespace sluice::flow {
namespace {

using Kind = ReloadOutcome::Kind;

constexpr const char* kRules = R"(version: 1
rules:
  - name: web
    match: { proto: tcp, dst_port: 80 }
    action: forward
    to: a
)";
constexpr const char* kMoreRules = R"(version: 1
rules:
  - name: web
    match: { proto: tcp, dst_port: 80 }
    action: forward
    to: b
  - name: dns
    match: { proto: udp, dst_port: 53 }
    action: drop
)";

class ReloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int n = 0;
    name_ = "rl" + std::to_string(++n);
    dir_ = std::filesystem::temp_directory_path() /
           ("sluice-reload-" + std::to_string(getpid()) + "-" + name_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "flows.yaml").string();
    write(kRules);
    auto flows = config::load_flows(path_, test::test_appliance());
    ASSERT_TRUE(flows.ok()) << flows.error();
    auto s = RuleStore::create(std::make_shared<const config::Flows>(std::move(*flows)),
                               {SOCKET_ID_ANY}, SOCKET_ID_ANY, name_);
    ASSERT_TRUE(s.ok()) << s.error();
    store_ = std::move(*s);
    reloader_ = std::make_unique<Reloader>(*store_, test::test_appliance(), path_);
  }
  void TearDown() override {
    reloader_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  void write(const std::string& text) { std::ofstream(path_, std::ios::trunc) << text; }
  ReloadOutcome reload(Trigger t = Trigger::kSignal) {
    auto o = reloader_->reload(t);
    store_->poll();  // no reader is online: the replaced generation goes at once
    return o;
  }

  std::string name_;
  std::filesystem::path dir_;
  std::string path_;
  std::unique_ptr<RuleStore> store_;
  std::unique_ptr<Reloader> reloader_;
};

TEST_F(ReloadTest, ValidFileIsPublishedWithItsDiff) {
  write(kMoreRules);
  auto o = reload();
  EXPECT_EQ(o.kind, Kind::kApplied);
  EXPECT_EQ(o.generation, 2u);
  EXPECT_EQ(o.replaced, 1u);
  EXPECT_EQ(diff_line(*o.diff), "1 added, 0 removed, 1 changed (added: dns; changed: web)");
  EXPECT_EQ(store_->current().flows->rules.size(), 2u);
  const ReloadStats& s = reloader_->stats();
  EXPECT_EQ(s.generation, 2u);
  EXPECT_EQ(s.ok, 1u);
  EXPECT_EQ(s.failed, 0u);
  EXPECT_GE(o.build_ms, 0.0);
  // The whole attempt holds every phase (and what lies between them).
  EXPECT_GE(o.took_ms + 1e-6, o.parse_ms + o.build_ms + o.diff_ms + o.publish_ms);  // (rounding)
  EXPECT_GT(o.took_ms, 0.0);
}

TEST_F(ReloadTest, EveryKindOfBadFileKeepsTheRunningRules) {
  const Generation* running = store_->published()->load();
  struct Bad {
    const char* text;
    const char* where;  // file:line:col in the error, as a regex
  } bad[] = {
      {"version: 1\nrules:\n  - name: x\n    match: { proto: tcp\n",
       R"(flows\.yaml:\d+:\d+: invalid YAML)"},
      {"version: 1\nrules:\n  - name: x\n    action: drop\n    colour: red\n",
       R"(flows\.yaml:5:5: rules\[0\]: unknown key 'colour')"},
      {"version: 1\nrules:\n  - name: x\n    action: forward\n    to: nowhere\n",
       R"(flows\.yaml:5:9: rules\[0\]\.to: unknown port 'nowhere')"},
      {"version: 2\n", R"(flows\.yaml:1:10: version)"},
      {"version: 1\nrules:\n  - name: x\n    match: { dst: 10.0.0.1/8 }\n    action: drop\n",
       R"(flows\.yaml:4:19: .*host bits)"},
  };
  uint64_t failed = 0;
  for (const auto& b : bad) {
    write(b.text);
    auto o = reload();
    EXPECT_EQ(o.kind, Kind::kRejected) << b.text;
    EXPECT_TRUE(std::regex_search(o.error, std::regex(b.where))) << o.error;
    EXPECT_EQ(o.generation, 1u);
    EXPECT_EQ(store_->published()->load(), running);
    EXPECT_EQ(reloader_->stats().failed, ++failed);
    EXPECT_EQ(reloader_->stats().last_error, o.error);
    EXPECT_EQ(reloader_->stats().ok, 0u);
  }
  std::filesystem::remove(path_);
  auto o = reload();
  EXPECT_EQ(o.kind, Kind::kRejected);
  EXPECT_NE(o.error.find("cannot read"), std::string::npos) << o.error;
  EXPECT_EQ(store_->published()->load(), running);
}

TEST_F(ReloadTest, AclBuildFailureIsRejectedAndCanBeRetried) {
  // Take the ACL context name the next build will use, so rte_acl refuses it.
  rte_acl_param p{};
  const std::string taken = name_ + "-2-v4";
  p.name = taken.c_str();
  p.socket_id = SOCKET_ID_ANY;
  p.rule_size = RTE_ACL_RULE_SZ(1);
  p.max_rule_num = 1;
  rte_acl_ctx* blocker = rte_acl_create(&p);
  ASSERT_NE(blocker, nullptr);
  write(kMoreRules);
  auto o = reload();
  EXPECT_EQ(o.kind, Kind::kRejected);
  EXPECT_NE(o.error.find("already exists"), std::string::npos) << o.error;
  EXPECT_EQ(store_->generation(), 1u);
  EXPECT_EQ(reloader_->stats().failed, 1u);
  rte_acl_free(blocker);
  // The same bytes again: a build failure may pass on retry, so an explicit trigger retries.
  o = reload(Trigger::kTelemetry);
  EXPECT_EQ(o.kind, Kind::kApplied) << o.error;
  EXPECT_EQ(o.generation, 2u);
}

TEST_F(ReloadTest, WatcherSkipsBytesAlreadyTriedAndExplicitTriggersDoNotCountTwice) {
  // The startup file's bytes are the running generation's: a touch reloads nothing.
  EXPECT_EQ(reload(Trigger::kFileChange).kind, Kind::kUnchanged);
  write(kMoreRules);
  auto o = reload(Trigger::kFileChange);
  EXPECT_EQ(o.kind, Kind::kApplied);
  EXPECT_EQ(reload(Trigger::kFileChange).kind, Kind::kUnchanged);
  // SIGHUP after the watcher applied these bytes: reported again, not a second reload.
  o = reload(Trigger::kSignal);
  EXPECT_EQ(o.kind, Kind::kApplied);
  EXPECT_TRUE(o.repeated);
  EXPECT_EQ(o.generation, 2u);
  EXPECT_EQ(reloader_->stats().ok, 1u);

  // The same for a bad file: counted once.
  write("version: 1\nrules: [\n");
  EXPECT_EQ(reload(Trigger::kFileChange).kind, Kind::kRejected);
  o = reload(Trigger::kTelemetry);
  EXPECT_EQ(o.kind, Kind::kRejected);
  EXPECT_TRUE(o.repeated);
  EXPECT_EQ(reloader_->stats().failed, 1u);

  // Explicit triggers on their own always reload, even unchanged bytes.
  write(kRules);
  EXPECT_EQ(reload(Trigger::kSignal).generation, 3u);
  o = reload(Trigger::kSignal);
  EXPECT_EQ(o.kind, Kind::kApplied);
  EXPECT_FALSE(o.repeated);
  EXPECT_EQ(o.generation, 4u);
  EXPECT_TRUE(o.diff->empty());

  // A file that is gone when the watcher's delay ends is waited for, not counted.
  std::filesystem::remove(path_);
  EXPECT_EQ(reload(Trigger::kFileChange).kind, Kind::kUnchanged);
  EXPECT_EQ(reloader_->stats().failed, 1u);
}

TEST_F(ReloadTest, GracePeriodThatCannotEndBoundsTheGenerationsKept) {
  // A reader that is online and never quiescent (a stalled worker): no replaced generation can
  // be freed, so after kMaxRetiring of them reloads are refused and the rules stay.
  rte_rcu_qsbr* q = store_->qsbr();
  rte_rcu_qsbr_thread_online(q, 0);
  for (size_t i = 0; i < RuleStore::kMaxRetiring; ++i) {
    write(i % 2 ? kRules : kMoreRules);
    ASSERT_EQ(reload().kind, Kind::kApplied) << i;
  }
  EXPECT_EQ(store_->retiring(), RuleStore::kMaxRetiring);
  const Generation* running = store_->published()->load();
  write(kMoreRules + std::string("  - name: extra\n    match: { proto: udp }\n    action: drop\n"));
  auto o = reload();
  EXPECT_EQ(o.kind, Kind::kRejected);
  EXPECT_NE(o.error.find("reload refused: 4 replaced rule generations are still in their grace "
                         "period"),
            std::string::npos)
      << o.error;
  EXPECT_EQ(store_->published()->load(), running);
  EXPECT_EQ(store_->retiring(), RuleStore::kMaxRetiring);
  EXPECT_EQ(reloader_->stats().failed, 1u);
  // The reader comes back: the old generations go and reloads work again.
  rte_rcu_qsbr_quiescent(q, 0);
  store_->poll();
  EXPECT_EQ(store_->retiring(), 0u);
  EXPECT_EQ(reload().kind, Kind::kApplied);
  rte_rcu_qsbr_thread_offline(q, 0);
  store_->poll();
}

}  // namespace
}  // namespace sluice::flow
