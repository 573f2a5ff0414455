"""Packet building blocks for the integration tests and the demo traffic.

Plain struct packing (no scapy): every byte of every test packet is visible here. Frames are
Ethernet II without FCS, as DPDK hands them to the application.
"""
import struct

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_ARP = 0x0806
ETH_LLDP = 0x88CC
ETH_VLAN = 0x8100
ETH_QINQ = 0x88A8

TCP, UDP, ICMP, ICMPV6, SCTP, GRE, ESP = 6, 17, 1, 58, 132, 47, 50

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def csum(data):
    """Internet checksum (RFC 1071) of data."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ip4(text):
    return bytes(int(x) for x in text.split("."))


def ip6(text):
    import ipaddress
    return ipaddress.IPv6Address(text).packed


def eth(ethertype, payload, vlans=(), dst=MAC_B, src=MAC_A):
    """Ethernet header; vlans is a list of (tpid, vid) outermost first."""
    out = dst + src
    for tpid, vid in vlans:
        out += struct.pack("!HH", tpid, vid)
    return out + struct.pack("!H", ethertype) + payload


def pad(frame, length=60):
    """Ethernet minimum frame padding (without FCS)."""
    return frame + b"\0" * max(0, length - len(frame))


def tcp(sport, dport, payload=b"", flags=0x18, offset=5, options=b""):
    hdr = struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, offset << 4, flags, 65535, 0, 0)
    return hdr + options + payload


def udp(sport, dport, payload=b"", length=None):
    n = 8 + len(payload) if length is None else length
    return struct.pack("!HHHH", sport, dport, n, 0) + payload


def icmp_echo(ident=1, seq=1, payload=b"ping"):
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload
    c = csum(body)
    return body[:2] + struct.pack("!H", c) + body[4:]


def icmpv6_echo(ident=1, seq=1, payload=b"ping6"):
    return struct.pack("!BBHHH", 128, 0, 0, ident, seq) + payload


def sctp(sport, dport, payload=b"\0" * 16):
    return struct.pack("!HHII", sport, dport, 0x1234, 0) + payload


def l4_checksum(l4, src, dst, proto):
    """Fill the TCP/UDP checksum of l4 over the IPv4/IPv6 pseudo header."""
    if proto not in (TCP, UDP) or len(l4) < (20 if proto == TCP else 8):
        return l4  # not a TCP/UDP header, or a deliberately truncated one: leave it as built
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, proto, len(l4))
    else:
        pseudo = src + dst + struct.pack("!IxxxB", len(l4), proto)
    off = 16 if proto == TCP else 6
    l4 = l4[:off] + b"\0\0" + l4[off + 2:]
    c = csum(pseudo + l4)
    if proto == UDP and c == 0:
        c = 0xFFFF
    return l4[:off] + struct.pack("!H", c) + l4[off + 2:]


def ipv4(src, dst, proto, l4, ttl=64, ident=1, flags_frag=0, options=b"", total=None,
         ihl=None, version=4, checksum=None, fill_l4=True):
    s, d = ip4(src), ip4(dst)
    if fill_l4 and (flags_frag & 0x3FFF) == 0:
        l4 = l4_checksum(l4, s, d, proto)
    hl = 5 + len(options) // 4 if ihl is None else ihl
    tl = 20 + len(options) + len(l4) if total is None else total
    hdr = struct.pack("!BBHHHBBH4s4s", (version << 4) | hl, 0, tl, ident, flags_frag, ttl,
                      proto, 0, s, d) + options
    c = csum(hdr) if checksum is None else checksum
    return hdr[:10] + struct.pack("!H", c) + hdr[12:] + l4


def ipv6(src, dst, nh, payload, plen=None, version=6, hop_limit=64, fill_l4=True, l4_proto=None):
    s, d = ip6(src), ip6(dst)
    if fill_l4 and l4_proto is None and nh in (TCP, UDP):
        payload = l4_checksum(payload, s, d, nh)
    n = len(payload) if plen is None else plen
    return struct.pack("!IHBB16s16s", version << 28, n, nh, hop_limit, s, d) + payload


def ext(nh, body=b"\0" * 6):
    """A generic IPv6 extension header ((len+1)*8 bytes) with next header nh."""
    total = 2 + len(body)
    assert total % 8 == 0
    return struct.pack("!BB", nh, total // 8 - 1) + body


def frag6(nh, offset_units=0, more=False, ident=7):
    return struct.pack("!BBHI", nh, 0, (offset_units << 3) | (1 if more else 0), ident)


def arp():
    return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, MAC_A, ip4("10.1.1.1"),
                       b"\0" * 6, ip4("10.1.1.254"))


def lldp():
    chassis = struct.pack("!HB6s", (1 << 9) | 7, 4, MAC_A)
    port = struct.pack("!HB", (2 << 9) | 3, 7) + b"p1"
    ttl = struct.pack("!HH", (3 << 9) | 2, 120)
    return chassis + port + ttl + b"\0\0"


def write_pcap(path, frames, snaplen=65535):
    """Classic pcap (microsecond timestamps, LINKTYPE_ETHERNET)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1))
        for i, fr in enumerate(frames):
            f.write(struct.pack("<IIII", 1700000000 + i // 1000, (i % 1000) * 1000, len(fr), len(fr)))
            f.write(fr)


def read_pcap(path):
    """Frames of a classic pcap file (either byte order, us or ns timestamps)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise ValueError(f"{path}: not a pcap file ({len(data)} bytes)")
    magic = struct.unpack("<I", data[:4])[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        e = "<"
    elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
        e = ">"
    else:
        raise ValueError(f"{path}: bad pcap magic {magic:#x}")
    frames, off = [], 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(e + "IIII", data[off:off + 16])
        frames.append(data[off + 16:off + 16 + incl])
        off += 16 + incl
    return frames
