#!/usr/bin/env python3
"""Generate ops.rs: the TorchScript operators that reach files, the network or Python, and the
operator and custom-class namespaces that torch registers itself. Run from this folder:

    /usr/bin/python3 gen_ops.py > ops.rs                 # Debian python3-torch (torch 1.13)
    /usr/bin/python3 gen_ops.py --source ~/pytorch > ops.rs   # plus a newer source checkout

The build never needs Python or torch; ops.rs is committed.

Where the operators come from (every schema string `ns::name(Type arg, ...) -> ...`):
- the live operator registry of the installed torch, `torch._C._jit_get_all_schemas()`: the ATen
  operators of `aten/src/ATen/native/native_functions.yaml` and every operator registered in C++,
  among them `torch/csrc/jit/runtime/register_prim_ops.cpp`, `register_prim_ops_fulljit.cpp`,
  `register_special_ops.cpp` and `register_distributed_ops.cpp` (where `aten::save` lives);
- `native_functions.yaml` itself (torchgen's packaged copy, or `--yaml PATH`);
- with `--source DIR` (a pytorch checkout), the schema strings written in
  `torch/csrc/jit/runtime/register_*.cpp` and `aten/src/ATen/native/native_functions.yaml`;
- the custom classes (`torch.classes.NS.Name`) of `torch._C._jit_get_custom_class_schemas()`.

An operator is selected when one of its arguments is a string named like a file or a path
(`filename`, `path`, `file`, `dir`, ...): TorchScript code that calls it opens that path
(`aten::from_file` maps a file into a tensor, `aten::save` writes one). REVIEWED adds the
operators that reach the network or Python without a path argument, with the reason.
"""
import argparse
import glob
import os
import re
import sys

# Argument names that hold a file-system path or a network address.
PATH_NAMES = re.compile(r"(file|path|^dir$|^dirname$|^directory$|^fname$|^prefix$)", re.I)
NET_NAMES = re.compile(r"(^url$|^uri$|^host$|^hostname$|^address$|^addr$)", re.I)
STRING_TYPES = {"str", "str?", "str[]", "str[]?", "Optional[str]", "List[str]"}

# Operators that reach the network or Python without a path-like argument. Reviewed by hand
# against the registration named in each reason.
REVIEWED = {
    "prim::rpc_async": ("network", "calls a function on a remote RPC worker (register_distributed_ops.cpp)"),
    "prim::rpc_sync": ("network", "calls a function on a remote RPC worker (register_distributed_ops.cpp)"),
    "prim::rpc_remote": ("network", "creates an object on a remote RPC worker (register_distributed_ops.cpp)"),
    "prim::PythonOp": ("python", "calls a Python function (register_prim_ops_fulljit.cpp)"),
}
# Whole operator namespaces whose every operator communicates over a process group.
REVIEWED_NET_NAMESPACES = {
    "c10d": "a collective communication op of torch.distributed (torch/csrc/distributed/c10d/Ops.cpp)",
    "c10d_functional": "a functional collective of torch.distributed (torch/csrc/distributed/c10d/Functional.cpp)",
    "_c10d_functional": "a functional collective of torch.distributed (torch/csrc/distributed/c10d/Functional.cpp)",
    "_c10d_functional_autograd": "a functional collective of torch.distributed",
    "_dtensor": "a distributed tensor op of torch.distributed",
}
# Operator namespaces registered by torch itself in versions newer than the installed one
# (TORCH_LIBRARY(ns, ...) in pytorch's own sources); reviewed by hand. Anything else needs a
# library that the loading process loaded (torch.ops.load_library) and is judged as unknown.
REVIEWED_NAMESPACES = [
    "aten", "prim", "prims", "nvprims", "quantized", "_quantized", "quantized_decomposed", "c10d",
    "c10d_functional", "_c10d_functional", "_c10d_functional_autograd", "_dtensor", "profiler",
    "prepacked", "mkldnn_prepacked", "mkldnn", "mkl", "onednn", "sparse", "quantization",
    "static_runtime", "cuda", "rngprims", "inductor", "higher_order", "debugprims", "_quantized",
    "_nested_tensor", "onnx", "_test", "fused", "_inductor_test", "_higher_order_ops", "xpu", "mps",
]
# Custom-class namespaces of torch itself (torch::class_<...>("ns", "Name")), newer versions included.
REVIEWED_CLASS_NAMESPACES = [
    "quantized", "sparse", "rnn", "xnnpack", "mkldnn", "onednn", "_nnapi", "profiling", "c10d",
    "dist_c10d", "dist_rpc", "backendutils",
]
# Custom-class namespaces whose objects open connections or files (stores, process groups).
NET_CLASS_NAMESPACES = {
    "c10d": "a torch.distributed process group or store (connects to other processes)",
    "dist_c10d": "a torch.distributed process group or store (connects to other processes, FileStore writes a file)",
    "dist_rpc": "a torch.distributed RPC object (reaches other workers)",
}

SCHEMA_RE = re.compile(r'"([A-Za-z_][A-Za-z0-9_]*::[A-Za-z_][A-Za-z0-9_.]*\(.*?\)\s*->\s*[^"]*)"')


def split_args(body):
    """Top-level comma split of a schema's argument list."""
    out, depth, cur = [], 0, ""
    for ch in body:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def parse_schema(text):
    """(qualified name without overload, [(type, name)]) of `ns::name.overload(args) -> ret`."""
    m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*::[A-Za-z_][A-Za-z0-9_]*)(\.[A-Za-z0-9_]+)?\((.*)\)\s*->", text, re.S)
    if not m:
        return None
    args = []
    for a in split_args(m.group(3)):
        if a in ("*", "...") or not a:
            continue
        a = a.split("=", 1)[0].strip()
        parts = a.rsplit(None, 1)
        if len(parts) == 2:
            ty = re.sub(r"\(.*?\)", "", parts[0]).strip()
            args.append((ty, parts[1]))
    return m.group(1), args


def schemas_from_registry():
    import torch

    return "torch %s" % torch.__version__, [str(s) for s in torch._C._jit_get_all_schemas()]


def class_namespaces_from_registry():
    import torch

    found = set()
    for s in torch._C._jit_get_custom_class_schemas():
        for m in re.finditer(r"__torch__\.torch\.classes\.([A-Za-z0-9_]+)\.", str(s)):
            found.add(m.group(1))
    return found


def schemas_from_yaml(path):
    out = []
    with open(path) as f:
        for line in f:
            m = re.match(r"- func:\s*(.*)$", line)
            if m:
                out.append("aten::" + m.group(1).strip())
    return out


def schemas_from_source(root):
    out = []
    files = glob.glob(os.path.join(root, "torch/csrc/jit/runtime/register_*.cpp"))
    files += glob.glob(os.path.join(root, "torch/csrc/distributed/**/*.cpp"), recursive=True)
    for path in sorted(files):
        with open(path, errors="replace") as f:
            text = f.read()
        out += [m.group(1) for m in SCHEMA_RE.finditer(text)]
    yaml = os.path.join(root, "aten/src/ATen/native/native_functions.yaml")
    if os.path.exists(yaml):
        out += schemas_from_yaml(yaml)
    return out


def lit(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--yaml", help="native_functions.yaml to read besides the registry")
    ap.add_argument("--source", help="a pytorch source checkout to read schema strings from")
    opts = ap.parse_args()

    version, schemas = schemas_from_registry()
    sources = ["the operator registry of " + version]
    yaml = opts.yaml
    if not yaml:
        try:
            import torchgen

            cand = os.path.join(os.path.dirname(torchgen.__file__), "packaged/ATen/native/native_functions.yaml")
            yaml = cand if os.path.exists(cand) else None
        except ImportError:
            yaml = None
    if yaml:
        schemas += schemas_from_yaml(yaml)
        sources.append("native_functions.yaml of " + version)
    if opts.source:
        schemas += schemas_from_source(opts.source)
        sources.append("the schema strings of a pytorch checkout")

    namespaces = set(REVIEWED_NAMESPACES)
    risky = {}
    for text in schemas:
        parsed = parse_schema(text)
        if not parsed:
            continue
        name, args = parsed
        ns = name.split("::")[0]
        namespaces.add(ns)
        # may the op be called as a method (`x.op(...)`): TorchScript passes the receiver as `self`
        method = bool(args) and args[0][1] == "self"
        for ty, arg in args:
            if ty not in STRING_TYPES:
                continue
            if NET_NAMES.search(arg):
                kind, why = "Network", "connects to the address in its `%s` argument" % arg
            elif PATH_NAMES.search(arg):
                kind, why = "File", "opens the file named by its `%s` argument" % arg
            else:
                continue
            prev = risky.get(name)
            risky[name] = (kind, why, text if prev is None else prev[2], method or (prev is not None and prev[3]))
            break
    for name, (kind, why) in REVIEWED.items():
        risky[name] = ({"network": "Network", "python": "Python"}[kind], why, "", False)
        namespaces.add(name.split("::")[0])
    class_ns = class_namespaces_from_registry() | set(REVIEWED_CLASS_NAMESPACES)

    out = []
    out.append("//! Generated by gen_ops.py; do not edit. Sources: %s." % "; ".join(sources))
    out.append("")
    out.append("use super::{Reach, RiskyOp};")
    out.append("")
    out.append("/// Operators that open a path, reach the network or run Python, sorted by name.")
    out.append("pub(super) static RISKY_OPS: &[RiskyOp] = &[")
    for name in sorted(risky):
        kind, why, schema, method = risky[name]
        out.append(
            "    RiskyOp { name: %s, reach: Reach::%s, why: %s, schema: %s, method: %s },"
            % (lit(name), kind, lit(why), lit(" ".join(schema.split())), "true" if method else "false")
        )
    out.append("];")
    out.append("")
    out.append("/// Namespaces whose every operator reaches other processes, sorted.")
    out.append("pub(super) static NETWORK_OP_NAMESPACES: &[(&str, &str)] = &[")
    for ns in sorted(REVIEWED_NET_NAMESPACES):
        out.append("    (%s, %s)," % (lit(ns), lit(REVIEWED_NET_NAMESPACES[ns])))
    out.append("];")
    out.append("")
    out.append("/// Operator namespaces torch registers itself, sorted.")
    out.append("pub(super) static OP_NAMESPACES: &[&str] = &[")
    for ns in sorted(namespaces):
        out.append("    %s," % lit(ns))
    out.append("];")
    out.append("")
    out.append("/// Custom-class namespaces (`torch.classes.NS`) torch registers itself, sorted.")
    out.append("pub(super) static CLASS_NAMESPACES: &[&str] = &[")
    for ns in sorted(class_ns):
        out.append("    %s," % lit(ns))
    out.append("];")
    out.append("")
    out.append("/// Custom-class namespaces whose objects reach other processes or files, sorted.")
    out.append("pub(super) static NETWORK_CLASS_NAMESPACES: &[(&str, &str)] = &[")
    for ns in sorted(NET_CLASS_NAMESPACES):
        out.append("    (%s, %s)," % (lit(ns), lit(NET_CLASS_NAMESPACES[ns])))
    out.append("];")
    print("\n".join(out))
    print("selected: %s" % ", ".join(sorted(risky)), file=sys.stderr)


if __name__ == "__main__":
    main()
