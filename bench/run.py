#!/usr/bin/env python3
"""Side-by-side benchmark: modelgate against picklescan and modelscan on the same files, same run.

usage: bench/run.py [--peers VENV] [--runs N] [--corpus DIR] [FILES...]

Peers come from a throwaway venv (bench/peers.sh makes one from PyPI). Every command runs once to
warm the page cache, then N times; the table shows the median wall time, the peak RSS of the
process (from wait4), and what the tool concluded (exit status and a verdict parsed from its output).
Defaults: bench/out/*.pt, *.joblib (bench/gen.py writes them) and ../shared/corpus.
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run(cmd):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = b""
    # read before wait4 so a big output cannot block the child
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    return dt, ru.ru_maxrss, p.returncode, out.decode("utf-8", "replace")


def verdict(tool, code, out):
    if tool == "modelgate":
        try:
            doc = json.loads(out[out.index("{"):])
        except ValueError:
            return f"exit {code}"
        s = doc.get("summary", {})
        files = doc.get("files", [])
        if len(files) == 1:
            return files[0]["verdict"]
        keys = ("dangerous", "error", "suspicious", "safe", "unsupported")
        return ", ".join(f"{s[k]} {k}" for k in keys if s.get(k)) + f" (exit {code})"
    if tool == "picklescan":
        lines = out.splitlines()
        get = lambda key: next((l.split(":")[-1].strip() for l in lines if l.startswith(key)), "?")
        return f"{get('Infected files')} infected files, {get('Dangerous globals')} dangerous globals (exit {code})"
    if tool == "modelscan":
        if "No issues found" in out:
            return f"no issues (exit {code})"
        import re
        crit = re.search(r"CRITICAL: (\d+)", out)
        return (f"{crit.group(1)} critical" if crit else "issues") + f" (exit {code})"
    return f"exit {code}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", default=os.environ.get("PEERS_VENV", "/tmp/peers"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--corpus", default=os.path.join(ROOT, "..", "shared", "corpus"))
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "modelgate"))
    ap.add_argument("files", nargs="*")
    a = ap.parse_args()
    files = a.files or sorted(glob.glob(os.path.join(HERE, "out", "*.pt")) + glob.glob(os.path.join(HERE, "out", "*.joblib")))
    targets = files + ([a.corpus] if os.path.isdir(a.corpus) else [])
    tools = {
        "modelgate": lambda p: [a.binary, "scan", "--format", "json", p],
        "picklescan": lambda p: [os.path.join(a.peers, "bin", "picklescan"), "-p", p],
        "modelscan": lambda p: [os.path.join(a.peers, "bin", "modelscan"), "-p", p],
    }
    print(f"{'target':34} {'tool':11} {'median':>10} {'peak RSS':>10}  result")
    for t in targets:
        name = os.path.basename(os.path.normpath(t))
        size = sum(os.path.getsize(f) for f in glob.glob(os.path.join(t, "**"), recursive=True) if os.path.isfile(f)) if os.path.isdir(t) else os.path.getsize(t)
        label = f"{name} ({size / 2**30:.2f} GiB)" if size > 2**28 else f"{name} ({size / 2**20:.1f} MiB)"
        for tool, mk in tools.items():
            cmd = mk(t)
            if not os.path.exists(cmd[0]):
                print(f"{label:34} {tool:11} {'missing':>10}")
                continue
            run(cmd)  # warm
            times, rss = [], []
            for _ in range(a.runs):
                dt, maxrss, code, out = run(cmd)
                times.append(dt)
                rss.append(maxrss)
            med = statistics.median(times)
            print(f"{label:34} {tool:11} {med * 1000:8.1f}ms {max(rss) / 1024:8.1f}MiB  {verdict(tool, code, out)}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
