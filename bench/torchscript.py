#!/usr/bin/env python3
"""TorchScript archives with a lot of code: time and peak memory of judging their code/.

usage:
  bench/torchscript.py gen OUTDIR
  bench/torchscript.py run OUTDIR [--binary PATH] [--runs N]

gen writes, with the standard library only (no torch), TorchScript-shaped archives (data.pkl
naming __torch__.M, constants.pkl, code/) into OUTDIR:
  code-8mib.pt      8 MiB of methods in 32 code files (torch's own files are KBs)
  code-1file.pt     8 MiB in one code file: over the per-file token budget (1 million), `error`
  code-40mib.pt     40 MiB of code: over the archive's code budget, judged `error`
  classes-20k.pt    20,000 classes in 20 files, reached one after the other from __setstate__
  calls-1m.pt       one method with a million calls: over the per-file token budget, `error`
run runs `BINARY scan --format json FILE` on each (one warm-up, then N runs) and prints the
median wall time, the peak RSS (wait4) and the verdict. Run gen and run as separate commands:
a child's peak RSS counts the memory of the process it was forked from.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = b"\x80\x02c__torch__\nM\n)\x81}b."


def archive(path, code, more=()):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a/data.pkl", DATA)
        z.writestr("a/code/__torch__.py", code)
        for name, text in more:
            z.writestr("a/code/__torch__/" + name, text)
        z.writestr("a/constants.pkl", b"\x80\x02).")
        z.writestr("a/version", b"3\n")


def methods(target_bytes):
    out = ["class M(Module):\n  training : bool\n"]
    size, i = 0, 0
    while size < target_bytes:
        m = (
            "  def f%d(self: __torch__.M,\n    x: Tensor) -> Tensor:\n"
            "    _0 = torch.add(torch.mul(x, %d), self.f%d(x, ))\n    return torch.relu(_0)\n" % (i, i, i + 1)
        )
        out.append(m)
        size += len(m)
        i += 1
    out.append("  def __setstate__(self: __torch__.M, s: int) -> NoneType:\n    _0 = self.f0(torch.zeros([1]))\n    return None\n")
    return "".join(out)


def gen(outdir):
    os.makedirs(outdir, exist_ok=True)
    archive(os.path.join(outdir, "code-8mib.pt"), methods(256 << 10), [("m%d.py" % i, methods(256 << 10)) for i in range(31)])
    archive(os.path.join(outdir, "code-1file.pt"), methods(8 << 20))
    archive(os.path.join(outdir, "code-40mib.pt"), methods(40 << 20))
    # M's __setstate__ starts a chain through 20,000 classes in 20 files; the last one saves
    n = 20000
    files = []
    for k in range(20):
        text = []
        for i in range(k * 1000, (k + 1) * 1000):
            last = '    torch.save(s, "/tmp/x")\n' if i == n - 1 else ""
            text.append(
                "class C%d:\n  def __setstate__(self: __torch__.c%d.C%d, s: int) -> NoneType:\n    return None\n"
                "  def h%d(self: __torch__.c%d.C%d, s: int) -> int:\n%s    _0 = __torch__.c%d.C%d.__new__(__torch__.c%d.C%d)\n"
                "    return (_0).h%d(s, )\n" % (i, k, i, i, k, i, last, (i + 1) // 1000 % 20, (i + 1) % n, (i + 1) // 1000 % 20, (i + 1) % n, (i + 1) % n)
            )
        files.append(("c%d.py" % k, "".join(text)))
    head = "class M(Module):\n  training : bool\n  def __setstate__(self: __torch__.M, s: int) -> NoneType:\n"
    head += "    _0 = __torch__.c0.C0.__new__(__torch__.c0.C0)\n    _1 = (_0).h0(s, )\n    return None\n"
    archive(os.path.join(outdir, "classes-20k.pt"), head, files)
    calls = "class M(Module):\n  def __setstate__(self: __torch__.M, s: int) -> NoneType:\n"
    calls += "".join("    _%d = torch.add(s, %d)\n" % (i, i) for i in range(1_000_000)) + "    return None\n"
    archive(os.path.join(outdir, "calls-1m.pt"), calls)


def run_once(binary, path):
    start = time.monotonic()
    p = subprocess.Popen([binary, "scan", "--format", "json", path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = p.stdout.read()
    _, _, usage = os.wait4(p.pid, 0)
    wall = time.monotonic() - start
    verdict = json.loads(out)["files"][0]["verdict"]
    return wall, usage.ru_maxrss / 1024, verdict


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["gen", "run"])
    ap.add_argument("outdir")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/modelgate"))
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    if a.command == "gen":
        gen(a.outdir)
        return 0
    print("%-16s %10s %10s %12s  %s" % ("file", "size MiB", "wall s", "peak RSS MiB", "verdict"))
    for name in sorted(os.listdir(a.outdir)):
        path = os.path.join(a.outdir, name)
        run_once(a.binary, path)
        runs = [run_once(a.binary, path) for _ in range(a.runs)]
        print(
            "%-16s %10.1f %10.2f %12.0f  %s"
            % (name, os.path.getsize(path) / 2**20, statistics.median(r[0] for r in runs), max(r[1] for r in runs), runs[0][2])
        )


if __name__ == "__main__":
    sys.exit(main())
