#!/usr/bin/env python3
"""Regenerate the harmless sample model files in this directory.

    python3 samples/make_samples.py

The pickles are written opcode by opcode so that they are byte-identical on every
platform and Python version (`pickle.dumps` would record `posix.system` for `os.system`
on Linux). Nothing here is ever unpickled; inspect them with `python3 -m pickletools FILE`.
"""
import io
import os
import pickle
import struct
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))


def unicode(s):
    b = s.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(b)) + b


def global_(module, name):
    return pickle.GLOBAL + module.encode() + b"\n" + name.encode() + b"\n"


# A benign model: a protocol-2 pickle of a plain dict, as `pickle.dumps(..., protocol=2)` makes.
BENIGN = pickle.dumps({"name": "demo", "weights": [0.5, -1.25, 2.0], "epochs": 3}, protocol=2)

# A "dangerous" model: loading it would call os.system('echo pwned'), a harmless stand-in
# for a real payload.
DANGEROUS = (
    pickle.PROTO + b"\x02"
    + global_("os", "system")
    + unicode("echo pwned")
    + pickle.TUPLE1
    + pickle.REDUCE
    + pickle.STOP
)

# A suspicious model: it imports a class from the training script (`__main__.MyModel`),
# which runs whatever that name resolves to when loaded, but nothing known to be dangerous.
SUSPICIOUS = (
    pickle.PROTO + b"\x02"
    + global_("__main__", "MyModel")
    + pickle.EMPTY_TUPLE
    + pickle.NEWOBJ
    + pickle.EMPTY_DICT
    + unicode("hidden")
    + pickle.BININT1 + b"\x40"
    + pickle.SETITEM
    + pickle.BUILD
    + pickle.STOP
)


def torch_zip(data_pkl):
    """A PyTorch-style zip checkpoint (`torch.save` layout) holding `data_pkl`."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in [("archive/data.pkl", data_pkl), ("archive/version", b"3\n")]:
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            z.writestr(info, data)
    return buf.getvalue()


SAMPLES = {
    "benign.pkl": BENIGN,
    "dangerous.pkl": DANGEROUS,
    "suspicious.pkl": SUSPICIOUS,
    "dangerous_model.pt": torch_zip(DANGEROUS),
}

if __name__ == "__main__":
    for name, data in SAMPLES.items():
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)
        print(f"wrote samples/{name} ({len(data)} bytes)")
