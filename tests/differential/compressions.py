"""joblib dumps and compressed pickles for the oracle, with the stream layouts the readers
accept:

- joblib.load picks the decompressor by prefix (numpy_pickle_utils._detect_compressor: `ZF`
  first, then each registered compressor's prefix: zlib `x`, gzip `\\x1f\\x8b`, bz2 `BZ`, lzma
  `]\\x00\\x00`, xz `\\xfd7zXZ`); BinaryZlibFile/BinaryGzipFile (zlib.decompressobj, wbits 15/31),
  bz2.BZ2File and lzma.LZMAFile (FORMAT_AUTO) read the stream; the pre-0.10 format is
  `ZF` + a hex length parsed by int(x, 16) + a zlib stream (numpy_pickle_compat.read_zfile);
- gzip.open / bz2.open / lzma.open read concatenated streams (_compression.DecompressReader:
  the next stream starts where the last ended, trailing bytes that are no stream are ignored
  for bz2/lzma; gzip._GzipReader skips zero padding between members).
"""
import bz2
import gzip
import io
import lzma
import os
import struct
import zlib

import pickles


class Call:
    """Pickles as a call of gadget(*args) (pickle writes the callable by reference)."""

    def __init__(self, gadget):
        self.gadget = gadget

    def __reduce__(self):
        mod, name, args = self.gadget
        import importlib

        if "." in name:
            obj = importlib.import_module(mod)
            for part in name.split("."):
                obj = getattr(obj, part)
        else:
            obj = getattr(importlib.import_module({"__builtin__": "builtins", "commands": "subprocess"}.get(mod, mod)), name)
        return (obj, tuple(args))


DUMPABLE = [g for g in pickles.GADGETS if g[0] not in ("__builtin__", "commands", "posixpath")]


def plain_value(rng, np):
    k = rng.randrange(6)
    if k == 5:
        # numpy 2's variable-width strings: joblib pickles the dtype as a class, no object array
        return np.array(["a", "longer text"], dtype=np.dtypes.StringDType())
    if k == 0:
        return np.arange(rng.randrange(0, 50), dtype=rng.choice(["<f8", "<i4", "|u1", ">i8"]))
    if k == 1:
        a = np.empty(2, dtype=object)
        a[0], a[1] = "x", [1, 2]
        return a
    if k == 2:
        return {"w": np.ones((2, 3), order=rng.choice("CF")), "b": [1.5, None]}
    if k == 3:
        return np.array(["a", "bc"], dtype="<U2")
    return [np.float32(1.5), np.int64(3), np.zeros((), dtype="<c8")]


def joblib_dump(rng, ctx, payload):
    """joblib.dump of arrays (and a payload call in the object graph or an object array)."""
    import joblib
    import numpy as np

    tags = {"joblib"}
    value = {"a": plain_value(rng, np), "b": plain_value(rng, np)}
    if payload:
        g = rng.choice(DUMPABLE)
        tags.add(f"gadget:{g[0]}.{g[1]}")
        where = rng.choice(["top", "object-array", "nested"])
        tags.add("joblib:payload-" + where)
        if where == "top":
            value["p"] = Call(g)
        elif where == "object-array":
            a = np.empty(2, dtype=object)
            a[0], a[1] = 1, Call(g)
            value["p"] = a
        else:
            value["p"] = [np.arange(3), {"x": Call(g)}]
    comp = rng.choice([0, 0, "zlib", "gzip", "bz2", "lzma", "xz"])
    tags.add(f"joblib:compress-{comp}")
    path = os.path.join(ctx.tmp, "dump.joblib")
    joblib.dump(value, path, compress=(comp, rng.randrange(1, 10)) if comp else 0, protocol=rng.choice([None, 2, 3, 4, 5]))
    with open(path, "rb") as f:
        data = f.read()
    os.unlink(path)
    if comp and rng.random() < 0.5:
        raw = decompress(comp, data)
        data = relayout(rng, comp, raw, tags)
    return data, tags


def decompress(kind, data):
    if kind == "zlib":
        return zlib.decompress(data)
    if kind == "gzip":
        return gzip.decompress(data)
    if kind == "bz2":
        return bz2.decompress(data)
    return lzma.decompress(data)


def gzip_member(rng, data, tags):
    """A gzip member, sometimes with the optional header fields (FEXTRA, FNAME, FCOMMENT,
    FHCRC) that gzip._read_gzip_header and zlib (wbits 31) skip."""
    if rng.random() < 0.7:
        return gzip.compress(data, compresslevel=rng.randrange(1, 10), mtime=0)
    tags.add("gzip:header-fields")
    flags = 0
    extra = b""
    if rng.random() < 0.5:
        flags |= 4
        x = b"AB\x02\x00hi"
        extra += struct.pack("<H", len(x)) + x
    if rng.random() < 0.5:
        flags |= 8
        extra += b"model.pkl\x00"
    if rng.random() < 0.5:
        flags |= 16
        extra += b"comment\x00"
    head = b"\x1f\x8b\x08" + bytes([flags]) + b"\x00\x00\x00\x00\x00\xff" + extra
    if rng.random() < 0.3:
        head = head[:3] + bytes([flags | 2]) + head[4:]
        head += struct.pack("<H", zlib.crc32(head) & 0xFFFF)
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = c.compress(data) + c.flush()
    return head + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def one_stream(rng, kind, data, tags):
    if kind == "zlib":
        return zlib.compress(data, rng.randrange(0, 10))
    if kind == "gzip":
        return gzip_member(rng, data, tags)
    if kind == "bz2":
        return bz2.compress(data, rng.randrange(1, 10))
    if kind == "lzma":
        return lzma.compress(data, format=lzma.FORMAT_ALONE)
    return lzma.compress(data, format=lzma.FORMAT_XZ, check=rng.choice([lzma.CHECK_NONE, lzma.CHECK_CRC32, lzma.CHECK_CRC64, lzma.CHECK_SHA256]))


def relayout(rng, kind, data, tags):
    """The same bytes in another stream layout of the same compressor: split over
    concatenated streams, an empty stream first, zero padding or junk after the end."""
    k = rng.choice(["split", "empty-first", "pad-zero", "trailing-junk", "single", "alone-then-xz"])
    if k == "alone-then-xz" and kind not in ("lzma", "xz"):
        k = "split"
    tags.add(f"layout:{kind}-{k}")
    if k == "single":
        return one_stream(rng, kind, data, tags)
    if k == "split":
        cuts = sorted(rng.randrange(0, len(data) + 1) for _ in range(rng.randrange(1, 4)))
        parts = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
        return b"".join(one_stream(rng, kind, p, tags) for p in parts)
    if k == "empty-first":
        return one_stream(rng, kind, b"", tags) + one_stream(rng, kind, data, tags)
    if k == "alone-then-xz":
        cut = rng.randrange(0, len(data) + 1)
        return one_stream(rng, "lzma", data[:cut], tags) + one_stream(rng, "xz", data[cut:], tags)
    s = one_stream(rng, kind, data, tags)
    if k == "pad-zero":
        return s + b"\x00" * rng.choice([1, 4, 8, 512])
    return s + rng.choice([b"junk", b"\x00junk", b"PK\x05\x06" + b"\x00" * 18])


def zf_header(rng, length, tags):
    """joblib < 0.10: `ZF` + the length as hex padded to 19 bytes (read_zfile parses it with
    int(x, 16), so any spelling int accepts), one more space in joblib <= 0.8.4."""
    k = rng.choice(["standard", "wide", "upper", "nox", "under", "plus", "spaces"])
    tags.add("zf:" + k)
    h = {
        "standard": "0x%x" % length,
        "wide": "0x%x" % length,
        "upper": "0X%X" % length,
        "nox": "%x" % length,
        "under": "0x_%x" % length if length else "0x0",
        "plus": " +0x%x" % length,
        "spaces": "  0x%x" % length,
    }[k]
    field = h.ljust(19).encode()
    if k == "wide":
        field += b" "
    return b"ZF" + field


def compressed_pickle(rng, payload):
    """A pickle (payload or plain data) in a compressed stream of some layout, or in joblib's
    old ZF format. Returns (bytes, tags)."""
    if payload:
        data, tags, _ = pickles.payload(rng, py_only=rng.random() < 0.2)
    else:
        data, tags = pickles.benign(rng)
    tags = {"pickle:" + t for t in tags} | {"compress"}
    kind = rng.choice(["zlib", "gzip", "bz2", "lzma", "xz", "zf"])
    tags.add("compress:" + kind)
    if kind == "zf":
        return zf_header(rng, len(data), tags) + zlib.compress(data), tags
    return relayout(rng, kind, data, tags), tags
