"""Fixtures of tests/pickle_loaders.rs, proven with the real loaders.

`two-unpicklers DIR`: streams on which CPython's C unpickler (`pickle.load`, torch, numpy) and
its pure-Python one (`pickle._Unpickler`, the base of joblib's `NumpyUnpickler`) differ, each
carrying a payload behind the construct they differ on: `io.open(MARKER, "w")`, which only
creates an empty marker file. Every stream is loaded with each unpickler (and `joblib.load`
when joblib imports) in this process; the output is one JSON line per stream:
{"name", "hex", "c": ran, "py": ran, "joblib": ran or null}.

`lookups DIR`: attribute lookups with a constant object and name (`builtins.getattr(X, 'a')`,
`operator.attrgetter('a.b')(X)`), one JSON line per stream {"name", "hex", "c", "py", "value"}:
streams whose payload is `open(MARKER, "w")` reached through a lookup (c/py: the payload ran in
that unpickler), and CPython's own pickles of `zoneinfo.ZoneInfo` time zones (what pandas writes
for tz-aware timestamps), loaded back (`value`: the round trip gave an equal object).

`partials DIR`: `functools.partial` objects pickled by CPython with every protocol, as JSON
lines {"name", "protocol", "hex"}. The wrapped functions come from small modules written to
DIR (a gensim-like weighting function, and a stand-in `numpy` package that defines `float64`
so that no numpy is needed to pickle a reference to it); nothing is called.
"""
import functools
import io
import json
import os
import pickle
import sys


def line(op, text):
    return op + text.encode("latin-1") + b"\n"


def payload(marker):
    """io.open(marker, 'w') through GLOBAL, a tuple and REDUCE."""
    return b"cio\nopen\n(" + line(b"V", marker) + line(b"V", "w") + b"tR"


def cases(directory):
    out = []

    def add(name, body, proto=b""):
        marker = os.path.join(directory, name + ".marker")
        out.append((name, marker, proto + body(marker) + b"."))

    # FLOAT as float() reads it: underscores, spaces, overflow to inf (C rejects)
    for name, text in [("float-underscore", "1_0.5"), ("float-spaces", " 1.5 "), ("float-overflow", "1e999")]:
        add(name, lambda m, t=text: line(b"F", t) + b"0" + payload(m))
    # INT in octal, as strtol reads it (int(x, 0) rejects it)
    add("int-octal", lambda m: line(b"I", "07") + b"0" + payload(m))
    # a FRAME declared longer than the data (C: truncated; Python reads what is there)
    add(
        "frame-too-long",
        lambda m: b"\x95" + (len(payload(m)) + 1 + 1000).to_bytes(8, "little") + payload(m),
        proto=b"\x80\x04",
    )
    # REDUCE arguments that are a list, not a tuple (C: TypeError; Python: func(*args))
    add("reduce-list-args", lambda m: b"cio\nopen\n(" + line(b"V", m) + line(b"V", "w") + b"lR")
    # BUILD with a falsy state on a list (C: "state is not a dictionary"; Python: nothing to do)
    add("build-falsy-state", lambda m: b"]K\x00b0" + payload(m))
    # APPENDS with no items on a dict (C: nothing to do; Python: no extend/append)
    add("appends-empty-dict", lambda m: b"}(e0" + payload(m))
    # a memo key beyond Py_ssize_t (C: OverflowError; Python's memo is a dict)
    big = "99999999999999999999999"
    add(
        "memo-huge-key",
        lambda m: line(b"V", m) + line(b"p", big) + b"0cio\nopen\n(" + line(b"g", big) + line(b"V", "w") + b"tR",
    )
    return out


def ran(marker, load):
    if os.path.exists(marker):
        os.remove(marker)
    try:
        load()
    except Exception:
        pass
    done = os.path.exists(marker)
    if done:
        os.remove(marker)
    return done


def two_unpicklers(directory):
    try:
        import joblib
    except ImportError:
        joblib = None
    for name, marker, data in cases(directory):
        path = os.path.join(directory, name + ".pkl")
        with open(path, "wb") as f:
            f.write(data)
        result = {
            "name": name,
            "hex": data.hex(),
            "c": ran(marker, lambda: pickle.loads(data)),
            "py": ran(marker, lambda: pickle._Unpickler(io.BytesIO(data)).load()),
            "joblib": ran(marker, lambda: joblib.load(path)) if joblib else None,
        }
        print(json.dumps(result))


def glob(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def lookups(directory):
    import datetime
    import zoneinfo

    def getattr_(obj, attr):
        return glob("__builtin__", "getattr") + b"(" + obj + line(b"V", attr) + b"tR"

    def call_open(func, marker):
        return func + b"(" + line(b"V", marker) + line(b"V", "w") + b"tR."

    builtins_ = glob("codecs", "builtins")  # codecs.py: import builtins
    streams = {
        # getattr(codecs.builtins, 'open')(MARKER, 'w'), protocol 0 and with a protocol 2 header
        "getattr-open": lambda m: call_open(getattr_(builtins_, "open"), m),
        "getattr-open-p2": lambda m: b"\x80\x02" + call_open(getattr_(builtins_, "open"), m),
        # protocol 4: STACK_GLOBAL and memoized arguments, as the pickler writes a bound method
        "getattr-open-p4": lambda m: b"\x80\x04"
        + b"\x8c\x08builtins\x94\x8c\x07getattr\x94\x93\x94"
        + b"\x8c\x06codecs\x94\x8c\x08builtins\x94\x93\x94"
        + b"\x8c\x04open\x94\x86\x94R\x94"
        + b"(" + line(b"V", m) + line(b"V", "w") + b"tR.",
        # getattr(builtins, 'exec') runs code: the name looked up is judged
        "getattr-exec": lambda m: getattr_(builtins_, "exec")
        + b"(" + line(b"V", "open(%r, 'w').close()" % m) + b"tR.",
        # a name computed at load time (str('open')): getattr stays a dangerous import
        "getattr-computed-name": lambda m: call_open(
            glob("__builtin__", "getattr") + b"(" + builtins_ + glob("__builtin__", "str") + b"(Vopen\ntRtR", m
        ),
        # getattr handed to functools.partial: not a lookup the scan can resolve
        "getattr-via-partial": lambda m: call_open(
            glob("functools", "partial") + b"(" + glob("__builtin__", "getattr") + builtins_ + b"tR(Vopen\ntR", m
        ),
        # attrgetter('builtins.open')(pickle.codecs)(MARKER, 'w'): a dotted path, walked
        "attrgetter-open": lambda m: call_open(
            glob("operator", "attrgetter") + b"(Vbuiltins.open\ntR(" + glob("pickle", "codecs") + b"tR", m
        ),
    }
    for name, body in streams.items():
        marker = os.path.join(directory, name + ".marker")
        data = body(marker)
        print(
            json.dumps(
                {
                    "name": name,
                    "hex": data.hex(),
                    "c": ran(marker, lambda: pickle.loads(data)),
                    "py": ran(marker, lambda: pickle._Unpickler(io.BytesIO(data)).load()),
                    "value": None,
                }
            )
        )
    utc = datetime.timezone.utc
    objects = {
        "zoneinfo": zoneinfo.ZoneInfo("Europe/Paris"),
        "zoneinfo-datetime": [datetime.datetime(2024, 1, 1, 12, tzinfo=zoneinfo.ZoneInfo("UTC")), utc],
    }
    for name, obj in objects.items():
        for proto in range(pickle.HIGHEST_PROTOCOL + 1):
            data = pickle.dumps(obj, protocol=proto)
            ok = pickle.loads(data) == obj and pickle._Unpickler(io.BytesIO(data)).load() == obj
            print(json.dumps({"name": "%s-p%d" % (name, proto), "hex": data.hex(), "c": False, "py": False, "value": ok}))


def partials(directory):
    os.makedirs(os.path.join(directory, "gensimlike"), exist_ok=True)
    with open(os.path.join(directory, "gensimlike", "__init__.py"), "w") as f:
        f.write("")
    with open(os.path.join(directory, "gensimlike", "tfidf.py"), "w") as f:
        f.write("def df2idf(docfreq, totaldocs, log_base=2.0, add=0.0):\n    return docfreq\n")
    os.makedirs(os.path.join(directory, "numpy"), exist_ok=True)
    with open(os.path.join(directory, "numpy", "__init__.py"), "w") as f:
        f.write("def float64(x=0.0):\n    return float(x)\n")
    sys.path.insert(0, directory)
    import collections

    import gensimlike.tfidf
    import numpy

    objects = {
        "os-system": functools.partial(os.system, "echo pwned"),
        "ordered-dict": functools.partial(collections.OrderedDict, a=1),
        "numpy-float64": functools.partial(numpy.float64, 1.5),
        "gensim-df2idf": functools.partial(gensimlike.tfidf.df2idf, log_base=2.0),
    }
    for name, obj in objects.items():
        for proto in range(pickle.HIGHEST_PROTOCOL + 1):
            print(json.dumps({"name": name, "protocol": proto, "hex": pickle.dumps(obj, protocol=proto).hex()}))


if __name__ == "__main__":
    {"two-unpicklers": two_unpicklers, "partials": partials, "lookups": lookups}[sys.argv[1]](sys.argv[2])
