"""torch files for the oracle, loaded with torch.load (1.13):

- zip checkpoints: torch.serialization._is_zipfile (`PK\\x03\\x04` at 0), then
  PyTorchStreamReader (archive folder from the first central entry, records found
  case-insensitively) and _load's unpickler on `<folder>/data.pkl`;
- legacy checkpoints: _legacy_load tries tarfile first (legacy_load: `storages`, `tensors`,
  `pickle` members, each read with pickle.load), then reads pickles back to back: the magic
  number, the protocol version, sys_info, the object, the storage keys;
- TorchScript archives (torch.jit.save): benign ones only, for precision.
Benign files come from the real torch (torch_seeds.py); payloads replace a pickle in them.
"""
import os
import pickle
import subprocess
import sys
import zipfile

import archives
import pickles

MAGIC = 0x1950A86A20F9469CFC6C


def seeds(ctx):
    """{name: bytes} of the benign torch files, made once per run with the torch interpreter."""
    cache = getattr(ctx, "_torch_seeds", None)
    if cache is not None:
        return cache
    out = {}
    if ctx.torch_python:
        d = os.path.join(ctx.tmp, "torch-seeds")
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_seeds.py")
        run = getattr(ctx, "run_torch_script", None)
        if run is not None:
            # the torch loader server has torch imported already
            ok = run(script, [d])
        else:
            p = subprocess.run([ctx.torch_python, script, d], capture_output=True, text=True, timeout=300)
            ok = p.returncode == 0
            if not ok:
                print(f"torch_seeds.py failed: {p.stderr[-1000:]}", file=sys.stderr)
        if ok:
            for n in sorted(os.listdir(d)):
                with open(os.path.join(d, n), "rb") as f:
                    out[n] = f.read()
    ctx._torch_seeds = out
    return out


def zip_entries(data):
    with zipfile.ZipFile(__import__("io").BytesIO(data)) as z:
        return [archives.Entry(i.filename, z.read(i)) for i in z.infolist()]


def torch_zip(rng, ctx, payload):
    s = seeds(ctx)
    names = [n for n in s if n.startswith("zip-")]
    if not names:
        return None
    name = rng.choice(names)
    tags = {"torch", "torch:zip"}
    entries = zip_entries(s[name])
    folder = entries[0].name.split("/")[0]
    target = f"{folder}/data.pkl"
    if payload:
        p, ptags, _ = pickles.payload(rng)
        tags |= {"pickle:" + t for t in ptags}
        where = rng.choice(["data.pkl", "data.pkl", "other-folder-first", "dup"])
        tags.add("torch:payload-" + where)
        if where == "data.pkl":
            for e in entries:
                if e.name == target:
                    e.data = p
        elif where == "other-folder-first":
            # the first central entry names the folder torch reads data.pkl from
            entries.insert(0, archives.Entry("other/data.pkl", p))
            entries.insert(1, archives.Entry("other/version", b"3\n"))
        else:
            entries.insert(rng.randrange(len(entries) + 1), archives.Entry(target, p))
    kw = archives.mutate_zip(rng, entries, tags, target)
    return archives.write_zip(entries, **kw), tags


def torch_jit(rng, ctx):
    s = seeds(ctx)
    names = [n for n in s if n.startswith("jit-")]
    if not names:
        return None
    tags = {"torch", "torch:jit", "benign"}
    entries = zip_entries(s[rng.choice(names)])
    folder = entries[0].name.split("/")[0]
    kw = archives.mutate_zip(rng, entries, tags, f"{folder}/data.pkl") if rng.random() < 0.5 else {}
    return archives.write_zip(entries, **kw), tags


def legacy_stream(rng, payload, tags):
    """The pickles _legacy_load reads back to back, a payload in one of them."""
    parts = [
        pickle.dumps(MAGIC, 2),
        pickle.dumps(1001, 2),
        pickle.dumps({"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}, 2),
        pickle.dumps({"epoch": 1, "lr": [0.1, 0.01]}, 2),
        pickle.dumps([], 2),
    ]
    if payload:
        slot = rng.randrange(len(parts))
        tags.add(f"torch:legacy-slot{slot}")
        p, ptags, _ = pickles.payload(rng)
        tags |= {"pickle:" + t for t in ptags}
        parts[slot] = p
    return b"".join(parts)


def torch_legacy(rng, ctx, payload):
    tags = {"torch", "torch:legacy"}
    s = seeds(ctx)
    names = [n for n in s if n.startswith("legacy-")]
    if not payload and names and rng.random() < 0.6:
        return s[rng.choice(names)], tags | {"benign"}
    return legacy_stream(rng, payload, tags), tags


def torch_tar(rng, payload):
    """torch 0.1's tar: legacy_load extracts `storages` and `tensors` and pickle.loads them,
    then reads `pickle` with extractfile."""
    tags = {"torch", "torch:tar"}
    members = [
        ({"name": "sys_info"}, pickle.dumps({"protocol_version": 1001, "little_endian": True}, 2)),
        ({"name": "storages"}, pickle.dumps(0, 2) + pickle.dumps([], 2)),
        ({"name": "tensors"}, pickle.dumps(0, 2)),
        ({"name": "pickle"}, pickle.dumps({"w": [1.0, 2.0]}, 2)),
    ]
    target = "pickle"
    if payload:
        p, ptags, _ = pickles.payload(rng)
        tags |= {"pickle:" + t for t in ptags}
        target = rng.choice(["pickle", "pickle", "storages", "tensors"])
        tags.add("torch:tar-payload-" + target)
        for i, (m, _) in enumerate(members):
            if m["name"] == target:
                members[i] = (m, p if target == "pickle" else p + pickle.dumps([], 2))
    members, fmt, after = archives.mutate_tar(rng, members, tags, target)
    return archives.tar_bytes(members, fmt) + after, tags
