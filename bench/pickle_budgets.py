#!/usr/bin/env python3
"""Pickle budgets against real-sized data: time and peak RSS of `modelgate scan` on large
but plain pickles (which must pass) and on small adversarial ones (which must end fast with
a finding).

    python3 -m venv /tmp/pb-venv && /tmp/pb-venv/bin/pip install numpy==2.4.6 joblib==1.6.0
    /tmp/pb-venv/bin/python bench/pickle_budgets.py gen /tmp/pickle-bench
    cargo build --release
    bench/pickle_budgets.py run /tmp/pickle-bench [--bin target/release/modelgate]

`gen` writes the files (about 1.5 GB; numpy/joblib files are skipped without numpy);
`run` prints one line per file: size, wall time, peak RSS, verdict and the deciding
finding codes. Delete the directory afterwards.
"""
import argparse
import base64
import json
import os
import pickle
import random
import subprocess
import sys


def benign(out):
    rnd = random.Random(1)
    files = {}
    files["floats-5m.pkl"] = lambda: [rnd.random() for _ in range(5_000_000)]
    files["floats-20m.pkl"] = lambda: [rnd.random() for _ in range(20_000_000)]
    files["ints-20m.pkl"] = lambda: list(range(20_000_000))
    files["dict-5m.pkl"] = lambda: {f"word{i}": i for i in range(5_000_000)}
    files["strings-2m.pkl"] = lambda: [f"token-{i}-{'x' * (i % 40)}" for i in range(2_000_000)]
    files["bigstring-512m.pkl"] = lambda: "a" * (512 << 20)
    files["bigbytes-512m.pkl"] = lambda: b"\x00" * (512 << 20)
    files["nested-lists-1m.pkl"] = lambda: [[i, float(i), str(i)] for i in range(1_000_000)]
    files["tuples-3m.pkl"] = lambda: [(i, i + 1) for i in range(3_000_000)]
    for name, make in files.items():
        for proto in (2, 4):
            path = os.path.join(out, f"p{proto}-{name}")
            with open(path, "wb") as f:
                pickle.dump(make(), f, protocol=proto)
            print("wrote", path, os.path.getsize(path))
    # protocol 0 (text) for the list of floats, as Python 2 wrote them
    path = os.path.join(out, "p0-floats-2m.pkl")
    with open(path, "wb") as f:
        pickle.dump([rnd.random() for _ in range(2_000_000)], f, protocol=0)
    print("wrote", path, os.path.getsize(path))
    try:
        import numpy as np
        import joblib
    except ImportError:
        print("numpy/joblib not installed: array files skipped")
        return
    arr = np.random.default_rng(0).random((4000, 4000))
    for proto in (2, 4, 5):
        path = os.path.join(out, f"p{proto}-numpy-128m.pkl")
        with open(path, "wb") as f:
            pickle.dump(arr, f, protocol=proto)
        print("wrote", path, os.path.getsize(path))
    path = os.path.join(out, "numpy-list-of-100k-arrays.pkl")
    with open(path, "wb") as f:
        pickle.dump([np.arange(4) + i for i in range(100_000)], f, protocol=4)
    print("wrote", path, os.path.getsize(path))
    path = os.path.join(out, "joblib-dict-of-arrays.joblib")
    joblib.dump({f"w{i}": np.full(1000, i, dtype=np.float32) for i in range(20_000)}, path)
    print("wrote", path, os.path.getsize(path))
    path = os.path.join(out, "joblib-object-array.joblib")
    joblib.dump(np.array([str(i) for i in range(1_000_000)], dtype=object), path)
    print("wrote", path, os.path.getsize(path))


def adversarial(out):
    def w(name, data):
        path = os.path.join(out, "adv-" + name)
        with open(path, "wb") as f:
            f.write(data)
        print("wrote", path, len(data))

    # memo/DUP expansion: a list that holds itself many times, squared by each level
    body = b"\x80\x02]q\x00"
    for _ in range(40):
        body += b"(h\x00h\x00h\x00h\x00h\x00h\x00h\x00h\x00l\x94"
    w("memo-expansion.pkl", body + b".")
    # DUP-and-APPENDS: a million pushes of one value from a few KB? (2 bytes per push)
    w("dup-million.pkl", b"\x80\x02](N" + b"2" * 1_000_000 + b"e.")
    # deep nesting: a million MARKs
    w("marks-1m.pkl", b"\x80\x02" + b"(" * 1_000_000 + b"N.")
    w("lists-1m-deep.pkl", b"\x80\x02" + b"]" * 1_000_000 + b"a" * 999_999 + b".")
    # nested pickles: a base64 pickle holding a base64 pickle ... 6 levels, repeated via memo
    inner = pickle.dumps({"x": 1}, protocol=2)
    for _ in range(5):
        inner = pickle.dumps({"k": base64.b64encode(inner).decode()}, protocol=2)
    w("nested-b64-levels.pkl", inner)
    # one nested-pickle constant fed to a decoder thousands of times (memo GET + REDUCE)
    payload = base64.b64encode(pickle.dumps([1] * 200_000, protocol=2))
    s = (
        b"\x80\x02cbase64\nb64decode\nq\x01"
        + b"B" + len(payload).to_bytes(4, "little") + payload + b"q\x02"
        + b"(" + b"h\x01h\x02\x85R" * 20_000 + b"l."
    )
    w("decoder-calls.pkl", s)
    # nine million memoized empty lists (2 bytes each): values held at once
    w("memo-lists-9m.pkl", b"\x80\x04" + b"]\x94" * 9_000_000 + b".")
    # 40-tuples of memoized values, memoized: container slots held at once
    t = b"\x80\x04N\x94" + (b"(" + b"h\x00" * 40 + b"t\x94") * 500_000 + b"."
    w("tuples-40-500k.pkl", t)
    # LONG_BINPUT at scattered indexes: a sparse memo
    rnd = random.Random(2)
    w("sparse-memo.pkl", b"\x80\x04N" + b"".join(b"r" + rnd.getrandbits(32).to_bytes(4, "little") for _ in range(2_000_000)) + b".")
    # a call on a call result whose arguments fan out 40 x 40 x 40, repeated
    fan = b"\x80\x04N\x94(" + b"h\x00" * 40 + b"t\x94(" + b"h\x01" * 40 + b"t\x94(" + b"h\x02" * 40 + b"t\x94"
    fan += b"cx\ny\nh\x03\x85R\x94" + b"h\x04h\x03\x85R0" * 200_000 + b"N."
    w("evidence-fanout.pkl", fan)
    # a tuple of memoized tuples eight levels deep (40**8 leaves when expanded)
    deep = b"\x80\x04K\x01\x94"
    for level in range(8):
        deep += b"(" + (b"h" + bytes([level])) * 40 + b"t\x94"
    w("tuple-tree-40x8.pkl", deep + b".")
    # a zlib bomb passed to a decoder again and again through fresh wrappers
    import zlib

    bomb = zlib.compress(b"\x80\x04" + b"N0" * (30 << 20) + b"N.", 9)
    z = b"\x80\x02czlib\ndecompress\nq\x00cbuiltins\nbytes\nq\x01B" + len(bomb).to_bytes(4, "little") + bomb + b"q\x02"
    z += b"(" + b"h\x00h\x01h\x02\x85R\x85R" * 2000 + b"l."
    w("zlib-decoder-calls.pkl", z)


def run(directory, binary):
    # wall time depends on what else runs; CPU time (user + system) is the work
    print(f"{'file':34} {'bytes':>10} {'wall s':>7} {'cpu s':>6} {'MiB':>5}  {'verdict':10} codes")
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        r = subprocess.run(
            ["/usr/bin/time", "-f", "%e %U %S %M", binary, "scan", "--format", "json", path],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            secs, user, system, kib = r.stderr.decode().strip().splitlines()[-1].split()
            secs, cpu, mib = float(secs), float(user) + float(system), int(kib) // 1024
        except ValueError:
            secs, cpu, mib = -1.0, -1.0, -1
        try:
            f = json.loads(r.stdout)["files"][0]
            verdict = f["verdict"]
            codes = " ".join(sorted({x["code"] for x in f["findings"]}))
        except (ValueError, KeyError, IndexError):
            verdict, codes = "?", r.stderr.decode(errors="replace")[:80]
        size = os.path.getsize(path)
        print(f"{name:34} {size:>10} {secs:>7.2f} {cpu:>6.2f} {mib:>5}  {verdict:10} {codes}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("dir")
    r = sub.add_parser("run")
    r.add_argument("dir")
    r.add_argument("--bin", default="target/release/modelgate")
    a = ap.parse_args()
    if a.cmd == "gen":
        os.makedirs(a.dir, exist_ok=True)
        benign(a.dir)
        adversarial(a.dir)
    else:
        run(a.dir, a.bin)


if __name__ == "__main__":
    main()
