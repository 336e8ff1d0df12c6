"""Reference side of tests/pickle_differential.rs: which find_class calls do CPython's two
unpicklers, the C `_pickle.Unpickler` and the pure-Python `pickle._Unpickler` (the base of
joblib's NumpyUnpickler), make for each case? Nothing real is imported or executed:
find_class and persistent_load return a harmless stand-in class.

Input: a file with one hex-encoded case per line. Output: one JSON line per case,
{"c": {"calls": [[module, name], ...], "memory": bool}, "py": {...}}, for pickles loaded back
to back from one BytesIO the way modelgate scans them (stop at the first failure).
"""
import io
import json
import pickle
import resource
import sys


class Meta(type):
    """Calling a stand-in returns a new stand-in; item assignment is accepted."""

    def __call__(cls, *args, **kwargs):
        return standin()

    def __setitem__(cls, key, value):
        pass


def _new(cls, *args, **kwargs):
    return standin()


def _accept(*args, **kwargs):
    return None


def standin():
    # A class (so NEWOBJ accepts it) with __setstate__, extend, append and add.
    return Meta(
        "Standin",
        (),
        {
            "__new__": _new,
            "__setstate__": staticmethod(_accept),
            "extend": staticmethod(_accept),
            "append": staticmethod(_accept),
            "add": staticmethod(_accept),
        },
    )


def recording(base):
    class Recorder(base):
        def __init__(self, f, calls):
            # latin-1 never fails on protocol-0/1 strings, as modelgate assumes
            super().__init__(f, encoding="latin1")
            self.calls = calls

        def find_class(self, module, name):
            self.calls.append([module, name])
            # names that are no Python module path cannot be imported
            if not all(c.isidentifier() for c in module.split(".")) or not all(
                c.isidentifier() for c in name.split(".")
            ):
                raise ModuleNotFoundError(module)
            return standin()

        def persistent_load(self, pid):
            return standin()

    return Recorder


UNPICKLERS = {"c": recording(pickle.Unpickler), "py": recording(pickle._Unpickler)}


def clean(s):
    # lone surrogates become U+FFFD, as modelgate's lossy UTF-8 does
    return s.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def run(data, unpickler):
    """The find_class calls, and whether a MemoryError cut the run short (modelgate
    models a machine without that limit: a memo index of 2**31 is fine to it)."""
    f = io.BytesIO(data)
    calls = []
    first = True
    memory = False
    while True:
        if not first and f.tell() >= len(data):
            break
        try:
            unpickler(f, calls).load()
        except MemoryError:
            memory = True
            break
        except BaseException:
            break
        first = False
    return {"calls": [[clean(m), clean(n)] for m, n in calls], "memory": memory}


def main():
    # a hostile memo index makes CPython allocate gigabytes: fail fast instead
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    out = sys.stdout
    with open(sys.argv[1]) as cases:
        for line in cases:
            data = bytes.fromhex(line.strip())
            out.write(json.dumps({k: run(data, u) for k, u in UNPICKLERS.items()}) + "\n")


if __name__ == "__main__":
    main()
