#!/usr/bin/env python3
"""Amplification inputs: files of a few KB that cost minutes or gigabytes when budgets are per
archive level or per parser instance instead of per file. Target: each ends within 5 s and
512 MiB RSS (2 cores), with an `error` finding where a budget stopped it.

usage:
  bench/amplification.py gen OUTDIR
  bench/amplification.py run OUTDIR [--binary PATH] [--runs N]

gen writes (standard library only):
  shared-headers.zip   central-directory entries with distinct names sharing one local header,
                       nested 6 levels deep with 200 names each (200^6 member scans if each
                       name were scanned)
  overlap.zip          4,000 stored members whose data all run to the end of a 256 KiB region
  nested-bombs.zip     42.zip-style: 16 deflated copies per level, 4 levels, of a tar holding
                       1 GiB of zeros then a pickle (the tar must be decoded to its end)
  gz-gz-tar.gz         gzip of gzip of a tar of 16 GiB of zeros
  tar.xz, tar.bz2      a tar of 1 GiB of zeros (xz and bzip2 decode zeros at tens of MB/s)
  buffers.zip          deflated zips inside deflated zips, each level 100 MiB of stored zeros
                       (every level must be held in memory at once to be opened)
  members.tar.gz       300,000 empty tar members
  pax-chain.tar        5,000 pax headers before one member
  hdf5-chain.zip       32 HDF5 files whose object headers continue through 9,000 blocks each
  hdf5-loop.h5         an HDF5 object header continuation that points back at itself

run times `BINARY scan --format json FILE` per input (median of N runs) and reports wall time,
peak RSS (wait4), the verdict and the finding that stopped it.
"""
import argparse
import bz2
import gzip
import io
import json
import lzma
import os
import statistics
import struct
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EVIL = b"\x80\x02cposix\nsystem\nq\x00X\x0a\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03."


def le16(n):
    return struct.pack("<H", n)


def le32(n):
    return struct.pack("<I", n)


def shared_header_zip(inner, k):
    crc = zlib.crc32(inner)
    out = b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00" + le32(crc) + le32(len(inner)) * 2 + le16(1) + le16(0)
    out += b"m" + inner
    cd_at = len(out)
    for i in range(k):
        name = b"copy%05d.zip" % i
        out += b"PK\x01\x02\x14\x00\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00" + le32(crc) + le32(len(inner)) * 2
        out += le16(len(name)) + b"\0" * 12 + le32(0) + name
    cd_len = len(out) - cd_at
    return out + b"PK\x05\x06\0\0\0\0" + le16(k) * 2 + le32(cd_len) + le32(cd_at) + b"\0\0"


def overlap_zip(n, tail):
    out, locals_ = b"", []
    for i in range(n):
        locals_.append(len(out))
        name = b"m%05d" % i
        out += b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00" + b"\0" * 12 + le16(len(name)) + le16(0) + name
    out += b"a" * tail
    end, cd_at = len(out), len(out)
    for i, at in enumerate(locals_):
        name = b"m%05d" % i
        size = end - (at + 30 + len(name))
        out += b"PK\x01\x02\x14\x00\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00" + le32(0) + le32(size) * 2
        out += le16(len(name)) + b"\0" * 12 + le32(at) + name
    cd_len = len(out) - cd_at
    return out + b"PK\x05\x06\0\0\0\0" + le16(n) * 2 + le32(cd_len) + le32(cd_at) + b"\0\0"


def zeros_tar(size, then=EVIL):
    """A tar stream: one member of `size` zeros, then a pickle member; written to a zlib stream."""
    class Zeros(io.RawIOBase):
        def __init__(self, n):
            self.n = n

        def readable(self):
            return True

        def readinto(self, b):
            k = min(len(b), self.n)
            b[:k] = bytes(k)
            self.n -= k
            return k

    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w|") as t:
        ti = tarfile.TarInfo("zeros")
        ti.size = size
        t.addfile(ti, io.BufferedReader(Zeros(size), 1 << 20))
        ti = tarfile.TarInfo("pickle")
        ti.size = len(then)
        t.addfile(ti, io.BytesIO(then))
    return bio.getvalue()


def deflate_stream(chunks):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = [c.compress(ch) for ch in chunks]
    out.append(c.flush())
    return b"".join(out)


def gz_of_zero_tar(size, c=None):
    """gzip (or `c`) of a tar with `size` zeros, built without holding the zeros."""
    c = c or zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = []
    hdr = tarfile.TarInfo("zeros")
    hdr.size = size
    parts.append(c.compress(hdr.tobuf(tarfile.GNU_FORMAT)))
    block = bytes(1 << 20)
    left = size
    while left:
        k = min(left, len(block))
        parts.append(c.compress(block[:k]))
        left -= k
    tail = tarfile.TarInfo("pickle")
    tail.size = len(EVIL)
    parts.append(c.compress(tail.tobuf(tarfile.GNU_FORMAT) + EVIL + b"\0" * (-len(EVIL) % 512) + b"\0" * 1024))
    parts.append(c.flush())
    return b"".join(parts)


def hdf5_chain(n):
    def cont(to):
        return bytes([0x10, 16, 0, 0]) + struct.pack("<QQ", to, 28)

    b = b"\x89HDF\r\n\x1a\n\x02\x08\x08\x00" + struct.pack("<QQQQ", 0, 2**64 - 1, 0, 48) + b"\0" * 4
    first = 48 + 7 + 20 + 4
    b += b"OHDR\x02\x00\x14" + cont(first) + b"\0" * 4
    for i in range(n):
        b += b"OCHK" + (cont(first + 28 * (i + 1)) if i + 1 < n else bytes([0, 16, 0, 0]) + b"\0" * 16) + b"\0" * 4
    b = bytearray(b)
    struct.pack_into("<Q", b, 28, len(b))
    return bytes(b)


def hdf5_loop(chunk):
    """An object header whose continuation block (of `chunk` bytes) continues into itself."""
    b = bytearray(b"\x89HDF\r\n\x1a\n\x02\x08\x08\x00" + struct.pack("<QQQQ", 0, 2**64 - 1, 0, 48) + b"\0" * 4)
    first = 48 + 7 + 20 + 4
    b += b"OHDR\x02\x00\x14" + bytes([0x10, 16, 0, 0]) + struct.pack("<QQ", first, chunk) + b"\0" * 4
    block = bytearray(chunk)
    block[:4] = b"OCHK"
    block[4:24] = bytes([0x10, 16, 0, 0]) + struct.pack("<QQ", first, chunk)
    b += block
    struct.pack_into("<Q", b, 28, len(b))
    return bytes(b)


def stored_zip(members):
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w") as z:
        for name, data, method in members:
            z.writestr(zipfile.ZipInfo(name), data, compress_type=method)
    return bio.getvalue()


def gen(out):
    os.makedirs(out, exist_ok=True)
    files = {}
    z = stored_zip([("archive/data.pkl", EVIL, zipfile.ZIP_STORED)])
    for _ in range(6):
        z = shared_header_zip(z, 200)
    files["shared-headers.zip"] = z
    files["overlap.zip"] = overlap_zip(4000, 256 << 10)

    bottom = stored_zip([("z.tar", zeros_tar(1 << 30), zipfile.ZIP_DEFLATED)])
    level = bottom
    for i in range(4):
        level = stored_zip([("l%d_%02d.zip" % (i, k), level, zipfile.ZIP_DEFLATED) for k in range(16)])
    files["nested-bombs.zip"] = level

    inner = gz_of_zero_tar(16 << 30)
    files["gz-gz-tar.gz"] = gzip.compress(inner, 9, mtime=0)
    files["tar.xz"] = gz_of_zero_tar(1 << 30, lzma.LZMACompressor(format=lzma.FORMAT_XZ, preset=6))
    files["tar.bz2"] = gz_of_zero_tar(1 << 30, bz2.BZ2Compressor(9))

    z = stored_zip([("archive/data.pkl", EVIL, zipfile.ZIP_STORED)])
    for i in range(6):
        z = stored_zip([("pad%d.bin" % i, bytes(100 << 20), zipfile.ZIP_STORED), ("l%d.zip" % i, z, zipfile.ZIP_DEFLATED)])
        z = stored_zip([("c%d.zip" % i, z, zipfile.ZIP_DEFLATED)])
    files["buffers.zip"] = z

    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w|", format=tarfile.GNU_FORMAT) as t:
        for i in range(300_000):
            t.addfile(tarfile.TarInfo("m%06d" % i), io.BytesIO(b""))
    files["members.tar.gz"] = gzip.compress(bio.getvalue(), 9, mtime=0)

    t = b""
    rec = b"12 path=aa\n"
    for _ in range(5000):
        h = tarfile.TarInfo("PaxHeader")
        h.type = tarfile.XHDTYPE
        h.size = len(rec)
        t += h.tobuf(tarfile.USTAR_FORMAT) + rec + b"\0" * (-len(rec) % 512)
    p = tarfile.TarInfo("pickle")
    p.size = len(EVIL)
    files["pax-chain.tar"] = t + p.tobuf(tarfile.USTAR_FORMAT) + EVIL + b"\0" * (-len(EVIL) % 512) + b"\0" * 1024

    chain = hdf5_chain(9000)
    files["hdf5-chain.zip"] = stored_zip([("m%02d.h5" % i, chain, zipfile.ZIP_DEFLATED) for i in range(32)])
    files["hdf5-loop.h5"] = gzip.compress(hdf5_loop(16 << 20), 9, mtime=0)

    for name, data in files.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        print("%-20s %10d bytes" % (name, len(data)))


def run_once(binary, path, timeout):
    t0 = time.monotonic()
    proc = subprocess.Popen([binary, "scan", "--format", "json", path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    timer.cancel()
    wall = time.monotonic() - t0
    if os.WIFSIGNALED(status):
        return wall, usage.ru_maxrss / 1024, "killed", "(timeout)" if wall >= timeout else "(signal)"
    f = json.loads(out)["files"][0]
    errors = sorted({x["code"] for x in f["findings"] if x["severity"] == "error"})
    return wall, usage.ru_maxrss / 1024, f["verdict"], ", ".join(errors)


def run(out, binary, runs, timeout):
    print("%-20s %8s %9s  %-10s %s" % ("input", "wall s", "RSS MiB", "verdict", "error findings"))
    for name in sorted(os.listdir(out)):
        path = os.path.join(out, name)
        results = [run_once(binary, path, timeout) for _ in range(runs)]
        wall = statistics.median(r[0] for r in results)
        rss = max(r[1] for r in results)
        _, _, verdict, worst = results[-1]
        flag = "" if wall <= 5 and rss <= 512 else "  <-- over target"
        print("%-20s %8.2f %9.0f  %-10s %s%s" % (name, wall, rss, verdict, worst or "-", flag))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["gen", "run"])
    ap.add_argument("out")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "modelgate"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=120, help="seconds before a run counts as hung")
    a = ap.parse_args()
    if a.cmd == "gen":
        gen(a.out)
    else:
        run(a.out, a.binary, a.runs, a.timeout)


if __name__ == "__main__":
    main()
