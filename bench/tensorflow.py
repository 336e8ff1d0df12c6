#!/usr/bin/env python3
"""TensorFlow graphs built to make the path tracing and the graph walk work hard.

usage:
  bench/tensorflow.py OUTDIR [--binary PATH] [--runs N]

Writes, in OUTDIR, and times `BINARY scan --format json FILE` on each (one warm-up run, then N;
median wall time and peak RSS of the scanning process):
  fan_in.pb       100,000 RestoreV2 ops whose prefix is one Merge of 2,000 Identity ops of a
                  Placeholder: every trace walks the fan-in (stopped by the per-graph trace budget)
  chain.pb        one RestoreV2 at the end of a chain of 300,000 Identity ops (stopped by the
                  recursion bound)
  many_nodes.pb   8,000,000 minimal nodes in 40 MB (stopped by the retained-bytes budget)
  calls.pb        20,000 functions, each calling the next with its argument, the last one saving
                  to it (traced back through every call site)
No TensorFlow is needed: the protobuf is written by hand.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def ld(field, payload):
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def s(field, text):
    return ld(field, text.encode())


def node(name, op, inputs=(), attrs=()):
    b = s(1, name) + s(2, op) + b"".join(s(3, i) for i in inputs)
    for k, v in attrs:
        b += ld(5, s(1, k) + ld(2, v))
    return b


def saved_model(nodes, functions=()):
    g = b"".join(ld(1, n) for n in nodes)
    if functions:
        g += ld(2, b"".join(ld(1, f) for f in functions))
    return varint(1 << 3) + varint(1) + ld(2, ld(2, g))


def function(name, args, nodes):
    sig = s(1, name) + b"".join(ld(2, s(1, a)) for a in args)
    return ld(1, sig) + b"".join(ld(3, n) for n in nodes)


def write_inputs(out):
    os.makedirs(out, exist_ok=True)
    files = {}
    nodes = [node("x", "Placeholder")]
    nodes += [node(f"i{i}", "Identity", ["x"]) for i in range(2000)]
    nodes.append(node("m", "Merge", [f"i{i}" for i in range(2000)]))
    nodes += [node(f"r{j}", "RestoreV2", ["m", "n", "s"]) for j in range(100_000)]
    files["fan_in.pb"] = saved_model(nodes)
    nodes = [node("n0", "Placeholder")] + [node(f"n{i}", "Identity", [f"n{i - 1}"]) for i in range(1, 300_000)]
    nodes.append(node("r", "RestoreV2", ["n299999", "n", "s"]))
    files["chain.pb"] = saved_model(nodes)
    files["many_nodes.pb"] = ld(1, s(2, "A")) * 8_000_000
    f_attr = lambda f: ld(10, s(1, f))  # noqa: E731
    fns = [
        function(f"f{i}", ["p"], [node("c", "StatefulPartitionedCall", ["p"], [("f", f_attr(f"f{i + 1}"))])])
        for i in range(20_000)
    ]
    fns.append(function("f20000", ["p"], [node("s", "SaveV2", ["p", "n", "s", "t"])]))
    files["calls.pb"] = saved_model([node("x", "Placeholder"), node("c", "StatefulPartitionedCall", ["x"], [("f", f_attr("f0"))])], fns)
    for name, data in files.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    return sorted(files)


def run(binary, path):
    start = time.monotonic()
    p = subprocess.Popen([binary, "scan", "--format", "json", path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out, _ = p.communicate()
    wall = time.monotonic() - start
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    verdict = json.loads(out)["files"][0]["verdict"]
    return wall, rss, verdict


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/modelgate"))
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    names = write_inputs(a.out)
    print(f"{'file':16} {'MB':>6} {'median s':>9} {'peak RSS MB':>12}  verdict")
    for name in names:
        path = os.path.join(a.out, name)
        # One process per measurement so that ru_maxrss is the child's own peak.
        results = []
        for _ in range(a.runs + 1):
            r = subprocess.run(
                [sys.executable, __file__, "--measure", a.binary, path], capture_output=True, text=True, check=True
            )
            results.append(json.loads(r.stdout))
        results = results[1:]
        wall = statistics.median(r["wall"] for r in results)
        rss = max(r["rss"] for r in results) / 1024
        size = os.path.getsize(path) / 1e6
        print(f"{name:16} {size:6.1f} {wall:9.2f} {rss:12.0f}  {results[0]['verdict']}")


def measure(binary, path):
    wall, rss, verdict = run(binary, path)
    print(json.dumps({"wall": wall, "rss": rss, "verdict": verdict}))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--measure":
        measure(sys.argv[2], sys.argv[3])
    else:
        main()
