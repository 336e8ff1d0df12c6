"""Generate src/formats/tensorflow/ops.rs: the TensorFlow ops that reach Python, files or sockets.

The table is derived from TensorFlow itself, in three steps:

1. every registered op of the pip package, dumped by `registry.py` (the OpDefs: input and attr
   names, so that the table can name which input or attr carries a path);
2. the kernels of those ops in TensorFlow's source: each `REGISTER_KERNEL_BUILDER(Name(...))` is
   mapped to its op, and the kernel file (with its own header, and the `.cc` of the local helper
   headers it includes) is searched for the calls that open, list, write, delete or map files,
   open sockets or run Python (`SINKS` below);
3. `review.tsv`: a human decision per op that the search flagged or that was found by reading
   (helpers more than one include away, ops registered outside the tree). Every flagged op must be
   reviewed, every reviewed op must exist in the registry, and every named carrier must be one of
   the op's inputs or attrs; otherwise this script fails.

    /opt/tf-venv/bin/python tools/tf_ops/registry.py > /tmp/registry.tsv
    python3 tools/tf_ops/gen_table.py --registry /tmp/registry.tsv --source TF_SOURCE_TREE \
        > src/formats/tensorflow/ops.rs

TF_SOURCE_TREE is a checkout of github.com/tensorflow/tensorflow (only its .cc and .h files are
read). The table this produced was made from tensorflow-cpu 2.21.0's registry and a source tree
of March 2026.
"""
import argparse
import collections
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

SINKS = {
    "write": r"NewWritableFile|NewAppendableFile|DeleteFile|DeleteRecursively|RecursivelyCreateDir|CreateDir\(|"
    r"RenameFile|WriteStringToFile|WriteBinaryProto|WriteTextProto|BundleWriter|TensorSliceWriter|EventsWriter|"
    r"CreateSummaryFileWriter|CreateSummaryDbWriter|SnapshotWriter|AtomicallyWrite|CopyFile|RecordWriter|"
    r"MergeBundles|SaveTensors|Sqlite::Open|SaveSerializedProtoToFile|SaveTensorProtoToFile",
    "read": r"NewRandomAccessFile|NewReadOnlyMemoryRegionFromFile|GetChildren|GetMatchingPaths|FileExists|"
    r"GetFileSize|->Stat\(|IsDirectory|ReadFileToString|ReadBinaryProto|ReadTextProto|BundleReader|"
    r"TensorSliceReader|CheckpointReader|InitializeTableFromTextFile|RestoreTensor|mdb_env_open|"
    r"snapshot_util::Reader|RecordReader",
    "network": r"grpc::|Grpc[A-Z]\w*|DataServiceDispatcherClient|DataServiceWorkerClient|socket\(|RpcClient|curl_|HttpRequest",
    "python": r"PyObject|PyGILState|Py_[A-Z]\w+\(",
    "dylib": r"LoadDynamicLibrary|dlopen\(",
    "fs-config": r"->SetOption\(",
}
SINK_RE = {k: re.compile(v) for k, v in SINKS.items()}
# Headers that every kernel includes: their implementations are not the kernel's own doing.
GENERIC = re.compile(
    r"tensorflow/core/(framework|platform|lib|public|graph|common_runtime|protobuf)/|third_party|absl/|Eigen|xla/|tsl/"
)
EFFECTS = {"python", "write", "read", "network", "config", "hidden", "none"}
CHECKS = {"always", "caller-ok", "nonempty", "attr-file", "attr-stream", "attr-urls", "attr-descriptor"}


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def load_registry(path):
    ops = {}
    version = ""
    for line in open(path):
        if line.startswith("#"):
            version = line[1:].strip()
            continue
        name, stateful, ins, attrs = line.rstrip("\n").split("\t")
        ops[name] = {
            "inputs": [a.split(":")[0] for a in ins.split(",") if a],
            "lists": [a.split(":")[0] for a in ins.split(",") if a and a.endswith(":list")],
            "attrs": [a.split(":")[0] for a in attrs.split(",") if a],
        }
    return version, ops


def kernel_files(src, ops):
    """op -> kernel source files registering it (`Name("Op")` or `Name(kConst)` with the constant)."""
    found = collections.defaultdict(set)
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".cc") or "_test" in f:
                continue
            path = os.path.join(root, f)
            text = read(path)
            if "REGISTER_KERNEL_BUILDER" not in text:
                continue
            header = read(path[:-3] + ".h")
            consts = dict(re.findall(r"\b(k\w+)(?:\[\])?\s*=\s*\"(\w+)\"", text + header))
            rel = os.path.relpath(path, src)
            for m in re.finditer(r"REGISTER_KERNEL_BUILDER\s*\(\s*Name\(\s*(\"(\w+)\"|[\w:]*?(k\w+))\s*\)", text):
                op = m.group(2) or consts.get(m.group(3))
                if op in ops:
                    found[op].add(rel)
    return found


def evidence(src, files):
    hits = collections.defaultdict(set)

    def scan(rel, tag):
        text = read(os.path.join(src, rel))
        for k, r in SINK_RE.items():
            for m in set(r.findall(text)):
                hits[k].add(m + tag)

    for rel in files:
        scan(rel, "")
        if rel.endswith(".cc"):
            scan(rel[:-3] + ".h", "")
        for inc in re.findall(r'#include\s+"([^"]+)\.h"', read(os.path.join(src, rel))):
            if GENERIC.search(inc) or inc == rel[:-3]:
                continue
            scan(inc + ".cc", "@" + inc.split("/")[-1] + ".cc")
    return hits


def load_review():
    rows = []
    for n, line in enumerate(open(os.path.join(HERE, "review.tsv")), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 5:
            sys.exit(f"review.tsv:{n}: expected 5 tab-separated columns")
        rows.append((n, *parts))
    return rows


def rust_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--registry", required=True)
    ap.add_argument("--source", required=True)
    args = ap.parse_args()
    version, ops = load_registry(args.registry)
    kern = kernel_files(args.source, ops)
    review = load_review()
    reviewed = {}
    errors = []
    for n, op, effect, check, carriers, note in review:
        if op in reviewed:
            errors.append(f"review.tsv:{n}: {op} reviewed twice")
        if op not in ops:
            errors.append(f"review.tsv:{n}: {op} is not a registered op")
            continue
        if effect not in EFFECTS or (effect != "none" and check not in CHECKS):
            errors.append(f"review.tsv:{n}: bad effect {effect!r} or check {check!r}")
        for c in filter(None, carriers.split(",")):
            if c.startswith("@"):
                if c[1:] not in ops[op]["attrs"]:
                    errors.append(f"review.tsv:{n}: {op} has no attr {c[1:]}")
            elif c not in ops[op]["inputs"]:
                errors.append(f"review.tsv:{n}: {op} has no input {c}")
            else:
                before = ops[op]["inputs"][: ops[op]["inputs"].index(c) + 1]
                if any(b in ops[op]["lists"] for b in before):
                    errors.append(f"review.tsv:{n}: {op} input {c} is a list or follows one: its node input index varies")
        reviewed[op] = (effect, check, carriers, note)
    flagged = {}
    for op in sorted(ops):
        files = sorted(kern.get(op, ()))
        hits = evidence(args.source, files) if files else {}
        if hits:
            flagged[op] = (files, hits)
            if op not in reviewed:
                errors.append(f"{op}: kernel {files} calls {dict((k, sorted(v)) for k, v in hits.items())}; not reviewed")
    if errors:
        sys.exit("\n".join(errors))

    out = [
        "// @generated by tools/tf_ops/gen_table.py from the op registry of "
        + version
        + " and the kernels' source, with the decisions of tools/tf_ops/review.tsv. Do not edit.",
        f"// {len(ops)} registered ops; {len(flagged)} flagged by the kernel search; "
        f"{sum(1 for r in reviewed.values() if r[0] != 'none')} in the table.",
        "",
        "use super::{Carrier, Check, Effect, OpRule};",
        "",
        "/// Ops whose kernels reach Python, files, sockets or file-system configuration, sorted by name.",
        "#[rustfmt::skip]",
        "pub const OP_RULES: &[OpRule] = &[",
    ]
    check_names = {
        "always": "Always",
        "caller-ok": "CallerPathOk",
        "nonempty": "NonEmptyPath",
        "attr-file": "AttrFile",
        "attr-stream": "AttrStream",
        "attr-urls": "AttrUrls",
        "attr-descriptor": "AttrDescriptor",
    }
    effect_names = {
        "python": "Python",
        "write": "Write",
        "read": "Read",
        "network": "Network",
        "config": "Config",
        "hidden": "Hidden",
    }
    for op in sorted(reviewed):
        effect, check, carriers, note = reviewed[op]
        if effect == "none":
            continue
        cs = []
        for c in filter(None, carriers.split(",")):
            if c.startswith("@"):
                cs.append(f"Carrier::Attr({rust_str(c[1:])})")
            else:
                cs.append(f"Carrier::Input({ops[op]['inputs'].index(c)}, {rust_str(c)})")
        files = sorted(kern.get(op, ()))
        what, _, detail = note.partition(" (")
        detail = detail[:-1] if detail.endswith(")") else detail
        source = "; ".join(filter(None, [" ".join(files), detail]))
        out.append(
            f"    OpRule {{ op: {rust_str(op)}, effect: Effect::{effect_names[effect]}, check: Check::{check_names[check]}, "
            f"carriers: &[{', '.join(cs)}], what: {rust_str(what)}, source: {rust_str(source)} }},"
        )
    out.append("];")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
