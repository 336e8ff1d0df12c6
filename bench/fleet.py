#!/usr/bin/env python3
"""Benchmark `modelgate audit` on a generated fleet (figures for humans, never asserted in tests).

usage: bench/fleet.py gen WORKDIR [--origins 50] [--commits 120] [--fork-commits 10] [--files 60] [--attributes]
       bench/fleet.py run WORKDIR [--bin target/release/modelgate] [--repeat 3] [--shards 2]

gen: a Gitea-style repository root WORKDIR/repos/<owner>/<name>.git with ORIGINS repositories
of COMMITS commits each (built with git fast-import: text files in a few directories, feature
branches merged with --no-ff, tags, some pickles, one in ten dangerous), and as many forks
(clones sharing the history, then FORK-COMMITS commits of their own): half `git clone --bare
--shared` (the objects stay in the origin, as GitLab's object pools), half plain local clones
(hard-linked packs, as Gitea copies). Every fifth origin has Git LFS models (pickles of a
few MiB, PyTorch zip checkpoints, one in ten dangerous) in its store, <git-dir>/lfs/objects, and its forks carry the pointers (and the
objects, hard-linked). With --attributes, every third origin has a top-level `.gitattributes`
(and one in src/core) from its first commit, changed halfway through its history: the audit
then reads attributes and judges each file with its checkouts, as the hook does.

run: times, warm (one unmeasured run first), the median of REPEAT runs of
  - the sum of `git rev-list --all --objects` over every repository (one process each),
  - `modelgate audit --flavor gitea WORKDIR/repos` (no cache: every blob judged once),
  - the same audit as SHARDS shards run by `xargs -P SHARDS`, then `modelgate audit merge`,
and checks that the merged output equals the unsharded one.
"""
import argparse
import collections
import hashlib
import io
import json
import os
import pickle
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

GIT_ENV = dict(
    os.environ,
    GIT_AUTHOR_NAME="Bench",
    GIT_AUTHOR_EMAIL="bench@example.com",
    GIT_COMMITTER_NAME="Bench",
    GIT_COMMITTER_EMAIL="bench@example.com",
    GIT_CONFIG_NOSYSTEM="1",
)

EVIL = b"\x80\x02cos\nsystem\nq\x00X\x0a\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03."


def git(*args, cwd=None, **kw):
    return subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, **kw)


class FastImport:
    """Write a fast-import stream for one repository."""

    def __init__(self, rng):
        self.rng = rng
        self.out = []
        self.mark = 0
        self.t = 1700000000

    def blob(self, data):
        self.mark += 1
        self.out.append(b"blob\nmark :%d\ndata %d\n" % (self.mark, len(data)) + data + b"\n")
        return self.mark

    def commit(self, ref, msg, changes, parents=()):
        self.mark += 1
        self.t += 60
        head = b"commit %s\nmark :%d\ncommitter Bench <bench@example.com> %d +0000\n" % (ref.encode(), self.mark, self.t)
        m = msg.encode()
        body = head + b"data %d\n" % len(m) + m + b"\n"
        for i, p in enumerate(parents):
            body += (b"from " if i == 0 else b"merge ") + p.encode() + b"\n"
        for path, mark in changes:
            if mark is None:
                body += b"D " + path.encode() + b"\n"
            else:
                body += b"M 100644 :%d %s\n" % (mark, path.encode())
        self.out.append(body)
        return ":%d" % self.mark

    def tag(self, name, target):
        m = b"release"
        self.t += 1
        self.out.append(
            b"tag %s\nfrom %s\ntagger Bench <bench@example.com> %d +0000\ndata %d\n%s\n"
            % (name.encode(), target.encode(), self.t, len(m), m)
        )

    def feed(self, git_dir):
        data = b"".join(self.out) + b"done\n"
        subprocess.run(["git", "--git-dir", git_dir, "fast-import", "--quiet", "--done"], input=data, env=GIT_ENV, check=True)


def text(rng, n):
    words = ["model", "tensor", "layer", "weight", "train", "eval", "loss", "batch", "config", "data", "seed"]
    return ("\n".join(" ".join(rng.choice(words) for _ in range(10)) for _ in range(n)) + "\n").encode()


def lfs_model(rng, mib, evil=False):
    """A PyTorch zip checkpoint of about `mib` MiB of random float32 tensors, in the layout
    torch.save writes (bench/gen.py's stand-ins: nothing from torch is needed or run);
    `evil` appends os.system('echo pwned') to its data.pkl."""
    sys.path.insert(0, HERE)
    import gen  # bench/gen.py

    storage_cls, rebuild = gen.fake_torch()
    n = max(1, mib)
    numel = (mib << 20) // 4 // n
    state = collections.OrderedDict((f"layer{i}.weight", gen.Tensor(str(i), numel, rebuild, storage_cls)) for i in range(n))
    buf = io.BytesIO()
    gen.TorchPickler(buf, protocol=2).dump([state, gen.Evil()] if evil else state)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/byteorder", "little")
        for i in range(n):
            z.writestr(f"archive/data/{i}", rng.randbytes(numel * 4))
        z.writestr("archive/version", "3\n")
    return out.getvalue()


def pointer(oid, size):
    return b"version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (oid.encode(), size)


def store_lfs(git_dir, data):
    oid = hashlib.sha256(data).hexdigest()
    d = os.path.join(git_dir, "lfs", "objects", oid[:2], oid[2:4])
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, oid), "wb") as f:
        f.write(data)
    return oid


ATTRIBUTES = b"*.pkl -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
ATTRIBUTES_LATER = ATTRIBUTES + b"*.txt text eol=lf\n"
ATTRIBUTES_CORE = b"*.txt -diff\n"


def history(fi, rng, commits, nfiles, git_dir, lfs, attributes=False):
    """COMMITS commits on main (and feature branches merged into it)."""
    paths = ["src/%s/file%03d.txt" % (rng.choice(["core", "io", "nn", "util"]), i) for i in range(nfiles)]
    changes = [(p, fi.blob(text(rng, rng.randint(20, 80)))) for p in paths]
    if attributes:
        changes += [(".gitattributes", fi.blob(ATTRIBUTES)), ("src/core/.gitattributes", fi.blob(ATTRIBUTES_CORE))]
    main = fi.commit("refs/heads/main", "initial", changes)
    made = 1
    branch_no = 0
    while made < commits:
        if rng.random() < 0.15 and commits - made >= 4:
            # A feature branch of 2-3 commits, merged with --no-ff.
            branch_no += 1
            ref = "refs/heads/feature-%d" % branch_no
            tip = main
            for k in range(rng.randint(2, 3)):
                p = rng.choice(paths)
                tip = fi.commit(ref, "feature %d.%d" % (branch_no, k), [(p, fi.blob(text(rng, rng.randint(20, 80))))], [tip])
                made += 1
            main = fi.commit("refs/heads/main", "merge feature %d" % branch_no, [], [main, tip])
            made += 1
            continue
        ch = []
        for _ in range(rng.randint(1, 3)):
            ch.append((rng.choice(paths), fi.blob(text(rng, rng.randint(20, 80)))))
        if attributes and made == commits // 2:
            ch.append((".gitattributes", fi.blob(ATTRIBUTES_LATER)))
        r = rng.random()
        if r < 0.04:
            ch.append(("models/m%d.pkl" % made, fi.blob(EVIL if rng.random() < 0.1 else pickle.dumps({"w": [made] * 100}))))
        elif r < 0.06 and lfs:
            data = lfs_model(rng, rng.choice([1, 2, 4, 8]), evil=rng.random() < 0.1)
            oid = store_lfs(git_dir, data)
            ch.append(("weights/w%d.pkl" % made, fi.blob(pointer(oid, len(data)))))
        main = fi.commit("refs/heads/main", "change %d" % made, ch, [main])
        made += 1
        if made % 50 == 0:
            fi.tag("v%d" % made, main)
    return main


def gen(a):
    root = os.path.join(a.workdir, "repos")
    if os.path.exists(root):
        shutil.rmtree(root)
    os.makedirs(root)
    rng = random.Random(1)
    for i in range(a.origins):
        git_dir = os.path.join(root, "org%02d" % i, "project%02d.git" % i)
        git("init", "-q", "--bare", "-b", "main", git_dir)
        fi = FastImport(rng)
        history(fi, rng, a.commits, a.files, git_dir, lfs=(i % 5 == 0), attributes=a.attributes and i % 3 == 0)
        fi.feed(git_dir)
        git("--git-dir", git_dir, "gc", "-q", *(["--aggressive"] if a.aggressive else []))
        # The fork.
        fork = os.path.join(root, "user%02d" % i, "project%02d.git" % i)
        os.makedirs(os.path.dirname(fork), exist_ok=True)
        if i % 2 == 0:
            git("clone", "-q", "--bare", "--shared", git_dir, fork)
        else:
            git("clone", "-q", "--bare", git_dir, fork)
        src_lfs = os.path.join(git_dir, "lfs")
        if os.path.isdir(src_lfs):
            for d, _, files in os.walk(src_lfs):
                for f in files:
                    rel = os.path.relpath(os.path.join(d, f), git_dir)
                    os.makedirs(os.path.dirname(os.path.join(fork, rel)), exist_ok=True)
                    os.link(os.path.join(d, f), os.path.join(fork, rel))
        fi = FastImport(rng)
        paths = ["src/fork/extra%02d.txt" % k for k in range(5)]
        tip = "refs/heads/main^0"
        for k in range(a.fork_commits):
            tip = fi.commit("refs/heads/main", "fork change %d" % k, [(rng.choice(paths), fi.blob(text(rng, 30)))], [tip])
        fi.feed(fork)
        print("repo %d/%d" % (i + 1, a.origins), file=sys.stderr, end="\r")
    print(file=sys.stderr)
    repos = git_dirs(root)
    commits = sum(int(subprocess.check_output(["git", "--git-dir", r, "rev-list", "--all", "--count"])) for r in repos)
    print(json.dumps({"repositories": len(repos), "commits": commits}))


def git_dirs(root):
    out = []
    for owner in sorted(os.listdir(root)):
        for name in sorted(os.listdir(os.path.join(root, owner))):
            if name.endswith(".git"):
                out.append(os.path.join(root, owner, name))
    return out


def timed(cmd, **kw):
    t = time.perf_counter()
    p = subprocess.run(cmd, **kw)
    return time.perf_counter() - t, p


def run(a):
    root = os.path.join(a.workdir, "repos")
    repos = git_dirs(root)
    out = os.path.join(a.workdir, "out")
    os.makedirs(out, exist_ok=True)

    def revlist():
        t = time.perf_counter()
        for r in repos:
            subprocess.run(["git", "--git-dir", r, "rev-list", "--all", "--objects"], stdout=subprocess.DEVNULL, check=True)
        return time.perf_counter() - t

    def audit():
        return timed([a.bin, "audit", "-q", "--flavor", "gitea", root, "-o", os.path.join(out, "whole.jsonl")])[0]

    def sharded():
        t = time.perf_counter()
        cmd = (
            "seq 0 %d | xargs -P %d -I{} %s audit -q --flavor gitea --shard {}/%d %s -o %s/shard-{}.jsonl"
            % (a.shards - 1, a.shards, a.bin, a.shards, root, out)
        )
        subprocess.run(["sh", "-c", cmd + " || test $? -eq 123"], check=True)
        shards = [os.path.join(out, "shard-%d.jsonl" % i) for i in range(a.shards)]
        subprocess.run([a.bin, "audit", "merge", *shards, "-o", os.path.join(out, "merged.jsonl")])
        return time.perf_counter() - t

    results = {}
    for name, f in [("rev_list_sum_s", revlist), ("audit_s", audit), ("audit_%d_shards_s" % a.shards, sharded)]:
        f()  # warm
        results[name] = statistics.median(f() for _ in range(a.repeat))
    results["ratio"] = results["audit_s"] / results["rev_list_sum_s"]
    same = open(os.path.join(out, "whole.jsonl"), "rb").read() == open(os.path.join(out, "merged.jsonl"), "rb").read()
    results["merged_equals_whole"] = same
    last = open(os.path.join(out, "whole.jsonl")).read().splitlines()[-1]
    s = json.loads(last)
    results["summary"] = {k: s[k] for k in ["repositories", "commits", "blobs", "places", "files", "dangerous", "reject"]}
    # Forks add only their walk: the audit of the origins alone, in one process like the whole
    # audit (a fork's blobs are then served from the origin's judgements), against the whole;
    # and the forks alone in a second process with the cache the origins filled (the
    # cache keeps model verdicts, not those of plain text, which is judged again).
    origins = [r for r in repos if "/org" in r]
    forks = [r for r in repos if "/user" in r]
    results["origins_only_s"] = statistics.median(
        timed([a.bin, "audit", "-q", *origins, "-o", os.path.join(out, "o.jsonl")])[0] for _ in range(a.repeat)
    )
    results["forks_added_s"] = results["audit_s"] - results["origins_only_s"]
    t = time.perf_counter()
    for r in forks:
        subprocess.run(["git", "--git-dir", r, "rev-list", "--all", "--objects"], stdout=subprocess.DEVNULL, check=True)
    results["forks_rev_list_s"] = time.perf_counter() - t
    cache = os.path.join(out, "cache")
    shutil.rmtree(cache, ignore_errors=True)
    timed([a.bin, "audit", "-q", "--cache", cache, *origins, "-o", os.path.join(out, "o.jsonl")])
    results["forks_other_process_cached_s"] = timed([a.bin, "audit", "-q", "--cache", cache, *forks, "-o", os.path.join(out, "f.jsonl")])[0]
    # CPU seconds (user + system, children): the machine may be shared, wall time is noisy.
    def cpu(f):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        f()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    results["cpu_rev_list_sum_s"] = cpu(revlist)
    results["cpu_audit_s"] = cpu(audit)
    results["cpu_ratio"] = results["cpu_audit_s"] / results["cpu_rev_list_sum_s"]
    p = subprocess.run([a.bin, "audit", "--flavor", "gitea", root, "-o", os.devnull], stderr=subprocess.PIPE, text=True)
    results["audit_stats"] = p.stderr.strip().splitlines()[-1]
    print(json.dumps(results, indent=2))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("workdir")
    g.add_argument("--origins", type=int, default=50)
    g.add_argument("--commits", type=int, default=120)
    g.add_argument("--fork-commits", type=int, default=10)
    g.add_argument("--files", type=int, default=60)
    g.add_argument("--aggressive", action="store_true", help="git gc --aggressive (deeper delta chains)")
    g.add_argument("--attributes", action="store_true", help="every third origin has .gitattributes (changed once)")
    r = sub.add_parser("run")
    r.add_argument("workdir")
    r.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "modelgate"))
    r.add_argument("--repeat", type=int, default=3)
    r.add_argument("--shards", type=int, default=2)
    a = ap.parse_args()
    gen(a) if a.cmd == "gen" else run(a)


if __name__ == "__main__":
    main()
