#!/usr/bin/env python3
"""Real-world precision benchmark: modelgate (and the peers) on model files shipped in PyPI packages.

usage:
  realworld.py lock [PACKAGES.txt]          resolve packages.txt to lock.json (file, url, sha256, size)
  realworld.py fetch CACHE                  download every locked archive into CACHE, verify sha256
  realworld.py run CACHE --modelgate BIN [--peers VENV] [--policy FILE] [--json OUT]
                                            unpack, pick the model files by content, judge, report

`lock.json` pins each package to one archive (a wheel for CPython 3.11 on x86_64 Linux or a pure
wheel, or an sdist) by file name and sha256, so runs on different days compare. `fetch` refuses an
archive whose hash differs. Nothing downloaded is kept in the repository: CACHE is a directory of
your choice (`/tmp/realworld`).

Which files are models is decided by content: every file of every unpacked archive is given to
`modelgate scan --format json` in one run, and a file counts as a model file when modelgate
recognises a model or archive format in it (`unknown` and plain `X:unknown` wrappers are not).
An independent sniff in this script (magic bytes and pickle headers) cross-checks that choice:
files it takes for models that modelgate calls `unknown` are listed, so a detection gap cannot hide.

The report: counts by format and verdict, every rejection with its finding, and the suspicious
files grouped by the imports outside the allowlist that made them suspicious (which library owns
them). With --peers (a venv made by bench/peers.sh), picklescan and modelscan judge the same model
files, one picklescan process per file and one modelscan run over a staging copy, side by side.
Standard library only.
"""

import argparse
import collections
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
SIMPLE = "https://pypi.org/simple/{}/"
# Import roots that belong to the data libraries the issue names: a file suspicious only because of
# these is a precision bug, not an application class.
DATA_LIBS = ("numpy", "joblib", "sklearn", "torch", "pandas", "scipy", "collections", "builtins",
             "copyreg", "_codecs", "datetime", "decimal", "fractions", "array", "__builtin__",
             "copy_reg", "argparse", "functools", "re", "uuid", "pathlib", "enum")


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


# ---------------------------------------------------------------------------------------------
# lock / fetch


def read_packages(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            spec, kind = line.split()
            name, version = spec.split("==")
            out.append((name, version, kind))
    return out


def simple_index(name):
    req = urllib.request.Request(SIMPLE.format(norm(name)),
                                 headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)["files"]


def wheel_ok(filename, version):
    """A wheel of this version that CPython 3.11 on x86_64 Linux installs."""
    if not filename.endswith(".whl"):
        return False
    parts = filename[:-4].split("-")
    if len(parts) < 5 or parts[1] != version:
        return False
    py, abi, plat = parts[-3], parts[-2], parts[-1]
    pys = py.split(".")
    if not any(p in ("py3", "py2.py3", "cp311") or p == "py2.py3" for p in pys) and "py3" not in pys:
        return False
    if abi not in ("none", "cp311", "abi3"):
        return False
    return plat == "any" or ("x86_64" in plat and "linux" in plat)


def cmd_lock(args):
    pkgs = read_packages(args.packages)
    locked = []
    for name, version, kind in pkgs:
        files = simple_index(name)
        if kind == "sdist":
            cands = [f for f in files if f["filename"].endswith((".tar.gz", ".zip"))
                     and f"-{version}." in f["filename"]]
        else:
            cands = [f for f in files if wheel_ok(f["filename"], version)]
            # prefer the most specific manylinux tag that pip would pick: cp311 over abi3 over none
            cands.sort(key=lambda f: ("cp311" not in f["filename"], "abi3" not in f["filename"], f["filename"]))
        if not cands:
            sys.exit(f"no {kind} for {name}=={version}")
        f = cands[0]
        locked.append({"name": name, "version": version, "file": f["filename"], "url": f["url"],
                       "sha256": f["hashes"]["sha256"], "size": f.get("size")})
        print(f"{name}=={version}: {f['filename']}")
    with open(os.path.join(HERE, "lock.json"), "w", encoding="utf-8") as out:
        json.dump(locked, out, indent=1)
        out.write("\n")


def load_lock():
    with open(os.path.join(HERE, "lock.json"), encoding="utf-8") as f:
        return json.load(f)


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cmd_fetch(args):
    os.makedirs(os.path.join(args.cache, "dl"), exist_ok=True)
    for e in load_lock():
        dest = os.path.join(args.cache, "dl", e["file"])
        if os.path.exists(dest) and sha256_of(dest) == e["sha256"]:
            continue
        tmp = dest + ".part"
        with urllib.request.urlopen(e["url"], timeout=600) as r, open(tmp, "wb") as out:
            shutil.copyfileobj(r, out, 1 << 20)
        got = sha256_of(tmp)
        if got != e["sha256"]:
            os.unlink(tmp)
            sys.exit(f"{e['file']}: sha256 {got} != locked {e['sha256']}")
        os.replace(tmp, dest)
        print(f"fetched {e['file']}")
    print("all archives present and verified")


# ---------------------------------------------------------------------------------------------
# run


def unpack(cache):
    root = os.path.join(cache, "unpacked")
    os.makedirs(root, exist_ok=True)
    for e in load_lock():
        src = os.path.join(cache, "dl", e["file"])
        if not os.path.exists(src):
            sys.exit(f"{e['file']} missing: run `realworld.py fetch {cache}` first")
        dest = os.path.join(root, norm(e["name"]))
        stamp = os.path.join(dest, ".unpacked-" + e["sha256"][:16])
        if os.path.exists(stamp):
            continue
        shutil.rmtree(dest, ignore_errors=True)
        os.makedirs(dest)
        if e["file"].endswith((".whl", ".zip")):
            with zipfile.ZipFile(src) as z:
                z.extractall(dest)
        else:
            with tarfile.open(src) as t:
                t.extractall(dest, filter="data")
        open(stamp, "w").close()
    return root


def sniff(path):
    """An independent guess whether a file is a model file, by its first bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    if head.startswith(b"\x93NUMPY"):
        return "numpy"
    if head.startswith(b"GGUF"):
        return "gguf"
    if head[4:8] == b"TFL3":
        return "tflite"
    for off in (0, 512, 1024, 2048):
        if head[off:off + 8] == b"\x89HDF\r\n\x1a\n":
            return "hdf5"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return None
        if any(n.endswith((".pkl", ".npy", "config.json", "data.pkl")) for n in names):
            return "zip-model"
        return None
    if len(head) > 9 and head[8:9] == b"{":
        n = int.from_bytes(head[:8], "little")
        if 2 <= n <= 100_000_000 and n + 8 <= os.path.getsize(path):
            return "safetensors"
    return None


def run_modelgate(binary, root, policy):
    cmd = [binary, "scan", "--format", "json", root]
    if policy:
        cmd[2:2] = ["--policy", policy]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    doc = json.loads(p.stdout)
    return doc, dt


def is_model(f):
    fmt = f["format"]
    return fmt not in ("unknown", "symlink", "special") and not fmt.endswith(":unknown")


def package_of(rel):
    return rel.split("/", 1)[0]


def picklescan_one(venv, path):
    p = subprocess.run([os.path.join(venv, "bin", "picklescan"), "-p", path],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    out = p.stdout.decode("utf-8", "replace")
    get = lambda key: next((int(l.split(":")[-1]) for l in out.splitlines() if l.startswith(key)), 0)
    scanned, infected = get("Scanned files"), get("Infected files")
    dangerous, suspicious = get("Dangerous globals"), get("Suspicious globals")
    if infected or dangerous:
        return "dangerous"
    if "ERROR" in out:
        return "error"
    if suspicious:
        return "suspicious"
    return "clean" if scanned else "not scanned"


def run_picklescan(venv, paths):
    out = {}
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as ex:
        for path, v in zip(paths, ex.map(lambda p: picklescan_one(venv, p), paths)):
            out[path] = v
    return out


def run_modelscan(venv, root, rels):
    """One modelscan run over a staging copy (hard links) of the model files."""
    stage = tempfile.mkdtemp(prefix="realworld-modelscan-")
    try:
        for rel in rels:
            dest = os.path.join(stage, rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            try:
                os.link(os.path.join(root, rel), dest)
            except OSError:
                shutil.copyfile(os.path.join(root, rel), dest)
        report = os.path.join(stage, "..", os.path.basename(stage) + ".json")
        subprocess.run([os.path.join(venv, "bin", "modelscan"), "-p", stage, "-r", "json", "-o", report],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=3600)
        with open(report, encoding="utf-8") as f:
            doc = json.load(f)
        os.unlink(report)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    verdicts = {rel: "not scanned" for rel in rels}
    scanned = doc.get("summary", {}).get("scanned", {}).get("scanned_files", [])

    def owner(source):
        source = source.replace(stage + "/", "")
        for rel in rels:
            if source == rel or source.startswith(rel + ":") or source.startswith(rel + "/"):
                return rel
        return None

    for s in scanned:
        r = owner(s)
        if r:
            verdicts[r] = "clean"
    rank = {"not scanned": 0, "clean": 1, "error": 2, "suspicious": 3, "dangerous": 4}
    for e in doc.get("errors", []) or []:
        r = owner(e.get("source", ""))
        if r and rank[verdicts[r]] < rank["error"]:
            verdicts[r] = "error"
    for i in doc.get("issues", []) or []:
        r = owner(i.get("source", ""))
        if not r:
            continue
        v = "dangerous" if i.get("severity") in ("CRITICAL", "HIGH") else "suspicious"
        if rank[verdicts[r]] < rank[v]:
            verdicts[r] = v
    return verdicts


def cmd_run(args):
    root = unpack(args.cache)
    doc, dt = run_modelgate(args.modelgate, root, args.policy)
    files = doc["files"]
    rel = lambda f: os.path.relpath(f["path"], root)
    models = [f for f in files if is_model(f)]
    print(f"modelgate {doc['modelgate']}: {len(files)} files in {len(load_lock())} packages scanned in {dt:.2f} s; "
          f"{len(models)} model files from {len({package_of(rel(f)) for f in models})} packages")

    # independent cross-check of the choice of model files
    missed = []
    for f in files:
        if not is_model(f) and f["format"] not in ("symlink", "special"):
            guess = sniff(os.path.join(root, rel(f)))
            if guess:
                missed.append((rel(f), guess, f["format"], f["verdict"]))

    by_fmt = collections.defaultdict(collections.Counter)
    for f in models:
        by_fmt[f["format"]][f["verdict"]] += 1
    verdicts = ("safe", "suspicious", "dangerous", "error", "unsupported")
    print("\n## Model files by format and verdict\n")
    print("| format | files | " + " | ".join(verdicts) + " |")
    print("|---|---:|" + "---:|" * len(verdicts))
    for fmt in sorted(by_fmt):
        c = by_fmt[fmt]
        print(f"| {fmt} | {sum(c.values())} | " + " | ".join(str(c[v]) for v in verdicts) + " |")
    tot = collections.Counter(f["verdict"] for f in models)
    dec = collections.Counter(f["decision"] for f in models)
    print(f"| **all** | {len(models)} | " + " | ".join(str(tot[v]) for v in verdicts) + " |")
    print(f"\ndecisions: {dec['allow']} allow, {dec['tag']} tag, {dec['reject']} reject; "
          f"suspicious rate {100.0 * tot['suspicious'] / max(1, len(models)):.1f} %")

    print("\n## Rejected\n")
    rejected = [f for f in files if f["decision"] == "reject"]
    for f in rejected:
        worst = max(f["findings"], key=lambda x: ["info", "suspicious", "error", "dangerous"].index(x["severity"]),
                    default=None)
        what = f"{worst['code']}: {worst['message']}" if worst else ""
        ev = f" [{worst['evidence'][:120]}]" if worst and worst.get("evidence") else ""
        print(f"- {rel(f)} ({f['format']}, {f['verdict']}): {what}{ev}")
    if not rejected:
        print("none")

    print("\n## Suspicious, grouped by the imports outside the allowlist\n")
    groups = collections.defaultdict(list)
    other = collections.defaultdict(list)
    for f in models:
        if f["verdict"] != "suspicious":
            continue
        unknown = sorted({m.group(1) for x in f["findings"] if x["code"] == "pickle-import-unknown"
                          for m in [re.search(r"imports ([\w.]+)", x["message"])] if m})
        if unknown:
            roots = sorted({u.split(".")[0] for u in unknown})
            groups[", ".join(roots)].append((rel(f), unknown))
        else:
            codes = sorted({x["code"] for x in f["findings"] if x["severity"] == "suspicious"})
            other[", ".join(codes)].append(rel(f))
    data_only = 0
    for key in sorted(groups, key=lambda k: -len(groups[k])):
        items = groups[key]
        names = collections.Counter(u for _, us in items for u in us)
        flag = all(r in DATA_LIBS for r in key.split(", "))
        data_only += len(items) if flag else 0
        print(f"- **{key}**: {len(items)} files{' (DATA LIBRARY ONLY)' if flag else ''}; "
              + ", ".join(f"{n} ({c})" for n, c in names.most_common(6)))
        for path, _ in items[:3]:
            print(f"    - {path}")
    for key, items in sorted(other.items()):
        print(f"- other findings `{key}`: {len(items)} files, e.g. {items[0]}")
    print(f"\nsuspicious only because of data-library names: {data_only}")
    lib_names = collections.Counter(u for items in groups.values() for _, us in items for u in us
                                    if u.split(".")[0] in DATA_LIBS)
    print("data-library names outside the allowlist (in any suspicious file): "
          + (", ".join(f"{n} ({c})" for n, c in lib_names.most_common()) or "none"))

    if missed:
        print("\n## Files the independent sniff takes for models that modelgate did not recognise\n")
        for path, guess, fmt, verdict in missed:
            print(f"- {path}: sniff says {guess}, modelgate {fmt}/{verdict}")

    result = {"modelgate": doc["modelgate"], "seconds": dt, "files": len(files), "models": len(models),
              "by_format": {k: dict(v) for k, v in by_fmt.items()}, "verdicts": dict(tot),
              "decisions": dict(dec), "rejected": [rel(f) for f in rejected],
              "suspicious_groups": {k: [p for p, _ in v] for k, v in groups.items()},
              "data_library_only": data_only, "data_library_names": dict(lib_names), "sniff_missed": [m[0] for m in missed]}

    if args.peers:
        rels = [rel(f) for f in models]
        t0 = time.perf_counter()
        ps = run_picklescan(args.peers, [os.path.join(root, r) for r in rels])
        t_ps = time.perf_counter() - t0
        t0 = time.perf_counter()
        ms = run_modelscan(args.peers, root, rels)
        t_ms = time.perf_counter() - t0
        ps = {os.path.relpath(k, root): v for k, v in ps.items()}
        print("\n## Peers on the same model files\n")
        cols = ("clean", "suspicious", "dangerous", "error", "not scanned")
        print("| tool | time | " + " | ".join(cols) + " |")
        print("|---|---:|" + "---:|" * len(cols))
        mg = collections.Counter({"safe": "clean"}.get(f["verdict"], f["verdict"]) for f in models)
        mg_row = {"clean": mg["clean"], "suspicious": mg["suspicious"], "dangerous": mg["dangerous"],
                  "error": mg["error"], "not scanned": mg["unsupported"]}
        print(f"| modelgate | {dt:.1f} s (all {len(files)} files) | " + " | ".join(str(mg_row[c]) for c in cols) + " |")
        for name, res, t in (("picklescan", ps, t_ps), ("modelscan", ms, t_ms)):
            c = collections.Counter(res.values())
            print(f"| {name} | {t:.1f} s | " + " | ".join(str(c[k]) for k in cols) + " |")
        print("\nPeer 'dangerous' verdicts (a peer's reject) on files modelgate allows or tags:")
        for name, res in (("picklescan", ps), ("modelscan", ms)):
            hits = [r for r in rels if res.get(r) == "dangerous"]
            print(f"- {name}: {len(hits)}" + (": " + ", ".join(hits[:8]) if hits else ""))
        result["peers"] = {"picklescan": dict(collections.Counter(ps.values())),
                           "modelscan": dict(collections.Counter(ms.values())),
                           "picklescan_seconds": t_ps, "modelscan_seconds": t_ms}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(result, out, indent=1)
    # exit status: 0 when nothing real was rejected and nothing is suspicious only for data-library names
    return 1 if rejected or data_only else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("lock")
    p.add_argument("packages", nargs="?", default=os.path.join(HERE, "packages.txt"))
    p = sub.add_parser("fetch")
    p.add_argument("cache")
    p = sub.add_parser("run")
    p.add_argument("cache")
    p.add_argument("--modelgate", required=True)
    p.add_argument("--peers")
    p.add_argument("--policy")
    p.add_argument("--json")
    a = ap.parse_args()
    if a.cmd == "lock":
        cmd_lock(a)
    elif a.cmd == "fetch":
        cmd_fetch(a)
    else:
        sys.exit(cmd_run(a))


if __name__ == "__main__":
    main()
