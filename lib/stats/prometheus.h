#pragma once
// Prometheus /metrics: the exposition text of a snapshot, and an HTTP endpoint (libmicrohttpd)
// that serves the latest copy from its own threads. The main lcore renders the text
// (publish()); the server never touches counters, ports or pools itself.

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "lib/stats/snapshot.h"
#include "lib/sys/result.h"

struct MHD_Daemon;

namespace sluice::stats {

// Prometheus text format 0.0.4 of a snapshot (sluice_* metric families; promtool-clean).
std::string to_prometheus(const Snapshot& s);

// The Content-Type of what /metrics answers.
inline constexpr const char* kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

// GET /metrics on "host:port". libmicrohttpd's event loop on a small thread pool, with a
// connection limit and an idle timeout: a slow or stuck client costs one connection slot until
// the timeout, never a thread, and stop() returns promptly whatever the clients do.
class PrometheusServer {
 public:
  static constexpr unsigned kThreads = 2;
  static constexpr unsigned kConnectionLimit = 128;
  static constexpr unsigned kTimeoutS = 5;  // a connection idle this long is closed

  PrometheusServer() = default;
  ~PrometheusServer();
  PrometheusServer(const PrometheusServer&) = delete;
  PrometheusServer& operator=(const PrometheusServer&) = delete;

  // Binds "host:port" ("[v6]:port" for IPv6; port 0 picks a free one) and starts serving.
  // Errors say what to change.
  Result<void> start(const std::string& address);
  // The text the next scrapes get (until publish() is first called, they get 503).
  void publish(std::string text);
  // Closes every connection and joins the server's threads. Idempotent.
  void stop();
  uint16_t port() const { return port_; }
  // What is served now (null before the first publish()).
  std::shared_ptr<const std::string> text() const;

 private:
  MHD_Daemon* daemon_ = nullptr;
  uint16_t port_ = 0;
  mutable std::mutex mutex_;
  std::shared_ptr<const std::string> text_;
};

}  // namespace sluice::stats
