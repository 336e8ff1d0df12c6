#!/usr/bin/env python3
"""Generate benchmark inputs for modelgate (never committed; written to bench/out/).

usage: bench/gen.py OUTDIR [--torch-gib N ...] [--joblib-gib N]

* torch-<N>g.pt: a PyTorch zip checkpoint (the layout torch.save writes: archive/data.pkl,
  archive/data/<key> stored members, version, byteorder) holding N GiB of float32 tensors,
  built without torch: the pickle imports torch._utils._rebuild_tensor_v2, torch.FloatStorage
  and collections.OrderedDict exactly as torch writes them.
* torch-<N>g-evil.pt: the same with os.system('echo pwned') appended in data.pkl.
* joblib-<N>g-evil.joblib: a joblib dump (needs numpy + joblib in this interpreter) of a dict
  whose N GiB array comes first and whose harmless os.system('echo pwned') payload comes after
  the array bytes.
"""
import argparse
import collections
import os
import pickle
import sys
import types
import zipfile

CHUNK = 64 << 20


def fake_torch():
    """Register stand-ins so pickle writes torch's global names (nothing from torch is run)."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*a):
        raise RuntimeError("stand-in")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    FloatStorage = type("FloatStorage", (), {"__module__": "torch"})
    torch.FloatStorage = FloatStorage
    torch._utils = utils
    sys.modules["torch"] = torch
    sys.modules["torch._utils"] = utils
    return FloatStorage, _rebuild_tensor_v2


class Tensor:
    def __init__(self, key, numel, rebuild, storage_cls):
        self.key, self.numel, self.rebuild, self.storage_cls = key, numel, rebuild, storage_cls

    def __reduce__(self):
        storage = ("storage", self.storage_cls, self.key, "cpu", self.numel)
        return (self.rebuild, (StorageRef(storage), 0, (self.numel,), (1,), False, collections.OrderedDict()))


class StorageRef:
    def __init__(self, pid):
        self.pid = pid


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, StorageRef) else None


def torch_zip(path, gib, evil):
    storage_cls, rebuild = fake_torch()
    n_tensors = max(1, gib * 32)  # 32 MiB tensors
    numel = (gib << 30) // 4 // n_tensors
    state = collections.OrderedDict()
    for i in range(n_tensors):
        state[f"layer{i}.weight"] = Tensor(str(i), numel, rebuild, storage_cls)
    obj = [state, Evil()] if evil else state
    import io

    buf = io.BytesIO()
    TorchPickler(buf, protocol=2).dump(obj)
    zero = bytes(CHUNK)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/byteorder", "little")
        for i in range(n_tensors):
            left = numel * 4
            with z.open(f"archive/data/{i}", "w", force_zip64=True) as m:
                while left:
                    n = min(left, CHUNK)
                    m.write(zero[:n])
                    left -= n
        z.writestr("archive/version", "3\n")
        z.writestr("archive/.data/serialization_id", "1234567890")


def joblib_file(path, gib):
    import joblib
    import numpy as np

    big = np.zeros((gib << 30) // 8, dtype=np.float64)
    joblib.dump({"weights": big, "config": Evil()}, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--torch-gib", type=int, nargs="*", default=[1, 8])
    ap.add_argument("--joblib-gib", type=int, default=1)
    a = ap.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    for g in a.torch_gib:
        for evil in (False, True):
            p = os.path.join(a.outdir, f"torch-{g}g{'-evil' if evil else ''}.pt")
            if not os.path.exists(p):
                print("writing", p, flush=True)
                torch_zip(p + ".tmp", g, evil)
                os.rename(p + ".tmp", p)
    if a.joblib_gib:
        p = os.path.join(a.outdir, f"joblib-{a.joblib_gib}g-evil.joblib")
        if not os.path.exists(p):
            print("writing", p, flush=True)
            joblib_file(p + ".tmp", a.joblib_gib)
            os.rename(p + ".tmp", p)


if __name__ == "__main__":
    main()
