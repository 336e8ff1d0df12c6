"""The worst time and memory of any fuzz input: every file of every corpus (and the artifacts)
scanned alone by a modelgate binary, timed with wait4 (wall clock, peak RSS).

    python3 fuzz/worst.py target/release/modelgate [--top 10] [--timeout 60] [--targets zip,tar]

Prints the slowest and the largest inputs and the totals; libFuzzer's own figures (slowest
unit, peak RSS of the fuzzing process) are in each run's log.
"""
import argparse
import hashlib
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def inputs(only):
    seen = set()
    for sub in ("corpus", "artifacts"):
        top = os.path.join(HERE, sub)
        if not os.path.isdir(top):
            continue
        for target in sorted(os.listdir(top)):
            if only and target not in only:
                continue
            d = os.path.join(top, target)
            for n in sorted(os.listdir(d)):
                p = os.path.join(d, n)
                with open(p, "rb") as f:
                    h = hashlib.sha1(f.read()).hexdigest()
                if h not in seen:
                    seen.add(h)
                    yield target, p


def run(binary, path, timeout):
    start = time.monotonic()
    p = subprocess.Popen([binary, "scan", "--format", "json", "-j", "1", path],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - start > timeout:
            p.kill()
            pid, status, ru = os.wait4(p.pid, 0)
            return time.monotonic() - start, ru.ru_maxrss, "timeout"
        time.sleep(0.002)
    code = os.waitstatus_to_exitcode(status)
    return time.monotonic() - start, ru.ru_maxrss, "ok" if code in (0, 1) else f"exit {code}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--targets", default="", help="comma-separated targets (default: all)")
    args = ap.parse_args()
    rows = []
    t0 = time.monotonic()
    for target, path in inputs(set(filter(None, args.targets.split(",")))):
        secs, rss_kb, status = run(args.binary, path, args.timeout)
        rows.append((secs, rss_kb, status, target, path))
    print(f"{len(rows)} inputs in {time.monotonic() - t0:.0f} s")
    bad = [r for r in rows if r[2] != "ok"]
    for r in bad:
        print(f"FAILED {r[2]}: {r[4]}")
    print("slowest:")
    for secs, rss, status, target, path in sorted(rows, key=lambda r: -r[0])[: args.top]:
        print(f"  {secs:7.3f} s {rss / 1024:8.1f} MiB  {target:12} {os.path.relpath(path, HERE)} ({os.path.getsize(path)} bytes)")
    print("largest peak RSS:")
    for secs, rss, status, target, path in sorted(rows, key=lambda r: -r[1])[: args.top]:
        print(f"  {rss / 1024:8.1f} MiB {secs:7.3f} s  {target:12} {os.path.relpath(path, HERE)} ({os.path.getsize(path)} bytes)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
