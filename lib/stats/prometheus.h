#pragma once
// A minimal HTTP endpoint serving /metrics in the Prometheus text format, on its own
// control-plane thread. The main lcore renders the text (publish()); the server only serves
// the latest copy, so it never touches counters, ports or pools itself.

#include <atomic>
#include <mutex>
#include <string>
#include <thread>

#include "lib/stats/snapshot.h"
#include "lib/sys/result.h"

namespace sluice::stats {

// Prometheus exposition text of a snapshot (sluice_* metric families).
std::string to_prometheus(const Snapshot& s);

class PrometheusServer {
 public:
  PrometheusServer() = default;
  ~PrometheusServer();
  PrometheusServer(const PrometheusServer&) = delete;
  PrometheusServer& operator=(const PrometheusServer&) = delete;

  // Binds "host:port" and starts serving. Errors say what to change.
  Result<void> start(const std::string& address);
  void publish(std::string text);
  void stop();
  uint16_t port() const { return port_; }

 private:
  void serve();
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mutex_;
  std::string text_;
};

}  // namespace sluice::stats
