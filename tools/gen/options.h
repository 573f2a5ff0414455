#pragma once
// sluice-gen's command line: sluice-gen [EAL options] -- [options]

#include <cstdint>
#include <string>
#include <vector>

#include "lib/sys/result.h"
#include "tools/gen/packets.h"

namespace sluice::gen {

enum class Mode : uint8_t { kTxOnly, kFlowGen, kPcap, kMalformed, kRxOnly };
std::string_view mode_name(Mode m) noexcept;

inline constexpr int kNoPort = -1;
inline constexpr int kDefaultPort = -2;  // resolved once the ports are known

struct Options {
  std::vector<std::string> eal_args;  // argv[0] first
  Mode mode = Mode::kTxOnly;
  int tx_port = kDefaultPort;
  int rx_port = kDefaultPort;
  double rate_pps = 0;  // 0: as fast as the port takes them
  double duration_s = 0;
  uint64_t count = 0;
  unsigned burst = 32;
  unsigned rx_queues = 1;  // RX queues of the receiving port, all polled
  FlowSpec flow;
  std::string pcap;
  double malformed_share = 0.1;
  double stats_period_s = 0;
  std::string json_out;
  double drain_s = 0.5;
  double start_delay_s = 0;
  double link_timeout_s = 10;
  bool hold = false;
  bool tx_retry = false;
  double max_lag_us = 0;   // 0: a late paced loop catches up in full
  std::string start_file;  // send only once this file exists
  uint32_t mbufs = 8191;
  bool help = false;
  bool version = false;
};

Result<Options> parse_options(int argc, char** argv);
std::string usage(const std::string& argv0);

}  // namespace sluice::gen
