#!/usr/bin/env python3
"""General-purpose and image codecs on the same IDX images `vaelab compress` codes: bits/dim.

    python3 scripts/codec_baselines.py IMAGES-IDX3-UBYTE[.gz]

gzip, bzip2 and xz at their strongest settings on the raw pixel bytes (one stream for all
images, as the paper's table does), and PNG per image (8-bit grey, or 1-bit where every pixel
is 0 or 255; each row filtered with the filter of least absolute sum, libpng's heuristic;
zlib level 9; the whole file counted: signature, IHDR, IDAT, IEND). Standard library only.
"""
import bz2
import gzip
import lzma
import struct
import sys
import zlib


def read_idx(path):
    raw = open(path, "rb").read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return dims, raw[4 + 4 * ndim :]


def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def filtered(row, prev):
    """The row under PNG's five filters (1 byte per pixel), the one of least absolute sum."""
    n = len(row)
    left = lambda r, i: r[i - 1] if i else 0
    cands = [
        bytes(row),
        bytes((row[i] - left(row, i)) & 255 for i in range(n)),
        bytes((row[i] - prev[i]) & 255 for i in range(n)),
        bytes((row[i] - (left(row, i) + prev[i]) // 2) & 255 for i in range(n)),
        bytes((row[i] - paeth(left(row, i), prev[i], prev[i - 1] if i else 0)) & 255 for i in range(n)),
    ]
    score = lambda c: sum(v if v < 128 else 256 - v for v in c)
    best = min(range(5), key=lambda f: score(cands[f]))
    return bytes([best]) + cands[best]


def png(pixels, h, w, binary):
    if binary:
        # 1 bit per pixel, rows padded to whole bytes; filter 0 (filters act on bytes).
        raw = b""
        for y in range(h):
            row = pixels[y * w : (y + 1) * w]
            bits = 0
            out = bytearray()
            for x, p in enumerate(row):
                bits = (bits << 1) | (p >= 128)
                if x % 8 == 7:
                    out.append(bits)
                    bits = 0
            if w % 8:
                out.append(bits << (8 - w % 8))
            raw += b"\x00" + bytes(out)
        depth = 1
    else:
        prev = bytes(w)
        raw = b""
        for y in range(h):
            row = pixels[y * w : (y + 1) * w]
            raw += filtered(row, prev)
            prev = row
        depth = 8
    ihdr = struct.pack(">IIBBBBB", w, h, depth, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def main():
    dims, data = read_idx(sys.argv[1])
    n, h, w = dims[0], dims[-2], dims[-1]
    d = len(data) // n
    binary = all(b in (0, 255) for b in data)
    rates = {
        "gzip -9": len(gzip.compress(data, 9)),
        "bzip2 -9": len(bz2.compress(data, 9)),
        "xz -9e": len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)),
        "PNG" + (" (1-bit)" if binary else ""): sum(
            len(png(data[i * d : (i + 1) * d], h, w, binary)) for i in range(n)
        ),
    }
    if binary:
        # The same bits packed 8 to a byte, so the general codecs see what a binary file holds.
        packed = bytes(
            sum((data[i + j] >= 128) << (7 - j) for j in range(8)) for i in range(0, len(data) - 7, 8)
        )
        rates["gzip -9 (packed bits)"] = len(gzip.compress(packed, 9))
        rates["bzip2 -9 (packed bits)"] = len(bz2.compress(packed, 9))
        rates["xz -9e (packed bits)"] = len(lzma.compress(packed, preset=9 | lzma.PRESET_EXTREME))
    pixels = n * d
    print(f"{n} images of {h}x{w}, {'binary' if binary else '8-bit'}: {pixels} pixels")
    for name, size in rates.items():
        print(f"{name:24} {size:10d} bytes  {8 * size / pixels:.4f} bits/dim")


if __name__ == "__main__":
    main()
