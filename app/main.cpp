// sluice: the command line, signals, EAL, the order of startup and stop, exit codes. The
// appliance itself is app/appliance.h, its control loop app/control_loop.h. Only this file
// decides to exit the process.

#include <execinfo.h>
#include <fcntl.h>
#include <malloc.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_version.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "app/appliance.h"
#include "app/check.h"
#include "app/control_loop.h"
#include "app/doctor.h"
#include "app/options.h"
#include "app/reload_control.h"
#include "lib/config/config.h"
#include "lib/port/eal_exit.h"
#include "lib/stats/snapshot.h"
#include "lib/stats/telemetry.h"
#include "lib/sys/log.h"
#include "lib/sys/notify.h"
#include "sluice_build_config.h"

namespace {

using namespace sluice;
using app::g_stop;

enum Exit : int { kExitOk = 0, kExitConfig = 1, kExitStartup = 2, kExitRuntime = 3 };

// How long the workers (and then the capture lcore, twice this) get to stop before sluice
// calls one stuck and exits anyway: well inside the unit's TimeoutStopSec (30 s).
constexpr std::chrono::seconds kStopLimit{5};

std::atomic<int> g_signal{0};
static_assert(std::atomic<bool>::is_always_lock_free);

extern "C" void on_signal(int sig) {
  if (sig == SIGHUP) {
    app::ReloadControl::request_from_signal();
    return;
  }
  g_signal.store(sig);
  g_stop.store(true);
  app::ReloadControl::wake();
}

// A fatal signal (a crash in sluice, a driver or DPDK): one line naming it, the lcore and the
// faulting address, and the stack as raw frames (addr2line -e sluice -f -C ADDR, or
// eu-addr2line --pid for the libraries), on stderr (the journal under systemd); then the
// default action, so the process still dies of that signal and dumps core where enabled. Only
// async-signal-safe calls: write(2), and backtrace(), loaded once at install (its first call
// may allocate).
void put(const char* s) noexcept {
  const size_t n = std::strlen(s);
  if (::write(STDERR_FILENO, s, n) < 0) return;  // nothing better to do in a dying process
}
void put_number(uint64_t v, unsigned base) noexcept {
  char buf[24];
  char* p = buf + sizeof buf;
  *--p = '\0';
  do {
    *--p = "0123456789abcdef"[v % base];
    v /= base;
  } while (v != 0);
  if (base == 16) put("0x");
  put(p);
}
extern "C" void on_fatal(int sig, siginfo_t* info, void*) {
  put("sluice: fatal signal ");
  put(sigabbrev_np(sig) != nullptr ? sigabbrev_np(sig) : "?");
  put(" (");
  put_number(static_cast<uint64_t>(sig), 10);
  put(") on lcore ");
  const unsigned lcore = rte_lcore_id();
  if (lcore == LCORE_ID_ANY) {
    put("none (a non-EAL thread)");
  } else {
    put_number(lcore, 10);
  }
  if (info != nullptr && info->si_code > 0) {  // raised by the CPU: the address it faulted on
    put(", address ");
    put_number(reinterpret_cast<uintptr_t>(info->si_addr), 16);
  } else if (info != nullptr) {
    put(", sent by pid ");
    put_number(static_cast<uint64_t>(info->si_pid), 10);
  }
  put("; backtrace:\n");
  void* frames[64];
  backtrace_symbols_fd(frames, backtrace(frames, 64), STDERR_FILENO);
  // SA_RESETHAND put back the default action: raised again, the signal ends the process.
  raise(sig);
}

// Installed before rte_eal_init: a SIGTERM during a slow EAL start (hugepage mapping, device
// probing) stops sluice cleanly right after it instead of killing it halfway.
void install_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
  void* warm[1];
  backtrace(warm, 1);  // loads libgcc's unwinder now, not inside the handler
  struct sigaction fatal {};
  fatal.sa_sigaction = on_fatal;
  fatal.sa_flags = SA_SIGINFO | SA_RESETHAND;
  sigemptyset(&fatal.sa_mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT}) sigaction(sig, &fatal, nullptr);
}

// --stats-out: written to a new temporary file beside the target and renamed over it, so a
// reader never sees half a file and a symlink planted at the target is replaced, not followed.
int write_stats(const std::string& path, const stats::Snapshot& s) {
  const std::string tmp = fmt::format("{}.tmp.{}", path, getpid());
  ::unlink(tmp.c_str());  // one a killed run with this pid left (a container's pid 1, say)
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) {
    spdlog::error("--stats-out: cannot create {}: {}", tmp, std::strerror(errno));
    return 1;
  }
  const std::string text = stats::to_json(s);
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  const bool ok = done == text.size() && ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    spdlog::error("--stats-out: cannot write {}: {}", path, std::strerror(ok ? errno : err));
    ::unlink(tmp.c_str());
    return 1;
  }
  spdlog::info("statistics written to {}", path);
  return 0;
}

// Before anything starts: a --stats-out path that cannot be written is said now, not after
// the run whose statistics it was to keep. The probe is the file write_stats creates.
Result<void> check_stats_out(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    return Error{fmt::format("--stats-out: {} is a directory; expected a file path", path)};
  }
  const std::string tmp = fmt::format("{}.tmp.{}", path, getpid());
  ::unlink(tmp.c_str());  // as write_stats does
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) {
    return Error{fmt::format("--stats-out: cannot create a file beside {} ({}): {}", path, tmp,
                             std::strerror(errno))};
  }
  ::close(fd);
  ::unlink(tmp.c_str());
  return {};
}

// What to do about a failed rte_eal_init, by the rte_errno it left (DPDK 22.11's eal.c) and
// whether it ran on hugepages. EAL has printed its own reason just above.
std::string eal_failure(int err, bool no_huge) {
  const std::string options = "check the EAL options before \"--\"";
  switch (err) {
    case 0:
      // The runtime config, whose lock another primary holds, sets none.
      return "EAL said why above; if another sluice or DPDK primary process runs with the same "
             "--file-prefix (the default is \"rte\"), give this one its own; otherwise " +
             options;
    case EACCES:  // hugepage information
    case ENOMEM:  // memory
      return std::string(rte_strerror(err)) + "; " +
             (no_huge ? "give EAL more memory (-m) or free some"
                      : "hugepages: echo 512 > /proc/sys/vm/nr_hugepages and a hugetlbfs mount, "
                        "or run with --no-huge (virtual devices only)");
    case ENODEV:  // a bus or device (-a, --vdev) that EAL could not scan or probe
    case ENOTSUP:
      return std::string(rte_strerror(err)) +
             "; check the devices EAL was given (-a, --vdev) and their drivers (-d), and that "
             "the CPU runs this DPDK build";
    default:  // EINVAL (the options, a -d plugin), EALREADY, ...
      return std::string(rte_strerror(err)) + "; " + options;
  }
}

void log_totals(const stats::Snapshot& s) {
  uint64_t drops = 0;
  for (auto d : s.drops) drops += d;
  uint64_t rx = 0, tx = 0;
  for (const auto& p : s.ports) {
    rx += p.rx_packets;
    tx += p.tx_packets;
  }
  spdlog::info("stopped after {:.1f} s: rx {} packets, tx {} packets, dropped {}", s.uptime_s, rx,
               tx, drops);
}

int run(const app::Options& opt, std::shared_ptr<const config::Config> cfg) {
  install_signals();
  // EAL may not see the lcore list we expect; everything after this is exit 2 on failure.
  std::vector<char*> eal_argv;
  std::vector<std::string> eal_args = opt.eal_args;
  for (auto& a : eal_args) eal_argv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
    const bool no_huge =
        std::find(opt.eal_args.begin(), opt.eal_args.end(), "--no-huge") != opt.eal_args.end();
    spdlog::error("EAL initialisation failed: {}", eal_failure(rte_errno, no_huge));
    return kExitStartup;
  }
  spdlog::info("sluice {} on {}, main lcore {}, EAL lcores {}, TSC {} Hz", SLUICE_VERSION,
               rte_version(), rte_get_main_lcore(), app::eal_lcore_list(), rte_get_tsc_hz());

  int rc = kExitOk;
  auto a = std::make_unique<app::Appliance>();
  {
    auto kernel = app::choose_kernel(opt.simd);
    Result<void> r = kernel ? a->assemble(cfg, *kernel) : Result<void>(Error{kernel.error()});
    if (r && g_stop.load()) r = Error{"stopped by a signal during startup"};
    if (r) r = a->launch();
    if (!r) {
      spdlog::error("{}", r.error());
      rc = kExitStartup;
    }
  }
  if (rc == kExitOk) {
    stats::telemetry_register();
    sys::notify_ready();
    sys::notify_status("forwarding");
    spdlog::info("running{}", opt.duration_s > 0 ? fmt::format(" for {} s", opt.duration_s) : "");
    rc = app::control_loop(*a, opt);
    if (int sig = g_signal.load()) spdlog::info("signal {} received: stopping", strsignal(sig));
    sys::notify_stopping();
    a->reload->stop();
  }
  const std::vector<unsigned> stuck = a->stop_lcores(kStopLimit);
  if (!stuck.empty()) {
    // A stuck lcore still uses its ports, pools and rules: nothing can be freed or checked.
    // Say what was counted and leave; systemd (or the operator) restarts sluice.
    stats::Snapshot s = a->snapshot();
    log_totals(s);
    if (!opt.stats_out.empty()) write_stats(opt.stats_out, s);
    spdlog::error("exiting with lcore(s) {} stuck", fmt::join(stuck, ","));
    spdlog::default_logger()->flush();
    std::fflush(stdout);
    std::_Exit(kExitRuntime);
  }
  // Clean stop: workers have flushed their TX buffers; read the final counters, stop and
  // close the ports (their queues give every mbuf back), then check the pools.
  const bool assembled = a->rules != nullptr;
  stats::Snapshot s = a->teardown();
  if (assembled && rc != kExitStartup) {
    if (opt.stats_period_s > 0) std::fputs(stats::to_table(s, nullptr, 0).c_str(), stdout);
    log_totals(s);
    if (!opt.stats_out.empty() && write_stats(opt.stats_out, s) != 0 && rc == kExitOk) {
      rc = kExitRuntime;
    }
  }
  a.reset();
  // --huge-unlink=never asks for the page files to stay (for reuse): they do.
  const bool keep_pages = std::find(opt.eal_args.begin(), opt.eal_args.end(),
                                    "--huge-unlink=never") != opt.eal_args.end();
  const port::EalTidy tidy = port::eal_cleanup_and_tidy(keep_pages);
  spdlog::debug("EAL cleaned up: {} of {} hugepage files removed{}; runtime folder {}{}",
                tidy.removed, tidy.hugepage_files, keep_pages ? " (--huge-unlink=never)" : "",
                tidy.runtime_dir.empty() ? "(not ours)" : tidy.runtime_dir,
                tidy.runtime_dir_removed ? " removed" : " kept");
  return rc;
}

// A reload parses and compiles on the main lcore with malloc (yaml-cpp, rte_acl's build pool).
// Memory glibc hands back to the kernel and takes again next time is first touched anew, and
// replacing those zero-page mappings flushes the TLB of every CPU the process runs on: the
// workers took about 1,200 shootdown interrupts per 1,000-rule reload, and a 100k-rule build
// (about 1.6 GB for a moment) took 7 s instead of 2.6 s on a 2-vCPU VM. So freed heap is never
// trimmed (up to INT_MAX bytes, all mallopt takes) and blocks up to 32 MiB come from it rather
// than from fresh mmaps: the next reload reuses warm pages (3 interrupts in 47 reloads) and
// cannot fail for memory something else took in between. The heap stays at the largest
// reload's size until exit (README, Deploying).
void keep_reload_heap() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, INT_MAX);
}

int main_checked(int argc, char** argv) {
  keep_reload_heap();
  auto opt = app::parse_options(argc, argv);
  if (!opt) {
    std::fprintf(stderr, "sluice: %s\n", opt.error().c_str());
    return kExitConfig;
  }
  if (opt->help) {
    std::fputs(app::usage(argv[0]).c_str(), stdout);
    return kExitOk;
  }
  if (opt->version) {
    std::printf("sluice %s (%s)\n", SLUICE_VERSION, rte_version());
    return kExitOk;
  }
  sys::log_setup(opt->log_level.value_or(spdlog::level::info));
  if (opt->doctor) return app::run_doctor(*opt);

  auto cfg = config::load(opt->config);
  if (!cfg) {
    spdlog::error("{}", cfg.error());
    return kExitConfig;
  }
  if (!opt->log_level) {
    static constexpr spdlog::level::level_enum kLevels[] = {
        spdlog::level::trace, spdlog::level::debug, spdlog::level::info, spdlog::level::warn,
        spdlog::level::err};
    spdlog::set_level(kLevels[static_cast<int>((*cfg)->appliance.logging.level)]);
  }
  if (opt->check) {
    Result<std::string> diff = std::string();
    if (!opt->diff.empty()) diff = app::check_diff(**cfg, opt->diff);
    if (!diff) {
      spdlog::error("{}", diff.error());
      return kExitConfig;
    }
    std::fputs(app::check_summary(**cfg).c_str(), stdout);
    std::fputs(diff->c_str(), stdout);
    return kExitOk;
  }
  if (!opt->stats_out.empty()) {
    if (auto r = check_stats_out(opt->stats_out); !r) {
      spdlog::error("{}", r.error());
      return kExitConfig;
    }
  }
  return run(*opt, *cfg);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return main_checked(argc, argv);
  } catch (const std::bad_alloc&) {
    // Out of memory before or while starting (a config or rule set larger than this host).
    std::fputs(
        "sluice: out of memory (std::bad_alloc) while starting; free memory or use a "
        "smaller config\n",
        stderr);
    return kExitConfig;
  }
}
