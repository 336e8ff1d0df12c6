//! TorchScript archives (`torch.jit.save`), judged by their code.
//!
//! What the loader does (`torch/csrc/jit/serialization/import.cpp`,
//! `ScriptModuleDeserializer::deserialize`): `torch.jit.load` reads `constants.pkl`, then
//! `data.pkl`, with the C++ unpickler (`unpickler.cpp`, `Unpickler::readGlobal`). That unpickler
//! accepts only a fixed set of globals: TorchScript's own data builders
//! (`torch.jit._pickle.build_intlist`, `build_tensorlist`, `build_doublelist`,
//! `build_boollist`, `build_tensor_from_id`, `restore_type_tag`), tensor rebuilders,
//! `collections.OrderedDict`, `builtins.complex`, `torch.device`, storage and qscheme names;
//! every other name is a type that `SourceImporterImpl::findNamedType` compiles from the
//! archive's `code/` (`__torch__.a.b.C` is class `C` of `code/__torch__/a/b.py`) or a C++
//! custom class (`__torch__.torch.classes.NS.Name`). Nothing is imported from Python: in this
//! context `__torch__.*` names are the archive's own classes, not unknown imports.
//! `torch.load` hands any zip with a `constants.pkl` record to `torch.jit.load`
//! (`torch.serialization._is_torchscript_zip`), so the same holds for it.
//!
//! Code the archive makes torch run while it loads (each proven with real torch by
//! `tests/fixtures/torchscript/make_torchscript.py`):
//! - `__setstate__` of every class whose object is in the pickles (`obj_loader` calls it), and
//!   everything it calls. Any pickled name counts, `evil.mod.C` as much as `__torch__.C` (it
//!   is class `C` of `code/evil/mod.py`); when the pickles cannot be read, every `__setstate__`;
//! - default argument values and class constants (`x : Final[T] = expr`), which
//!   `ScriptTypeParser::evaluateDefaults` compiles and runs when a class is compiled;
//! - C++ `__setstate__` of pickled custom classes.
//!
//! `forward` and the other methods run only when the model is called. Only `code/` beside a
//! `constants.pkl` (or a legacy `model.json`) is TorchScript: elsewhere nothing compiles it.
//!
//! The `code/` files are parsed as torch's own lexer and parser read them (`lex.rs`, `parse.rs`),
//! calls are collected per method, and reachability from load time is taken over names (a
//! call of `x.f(...)` may reach every method or function named `f`; a call of a module
//! attribute reaches every `forward`; a class that is named may run its `__init__` and
//! operator methods): more is reached than torch would, never less. Operators that open a
//! path, reach the network or call Python (`ops.rs`, generated from torch's operator schemas by
//! `gen_ops.py`) are dangerous when reachable at load time and suspicious elsewhere; operators
//! and custom classes from namespaces torch does not register need a native library the
//! loading process must have loaded, and are suspicious.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

mod lex;
mod ops;
mod parse;

use crate::engine::Scan;
use crate::finding::{CodeInfo, Finding, Severity};
use crate::source::{read_up_to, BytesSource, Data};
use parse::{Def, Expr, ExprKind, Stmt};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Read;
use std::sync::Arc;

pub const CODES: &[CodeInfo] = &[
    CodeInfo {
        code: "torchscript-op-at-load",
        severity: Severity::Dangerous,
        summary: "code that torch.jit.load runs while loading (a __setstate__, a default argument, a class constant) \
                  opens a file, reaches the network or calls Python",
        fix: "do not load the archive; a model's weights never need file or network access to load",
    },
    CodeInfo {
        code: "torchscript-op-in-code",
        severity: Severity::Suspicious,
        summary: "a TorchScript method that runs when the model is called (forward, ...) opens a file, \
                  reaches the network or calls Python",
        fix: "check what the method does with the path or address before running the model",
    },
    CodeInfo {
        code: "torchscript-custom-op",
        severity: Severity::Suspicious,
        summary: "TorchScript code calls an operator from a namespace torch does not register (a native library must provide it)",
        fix: "load the model only with the library that defines the operator, and only if you trust that library",
    },
    CodeInfo {
        code: "torchscript-custom-class",
        severity: Severity::Suspicious,
        summary: "a TorchScript archive uses a C++ custom class that torch does not register (a native library must provide it)",
        fix: "load the model only with the library that defines the class, and only if you trust that library",
    },
    CodeInfo {
        code: "torchscript-code-unreadable",
        severity: Severity::Error,
        summary: "a TorchScript code file could not be parsed, so what it runs could not be judged",
        fix: "re-export the model with torch.jit.save; torch itself writes code modelgate can read",
    },
    CodeInfo {
        code: "torchscript-code-budget",
        severity: Severity::Error,
        summary: "the TorchScript code of an archive exceeds the scan budget; the rest was not judged",
        fix: "split the model; real TorchScript archives hold a few MiB of code at most",
    },
];

/// What an operator reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reach {
    File,
    Network,
    Python,
}

impl Reach {
    fn label(self) -> &'static str {
        match self {
            Reach::File => "file access",
            Reach::Network => "network access",
            Reach::Python => "runs Python",
        }
    }
}

/// An operator that opens a path, reaches the network or runs Python ([`ops::RISKY_OPS`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct RiskyOp {
    /// `ns::name`
    pub name: &'static str,
    pub reach: Reach,
    pub why: &'static str,
    /// One schema of the operator, as registered.
    #[allow(dead_code)]
    pub schema: &'static str,
    /// Callable as a method (`x.op(...)`): its first argument is `self`.
    pub method: bool,
}

/// Code bytes read from one archive.
const MAX_CODE_BYTES: u64 = 32 << 20;
/// Tokens lexed from one archive (time), and from one file (memory: the file's tokens and tree
/// are held at once; torch's own files have a few thousand).
const MAX_TOKENS: usize = 8_000_000;
const MAX_FILE_TOKENS: usize = 1_000_000;
/// Findings reported from one archive's code.
const MAX_FINDINGS: usize = 200;
/// Characters of a call shown as evidence.
const EVIDENCE_CHARS: usize = 200;

/// Builtin callables of TorchScript's global environment (`ir_emitter.cpp`, `import_source.cpp`)
/// and exception names: calling one of these bare names is no module call.
const BUILTIN_CALLS: &[&str] = &[
    "print",
    "tuple",
    "float",
    "complex",
    "int",
    "bool",
    "str",
    "getattr",
    "hasattr",
    "isinstance",
    "range",
    "zip",
    "enumerate",
    "len",
    "hash",
    "id",
    "min",
    "max",
    "abs",
    "all",
    "any",
    "divmod",
    "sum",
    "list",
    "dict",
    "ord",
    "chr",
    "bin",
    "hex",
    "oct",
    "pow",
    "round",
    "sorted",
    "rangelist",
    "fork",
    "annotate",
    "unchecked_cast",
    "uninitialized",
    "_to_tensor",
    "_unwrap_optional",
    "isfinite",
    "reversed",
    "iter",
    "next",
    "Exception",
    "RuntimeError",
    "ValueError",
    "TypeError",
    "AssertionError",
    "IndexError",
    "KeyError",
    "NotImplementedError",
    "StopIteration",
    "ZeroDivisionError",
    "AttributeError",
    "ArithmeticError",
    "OverflowError",
    "Warning",
    "UserWarning",
    "DeprecationWarning",
];

/// The zip members of a TorchScript archive that this module reads, collected while the zip
/// container hands its members to the dispatcher ([`Archive::keep`]) and judged once all
/// members are scanned ([`Archive::finish`]).
pub struct Archive {
    /// A `*/constants.pkl` record exists: `torch.load` and `torch.jit.load` read the archive
    /// with TorchScript's C++ unpickler.
    script: bool,
    /// Archive folders (lower case) that `torch.jit.load` can load: they hold `constants.pkl`
    /// (read first by `ScriptModuleDeserializer::deserialize`) or a legacy `model.json`.
    /// Their `code/` is TorchScript; elsewhere `code/` is never compiled.
    roots: HashSet<String>,
    code: Vec<(String, Arc<BytesSource>)>,
    code_bytes: u64,
    budget_hit: bool,
}

fn lower(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// A `code/**.py` member (PyTorch's miniz looks records up without regard to case).
fn is_code(name: &str) -> bool {
    code_path(name).is_some()
}

/// The path of a code file below its `code/` folder: `ARCHIVE/code/REST.py`
/// (`ScriptModuleDeserializer`'s `code_prefix_`), or `ARCHIVE/.data/ts_code/code/REST.py` for
/// TorchScript inside a torch.package. Files elsewhere (`extra/`) are never compiled.
fn code_path(name: &str) -> Option<&str> {
    let lname = lower(name);
    if !lname.ends_with(".py") {
        return None;
    }
    let parts: Vec<&str> = lname.split('/').collect();
    let skip = match parts.as_slice() {
        [_, "code", _, ..] => 2,
        [_, ".data", "ts_code", "code", _, ..] => 4,
        _ => return None,
    };
    let start: usize = parts.iter().take(skip).map(|p| p.len() + 1).sum();
    name.get(start..)
}

/// A pickle `torch.jit.load` unpickles with the C++ unpickler (`readArchive("constants")`,
/// `readArchive("data")`).
fn is_loader_pickle(name: &str) -> bool {
    let l = lower(name);
    matches!(l.split('/').collect::<Vec<_>>().as_slice(), [_, "data.pkl" | "constants.pkl"])
}

impl Archive {
    /// An archive to judge when its members are those of a TorchScript archive (a
    /// `constants.pkl` record, or `code/` files).
    pub fn detect<'a>(names: impl Iterator<Item = &'a str> + Clone) -> Option<Archive> {
        let mut script = false;
        let mut roots = HashSet::new();
        for n in names.clone() {
            let l = lower(n);
            if let [root, "constants.pkl" | "model.json"] = l.split('/').collect::<Vec<_>>().as_slice() {
                roots.insert(root.to_string());
            }
            script |= is_loader_pickle(n) && l.ends_with("/constants.pkl");
        }
        let a = Archive { script, roots, code: Vec::new(), code_bytes: 0, budget_hit: false };
        let code = names.into_iter().any(|n| a.wants(n));
        (script || code).then_some(a)
    }

    /// Is this member a code file this module reads? Only `code/` beside TorchScript records
    /// counts: a zip of a Python project is no TorchScript archive.
    pub fn wants(&self, name: &str) -> bool {
        let l = lower(name);
        let parts: Vec<&str> = l.splitn(3, '/').collect();
        match parts.as_slice() {
            [_, ".data", rest] => rest.starts_with("ts_code/code/") && is_code(name),
            [root, "code", _] => self.roots.contains(*root) && is_code(name),
            _ => false,
        }
    }

    /// Keep a copy of a code member's bytes (within the archive's code budget) and hand the
    /// data back for the dispatcher.
    pub fn keep(&mut self, scan: &mut Scan<'_>, name: &str, data: Data) -> Data {
        let left = MAX_CODE_BYTES.saturating_sub(self.code_bytes);
        let over = |this: &mut Archive, scan: &mut Scan<'_>| {
            if !this.budget_hit {
                this.budget_hit = true;
                scan.finding(
                    Finding::new(
                        "torchscript-code-budget",
                        Severity::Error,
                        format!(
                            "the archive's code exceeds {MAX_CODE_BYTES} bytes; this file and the rest were not judged"
                        ),
                    )
                    .member(name.to_string()),
                );
            }
        };
        match data {
            Data::Random(src) => {
                if src.len() > left || self.budget_hit {
                    over(self, scan);
                    return Data::Random(src);
                }
                match read_up_to(src.as_ref(), 0, src.len() as usize) {
                    Ok(bytes) => {
                        self.code_bytes += bytes.len() as u64;
                        self.code.push((name.to_string(), Arc::new(BytesSource(bytes))));
                    }
                    Err(e) => scan.finding(
                        Finding::new("read-error", Severity::Error, format!("cannot read code file: {e}"))
                            .member(name.to_string()),
                    ),
                }
                Data::Random(src)
            }
            Data::Stream(mut r, size) => {
                let mut buf = Vec::new();
                let read = r.by_ref().take(left.saturating_add(1)).read_to_end(&mut buf);
                if read.is_err() || buf.len() as u64 > left || self.budget_hit {
                    // a damaged stream is reported by the container; an over-budget one here
                    if read.is_ok() {
                        over(self, scan);
                    }
                    return Data::Stream(Box::new(std::io::Cursor::new(buf).chain(r)), size);
                }
                self.code_bytes += buf.len() as u64;
                let src = Arc::new(BytesSource(buf));
                self.code.push((name.to_string(), src.clone()));
                Data::Random(src)
            }
        }
    }

    /// Judge the archive once every member was scanned. `mark` is the scan's
    /// [`Scan::import_mark`] from before the first member.
    pub fn finish(self, scan: &mut Scan<'_>, mark: usize) {
        let here = scan.member_path().map(|p| format!("{p}!"));
        // Names the loader's pickles ask for.
        let mut pickled: Vec<(String, String, String, u64)> = Vec::new(); // (module, name, member, offset)
        let mut seen_loader_pickle = false;
        let mut context = Vec::new();
        for (i, imp) in scan.imports_since(mark) {
            let Some(member) = imp.member.as_deref() else { continue };
            let local = match &here {
                Some(p) => member.strip_prefix(p.as_str()),
                None => Some(member),
            };
            let Some(local) = local.filter(|m| !m.contains('!') && is_loader_pickle(m)) else { continue };
            seen_loader_pickle = true;
            // every other name is a class the C++ unpickler compiles from code/ (its module
            // names the file, whatever it is), so every name counts as possibly pickled
            if (imp.module == "__torch__" || imp.module.starts_with("__torch__.")) && self.script {
                context.push(i);
            }
            pickled.push((imp.module.clone(), imp.name.clone(), local.to_string(), imp.offset));
        }
        for i in context {
            scan.import_in_context(i);
        }
        let mut judge = Judge::default();
        for (member, src) in &self.code {
            judge.add_file(scan, member, &src.0);
        }
        judge.pickled_custom_classes(scan, &pickled);
        let pickled_names: Option<HashSet<String>> =
            (seen_loader_pickle && !pickled.is_empty()).then(|| pickled.iter().map(|(_, n, _, _)| n.clone()).collect());
        judge.run(scan, pickled_names.as_ref(), &self.code);
    }
}

/// Names interned as numbers: what a function refers to is kept as a list of them.
#[derive(Default)]
struct Names(HashMap<String, u32>);

impl Names {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.0.get(s) {
            return i;
        }
        let i = u32::try_from(self.0.len()).unwrap_or(u32::MAX);
        self.0.insert(s.to_string(), i);
        i
    }
}

/// A reference to something worth reporting, and where it is.
#[derive(Debug, Clone)]
struct Hit {
    target: Target,
    start: usize,
    end: usize,
}

/// What one function (or one group of load-time expressions) refers to.
#[derive(Debug, Default)]
struct Facts {
    /// Every name, attribute and `getattr` literal used (for reachability over names).
    names: Vec<u32>,
    hits: Vec<Hit>,
    /// Calls of a value that may be a module (`sub(x)`, `mods[0](x)`): reach `forward`.
    module_call: bool,
    /// Last names of `a.b(...)` calls: a module call when `b` is a module attribute.
    attr_calls: Vec<u32>,
}

#[derive(Debug)]
struct Func {
    /// `__torch__.M.forward`, or a description of load-time expressions.
    qual: String,
    /// Empty for load-time expressions.
    name: String,
    file: usize,
    facts: Facts,
    /// Evaluated while the code is compiled (default arguments, class constants).
    compile_time: bool,
}

#[derive(Debug)]
struct Class {
    qual: String,
    name: String,
    methods: Vec<usize>,
}

/// How a function was reached from load time.
#[derive(Debug, Clone)]
enum Why {
    /// `__setstate__` of a pickled class.
    Setstate(String),
    /// Evaluated at compile time.
    Compile,
    From(usize),
}

#[derive(Default)]
struct Judge {
    /// Member name of each parsed file.
    files: Vec<String>,
    funcs: Vec<Func>,
    classes: Vec<Class>,
    names: Names,
    /// Declared attributes of every class (module calls go through them).
    attrs: HashSet<u32>,
    /// Custom classes named in type annotations: (file, hit).
    type_hits: Vec<(usize, Hit)>,
    tokens: usize,
}

/// The dotted path an expression spells (`getattr(x, "name")` is `x.name`, as TorchScript
/// requires its name to be a string literal).
fn path_of(e: &Expr) -> Option<Vec<String>> {
    match &e.kind {
        ExprKind::Var(n) => Some(vec![n.clone()]),
        ExprKind::Select(base, n) => {
            let mut p = path_of(base)?;
            p.push(n.clone());
            Some(p)
        }
        ExprKind::Apply(f, args, kw) if kw.is_empty() && args.len() == 2 => {
            let (ExprKind::Var(g), [base, Expr { kind: ExprKind::Str(s), .. }]) = (&f.kind, args.as_slice()) else {
                return None;
            };
            if g != "getattr" {
                return None;
            }
            let mut p = path_of(base)?;
            p.push(String::from_utf8_lossy(s).into_owned());
            Some(p)
        }
        _ => None,
    }
}

impl Facts {
    fn is_empty(&self) -> bool {
        self.names.is_empty() && self.hits.is_empty() && !self.module_call
    }

    fn path_site(&mut self, p: Vec<String>, call: bool, e: &Expr, n: &mut Names) {
        self.names.extend(p.iter().map(|s| n.id(s)));
        if call {
            match p.as_slice() {
                [one] if !BUILTIN_CALLS.contains(&one.as_str()) => self.module_call = true,
                [first, ..] if matches!(first.as_str(), "torch" | "ops" | "__torch__" | "CONSTANTS") => {}
                [.., last] => self.attr_calls.push(n.id(last)),
                [] => {}
            }
        }
        if let Some(target) = classify(&p, call) {
            self.hits.push(Hit { target, start: e.start, end: e.end });
        }
    }

    fn expr(&mut self, e: &Expr, n: &mut Names) {
        if let Some(p) = path_of(e) {
            self.path_site(p, false, e, n);
            return;
        }
        match &e.kind {
            ExprKind::Apply(f, args, kwargs) => {
                match path_of(f) {
                    Some(p) => self.path_site(p, true, e, n),
                    None => {
                        if let ExprKind::Select(base, name) = &f.kind {
                            self.expr(base, n);
                            self.path_site(vec![String::new(), name.clone()], true, e, n);
                        } else {
                            self.expr(f, n);
                            self.module_call = true;
                        }
                    }
                }
                // `hasattr(x, "name")` names an attribute too
                if let (ExprKind::Var(g), [_, Expr { kind: ExprKind::Str(s), .. }]) = (&f.kind, args.as_slice()) {
                    if g == "hasattr" || g == "getattr" {
                        self.names.push(n.id(&String::from_utf8_lossy(s)));
                    }
                }
                for a in args {
                    self.expr(a, n);
                }
                for (_, v) in kwargs {
                    self.expr(v, n);
                }
            }
            ExprKind::Select(base, name) => {
                self.expr(base, n);
                self.path_site(vec![String::new(), name.clone()], false, e, n);
            }
            ExprKind::Other(parts) => {
                for p in parts {
                    self.expr(p, n);
                }
            }
            ExprKind::Var(_) | ExprKind::Str(_) => {}
        }
    }

    /// A function body: its statements, nested functions included (they are compiled and run
    /// as part of it).
    fn body(&mut self, stmts: &[Stmt], compile: &mut Facts, n: &mut Names) {
        for s in stmts {
            match s {
                Stmt::Def(d) => {
                    for p in &d.params {
                        if let Some(v) = &p.default {
                            compile.expr(v, n);
                        }
                    }
                    self.body(&d.body, compile, n);
                }
                Stmt::Assign { lhs, rhs, .. } => {
                    for e in lhs.iter().chain(rhs) {
                        self.expr(e, n);
                    }
                }
                Stmt::Other(exprs, nested) => {
                    for e in exprs {
                        self.expr(e, n);
                    }
                    self.body(nested, compile, n);
                }
            }
        }
    }

    /// Sorted, without repeats.
    fn done(mut self) -> Facts {
        self.names.sort_unstable();
        self.names.dedup();
        self.attr_calls.sort_unstable();
        self.attr_calls.dedup();
        self
    }

    /// Facts of two groups as one.
    fn merge(&mut self, other: Facts) {
        self.names.extend(other.names);
        self.hits.extend(other.hits);
        self.attr_calls.extend(other.attr_calls);
        self.module_call |= other.module_call;
    }
}

fn is_operator_method(name: &str) -> bool {
    name.len() > 4
        && name.starts_with("__")
        && name.ends_with("__")
        && !matches!(name, "__init__" | "__getstate__" | "__setstate__")
}

/// What a path names, when it is something to report.
#[derive(Debug, Clone)]
enum Target {
    Risky(String, Reach, &'static str),
    CustomOp(String),
    CustomClass(String),
    NetworkClass(String, &'static str),
}

fn op_target(ns: &str, op: &str) -> Option<Target> {
    let full = format!("{ns}::{op}");
    if let Ok(i) = ops::RISKY_OPS.binary_search_by(|o| o.name.cmp(full.as_str())) {
        let o = ops::RISKY_OPS.get(i)?;
        return Some(Target::Risky(full, o.reach, o.why));
    }
    if let Some((_, why)) = ops::NETWORK_OP_NAMESPACES.iter().find(|(n, _)| *n == ns) {
        return Some(Target::Risky(full, Reach::Network, why));
    }
    if ops::OP_NAMESPACES.binary_search(&ns).is_err() {
        return Some(Target::CustomOp(full));
    }
    None
}

fn class_target(ns: &str, cls: &str) -> Option<Target> {
    let full = format!("torch.classes.{ns}.{cls}");
    if let Some((_, why)) = ops::NETWORK_CLASS_NAMESPACES.iter().find(|(n, _)| *n == ns) {
        return Some(Target::NetworkClass(full, why));
    }
    if ops::CLASS_NAMESPACES.binary_search(&ns).is_err() {
        return Some(Target::CustomClass(full));
    }
    None
}

/// What a site refers to, as the import environment of `import_source.cpp` resolves it:
/// `torch.X` is `aten::X`, `ops.NS.X` is `NS::X`, `__torch__.torch.classes.NS.C` a custom class.
fn classify(path: &[String], call: bool) -> Option<Target> {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    match p.as_slice() {
        ["torch", "ops", ns, op, ..] | ["ops", ns, op, ..] => op_target(ns, op),
        ["torch", "classes", ns, cls, ..] | ["__torch__", "torch", "classes", ns, cls, ..] => {
            let t = class_target(ns, cls)?;
            // a network class is a danger when it is constructed
            match t {
                Target::NetworkClass(..) if !call => None,
                t => Some(t),
            }
        }
        ["torch", op, ..] if !matches!(*op, "ops" | "classes") => op_target("aten", op),
        [.., m] if call && p.len() >= 2 => {
            // a method call may be an ATen operator taking the receiver as `self`
            let full = format!("aten::{m}");
            let i = ops::RISKY_OPS.binary_search_by(|o| o.name.cmp(full.as_str())).ok()?;
            let o = ops::RISKY_OPS.get(i).filter(|o| o.method)?;
            Some(Target::Risky(full, o.reach, o.why))
        }
        _ => None,
    }
}

/// Source text of `start..end`, on one line and shortened.
fn snippet(src: &[u8], start: usize, end: usize) -> String {
    let end = end.min(src.len()).min(start.saturating_add(EVIDENCE_CHARS * 8));
    let raw = String::from_utf8_lossy(src.get(start..end).unwrap_or(&[])).into_owned();
    let one_line = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > EVIDENCE_CHARS {
        let cut: String = one_line.chars().take(EVIDENCE_CHARS).collect();
        format!("{cut}...")
    } else {
        one_line
    }
}

/// `code/__torch__/a/b.py` -> `__torch__.a.b`
fn qualifier(member: &str) -> String {
    let rel = code_path(member).unwrap_or(member);
    rel.get(..rel.len().saturating_sub(3)).unwrap_or("").replace('/', ".")
}

impl Judge {
    fn add_file(&mut self, scan: &mut Scan<'_>, member: &str, src: &[u8]) {
        let left = MAX_TOKENS.saturating_sub(self.tokens).min(MAX_FILE_TOKENS);
        let parsed = match parse::parse_file(src, left) {
            Ok((f, n)) => {
                self.tokens += n;
                f
            }
            Err(e) => {
                let (line, col) = line_col(src, e.at);
                scan.finding(
                    Finding::new(
                        if self.tokens >= MAX_TOKENS || e.msg.starts_with("more than") {
                            "torchscript-code-budget"
                        } else {
                            "torchscript-code-unreadable"
                        },
                        Severity::Error,
                        format!("cannot parse the TorchScript code at line {line}, column {col}: {}", e.msg),
                    )
                    .member(member.to_string())
                    .at(e.at as u64),
                );
                return;
            }
        };
        let file = self.files.len();
        self.files.push(member.to_string());
        let q = qualifier(member);
        let mut types = Facts::default();
        for c in &parsed.classes {
            let qual = format!("{q}.{}", c.name);
            let mut methods = Vec::new();
            let mut consts = Facts::default();
            if let Some(sup) = &c.superclass {
                types.expr(sup, &mut self.names);
            }
            for s in &c.body {
                match s {
                    Stmt::Def(d) => {
                        let mq = format!("{qual}.{}", d.name);
                        let f = self.def_facts(d, &mq, file, &mut types);
                        methods.push(self.funcs.len());
                        self.funcs.push(Func { qual: mq, name: d.name.clone(), file, facts: f, compile_time: false });
                    }
                    Stmt::Assign { lhs, ty, rhs } => {
                        for l in lhs {
                            match &l.kind {
                                ExprKind::Var(n) => {
                                    let id = self.names.id(n);
                                    self.attrs.insert(id);
                                }
                                // `__annotations__["0"] = T`: an attribute whose name is no identifier
                                ExprKind::Other(parts) => {
                                    for p in parts {
                                        if let ExprKind::Str(s) = &p.kind {
                                            let id = self.names.id(&String::from_utf8_lossy(s));
                                            self.attrs.insert(id);
                                        }
                                    }
                                }
                                _ => {}
                            }
                        }
                        if let Some(t) = ty {
                            types.expr(t, &mut self.names);
                        }
                        // class constants are evaluated when the class is compiled; the
                        // `__annotations__[...] = T` form holds a type
                        match rhs {
                            Some(r) if lhs.iter().all(|l| matches!(l.kind, ExprKind::Var(_))) => {
                                consts.expr(r, &mut self.names)
                            }
                            Some(r) => types.expr(r, &mut self.names),
                            None => {}
                        }
                    }
                    Stmt::Other(exprs, nested) => {
                        for e in exprs {
                            consts.expr(e, &mut self.names);
                        }
                        let mut compile = Facts::default();
                        consts.body(nested, &mut compile, &mut self.names);
                        consts.merge(compile);
                    }
                }
            }
            if !consts.is_empty() {
                self.funcs.push(Func {
                    qual: format!("{qual} (class body)"),
                    name: String::new(),
                    file,
                    facts: consts.done(),
                    compile_time: true,
                });
            }
            self.classes.push(Class { qual, name: c.name.clone(), methods });
        }
        for d in &parsed.functions {
            let fq = format!("{q}.{}", d.name);
            let f = self.def_facts(d, &fq, file, &mut types);
            self.funcs.push(Func { qual: fq, name: d.name.clone(), file, facts: f, compile_time: false });
        }
        for h in types.hits {
            if matches!(h.target, Target::CustomClass(_)) {
                self.type_hits.push((file, h));
            }
        }
    }

    /// Facts of a function's body; its default arguments (and those of functions nested in it)
    /// become a function of their own, evaluated at compile time.
    fn def_facts(&mut self, d: &Def, qual: &str, file: usize, types: &mut Facts) -> Facts {
        let mut f = Facts::default();
        let mut compile = Facts::default();
        for p in &d.params {
            if let Some(v) = &p.default {
                compile.expr(v, &mut self.names);
            }
            if let Some(t) = &p.ty {
                types.expr(t, &mut self.names);
            }
        }
        for t in &d.types {
            types.expr(t, &mut self.names);
        }
        f.body(&d.body, &mut compile, &mut self.names);
        if !compile.is_empty() {
            self.funcs.push(Func {
                qual: format!("{qual} (default arguments)"),
                name: String::new(),
                file,
                facts: compile.done(),
                compile_time: true,
            });
        }
        f.done()
    }

    /// Custom classes that the loader's pickles ask for: their C++ `__setstate__` runs at load.
    fn pickled_custom_classes(&mut self, scan: &mut Scan<'_>, pickled: &[(String, String, String, u64)]) {
        let mut seen = HashSet::new();
        for (module, name, member, offset) in pickled {
            let Some(ns) = module.strip_prefix("__torch__.torch.classes.") else { continue };
            let Some(t) = class_target(ns, name) else { continue };
            let f = match t {
                Target::NetworkClass(full, why) => Finding::new(
                    "torchscript-op-at-load",
                    Severity::Dangerous,
                    format!("the archive's pickle holds a {full} object ({why}); its C++ __setstate__ runs when torch.jit.load restores it"),
                ),
                Target::CustomClass(full) => Finding::new(
                    "torchscript-custom-class",
                    Severity::Suspicious,
                    format!(
                        "the archive's pickle holds a {full} object: torch does not register that class, so loading needs a native \
                         library that does, and its C++ __setstate__ runs at load"
                    ),
                ),
                _ => continue,
            };
            if seen.insert(format!("{module}.{name}")) {
                scan.finding(f.member(member.clone()).at(*offset).evidence(format!("{module}.{name}")));
            }
        }
    }

    fn run(&mut self, scan: &mut Scan<'_>, pickled: Option<&HashSet<String>>, code: &[(String, Arc<BytesSource>)]) {
        // functions and classes by the (interned) name a reference would use
        let mut by_name: HashMap<u32, Vec<usize>> = HashMap::new();
        for (i, f) in self.funcs.iter().enumerate() {
            if !f.name.is_empty() {
                by_name.entry(self.names.id(&f.name)).or_default().push(i);
            }
        }
        let mut class_by_name: HashMap<u32, Vec<usize>> = HashMap::new();
        for (i, c) in self.classes.iter().enumerate() {
            class_by_name.entry(self.names.id(&c.name)).or_default().push(i);
        }
        let forward = self.names.id("forward");

        // Seeds: __setstate__ of pickled classes (all of them when the pickles could not be
        // read), and what is evaluated at compile time.
        let mut why: Vec<Option<Why>> = vec![None; self.funcs.len()];
        let mut queue = VecDeque::new();
        // classes whose objects may exist at load, and those not yet looked at for operators
        let mut live: HashSet<usize> = HashSet::new();
        let mut fresh: Vec<usize> = Vec::new();
        for (ci, c) in self.classes.iter().enumerate() {
            if pickled.is_some_and(|p| !p.contains(&c.name)) {
                continue;
            }
            if live.insert(ci) {
                fresh.push(ci);
            }
            for &m in &c.methods {
                if self.funcs.get(m).is_some_and(|f| f.name == "__setstate__") {
                    if let Some(w) = why.get_mut(m) {
                        *w = Some(Why::Setstate(c.qual.clone()));
                        queue.push_back(m);
                    }
                }
            }
        }
        for (i, f) in self.funcs.iter().enumerate() {
            if f.compile_time {
                if let Some(w) = why.get_mut(i) {
                    *w = Some(Why::Compile);
                    queue.push_back(i);
                }
            }
        }

        // Reachability over names.
        let mut marked: HashSet<u32> = HashSet::new();
        let reach = |g: usize, from: usize, why: &mut Vec<Option<Why>>, queue: &mut VecDeque<usize>| {
            if let Some(w @ None) = why.get_mut(g) {
                *w = Some(Why::From(from));
                queue.push_back(g);
            }
        };
        while let Some(fi) = queue.pop_front() {
            let Some(f) = self.funcs.get(fi) else { continue };
            let mut names = f.facts.names.clone();
            if f.facts.module_call || f.facts.attr_calls.iter().any(|a| self.attrs.contains(a)) {
                names.push(forward);
            }
            for n in names {
                if !marked.insert(n) {
                    continue;
                }
                for &g in by_name.get(&n).map_or(&[][..], Vec::as_slice) {
                    reach(g, fi, &mut why, &mut queue);
                }
                for &ci in class_by_name.get(&n).map_or(&[][..], Vec::as_slice) {
                    if live.insert(ci) {
                        fresh.push(ci);
                    }
                    for &m in self.classes.get(ci).map_or(&[][..], |c| c.methods.as_slice()) {
                        if self.funcs.get(m).is_some_and(|g| g.name == "__init__") {
                            reach(m, fi, &mut why, &mut queue);
                        }
                    }
                }
            }
            // objects of live classes may meet operators, `with`, `len`, `str` ...
            for ci in std::mem::take(&mut fresh) {
                for &m in self.classes.get(ci).map_or(&[][..], |c| c.methods.as_slice()) {
                    if self.funcs.get(m).is_some_and(|g| is_operator_method(&g.name)) {
                        reach(m, fi, &mut why, &mut queue);
                    }
                }
            }
        }

        // Judge every site.
        let mut out = Vec::new();
        let mut reported: HashSet<(usize, String)> = HashSet::new();
        for (fi, f) in self.funcs.iter().enumerate() {
            let src = code.iter().find(|(m, _)| Some(m) == self.files.get(f.file)).map_or(&[][..], |(_, s)| &s.0[..]);
            let member = self.files.get(f.file).cloned().unwrap_or_default();
            for hit in &f.facts.hits {
                let target = hit.target.clone();
                let label = match &target {
                    Target::Risky(n, ..)
                    | Target::CustomOp(n)
                    | Target::CustomClass(n)
                    | Target::NetworkClass(n, _) => n.clone(),
                };
                if !reported.insert((fi, label)) {
                    continue;
                }
                let at_load = why.get(fi).and_then(Option::as_ref);
                let evidence = format!("{}: {}", f.qual, snippet(src, hit.start, hit.end));
                let finding = match target {
                    Target::Risky(op, reach, what) if at_load.is_some() => Finding::new(
                        "torchscript-op-at-load",
                        Severity::Dangerous,
                        format!("{op} ({}: {what}) runs while the archive loads: {}", reach.label(), self.chain(fi, &why)),
                    ),
                    Target::NetworkClass(op, what) if at_load.is_some() => Finding::new(
                        "torchscript-op-at-load",
                        Severity::Dangerous,
                        format!("{op} ({what}) is created while the archive loads: {}", self.chain(fi, &why)),
                    ),
                    Target::Risky(op, reach, what) => Finding::new(
                        "torchscript-op-in-code",
                        Severity::Suspicious,
                        format!("{op} ({}: {what}) runs when {} is called", reach.label(), f.qual),
                    ),
                    Target::NetworkClass(op, what) => Finding::new(
                        "torchscript-op-in-code",
                        Severity::Suspicious,
                        format!("{op} ({what}) is created when {} is called", f.qual),
                    ),
                    Target::CustomOp(op) => Finding::new(
                        "torchscript-custom-op",
                        Severity::Suspicious,
                        format!(
                            "{op} is no operator torch registers: a native library loaded with torch.ops.load_library must \
                             provide it, and its code is not in the archive{}",
                            if at_load.is_some() { "; it runs while the archive loads" } else { "" }
                        ),
                    ),
                    Target::CustomClass(cls) => Finding::new(
                        "torchscript-custom-class",
                        Severity::Suspicious,
                        format!(
                            "{cls} is no class torch registers: a native library must provide it, and its code is not in the archive"
                        ),
                    ),
                };
                out.push(finding.member(member.clone()).at(hit.start as u64).evidence(evidence));
            }
        }
        // custom classes named in type annotations
        let mut seen_types = HashSet::new();
        let type_hits = std::mem::take(&mut self.type_hits);
        for (file, hit) in &type_hits {
            if let Target::CustomClass(cls) = &hit.target {
                if seen_types.insert(cls.clone()) {
                    let member = self.files.get(*file).cloned().unwrap_or_default();
                    let f = Finding::new(
                        "torchscript-custom-class",
                        Severity::Suspicious,
                        format!("{cls} is no class torch registers: a native library must provide it, and its code is not in the archive"),
                    )
                    .member(member)
                    .at(hit.start as u64)
                    .evidence(cls.clone());
                    out.push(f);
                }
            }
        }
        // the worst first; past the cap one line stands for the rest, at their worst severity
        out.sort_by_key(|f| std::cmp::Reverse(f.severity));
        let hidden = out.split_off(out.len().min(MAX_FINDINGS));
        for f in out {
            scan.finding(f);
        }
        if let Some(worst) = hidden.first() {
            let mut f = worst.clone();
            f.message = format!(
                "{} more findings of this archive's code are not listed; the worst: {}",
                hidden.len(),
                worst.message
            );
            scan.finding(f);
        }
    }

    /// How a function is reached from load time, for messages.
    fn chain(&self, mut fi: usize, why: &[Option<Why>]) -> String {
        let qual = |i: usize| self.funcs.get(i).map_or(String::new(), |f| f.qual.clone());
        // `From` links point at functions reached earlier, so the walk ends at a seed
        let mut path = Vec::new();
        for _ in 0..=self.funcs.len() {
            let root = match why.get(fi).and_then(Option::as_ref) {
                Some(Why::From(p)) => {
                    path.push(qual(fi));
                    fi = *p;
                    continue;
                }
                Some(Why::Setstate(cls)) => format!("torch.jit.load calls {} to restore the pickled {cls}", qual(fi)),
                Some(Why::Compile) => format!("torch.jit.load evaluates {} when it compiles the code", qual(fi)),
                None => break,
            };
            if path.is_empty() {
                return root;
            }
            path.reverse();
            if path.len() > 8 {
                let n = path.len();
                let tail = path.split_off(n - 3);
                path.truncate(3);
                path.push(format!("({} more)", n - 6));
                path.extend(tail);
            }
            return format!("{root}, which may call {}", path.join(" -> "));
        }
        "reached from code torch.jit.load runs".into()
    }
}

/// 1-based line and column of a byte offset.
fn line_col(src: &[u8], at: usize) -> (usize, usize) {
    let before = src.get(..at.min(src.len())).unwrap_or(&[]);
    let line = before.iter().filter(|&&c| c == b'\n').count() + 1;
    let col = before.iter().rev().take_while(|&&c| c != b'\n').count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_for_binary_search() {
        assert!(ops::RISKY_OPS.windows(2).all(|w| w[0].name < w[1].name));
        assert!(ops::OP_NAMESPACES.windows(2).all(|w| w[0] < w[1]));
        assert!(ops::CLASS_NAMESPACES.windows(2).all(|w| w[0] < w[1]));
        assert!(ops::RISKY_OPS.iter().any(|o| o.name == "aten::from_file" && o.reach == Reach::File));
        assert!(ops::RISKY_OPS.iter().any(|o| o.name == "aten::save"));
    }

    fn site(p: &[&str], call: bool) -> (Vec<String>, bool) {
        (p.iter().map(|s| s.to_string()).collect(), call)
    }

    fn classify_site((p, call): (Vec<String>, bool)) -> Option<Target> {
        classify(&p, call)
    }

    #[test]
    fn names_resolve_as_the_import_environment_does() {
        assert!(
            matches!(classify_site(site(&["torch", "from_file"], true)), Some(Target::Risky(n, Reach::File, _)) if n == "aten::from_file")
        );
        assert!(matches!(classify_site(site(&["ops", "aten", "save"], true)), Some(Target::Risky(..))));
        assert!(matches!(classify_site(site(&["torch", "ops", "aten", "save"], false)), Some(Target::Risky(..))));
        assert!(
            matches!(classify_site(site(&["ops", "prim", "rpc_async"], true)), Some(Target::Risky(n, Reach::Network, _)) if n == "prim::rpc_async")
        );
        assert!(
            matches!(classify_site(site(&["ops", "myns", "op"], true)), Some(Target::CustomOp(n)) if n == "myns::op")
        );
        assert!(classify_site(site(&["ops", "quantized", "linear_prepack"], true)).is_none());
        assert!(classify_site(site(&["torch", "add"], true)).is_none());
        assert!(classify_site(site(&["x", "save"], true)).is_none(), "aten::save takes no `self`");
        assert!(matches!(
            classify_site(site(&["__torch__", "torch", "classes", "evil", "Thing"], false)),
            Some(Target::CustomClass(_))
        ));
        assert!(classify_site(site(&["__torch__", "torch", "classes", "quantized", "LinearPackedParamsBase"], false))
            .is_none());
        assert!(matches!(
            classify_site(site(&["__torch__", "torch", "classes", "dist_c10d", "FileStore"], true)),
            Some(Target::NetworkClass(..))
        ));
    }

    #[test]
    fn qualifiers_follow_archive_paths() {
        assert_eq!(qualifier("m/code/__torch__/torch/nn/modules/linear.py"), "__torch__.torch.nn.modules.linear");
        assert_eq!(qualifier("m/code/__torch__.py"), "__torch__");
        assert_eq!(qualifier("m/.data/ts_code/code/__torch__/a.py"), "__torch__.a");
        assert_eq!(qualifier("M/CODE/__TORCH__.PY"), "__TORCH__");
        assert!(is_code("M/CODE/__TORCH__.PY"));
        assert!(!is_code("m/extra/x.py") && !is_code("m/extra/code/x.py") && !is_code("code/x.py"));
        assert!(!is_loader_pickle("m/extra/data.pkl"));
        assert!(is_loader_pickle("m/data.pkl") && is_loader_pickle("a/CONSTANTS.PKL") && !is_loader_pickle("m/x.pkl"));
    }

    #[test]
    fn getattr_with_a_literal_is_a_path() {
        let f = parse::parse_file(b"def f(x):\n  return getattr(torch, \"save\")(x, \"p\")\n", 1000).unwrap().0;
        let Stmt::Other(e, _) = &f.functions[0].body[0] else { panic!() };
        let ExprKind::Apply(func, ..) = &e[0].kind else { panic!() };
        assert_eq!(path_of(func).unwrap(), ["torch", "save"]);
    }
}
