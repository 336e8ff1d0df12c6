#!/usr/bin/env python3
"""Multi-GB GGUF and safetensors files: modelgate next to ModelAudit, and ModelAudit on the corpus.

usage:
  bench/formats.py gen OUTDIR [--gib N]          write the inputs (sparse files, no real weights)
  bench/formats.py run OUTDIR [--runs N] [--modelaudit VENV] [--binary PATH]
  bench/formats.py corpus [--modelaudit VENV] [--corpus DIR] [--jobs N]

gen writes, in OUTDIR (about N GiB each, sparse: the tensor data is a hole, so the disk holds only
the headers):
  llama3-<N>g.gguf       GGUF v3 with Llama-3-8B metadata (architecture keys, a 128256-token
                         vocabulary, 280147 merges, the Llama-3-Instruct chat template) and F16
                         tensors named and shaped as llama.cpp writes them
  llama3-<N>g-ssti.gguf  the same with a chat template that reaches os.popen (a sandbox escape)
  llama3-<N>g.safetensors  BF16 tensors named and shaped as Hugging Face writes Llama-3

run times `BINARY scan --format json FILE` and `modelaudit scan --no-cache --format json FILE` on
each file: one warm-up run, then N runs; it prints the median wall time, the peak RSS (wait4) and
the verdict. corpus runs ModelAudit on every file of the labelled corpus (one process per file, as
shared/eval-corpus runs modelgate) and scores it the same way.

ModelAudit comes from a throwaway venv: python3 -m venv /tmp/peers-ma && /tmp/peers-ma/bin/pip
install modelaudit. Its telemetry is switched off through its documented environment variables.
"""
import argparse
import concurrent.futures
import csv
import json
import math
import os
import statistics
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MA_ENV = dict(os.environ, PROMPTFOO_DISABLE_TELEMETRY="1", NO_ANALYTICS="1")

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
SSTI_TEMPLATE = LLAMA3_TEMPLATE + "{{ cycler.__init__.__globals__.os.popen('echo pwned').read() }}"

VOCAB, MERGES, DIM, FFN, KV = 128256, 280147, 4096, 14336, 1024


def layers_for(gib):
    """Blocks so that embeddings + output + blocks come to about `gib` GiB of 16-bit weights."""
    per_block = 2 * (2 * DIM * DIM + 2 * DIM * KV + 3 * DIM * FFN) + 2 * 4 * DIM
    return max(1, round((gib * 2**30 - 2 * 2 * VOCAB * DIM) / per_block))


# ---- GGUF ----

def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key, typ, value):
    enc = {4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q"}
    if typ == 8:
        return gstr(key) + struct.pack("<I", 8) + gstr(value)
    if typ == 9:
        etype, items = value
        body = b"".join(gstr(x) for x in items) if etype == 8 else struct.pack(f"<{len(items)}i", *items)
        return gstr(key) + struct.pack("<IIQ", 9, etype, len(items)) + body
    return gstr(key) + struct.pack("<I", typ) + struct.pack(enc[typ], value)


def gguf(path, gib, template):
    n = layers_for(gib)
    tensors = [("token_embd.weight", [DIM, VOCAB], 1)]
    for i in range(n):
        b = f"blk.{i}."
        tensors += [
            (b + "attn_norm.weight", [DIM], 0),
            (b + "attn_q.weight", [DIM, DIM], 1),
            (b + "attn_k.weight", [DIM, KV], 1),
            (b + "attn_v.weight", [DIM, KV], 1),
            (b + "attn_output.weight", [DIM, DIM], 1),
            (b + "ffn_norm.weight", [DIM], 0),
            (b + "ffn_gate.weight", [DIM, FFN], 1),
            (b + "ffn_up.weight", [DIM, FFN], 1),
            (b + "ffn_down.weight", [FFN, DIM], 1),
        ]
    tensors += [("output_norm.weight", [DIM], 0), ("output.weight", [DIM, VOCAB], 1)]
    tokens = [f"<|reserved_special_token_{i}|>" if i >= 128000 else f"tok{i:06d}" for i in range(VOCAB)]
    merges = [f"t{i % 997} k{i // 997}" for i in range(MERGES)]
    meta = [
        kv("general.architecture", 8, "llama"),
        kv("general.type", 8, "model"),
        kv("general.name", 8, "Meta Llama 3 8B Instruct"),
        kv("general.finetune", 8, "Instruct"),
        kv("general.size_label", 8, "8B"),
        kv("general.license", 8, "llama3"),
        kv("llama.block_count", 4, n),
        kv("llama.context_length", 4, 8192),
        kv("llama.embedding_length", 4, DIM),
        kv("llama.feed_forward_length", 4, FFN),
        kv("llama.attention.head_count", 4, 32),
        kv("llama.attention.head_count_kv", 4, 8),
        kv("llama.rope.freq_base", 6, 500000.0),
        kv("llama.attention.layer_norm_rms_epsilon", 6, 1e-5),
        kv("general.file_type", 4, 1),
        kv("llama.vocab_size", 4, VOCAB),
        kv("llama.rope.dimension_count", 4, 128),
        kv("tokenizer.ggml.model", 8, "gpt2"),
        kv("tokenizer.ggml.pre", 8, "llama-bpe"),
        kv("tokenizer.ggml.tokens", 9, (8, tokens)),
        kv("tokenizer.ggml.token_type", 9, (5, [3 if i >= 128000 else 1 for i in range(VOCAB)])),
        kv("tokenizer.ggml.merges", 9, (8, merges)),
        kv("tokenizer.ggml.bos_token_id", 4, 128000),
        kv("tokenizer.ggml.eos_token_id", 4, 128009),
        kv("tokenizer.chat_template", 8, template),
        kv("general.quantization_version", 4, 2),
    ]
    infos, offset = [], 0
    for name, dims, typ in tensors:
        infos.append(gstr(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
                     + struct.pack("<IQ", typ, offset))
        size = (2 if typ == 1 else 4) * math.prod(dims)
        offset += (size + 31) // 32 * 32
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta)) + b"".join(meta) + b"".join(infos)
    head += b"\0" * (-len(head) % 32)
    write_sparse(path, head, len(head) + offset)


# ---- safetensors ----

def safetensors(path, gib):
    n = layers_for(gib)
    shapes = [("model.embed_tokens.weight", [VOCAB, DIM])]
    for i in range(n):
        p = f"model.layers.{i}."
        shapes += [
            (p + "input_layernorm.weight", [DIM]),
            (p + "mlp.down_proj.weight", [DIM, FFN]),
            (p + "mlp.gate_proj.weight", [FFN, DIM]),
            (p + "mlp.up_proj.weight", [FFN, DIM]),
            (p + "post_attention_layernorm.weight", [DIM]),
            (p + "self_attn.k_proj.weight", [KV, DIM]),
            (p + "self_attn.o_proj.weight", [DIM, DIM]),
            (p + "self_attn.q_proj.weight", [DIM, DIM]),
            (p + "self_attn.v_proj.weight", [KV, DIM]),
        ]
    shapes += [("model.norm.weight", [DIM]), ("lm_head.weight", [VOCAB, DIM])]
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in sorted(shapes):
        size = 2 * math.prod(shape)
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    write_sparse(path, struct.pack("<Q", len(text)) + text, 8 + len(text) + offset)


def write_sparse(path, head, total):
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(total)
    print(f"{path}: {total / 2**30:.2f} GiB ({len(head) / 2**20:.1f} MiB of header)", flush=True)


# ---- measuring ----

def run(cmd, env=None):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    return time.perf_counter() - t0, ru.ru_maxrss, os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace")


def modelgate_verdict(code, out):
    try:
        f = json.loads(out)["files"][0]
        codes = sorted({x["code"] for x in f["findings"] if x["severity"] != "info"})
        return f"{f['verdict']} {','.join(codes)}".strip()
    except (ValueError, KeyError, IndexError):
        return f"exit {code}"


def modelaudit_verdict(code, out):
    """dangerous (a critical issue), suspicious (a warning), error (exit 2 / has_errors) or safe."""
    try:
        doc = json.loads(out[out.index("{"):])
    except ValueError:
        return "error", f"exit {code}, no json"
    sev = [i.get("severity") for i in doc.get("issues", [])]
    if "critical" in sev:
        v = "dangerous"
    elif "warning" in sev:
        v = "suspicious"
    elif code == 2 or doc.get("has_errors"):
        v = "error"
    else:
        v = "safe"
    shown = ("critical", "warning") if v != "error" else ("critical", "warning", "info", "debug")
    notes = sorted({i.get("message", "")[:70] for i in doc.get("issues", []) if i.get("severity") in shown})
    if not notes and v == "error":
        notes = sorted({c.get("message", "")[:70] for c in doc.get("checks", []) if c.get("status") == "failed"})
    return v, "; ".join(notes[:2])


def cmd_run(a):
    files = sorted(os.path.join(a.outdir, f) for f in os.listdir(a.outdir) if f.endswith((".gguf", ".safetensors")))
    tools = {
        "modelgate": (lambda p: [a.binary, "scan", "--format", "json", p], None,
                      lambda c, o: modelgate_verdict(c, o)),
        "modelaudit": (lambda p: [os.path.join(a.modelaudit, "bin", "modelaudit"), "scan", "--no-cache", "--format",
                                  "json", p], MA_ENV, lambda c, o: " ".join(modelaudit_verdict(c, o))),
    }
    print(f"{'file':30} {'tool':10} {'median':>10} {'min':>10} {'max':>10} {'peak RSS':>10}  result")
    for f in files:
        label = f"{os.path.basename(f)}"
        for tool, (mk, env, judge) in tools.items():
            cmd = mk(f)
            run(cmd, env)  # warm
            times, rss = [], []
            for _ in range(a.runs):
                dt, maxrss, code, out = run(cmd, env)
                times.append(dt)
                rss.append(maxrss)
            print(f"{label:30} {tool:10} {statistics.median(times) * 1000:8.1f}ms {min(times) * 1000:8.1f}ms "
                  f"{max(times) * 1000:8.1f}ms {max(rss) / 1024:7.1f}MiB  {judge(code, out)}", flush=True)


def cmd_corpus(a):
    with open(os.path.join(a.corpus, "manifest.tsv"), newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    exe = os.path.join(a.modelaudit, "bin", "modelaudit")

    def one(row):
        path = os.path.join(a.corpus, row["path"])
        try:
            p = subprocess.run([exe, "scan", "--no-cache", "--format", "json", path], capture_output=True,
                               env=MA_ENV, timeout=120)
            return row, *modelaudit_verdict(p.returncode, p.stdout.decode("utf-8", "replace"))
        except subprocess.TimeoutExpired:
            return row, "error", "timeout"

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(a.jobs) as ex:
        results = list(ex.map(one, rows))
    elapsed = time.perf_counter() - t0
    table = {}
    for row, v, _ in results:
        table.setdefault(row["label"], {}).setdefault(v, 0)
        table[row["label"]][v] += 1
    verdicts = ("safe", "suspicious", "dangerous", "error")
    print(f"{'label':12}" + "".join(f"{v:>12}" for v in verdicts))
    for label, counts in sorted(table.items()):
        print(f"{label:12}" + "".join(f"{counts.get(v, 0):12}" for v in verdicts))
    for row, v, why in results:
        if (row["label"] == "malicious" and v != "dangerous") or (row["label"] == "benign" and v in ("dangerous", "suspicious")):
            print(f"  {row['label']:9} {v:10} {row['path']}  {why}")
    mal = [v for row, v, _ in results if row["label"] == "malicious"]
    ben = [v for row, v, _ in results if row["label"] == "benign"]
    errors = sum(1 for _, v, _ in results if v == "error")
    print(f"modelaudit: malicious caught {mal.count('dangerous')}/{len(mal)}, benign clean {ben.count('safe')}/{len(ben)}, "
          f"errors {errors} ({elapsed:.0f} s for {len(rows)} files, {a.jobs} at a time)")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("outdir")
    g.add_argument("--gib", type=int, default=4)
    r = sub.add_parser("run")
    r.add_argument("outdir")
    r.add_argument("--runs", type=int, default=5)
    r.add_argument("--modelaudit", default="/tmp/peers-ma")
    r.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "modelgate"))
    c = sub.add_parser("corpus")
    c.add_argument("--modelaudit", default="/tmp/peers-ma")
    c.add_argument("--corpus", default=os.path.join(ROOT, "..", "shared", "corpus"), help="default: ../shared/corpus")
    c.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    if a.cmd == "gen":
        os.makedirs(a.outdir, exist_ok=True)
        gguf(os.path.join(a.outdir, f"llama3-{a.gib}g.gguf"), a.gib, LLAMA3_TEMPLATE)
        gguf(os.path.join(a.outdir, f"llama3-{a.gib}g-ssti.gguf"), a.gib, SSTI_TEMPLATE)
        safetensors(os.path.join(a.outdir, f"llama3-{a.gib}g.safetensors"), a.gib)
    elif a.cmd == "run":
        cmd_run(a)
    else:
        cmd_corpus(a)


if __name__ == "__main__":
    sys.exit(main())
