#!/usr/bin/env python3
"""Benchmark the push gate (figures for humans, never asserted in tests).

usage: bench/gate.py WORKDIR [--bin target/release/modelgate] [--commits 10000] [--files 50000]
                     [--lfs-gib 1 8] [--skip-history] [--skip-lfs]

1. History: a push of COMMITS commits touching FILES new non-model files (built with git
   fast-import) to a bare repository whose pre-receive hook runs, on the same stdin and in the
   same quarantine, `git rev-list --objects <new> --not --all` and then `modelgate hook
   pre-receive`, timing both. The push is also timed against a hookless bare repository, and
   with post-receive (notes) added.
2. LFS: a pointer to a torch checkpoint of N GiB (bench/gen.py, hard-linked into the bare
   repository's lfs/objects as a file:// push leaves it) is pushed; the hook's wall time and
   peak RSS are reported, for a benign and a malicious checkpoint, then for a re-push of the
   same object under another path (served from the cache).

Everything is written under WORKDIR (several GiB for the LFS part).
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# The hook under test: time `git rev-list` and `modelgate hook pre-receive` on the same input.
MEASURE_HOOK = r"""#!/usr/bin/env python3
import json, os, resource, subprocess, sys, time
data = sys.stdin.buffer.read()
log = os.environ["BENCH_LOG"]
rec = {}
news = [l.split()[1] for l in data.decode().splitlines() if l.split() and set(l.split()[1]) != {"0"}]
t = time.perf_counter()
p = subprocess.run([os.environ["BENCH_BIN"], "hook", "%(hook)s"], input=data, stderr=subprocess.PIPE)
rec["modelgate_s"] = time.perf_counter() - t
# Only modelgate has run as a child so far: this is its peak.
rec["modelgate_maxrss_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
if news and os.environ.get("BENCH_REVLIST") == "1":
    t = time.perf_counter()
    r = subprocess.run(["git", "rev-list", "--objects", *news, "--not", "--all"], stdout=subprocess.PIPE, check=True)
    rec["rev_list_s"] = time.perf_counter() - t
    rec["rev_list_objects"] = r.stdout.count(b"\n")
rec["hook"] = "%(hook)s"
rec["exit"] = p.returncode
lines = p.stderr.decode(errors="replace").strip().splitlines()
rec["last_line"] = [l.strip() for l in lines if "DANGEROUS" in l or "evidence" in l or "push accepted" in l][:2] or lines[-1:]
with open(log, "a") as f:
    f.write(json.dumps(rec) + "\n")
sys.stderr.buffer.write(p.stderr)
sys.exit(p.returncode)
"""


def run(cmd, cwd=None, env=None, check=True, **kw):
    return subprocess.run(cmd, cwd=cwd, env=env, check=check, **kw)


def git_env(home):
    env = dict(os.environ)
    env.update(
        HOME=home,
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="bench",
        GIT_AUTHOR_EMAIL="bench@example.com",
        GIT_COMMITTER_NAME="bench",
        GIT_COMMITTER_EMAIL="bench@example.com",
    )
    for k in ("MODELGATE_POLICY", "GIT_DIR"):
        env.pop(k, None)
    return env


def bare(path, env, hooks=(), revlist=False):
    if os.path.exists(path):
        shutil.rmtree(path)
    run(["git", "init", "-q", "--bare", path], env=env)
    for h in hooks:
        p = os.path.join(path, "hooks", h)
        with open(p, "w") as f:
            f.write(MEASURE_HOOK % {"hook": h})
        os.chmod(p, 0o755)


def fast_import_history(work, commits, files, env):
    """COMMITS commits on main, each adding FILES/COMMITS new small text files."""
    per = max(1, files // commits)
    lines = []
    n = 0
    for c in range(commits):
        lines.append(b"commit refs/heads/main\n")
        lines.append(b"committer bench <bench@example.com> %d +0000\n" % (1_700_000_000 + c))
        msg = b"commit %d\n" % c
        lines.append(b"data %d\n%s" % (len(msg), msg))
        for _ in range(per):
            body = b"file %d\nsome plain text that is not a model\n" % n
            lines.append(b"M 100644 inline src/d%03d/f%06d.txt\n" % (n % 500, n))
            lines.append(b"data %d\n%s\n" % (len(body), body))
            n += 1
    run(["git", "init", "-q", "-b", "main", work], env=env)
    run(["git", "fast-import", "--quiet"], cwd=work, env=env, input=b"".join(lines))
    return n


def timed_push(work, url, refspec, env):
    t = time.perf_counter()
    p = run(["git", "push", "-q", url, refspec], cwd=work, env=env, check=False, capture_output=True)
    dt = time.perf_counter() - t
    if p.returncode != 0 and b"declined" not in p.stderr:
        sys.exit(f"push failed: {p.stderr.decode(errors='replace')}")
    return dt, p.returncode == 0, p.stderr.decode(errors="replace")


def read_log(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        recs = [json.loads(l) for l in f if l.strip()]
    os.remove(path)
    return recs


def history(a, env):
    work = os.path.join(a.workdir, "hist-work")
    if os.path.exists(work):
        shutil.rmtree(work)
    t = time.perf_counter()
    nfiles = fast_import_history(work, a.commits, a.files, env)
    print(f"history: {a.commits} commits, {nfiles} files written in {time.perf_counter() - t:.1f} s")
    log = os.path.join(a.workdir, "hook.log")
    env = dict(env, BENCH_LOG=log, BENCH_BIN=a.bin, BENCH_REVLIST="1")
    rows = []
    for label, hooks in [
        ("no hook", ()),
        ("pre-receive", ("pre-receive",)),
        ("pre+post-receive", ("pre-receive", "post-receive")),
    ]:
        for attempt in range(a.repeat):
            srv = os.path.join(a.workdir, "hist-server.git")
            bare(srv, env, hooks)
            dt, ok, err = timed_push(work, "file://" + srv, "main", env)
            recs = read_log(log)
            rows.append((label, attempt, dt, ok, recs))
    print()
    print("| server hooks | push wall s | git rev-list --objects s | modelgate pre-receive s | modelgate post-receive s | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for label, attempt, dt, ok, recs in rows:
        pre = next((r for r in recs if r["hook"] == "pre-receive"), {})
        post = next((r for r in recs if r["hook"] == "post-receive"), {})
        rss = max([r.get("modelgate_maxrss_mib", 0) for r in recs] or [0])
        fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else "-"
        print(
            f"| {label} | {dt:.2f} | {fmt(pre.get('rev_list_s'))} | {fmt(pre.get('modelgate_s'))} |"
            f" {fmt(post.get('modelgate_s'))} | {rss:.0f} |"
        )
    objs = next((r["rev_list_objects"] for *_, recs in rows for r in recs if "rev_list_objects" in r), None)
    print(f"\n(rev-list listed {objs} objects; the gate's last line: "
          f"{next((r['last_line'] for *_, recs in rows for r in recs if r['hook'] == 'pre-receive'), '')})")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(16 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest(), os.path.getsize(path)


def lfs(a, env):
    out = os.path.join(a.workdir, "gen")
    run([sys.executable, os.path.join(HERE, "gen.py"), out, "--torch-gib", *map(str, a.lfs_gib), "--joblib-gib", "0"])
    log = os.path.join(a.workdir, "hook.log")
    env = dict(env, BENCH_LOG=log, BENCH_BIN=a.bin, BENCH_REVLIST="0")
    print()
    print("| checkpoint | push | push wall s | modelgate pre-receive s | peak RSS MiB | result |")
    print("|---|---|---|---|---|---|")
    for gib in a.lfs_gib:
        for evil in (False, True):
            name = f"torch-{gib}g{'-evil' if evil else ''}.pt"
            path = os.path.join(out, name)
            oid, size = sha256_file(path)
            srv = os.path.join(a.workdir, "lfs-server.git")
            bare(srv, env, ("pre-receive",))
            obj = os.path.join(srv, "lfs", "objects", oid[0:2], oid[2:4], oid)
            os.makedirs(os.path.dirname(obj), exist_ok=True)
            os.link(path, obj)
            work = os.path.join(a.workdir, "lfs-work")
            if os.path.exists(work):
                shutil.rmtree(work)
            run(["git", "init", "-q", "-b", "main", work], env=env)
            ptr = f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n"
            with open(os.path.join(work, "model.pt"), "w") as f:
                f.write(ptr)
            run(["git", "add", "model.pt"], cwd=work, env=env)
            run(["git", "commit", "-q", "-m", "checkpoint"], cwd=work, env=env)
            pushes = [("first", "main")]
            if not evil:
                pushes.append(("re-push (cache)", "main:refs/heads/again"))
                pushes.append(("verify_sha256, no cache", "main:refs/heads/verify"))
            for n, (label, refspec) in enumerate(pushes):
                policy = os.path.join(srv, "modelgate.toml")
                if label.startswith("verify"):
                    with open(policy, "w") as f:
                        f.write("[lfs]\nverify_sha256 = true\n[gate]\ncache_dir = \"\"\n")
                if n > 0:
                    # The same object at another path, in a new commit.
                    os.makedirs(os.path.join(work, f"copy{n}"), exist_ok=True)
                    with open(os.path.join(work, f"copy{n}", "model.pt"), "w") as f:
                        f.write(ptr)
                    run(["git", "add", "-A"], cwd=work, env=env)
                    run(["git", "commit", "-q", "-m", "same object elsewhere"], cwd=work, env=env)
                dt, ok, err = timed_push(work, "file://" + srv, refspec, env)
                recs = read_log(log)
                r = recs[0] if recs else {}
                last = " / ".join(r.get("last_line") or [""]).replace("modelgate: ", "")
                print(
                    f"| {name} ({size / 2**30:.1f} GiB) | {label} | {dt:.2f} | {r.get('modelgate_s', 0):.3f} |"
                    f" {r.get('modelgate_maxrss_mib', 0):.0f} | {'accepted' if ok else 'rejected'}: {last} |"
                )
            shutil.rmtree(srv)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workdir")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "modelgate"))
    ap.add_argument("--commits", type=int, default=10_000)
    ap.add_argument("--files", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--lfs-gib", type=int, nargs="*", default=[1, 8])
    ap.add_argument("--skip-history", action="store_true")
    ap.add_argument("--skip-lfs", action="store_true")
    a = ap.parse_args()
    a.bin = os.path.abspath(a.bin)
    a.workdir = os.path.abspath(a.workdir)
    os.makedirs(a.workdir, exist_ok=True)
    home = os.path.join(a.workdir, "home")
    os.makedirs(home, exist_ok=True)
    env = git_env(home)
    print(f"modelgate: {a.bin}; {subprocess.run(['git', '--version'], capture_output=True, text=True).stdout.strip()};"
          f" {os.cpu_count()} cpus")
    if not a.skip_history:
        history(a, env)
    if not a.skip_lfs:
        lfs(a, env)


if __name__ == "__main__":
    main()
