"""Keras configs for the oracle, as Python's json reads them: standalone JSON
(model.to_json()), `.keras` zips (config.json) and legacy HDF5 files (the `model_config`
attribute, behind a user block of any size h5py accepts). The marker stands for Keras building
a Lambda layer (sandbox.keras_would_run); the JSON is written in the forms json.loads accepts
and serde_json may not: NaN/Infinity, numbers beyond f64, lone surrogates, escapes in keys,
duplicate keys (the last wins), UTF-16/32 and BOMs, deep nesting.
"""
import json
import os

import archives

LAMBDA_CODE = "4wEAAAAAAAAAAAAAAAEAAAACAAAAQwAAAHMEAAAAfABTACkBTqkAKQHaAXhyAQAAAHIBAAAA"


def dense(i, rng):
    cfg = {"name": f"dense_{i}", "trainable": True, "units": rng.randrange(1, 64), "activation": "relu",
           "use_bias": True, "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}}}
    if rng.random() < 0.5:
        return {"module": "keras.layers", "class_name": "Dense", "config": cfg, "registered_name": None}
    return {"class_name": "Dense", "config": cfg}


def lambda_layer(rng):
    if rng.random() < 0.5:
        fn = [LAMBDA_CODE, None, None]
        cfg = {"name": "lambda", "function": fn, "function_type": "lambda", "module": "__main__"}
        return {"class_name": "Lambda", "config": cfg}
    fn = {"class_name": "__lambda__", "config": {"code": LAMBDA_CODE, "defaults": None, "closure": None}}
    return {"module": "keras.layers", "class_name": "Lambda", "config": {"name": "lambda", "function": fn}, "registered_name": None}


def model(rng, payload, tags):
    layers = [dense(i, rng) for i in range(rng.randrange(1, 4))]
    if payload:
        where = rng.choice(["top", "nested", "wrapper"])
        tags.add("keras:lambda-" + where)
        lam = lambda_layer(rng)
        if where == "top":
            layers.insert(rng.randrange(len(layers) + 1), lam)
        elif where == "nested":
            layers.append({"class_name": "Sequential", "config": {"name": "inner", "layers": [lam]}})
        else:
            layers.append({"class_name": "TimeDistributed", "config": {"name": "td", "layer": lam}})
    cfg = {"class_name": "Sequential", "config": {"name": "sequential", "layers": layers}}
    if rng.random() < 0.5:
        cfg = {"module": "keras", "class_name": "Sequential", "config": cfg["config"], "registered_name": None,
               "build_config": {"input_shape": [None, 3]}, "compile_config": None}
    return cfg


def jstr(rng, s, tags):
    """A JSON string literal for s with \\u escapes here and there (json.loads decodes them in
    keys and values alike)."""
    out = ['"']
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif rng.random() < 0.15:
            tags.add("json:escape")
            out.append("\\u%04x" % ord(c) if rng.random() < 0.7 else "\\u%04X" % ord(c))
        elif ord(c) < 0x20 or 0xD800 <= ord(c) < 0xE000:
            out.append("\\u%04x" % ord(c))
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def dumps(rng, v, tags, depth=0):
    """json.dumps with variations json.loads reads the same way."""
    if depth > 40:
        return json.dumps(v)
    sp = rng.choice(["", " ", "\n  ", "\t"]) if rng.random() < 0.2 else ""
    if isinstance(v, dict):
        items = []
        for k, x in v.items():
            if k == "class_name" and rng.random() < 0.1 and isinstance(x, str):
                # a duplicate key before the real one: json.loads keeps the last, so a Lambda
                # written first is no Lambda to Keras
                first = "Lambda" if x != "Lambda" and rng.random() < 0.5 else "Dense"
                tags.add("json:dup-key" if first == "Dense" else "json:dup-key-lambda-first")
                items.append(jstr(rng, k, tags) + ":" + jstr(rng, first, tags))
            items.append(jstr(rng, k, tags) + sp + ":" + sp + dumps(rng, x, tags, depth + 1))
        return "{" + sp + ("," + sp).join(items) + sp + "}"
    if isinstance(v, list):
        return "[" + ("," + sp).join(dumps(rng, x, tags, depth + 1) for x in v) + "]"
    if isinstance(v, str):
        return jstr(rng, v, tags)
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, int):
        if rng.random() < 0.1:
            tags.add("json:big-int")
            return str(v) + "0" * 30 if v else "123456789012345678901234567890"
        return str(v)
    return json.dumps(v)


def extras(rng, cfg, tags):
    """Values serde_json refuses and json.loads accepts, in places Keras ignores."""
    k = rng.choice(["none", "nan", "inf", "bigfloat", "surrogate", "deep"])
    if k == "none":
        return cfg
    tags.add("json:" + k)
    meta = {"nan": float("nan"), "inf": float("-inf"), "bigfloat": 1e308, "surrogate": "\ud800x",
            "deep": None}[k]
    if k == "deep":
        d = rng.choice([100, 200, 600])
        meta = json.loads("[" * d + "]" * d)
    c = dict(cfg)
    c["mg_meta"] = meta
    return c


def encode(rng, text, tags):
    k = rng.choice(["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32"])
    if k != "utf-8":
        tags.add("json:enc-" + k)
    try:
        b = text.encode(k, "surrogatepass")
    except UnicodeEncodeError:
        b = text.encode("utf-8", "surrogatepass")
    if k.startswith("utf-8") and rng.random() < 0.1:
        tags.add("json:bigfloat-literal")
        b = b.replace(b"1e+308", b"1e400")
    return b


def config_text(rng, payload, tags):
    cfg = extras(rng, model(rng, payload, tags), tags)
    text = dumps(rng, cfg, tags)
    if "json:big-int" in tags or rng.random() < 0.5:
        return text
    return json.dumps(cfg)


def keras_json(rng, payload):
    tags = {"keras", "keras:json"}
    return encode(rng, config_text(rng, payload, tags), tags), tags


def weights_h5(ctx):
    """A small weights file as Keras 3 writes it (h5py; groups per layer, made once per run)."""
    cached = getattr(ctx, "_keras_weights", None)
    if cached is None:
        import h5py

        path = os.path.join(ctx.tmp, "model.weights.h5")
        with h5py.File(path, "w") as f:
            g = f.create_group("layers/dense/vars")
            g.create_dataset("0", data=[[0.5, -0.5]])
            g.create_dataset("1", data=[0.0, 0.0])
            f.create_group("optimizer/vars")
        with open(path, "rb") as fh:
            cached = fh.read()
        os.unlink(path)
        ctx._keras_weights = cached
    return cached


def keras_zip(rng, ctx, payload):
    """A .keras zip: metadata.json, config.json, model.weights.h5."""
    tags = {"keras", "keras:zip"}
    cfg = config_text(rng, payload, tags).encode("utf-8", "surrogatepass")
    entries = [archives.Entry("metadata.json", b'{"keras_version": "3.6.0", "date_saved": "2024-01-01@00:00:00"}'),
               archives.Entry("config.json", cfg),
               archives.Entry("model.weights.h5", weights_h5(ctx))]
    if payload and rng.random() < 0.3:
        # the payload config as a second config.json: ZipFile.open takes the last entry
        tags.add("keras:dup-config")
        entries.insert(0, archives.Entry("config.json", config_text(rng, False, tags).encode()))
    kw = archives.mutate_zip(rng, entries, tags, "config.json")
    return archives.write_zip(entries, **kw), tags


HEADS = [b"", b"\x80\x04K\x01.", b"\x93NUMPY\x01\x00v\x00", b"GGUF\x03\x00\x00\x00", b"PK\x03\x04", b"\x08\x00\x00\x00\x00\x00\x00\x00{}",
         b"\x00\x00\x00\x00TFL3", b"(lp0\n.", b"{\"a\": 1}"]


def keras_h5(rng, ctx, payload):
    """h5py.File with a user block of 0/512/1024/2048/4096 bytes holding another format's head."""
    import h5py

    tags = {"keras", "keras:h5"}
    ub = rng.choice([0, 0, 512, 1024, 2048, 4096])
    head = rng.choice(HEADS) if ub else b""
    tags.add(f"h5:userblock-{ub}")
    if head:
        tags.add("h5:head-" + head[:4].hex())
    path = os.path.join(ctx.tmp, "model.h5")
    text = config_text(rng, payload, tags)
    with h5py.File(path, "w", userblock_size=ub) as f:
        k = rng.choice(["str", "bytes", "fixed"])
        tags.add("h5:attr-" + k)
        if k == "str":
            f.attrs["model_config"] = text
        elif k == "bytes":
            f.attrs["model_config"] = text.encode("utf-8", "surrogatepass")
        else:
            import numpy as np

            b = text.encode("utf-8", "surrogatepass")
            f.attrs.create("model_config", np.array(b, dtype=f"S{max(1, len(b))}"))
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
        g = f.create_group("model_weights")
        g.create_dataset("w", data=[1.0, 2.0])
    with open(path, "rb") as fh:
        data = bytearray(fh.read())
    os.unlink(path)
    data[: len(head)] = head
    return bytes(data), tags

