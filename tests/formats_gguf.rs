mod formats_common;
use formats_common::*;
use modelgate::finding::Verdict;

/// A GGUF writer for fixtures (version 1 uses u32 counts, later u64; `be` flips byte order).
struct W {
    b: Vec<u8>,
    v1: bool,
    be: bool,
}

impl W {
    fn u32(&mut self, v: u32) {
        self.b.extend(if self.be { v.to_be_bytes() } else { v.to_le_bytes() });
    }
    fn u64(&mut self, v: u64) {
        self.b.extend(if self.be { v.to_be_bytes() } else { v.to_le_bytes() });
    }
    fn len(&mut self, v: u64) {
        if self.v1 {
            self.u32(v as u32)
        } else {
            self.u64(v)
        }
    }
    fn str(&mut self, s: &str) {
        self.len(s.len() as u64);
        self.b.extend_from_slice(s.as_bytes());
    }
}

enum V<'a> {
    Str(&'a str),
    U32(u32),
    Strs(&'a [&'a str]),
    F32s(&'a [f32]),
}

fn gguf(version: u32, be: bool, kvs: &[(&str, V)], tensors: &[(&str, &[u64], u32, u64)], data_len: usize) -> Vec<u8> {
    let mut w = W { b: b"GGUF".to_vec(), v1: version == 1, be };
    w.u32(version);
    w.len(tensors.len() as u64);
    w.len(kvs.len() as u64);
    for (k, v) in kvs {
        w.str(k);
        match v {
            V::Str(s) => {
                w.u32(8);
                w.str(s);
            }
            V::U32(x) => {
                w.u32(4);
                w.u32(*x);
            }
            V::Strs(list) => {
                w.u32(9);
                w.u32(8);
                w.len(list.len() as u64);
                for s in *list {
                    w.str(s);
                }
            }
            V::F32s(list) => {
                w.u32(9);
                w.u32(6);
                w.len(list.len() as u64);
                for f in *list {
                    w.u32(f.to_bits());
                }
            }
        }
    }
    for (name, dims, ty, off) in tensors {
        w.str(name);
        w.u32(dims.len() as u32);
        for d in *dims {
            w.u64(*d);
        }
        w.u32(*ty);
        w.u64(*off);
    }
    while w.b.len() % 32 != 0 {
        w.b.push(0);
    }
    w.b.extend(std::iter::repeat_n(0u8, data_len));
    w.b
}

const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
const ESCAPE: &str = "{% for m in messages %}{{ m['content'] }}{% endfor %}{{ cycler.__init__.__globals__.os.popen('echo pwned').read() }}";

fn model(version: u32, be: bool, template: &str) -> Vec<u8> {
    gguf(
        version,
        be,
        &[
            ("general.architecture", V::Str("llama")),
            ("general.alignment", V::U32(32)),
            ("tokenizer.ggml.tokens", V::Strs(&["<s>", "</s>", "hello"])),
            ("tokenizer.ggml.scores", V::F32s(&[0.0, 0.0, -1.5])),
            ("tokenizer.chat_template", V::Str(template)),
        ],
        &[("tok_embd.weight", &[4], 0, 0), ("blk.0.attn_q.weight", &[32], 2, 32)],
        64,
    )
}

#[test]
fn ordinary_models_are_safe_in_every_version_and_byte_order() {
    for (v, be) in [(3, false), (2, false), (1, false), (3, true)] {
        assert_safe(&scan(&model(v, be, CHATML)), "gguf");
        assert_safe(&scan_stream(&model(v, be, CHATML)), "gguf");
    }
}

#[test]
fn sandbox_escape_in_chat_template_is_dangerous() {
    for (v, be) in [(3, false), (1, false), (2, true)] {
        let r = scan(&model(v, be, ESCAPE));
        assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
        let ev = evidence(&r, "chat-template-sandbox-escape");
        assert!(ev.starts_with("tokenizer.chat_template: {{ cycler.__init__.__globals__.os.popen"), "{ev}");
    }
    // Named templates (`tokenizer.chat_template.tool_use`) are checked too.
    let b = gguf(3, false, &[("tokenizer.chat_template.tool_use", V::Str("{{ lipsum|attr('__globals__') }}"))], &[], 0);
    assert_eq!(scan(&b).verdict, Verdict::Dangerous);
}

#[test]
fn malformed_files_are_errors() {
    let mut huge_string = model(3, false, CHATML);
    // The first key's length (right after magic, version and two counts) claims 2^40 bytes.
    huge_string[24..32].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (huge_string, "exceeds the file"),
        (gguf(3, false, &[], &[("t", &[4], 0, 64)], 16), "runs past the end"),
        (gguf(3, false, &[], &[("t", &[4], 0, 3)], 64), "not aligned"),
        (gguf(3, false, &[], &[("t", &[1, 1, 1, 1, 1], 0, 0)], 64), "dimensions"),
        (gguf(3, false, &[("general.alignment", V::U32(3))], &[], 0), "power of two"),
        (model(3, false, CHATML)[..200].to_vec(), "the file"),
    ];
    for (b, want) in cases {
        let r = scan(&b);
        assert_eq!(r.verdict, Verdict::Error, "{want}: {r:#?}");
        assert!(r.findings.iter().any(|f| f.code == "gguf-malformed" && f.message.contains(want)), "{want}: {r:#?}");
    }
    let mut counts = model(3, false, CHATML);
    counts[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(has(&scan_stream(&counts), "gguf-malformed"));
}

#[test]
fn big_files_are_judged_by_their_header() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.gguf");
    let n: u64 = 5 << 30;
    let head = gguf(3, false, &[("tokenizer.chat_template", V::Str(CHATML))], &[("w", &[n], 24, 0)], 0);
    std::fs::write(&p, &head).unwrap();
    std::fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(head.len() as u64 + n).unwrap();
    let r = modelgate::engine::scan_path(&p, "big", &Default::default());
    assert_safe(&r, "gguf");
}

#[test]
fn mangled_files_never_panic() {
    never_panics(&model(3, false, ESCAPE));
    never_panics(&model(1, true, CHATML));
}

/// A template past the 4 MiB that is checked is an error, never a safe model with a note.
#[test]
fn oversized_template_is_an_error() {
    let big = format!("{CHATML}{}", " ".repeat(5 << 20));
    let r = scan(&model(3, false, &big));
    assert_eq!(r.verdict, Verdict::Error, "{r:#?}");
    assert!(has(&r, "chat-template-unparsed"));
    // An escape in the checked part still outranks the error.
    let r = scan(&model(3, false, &format!("{ESCAPE}{}", " ".repeat(5 << 20))));
    assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
}

/// A string array under a template key is rendered by llama-cpp-python as llama.cpp prints
/// it (`["a", "b"]`): the elements and that rendering are checked.
#[test]
fn template_string_arrays_are_checked() {
    let b = gguf(3, false, &[("tokenizer.chat_template", V::Strs(&[CHATML, ESCAPE]))], &[], 0);
    assert_eq!(scan(&b).verdict, Verdict::Dangerous);
    // Split across elements: only the rendering `["{{ x ~", "~ cycler.__init__ }}"]` escapes.
    let b = gguf(3, false, &[("tokenizer.chat_template", V::Strs(&["{{ x ~", "~ cycler.__init__ }}"]))], &[], 0);
    let r = scan(&b);
    assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
    let b = gguf(3, false, &[("tokenizer.chat_template", V::Strs(&[CHATML]))], &[], 0);
    assert_safe(&scan(&b), "gguf");
}
