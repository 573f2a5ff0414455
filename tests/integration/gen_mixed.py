#!/usr/bin/env python3
"""Writes tests/integration/data/mixed.pcap and mixed.expect.json.

Every packet is built by hand and labelled with what sluice must do with it under
tests/integration/data/flows.yaml: the validation reason it is dropped for, or the rule (or
`default` / `non_ip`) that takes it and the ports it must leave on. The labels are written
here, next to the packet, by a person reading CONTRACT.md and flows.yaml: they are the test's
expectations, not a second implementation of sluice.

  tests/integration/gen_mixed.py [OUTDIR]     (default: tests/integration/data)

The outputs are committed; tests/integration/test_forwarding.py checks they are up to date.
"""
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from packets import (ESP, ETH_ARP, ETH_IPV4, ETH_IPV6, ETH_LLDP, ETH_QINQ, ETH_VLAN, GRE, ICMP,  # noqa: E402
                     ICMPV6, SCTP, TCP, UDP, arp, eth, ext, frag6, icmp_echo, icmpv6_echo, ipv4,
                     ipv6, lldp, pad, sctp, tcp, udp, write_pcap)

PACKETS = []  # (frame, expectation, description)


def fwd(rule, *ports):
    return {"rule": rule, "out": list(ports)}


def drop(rule, *mirror):
    return {"rule": rule, "out": list(mirror), "dropped": True}


def bad(reason):
    return {"drop": reason}


def add(desc, frame, expect):
    PACKETS.append((frame, expect, desc))


def v4(src, dst, proto, l4, **kw):
    return eth(ETH_IPV4, ipv4(src, dst, proto, l4, **kw))


def v6(src, dst, nh, payload, **kw):
    return eth(ETH_IPV6, ipv6(src, dst, nh, payload, **kw))


def valid_traffic():
    web = tcp(40000, 80, b"GET / HTTP/1.1\r\nHost: intranet\r\n\r\n")
    add("v4 tcp to web server :80", v4("10.1.1.1", "192.168.1.10", TCP, web), fwd("web-to-lan", "lan", "tap"))
    add("v4 tcp :443 top of range", v4("10.1.1.2", "192.168.1.11", TCP, tcp(40001, 443)), fwd("web-to-lan", "lan", "tap"))
    add("v4 tcp :444 just past the range", v4("10.1.1.2", "192.168.1.11", TCP, tcp(40001, 444)), fwd("default", "dmz"))
    add("v4 tcp :79 just below the range", v4("10.1.1.2", "192.168.1.11", TCP, tcp(40001, 79)), fwd("default", "dmz"))
    add("v4 tcp to 192.168.0.255 (outside /24)", v4("10.1.1.2", "192.168.0.255", TCP, tcp(40001, 80)), fwd("default", "dmz"))
    add("v4 telnet", v4("10.1.1.1", "192.168.1.10", TCP, tcp(40002, 23)), drop("drop-telnet"))
    add("v4 telnet from anywhere", v4("172.16.0.9", "8.8.4.4", TCP, tcp(1, 23)), drop("drop-telnet"))
    add("v4 dns query", v4("10.1.1.1", "8.8.8.8", UDP, udp(5353, 53, b"\x12\x34" + b"\0" * 10)), fwd("dns-from-clients", "lan"))
    add("v4 dns query src port 1024 (range start)", v4("10.200.0.1", "8.8.8.8", UDP, udp(1024, 53, b"q")), fwd("dns-from-clients", "lan"))
    add("v4 dns query src port 1023 (below range)", v4("10.200.0.1", "8.8.8.8", UDP, udp(1023, 53, b"q")), fwd("default", "dmz"))
    add("v4 dns from outside 10/8", v4("11.0.0.1", "8.8.8.8", UDP, udp(5353, 53, b"q")), fwd("default", "dmz"))
    add("v4 dns from the blocked /16 (priority 150 beats 100)", v4("10.66.3.3", "8.8.8.8", UDP, udp(5353, 53, b"q")), drop("block-bad-net"))
    add("v4 web from the blocked /16", v4("10.66.0.1", "192.168.1.10", TCP, tcp(40000, 80)), drop("block-bad-net"))
    add("v4 icmp echo", v4("10.1.1.1", "192.168.1.1", ICMP, icmp_echo()), fwd("icmp-to-lan", "lan"))
    add("v4 sctp m3ua", v4("10.9.9.9", "192.168.5.5", SCTP, sctp(2905, 2905)), fwd("sigtran", "dmz", "tap"))
    add("v4 sctp other port", v4("10.9.9.9", "192.168.5.5", SCTP, sctp(2905, 2906)), fwd("default", "dmz"))
    add("v4 gre", v4("10.1.1.1", "192.168.9.9", GRE, b"\0\0\x08\x00" + b"x" * 20), fwd("default", "dmz"))
    add("v4 esp", v4("10.1.1.1", "192.168.9.9", ESP, b"\0\0\0\x01\0\0\0\x01" + b"y" * 24), fwd("default", "dmz"))
    add("v4 irc (drop + mirror to tap)", v4("10.1.1.1", "198.51.100.7", TCP, tcp(40003, 6667)), drop("span-irc", "tap"))
    add("v4 udp :9999 (tie: earlier rule wins)", v4("10.1.1.1", "192.168.3.3", UDP, udp(7000, 9999, b"t")), fwd("tie-first", "lan"))
    add("v4 udp :9998 (only the second tie rule)", v4("10.1.1.1", "192.168.3.3", UDP, udp(7000, 9998, b"t")), drop("tie-second"))
    add("v4 tcp with options (IHL 8)",
        v4("10.1.1.5", "192.168.1.20", TCP, tcp(40004, 80), options=b"\x01\x01\x01\x00" + b"\x44\x08\x05\x00" + b"\0" * 4),
        fwd("web-to-lan", "lan", "tap"))
    add("v4 udp padded to 60 bytes", pad(v4("10.1.1.1", "9.9.9.9", UDP, udp(5353, 53))), fwd("dns-from-clients", "lan"))
    add("v4 tcp with 6 bytes of non-zero padding", v4("10.1.1.1", "192.168.1.10", TCP, tcp(40005, 80)) + b"\xee" * 6,
        fwd("web-to-lan", "lan", "tap"))
    add("v4 1514-byte tcp", v4("10.1.1.1", "192.168.1.10", TCP, tcp(40006, 443, b"z" * 1460)), fwd("web-to-lan", "lan", "tap"))
    # Fragments: the first carries the UDP header, so the port rule matches; the rest match only
    # rules without port fields (frag-dst, priority 10).
    first = udp(5000, 53, b"a" * 24, length=8 + 48)
    add("v4 first fragment udp :53", v4("10.1.1.1", "192.168.2.7", UDP, first, flags_frag=0x2000, ident=77),
        fwd("dns-from-clients", "lan"))
    add("v4 middle fragment", v4("10.1.1.1", "192.168.2.7", UDP, b"b" * 16, flags_frag=0x2000 | 4, ident=77),
        fwd("frag-dst", "lan"))
    add("v4 last fragment", v4("10.1.1.1", "192.168.2.7", UDP, b"c" * 8, flags_frag=6, ident=77), fwd("frag-dst", "lan"))
    add("v4 non-first fragment elsewhere", v4("10.1.1.1", "192.168.77.7", UDP, b"c" * 8, flags_frag=6, ident=78),
        fwd("default", "dmz"))
    # VLAN and QinQ: the tags stay on the forwarded frame.
    add("vlan 100 v4 tcp :443", eth(ETH_IPV4, ipv4("10.1.1.1", "192.168.1.12", TCP, tcp(40007, 443)), vlans=[(ETH_VLAN, 100)]),
        fwd("web-to-lan", "lan", "tap"))
    add("qinq 200/300 v4 dns", eth(ETH_IPV4, ipv4("10.2.2.2", "8.8.8.8", UDP, udp(6000, 53, b"q")),
                                   vlans=[(ETH_QINQ, 200), (ETH_VLAN, 300)]), fwd("dns-from-clients", "lan"))
    add("vlan v6 tcp :443", eth(ETH_IPV6, ipv6("2001:db8:5::1", "2001:db8:1::5", TCP, tcp(40008, 443)), vlans=[(ETH_VLAN, 10)]),
        fwd("v6-web", "lan"))
    # IPv6.
    add("v6 tcp :443", v6("2001:db8:5::1", "2001:db8:1::5", TCP, tcp(40009, 443, b"hello")), fwd("v6-web", "lan"))
    add("v6 tcp :80 (no v6 rule)", v6("2001:db8:5::1", "2001:db8:1::5", TCP, tcp(40009, 80)), fwd("default", "dmz"))
    add("v6 tcp :443 outside the /48", v6("2001:db8:5::1", "2001:db8:2::5", TCP, tcp(40009, 443)), fwd("default", "dmz"))
    add("v6 telnet (family-less rule)", v6("2001:db8:5::1", "2001:db8:1::5", TCP, tcp(40010, 23)), drop("drop-telnet"))
    add("v6 from the blocked /48", v6("2001:db8:bad::1", "2001:db8:1::5", UDP, udp(1000, 2000, b"x")), drop("v6-drop-net"))
    add("v6 icmpv6 echo", v6("2001:db8:5::1", "2001:db8:1::1", ICMPV6, icmpv6_echo()), fwd("icmpv6", "lan"))
    hbh_dst = ext(60) + ext(TCP, b"\x01\x04\0\0\0\0")
    add("v6 hop-by-hop + dest options + tcp :443",
        v6("2001:db8:5::1", "2001:db8:1::6", 0, hbh_dst + tcp(40011, 443), l4_proto=TCP), fwd("v6-web", "lan"))
    chain = b"".join(ext(nh) for nh in (60, 43, 60, 60, 60, 60, 60)) + ext(TCP)
    add("v6 eight extension headers + tcp :443",
        v6("2001:db8:5::1", "2001:db8:1::7", 0, chain + tcp(40012, 443), l4_proto=TCP), fwd("v6-web", "lan"))
    add("v6 first fragment tcp :443", v6("2001:db8:5::1", "2001:db8:1::8", 44, frag6(TCP, 0, True) + tcp(40013, 443, b"f" * 8),
                                         l4_proto=TCP), fwd("v6-web", "lan"))
    add("v6 non-first fragment", v6("2001:db8:5::1", "2001:db8:1::8", 44, frag6(TCP, 3, False) + b"g" * 16, l4_proto=TCP),
        fwd("v6-frag-dst", "lan"))
    add("v6 padded udp", pad(v6("2001:db8:5::1", "2001:db8:9::9", UDP, udp(1, 2)), 80), fwd("default", "dmz"))
    # Non-IP.
    add("arp request", pad(eth(ETH_ARP, arp(), dst=b"\xff" * 6)), fwd("non_ip", "lan"))
    add("lldp", pad(eth(ETH_LLDP, lldp(), dst=bytes.fromhex("0180c200000e"))), fwd("non_ip", "lan"))
    add("vlan-tagged arp", pad(eth(ETH_ARP, arp(), vlans=[(ETH_VLAN, 5)], dst=b"\xff" * 6)), fwd("non_ip", "lan"))
    # Traffic that only an in_port rule for lan would catch: arrives on wan, so the rule stays at 0.
    add("v4 udp :161 (lan-only rule must not match on wan)", v4("10.1.1.1", "192.168.1.1", UDP, udp(3000, 161, b"s")),
        fwd("snmp-from-wan", "dmz"))


def malformed_traffic():
    ok4 = ipv4("10.1.1.1", "192.168.1.10", TCP, tcp(1, 80))
    # runt: shorter than the Ethernet header, or than its VLAN tags.
    add("runt: 10 bytes", b"\x02" * 10, bad("runt"))
    add("runt: 13 bytes", eth(ETH_IPV4, b"")[:13], bad("runt"))
    add("runt: vlan tag cut", eth(ETH_IPV4, b"", vlans=[(ETH_VLAN, 1)])[:16], bad("runt"))
    # l3_truncated
    add("l3_truncated: 19-byte ipv4", eth(ETH_IPV4, ok4[:19]), bad("l3_truncated"))
    add("l3_truncated: 39-byte ipv6", eth(ETH_IPV6, ipv6("2001:db8::1", "2001:db8::2", 59, b"")[:39]), bad("l3_truncated"))
    add("l3_truncated: qinq ipv4 of 12 bytes", eth(ETH_IPV4, ok4[:12], vlans=[(ETH_QINQ, 1), (ETH_VLAN, 2)]), bad("l3_truncated"))
    # ipv4_version
    add("ipv4_version: 6 in an ipv4 frame", v4("10.1.1.1", "10.2.2.2", UDP, udp(1, 2), version=6), bad("ipv4_version"))
    add("ipv4_version: 0", v4("10.1.1.1", "10.2.2.2", UDP, udp(1, 2), version=0), bad("ipv4_version"))
    # ipv4_ihl
    add("ipv4_ihl: 4", v4("10.1.1.1", "10.2.2.2", UDP, udp(1, 2), ihl=4), bad("ipv4_ihl"))
    add("ipv4_ihl: 15 beyond the frame", v4("10.1.1.1", "10.2.2.2", UDP, udp(1, 2), ihl=15), bad("ipv4_ihl"))
    add("ipv4_ihl: 0", v4("10.1.1.1", "10.2.2.2", UDP, udp(1, 2), ihl=0), bad("ipv4_ihl"))
    # ipv4_length
    add("ipv4_length: total 19 < header", v4("10.1.1.1", "10.2.2.2", UDP, udp(1, 2), total=19), bad("ipv4_length"))
    add("ipv4_length: total one past the frame", v4("10.1.1.1", "10.2.2.2", UDP, udp(1, 2), total=29), bad("ipv4_length"))
    add("ipv4_length: total 1500 in a short frame", v4("10.1.1.1", "10.2.2.2", TCP, tcp(1, 2), total=1500), bad("ipv4_length"))
    # ipv4_checksum
    add("ipv4_checksum: zero", v4("10.1.1.1", "192.168.1.10", TCP, tcp(40000, 80), checksum=0), bad("ipv4_checksum"))
    add("ipv4_checksum: off by one", v4("10.1.1.1", "10.2.2.2", UDP, udp(1, 53), checksum=0x1234), bad("ipv4_checksum"))
    # ipv6_version
    add("ipv6_version: 4 in an ipv6 frame", v6("2001:db8::1", "2001:db8::2", UDP, udp(1, 2), version=4), bad("ipv6_version"))
    add("ipv6_version: 7", v6("2001:db8::1", "2001:db8::2", UDP, udp(1, 2), version=7), bad("ipv6_version"))
    # ipv6_length
    add("ipv6_length: payload one byte past the frame", v6("2001:db8::1", "2001:db8::2", UDP, udp(1, 2), plen=9), bad("ipv6_length"))
    add("ipv6_length: payload 1000", v6("2001:db8::1", "2001:db8::2", TCP, tcp(1, 2), plen=1000), bad("ipv6_length"))
    # ipv6_ext
    add("ipv6_ext: hop-by-hop length past the payload",
        v6("2001:db8::1", "2001:db8::2", 0, struct.pack("!BB", TCP, 4) + b"\0" * 14 + tcp(1, 2), l4_proto=TCP), bad("ipv6_ext"))
    nine = b"".join(ext(60) for _ in range(8)) + ext(TCP)
    add("ipv6_ext: nine extension headers", v6("2001:db8::1", "2001:db8::2", 60, nine + tcp(1, 443), l4_proto=TCP), bad("ipv6_ext"))
    add("ipv6_ext: hop-by-hop not first", v6("2001:db8::1", "2001:db8::2", 60, ext(0) + ext(TCP) + tcp(1, 2), l4_proto=TCP),
        bad("ipv6_ext"))
    add("ipv6_ext: chain cut after one byte", v6("2001:db8::1", "2001:db8::2", 60, b"\x06", l4_proto=TCP), bad("ipv6_ext"))
    # l4_truncated
    add("l4_truncated: tcp of 19 bytes", v4("10.1.1.1", "192.168.1.10", TCP, tcp(1, 80)[:19]), bad("l4_truncated"))
    add("l4_truncated: udp of 7 bytes", v4("10.1.1.1", "8.8.8.8", UDP, udp(1, 53)[:7]), bad("l4_truncated"))
    add("l4_truncated: icmp of 4 bytes", v4("10.1.1.1", "8.8.8.8", ICMP, icmp_echo()[:4]), bad("l4_truncated"))
    add("l4_truncated: padded frame, udp cut by total length",
        pad(v4("10.1.1.1", "8.8.8.8", UDP, udp(1, 53)[:4])), bad("l4_truncated"))
    add("l4_truncated: v6 sctp of 11 bytes", v6("2001:db8::1", "2001:db8::2", SCTP, sctp(1, 2)[:11]), bad("l4_truncated"))
    # tcp_offset
    add("tcp_offset: 4", v4("10.1.1.1", "192.168.1.10", TCP, tcp(1, 80, offset=4)), bad("tcp_offset"))
    add("tcp_offset: 15 past the payload", v4("10.1.1.1", "192.168.1.10", TCP, tcp(1, 80, b"x" * 10, offset=15)), bad("tcp_offset"))
    add("tcp_offset: v6, 6 with 20 bytes", v6("2001:db8::1", "2001:db8:1::5", TCP, tcp(1, 443, offset=6)), bad("tcp_offset"))
    # udp_length
    add("udp_length: 7", v4("10.1.1.1", "8.8.8.8", UDP, udp(1, 53, b"abc", length=7)), bad("udp_length"))
    add("udp_length: one past the payload", v4("10.1.1.1", "8.8.8.8", UDP, udp(1, 53, b"abc", length=12)), bad("udp_length"))
    add("udp_length: v6, 100", v6("2001:db8::1", "2001:db8::2", UDP, udp(1, 53, b"abc", length=100)), bad("udp_length"))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
    os.makedirs(out, exist_ok=True)
    valid_traffic()
    malformed_traffic()
    # Interleave so that valid and malformed packets share bursts.
    valid = [p for p in PACKETS if "drop" not in p[1]]
    broken = [p for p in PACKETS if "drop" in p[1]]
    mixed = []
    while valid or broken:
        if valid:
            mixed.append(valid.pop(0))
        if broken:
            mixed.append(broken.pop(0))
    write_pcap(os.path.join(out, "mixed.pcap"), [p[0] for p in mixed])
    manifest = [{"n": i, "len": len(f), "desc": d, **e} for i, (f, e, d) in enumerate(mixed)]
    with open(os.path.join(out, "mixed.expect.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(f"wrote {len(mixed)} packets to {out}/mixed.pcap and mixed.expect.json")


if __name__ == "__main__":
    main()
