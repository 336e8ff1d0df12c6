"""The oracle's file families: each makes cases (bytes, whether a payload was put in, which
real loaders judge them, tags naming the generator and mutations) from a seeded RNG.
"""
import copy

import archives
import pickles


class Case:
    def __init__(self, family, data, payload, loaders, tags):
        self.family = family
        self.data = data
        self.payload = payload
        self.loaders = list(loaders)
        self.tags = set(tags)
        self.path = None

    def with_data(self, data):
        c = copy.copy(self)
        c.data = data
        return c


class Context:
    """What generators may use: a scratch directory, the torch interpreter (None without torch)
    and the loaders available."""

    def __init__(self, tmp, torch_python, available):
        self.tmp = tmp
        self.torch_python = torch_python
        self.available = available


def byte_mutation(rng, data, tags):
    """A blind edit on top of the grammar: flip, insert or delete a few bytes."""
    if not data:
        return data
    b = bytearray(data)
    k = rng.choice(["flip", "insert", "delete"])
    tags.add("bytes:" + k)
    for _ in range(rng.randrange(1, 4)):
        i = rng.randrange(len(b)) if b else 0
        if k == "flip" and b:
            b[i] ^= 1 << rng.randrange(8)
        elif k == "insert":
            b.insert(i, rng.randrange(256))
        elif b:
            del b[i]
    return bytes(b)


PICKLE_LOADERS = ["pickle-c", "pickle-py", "joblib"]


def gen_pickle(rng, ctx):
    """Raw pickles: payloads (some that only pickle._Unpickler runs), pickle.dumps output and
    hand-assembled plain data; judged by both unpicklers and joblib.load (and torch.load and
    numpy.load, which unpickle a file that is no zip/npy, now and then)."""
    r = rng.random()
    if r < 0.35:
        data, tags, _ = pickles.payload(rng)
        payload = True
    elif r < 0.5:
        data, tags, _ = pickles.payload(rng, py_only=True)
        payload = True
    elif r < 0.8:
        data, tags = pickles.benign(rng)
        payload = False
    else:
        data, tags = pickles.benign_asm(rng)
        payload = False
    if rng.random() < 0.1:
        data = byte_mutation(rng, data, tags)
    loaders = list(PICKLE_LOADERS)
    if rng.random() < 0.1:
        loaders.append("torch")
    if rng.random() < 0.05:
        loaders.append("numpy")
    return Case("pickle", data, payload, loaders, tags)


def gen_npy(rng, ctx):
    """.npy headers in every literal form (benign arrays, object arrays of plain data, object
    dtypes followed by a payload pickle), and .npz zips of them; numpy.load decides."""
    import npys

    def one():
        r = rng.random()
        if r < 0.45:
            d, t = npys.benign(rng)
            return d, t, False
        if r < 0.55:
            d, t = npys.benign_object(rng)
            return d, t, False
        d, t = npys.payload(rng)
        return d, t, True

    if rng.random() < 0.2:
        tags = {"npz"}
        members = []
        payload = False
        for i in range(rng.randrange(1, 4)):
            d, t, p = one()
            payload |= p
            tags |= t
            members.append(archives.Entry(f"arr_{i}.npy", d, 8 if rng.random() < 0.3 else 0))
        kw = archives.mutate_zip(rng, members, tags, "arr_0.npy")
        return Case("npy", archives.write_zip(members, **kw), payload, ["numpy"], tags)
    data, tags, payload = one()
    if rng.random() < 0.05:
        data = byte_mutation(rng, data, tags)
    return Case("npy", data, payload, ["numpy"], tags)


def gen_joblib(rng, ctx):
    """joblib.dump output (every compressor, arrays, object arrays, payload calls), its
    compressed stream re-laid out; joblib.load decides (gzip/bz2/lzma.open too)."""
    import compressions

    payload = rng.random() < 0.5
    data, tags = compressions.joblib_dump(rng, ctx, payload)
    if not payload:
        tags.add("benign")
    return Case("joblib", data, payload, ["joblib", "decompress"], tags)


def gen_compress(rng, ctx):
    """A pickle in gzip/bz2/xz/lzma/zlib streams of every layout, or joblib's ZF format."""
    import compressions

    payload = rng.random() < 0.5
    data, tags = compressions.compressed_pickle(rng, payload)
    if not payload:
        tags.add("benign")
    return Case("compress", data, payload, ["decompress", "joblib"], tags)


def gen_torch(rng, ctx):
    """torch zip/legacy/tar checkpoints (payload in the record torch reads, or in one it may
    read after name tricks) and TorchScript archives; torch.load decides."""
    import torches

    r = rng.random()
    payload = rng.random() < 0.5
    if r < 0.5:
        made = torches.torch_zip(rng, ctx, payload)
    elif r < 0.75:
        made = torches.torch_legacy(rng, ctx, payload)
    elif r < 0.9:
        made = torches.torch_tar(rng, payload)
    else:
        made = torches.torch_jit(rng, ctx)
        payload = False
    if made is None:
        return None
    data, tags = made
    loaders = ["torch"]
    if "torch:jit" in tags:
        loaders.append("torch-jit")
    return Case("torch", data, payload, loaders, tags)


def gen_zip(rng, ctx):
    """Pickles in a zip whose structure is mutated; zipfile yields the members."""
    members = []
    tags = {"zip"}
    payload = False
    for i in range(rng.randrange(1, 4)):
        if rng.random() < 0.4:
            d, t, _ = pickles.payload(rng)
            payload = True
        else:
            d, t = pickles.benign(rng)
        tags |= {"pickle:" + x for x in t}
        members.append(archives.Entry(rng.choice(["model.pkl", "a/b.pkl", "w.bin", f"m{i}"]) + str(i), d,
                                      8 if rng.random() < 0.4 else 0))
    kw = archives.mutate_zip(rng, members, tags, members[0].name)
    return Case("zip", archives.write_zip(members, **kw), payload, ["zipfile"], tags)


def gen_tar(rng, ctx):
    """Pickles in a tar (plain or compressed) whose members are mutated; tarfile yields them."""
    import tarfile

    members = []
    tags = {"tar"}
    payload = False
    for i in range(rng.randrange(1, 4)):
        if rng.random() < 0.4:
            d, t, _ = pickles.payload(rng)
            payload = True
        else:
            d, t = pickles.benign(rng)
        tags |= {"pickle:" + x for x in t}
        members.append(({"name": f"model{i}.pkl"}, d))
    members, fmt, after = archives.mutate_tar(rng, members, tags, "model0.pkl")
    comp = rng.choice(["", "", "gz", "bz2", "xz"])
    if comp:
        tags.add("tar:compress-" + comp)
        after = b""
    return Case("tar", archives.tar_bytes(members, fmt or tarfile.GNU_FORMAT, comp) + after, payload, ["tarfile"], tags)


def gen_keras(rng, ctx):
    """Keras configs as standalone JSON, .keras zips and HDF5 files behind user blocks."""
    import kerases

    payload = rng.random() < 0.5
    r = rng.random()
    if r < 0.4:
        data, tags = kerases.keras_json(rng, payload)
        loaders = ["keras-json"]
    elif r < 0.7:
        data, tags = kerases.keras_zip(rng, ctx, payload)
        loaders = ["keras-zip"]
    else:
        data, tags = kerases.keras_h5(rng, ctx, payload)
        loaders = ["keras-h5"]
    if not payload:
        tags.add("benign")
    return Case("keras", data, payload, loaders, tags)


# family: (generator, share of the cases, loaders it needs)
GENERATORS = {
    "pickle": (gen_pickle, 0.25, {"pickle-c", "pickle-py", "joblib"}),
    "npy": (gen_npy, 0.15, {"numpy"}),
    "joblib": (gen_joblib, 0.10, {"joblib", "decompress"}),
    "compress": (gen_compress, 0.08, {"decompress", "joblib"}),
    "torch": (gen_torch, 0.15, {"torch"}),
    "zip": (gen_zip, 0.05, {"zipfile"}),
    "tar": (gen_tar, 0.05, {"tarfile"}),
    "keras": (gen_keras, 0.17, {"keras-json", "keras-zip", "keras-h5"}),
}
NAMES = list(GENERATORS)


def missing(wanted, available):
    return {f: GENERATORS[f][2] - available for f in wanted if GENERATORS[f][2] - available}


def generate(rng, wanted, n, ctx, skip_tags=frozenset()):
    """About n cases, shared among the wanted families by weight; cases carrying a skipped tag
    are replaced by others. Each family draws from its own RNG (seeded from `rng`), so adding
    a family does not change another family's cases."""
    import random

    total = sum(GENERATORS[f][1] for f in wanted)
    seeds = {f: rng.randrange(1 << 62) for f in NAMES}
    out = []
    for f in wanted:
        gen, weight, _ = GENERATORS[f]
        frng = random.Random(seeds[f])
        want = max(1, round(n * weight / total))
        tries = 0
        made = 0
        while made < want and tries < want * 20:
            tries += 1
            c = gen(frng, ctx)
            if c is None or c.tags & skip_tags:
                continue
            c.loaders = [l for l in c.loaders if not ctx.available or l in ctx.available]
            out.append(c)
            made += 1
    return out
