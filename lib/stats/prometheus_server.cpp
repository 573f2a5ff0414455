#include "lib/stats/prometheus.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>
#include <microhttpd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <string_view>
#include <utility>

#include "lib/stats/on_demand.h"

namespace sluice::stats {

// The HTTP side of /metrics: libmicrohttpd serves what publish() left (prometheus.cpp renders it).

namespace {

struct Page {
  unsigned status;
  const char* body;
};

enum MHD_Result queue(MHD_Connection* c, unsigned status, MHD_Response* r, const char* type) {
  if (r == nullptr) return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  if (status == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(r, "Allow", "GET, HEAD");
  if (status == MHD_HTTP_SERVICE_UNAVAILABLE) MHD_add_response_header(r, "Retry-After", "1");
  const enum MHD_Result ok = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ok;
}

enum MHD_Result answer_page(MHD_Connection* c, Page p) {
  return queue(c, p.status,
               MHD_create_response_from_buffer(std::strlen(p.body), const_cast<char*>(p.body),
                                               MHD_RESPMEM_PERSISTENT),
               "text/plain; charset=utf-8");
}

// Called once the request's headers are in: a GET has no body to wait for, so it is answered at
// once (a body that some other method sends is discarded with the connection).
enum MHD_Result answer(void* cls, MHD_Connection* c, const char* url, const char* method,
                       const char* /*version*/, const char* /*upload*/, size_t* /*upload_size*/,
                       void** /*request*/) {
  const auto& server = *static_cast<const PrometheusServer*>(cls);
  if (std::strcmp(url, "/metrics") != 0) {
    return answer_page(c, {MHD_HTTP_NOT_FOUND, "sluice serves /metrics\n"});
  }
  if (std::strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
      std::strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
    return answer_page(c, {MHD_HTTP_METHOD_NOT_ALLOWED, "/metrics answers GET and HEAD\n"});
  }
  on_demand().await_fresh();  // the control loop renders the text when someone asks
  auto text = server.text();
  if (text == nullptr || text->empty()) {
    return answer_page(c, {MHD_HTTP_SERVICE_UNAVAILABLE, "sluice has no metrics yet\n"});
  }
  // The response reads the published text in place and holds it until MHD is done with it.
  auto* hold = new std::shared_ptr<const std::string>(std::move(text));
  MHD_Response* r = MHD_create_response_from_buffer_with_free_callback_cls(
      (*hold)->size(), const_cast<char*>((*hold)->data()),
      [](void* p) { delete static_cast<std::shared_ptr<const std::string>*>(p); }, hold);
  if (r == nullptr) delete hold;
  return queue(c, MHD_HTTP_OK, r, kPrometheusContentType);
}

// "host:port" as a socket address, or what is wrong with it.
Result<std::pair<sockaddr_storage, socklen_t>> parse_address(const std::string& address) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos) {
    return Error{fmt::format("telemetry.prometheus: expected host:port, got \"{}\"", address)};
  }
  std::string host = address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string_view port_text = std::string_view(address).substr(colon + 1);
  unsigned port = 0;
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc{} || end != port_text.data() + port_text.size() ||
      port > 65535) {
    return Error{fmt::format("telemetry.prometheus: \"{}\" is not a port (0..65535) in \"{}\"",
                             port_text, address)};
  }
  std::pair<sockaddr_storage, socklen_t> out{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out.first);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out.first);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    out.second = sizeof(*v4);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    out.second = sizeof(*v6);
  } else {
    return Error{fmt::format(
        "telemetry.prometheus: \"{}\" is not an IPv4 or IPv6 address (write 127.0.0.1:9464, "
        "0.0.0.0:9464 or [::1]:9464)",
        host)};
  }
  return out;
}

std::string bind_advice(int err) {
  switch (err) {
    case EADDRINUSE:
      return "the port is in use (another sluice or exporter?): pick a free port or remove the key";
    case EADDRNOTAVAIL:
      return "the address is not one of this host's: use one it has, 127.0.0.1 or 0.0.0.0";
    case EACCES:
      return "ports below 1024 need CAP_NET_BIND_SERVICE: pick a port above 1023";
    default:
      return "pick another address or remove the key";
  }
}

}  // namespace

PrometheusServer::~PrometheusServer() {
  stop();
}

Result<void> PrometheusServer::start(const std::string& address) {
  auto addr = parse_address(address);
  if (!addr) return Error{addr.error()};
  auto& [ss, len] = *addr;
  // sluice binds the socket itself, so a bind error says exactly what is wrong; libmicrohttpd
  // serves it (and closes it in MHD_stop_daemon).
  const int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    return Error{fmt::format("telemetry.prometheus: cannot open a socket for {}: {}", address,
                             std::strerror(errno))};
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || listen(fd, 128) != 0) {
    const int err = errno;
    ::close(fd);
    return Error{fmt::format("telemetry.prometheus: cannot listen on {}: {}; {}", address,
                             std::strerror(err), bind_advice(err))};
  }
  sockaddr_storage bound{};
  socklen_t blen = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &blen);
  port_ = ntohs(bound.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                           : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  daemon_ = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD, 0, nullptr, nullptr, &answer, this,
                             MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_THREAD_POOL_SIZE, kThreads,
                             MHD_OPTION_CONNECTION_LIMIT, kConnectionLimit,
                             MHD_OPTION_CONNECTION_TIMEOUT, kTimeoutS, MHD_OPTION_END);
  if (daemon_ == nullptr) {
    const int err = errno;
    ::close(fd);
    return Error{fmt::format(
        "telemetry.prometheus: the HTTP server (libmicrohttpd) did not start on {}: {}; check "
        "the process's thread and file limits, or remove the key",
        address, std::strerror(err))};
  }
  return {};
}

void PrometheusServer::publish(std::string text) {
  auto next = std::make_shared<const std::string>(std::move(text));
  {
    std::lock_guard lock(mutex_);
    text_.swap(next);
  }
  // The previous text is freed here, outside the lock (or by the last response that holds it).
}

std::shared_ptr<const std::string> PrometheusServer::text() const {
  std::lock_guard lock(mutex_);
  return text_;
}

void PrometheusServer::stop() {
  if (daemon_ != nullptr) MHD_stop_daemon(daemon_);
  daemon_ = nullptr;
}

}  // namespace sluice::stats
