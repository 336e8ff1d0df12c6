"""`.npy` files for the oracle: arrays written by numpy, then their header re-written as any
Python literal numpy.lib.format._read_array_header accepts (it runs ast.literal_eval on the
header, then _filter_header (drops a `L` after numbers) for versions 1.0/2.0 on a SyntaxError,
checks the keys and types, and builds the dtype with descr_to_dtype), followed by the data or,
for object dtypes, a pickle (read_array: pickle.load).
"""
import io
import struct
import unicodedata

import numpy as np

import pickles

MAGIC = b"\x93NUMPY"


def str_lit(rng, s, tags, version):
    """A Python string literal whose value is `s`, in one of the forms the tokenizer accepts."""
    q = rng.choice(["'", '"', "'''", '"""'])
    prefix = rng.choice(["", "", "", "u", "U", "r", "R"])
    escape = prefix.lower() != "r" and rng.random() < 0.5
    out = []
    for c in s:
        if escape and rng.random() < 0.5:
            k = rng.choice(["x", "o", "u", "U", "N"])
            name = unicodedata.name(c, None)
            if k == "x" and ord(c) < 256:
                out.append("\\x%02x" % ord(c))
            elif k == "o" and ord(c) < 256:
                out.append("\\%03o" % ord(c))
            elif k == "u" and ord(c) < 0x10000:
                out.append("\\u%04x" % ord(c))
            elif k == "N" and name:
                out.append("\\N{%s}" % name.lower() if rng.random() < 0.3 else "\\N{%s}" % name)
            else:
                out.append("\\U%08x" % ord(c))
            tags.add("npy:escape-" + k)
        elif c in ("\\", q[0]):
            if prefix.lower() == "r":
                return str_lit(rng, s, tags, version)  # a raw literal cannot hold these
            out.append("\\" + c)
        else:
            out.append(c)
    body = "".join(out)
    if prefix:
        tags.add("npy:prefix-" + prefix)
    if len(q) == 3:
        tags.add("npy:triple-quote")
    lit = prefix + q + body + q
    if len(s) > 1 and rng.random() < 0.2:
        # implicit concatenation of two literals, possibly parenthesised
        k = rng.randrange(1, len(s))
        tags.add("npy:concat")
        lit = str_lit(rng, s[:k], tags, version) + rng.choice([" ", "", "\t"]) + str_lit(rng, s[k:], tags, version)
        if rng.random() < 0.5:
            lit = "(" + lit + ")"
    return lit


def int_lit(rng, n, tags, version):
    k = rng.choice(["dec", "dec", "dec", "hex", "oct", "bin", "under", "paren", "L", "bool"])
    if k == "hex":
        s = hex(n)
    elif k == "oct":
        s = oct(n)
    elif k == "bin":
        s = bin(n)
    elif k == "under" and n >= 10:
        s = str(n)[0] + "_" + str(n)[1:]
    elif k == "paren":
        s = "(" + str(n) + ")"
    elif k == "L" and version < 3:
        s = str(n) + "L"  # a Python 2 long: _filter_header drops the L (versions 1.0, 2.0)
    elif k == "bool" and n in (0, 1):
        s = "True" if n else "False"  # isinstance(True, int): a shape of booleans is valid
    else:
        k = "dec"
        s = str(n)
    if k != "dec":
        tags.add("npy:int-" + k)
    return s


def ws(rng, tags):
    k = rng.random()
    if k < 0.7:
        return rng.choice(["", " "])
    tags.add("npy:space")
    return rng.choice(["  ", "\t", "\n", " \\\n", "\n# comment\n", "\r\n"])


def descr_lit(rng, descr, tags, version):
    """descr as dtype.descr gives it: a str, a list of (name, descr[, shape]) fields, or a
    (descr, shape) subarray tuple (descr_to_dtype)."""
    if isinstance(descr, str):
        return str_lit(rng, descr, tags, version)
    if isinstance(descr, tuple):
        return "(" + descr_lit(rng, descr[0], tags, version) + "," + ws(rng, tags) + shape_lit(rng, descr[1], tags, version) + ")"
    fields = []
    for f in descr:
        name = f[0]
        if isinstance(name, tuple):
            nl = "(" + str_lit(rng, name[0], tags, version) + ", " + str_lit(rng, name[1], tags, version) + ")"
        else:
            nl = str_lit(rng, name, tags, version)
        parts = [nl, descr_lit(rng, f[1], tags, version)]
        if len(f) == 3:
            parts.append(shape_lit(rng, f[2], tags, version))
        open_, close = ("[", "]") if rng.random() < 0.15 else ("(", ")")
        if open_ == "[":
            tags.add("npy:field-list")
        fields.append(open_ + ("," + ws(rng, tags)).join(parts) + close)
    return "[" + ("," + ws(rng, tags)).join(fields) + (", " if rng.random() < 0.2 else "") + "]"


def shape_lit(rng, shape, tags, version):
    if isinstance(shape, int):
        return int_lit(rng, shape, tags, version)
    items = [int_lit(rng, n, tags, version) for n in shape]
    if len(items) == 1:
        return "(" + items[0] + "," + ws(rng, tags) + ")"
    return "(" + ("," + ws(rng, tags)).join(items) + ("," if rng.random() < 0.3 else "") + ")"


def header_text(rng, descr, fortran, shape, tags, version):
    keys = {
        "descr": lambda: descr_lit(rng, descr, tags, version),
        "fortran_order": lambda: rng.choice(["True", "(True)"]) if fortran else rng.choice(["False", "False", "(False)"]),
        "shape": lambda: shape_lit(rng, shape, tags, version),
    }
    order = list(keys)
    if rng.random() < 0.5:
        rng.shuffle(order)
        tags.add("npy:key-order")
    items = [str_lit(rng, k, tags, version) + ws(rng, tags) + ":" + ws(rng, tags) + keys[k]() for k in order]
    text = "{" + ws(rng, tags) + ("," + ws(rng, tags)).join(items) + rng.choice([", ", ",", ""]) + ws(rng, tags) + "}"
    return text


def npy_bytes(rng, text, version, tags, body):
    """Magic, version, header length and the header padded as numpy pads it (or not)."""
    enc = "utf8" if version == 3 else "latin1"
    h = text.encode(enc)
    pad = rng.random()
    if pad < 0.7:
        hl = 2 if version == 1 else 4
        total = 6 + 2 + hl + len(h) + 1
        h += b" " * ((-total) % 64) + b"\n"
    elif pad < 0.85:
        tags.add("npy:pad-none")
    else:
        tags.add("npy:pad-odd")
        h += rng.choice([b"\n", b"\t\n", b" " * 7 + b"\n", b"\n\n  "])
    if version == 1:
        if len(h) >= 1 << 16:
            version = 2
        else:
            return MAGIC + b"\x01\x00" + struct.pack("<H", len(h)) + h + body
    return MAGIC + bytes([version, 0]) + struct.pack("<I", len(h)) + h + body


BENIGN_DTYPES = [
    "<f8", "<f4", ">f8", "<i4", "|u1", "|b1", "<c16", ">i2", "<U3", "|S4", "<M8[s]", "<m8[ms]", "|V8",
    [("a", "<f4"), ("b", "<i8")],
    [("a", "<f4"), ("n", [("x", "|u1"), ("y", "<i2")])],
    [(("title", "t"), "<f8")],
    [("s", "<f4", (2,))],
    ("<f4", (2,)),
]

OBJECT_DESCRS = [
    "|O", "O", "<O", ">O", "=O", "O8", "object", "|O8",
    [("a", "|O")], [("a", "<f8"), ("b", "|O")], [("a", "|O", (2,))], [("n", [("x", "<i4"), ("o", "O")])],
    [(("t", "o"), "|O")], ("|O", (2,)),
]


def dtype_of(descr):
    from numpy.lib.format import descr_to_dtype

    return descr_to_dtype(descr)


def benign(rng):
    """A non-object array written by numpy, its header re-written. Returns (bytes, tags)."""
    tags = {"benign", "npy"}
    descr = rng.choice(BENIGN_DTYPES)
    dt = dtype_of(descr)
    shape = rng.choice([(), (0,), (3,), (2, 3), (1, 1, 2)])
    fortran = len(shape) >= 2 and rng.random() < 0.3
    a = np.zeros(shape, dtype=dt)
    body = a.tobytes(order="F" if fortran else "C")
    version = rng.choice([1, 1, 2, 3])
    tags.add(f"npy:v{version}")
    text = header_text(rng, descr, fortran, shape, tags, version)
    return npy_bytes(rng, text, version, tags, body), tags


def benign_object(rng):
    """An object array of plain data: pickle.dump of the array, as numpy.save writes it."""
    tags = {"benign", "npy", "npy:object-plain"}
    a = np.empty(rng.choice([(2,), (1, 2)]), dtype=object)
    a.flat[0] = rng.choice([1, "s", [1, 2], {"a": 1.5}])
    bio = io.BytesIO()
    np.lib.format.write_array(bio, a, version=rng.choice([(1, 0), (2, 0), (3, 0)]), allow_pickle=True)
    return bio.getvalue(), tags


def payload(rng):
    """An object array header (descr with O in any form) followed by a payload pickle."""
    tags = {"npy", "npy:object"}
    descr = rng.choice(OBJECT_DESCRS)
    tags.add("npy:descr-" + (descr if isinstance(descr, str) else type(descr).__name__))
    shape = rng.choice([(1,), (), (2,)])
    version = rng.choice([1, 1, 2, 3])
    tags.add(f"npy:v{version}")
    text = header_text(rng, descr, False, shape, tags, version)
    p, ptags, _ = pickles.payload(rng)
    tags |= {"pickle:" + t for t in ptags}
    return npy_bytes(rng, text, version, tags, p), tags


def npz(rng, members, compressed):
    """A zip of .npy members as numpy.savez writes it (zipfile, names with .npy)."""
    import zipfile

    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED) as z:
        for name, data in members:
            z.writestr(name + ".npy", data)
    return bio.getvalue()
