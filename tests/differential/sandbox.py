"""The real loaders, run in a sandbox: a server that reads one batch of requests per line on
stdin (a JSON list of {"id", "loader", "path"}), loads the files in forked children and answers
one JSON line, a list of results in the same order (a line {"script", "args"} runs one of the
oracle's generator scripts instead, with the server's libraries):

    {"id", "status": "ok" | "error" | "timeout" | "crash", "detail", "marker", "model", "ms"}

`marker` is true when the load created the marker file `mg_marker` in the child's working
directory: every payload the oracle generates does exactly that and nothing else
(`os.system('touch mg_marker')`, `exec("open('mg_marker','w').close()")`, ...). `model` is true
when the loader produced a model (for the container loaders: at least one member unpickled).

The child is isolated as far as a plain process can be: its own session (killed as a group at
the timeout), a fresh empty working directory, CPU, address-space, file-size and process
rlimits, stdout/stderr to /dev/null, and when the server runs as root it drops to `nobody`
before loading (so a payload can write nothing but its working directory and /tmp) if nobody
can read the interpreter and its packages; otherwise it stays root, and the payloads, which
come from a fixed pool of marker-only gadgets, are all that runs.

Runs under both interpreters the oracle uses: the venv with numpy, joblib and h5py, and
Debian's /usr/bin/python3 with python3-torch (1.13). Each loader names the library function
whose behaviour decides the case.
"""
import json
import os
import resource
import select
import shutil
import signal
import sys
import tempfile
import time

MARKER = "mg_marker"
NOBODY = 65534
TIMEOUT = float(os.environ.get("MG_ORACLE_TIMEOUT", "10"))

# Imported before any fork, so a child costs a fork and not an import; each is optional
# (the server reports which loaders it has).
MODULES = {}
for _name in ["pickle", "zipfile", "tarfile", "gzip", "bz2", "lzma", "json", "numpy", "joblib", "h5py", "torch"]:
    try:
        MODULES[_name] = __import__(_name)
    except Exception:  # noqa: BLE001 - a missing or broken library only removes its loaders
        pass
if "torch" in MODULES:
    MODULES["torch"].set_num_threads(1)
    import torch.jit  # noqa: F401


def _pickle_members(readers):
    """Unpickle every member as a user who unpacks an archive and pickle.loads each file;
    a member that cannot be read or is no pickle is skipped. Raises the first error when
    nothing at all could be unpickled."""
    n = 0
    first = None
    for read in readers:
        try:
            data = read()
            if data is None:
                continue
            MODULES["pickle"].loads(data)
            n += 1
        except Exception as e:  # noqa: BLE001
            first = first or e
    if n == 0 and first is not None:
        raise first
    return n > 0


def keras_would_run(obj):
    """What Keras' deserializer would run: a `Lambda` layer (or a serialized `__lambda__`
    function) anywhere in the config as json.loads returned it. Keras builds the Lambda's
    function from its config (keras.src.layers.core.lambda_layer.Lambda.from_config,
    python_utils.func_load); the marker stands for that call."""
    stack = [obj]
    seen = 0
    while stack:
        o = stack.pop()
        seen += 1
        if seen > 1_000_000:
            return False
        if isinstance(o, dict):
            cls = o.get("class_name")
            if isinstance(cls, str) and cls.rsplit(">", 1)[-1].rsplit(".", 1)[-1] in ("Lambda", "__lambda__"):
                return True
            stack.extend(o.values())
        elif isinstance(o, list):
            stack.extend(o)
    return False


def _keras_config(text):
    """keras.src.saving: json.loads of the config (legacy_h5_format.load_model_from_hdf5 and
    saving_lib._load_model_from_fileobj both go through json.loads). Fires the marker when the
    config would build a Lambda."""
    cfg = MODULES["json"].loads(text)
    if keras_would_run(cfg):
        open(MARKER, "w").close()
    return True


def load_pickle_c(path):
    """_pickle.Unpickler.load (C): pickle.load, torch.load's and numpy.load's unpickler."""
    with open(path, "rb") as f:
        MODULES["pickle"].load(f)
    return True


def load_pickle_py(path):
    """pickle._Unpickler.load (pure Python): joblib's NumpyUnpickler base, more lenient."""
    with open(path, "rb") as f:
        MODULES["pickle"]._Unpickler(f).load()
    return True


def load_joblib(path):
    """joblib.load: numpy_pickle_utils._detect_compressor picks the wrapper by prefix (or the
    pre-0.10 `ZF` format, numpy_pickle_compat.read_zfile), NumpyUnpickler (pickle._Unpickler)
    reads the pickle, NumpyArrayWrapper.read_array reads arrays (pickle.load for objects)."""
    MODULES["joblib"].load(path)
    return True


def load_numpy(path):
    """numpy.load(allow_pickle=True): format.read_magic / _read_array_header (ast.literal_eval
    of the header, descr_to_dtype), pickle.load for object arrays; zip files are NpzFile
    (zipfile), each member read by format.read_array."""
    np = MODULES["numpy"]
    r = np.load(path, allow_pickle=True)
    if isinstance(r, np.lib.npyio.NpzFile):
        with r:
            for k in r.files:
                r[k]
    return True


def load_torch(path):
    """torch.load (1.13, weights_only=False): serialization._is_zipfile then
    PyTorchStreamReader (miniz) and _load's unpickler on `<archive>/data.pkl`; otherwise
    _legacy_load: tarfile (storages, tensors, pickle members), then back-to-back pickles
    (magic number, protocol, sys info, the object)."""
    MODULES["torch"].load(path, map_location="cpu")
    return True


def load_torch_jit(path):
    """torch.jit.load: TorchScript's import (code/, constants.pkl, data.pkl)."""
    MODULES["torch"].jit.load(path, map_location="cpu")
    return True


def load_zip_pickles(path):
    """zipfile.ZipFile: every member as ZipFile.read yields it (central directory names,
    local header checks), each unpickled."""
    with MODULES["zipfile"].ZipFile(path) as z:
        return _pickle_members([lambda i=i: z.read(i) for i in z.infolist()])


def load_tar_pickles(path):
    """tarfile.open (mode 'r:*': gzip/bz2/xz detected by tarfile.open's probing), every
    regular file or link as TarFile.extractfile yields it, each unpickled."""
    with MODULES["tarfile"].open(path) as t:

        def read(m):
            f = t.extractfile(m)
            return None if f is None else f.read()

        return _pickle_members([lambda m=m: read(m) for m in t.getmembers()])


def load_decompress_pickle(path):
    """gzip.open / bz2.open / lzma.open (FORMAT_AUTO: xz and lzma-alone) read every
    concatenated stream (gzip._GzipReader, bz2/lzma's _compression.DecompressReader), then
    pickle.loads: whichever of them reads the file."""
    ok = False
    last = None
    for mod in ("gzip", "bz2", "lzma"):
        try:
            with MODULES[mod].open(path, "rb") as f:
                data = f.read()
        except Exception as e:  # noqa: BLE001
            last = e
            continue
        MODULES["pickle"].loads(data)
        ok = True
    if not ok and last is not None:
        raise last
    return ok


def load_keras_json(path):
    """A standalone Keras config (model.to_json()): json.loads of the file's bytes
    (json.detect_encoding picks UTF-8/16/32)."""
    with open(path, "rb") as f:
        return _keras_config(f.read())


def load_keras_zip(path):
    """A .keras zip: saving_lib reads `config.json` with ZipFile.open (the last central
    directory entry of that name) and json.loads it."""
    with MODULES["zipfile"].ZipFile(path) as z:
        with z.open("config.json") as f:
            return _keras_config(f.read())


def load_keras_h5(path):
    """A legacy Keras HDF5 model: h5py.File (the HDF5 library finds the superblock at 0, 512,
    1024, ... after a user block), attrs['model_config'] decoded as UTF-8 and json.loads'd
    (keras.src.legacy.saving.legacy_h5_format.load_model_from_hdf5)."""
    with MODULES["h5py"].File(path, "r") as f:
        cfg = f.attrs.get("model_config")
        if cfg is None:
            raise ValueError("no model_config")
        if hasattr(cfg, "decode"):
            cfg = cfg.decode("utf-8")
        return _keras_config(cfg)


LOADERS = {
    "pickle-c": (load_pickle_c, ["pickle"]),
    "pickle-py": (load_pickle_py, ["pickle"]),
    "joblib": (load_joblib, ["joblib"]),
    "numpy": (load_numpy, ["numpy"]),
    "torch": (load_torch, ["torch"]),
    "torch-jit": (load_torch_jit, ["torch"]),
    "zipfile": (load_zip_pickles, ["zipfile", "pickle"]),
    "tarfile": (load_tar_pickles, ["tarfile", "pickle"]),
    "decompress": (load_decompress_pickle, ["gzip", "bz2", "lzma", "pickle"]),
    "keras-json": (load_keras_json, ["json"]),
    "keras-zip": (load_keras_zip, ["zipfile", "json"]),
    "keras-h5": (load_keras_h5, ["h5py", "json"]),
}


def available():
    return sorted(k for k, (_, mods) in LOADERS.items() if all(m in MODULES for m in mods))


def _vm_bytes():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * resource.getpagesize()
    except OSError:
        return 0


def _isolate():
    """In a forked child, before any load: own session, no terminal output, rlimits, nobody."""
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 20, 64 << 20))
    # address space: what the interpreter maps already (torch maps a lot) plus 256 MiB, far
    # more than any generated case needs; a loader that grows without bound fails sooner
    vm = _vm_bytes() + (256 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (vm, vm))
    if DROP:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        resource.setrlimit(resource.RLIMIT_NPROC, (256, 256))


def _can_drop():
    """Whether a child may drop to `nobody`: only if nobody can still read this interpreter's
    library and the loaders' packages (pyenv under /root is not), since loaders and payloads
    import modules lazily and a failed import would hide a payload."""
    if os.getuid() != 0:
        return False
    dirs = [os.path.dirname(os.__file__)] + [os.path.dirname(m.__file__) for m in MODULES.values() if getattr(m, "__file__", None)]
    pid = os.fork()
    if pid == 0:
        ok = False
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            ok = all(os.access(d, os.R_OK | os.X_OK) for d in dirs)
        finally:
            os._exit(0 if ok else 1)
    _, st = os.waitpid(pid, 0)
    return os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0


DROP = _can_drop()


def _child(jobs, w):
    """In the forked child: isolate, then load each (loader, path, workdir) in turn from its
    own working directory, writing one JSON line per load to the pipe."""
    try:
        _isolate()
        for loader, path, work in jobs:
            # CPU seconds for this load on top of what was spent (the wall clock is the parent's)
            used = int(resource.getrusage(resource.RUSAGE_SELF).ru_utime + resource.getrusage(resource.RUSAGE_SELF).ru_stime)
            cpu = used + max(1, int(TIMEOUT))
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, resource.RLIM_INFINITY))
            os.chdir(work)
            try:
                model = LOADERS[loader][0](path)
                status = {"status": "ok", "detail": "", "model": bool(model)}
            except BaseException as e:  # noqa: BLE001 - every failure of the loader is an outcome
                status = {"status": "error", "detail": f"{type(e).__name__}: {str(e)[:300]}", "model": False}
            os.write(w, (json.dumps(status) + "\n").encode())
    finally:
        os._exit(0)


def _kill(pid):
    for target in (-pid, pid):
        try:
            os.kill(target, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def run_batch(reqs):
    """Load each request ({"loader", "path"}) in forked children, several per child; a load
    that times out or crashes its child is reported as such and the rest continue in a new
    child. Returns one result per request, in order."""
    results = [None] * len(reqs)
    works = []
    for _ in reqs:
        work = tempfile.mkdtemp(prefix="mg-oracle-")
        if DROP:
            os.chown(work, NOBODY, NOBODY)
        works.append(work)
    try:
        i = 0
        while i < len(reqs):
            jobs = [(q["loader"], q["path"], works[j]) for j, q in enumerate(reqs[i:], start=i)]
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                _child(jobs, w)
            os.close(w)
            buf = b""
            start = time.monotonic()
            ended = None  # "timeout" or "crash" for request i when the child stops early
            while i < len(reqs):
                left = start + TIMEOUT - time.monotonic()
                if left <= 0:
                    ended = "timeout"
                    _kill(pid)
                    break
                ready, _, _ = select.select([r], [], [], left)
                if not ready:
                    continue
                b = os.read(r, 65536)
                if not b:
                    ended = "crash"
                    break
                buf += b
                while b"\n" in buf and i < len(reqs):
                    line, buf = buf.split(b"\n", 1)
                    res = json.loads(line)
                    res["ms"] = int((time.monotonic() - start) * 1000)
                    results[i] = res
                    i += 1
                    start = time.monotonic()
            os.close(r)
            _, st = os.waitpid(pid, 0)
            if ended and i < len(reqs):
                if ended == "timeout":
                    results[i] = {"status": "timeout", "detail": f"killed after {TIMEOUT}s", "model": False}
                else:
                    sig = os.WTERMSIG(st) if os.WIFSIGNALED(st) else None
                    detail = f"signal {sig}" if sig else f"exit {os.WEXITSTATUS(st)}"
                    results[i] = {"status": "crash", "detail": detail, "model": False}
                results[i]["ms"] = int((time.monotonic() - start) * 1000)
                i += 1
        for res, work in zip(results, works):
            # a payload's own children (a shell) have finished: os.system waits for them
            res["marker"] = os.path.exists(os.path.join(work, MARKER))
        return results
    finally:
        for work in works:
            shutil.rmtree(work, ignore_errors=True)


def run_script(script, args):
    """Run one of the oracle's own generator scripts (torch_seeds.py) in a forked child, with
    the libraries already imported; not sandboxed (it is our code, it loads nothing)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            import runpy

            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 1)
            sys.argv = [script] + list(args)
            runpy.run_path(script, run_name="__main__")
            code = 0
        finally:
            os._exit(code)
    _, st = os.waitpid(pid, 0)
    return {"ok": os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0}


def main():
    out = sys.stdout
    out.write(json.dumps({"ready": True, "loaders": available(), "python": sys.version.split()[0], "nobody": DROP}) + "\n")
    out.flush()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        reqs = json.loads(line)
        if isinstance(reqs, dict):
            out.write(json.dumps(run_script(reqs["script"], reqs["args"])) + "\n")
            out.flush()
            continue
        results = run_batch(reqs)
        for q, res in zip(reqs, results):
            res["id"] = q["id"]
        out.write(json.dumps(results) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
