//! Pickle streams: a symbolic emulation of CPython 3.11's C Unpickler that reports every
//! `find_class` call (import), reconstructs the calls a load would make as evidence, and
//! follows pickles hidden in constants, joblib arrays and back-to-back pickle streams.
//! Nothing is executed and only bounded state is kept, whatever the input.
//!
//! Decisions on top of the emulation (see `run_stream`):
//! - A stream is scanned pickle after pickle. The first one decides whether the bytes are a
//!   pickle at all: in [`Mode::Confident`] they are, and any failure is `pickle-malformed`
//!   (dangerous: a loader has run everything before the error). In [`Mode::Probe`] a failure
//!   counts only when the pickle ran something first (a call, or a denylisted import);
//!   otherwise the bytes are not a pickle. Later pickles follow the probe rule; bytes after
//!   the last one are `pickle-trailing-data`.
//! - Protocol-0/1 strings are decoded as latin-1 (never failing, like `encoding='latin1'`),
//!   and frames are read as `pickle.load` reads a file; streams on which loaders disagree
//!   (an opcode crossing a frame end) are reported as `pickle-frame-straddle`.
//! - Names that cannot be a Python module path end the pickle at `find_class`, as importing
//!   them would.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

mod compat;
mod emu;
mod joblib;
mod nested;
mod text;
mod value;

use crate::engine::{Import, Scan, ScanOptions};
use crate::finding::{CodeInfo, Finding, Severity};
use crate::source::Input;
use emu::Machine;

/// How sure the caller is that the bytes are a pickle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The bytes are a pickle (header seen, or the loader reads them as one): failure is malformed.
    Confident,
    /// Maybe a headerless pickle: failing before any import means "not a pickle".
    Probe,
}

/// What scanning a stream found out about it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    /// The bytes are (or start with) a pickle.
    pub is_pickle: bool,
    /// A joblib `NumpyArrayWrapper` was followed.
    pub joblib: bool,
    /// Pickles parsed back to back.
    pub streams: usize,
}

/// Finding codes the pickle parser emits.
pub const CODES: &[CodeInfo] = &[
    CodeInfo {
        code: "pickle-malformed",
        severity: Severity::Dangerous,
        summary: "the pickle stream is malformed; a loader runs everything before the error",
        fix: "do not load the file; re-export the model from a trusted source, preferably as safetensors",
    },
    CodeInfo {
        code: "pickle-dynamic-global",
        severity: Severity::Dangerous,
        summary: "STACK_GLOBAL imports a name that is not a string constant (computed or type-confused)",
        fix: "do not load the file; legitimate pickles always name their imports with constants",
    },
    CodeInfo {
        code: "pickle-dynamic-operand",
        severity: Severity::Dangerous,
        summary: "the pickle feeds an object computed at load time where the loader expects a constant",
        fix: "do not load the file; legitimate pickles never build call arguments this way",
    },
    CodeInfo {
        code: "pickle-extension-code",
        severity: Severity::Dangerous,
        summary: "the pickle imports through the copyreg extension registry (EXT1/EXT2/EXT4)",
        fix: "do not load the file; the extension registry maps codes to arbitrary globals",
    },
    CodeInfo {
        code: "pickle-global-mutation",
        severity: Severity::Dangerous,
        summary: "the pickle modifies an imported module or class in place (monkey-patching)",
        fix: "do not load the file; it rewrites library code so that later imports run something else",
    },
    CodeInfo {
        code: "pickle-embedded",
        severity: Severity::Suspicious,
        summary: "a string or bytes constant holds another pickle (raw, hex or base64)",
        fix: "check which code unpickles the inner pickle; store plain data instead of pickles in pickles",
    },
    CodeInfo {
        code: "pickle-nested-dynamic",
        severity: Severity::Dangerous,
        summary: "a loader such as pickle.loads unpickles a value computed at load time",
        fix: "do not load the file; the inner pickle is assembled at load time to hide it from scanners",
    },
    CodeInfo {
        code: "pickle-frame-straddle",
        severity: Severity::Dangerous,
        summary: "an opcode crosses the end of a pickle frame, which loaders read in different ways",
        fix: "do not load the file; picklers never write such frames, it is built to fool scanners",
    },
    CodeInfo {
        code: "pickle-trailing-data",
        severity: Severity::Info,
        summary: "bytes that are not a pickle follow the last pickle stream",
        fix: "nothing to do unless the file should end there; loaders ignore these bytes",
    },
    CodeInfo {
        code: "pickle-budget-exceeded",
        severity: Severity::Error,
        summary: "the pickle exceeds a scan budget (opcodes, tracked values, line length, nesting)",
        fix: "raise the pickle budgets in the policy if the file is trusted, or re-export it as safetensors",
    },
    CodeInfo {
        code: "pickle-joblib-sibling",
        severity: Severity::Dangerous,
        summary: "an old joblib array wrapper (NDArrayWrapper) names a file outside the dump's folder, which joblib.load reads and unpickles",
        fix: "do not load the file with joblib; re-dump the object with a current joblib if its source is trusted",
    },
    CodeInfo {
        code: "pickle-joblib-layout",
        severity: Severity::Error,
        summary: "joblib array data follows its wrapper in a way the scanner cannot measure",
        fix: "re-dump the object with a current joblib, or export the arrays as .npy/safetensors",
    },
];

/// True for bytes that are pickle opcodes.
pub fn is_opcode(b: u8) -> bool {
    matches!(b, 0x80..=0x98) || b"(.012FIJKLMNPQRSTUVXabcdeghijlmopqrstu})]GBC".contains(&b)
}

/// Scan every pickle in `input`, back to back, until the data ends or stops being a pickle.
pub fn scan_stream(scan: &mut Scan<'_>, input: &mut Input, mode: Mode) -> Outcome {
    let mut sink = Sink::default();
    let info = run_stream(scan.opts, 0, None, input, mode, false, &mut sink);
    deliver(scan, sink);
    info.outcome
}

/// A small, bounded view of the value a pickle produced (for formats that interleave
/// pickles with raw data, such as the torch 0.1 tar layout).
#[derive(Debug, Clone, PartialEq)]
pub enum Simple {
    Int(i64),
    Str(String),
    Global(String, String),
    Tuple(Vec<Simple>),
    Other,
}

/// Scan exactly one pickle (up to its STOP) from `input`, leaving `input` just after it.
pub fn scan_one(scan: &mut Scan<'_>, input: &mut Input, mode: Mode) -> (Outcome, Option<Simple>) {
    let mut sink = Sink::default();
    let info = run_stream(scan.opts, 0, None, input, mode, true, &mut sink);
    deliver(scan, sink);
    (info.outcome, info.top)
}

/// The raw `(module, name)` of every `find_class` call the emulator makes for `data`: pickles
/// back to back, up to the first failure, without following nested pickles or deciding
/// whether the bytes are a pickle at all. For the differential test against CPython.
#[doc(hidden)]
pub fn find_class_calls(data: &[u8]) -> Vec<(String, String)> {
    let opts = ScanOptions::default();
    let mut input = crate::source::Data::bytes(data.to_vec()).into_input();
    let mut out = Vec::new();
    let mut first = true;
    while first || input.peek(1).is_ok_and(|b| !b.is_empty()) {
        first = false;
        let mut m = Machine::new(&opts, 0, None, opts.max_pickle_opcodes);
        let res = m.run(&mut input);
        out.extend(
            m.imports
                .iter()
                .filter(|i| !i.opcode.starts_with("EXT"))
                .map(|i| i.raw.clone().unwrap_or_else(|| (i.module.clone(), i.name.clone()))),
        );
        match res {
            Ok(_) => m.end_stream(&mut input),
            Err(_) => break,
        }
    }
    out
}

/// Imports and findings collected by one or more runs, before they reach the [`Scan`].
/// Member paths in here are relative to the scanned data (nested pickles only).
#[derive(Default)]
pub(crate) struct Sink {
    pub imports: Vec<Import>,
    pub findings: Vec<Finding>,
}

fn deliver(scan: &mut Scan<'_>, sink: Sink) {
    let base = scan.member_path().map(str::to_string);
    for mut i in sink.imports {
        if let Some(rel) = i.member.take() {
            i.member = Some(match &base {
                Some(b) => format!("{b}!{rel}"),
                None => rel,
            });
        }
        scan.import(i);
    }
    for f in sink.findings {
        scan.finding(f);
    }
}

#[derive(Default)]
struct StreamInfo {
    outcome: Outcome,
    top: Option<Simple>,
    /// Why the first pickle failed, when Probe semantics kept that quiet.
    failure: Option<(u64, String)>,
    /// The last run did not reach STOP.
    halted: bool,
    /// Bytes the first pickle took.
    first_len: u64,
}

/// Run pickles back to back from `inp` (one only when `single`), collecting into `sink`.
fn run_stream(
    opts: &ScanOptions,
    depth: u32,
    suffix: Option<String>,
    inp: &mut Input,
    mode: Mode,
    single: bool,
    sink: &mut Sink,
) -> StreamInfo {
    let mut info = StreamInfo::default();
    let mut left = opts.max_pickle_opcodes;
    let mut first = true;
    loop {
        let start = inp.pos();
        if !first {
            match inp.peek(1) {
                Ok([]) => break,
                Ok(_) => {}
                Err(e) => {
                    let f = Finding::new("read-error", Severity::Error, format!("cannot read the pickle stream: {e}"))
                        .at(start);
                    sink.findings.push(tag(f, &suffix));
                    info.halted = true;
                    break;
                }
            }
        }
        let mut m = Machine::new(opts, depth, suffix.clone(), left);
        let res = m.run(inp);
        left = left.saturating_sub(m.opcodes);
        info.outcome.joblib |= m.joblib;
        match res {
            Ok(top) => {
                m.end_stream(inp);
                if first {
                    info.first_len = inp.pos().saturating_sub(start);
                }
                info.outcome.is_pickle = true;
                info.outcome.streams += 1;
                info.halted = false;
                if first {
                    info.top = Some(m.simple(top, 0));
                }
                m.finish(sink);
            }
            Err(halt) => {
                info.halted = true;
                let confident_first = first && mode == Mode::Confident;
                // Bytes that are not declared a pickle count as one when they fail only after
                // running something: a call, or a denylisted import. A word list read as
                // protocol 0 ("cat\ndog\n...") imports cat.dog and fails: that is no pickle.
                let ran = m.engaged
                    && (m.called
                        || m.imports.iter().any(|i| {
                            matches!(
                                opts.lists.classify(i),
                                crate::lists::Class::Dangerous(_) | crate::lists::Class::Denied(_)
                            )
                        }));
                // budgets count for the first pickle; after it, bytes that never import are just data
                if ran || confident_first || (first && halt.always_reported()) {
                    info.outcome.is_pickle = true;
                    if ran || confident_first {
                        info.outcome.streams += 1;
                    }
                    m.report_halt(&halt, confident_first);
                    m.finish(sink);
                } else if first {
                    info.failure = Some(halt.describe());
                } else {
                    let (_, why) = halt.describe();
                    let f = Finding::new(
                        "pickle-trailing-data",
                        Severity::Info,
                        format!("data after the last pickle stream is not a pickle ({why})"),
                    )
                    .at(start);
                    sink.findings.push(tag(f, &suffix));
                }
                break;
            }
        }
        if single {
            break;
        }
        first = false;
    }
    info
}

fn tag(f: Finding, suffix: &Option<String>) -> Finding {
    match suffix {
        Some(s) => f.member(s.clone()),
        None => f,
    }
}

/// CPython's `find_class` renaming for protocol < 3: `NAME_MAPPING`, else `IMPORT_MAPPING`.
fn compat_map(module: &str, name: &str) -> (String, String) {
    if let Ok(i) = compat::NAME_MAPPING.binary_search_by(|((m, n), _)| (*m, *n).cmp(&(module, name))) {
        if let Some((_, (m2, n2))) = compat::NAME_MAPPING.get(i) {
            return ((*m2).to_string(), (*n2).to_string());
        }
    }
    if let Ok(i) = compat::IMPORT_MAPPING.binary_search_by(|(m, _)| (*m).cmp(module)) {
        if let Some((_, m2)) = compat::IMPORT_MAPPING.get(i) {
            return ((*m2).to_string(), name.to_string());
        }
    }
    (module.to_string(), name.to_string())
}

/// Loaders that unpickle their first argument: `Some(false)` takes bytes, `Some(true)` a file.
fn trampoline_kind(module: &str, name: &str) -> Option<bool> {
    match (module, name) {
        ("pickle" | "_pickle", "loads" | "_loads")
        | ("dill" | "dill._dill", "loads")
        | ("cloudpickle" | "cloudpickle.cloudpickle" | "joblib.externals.cloudpickle", "loads")
        | ("torch.storage", "_load_from_bytes") => Some(false),
        ("pickle" | "_pickle", "load" | "_load")
        | ("dill" | "dill._dill", "load")
        | ("torch" | "torch.serialization", "load")
        | ("joblib" | "joblib.numpy_pickle", "load")
        | ("pandas" | "pandas.io.pickle", "read_pickle") => Some(true),
        _ => None,
    }
}

/// Calls whose result is bytes the scanner can compute (and check for a hidden pickle).
fn is_decoder(module: &str, name: &str) -> bool {
    matches!(
        (module, name),
        ("_codecs" | "codecs", "encode" | "decode")
            | ("base64", "b64decode" | "standard_b64decode" | "urlsafe_b64decode" | "decodebytes" | "decodestring")
            | ("binascii", "a2b_base64" | "unhexlify" | "a2b_hex")
            | ("builtins", "bytes.fromhex" | "bytearray.fromhex" | "bytes" | "bytearray")
            | ("zlib" | "gzip", "decompress")
            | ("io" | "_io", "BytesIO")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compat_names() {
        assert_eq!(compat_map("__builtin__", "eval"), ("builtins".into(), "eval".into()));
        assert_eq!(compat_map("__builtin__", "xrange"), ("builtins".into(), "range".into()));
        assert_eq!(compat_map("copy_reg", "_reconstructor"), ("copyreg".into(), "_reconstructor".into()));
        assert_eq!(compat_map("os", "system"), ("os".into(), "system".into()));
    }

    fn one(bytes: &[u8], mode: Mode) -> (StreamInfo, Sink, u64) {
        let opts = ScanOptions::default();
        let mut sink = Sink::default();
        let mut input = crate::source::Data::bytes(bytes.to_vec()).into_input();
        let info = run_stream(&opts, 0, None, &mut input, mode, true, &mut sink);
        (info, sink, input.pos())
    }

    #[test]
    fn single_pickle_stops_after_stop() {
        // the torch 0.1 tar layout: a small pickle, then raw data
        let mut bytes = b"\x80\x02(K\x07X\x02\x00\x00\x00abctorch\nFloatStorage\n\x87t.".to_vec();
        let end = bytes.len() as u64;
        bytes.extend_from_slice(b"\x00\x01raw storage bytes");
        let (info, sink, pos) = one(&bytes, Mode::Confident);
        assert_eq!(pos, end);
        assert_eq!(info.outcome.streams, 1);
        assert_eq!(
            info.top,
            Some(Simple::Tuple(vec![Simple::Tuple(vec![
                Simple::Int(7),
                Simple::Str("ab".into()),
                Simple::Global("torch".into(), "FloatStorage".into()),
            ])]))
        );
        assert_eq!(sink.imports.len(), 1);
        assert!(sink.findings.is_empty());
        let (info, _, _) = one(b"I12\n.", Mode::Probe);
        assert_eq!(info.top, Some(Simple::Int(12)));
        let (info, sink, _) = one(b"not a pickle", Mode::Probe);
        assert!(!info.outcome.is_pickle && info.top.is_none() && sink.findings.is_empty());
    }

    #[test]
    fn opcodes() {
        for b in 0u8..=255 {
            let known = b"(.012FIJKLMNPQRSTUVXabcdeghijlmopqrstu})]GBC".contains(&b) || (0x80..=0x98).contains(&b);
            assert_eq!(is_opcode(b), known, "{b:#x}");
        }
        assert!(!is_opcode(b'x'));
    }
}
