#pragma once
// What a reload changes, by rule name: rules added, removed and changed, and the non_ip and
// default actions. The reload log line and `sluice --check --diff OLD.yaml` print it.

#include <string>
#include <vector>

#include "lib/config/config.h"

namespace sluice::flow {

struct RuleChange {
  std::string name;
  std::vector<std::string> what;  // "priority 100 -> 200", "to lan -> dmz", ... (kChanges)
};

struct FlowsDiff {
  std::vector<std::string> added;    // in the new file's order
  std::vector<std::string> removed;  // in the old file's order
  std::vector<RuleChange> changed;   // in the new file's order
  // non_ip and default changes, and "order": surviving rules appear in another order (which
  // decides ties between equal priorities).
  std::vector<std::string> other;
  bool empty() const {
    return added.empty() && removed.empty() && changed.empty() && other.empty();
  }
};

// How much a diff says about a changed rule: its name only (what a reload logs and answers,
// cheap for 100k changed rules), or also each change in words (`--check --diff`).
enum class DiffDetail { kNames, kChanges };

// Port ids in the flows are named through app's ports.
FlowsDiff diff_flows(const config::Flows& before, const config::Flows& after,
                     const config::Appliance& app, DiffDetail detail = DiffDetail::kChanges);

// "2 added, 1 removed, 1 changed", or "no rule changes" (non_ip, default, order: "0 added, ...").
std::string diff_counts(const FlowsDiff& d);

// One line for the log: "2 added, 1 removed, 1 changed (added: a, b; removed: c; changed: d)"
// or "no rule changes". Name lists are cut after max_names with "... (+N more)".
std::string diff_line(const FlowsDiff& d, size_t max_names = 8);

// Every difference on its own line: "+ a", "- c", "~ d: priority 100 -> 200", "* default: ...".
std::string diff_text(const FlowsDiff& d);

}  // namespace sluice::flow
