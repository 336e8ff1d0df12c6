"""Zip and tar structures for the oracle, written byte by byte so that every field a reader
may trust or ignore can differ:

- zip: Python's zipfile reads the end record (searched from the end, comment and zip64
  included), then each central directory entry, and checks the local header's name against
  it (ZipFile.open: "File name in directory ... and header ... differ"); the name list maps a
  name to its last entry (ZipFile.NameToInfo). torch's PyTorchStreamReader (miniz,
  mz_zip_reader_init) takes the archive folder from the first central entry and finds
  records with mz_zip_reader_locate_file (flags 0: case-insensitive, a binary search over
  the sorted names), reads sizes from the central directory and ignores the local name.
- tar: tarfile.TarFile.next reads headers (GNU longname/longlink, PAX `path`, the ustar
  prefix field, base-256 sizes), stops at the first zero block; getmember returns the LAST
  member of a name (TarFile._getmember walks the list backwards); extractfile follows hard
  and symbolic links to the member they name (_find_link_target).
"""
import io
import struct
import tarfile
import zlib


class Entry:
    def __init__(self, name, data, method=0, local_name=None):
        self.name = name
        self.data = data
        self.method = method  # 0 stored, 8 deflated
        self.local_name = local_name
        self.descriptor = False
        self.extra = b""
        self.comment = b""


def deflate(data):
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def write_zip(entries, prefix=b"", comment=b"", central_order=None, zip64=False):
    """Local headers in `entries` order, the central directory in `central_order`."""
    out = bytearray(prefix)
    recs = []
    for e in entries:
        name = e.name.encode("utf-8")
        local = (e.local_name if e.local_name is not None else e.name).encode("utf-8")
        body = deflate(e.data) if e.method == 8 else e.data
        crc = zlib.crc32(e.data) & 0xFFFFFFFF
        flags = 0x800 if any(ord(c) > 127 for c in e.name) else 0
        if e.descriptor:
            flags |= 8
        offset = len(out)
        lcrc, lcs, lus = (0, 0, 0) if e.descriptor else (crc, len(body), len(e.data))
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, e.method, 0, 0x21, lcrc, lcs, lus, len(local), len(e.extra))
        out += local + e.extra + body
        if e.descriptor:
            out += struct.pack("<IIII", 0x08074B50, crc, len(body), len(e.data))
        recs.append((e, name, flags, crc, len(body), offset))
    cd_start = len(out)
    order = central_order if central_order is not None else range(len(recs))
    for i in order:
        e, name, flags, crc, csize, offset = recs[i]
        out += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, flags, e.method, 0, 0x21, crc, csize, len(e.data),
                           len(name), len(e.extra), len(e.comment), 0, 0, 0, offset)
        out += name + e.extra + e.comment
    cd_size = len(out) - cd_start
    n = len(list(order))
    if zip64:
        z64 = len(out)
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, cd_size, cd_start)
        out += struct.pack("<IIQI", 0x07064B50, 0, z64, 1)
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, len(comment)) + comment
    else:
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, cd_size, cd_start, len(comment)) + comment
    return bytes(out)


ZIP_MUTATIONS = ["none", "deflate", "descriptor", "extra", "comment", "order", "zip64", "local-name", "prepend",
                 "dup-name", "case", "dot-slash", "backslash"]


def mutate_zip(rng, entries, tags, target=None):
    """Structure-level edits of a zip about to be written. `target` is the name of the member
    that matters (the record a loader reads); mutations on names may redirect it."""
    kw = {}
    for _ in range(rng.randrange(0, 3)):
        k = rng.choice(ZIP_MUTATIONS)
        tags.add("zip:" + k)
        e = rng.choice(entries)
        if k == "deflate":
            e.method = 8
        elif k == "descriptor":
            e.descriptor = True
        elif k == "extra":
            e.extra = struct.pack("<HH", 0xCAFE, 4) + b"\x00\x01\x02\x03"
        elif k == "comment":
            kw["comment"] = rng.choice([b"comment", b"PK\x05\x06 fake end record", b"x" * 300])
        elif k == "order":
            order = list(range(len(entries)))
            rng.shuffle(order)
            kw["central_order"] = order
        elif k == "zip64":
            kw["zip64"] = True
        elif k == "local-name":
            e.local_name = rng.choice(["other.bin", e.name.upper(), e.name + "x", ""])
        elif k == "prepend":
            kw["prefix"] = rng.choice([b"#!/bin/sh\nexit 0\n", b"\x00" * 64, b"MZ" + b"\x00" * 30])
        elif k == "dup-name" and target:
            # a second entry under the record's name, its bytes from another member
            other = rng.choice(entries)
            dup = Entry(target, other.data, other.method)
            entries.insert(rng.randrange(len(entries) + 1), dup)
        elif k == "case" and target:
            for x in entries:
                if x.name == target:
                    x.name = rng.choice([target.upper(), target.swapcase(), target[:-3] + target[-3:].upper()])
        elif k == "dot-slash":
            e.name = "./" + e.name
        elif k == "backslash":
            e.name = e.name.replace("/", "\\")
    return kw


def tar_bytes(members, fmt=tarfile.GNU_FORMAT, compression=""):
    """members: (TarInfo fields dict, data or None)."""
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w" + (":" + compression if compression else ""), format=fmt) as t:
        for info, data in members:
            ti = tarfile.TarInfo(info["name"])
            ti.mtime = 1700000000
            ti.type = info.get("type", tarfile.REGTYPE)
            ti.linkname = info.get("linkname", "")
            if info.get("pax"):
                ti.pax_headers = info["pax"]
            if data is not None and ti.type in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE):
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
            else:
                t.addfile(ti)
    return bio.getvalue()


TAR_MUTATIONS = ["none", "dup-last", "dup-first", "hardlink", "symlink", "dot-slash", "longname", "pax-path",
                 "areg", "contig", "after-eof", "format"]


def mutate_tar(rng, members, tags, target):
    """Edits of a member list (target: the name a loader extracts). Returns (members, fmt,
    data-after-end)."""
    fmt = tarfile.GNU_FORMAT
    after = b""
    for _ in range(rng.randrange(0, 3)):
        k = rng.choice(TAR_MUTATIONS)
        tags.add("tar:" + k)
        idx = [i for i, (m, _) in enumerate(members) if m["name"] == target]
        if k in ("dup-last", "dup-first") and idx:
            # another member under the target's name: tarfile's getmember takes the last
            other = rng.choice(members)
            dup = ({"name": target}, other[1] if other[1] is not None else b"")
            if k == "dup-last":
                members = members + [dup]
            else:
                members = [dup] + members
        elif k in ("hardlink", "symlink") and idx:
            # the target becomes a link to a member holding its bytes under another name
            i = idx[-1]
            m, data = members[i]
            hidden = {"name": "blob"}
            link = {"name": target, "type": tarfile.LNKTYPE if k == "hardlink" else tarfile.SYMTYPE, "linkname": "blob"}
            members = [x for j, x in enumerate(members) if j != i] + [(hidden, data), (link, None)]
        elif k == "dot-slash" and idx:
            members[idx[0]] = ({**members[idx[0]][0], "name": "./" + target}, members[idx[0]][1])
        elif k == "longname":
            fmt = tarfile.GNU_FORMAT
            members = [({"name": "d" * 120 + "/long"}, b"x")] + members
        elif k == "pax-path" and idx:
            # the header names something else, the PAX record names the target
            fmt = tarfile.PAX_FORMAT
            i = idx[0]
            members[i] = ({"name": "decoy", "pax": {"path": target}}, members[i][1])
        elif k == "areg" and idx:
            members[idx[0]] = ({**members[idx[0]][0], "type": tarfile.AREGTYPE}, members[idx[0]][1])
        elif k == "contig" and idx:
            members[idx[0]] = ({**members[idx[0]][0], "type": tarfile.CONTTYPE}, members[idx[0]][1])
        elif k == "after-eof":
            after = tar_bytes([({"name": target}, rng.choice(members)[1] or b"")])
        elif k == "format":
            fmt = rng.choice([tarfile.USTAR_FORMAT, tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
    return members, fmt, after

