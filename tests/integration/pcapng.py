"""A reader of the capture store's files for the tests, written from CONTRACT "Capture store"
alone (not from lib/capture), so the two are checked against each other.

read_pcapng(path) -> (interfaces, packets): interfaces are the if_name of each IDB of the
first section; packets are (interface id, timestamp ns, captured bytes, original length) of
every EPB of every section, in file order. chunks(path) walks the chunk trailers.
"""
import struct

SHB, IDB, EPB, TRAILER = 0x0A0D0D0A, 1, 6, 0x80534C43


def _options(body):
    out, off = {}, 0
    while off + 4 <= len(body):
        code, length = struct.unpack_from("<HH", body, off)
        off += 4
        if code == 0:
            break
        out.setdefault(code, body[off:off + length])
        off += (length + 3) & ~3
    return out


def blocks(data):
    """(offset, type, body) of every block; stops at anything that is not a whole block."""
    off = 0
    while off + 12 <= len(data):
        btype, blen = struct.unpack_from("<II", data, off)
        if blen < 12 or blen % 4 or off + blen > len(data):
            raise ValueError(f"bad block length {blen} at offset {off}")
        if struct.unpack_from("<I", data, off + blen - 4)[0] != blen:
            raise ValueError(f"block at {off}: trailing length differs")
        yield off, btype, data[off + 8:off + blen - 4]
        off += blen
    if off != len(data):
        raise ValueError(f"{len(data) - off} trailing bytes at offset {off}")


def read_pcapng(path):
    data = open(path, "rb").read()
    interfaces, sections, packets = [], 0, []
    for _, btype, body in blocks(data):
        if btype == SHB:
            sections += 1
            if struct.unpack_from("<I", body, 0)[0] != 0x1A2B3C4D:
                raise ValueError("SHB byte-order magic")
        elif btype == IDB and sections == 1:
            link, _, snap = struct.unpack_from("<HHI", body, 0)
            opts = _options(body[8:])
            interfaces.append(opts.get(2, b"").decode())
            if link != 1 or opts.get(9) != b"\x09":
                raise ValueError(f"IDB: link type {link}, if_tsresol {opts.get(9)}")
        elif btype == EPB:
            iface, hi, lo, cap, orig = struct.unpack_from("<IIIII", body, 0)
            packets.append((iface, (hi << 32) | lo, bytes(body[20:20 + cap]), orig))
    return interfaces, packets


def chunks(path):
    """(offset, length, seq, packets) of every chunk, from its SHB to the end of its trailer."""
    data = open(path, "rb").read()
    out, start, count = [], None, 0
    for off, btype, body in blocks(data):
        if btype == SHB:
            start, count = off, 0
        elif btype == EPB:
            count += 1
        elif btype == TRAILER:
            magic, version, seq = struct.unpack_from("<4sIQ", body, 0)
            npk = struct.unpack_from("<I", body, 32)[0]
            end = off + 12 + len(body)
            if magic != b"SLCK" or version != 1 or npk != count or end % 4096:
                raise ValueError(f"trailer at {off}: {magic} v{version}, {npk} vs {count} packets")
            out.append((start, end - start, seq, npk))
    return out
