#!/usr/bin/env python3
"""Decode a PNG (8-bit greyscale/RGB/RGBA, not interlaced) with the standard library only
and check the picture is not blank: print the share of non-white pixels and the number of
distinct colours; exit 1 when below the given minimums.

usage: png_check.py FILE [min_nonwhite_fraction] [min_colours]"""
import struct
import sys
import zlib


def decode(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise SystemExit(f"{path}: not a PNG file")
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    w, h, depth, ctype, _, _, interlace = hdr
    channels = {0: 1, 2: 3, 6: 4, 4: 2}.get(ctype)
    if depth != 8 or channels is None or interlace:
        raise SystemExit(f"{path}: unsupported PNG (depth {depth}, colour type {ctype}, interlace {interlace})")
    raw = zlib.decompress(idat)
    stride = w * channels
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + ((a + b) >> 1)) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pr) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, channels, rows


def main():
    path = sys.argv[1]
    min_frac = float(sys.argv[2]) if len(sys.argv) > 2 else 0.02
    min_colours = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    w, h, ch, rows = decode(path)
    nonwhite, colours = 0, set()
    for row in rows[::2]:  # every other row is plenty
        for x in range(0, w * ch, ch):
            px = row[x:x + min(ch, 3)]
            colours.add(px)
            if any(v < 245 for v in px):
                nonwhite += 1
    frac = nonwhite / ((h + 1) // 2 * w)
    print(f"{path}: {w}x{h}, non-white {frac:.3f}, {len(colours)} colours")
    if frac < min_frac or len(colours) < min_colours:
        print(f"FAIL: looks blank (need non-white >= {min_frac}, colours >= {min_colours})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
