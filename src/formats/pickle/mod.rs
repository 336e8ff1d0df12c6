//! Pickle streams: a symbolic emulation of CPython 3.11's two unpicklers, the C
//! `_pickle.Unpickler` (`pickle.load`, `torch.load`, `numpy.load`) and the pure-Python
//! `pickle._Unpickler` (`joblib.load`, `dill`), that reports every `find_class` call
//! (import), reconstructs the calls a load would make as evidence, and follows pickles hidden
//! in constants, joblib arrays and back-to-back pickle streams. Nothing is executed and only
//! bounded state is kept, whatever the input.
//!
//! Which unpickler ([`Loader`]): members a loader reads as pickles (torch's `data.pkl`, numpy
//! object arrays) follow the C one; any other pickle may be opened with either, so where the
//! two differ the emulation reads on with the one that accepts the stream (the attacker picks
//! the loader), and a stream only one of them accepts is `pickle-loader-divergence`.
//!
//! Budgets are per file ([`Budget`], shared by every stream of a file: container members and
//! nested pickles too): opcodes (the work), nested pickles scanned and their bytes; and per
//! run what is held at once (values, container slots and constant bytes still reachable from
//! the stack or memo; garbage is collected). Every budget ends in `pickle-budget-exceeded`.
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
//! - A constant attribute lookup, `builtins.getattr(X, 'name')` or
//!   `operator.attrgetter('a.b')(X)` with X a global and the name a constant identifier, is the
//!   global `X.name`: it is reported as that import (the lookup in its evidence), and the lookup
//!   callable is no import of its own when every use of it was such a lookup. Anything else (a
//!   computed name or object, a default argument, the callable stored or passed on) leaves it
//!   an import judged by the lists (dangerous).
//! - `functools.partial` is judged by the callable it wraps.
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
use std::sync::atomic::{AtomicU64, Ordering};

/// Which unpickler reads a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loader {
    /// CPython's C `_pickle.Unpickler`: `pickle.load(s)`, `torch.load`, `numpy.load`.
    C,
    /// The pure-Python `pickle._Unpickler`: `joblib.load` (`NumpyUnpickler`), `dill`, `pickle._loads`.
    Python,
    /// Either one: where they differ, the one that reads on is followed.
    Any,
}

/// Pickle work one file may cost, shared by every pickle stream in it (archive members,
/// pickles nested in constants or passed to loaders).
#[derive(Debug)]
pub struct Budget {
    opcodes: AtomicU64,
    nested: AtomicU64,
    nested_bytes: AtomicU64,
}

/// Nested pickles scanned per file.
pub(crate) const NESTED_SCANS_MAX: u64 = 1000;

impl Budget {
    pub fn new(opts: &ScanOptions) -> Budget {
        Budget {
            opcodes: AtomicU64::new(opts.max_pickle_opcodes),
            nested: AtomicU64::new(NESTED_SCANS_MAX),
            nested_bytes: AtomicU64::new(opts.max_nested_pickle_bytes.saturating_mul(4)),
        }
    }

    fn opcodes_left(&self) -> u64 {
        self.opcodes.load(Ordering::Relaxed)
    }

    /// Charge `n` opcodes; false when the budget did not cover them (it is then spent).
    fn spend_opcodes(&self, n: u64) -> bool {
        match self.opcodes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(n)) {
            Ok(_) => true,
            Err(_) => {
                self.opcodes.store(0, Ordering::Relaxed);
                false
            }
        }
    }

    /// Take one nested scan of `bytes` bytes; false (nothing taken) when the file has spent its share.
    fn take_nested(&self, bytes: u64) -> bool {
        if self.nested.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1)).is_err() {
            return false;
        }
        self.take_bytes(bytes)
    }

    /// Bytes of nested pickles the file may still decode and scan.
    fn nested_bytes_left(&self) -> u64 {
        self.nested_bytes.load(Ordering::Relaxed)
    }

    /// Charge `n` decoded bytes; false (nothing taken) when they do not fit.
    fn take_bytes(&self, n: u64) -> bool {
        self.nested_bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(n)).is_ok()
    }
}

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
        code: "pickle-callable-unresolved",
        severity: Severity::Dangerous,
        summary: "functools.partial wraps a callable computed at load time, or the class is used in a way the scan cannot follow",
        fix: "do not load the file; a partial of a known function is judged by that function, this one cannot be",
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
        code: "pickle-loader-divergence",
        severity: Severity::Dangerous,
        summary: "one of CPython's unpicklers (C or pure-Python) rejects the stream where the other reads on",
        fix: "do not load the file; picklers never write such streams, they are built so that scanners and loaders disagree",
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
        summary: "the pickle exceeds a scan budget (opcodes or nested pickles per file, values held at once, line length, nesting)",
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

/// Scan every pickle in `input`, back to back, until the data ends or stops being a pickle,
/// as either unpickler may read it ([`Loader::Any`]).
pub fn scan_stream(scan: &mut Scan<'_>, input: &mut Input, mode: Mode) -> Outcome {
    scan_stream_as(scan, input, mode, Loader::Any)
}

/// [`scan_stream`] for data that `loader` reads.
pub fn scan_stream_as(scan: &mut Scan<'_>, input: &mut Input, mode: Mode, loader: Loader) -> Outcome {
    let mut sink = Sink::default();
    let env = Env { opts: scan.opts, budget: &scan.pickle, loader };
    let info = run_stream(env, 0, None, input, mode, false, &mut sink);
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
/// `torch.load` reads these (the legacy tar layout) with the C unpickler.
pub fn scan_one(scan: &mut Scan<'_>, input: &mut Input, mode: Mode) -> (Outcome, Option<Simple>) {
    let mut sink = Sink::default();
    let env = Env { opts: scan.opts, budget: &scan.pickle, loader: Loader::C };
    let info = run_stream(env, 0, None, input, mode, true, &mut sink);
    deliver(scan, sink);
    (info.outcome, info.top)
}

/// The raw `(module, name)` of every `find_class` call the emulator of `loader` makes for
/// `data`: pickles back to back, up to the first failure, without following nested pickles
/// or deciding whether the bytes are a pickle at all. For the differential test against CPython.
#[doc(hidden)]
pub fn find_class_calls(data: &[u8], loader: Loader) -> Vec<(String, String)> {
    let opts = ScanOptions::default();
    let budget = Budget::new(&opts);
    let env = Env { opts: &opts, budget: &budget, loader };
    let mut input = crate::source::Data::bytes(data.to_vec()).into_input();
    let mut out = Vec::new();
    let mut first = true;
    while first || input.peek(1).is_ok_and(|b| !b.is_empty()) {
        first = false;
        let mut m = Machine::new(env, 0, None);
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

/// What every run needs: the options, the file's budget and the unpickler emulated.
#[derive(Clone, Copy)]
pub(crate) struct Env<'o> {
    pub opts: &'o ScanOptions,
    pub budget: &'o Budget,
    pub loader: Loader,
}

/// Run pickles back to back from `inp` (one only when `single`), collecting into `sink`.
fn run_stream(
    env: Env<'_>,
    depth: u32,
    suffix: Option<String>,
    inp: &mut Input,
    mode: Mode,
    single: bool,
    sink: &mut Sink,
) -> StreamInfo {
    let opts = env.opts;
    let mut info = StreamInfo::default();
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
        let mut m = Machine::new(env, depth, suffix.clone());
        let res = m.run(inp);
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
                    info.top = Some(m.simple(top));
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
                // budgets count for the first pickle; after it, bytes that never import are
                // just data, unless the file's opcodes ran out (that is never the data's fault)
                let file_budget = matches!(halt, emu::Halt::Budget { .. }) && env.budget.opcodes_left() == 0;
                if ran || confident_first || (first && halt.always_reported()) || file_budget {
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

/// Loaders that unpickle their first argument: whether it is a file (else bytes), and which
/// unpickler they use.
fn trampoline_kind(module: &str, name: &str) -> Option<(bool, Loader)> {
    match (module, name) {
        ("pickle" | "_pickle", "loads")
        | ("cloudpickle" | "cloudpickle.cloudpickle" | "joblib.externals.cloudpickle", "loads")
        | ("torch.storage", "_load_from_bytes") => Some((false, Loader::C)),
        // `pickle._loads` and dill run the pure-Python `pickle._Unpickler`
        ("pickle", "_loads") | ("dill" | "dill._dill", "loads") => Some((false, Loader::Python)),
        ("pickle" | "_pickle", "load") | ("torch" | "torch.serialization", "load") => Some((true, Loader::C)),
        ("pickle", "_load") | ("dill" | "dill._dill", "load") | ("joblib" | "joblib.numpy_pickle", "load") => {
            Some((true, Loader::Python))
        }
        // pandas falls back to its pure-Python compat unpickler when `pickle.load` fails
        ("pandas" | "pandas.io.pickle", "read_pickle") => Some((true, Loader::Any)),
        _ => None,
    }
}

/// `functools.partial`: binds arguments to another callable, so a use is judged by the
/// callable it wraps (`partial_new`, `partial_setstate` in Modules/_functoolsmodule.c).
fn is_binder(module: &str, name: &str) -> bool {
    matches!((module, name), ("functools" | "_functools", "partial"))
}

/// Callables that look an attribute up by name: with a constant object and a constant name
/// their result is that attribute, judged as the global `object.name` would be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LookupKind {
    /// `builtins.getattr(obj, name)` (`builtin_getattr` in Python/bltinmodule.c): one
    /// attribute, the name taken literally (a dot is part of the name, not a walk).
    Getattr,
    /// `operator.attrgetter(path)(obj)` (`attrgetter_new`, `dotted_getattr` in
    /// Modules/_operator.c): the path is split at dots and walked.
    Attrgetter,
}

fn lookup_kind(module: &str, name: &str) -> Option<LookupKind> {
    match (module, name) {
        ("builtins", "getattr") => Some(LookupKind::Getattr),
        ("operator" | "_operator", "attrgetter") => Some(LookupKind::Attrgetter),
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
        let budget = Budget::new(&opts);
        let env = Env { opts: &opts, budget: &budget, loader: Loader::Any };
        let mut sink = Sink::default();
        let mut input = crate::source::Data::bytes(bytes.to_vec()).into_input();
        let info = run_stream(env, 0, None, &mut input, mode, true, &mut sink);
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
