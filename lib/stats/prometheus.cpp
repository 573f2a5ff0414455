#include "lib/stats/prometheus.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

namespace sluice::stats {

namespace {

constexpr int kPollMs = 200;

void family(std::string& o, const char* name, const char* type, const char* help) {
  o += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

std::string label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

std::string to_prometheus(const Snapshot& s) {
  std::string o;
  family(o, "sluice_uptime_seconds", "gauge", "Seconds since sluice started forwarding.");
  o += fmt::format("sluice_uptime_seconds {:.3f}\n", s.uptime_s);
  struct PortMetric {
    const char* name;
    const char* help;
    uint64_t PortSnapshot::*field;
  };
  const PortMetric port_metrics[] = {
      {"sluice_port_rx_packets_total", "Packets received by the port.", &PortSnapshot::rx_packets},
      {"sluice_port_rx_bytes_total", "Bytes received by the port.", &PortSnapshot::rx_bytes},
      {"sluice_port_tx_packets_total", "Packets sent by the port.", &PortSnapshot::tx_packets},
      {"sluice_port_tx_bytes_total", "Bytes sent by the port.", &PortSnapshot::tx_bytes},
      {"sluice_port_rx_missed_total", "Packets the NIC dropped for lack of descriptors.",
       &PortSnapshot::rx_missed},
      {"sluice_port_rx_nombuf_total", "RX mbuf allocation failures.", &PortSnapshot::rx_nombuf},
      {"sluice_port_tx_errors_total", "Packets the port failed to send.", &PortSnapshot::tx_errors},
  };
  for (const auto& m : port_metrics) {
    family(o, m.name, "counter", m.help);
    for (const auto& p : s.ports) {
      o += fmt::format("{}{{port=\"{}\"}} {}\n", m.name, label(p.name), p.*m.field);
    }
  }
  family(o, "sluice_drops_total", "counter", "Packets dropped, by reason.");
  for (size_t d = 0; d < kDropCount; ++d) {
    o += fmt::format("sluice_drops_total{{reason=\"{}\"}} {}\n", drop_name(static_cast<Drop>(d)),
                     s.drops[d]);
  }
  family(o, "sluice_rule_packets_total", "counter", "Packets that matched a rule.");
  for (const auto& [name, t] : s.rules) {
    o += fmt::format("sluice_rule_packets_total{{rule=\"{}\"}} {}\n", label(name), t.packets);
  }
  family(o, "sluice_rule_bytes_total", "counter", "Bytes that matched a rule.");
  for (const auto& [name, t] : s.rules) {
    o += fmt::format("sluice_rule_bytes_total{{rule=\"{}\"}} {}\n", label(name), t.bytes);
  }
  family(o, "sluice_default_packets_total", "counter", "Packets that matched no rule.");
  o += fmt::format("sluice_default_packets_total {}\n", s.fallback.packets);
  family(o, "sluice_non_ip_packets_total", "counter", "Non-IP frames.");
  o += fmt::format("sluice_non_ip_packets_total {}\n", s.non_ip.packets);
  family(o, "sluice_mempool_mbufs", "gauge", "Mbufs in the pools, by state.");
  o += fmt::format("sluice_mempool_mbufs{{state=\"total\"}} {}\n", s.mempool.total);
  o += fmt::format("sluice_mempool_mbufs{{state=\"available\"}} {}\n", s.mempool.available);
  family(o, "sluice_reload_generation", "gauge", "Generation of the running flow rules.");
  o += fmt::format("sluice_reload_generation {}\n", s.reload.generation);
  family(o, "sluice_reloads_total", "counter", "Reloads of the flows file, by result.");
  o += fmt::format("sluice_reloads_total{{result=\"ok\"}} {}\n", s.reload.ok);
  o += fmt::format("sluice_reloads_total{{result=\"failed\"}} {}\n", s.reload.failed);
  family(o, "sluice_flow_cache_lookups_total", "counter",
         "Classifications by the workers' flow caches: hit, miss (rte_acl after a lookup), "
         "bypassed (rte_acl while the cache stands aside).");
  o += fmt::format("sluice_flow_cache_lookups_total{{result=\"hit\"}} {}\n", s.flow_cache.hits);
  o += fmt::format("sluice_flow_cache_lookups_total{{result=\"miss\"}} {}\n", s.flow_cache.misses);
  o += fmt::format("sluice_flow_cache_lookups_total{{result=\"bypassed\"}} {}\n",
                   s.flow_cache.bypassed);
  if (s.capture.enabled) {
    struct CaptureMetric {
      const char* name;
      const char* help;
      uint64_t value;
    };
    const CaptureMetric counters[] = {
        {"sluice_capture_packets_total", "Packets recorded in the capture store.",
         s.capture.packets},
        {"sluice_capture_bytes_total", "Frame bytes of the packets recorded.", s.capture.bytes},
        {"sluice_capture_chunks_total", "Chunks written to the capture store.", s.capture.chunks},
        {"sluice_capture_segments_total", "Capture segments closed.", s.capture.segments},
        {"sluice_capture_dropped_total",
         "Copies for capture not recorded (ring full, no buffer, write failed).",
         s.capture.dropped},
        {"sluice_capture_write_errors_total", "Chunk writes that failed.", s.capture.write_errors},
        {"sluice_capture_written_bytes_total", "Bytes of chunks written.", s.capture.bytes_written},
    };
    for (const auto& m : counters) {
      family(o, m.name, "counter", m.help);
      o += fmt::format("{} {}\n", m.name, m.value);
    }
    family(o, "sluice_capture_ring_entries", "gauge",
           "Copies waiting in the workers' capture hand-off rings, and their capacity.");
    o += fmt::format("sluice_capture_ring_entries{{state=\"used\"}} {}\n", s.capture.ring_used);
    o += fmt::format("sluice_capture_ring_entries{{state=\"capacity\"}} {}\n",
                     s.capture.ring_capacity);
  }
  family(o, "sluice_latency_nanoseconds", "gauge", "Processing latency percentiles.");
  o += fmt::format("sluice_latency_nanoseconds{{quantile=\"0.5\"}} {}\n", s.latency_ns.p50);
  o += fmt::format("sluice_latency_nanoseconds{{quantile=\"0.99\"}} {}\n", s.latency_ns.p99);
  o += fmt::format("sluice_latency_nanoseconds{{quantile=\"0.999\"}} {}\n", s.latency_ns.p999);
  o += fmt::format("sluice_latency_nanoseconds{{quantile=\"1\"}} {}\n", s.latency_ns.max);
  return o;
}

PrometheusServer::~PrometheusServer() {
  stop();
}

Result<void> PrometheusServer::start(const std::string& address) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos) {
    return Error{fmt::format("telemetry.prometheus: expected host:port, got \"{}\"", address)};
  }
  std::string host = address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  const int port = std::atoi(address.c_str() + colon + 1);
  sockaddr_storage ss{};
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof(*v4);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof(*v6);
  } else {
    return Error{fmt::format("telemetry.prometheus: \"{}\" is not an IPv4 or IPv6 address", host)};
  }
  fd_ = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0 || listen(fd_, 16) != 0) {
    std::string why = std::strerror(errno);
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    return Error{
        fmt::format("telemetry.prometheus: cannot listen on {}: {}; pick a free port "
                    "or remove the key",
                    address, why)};
  }
  sockaddr_storage bound{};
  socklen_t blen = sizeof(bound);
  getsockname(fd_, reinterpret_cast<sockaddr*>(&bound), &blen);
  port_ = ntohs(bound.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                           : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  thread_ = std::thread([this] { serve(); });
  return {};
}

void PrometheusServer::publish(std::string text) {
  std::lock_guard lock(mutex_);
  text_ = std::move(text);
}

void PrometheusServer::stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void PrometheusServer::serve() {
  while (!stop_.load()) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, kPollMs) <= 0) continue;
    int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    // Read the request line (bounded, with a timeout): only GET /metrics is served.
    char req[1024];
    ssize_t n = 0;
    pollfd cp{c, POLLIN, 0};
    if (poll(&cp, 1, 1000) > 0) n = ::recv(c, req, sizeof(req) - 1, 0);
    req[n > 0 ? n : 0] = '\0';
    std::string body, status = "200 OK";
    if (std::strncmp(req, "GET /metrics", 12) == 0) {
      std::lock_guard lock(mutex_);
      body = text_;
    } else {
      status = "404 Not Found";
      body = "sluice serves /metrics\n";
    }
    std::string resp = fmt::format(
        "HTTP/1.0 {}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n"
        "Connection: close\r\n\r\n{}",
        status, body.size(), body);
    size_t off = 0;
    while (off < resp.size()) {
      ssize_t w = ::send(c, resp.data() + off, resp.size() - off, MSG_NOSIGNAL);
      if (w <= 0) break;
      off += static_cast<size_t>(w);
    }
    ::close(c);
  }
}

}  // namespace sluice::stats
