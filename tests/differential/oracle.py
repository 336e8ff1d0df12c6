"""The differential oracle: generate and mutate model files per format, load each with the real
loaders in a sandbox (sandbox.py) and compare with `modelgate scan --format json`.

    python tests/differential/oracle.py --modelgate target/debug/modelgate [--seed N]
        [--cases N] [--families pickle,npy,...] [--ci] [--keep DIR] [--json FILE]

Run it with a Python that has numpy, joblib and h5py (the venv `.ci/run` makes, /opt/mg-venv);
torch comes from a second interpreter (--torch-python, Debian's /usr/bin/python3 with
python3-torch). Disagreements, by class:

- missed/<family>/<loader>: a load wrote the marker, but modelgate did not reject the file
  (always a failure);
- false-reject/<family>/<code>: a file made from benign data, which a real loader loads
  cleanly without writing the marker, is rejected (dangerous or error) by modelgate;
- unrecognised/<family>/<loader>: a model loader loads the file, but modelgate calls it
  `unsupported` (only bytes no model loader opens may be unsupported).

Each class is reported with its count, the tags of its first case (the generator and mutations
that made it) and a reproducer minimised by deleting bytes while the disagreement holds. Notes
that are no failure: payloads rejected only as `error` (weakly caught), loader timeouts/crashes.

--ci leaves out the tags listed in known.json (disagreements found and routed to their owners,
each with its class and reproducer); the bench run (bench/oracle.sh) includes them.
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import families  # noqa: E402

TORCH_LOADERS = {"torch", "torch-jit"}


class Server:
    """One sandbox.py loader server."""

    def __init__(self, python):
        self.python = python
        self.p = subprocess.Popen(
            [python, os.path.join(HERE, "sandbox.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        self.lock = threading.Lock()

    def ready(self):
        """Wait for the server's hello (servers start in parallel)."""
        hello = self.p.stdout.readline()
        if not hello:
            raise RuntimeError(f"{python} sandbox.py did not start")
        info = json.loads(hello)
        self.loaders = set(info["loaders"])
        self.version = info["python"]
        self.nobody = info.get("nobody", False)
        return self

    def run(self, reqs):
        with self.lock:
            self.p.stdin.write(json.dumps(reqs) + "\n")
            self.p.stdin.flush()
            line = self.p.stdout.readline()
        if not line:
            raise RuntimeError(f"the loader server {self.python} died")
        return json.loads(line)

    def script(self, script, args):
        with self.lock:
            self.p.stdin.write(json.dumps({"script": script, "args": args}) + "\n")
            self.p.stdin.flush()
            line = self.p.stdout.readline()
        return bool(line) and json.loads(line)["ok"]

    def close(self):
        try:
            self.p.stdin.close()
            self.p.wait(timeout=30)
        except Exception:  # noqa: BLE001
            self.p.kill()


class Loaders:
    """Loader servers by interpreter; `run` sends each request to a server that has its loader,
    in batches, several servers in parallel."""

    def __init__(self, python, torch_python, workers):
        self.servers = [Server(python) for _ in range(workers)]
        torch = Server(torch_python) if torch_python and os.path.exists(torch_python) else None
        for s in self.servers:
            s.ready()
        self.torch = []
        if torch is not None:
            try:
                torch.ready()
                if "torch" in torch.loaders:
                    self.torch = [torch]
                else:
                    torch.close()
            except (RuntimeError, OSError):
                torch.close()
        self.available = set(self.servers[0].loaders) - TORCH_LOADERS
        if self.torch:
            self.available |= TORCH_LOADERS

    def describe(self):
        who = lambda s: " (as nobody)" if s.nobody else " (as root)"  # noqa: E731
        out = f"python {self.servers[0].version}{who(self.servers[0])}: " + ", ".join(sorted(self.servers[0].loaders - TORCH_LOADERS))
        if self.torch:
            out += f"; torch python {self.torch[0].version}{who(self.torch[0])}: torch, torch-jit"
        return out

    def run(self, reqs, batch=24):
        """reqs: list of {"id", "loader", "path"}; returns {id: result}."""
        results = {}
        lock = threading.Lock()
        plain = [q for q in reqs if q["loader"] not in TORCH_LOADERS]
        torch = [q for q in reqs if q["loader"] in TORCH_LOADERS]
        queues = []
        for servers, qs in ((self.servers, plain), (self.torch, torch)):
            if not servers:
                continue
            chunks = [qs[i:i + batch] for i in range(0, len(qs), batch)]
            for k, s in enumerate(servers):
                queues.append((s, chunks[k::len(servers)]))

        def work(server, chunks):
            for c in chunks:
                for res in server.run(c):
                    with lock:
                        results[res["id"]] = res

        threads = [threading.Thread(target=work, args=q) for q in queues]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    def close(self):
        for s in self.servers + self.torch:
            s.close()


def modelgate_scan(modelgate, paths, jobs=2):
    """{path: file report} from `modelgate scan --format json` over the given files."""
    out = {}
    for i in range(0, len(paths), 2000):
        chunk = paths[i:i + 2000]
        p = subprocess.run([modelgate, "scan", "--format", "json", "-j", str(jobs), *chunk],
                           capture_output=True, text=True, timeout=3600)
        if p.returncode not in (0, 1):
            raise RuntimeError(f"modelgate failed ({p.returncode}): {p.stderr[-2000:]}")
        for f in json.loads(p.stdout)["files"]:
            out[f["path"]] = f
    return out


def worst(report):
    order = {"info": 0, "suspicious": 1, "error": 2, "dangerous": 3}
    best = None
    for f in report.get("findings", []):
        if best is None or order.get(f["severity"], 0) > order.get(best["severity"], 0):
            best = f
    return best


# Finding codes that reject a file on purpose even when a loader reads it cleanly (known.json's
# "by_design", each with its reason): such a rejection is a note, not a disagreement.
BY_DESIGN = set()


def judge(case, results, report):
    """The disagreement classes of one case (empty when modelgate agrees)."""
    out = []
    rejected = report["decision"] == "reject"
    fired = [q["loader"] for q, r in results if r["marker"]]
    if fired and not rejected:
        out.append(f"missed/{case.family}/{fired[0]}")
    clean = [q["loader"] for q, r in results if r["status"] == "ok" and not r["marker"]]
    if not case.payload and clean and not fired and rejected:
        w = worst(report)
        code = w["code"] if w else report["verdict"]
        if code not in BY_DESIGN:
            out.append(f"false-reject/{case.family}/{code}")
    models = [q["loader"] for q, r in results if r["status"] == "ok" and r.get("model") and q["loader"] in MODEL_LOADERS]
    if models and report["verdict"] == "unsupported" and not (fired and not rejected):
        out.append(f"unrecognised/{case.family}/{models[0]}")
    return out


# Loaders that open a model (the container loaders unpickle members, which says little of the
# container's own format when nothing in it is a model).
MODEL_LOADERS = {"pickle-c", "pickle-py", "joblib", "numpy", "torch", "torch-jit", "keras-zip", "keras-h5"}


def notes_of(case, results, report):
    out = []
    fired = [q["loader"] for q, r in results if r["marker"]]
    clean = [q["loader"] for q, r in results if r["status"] == "ok" and not r["marker"]]
    w = worst(report)
    if not case.payload and clean and not fired and report["decision"] == "reject" and w and w["code"] in BY_DESIGN:
        out.append(f"by-design-reject/{case.family}/{w['code']}")
    if fired and report["decision"] == "reject" and report["verdict"] != "dangerous":
        out.append(f"payload-only-{report['verdict']}/{case.family}/{fired[0]}")
    for q, r in results:
        if r["status"] in ("timeout", "crash"):
            out.append(f"loader-{r['status']}/{case.family}/{q['loader']}")
    return out


class Minimizer:
    """Delete bytes while the case keeps its disagreement class (ddmin over chunks), within a
    budget of tries; each try loads the candidate with the case's loaders and scans it."""

    def __init__(self, loaders, modelgate, tmp, budget):
        self.loaders = loaders
        self.modelgate = modelgate
        self.tmp = tmp
        self.budget = budget
        self.n = 0

    def holds(self, case, data, cls):
        self.n += 1
        path = os.path.join(self.tmp, f"min-{self.n}")
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o644)
        reqs = [{"id": i, "loader": l, "path": path} for i, l in enumerate(case.loaders)]
        res = self.loaders.run(reqs)
        results = [(q, res[q["id"]]) for q in reqs]
        report = modelgate_scan(self.modelgate, [path], jobs=1)[path]
        os.unlink(path)
        return cls in judge(case.with_data(data), results, report)

    def run(self, case, cls):
        deadline = time.monotonic() + self.budget
        data, tries = case.data, 0
        view = npy_view(data)
        if view is not None:
            # an .npy header is cut inside its text, its length field kept right
            head, body, wrap = view
            head, t = self.ddmin(case, cls, head, lambda h: wrap(h, body), deadline)
            body, t2 = self.ddmin(case, cls, body, lambda b: wrap(head, b), deadline)
            data, tries = wrap(head, body), t + t2
        data, t = self.ddmin(case, cls, data, lambda d: d, deadline)
        return data, tries + t

    def ddmin(self, case, cls, part, build, deadline):
        """Delete chunks of `part` while build(part) keeps the class."""
        tries = 0
        n = 2
        while len(part) >= 2 and time.monotonic() < deadline:
            chunk = max(1, len(part) // n)
            removed = False
            for start in range(0, len(part), chunk):
                if time.monotonic() >= deadline:
                    break
                cand = part[:start] + part[start + chunk:]
                tries += 1
                if cand and self.holds(case, build(cand), cls):
                    part = cand
                    n = max(n - 1, 2)
                    removed = True
                    break
            if not removed:
                if chunk == 1:
                    break
                n = min(n * 2, len(part))
        return part, tries


def npy_view(data):
    """(header text, rest, rebuild) of an .npy file, or None."""
    import struct

    if not data.startswith(b"\x93NUMPY") or len(data) < 10:
        return None
    major = data[6]
    if major == 1:
        (hl,) = struct.unpack("<H", data[8:10])
        start = 10
    elif len(data) >= 12:
        (hl,) = struct.unpack("<I", data[8:12])
        start = 12
    else:
        return None
    prefix = data[:8]

    def wrap(head, body):
        if major == 1 and len(head) < 1 << 16:
            return prefix + struct.pack("<H", len(head)) + head + body
        return prefix + struct.pack("<I", len(head)) + head + body

    return data[start:start + hl], data[start + hl:], wrap


def load_known():
    with open(os.path.join(HERE, "known.json")) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modelgate", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cases", type=int, default=3000)
    ap.add_argument("--families", default=",".join(families.NAMES))
    ap.add_argument("--torch-python", default="/usr/bin/python3")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ci", action="store_true", help="leave out the tags in known.json")
    ap.add_argument("--require-all", action="store_true", help="fail when a loader is missing")
    ap.add_argument("--minimize", type=float, default=20.0, help="seconds per disagreement class (0: none)")
    ap.add_argument("--keep", help="directory to write each class's reproducer to")
    ap.add_argument("--dump", help="write every generated case to this directory (fuzz seeds) and stop")
    ap.add_argument("--json", help="write the full report as JSON here")
    args = ap.parse_args()

    t0 = time.monotonic()
    rng = random.Random(args.seed)
    tmp = tempfile.mkdtemp(prefix="mg-oracle-cases-")
    os.chmod(tmp, 0o755)
    loaders = None
    try:
        wanted = [f for f in args.families.split(",") if f]
        if args.dump:
            ctx = families.Context(tmp, args.torch_python, set())
            cases = families.generate(rng, wanted, args.cases, ctx)
            os.makedirs(args.dump, exist_ok=True)
            for i, c in enumerate(cases):
                with open(os.path.join(args.dump, f"{c.family}-{i:05d}"), "wb") as f:
                    f.write(c.data)
            print(f"{len(cases)} cases written to {args.dump}")
            return 0
        loaders = Loaders(sys.executable, args.torch_python, args.workers)
        print(f"loaders: {loaders.describe()}", flush=True)
        ctx = families.Context(tmp, args.torch_python if loaders.torch else None, loaders.available)
        if loaders.torch:
            ctx.run_torch_script = loaders.torch[0].script
        missing = families.missing(wanted, loaders.available)
        if missing:
            msg = "; ".join(f"{f} needs {', '.join(sorted(m))}" for f, m in missing.items())
            if args.require_all:
                print(f"error: loaders missing: {msg}", file=sys.stderr)
                return 2
            print(f"skipping families without their loaders: {msg}", flush=True)
            wanted = [f for f in wanted if f not in missing]
        known = load_known()
        BY_DESIGN.update(k["code"] for k in known.get("by_design", []))
        skip_tags = {k["tag"] for k in known.get("excluded", [])} if args.ci else set()
        cases = families.generate(rng, wanted, args.cases, ctx, skip_tags)
        t_gen = time.monotonic() - t0

        paths = []
        reqs = []
        for i, c in enumerate(cases):
            c.path = os.path.join(tmp, f"case-{i:05d}")
            with open(c.path, "wb") as f:
                f.write(c.data)
            os.chmod(c.path, 0o644)
            paths.append(c.path)
            for l in c.loaders:
                reqs.append({"id": len(reqs), "loader": l, "path": c.path, "case": i})

        reports = {}
        scan_err = []

        def scan():
            try:
                reports.update(modelgate_scan(args.modelgate, paths))
            except Exception as e:  # noqa: BLE001
                scan_err.append(e)

        th = threading.Thread(target=scan)
        th.start()
        t1 = time.monotonic()
        res = loaders.run([{k: q[k] for k in ("id", "loader", "path")} for q in reqs])
        t_load = time.monotonic() - t1
        th.join()
        if scan_err:
            raise scan_err[0]
        t_scan = time.monotonic() - t1

        per_case = defaultdict(list)
        for q in reqs:
            per_case[q["case"]].append((q, res[q["id"]]))
        outcomes = defaultdict(Counter)
        loader_ms = Counter()
        verdicts = defaultdict(Counter)
        classes = defaultdict(list)
        notes = defaultdict(list)
        for i, c in enumerate(cases):
            results = per_case[i]
            rep = reports[c.path]
            verdicts[c.family][rep["verdict"]] += 1
            for q, r in results:
                outcomes[q["loader"]]["marker" if r["marker"] else r["status"]] += 1
                loader_ms[q["loader"]] += r.get("ms", 0)
            for k in judge(c, results, rep):
                classes[k].append((c, results, rep))
            for k in notes_of(c, results, rep):
                notes[k].append((c, results, rep))

        minimizer = Minimizer(loaders, args.modelgate, tmp, args.minimize)
        summary = {
            "seed": args.seed, "cases": len(cases), "loaders": loaders.describe(),
            "families": dict(Counter(c.family for c in cases)),
            "loader_outcomes": {k: dict(v) for k, v in outcomes.items()},
            "loader_seconds": {k: round(v / 1000, 1) for k, v in loader_ms.items()},
            "verdicts": {k: dict(v) for k, v in verdicts.items()},
            "disagreements": {}, "notes": {k: len(v) for k, v in notes.items()},
            "seconds": {"generate": round(t_gen, 1), "load": round(t_load, 1), "scan_and_load": round(t_scan, 1)},
        }
        slow = sorted(((r.get("ms", 0), q["loader"], cases[q["case"]]) for q in reqs for r in [res[q["id"]]]), key=lambda x: -x[0])[:5]
        summary["slowest_loads"] = [f"{ms} ms {l} {c.family}: {r['status']} {' '.join(sorted(c.tags))[:160]}"
                                    for ms, l, c in slow for r in [res[next(q['id'] for q in reqs if q['path'] == c.path and q['loader'] == l)]]]
        for cls, items in sorted(classes.items()):
            c, results, rep = items[0]
            data = c.data
            tries = 0
            if args.minimize > 0:
                data, tries = minimizer.run(c, cls)
            w = worst(rep)
            entry = {
                "count": len(items),
                "tags": sorted(c.tags),
                "loaders": {q["loader"]: (r["status"] + (" +marker" if r["marker"] else "") + (": " + r["detail"] if r["detail"] else "")) for q, r in results},
                "modelgate": f"{rep['verdict']} {rep['format']}" + (f" {w['code']}: {w['message'][:200]}" if w else ""),
                "size": len(c.data),
                "reproducer_hex": data.hex() if len(data) <= 4096 else None,
                "reproducer_size": len(data),
                "minimize_tries": tries,
            }
            if args.keep:
                os.makedirs(args.keep, exist_ok=True)
                name = cls.replace("/", "_")
                with open(os.path.join(args.keep, name), "wb") as f:
                    f.write(data)
                entry["reproducer_file"] = os.path.join(args.keep, name)
            summary["disagreements"][cls] = entry
        summary["seconds"]["total"] = round(time.monotonic() - t0, 1)
        print_summary(summary)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(summary, f, indent=1)
        problems = self_check(args, cases, per_case)
        for p in problems:
            print(f"self-check failed: {p}")
        if summary["disagreements"]:
            return 1
        return 3 if problems else 0
    finally:
        if loaders:
            loaders.close()
        shutil.rmtree(tmp, ignore_errors=True)


def self_check(args, cases, per_case):
    """The run proves something only if it ran: enough cases, and in every family some
    payloads that fired and some benign files that loaded cleanly."""
    out = []
    if len(cases) < 0.9 * args.cases:
        out.append(f"only {len(cases)} of {args.cases} cases were generated")
    fired = Counter()
    clean = Counter()
    for i, c in enumerate(cases):
        results = per_case[i]
        if any(r["marker"] for _, r in results):
            fired[c.family] += 1
        if not c.payload and any(r["status"] == "ok" and not r["marker"] for _, r in results):
            clean[c.family] += 1
    for fam in sorted({c.family for c in cases}):
        if fam != "torch" or any("torch:jit" not in c.tags for c in cases if c.family == fam):
            if not fired[fam]:
                out.append(f"no payload of family {fam} ran in its loader")
        if not clean[fam]:
            out.append(f"no benign file of family {fam} loaded cleanly")
    return out


def print_summary(s):
    print(f"cases: {s['cases']} (seed {s['seed']}): " + ", ".join(f"{k} {v}" for k, v in sorted(s["families"].items())))
    print("loader outcomes:")
    for l, c in sorted(s["loader_outcomes"].items()):
        print(f"  {l:12} " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())) + f" ({s['loader_seconds'].get(l, 0)} s)")
    print("modelgate verdicts:")
    for fam, c in sorted(s["verdicts"].items()):
        print(f"  {fam:12} " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    if s["notes"]:
        print("notes (no failure):")
        for k, v in sorted(s["notes"].items()):
            print(f"  {k}: {v}")
    d = s["disagreements"]
    print(f"disagreements: {sum(e['count'] for e in d.values())} in {len(d)} classes")
    for cls, e in d.items():
        print(f"  {cls}: {e['count']} case(s)")
        print(f"    tags: {' '.join(e['tags'])}")
        for l, o in e["loaders"].items():
            print(f"    {l}: {o}")
        print(f"    modelgate: {e['modelgate']}")
        rep = e["reproducer_hex"]
        print(f"    reproducer ({e['reproducer_size']} of {e['size']} bytes, {e['minimize_tries']} tries): "
              + (rep if rep is not None else e.get("reproducer_file", "(too large to print; use --keep)")))
    print("slowest loads:")
    for line in s.get("slowest_loads", []):
        print("  " + line)
    print("seconds: " + ", ".join(f"{k} {v}" for k, v in s["seconds"].items()))


if __name__ == "__main__":
    sys.exit(main())
