"""Seed corpora for the fuzz targets (fuzz/corpus/<target>/), made by the real libraries.

    /opt/mg-venv/bin/python fuzz/seeds.py [--extra DIR ...]

Sources, each routed to the targets whose parser reads it (everything also seeds `engine`):
- small files generated here with pickle, numpy, joblib, zipfile, tarfile, gzip/bz2/lzma,
  h5py, json (whatever of them this interpreter imports);
- the repository's committed fixtures (tests/fixtures/**, samples/);
- optional extra directories (e.g. /work/shared/corpus: used as seeds only, never copied
  into the repository) and the differential oracle's generated cases
  (tests/differential/oracle.py --dump DIR).
Files over 256 KiB are left out. The corpus directories are git-ignored.
"""
import argparse
import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import pickle
import struct
import sys
import tarfile
import zipfile
import zlib
from collections import OrderedDict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
MAX = 256 << 10
TARGETS = ["engine", "pickle", "zip", "tar", "sevenz", "hdf5", "protobuf", "gguf", "jinja", "json", "npy", "safetensors"]


def route(b):
    """Targets whose parser reads these bytes, decided by content as modelgate's sniffer does."""
    out = ["engine"]
    head = b[:512]
    if head.startswith(b"PK"):
        out.append("zip")
    if head.startswith(b"\x93NUMPY"):
        out.append("npy")
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        out.append("sevenz")
    if len(head) >= 262 and head[257:262] == b"ustar":
        out.append("tar")
    if b"\x89HDF\r\n\x1a\n" in b[:1 << 16]:
        out.append("hdf5")
    if head.startswith(b"GGUF"):
        out.append("gguf")
    if len(b) >= 8 and head[8:9] == b"{":
        out.append("safetensors")
    if head[:1] in (b"\x80", b"(", b"c", b"]", b"}", b"N", b"K", b"I", b"X", b"\x8c", b"\x95"):
        out.append("pickle")
    s = head.lstrip()
    if s.startswith(b"{") or s.startswith(b"["):
        out.append("json")
    if b"{%" in head or b"{{" in head:
        out.append("jinja")
    if head[:1] in (b"\x08", b"\x0a", b"\x12", b"\x1a", b"\x22", b"\x3a"):
        out.append("protobuf")
    return out


class Sink:
    def __init__(self):
        self.count = {t: 0 for t in TARGETS}

    def add(self, b, targets=None):
        if not b or len(b) > MAX:
            return
        h = hashlib.sha1(b).hexdigest()
        for t in targets or route(b):
            d = os.path.join(CORPUS, t)
            os.makedirs(d, exist_ok=True)
            p = os.path.join(d, h)
            if not os.path.exists(p):
                with open(p, "wb") as f:
                    f.write(b)
                self.count[t] += 1


class Evil:
    """Pickles as a call of os.system (never loaded here: the seeds are only parsed)."""

    def __reduce__(self):
        return (os.system, ("echo seed",))


def pickles(sink):
    objs = [
        None, 1, -5, 2**70, 1.5, "text", b"bytes", bytearray(b"ba"), (1, 2), [1, [2, [3]]],
        {"a": 1, "b": [1.0, None]}, {1, 2}, frozenset({3}), OrderedDict(a=1), complex(1, 2),
        {"state_dict": OrderedDict(w=[0.0] * 8)}, [Evil()], {"k": Evil()},
    ]
    for proto in range(0, 6):
        for o in objs:
            sink.add(pickle.dumps(o, protocol=proto), ["engine", "pickle"])
    # opcode forms the pickler never writes
    for b in [
        b"cos\nsystem\n(S'echo seed'\ntR.",
        b"(S'echo seed'\nios\nsystem\n.",
        b"(cos\nsystem\nS'echo seed'\no.",
        b"\x80\x04\x95\x20\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x8c\x06system\x93\x8c\x04echo\x85R.",
        b"\x80\x02cbuiltins\ngetattr\nc__builtin__\n__import__\nX\x02\x00\x00\x00os\x85RX\x06\x00\x00\x00system\x86R.",
        b"]q\x00(K\x01K\x02e.",
        b"F 1_0\n.",
        b"\x80\x05\x95\xff\x00\x00\x00\x00\x00\x00\x00N.",
    ]:
        sink.add(b, ["engine", "pickle"])


def compressed(sink):
    body = pickle.dumps({"a": [1, 2, 3], "e": Evil()}, protocol=2)
    for b in [
        gzip.compress(body), bz2.compress(body), lzma.compress(body),
        lzma.compress(body, format=lzma.FORMAT_ALONE), zlib.compress(body),
        gzip.compress(b"") + gzip.compress(body), bz2.compress(body[:10]) + bz2.compress(body[10:]),
        b"ZF0x%-18x" % len(body) + zlib.compress(body),
    ]:
        sink.add(b)


def archives(sink):
    body = pickle.dumps({"w": [0.0] * 4}, protocol=2)
    evil = pickle.dumps([Evil()], protocol=2)
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w") as z:
        z.writestr("archive/data.pkl", body)
        z.writestr("archive/version", "3\n")
        z.writestr("archive/data/0", b"\x00" * 16)
    sink.add(bio.getvalue())
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("model/data.pkl", evil)
        z.writestr("nested.zip", bio.getvalue())
    sink.add(bio.getvalue())
    for mode, fmt in [("w", tarfile.GNU_FORMAT), ("w", tarfile.USTAR_FORMAT), ("w", tarfile.PAX_FORMAT),
                      ("w:gz", tarfile.PAX_FORMAT), ("w:bz2", tarfile.GNU_FORMAT), ("w:xz", tarfile.USTAR_FORMAT)]:
        bio = io.BytesIO()
        with tarfile.open(fileobj=bio, mode=mode, format=fmt) as t:
            for name, data in [("sys_info", pickle.dumps({"little_endian": True}, 2)), ("pickle", evil),
                               ("storages", pickle.dumps(0, 2)), ("tensors", pickle.dumps(0, 2))]:
                ti = tarfile.TarInfo(name)
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
            ti = tarfile.TarInfo("link")
            ti.type = tarfile.SYMTYPE
            ti.linkname = "pickle"
            t.addfile(ti)
        sink.add(bio.getvalue())


def sevenz_seeds(sink, tmp):
    try:
        import py7zr
    except ImportError:
        return
    evil = pickle.dumps([Evil()], protocol=2)
    for filters in [None, [{"id": py7zr.FILTER_LZMA2}], [{"id": py7zr.FILTER_BZIP2}], [{"id": py7zr.FILTER_COPY}],
                    [{"id": py7zr.FILTER_DEFLATE}]]:
        p = os.path.join(tmp, "seed.7z")
        with py7zr.SevenZipFile(p, "w", filters=filters) as z:
            z.writestr(evil, "data.pkl")
            z.writestr(b"plain text", "readme.txt")
        with open(p, "rb") as f:
            sink.add(f.read())


def numpy_seeds(sink):
    try:
        import numpy as np
    except ImportError:
        return
    arrays = [np.arange(6, dtype="<f8").reshape(2, 3), np.zeros(3, dtype=[("a", "<i4"), ("b", "O")]),
              np.array(["x", Evil()], dtype=object), np.array([b"ab"]), np.array([1 + 2j]), np.ones((2, 2), order="F")]
    for a in arrays:
        for v in [(1, 0), (2, 0), (3, 0)]:
            bio = io.BytesIO()
            np.lib.format.write_array(bio, a, version=v, allow_pickle=True)
            sink.add(bio.getvalue())
    bio = io.BytesIO()
    np.savez(bio, a=arrays[0], b=arrays[2])
    sink.add(bio.getvalue())
    for h in ["{'descr': '\\x7cO', 'fortran_order': False, 'shape': (1,), }",
              "{'descr': '|' 'O', 'fortran_order': False, 'shape': (0x1,)}",
              "{'descr': u'\\N{LATIN CAPITAL LETTER O}', 'fortran_order': False, 'shape': ()}",
              "{'descr': [('a', '<f8'), ('b', ('O', (2,)))], 'fortran_order': False, 'shape': (1,)}"]:
        hb = h.encode("latin1") + b" " * (63 - (len(h) + 10) % 64) + b"\n"
        sink.add(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hb)) + hb + pickle.dumps([Evil()], 2))
    try:
        import joblib
    except ImportError:
        return
    for c in [0, ("zlib", 3), ("gzip", 3), ("bz2", 3), ("lzma", 3), ("xz", 3)]:
        bio = io.BytesIO()
        joblib.dump({"a": arrays[0], "o": arrays[2]}, bio, compress=c)
        sink.add(bio.getvalue())


def hdf5_seeds(sink, tmp):
    try:
        import h5py
    except ImportError:
        return
    lam = {"class_name": "Sequential", "config": {"layers": [
        {"class_name": "Lambda", "config": {"name": "l", "function": ["4wEAAAAAAAAA", None, None], "function_type": "lambda"}}]}}
    for ub, head in [(0, b""), (512, b"\x80\x04K\x01."), (1024, b"GGUF"), (2048, b"\x93NUMPY")]:
        p = os.path.join(tmp, "seed.h5")
        with h5py.File(p, "w", userblock_size=ub) as f:
            f.attrs["model_config"] = json.dumps(lam)
            f.create_dataset("w", data=[1.0, 2.0])
        with open(p, "r+b") as f:
            f.write(head)
        with open(p, "rb") as f:
            sink.add(f.read())


def text_seeds(sink):
    keras = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"module": "keras.layers", "class_name": "Dense", "config": {"units": 2, "bias": float("nan")}},
        {"class_name": "Lambda", "config": {"function": {"class_name": "__lambda__", "config": {"code": "x"}}}}]}}
    sink.add(json.dumps(keras).encode(), ["engine", "json"])
    sink.add(json.dumps(keras).encode("utf-16"), ["engine", "json"])
    sink.add(b'{"a": 1e400, "b": 123456789012345678901234567890, "c": "\\ud800", "class_n\\u0061me": "\\u004cambda"}', ["engine", "json"])
    templates = [
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ 'a'|attr('__class__') }}{{ '{0.__init__}'.format(x) }}",
        "{%- set x = namespace(a=1) -%}{{ x.a ~ '\\x41' }}{% raw %}{{ }}{% endraw %}",
    ]
    for t in templates:
        sink.add(t.encode(), ["engine", "jinja"])
        sink.add(json.dumps({"chat_template": t, "bos_token": "<s>"}).encode(), ["engine", "json", "jinja"])
    # GGUF v3 with a chat template
    def s(x):
        x = x.encode()
        return struct.pack("<Q", len(x)) + x
    kv = s("tokenizer.chat_template") + struct.pack("<I", 8) + s(templates[2])
    kv += s("general.architecture") + struct.pack("<I", 8) + s("llama")
    kv += s("tokenizer.ggml.tokens") + struct.pack("<II", 9, 8) + struct.pack("<Q", 2) + s("a") + s("b")
    sink.add(b"GGUF" + struct.pack("<IQQ", 3, 0, 3) + kv, ["engine", "gguf"])
    # safetensors
    hdr = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "__metadata__": {"format": "pt"}}).encode()
    sink.add(struct.pack("<Q", len(hdr)) + hdr + b"\x00" * 8, ["engine", "safetensors"])


def protobuf_seeds(sink):
    def varint(n):
        out = b""
        while True:
            b = n & 0x7F
            n >>= 7
            if n:
                out += bytes([b | 0x80])
            else:
                return out + bytes([b])

    def field(num, payload):
        return varint(num << 3 | 2) + varint(len(payload)) + payload

    # ONNX ModelProto: ir_version, opset_import, graph{node{op_type, domain}, initializer{external data}}
    node = field(4, b"Relu") + field(7, b"custom.domain")
    ext = field(13, field(1, b"location") + field(2, b"../../etc/passwd"))
    init = field(8, b"w") + varint(14 << 3 | 0) + varint(1) + ext
    graph = field(1, node) + field(5, init) + field(2, b"g")
    sink.add(varint(1 << 3) + varint(8) + field(8, field(1, b"") + varint(2 << 3) + varint(17)) + field(7, graph), ["engine", "protobuf"])
    # SavedModel: saved_model_schema_version, meta_graphs{graph_def{node{name, op}}}
    n = field(1, b"w") + field(2, b"WriteFile")
    sink.add(varint(1 << 3) + varint(1) + field(2, field(2, field(1, n))), ["engine", "protobuf"])


def files(sink, top):
    for dirpath, _, names in os.walk(top):
        for n in names:
            p = os.path.join(dirpath, n)
            if os.path.islink(p) or os.path.getsize(p) > MAX:
                continue
            with open(p, "rb") as f:
                b = f.read()
            sink.add(b)
            if n.endswith(".gz"):
                try:
                    sink.add(gzip.decompress(b)[:MAX])
                except (OSError, EOFError):
                    pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--extra", action="append", default=[], help="more directories of seed files")
    args = ap.parse_args()
    import tempfile

    sink = Sink()
    with tempfile.TemporaryDirectory() as tmp:
        pickles(sink)
        compressed(sink)
        archives(sink)
        numpy_seeds(sink)
        hdf5_seeds(sink, tmp)
        sevenz_seeds(sink, tmp)
        text_seeds(sink)
        protobuf_seeds(sink)
    for d in ["tests/fixtures", "samples"] + args.extra:
        files(sink, d if os.path.isabs(d) else os.path.join(ROOT, d))
    for t in TARGETS:
        os.makedirs(os.path.join(CORPUS, t), exist_ok=True)
    json.dump(sink.count, sys.stdout)
    print()


if __name__ == "__main__":
    main()
