// sluice-capture: list, verify, export and repair the capture store (CONTRACT "Capture
// store"). A thin shell over lib/capture: segments are mapped read-only and handed to
// scan_chunks; nothing here trusts the bytes it reads.
//   exit 0: ok; 1: problems found (a chunk that is not good); 2: usage or I/O error.

#include <fcntl.h>
#include <linux/fs.h>
#include <pcap/pcap.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "lib/capture/chunk.h"
#include "lib/capture/raw_store.h"
#include "lib/capture/store.h"
#include "lib/nvme/passthru.h"
#include "sluice_build_config.h"
#include "tools/capture/text.h"

namespace {

using namespace sluice;
using namespace sluice::capture;
using capture_tool::format_time;
using capture_tool::json_string;
using capture_tool::parse_time;

enum Exit : int { kExitOk = 0, kExitProblems = 1, kExitUsage = 2 };

constexpr std::string_view kUsage =
    "usage: sluice-capture list PATH\n"
    "       sluice-capture verify PATH|FILE... [--json]\n"
    "       sluice-capture export PATH|FILE... -o OUT.pcapng [--from TIME] [--to TIME]\n"
    "                             [--port NAME] [--filter BPF]\n"
    "       sluice-capture repair PATH\n";

constexpr std::string_view kHelp =
    "\n"
    "PATH is a capture store directory (all its segments by number, .part included),\n"
    "segment files, or a raw-device store: a block device, an NVMe generic char device\n"
    "/dev/ngXnY (read with NVMe Read commands; the store is read into memory whole) or an\n"
    "image file of one (its chunks in ring order, oldest first).\n"
    "  list     each segment: first and last packet time (UTC), packets, bytes, chunks, and\n"
    "           state (closed or part; whether every chunk is good)\n"
    "  verify   every chunk with its offset, length, state (good, corrupt, torn, unwritten),\n"
    "           seq, packets and what is wrong; --json for one JSON object\n"
    "  export   the packets of good chunks as one plain pcapng section in time order;\n"
    "           --from is inclusive, --to exclusive; TIME is RFC 3339 (2026-12-01T22:00:00Z,\n"
    "           fractions and +HH:MM allowed) or epoch seconds (1796162400.5); --port is an\n"
    "           interface name of the input (another is a usage error); --filter is a\n"
    "           libpcap expression\n"
    "  repair   what sluice does at start: cut each .part after its last good chunk, rename\n"
    "           it, delete one with no good chunk\n"
    "exit status: 0 ok, 1 a chunk is not good, 2 usage or I/O error\n";

void say(const std::string& line) {
  std::fprintf(stderr, "sluice-capture: %s\n", line.c_str());
}

int usage_error(const std::string& why) {
  say(why);
  std::fputs(kUsage.data(), stderr);
  return kExitUsage;
}

// A segment file mapped read-only (segments can be a gigabyte).
class Mapped {
 public:
  Mapped(const Mapped&) = delete;
  Mapped& operator=(const Mapped&) = delete;
  ~Mapped() {
    if (data_ != nullptr) munmap(data_, size_);
  }
  static std::unique_ptr<Mapped> open(const std::string& path, std::string* error) {
    struct stat pst {};
    if (stat(path.c_str(), &pst) == 0 && S_ISCHR(pst.st_mode)) return read_namespace(path, error);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      *error = fmt::format("cannot open {}: {}", path, std::strerror(errno));
      return nullptr;
    }
    std::unique_ptr<Mapped> m(new Mapped);
    struct stat st {};
    uint64_t bytes = 0;
    if (fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) ||
        (S_ISBLK(st.st_mode) && ioctl(fd, BLKGETSIZE64, &bytes) != 0)) {
      *error = fmt::format("{}: not a regular file or a block device", path);
      close(fd);
      return nullptr;
    }
    m->size_ = S_ISBLK(st.st_mode) ? static_cast<size_t>(bytes) : static_cast<size_t>(st.st_size);
    if (m->size_ > 0) {
      void* p = mmap(nullptr, m->size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        *error = fmt::format("cannot read {}: {}", path, std::strerror(errno));
        close(fd);
        return nullptr;
      }
      madvise(p, m->size_, MADV_SEQUENTIAL);
      m->data_ = p;
    }
    close(fd);
    return m;
  }
  const uint8_t* data() const { return static_cast<const uint8_t*>(data_); }
  size_t size() const { return size_; }

 private:
  Mapped() = default;

  // An NVMe namespace's generic char device cannot be mapped: its store (the header's bytes,
  // not the whole namespace) is read into anonymous memory with NVMe Read commands.
  static std::unique_ptr<Mapped> read_namespace(const std::string& path, std::string* error) {
    auto ns = nvme::open_passthru(path);
    if (!ns) {
      *error = ns.error();
      return nullptr;
    }
    std::unique_ptr<Mapped> m(new Mapped);
    auto done = [&](std::string why) -> std::unique_ptr<Mapped> {
      nvme::close_passthru(*ns);
      if (why.empty()) return std::move(m);
      *error = std::move(why);
      return nullptr;
    };
    auto fill = [&](uint64_t bytes) -> std::string {
      if (m->data_ != nullptr) munmap(m->data_, m->size_);
      void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p == MAP_FAILED) {
        m->data_ = nullptr;
        return fmt::format("cannot allocate {} MiB to read {}: {}", bytes >> 20, path,
                           std::strerror(errno));
      }
      m->data_ = p;
      m->size_ = bytes;
      auto r = nvme::read_sync(*ns, p, bytes, 0);
      return r ? std::string() : r.error();
    };
    if (std::string why = fill(kRawHeaderBytes); !why.empty()) return done(why);
    const RawHeaderRead h = decode_raw_header(m->data(), m->size());
    if (h.state != RawHeaderState::kValid) return done("");  // the caller says what it holds
    const uint64_t bytes = std::min(h.header.bytes(), ns->size);
    const uint64_t memory = uint64_t(sysconf(_SC_PHYS_PAGES)) * uint64_t(sysconf(_SC_PAGESIZE));
    if (bytes > memory / 2) {
      return done(fmt::format(
          "the store on {} is {} MiB, more than half of this machine's memory: read it through "
          "the namespace's block device {} instead",
          path, bytes >> 20, nvme::block_device_of(path)));
    }
    return done(fill(bytes));
  }

  void* data_ = nullptr;
  size_t size_ = 0;
};

struct Input {
  std::string path;
  std::string name;  // file name
  bool part = false;
  bool raw = false;  // a raw-device store (raw_store.h)
};

// Whether path begins with a raw-store header block (a block device or an image file), with why
// not in *why.
bool has_raw_header(const std::string& path, std::string* why) {
  struct stat st {};
  if (stat(path.c_str(), &st) == 0 && S_ISCHR(st.st_mode)) {
    // An NVMe namespace: its first block with one Read (the store itself is read later).
    std::vector<uint8_t> head(kRawHeaderBytes);
    auto r = nvme::read_prefix(path, head.data(), head.size());
    if (!r) {
      *why = r.error();
      return false;
    }
    const RawHeaderRead h = decode_raw_header(head.data(), head.size());
    *why = h.why;
    return h.state == RawHeaderState::kValid;
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *why = std::strerror(errno);
    return false;
  }
  std::vector<uint8_t> block(kRawHeaderBytes);
  const ssize_t n = pread(fd, block.data(), block.size(), 0);
  close(fd);
  if (n != static_cast<ssize_t>(block.size())) {
    *why = "shorter than a raw-store header";
    return false;
  }
  const RawHeaderRead r = decode_raw_header(block.data(), block.size());
  *why = r.why;
  return r.state == RawHeaderState::kValid;
}

// PATH arguments -> files: a directory gives its segments by number.
std::optional<std::vector<Input>> expand(const std::vector<std::string>& args) {
  namespace fs = std::filesystem;
  std::vector<Input> out;
  for (const std::string& a : args) {
    std::error_code ec;
    const fs::file_status st = fs::status(a, ec);
    if (ec || !fs::exists(st)) {
      say(fmt::format("no such file or directory: {}", a));
      return std::nullopt;
    }
    if (fs::is_directory(st)) {
      auto segs = list_segments(a);
      if (!segs) {
        say(segs.error());
        return std::nullopt;
      }
      if (segs->empty()) {
        say(
            fmt::format("no segments in {} (segment files are named "
                        "sluice-YYYYMMDDTHHMMSSZ-NNNNNN.pcapng)",
                        a));
        return std::nullopt;
      }
      for (const SegmentFile& f : *segs) out.push_back({f.path, f.name, f.part});
    } else {
      const std::string name = fs::path(a).filename().string();
      std::string why;
      if (has_raw_header(a, &why)) {
        out.push_back({a, name, false, true});
      } else if (fs::is_block_file(st) || fs::is_character_file(st)) {
        say(fmt::format("no sluice raw-device store on {} ({})", a, why));
        return std::nullopt;
      } else {
        out.push_back({a, name, name.size() > 5 && name.substr(name.size() - 5) == ".part"});
      }
    }
  }
  return out;
}

// The chunks of a raw-device store, oldest first (the ring from the slot after the newest
// chunk), with offsets on the device; slots never written are not listed.
std::vector<ChunkInfo> ring_chunks(const Mapped& m, std::string* error) {
  const RawHeaderRead r = decode_raw_header(m.data(), m.size());
  if (r.state != RawHeaderState::kValid) {
    *error = r.why;
    return {};
  }
  const RawHeader& h = r.header;
  if (h.bytes() > m.size()) {
    *error = fmt::format("the store needs {} bytes ({} slots of {}), the device has {}", h.bytes(),
                         h.slots, h.chunk_bytes, m.size());
    return {};
  }
  const RingPosition pos =
      find_ring_position(h.slots, h.slots, [&](uint64_t i) -> std::optional<uint64_t> {
        // The window spans the whole ring: the tool reads every slot anyway.
        return slot_seq(m.data() + h.slot_offset(i), h.chunk_bytes, h.slots, i);
      });
  std::vector<ChunkInfo> out;
  std::vector<uint64_t> position;  // of each entry of out in ring order
  // A chunk's own bytes cannot show that its seq field is damaged, so the slots vote (as the
  // chunks of a segment do): the k-th slot in ring order holds base + k, or a chunk of an
  // earlier lap where a write never landed; the base most good chunks imply is right.
  std::map<uint64_t, uint64_t> votes;
  for (uint64_t k = 0; k < pos.count; ++k) {
    const uint64_t slot = (pos.first_slot + k) % h.slots;
    const uint64_t off = h.slot_offset(slot);
    for (ChunkInfo c : scan_chunks(m.data() + off, h.chunk_bytes)) {
      c.offset += off;
      if (c.state == ChunkState::kGood && c.seq % h.slots != slot) {
        c.state = ChunkState::kCorrupt;
        c.why = fmt::format("sequence number {} does not belong in slot {} of {}", c.seq, slot,
                            h.slots);
      }
      if (c.state == ChunkState::kGood) ++votes[c.seq - k];
      out.push_back(std::move(c));
      position.push_back(k);
    }
  }
  uint64_t base = 0, best = 0;
  for (const auto& [b, n] : votes) {
    if (n > best) base = b, best = n;
  }
  for (size_t i = 0; i < out.size(); ++i) {
    ChunkInfo& c = out[i];
    const uint64_t want = base + position[i];
    if (c.state == ChunkState::kGood && c.seq != want &&
        (c.seq > want || (want - c.seq) % h.slots != 0)) {
      c.state = ChunkState::kCorrupt;
      c.why = fmt::format("sequence number {} out of line with the ring's other chunks ({} here)",
                          c.seq, want);
    }
  }
  return out;
}

// The chunks of one input: a segment's in file order, a raw store's in ring order.
std::vector<ChunkInfo> chunks_of(const Input& in, const Mapped& m, std::string* error) {
  if (in.raw) return ring_chunks(m, error);
  return scan_chunks(m.data(), m.size());
}

// Why a file with no good chunk is no segment at all, or empty when it may be one.
std::string not_a_segment(const Input& in, const Mapped& m, const std::vector<ChunkInfo>& chunks,
                          const std::string& error) {
  if (in.raw) return error;
  if (m.size() == 0) return "empty file";
  for (const ChunkInfo& c : chunks) {
    if (c.state == ChunkState::kGood || c.state == ChunkState::kCorrupt) return {};
  }
  static constexpr uint8_t kShb[] = {0x0A, 0x0D, 0x0D, 0x0A};
  if (m.size() < 4 || std::memcmp(m.data(), kShb, 4) != 0) {
    if (chunks.size() == 1 && chunks[0].state == ChunkState::kUnwritten) return {};
    return "no pcapng section header at offset 0";
  }
  return {};
}

struct Counts {
  uint64_t chunks = 0, packets = 0;
  uint64_t by_state[4] = {0, 0, 0, 0};
  bool bad() const { return chunks != by_state[static_cast<int>(ChunkState::kGood)]; }
};

int cmd_verify(const std::vector<std::string>& args, bool json) {
  auto inputs = expand(args);
  if (!inputs) return kExitUsage;
  Counts total;
  bool problems = false;
  std::string js = "{\"files\":[";
  for (size_t fi = 0; fi < inputs->size(); ++fi) {
    const Input& in = (*inputs)[fi];
    std::string error;
    auto m = Mapped::open(in.path, &error);
    if (!m) {
      say(error);
      return kExitUsage;
    }
    std::string raw_error;
    const auto chunks = chunks_of(in, *m, &raw_error);
    const std::string nas = not_a_segment(in, *m, chunks, raw_error);
    if (!nas.empty()) {
      say(fmt::format("not a sluice capture segment: {} ({})", in.path, nas));
      problems = true;
    }
    if (json) {
      js += fmt::format("{}{{\"path\":{},\"size\":{},\"part\":{},", fi ? "," : "",
                        json_string(in.path), m->size(), in.part);
      if (!nas.empty()) js += fmt::format("\"error\":{},", json_string(nas));
      js += "\"chunks\":[";
    }
    for (size_t i = 0; i < chunks.size(); ++i) {
      const ChunkInfo& c = chunks[i];
      ++total.chunks;
      ++total.by_state[static_cast<int>(c.state)];
      if (c.state == ChunkState::kGood) total.packets += c.packets;
      const bool located = c.state == ChunkState::kGood || c.state == ChunkState::kCorrupt;
      if (json) {
        js += fmt::format(
            "{}{{\"offset\":{},\"length\":{},\"state\":\"{}\",\"seq\":{},\"packets\":{},"
            "\"first_ns\":{},\"last_ns\":{},\"why\":{}}}",
            i ? "," : "", c.offset, c.length, chunk_state_name(c.state),
            located ? std::to_string(c.seq) : "null", c.packets, c.first_ns, c.last_ns,
            json_string(c.why));
      } else {
        std::printf("%s  offset %llu  length %llu  %-9s  seq %s  packets %u%s%s\n", in.path.c_str(),
                    static_cast<unsigned long long>(c.offset),
                    static_cast<unsigned long long>(c.length),
                    std::string(chunk_state_name(c.state)).c_str(),
                    located ? std::to_string(c.seq).c_str() : "-", c.packets,
                    c.why.empty() ? "" : "  ", c.why.c_str());
      }
    }
    if (json) js += "]}";
  }
  problems = problems || total.bad();
  const auto& s = total.by_state;
  if (json) {
    js += fmt::format(
        "],\"totals\":{{\"files\":{},\"chunks\":{},\"good\":{},\"corrupt\":{},\"torn\":{},"
        "\"unwritten\":{},\"packets\":{}}},\"ok\":{}}}",
        inputs->size(), total.chunks, s[0], s[1], s[2], s[3], total.packets, !problems);
    std::puts(js.c_str());
  } else {
    std::printf(
        "verify: %zu files, %llu chunks: %llu good, %llu corrupt, %llu torn, %llu unwritten; "
        "%llu packets in good chunks%s\n",
        inputs->size(), static_cast<unsigned long long>(total.chunks),
        static_cast<unsigned long long>(s[0]), static_cast<unsigned long long>(s[1]),
        static_cast<unsigned long long>(s[2]), static_cast<unsigned long long>(s[3]),
        static_cast<unsigned long long>(total.packets), problems ? "" : "; all good");
  }
  return problems ? kExitProblems : kExitOk;
}

int cmd_list(const std::vector<std::string>& args) {
  auto inputs = expand(args);
  if (!inputs) return kExitUsage;
  bool problems = false;
  std::printf("%-44s %-30s %-30s %10s %12s %7s  %s\n", "segment", "first", "last", "packets",
              "bytes", "chunks", "state");
  for (const Input& in : *inputs) {
    std::string error;
    auto m = Mapped::open(in.path, &error);
    if (!m) {
      say(error);
      return kExitUsage;
    }
    std::string raw_error;
    const auto chunks = chunks_of(in, *m, &raw_error);
    if (!raw_error.empty()) {
      say(fmt::format("{}: {}", in.path, raw_error));
      problems = true;
    }
    uint64_t first = UINT64_MAX, last = 0, packets = 0, good = 0;
    for (const ChunkInfo& c : chunks) {
      if (c.state != ChunkState::kGood) continue;
      ++good;
      packets += c.packets;
      if (c.packets > 0) {
        first = std::min(first, c.first_ns);
        last = std::max(last, c.last_ns);
      }
    }
    const bool all_good = (in.raw || !chunks.empty()) && good == chunks.size();
    problems = problems || !all_good;
    const std::string state =
        std::string(in.raw    ? "raw ring"
                    : in.part ? "part"
                              : "closed") +
        (all_good ? ", all good"
                  : fmt::format(", {} of {} chunks not good", chunks.size() - good, chunks.size()));
    std::printf("%-44s %-30s %-30s %10llu %12zu %7zu  %s\n", in.name.c_str(),
                first == UINT64_MAX ? "-" : format_time(first).c_str(),
                first == UINT64_MAX ? "-" : format_time(last).c_str(),
                static_cast<unsigned long long>(packets), m->size(), chunks.size(), state.c_str());
  }
  return problems ? kExitProblems : kExitOk;
}

struct ExportOptions {
  std::vector<std::string> inputs;
  std::string out;
  uint64_t from = 0, to = UINT64_MAX;
  std::optional<std::string> port, filter;
};

struct OutPacket {
  uint64_t ts_ns;
  uint32_t iface, caplen, origlen;
  const uint8_t* data;
};

int cmd_export(const ExportOptions& o) {
  auto inputs = expand(o.inputs);
  if (!inputs) return kExitUsage;
  std::error_code ec;
  for (const Input& in : *inputs) {
    if (std::filesystem::equivalent(in.path, o.out, ec)) {
      return usage_error(fmt::format("-o {} is one of the inputs", o.out));
    }
  }
  pcap_t* dead = nullptr;
  bpf_program prog{};
  if (o.filter) {
    dead = pcap_open_dead(DLT_EN10MB, 65535);
    if (dead == nullptr ||
        pcap_compile(dead, &prog, o.filter->c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
      const std::string why = dead ? pcap_geterr(dead) : "pcap_open_dead failed";
      if (dead) pcap_close(dead);
      return usage_error(fmt::format("bad --filter '{}': {}", *o.filter, why));
    }
  }
  std::vector<std::unique_ptr<Mapped>> maps;  // the packets point into them until written
  std::vector<OutPacket> out;
  std::vector<std::string> names;
  std::vector<std::string> seen;  // every interface of the inputs' good chunks
  std::map<std::string, uint32_t> iface_of;
  uint64_t good_chunks = 0, skipped = 0;
  uint32_t max_caplen = 0;
  for (const Input& in : *inputs) {
    std::string error;
    auto m = Mapped::open(in.path, &error);
    if (!m) {
      say(error);
      if (dead) pcap_close(dead);
      return kExitUsage;
    }
    std::string raw_error;
    const auto chunks = chunks_of(in, *m, &raw_error);
    if (const std::string nas = not_a_segment(in, *m, chunks, raw_error); !nas.empty()) {
      say(fmt::format("not a sluice capture segment: {} ({})", in.path, nas));
    }
    for (const ChunkInfo& c : chunks) {
      if (c.state != ChunkState::kGood) {
        ++skipped;
        continue;
      }
      ++good_chunks;
      const uint8_t* chunk = m->data() + c.offset;
      const auto ifnames = chunk_interfaces(chunk, c.length);
      for (size_t i = 0; i < ifnames.size(); ++i) {  // named as the packets below name them
        const std::string n = ifnames[i].empty() ? fmt::format("if{}", i) : ifnames[i];
        if (std::find(seen.begin(), seen.end(), n) == seen.end()) seen.push_back(n);
      }
      // No skipping by the trailer's first/last: they are the first and last appended
      // packets, not the earliest and latest, when workers' rings interleave.
      if (c.packets == 0) continue;
      for_each_packet(chunk, c.length, [&](const PacketRef& p) {
        if (p.ts_ns < o.from || p.ts_ns >= o.to) return;
        const std::string name = p.port < ifnames.size() && !ifnames[p.port].empty()
                                     ? ifnames[p.port]
                                     : fmt::format("if{}", p.port);
        if (o.port && name != *o.port) return;
        if (o.filter) {
          pcap_pkthdr h{};
          h.caplen = p.caplen;
          h.len = p.origlen;
          if (pcap_offline_filter(&prog, &h, p.data) == 0) return;
        }
        auto [it, fresh] = iface_of.try_emplace(name, static_cast<uint32_t>(names.size()));
        if (fresh) names.push_back(name);
        max_caplen = std::max(max_caplen, p.caplen);
        out.push_back({p.ts_ns, it->second, p.caplen, p.origlen, p.data});
      });
    }
    maps.push_back(std::move(m));
  }
  if (dead) {
    pcap_freecode(&prog);
    pcap_close(dead);
  }
  // A --port that none of the good chunks names is a typo, not an empty export (nothing is
  // written). Without a good chunk there are no names to hold it against.
  if (o.port && !seen.empty() && iface_of.count(*o.port) == 0 &&
      std::find(seen.begin(), seen.end(), *o.port) == seen.end()) {
    std::string known;
    for (const std::string& n : seen) known += (known.empty() ? "" : ", ") + n;
    return usage_error(fmt::format("--port {}: no such interface in the input (its interfaces: {})",
                                   *o.port, known));
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const OutPacket& a, const OutPacket& b) { return a.ts_ns < b.ts_ns; });

  // libpcap refuses a pcapng file without an interface: an empty export still names them.
  if (names.empty()) names = seen.empty() ? std::vector<std::string>{"none"} : seen;

  FILE* f = std::fopen(o.out.c_str(), "wb");
  if (f == nullptr) {
    say(fmt::format("cannot write {}: {}", o.out, std::strerror(errno)));
    return kExitUsage;
  }
  std::vector<char> iobuf(1 << 20);
  std::setvbuf(f, iobuf.data(), _IOFBF, iobuf.size());
  const ChunkWriter header(names, std::max<uint32_t>(max_caplen, 65535),
                           "sluice-capture " SLUICE_VERSION);
  std::fwrite(header.header().data(), 1, header.header().size(), f);
  uint8_t epb[28];
  const uint8_t zeros[4] = {0, 0, 0, 0};
  for (const OutPacket& p : out) {
    const auto total = static_cast<uint32_t>(epb_bytes(p.caplen));
    const uint32_t fields[7] = {6,
                                total,
                                p.iface,
                                static_cast<uint32_t>(p.ts_ns >> 32),
                                static_cast<uint32_t>(p.ts_ns),
                                p.caplen,
                                p.origlen};
    std::memcpy(epb, fields, sizeof epb);
    std::fwrite(epb, 1, sizeof epb, f);
    std::fwrite(p.data, 1, p.caplen, f);
    std::fwrite(zeros, 1, (4 - p.caplen % 4) % 4, f);
    std::fwrite(&total, 1, 4, f);
  }
  const bool write_failed = std::ferror(f) != 0;
  if (std::fclose(f) != 0 || write_failed) {
    say(fmt::format("cannot write {}: {}", o.out, std::strerror(errno)));
    return kExitUsage;
  }
  std::fprintf(stderr,
               "sluice-capture: export: %zu packets on %zu interfaces from %llu good "
               "chunks of %zu files to %s\n",
               out.size(), names.size(), static_cast<unsigned long long>(good_chunks),
               inputs->size(), o.out.c_str());
  if (skipped != 0) {
    say(fmt::format("skipped {} chunks that are not good (sluice-capture verify shows them)",
                    skipped));
    return kExitProblems;
  }
  return kExitOk;
}

int cmd_repair(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return usage_error(fmt::format(
        "repair needs a store directory: {} (a raw-device store needs no repair: sluice finds "
        "where its ring left off at start)",
        dir));
  }
  auto r = repair(dir);
  if (!r) {
    say(r.error());
    return kExitUsage;
  }
  for (const std::string& line : r->lines) std::printf("%s\n", line.c_str());
  std::printf(
      "repair: %u repaired, %u removed, %llu bytes cut; next seq %llu, next segment %llu; "
      "closed segments hold %llu bytes\n",
      r->repaired, r->removed, static_cast<unsigned long long>(r->bytes_cut),
      static_cast<unsigned long long>(r->next_seq),
      static_cast<unsigned long long>(r->next_segment),
      static_cast<unsigned long long>(r->store_bytes));
  return kExitOk;
}

int run(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return usage_error("no command given");
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::fputs(kUsage.data(), stdout);
    std::fputs(kHelp.data(), stdout);
    return kExitOk;
  }
  if (args[0] == "--version") {
    std::puts("sluice-capture " SLUICE_VERSION);
    return kExitOk;
  }
  const std::string cmd = args[0];
  std::vector<std::string> paths;
  bool json = false;
  ExportOptions ex;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    const bool has_value = i + 1 < args.size();
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage.data(), stdout);
      std::fputs(kHelp.data(), stdout);
      return kExitOk;
    } else if (a == "--json" && cmd == "verify") {
      json = true;
    } else if (cmd == "export" &&
               (a == "-o" || a == "--from" || a == "--to" || a == "--port" || a == "--filter")) {
      if (!has_value) return usage_error(fmt::format("{} needs a value", a));
      const std::string& v = args[++i];
      if (a == "-o") {
        ex.out = v;
      } else if (a == "--port") {
        ex.port = v;
      } else if (a == "--filter") {
        ex.filter = v;
      } else {
        const auto t = parse_time(v);
        if (!t) {
          return usage_error(
              fmt::format("{} {}: not a time (RFC 3339 like "
                          "2026-12-01T22:00:00Z, or epoch seconds)",
                          a, v));
        }
        (a == "--from" ? ex.from : ex.to) = *t;
      }
    } else if (a.size() > 1 && a[0] == '-') {
      return usage_error(fmt::format("unknown option {} for {}", a, cmd));
    } else {
      paths.push_back(a);
    }
  }
  if (cmd == "list") {
    if (paths.empty()) return usage_error("list needs a PATH");
    return cmd_list(paths);
  }
  if (cmd == "repair") {
    if (paths.size() != 1) return usage_error("repair takes one store directory");
    return cmd_repair(paths[0]);
  }
  if (cmd == "verify") {
    if (paths.empty()) return usage_error("verify needs a PATH or FILE");
    return cmd_verify(paths, json);
  }
  if (cmd == "export") {
    if (paths.empty()) return usage_error("export needs a PATH or FILE");
    if (ex.out.empty()) return usage_error("export needs -o OUT.pcapng");
    if (ex.from >= ex.to) return usage_error("--from must be before --to");
    ex.inputs = paths;
    return cmd_export(ex);
  }
  return usage_error(fmt::format("unknown command {}", cmd));
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    // Out of memory on a huge export, or a filesystem error: a message, never a crash.
    say(e.what());
    return kExitUsage;
  }
}
