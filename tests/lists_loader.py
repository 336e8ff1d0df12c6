#!/usr/bin/env python3
"""The real loaders behind tests/lists_loader.rs: make pickles that use standard-library gadgets
and old joblib wrappers, load each in a child process whose payload only touches a marker file,
and report which ones fired. modelgate must call every one that fired dangerous, and the benign
controls safe.

usage: lists_loader.py OUTDIR   -> prints a JSON list of {"file", "fired", "case"}

Stdlib cases need only CPython. The joblib cases need numpy and joblib importable (CI installs
them under /opt/mg-lists-ci, see .ci/run, and puts it on PYTHONPATH); without them they are left out.
"""

import json
import os
import pickle
import subprocess
import sys
import tempfile


class Call:
    """Pickles as func(*args): the REDUCE a loader runs."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def fired(loader, path, marker):
    if os.path.exists(marker):
        os.remove(marker)
    subprocess.run([sys.executable, "-c", loader, path], capture_output=True, timeout=60,
                   cwd=os.path.dirname(path))
    return os.path.exists(marker)


PICKLE_LOAD = "import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))"
JOBLIB_LOAD = "import joblib, sys; joblib.load(sys.argv[1])"


def stdlib_cases(out, marker):
    import typing

    cases = []
    touch = f"__import__('os').system('touch {marker}')"
    # typing._eval_type(ForwardRef(code), globals, locals) evaluates the code
    ref = Call(typing.ForwardRef, touch)
    cases.append(("typing-eval-type", Call(typing._eval_type, ref, {}, {})))
    try:
        import warnings

        warnings.simplefilter("ignore", DeprecationWarning)
        import mailcap  # gone in 3.13

        caps = {"x/y": [{"view": "true", "test": f"touch {marker}"}]}
        cases.append(("mailcap-findmatch", Call(mailcap.findmatch, caps, "x/y")))
    except ImportError:
        pass
    result = []
    for name, obj in cases:
        path = os.path.join(out, name + ".pkl")
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=4)
        result.append({"file": path, "fired": fired(PICKLE_LOAD, path, marker), "case": name})
    return result


def joblib_cases(out, marker):
    try:
        import joblib  # noqa: F401
        import numpy as np
        from joblib.numpy_pickle import NDArrayWrapper
    except ImportError:
        return []
    # joblib <= 0.9 defined the class in joblib.numpy_pickle, where joblib still exports it; name it
    # there as the old dumps do (joblib.numpy_pickle_compat itself is denylisted outright)
    NDArrayWrapper.__module__ = "joblib.numpy_pickle"
    result = []
    # a pickle file elsewhere on disk that runs the payload when np.load(allow_pickle=True) reads it
    evil_dir = os.path.join(out, "elsewhere")
    os.makedirs(evil_dir, exist_ok=True)
    evil = os.path.join(evil_dir, "planted.npy")
    with open(evil, "wb") as f:
        pickle.dump(Call(os.system, f"touch {marker}"), f, protocol=2)
    # NDArrayWrapper naming it, by absolute path and by a path leaving the dump's folder
    dump_dir = os.path.join(out, "dump")
    os.makedirs(dump_dir, exist_ok=True)
    for case, name in (("joblib-wrapper-absolute", evil), ("joblib-wrapper-dotdot", "../elsewhere/planted.npy")):
        path = os.path.join(dump_dir, case + ".pkl")
        with open(path, "wb") as f:
            pickle.dump({"a": NDArrayWrapper(name, np.ndarray)}, f, protocol=2)
        result.append({"file": path, "fired": fired(JOBLIB_LOAD, path, marker), "case": case})
    # control: the format as joblib 0.9 wrote it, the array in a sibling .npy of the same folder
    np.save(os.path.join(dump_dir, "control.pkl_01.npy"), np.arange(3.0))
    path = os.path.join(dump_dir, "control.pkl")
    with open(path, "wb") as f:
        pickle.dump({"a": NDArrayWrapper("control.pkl_01.npy", np.ndarray)}, f, protocol=2)
    loaded = subprocess.run([sys.executable, "-c", JOBLIB_LOAD + "; print('ok')", path], capture_output=True,
                            text=True, timeout=60)
    result.append({"file": path, "fired": False, "case": "joblib-wrapper-sibling",
                   "loads": loaded.stdout.strip().endswith("ok")})
    return result


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    marker = os.path.join(tempfile.mkdtemp(prefix="mg-marker-"), "fired")
    print(json.dumps(stdlib_cases(out, marker) + joblib_cases(out, marker)))


if __name__ == "__main__":
    main()
