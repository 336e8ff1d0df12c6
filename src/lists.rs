//! Allow and deny lists: the judgement on each name a pickle imports.
//!
//! Every import is a dotted path `module.name` (the name may itself be dotted: protocol 4
//! resolves it attribute by attribute). It is
//! - **dangerous** when a deny rule covers the path, any sub-path that an attribute walk in
//!   the name reaches (`pathlib` + `os.system` reaches `os.system`), or when the name walks
//!   through a dunder attribute or ends in a code-running name (`eval`, `system`, ...);
//!   the raw (pre-renaming) path is checked too;
//! - **dangerous** when the name is in a module of the standard library that can do harm, or
//!   walks through one (`ipaddress` + `functools.reduce`), unless the exact name is on the
//!   allowlist (see "The standard library" below);
//! - **safe** when an allow rule matches the resolved path exactly;
//! - **unknown** (suspicious) otherwise. A denylist alone loses the race against new
//!   gadgets, so anything outside the allowlist of what real checkpoints import is flagged.
//!
//! ## The standard library
//!
//! CPython's standard library is a closed world, so every module of it is judged once, in the
//! generated table `lists/stdlib.rs` (made by `lists/gen_stdlib.py` from CPython 3.11, 3.12 and
//! 3.13, the names 3.14 added and the Python 2 names `_compat_pickle` maps, with the reviewed
//! `lists/stdlib_overrides.txt`; the script's docstring says how). One line per top-level module
//! (a package is judged with all its submodules):
//! - **Dangerous**: some callable of the module (or its import-time code) evaluates or compiles
//!   code, imports modules, starts processes or threads or exits, calls native code, opens,
//!   writes or deletes files, reaches the network, reaches arbitrary attributes or namespaces
//!   (`getattr` with a computed name, `globals()`, frames), or calls a callable it is given, or
//!   the module re-exports such a name. A native module is dangerous unless reviewed otherwise.
//! - **Inert**: none of that was found (or the review says so).
//!
//! The rule: a name from the standard library that is not on the allowlist is dangerous when its
//! top-level module is Dangerous, and suspicious when it is Inert; a name that walks through a
//! module attribute (`pkg` + `mod.func`) is judged by the module it walks into as well. Only the
//! reviewed data types of the allowlist (`collections.OrderedDict`, `datetime.datetime`, ...)
//! are safe. Python 2 names (`__builtin__`, `copy_reg`, `commands`, ...) count only as the module
//! a pickle names. The table is part of the built-in denylist but not of its "core": an exact
//! policy allow entry overrides it, a wildcard allow over a dangerous module is refused.
//!
//! Patterns: components separated by `.`; in a component `*` matches any run of characters,
//! `?` one character and `[A-Z]` a class; a `**` component matches any number of
//! components; a trailing `.*` matches everything below the prefix. A deny rule always
//! covers the path and everything below it (a rule for module `M` covers `M.*`).
//!
//! Policy additions: `deny` entries always win. `allow` entries add to the allowlist with
//! two limits, so that a policy cannot silently re-open the built-in denylist: a wildcard or
//! prefix allow that could cover a built-in deny rule is refused, and an exact allow may
//! override a built-in deny rule only when that rule is not "core" (code execution,
//! process, import and unpickling primitives such as `builtins.eval`, `os`, `subprocess`,
//! `pickle.loads` can never be allowed). `allow("operator.attrgetter", ..)` works;
//! `allow("os", ..)` and `allow("torch.*", ..)` are refused with an error.
//!
//! The allowlist entries are reviewed: each names the source read (library and version) and why
//! the name only builds data (constructors of data classes; no function that reads files,
//! evaluates or imports). See the tables at the end of this file.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use crate::finding::Import;
use crate::finding::{CodeInfo, Finding, Severity};
use std::collections::HashSet;

mod stdlib;

/// What a module of the standard library can do (the generated table `stdlib.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StdlibVerdict {
    /// Can evaluate, import, spawn, touch files or the network, or call what it is given.
    Dangerous,
    /// None of that: its names outside the allowlist are suspicious.
    Inert,
}

/// The table line of a top-level module name: (verdict, reason). Python 2 names only when
/// `py2` (they are names a pickle writes as its module, never attributes).
fn stdlib_module(top: &str, py2: bool) -> Option<(StdlibVerdict, &'static str)> {
    let i = stdlib::STDLIB.binary_search_by(|(n, ..)| (*n).cmp(top)).ok()?;
    let &(_, verdict, py2_only, reason) = stdlib::STDLIB.get(i)?;
    if py2_only && !py2 {
        return None;
    }
    Some((verdict, reason))
}

/// The first clause of a table reason, short enough for a finding message.
fn first_clause(reason: &str) -> String {
    let clause = reason.split("; ").next().unwrap_or(reason);
    let clause = clause.split(" [reviewed]").next().unwrap_or(clause);
    if clause.chars().count() > 200 {
        let cut: String = clause.chars().take(200).collect();
        format!("{cut}...")
    } else {
        clause.to_string()
    }
}

/// Finding codes of import classification.
pub const CODES: &[CodeInfo] = &[
    CodeInfo {
        code: "pickle-import-dangerous",
        severity: Severity::Dangerous,
        summary: "the pickle imports a name on the built-in denylist (code execution, processes, files, network), or a name outside the allowlist from a standard-library module that can do such things",
        fix: "do not load the file; if the model is needed, re-export its weights as safetensors",
    },
    CodeInfo {
        code: "pickle-import-denied",
        severity: Severity::Dangerous,
        summary: "the pickle imports a name the policy denies",
        fix: "remove the object from the saved model, or change the policy's deny entry",
    },
    CodeInfo {
        code: "pickle-import-unknown",
        severity: Severity::Suspicious,
        summary: "the pickle imports a name outside the allowlist of what model files normally import",
        fix: "check the name; if the library is trusted, add it to the policy allowlist",
    },
];

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    comps: Vec<String>,
    /// Matches paths below `comps` too (deny rules, or a trailing `.*`).
    prefix: bool,
    /// A trailing `.*`: only paths strictly below match.
    strict: bool,
}

impl Pattern {
    fn parse(text: &str, prefix: bool) -> Result<Pattern, String> {
        let (body, strict) = match text.strip_suffix(".*") {
            Some(b) => (b, true),
            None => (text, false),
        };
        if body.is_empty() {
            return Err(format!("invalid pattern '{text}': empty"));
        }
        let comps: Vec<String> = body.split('.').map(str::to_string).collect();
        for c in &comps {
            let ok = !c.is_empty()
                && c.chars().all(|ch| ch.is_alphanumeric() || matches!(ch, '_' | '*' | '?' | '[' | ']' | '-'));
            if !ok {
                return Err(format!("invalid pattern '{text}': bad component '{c}'"));
            }
        }
        Ok(Pattern { comps, prefix: prefix || strict, strict })
    }

    fn is_exact(&self) -> bool {
        !self.prefix && self.comps.iter().all(|c| !has_wild(c))
    }

    fn matches(&self, path: &[&str]) -> bool {
        if self.strict && path.len() <= self.comps.len() && !self.comps.iter().any(|c| c == "**") {
            return false;
        }
        match_comps(&self.comps, path, self.prefix)
    }
}

fn has_wild(c: &str) -> bool {
    c.contains(['*', '?', '['])
}

/// Match pattern components against path components (`**` spans any number).
fn match_comps(pat: &[String], path: &[&str], prefix: bool) -> bool {
    match pat.split_first() {
        None => prefix || path.is_empty(),
        Some((p, rest)) if p == "**" => {
            (0..=path.len()).any(|k| path.get(k..).is_some_and(|tail| match_comps(rest, tail, prefix)))
        }
        Some((p, rest)) => match path.split_first() {
            Some((c, tail)) => glob(p.as_bytes(), c.as_bytes()) && match_comps(rest, tail, prefix),
            None => false,
        },
    }
}

/// `*`, `?` and `[a-z]` classes within one component.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|k| s.get(k..).is_some_and(|t| glob(rest, t))),
        Some((b'?', rest)) => s.split_first().is_some_and(|(_, t)| glob(rest, t)),
        Some((b'[', rest)) => {
            let Some(close) = rest.iter().position(|&b| b == b']') else { return false };
            let (class, after) = (rest.get(..close).unwrap_or(&[]), rest.get(close + 1..).unwrap_or(&[]));
            let Some((&c, t)) = s.split_first() else { return false };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                let lo = class.get(i).copied().unwrap_or(0);
                if class.get(i + 1) == Some(&b'-') && i + 2 < class.len() {
                    let hi = class.get(i + 2).copied().unwrap_or(0);
                    hit |= lo <= c && c <= hi;
                    i += 3;
                } else {
                    hit |= lo == c;
                    i += 1;
                }
            }
            hit && glob(after, t)
        }
        Some((&b, rest)) => s.split_first().is_some_and(|(&c, t)| c == b && glob(rest, t)),
    }
}

/// Could some path match both patterns? (Wildcards are assumed to match anything; a `**`
/// matches any number of components, so the patterns may overlap from there on.)
fn overlaps(a: &Pattern, b: &Pattern) -> bool {
    for (x, y) in a.comps.iter().zip(&b.comps) {
        if x == "**" || y == "**" {
            return true;
        }
        if !(has_wild(x) || has_wild(y) || x == y) {
            return false;
        }
    }
    let n = a.comps.len().min(b.comps.len());
    let next_is_globstar = |p: &Pattern| p.comps.get(n).is_some_and(|c| c == "**");
    match a.comps.len().cmp(&b.comps.len()) {
        std::cmp::Ordering::Equal => true,
        std::cmp::Ordering::Less => a.prefix || next_is_globstar(b),
        std::cmp::Ordering::Greater => b.prefix || next_is_globstar(a),
    }
}

#[derive(Debug, Clone)]
struct Rule {
    pat: Pattern,
    reason: String,
    /// Core rules cannot be overridden by a policy allow entry.
    core: bool,
}

/// Allow/deny lists: the built-in ones plus policy additions.
#[derive(Debug, Clone, Default)]
pub struct Lists {
    allow: Vec<Rule>,
    deny: Vec<Rule>,
    user_allow: Vec<Rule>,
    user_deny: Vec<Rule>,
}

/// What the lists say about one import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// On the built-in denylist (reason).
    Dangerous(String),
    /// Denied by a policy entry (reason).
    Denied(String),
    /// Allowlisted.
    Allowed,
    /// Neither: suspicious.
    Unknown,
}

impl Lists {
    /// The built-in lists.
    pub fn builtin() -> Lists {
        let mut l = Lists::default();
        for (group, reason, core) in DENY {
            for p in group.split_whitespace() {
                if let Ok(pat) = Pattern::parse(p, true) {
                    l.deny.push(Rule { pat, reason: (*reason).to_string(), core: *core });
                }
            }
        }
        for (group, reason) in ALLOW {
            for p in group.split_whitespace() {
                if let Ok(pat) = Pattern::parse(p, false) {
                    l.allow.push(Rule { pat, reason: (*reason).to_string(), core: false });
                }
            }
        }
        l
    }

    /// Add a policy allow entry: `module`, `module.*` or `module.name` (name may be dotted).
    /// Refused (with the reason) when it would re-open the built-in denylist; see the module docs.
    pub fn allow(&mut self, pattern: &str, reason: &str) -> Result<(), String> {
        // a bare module means everything in it
        let text = if pattern.contains('.') { pattern.to_string() } else { format!("{pattern}.*") };
        let pat = Pattern::parse(&text, false)?;
        if pat.is_exact() {
            let path: Vec<&str> = pat.comps.iter().map(String::as_str).collect();
            if let Some(why) = attribute_danger(&path, 1) {
                return Err(format!("refusing to allow {pattern}: {why}"));
            }
            if let Some(r) = self.deny.iter().find(|r| r.core && r.pat.matches(&path)) {
                return Err(format!("refusing to allow {pattern}: it is on the built-in denylist ({})", r.reason));
            }
        } else if let Some(top) =
            pat.comps.first().filter(|c| matches!(stdlib_module(c, true), Some((StdlibVerdict::Dangerous, _))))
        {
            return Err(format!(
                "refusing to allow {pattern}: the standard-library module {top} can run code, touch files or call what it is given; allow exact names instead"
            ));
        } else if let Some(r) = self.deny.iter().find(|r| overlaps(&pat, &r.pat)) {
            return Err(format!(
                "refusing to allow {pattern}: a wildcard allow would cover the built-in deny rule {} ({}); allow exact names instead",
                r.pat.comps.join("."),
                r.reason
            ));
        }
        self.user_allow.push(Rule { pat, reason: reason.to_string(), core: false });
        Ok(())
    }

    /// Add a policy deny entry (same pattern syntax); deny always wins over allow.
    pub fn deny(&mut self, pattern: &str, reason: &str) -> Result<(), String> {
        let pat = Pattern::parse(pattern, true)?;
        self.user_deny.push(Rule { pat, reason: reason.to_string(), core: false });
        Ok(())
    }

    /// Classify one import.
    pub fn classify(&self, imp: &Import) -> Class {
        let resolved = (imp.module.as_str(), imp.name.as_str());
        let mut paths = vec![resolved];
        if let Some((m, n)) = &imp.raw {
            paths.push((m.as_str(), n.as_str()));
        }
        for &(m, n) in &paths {
            if let Some(r) = self.deny_hit(&self.user_deny, m, n) {
                return Class::Denied(r.reason.clone());
            }
        }
        let resolved_path = split(resolved.0, resolved.1);
        if paths.iter().any(|(m, n)| m.split('.').count() + n.split('.').count() > MAX_COMPONENTS) {
            return Class::Dangerous(format!(
                "a path of more than {MAX_COMPONENTS} components (an attribute walk no library needs)"
            ));
        }
        let exact_user_allow = self.user_allow.iter().any(|r| r.pat.is_exact() && r.pat.matches(&resolved_path));
        let carved_out = paths.iter().all(|(m, n)| DENY_EXCEPTIONS.contains(&format!("{m}.{n}").as_str()));
        for &(m, n) in paths.iter().filter(|_| !carved_out) {
            if let Some(r) = self.deny_hit(&self.deny, m, n) {
                if r.core || !exact_user_allow {
                    return Class::Dangerous(r.reason.clone());
                }
            }
        }
        for &(m, n) in &paths {
            let comps = split(m, n);
            let name_start = comps.len() - n.split('.').count();
            if let Some(why) = attribute_danger(&comps, name_start) {
                return Class::Dangerous(why);
            }
        }
        // an attribute walk into a standard-library module: no pickler writes one for a real object
        if !exact_user_allow {
            for &(m, n) in &paths {
                if let Some(why) = stdlib_walk(m, n) {
                    return Class::Dangerous(why);
                }
            }
        }
        if self.allow.iter().chain(&self.user_allow).any(|r| r.pat.matches(&resolved_path)) {
            return Class::Allowed;
        }
        for (i, &(m, _)) in paths.iter().enumerate() {
            let top = m.split('.').next().unwrap_or(m);
            // Python 2 names count as written (raw), or when no mapping applied (protocol >= 3)
            let py2 = i > 0 || imp.raw.is_none();
            if let Some((StdlibVerdict::Dangerous, reason)) = stdlib_module(top, py2) {
                return Class::Dangerous(format!(
                    "a name of the standard-library module {top} that is not on the allowlist; what {top} can do: {}",
                    first_clause(reason)
                ));
            }
        }
        Class::Unknown
    }

    /// True when the import is allowlisted and not denied.
    pub fn is_allowlisted(&self, imp: &Import) -> bool {
        self.classify(imp) == Class::Allowed
    }

    /// The first deny rule covering `module.name` or a sub-path an attribute walk in `name` reaches.
    fn deny_hit<'r>(&self, rules: &'r [Rule], module: &str, name: &str) -> Option<&'r Rule> {
        let comps = split(module, name);
        let name_len = name.split('.').count();
        let name_start = comps.len() - name_len;
        let mut starts = vec![0];
        if name_len >= 2 {
            starts.extend(name_start..comps.len() - 1);
        }
        starts.into_iter().find_map(|s| {
            let sub = comps.get(s..).unwrap_or(&[]);
            rules.iter().find(|r| r.pat.matches(sub))
        })
    }

    /// Findings for imports that are not allowlisted (suspicious) or are denylisted (dangerous).
    /// One finding per distinct name per member.
    pub fn classify_all(&self, imports: &[Import]) -> Vec<Finding> {
        let mut seen: HashSet<(Option<&str>, String)> = HashSet::new();
        let mut out = Vec::new();
        for imp in imports {
            let path = imp.full_name();
            if !seen.insert((imp.member.as_deref(), path.clone())) {
                continue;
            }
            let written = match &imp.raw {
                Some((m, n)) => format!(" (written as {m}.{n})"),
                None => String::new(),
            };
            let f = match self.classify(imp) {
                Class::Allowed => continue,
                Class::Dangerous(reason) => Finding::new(
                    "pickle-import-dangerous",
                    Severity::Dangerous,
                    format!("imports {path}{written}: {reason}"),
                ),
                Class::Denied(reason) => Finding::new(
                    "pickle-import-denied",
                    Severity::Dangerous,
                    format!("imports {path}{written}, denied by policy: {reason}"),
                ),
                Class::Unknown => {
                    let top = imp.module.split('.').next().unwrap_or("");
                    let note = if imp.module == "__main__" {
                        " (a class of the script that saved the file)"
                    } else if matches!(stdlib_module(top, true), Some((StdlibVerdict::Inert, _))) {
                        " (from a standard-library module reviewed as inert: it cannot run code, touch files or call what it is given)"
                    } else {
                        ""
                    };
                    Finding::new(
                        "pickle-import-unknown",
                        Severity::Suspicious,
                        format!(
                            "imports {path}{written}{note}, which is not on the allowlist of names model files import"
                        ),
                    )
                }
            };
            let mut f = f.at(imp.offset).evidence(imp.evidence.clone().unwrap_or_else(|| path.clone()));
            if let Some(m) = &imp.member {
                f = f.member(m.clone());
            }
            out.push(f);
        }
        out
    }
}

/// Longest dotted path judged component by component.
const MAX_COMPONENTS: usize = 64;

fn split<'a>(module: &'a str, name: &'a str) -> Vec<&'a str> {
    module.split('.').chain(name.split('.')).collect()
}

/// A name whose attribute walk passes through a dangerous standard-library module
/// (`ipaddress` + `functools.reduce` reaches `functools.reduce`).
fn stdlib_walk(module: &str, name: &str) -> Option<String> {
    let comps = split(module, name);
    let name_len = name.split('.').count();
    if name_len < 2 {
        return None;
    }
    let name_start = comps.len() - name_len;
    (name_start..comps.len() - 1).find_map(|s| {
        let top = comps.get(s)?;
        match stdlib_module(top, false) {
            Some((StdlibVerdict::Dangerous, reason)) => Some(format!(
                "walks into the standard-library module {top} ({}.{} reaches {}); what {top} can do: {}",
                module,
                name,
                comps.get(s..).unwrap_or(&[]).join("."),
                first_clause(reason)
            )),
            _ => None,
        }
    })
}

fn is_dunder(c: &str) -> bool {
    c.len() > 4 && c.starts_with("__") && c.ends_with("__")
}

/// `copyreg.__newobj__`/`__newobj_ex__` only do what the NEWOBJ opcodes do.
fn is_dunder_exempt(path: &[&str]) -> bool {
    matches!(path, ["copyreg" | "copy_reg", "__newobj__" | "__newobj_ex__"])
}

/// Names that run code whatever module they come from.
const CODE_NAMES: &[&str] = &[
    "eval",
    "exec",
    "execfile",
    "system",
    "popen",
    "popen2",
    "popen3",
    "popen4",
    "__import__",
    "run_code",
    "_run_code",
    "_run_module_code",
    "runcode",
    "runsource",
    "open",
    "getattr",
    "setattr",
    "delattr",
];

/// A dunder attribute in the name part (walking to `__globals__`, `__builtins__`, ...) or a
/// name that runs code.
fn attribute_danger(path: &[&str], name_start: usize) -> Option<String> {
    let module = path.get(..name_start).unwrap_or(&[]);
    if module.len() > 1 && module.last() == Some(&"__main__") {
        return Some("importing a package's __main__ runs its command-line entry point".into());
    }
    let name = path.get(name_start..).unwrap_or(&[]);
    if let Some(d) = name.iter().find(|c| is_dunder(c)) {
        if !is_dunder_exempt(path) {
            return Some(format!("walks through the special attribute {d}, a way to reach arbitrary code"));
        }
    }
    let last = name.last().copied().unwrap_or("");
    if CODE_NAMES.contains(&last) || last.starts_with("exec") || last.starts_with("spawn") {
        return Some(format!("{last} runs code or reaches arbitrary objects"));
    }
    None
}

/// Built-in deny rules: (patterns, reason, core). Each rule covers the path and everything below it.
const DENY: &[(&str, &str, bool)] = &[
    (
        "builtins.eval builtins.exec builtins.execfile builtins.compile builtins.__import__ builtins.apply
         __builtin__.eval __builtin__.exec __builtin__.execfile __builtin__.compile __builtin__.__import__
         __builtin__.apply",
        "runs arbitrary Python code",
        true,
    ),
    (
        "builtins.getattr builtins.setattr builtins.delattr builtins.globals builtins.locals builtins.vars
         builtins.breakpoint builtins.input builtins.help builtins.exit builtins.quit builtins.reload
         builtins.raw_input builtins.file builtins.open
         __builtin__.getattr __builtin__.setattr __builtin__.delattr __builtin__.globals __builtin__.locals
         __builtin__.vars __builtin__.input __builtin__.raw_input __builtin__.reload __builtin__.file
         __builtin__.open __builtin__.exit __builtin__.quit",
        "reaches arbitrary objects, namespaces or files",
        true,
    ),
    ("os posix nt subprocess _posixsubprocess pty _winapi msvcrt", "runs processes or touches the file system", true),
    ("runpy code codeop", "runs arbitrary Python code", true),
    ("importlib imp zipimport pkgutil pkg_resources", "imports arbitrary modules", true),
    ("marshal", "loads Python bytecode", true),
    ("ctypes _ctypes cffi", "calls native code", true),
    ("sys", "changes the interpreter (modules, paths, exit)", true),
    ("pickle _pickle cPickle shelve copyreg.add_extension copyreg.remove_extension copyreg.clear_extension_cache", "unpickles or re-wires unpickling", true),
    (
        "types.CodeType types.FunctionType types.LambdaType types.MethodType types.ModuleType
         types.BuiltinFunctionType types.BuiltinMethodType types.new_class types.prepare_class
         types.resolve_bases types.CellType types.FrameType types.GeneratorType types.coroutine
         types.DynamicClassAttribute types.TracebackType",
        "builds code objects or functions",
        true,
    ),
    ("multiprocessing torch.multiprocessing", "starts processes", true),
    (
        "dill.loads dill.load dill._dill.loads dill._dill.load dill._dill._create_function dill._dill._create_code
         dill._dill._import_module dill._dill._get_attr dill._dill._eval_repr dill._dill._create_filehandle
         dill._dill._load_type dill._dill._create_type dill._dill._create_cell",
        "dill rebuilds functions, code and modules",
        true,
    ),
    (
        "cloudpickle srsly.cloudpickle joblib.externals.cloudpickle",
        "cloudpickle rebuilds functions and code",
        true,
    ),
    (
        "torch.load torch.serialization.load torch.jit torch.hub torch.package torch._inductor torch.utils.cpp_extension
         torch.ops.load_library torch.classes.load_library torch._dynamo torch.fx torch.compiler
         torch.utils.collect_env torch.utils._config_module torch.utils.bottleneck torch.utils.data.datapipes
         torch.distributed.rpc torch.distributed.launch torch.distributed.run torch.distributed.elastic
         torch.testing._internal torch._export torch.export.load torch._C._jit torch.backends._coreml",
        "PyTorch code-loading or code-running gadget",
        true,
    ),
    ("numpy.load numpy.lib.npyio numpy.lib._npyio_impl numpy.lib.format", "loads other (pickled) files", true),
    (
        "torch.serialization._load torch.serialization._legacy_load torch.serialization._open_file
         torch.serialization._open_zipfile_reader torch._weights_only_unpickler gensim.utils.unpickle
         gensim.**.load nltk.data.load nltk.data.LazyLoader",
        "loads another pickle file",
        true,
    ),
    (
        "IPython Cython.Build.Inline Cython.Build.Cythonize pyximport mako.template mako.lookup mako.runtime
         sympy.sympify sympy.core.sympify sympy.parsing sympy.lambdify sympy.utilities.lambdify numexpr
         tensorflow.py_function tensorflow.numpy_function tensorflow.compat.v1.py_func
         tensorflow.python.ops.script_ops",
        "evaluates, compiles or runs code it is given (expression strings, templates, shells, Python callables)",
        true,
    ),
    (
        "transformers.pipeline transformers.pipelines transformers.dynamic_module_utils transformers.**.from_pretrained
         diffusers.**.from_pretrained sentence_transformers.SentenceTransformer huggingface_hub
         keras.config.enable_unsafe_deserialization keras.src.saving keras.saving keras.models.load_model
         keras.utils.get_file keras.src.utils.file_utils tensorflow.keras.models.load_model tensorflow.keras.saving
         tensorflow.keras.utils.get_file tensorflow.keras.config.enable_unsafe_deserialization
         tensorflow.saved_model.load tensorflow.compat.v1.saved_model tensorflow.compat.v2.saved_model.load",
        "downloads or loads other models (remote code, Keras Lambda layers, TensorFlow graphs) or disables a loader's safe mode",
        true,
    ),
    (
        "tensorflow.io tensorflow.compat.v1.io tensorflow.compat.v2.io tensorflow.python.ops.io_ops
         tensorflow.python.lib.io tensorflow.gfile tensorflow.compat.v1.gfile torch.save torch.serialization.save
         torch.serialization._save torch.utils.tensorboard tensorflow.summary h5py.File scipy.io.savemat
         scipy.io.wavfile.write nltk.download nltk.downloader",
        "reads, writes or downloads files",
        false,
    ),
    (
        "joblib.load joblib.numpy_pickle.load joblib.numpy_pickle_compat sklearn.externals.joblib.load
         sklearn.externals.joblib.numpy_pickle.load sklearn.externals.joblib.numpy_pickle_compat",
        "loads another pickle file",
        true,
    ),
    ("pandas.read_pickle pandas.io.pickle pandas.eval pandas.core.computation numexpr", "loads pickles or evaluates expressions", true),
    ("yaml", "YAML loaders can construct arbitrary Python objects", true),
    ("pip ensurepip venv distutils setuptools", "installs packages or writes files", true),
    ("bdb pdb cProfile profile _lsprof timeit trace doctest", "runs code through a debugger, profiler or test runner", true),
    ("pydoc", "runs pagers or locates arbitrary objects", true),
    ("idlelib lib2to3 test _pyrepl", "development tool module with code-running gadgets", true),
    ("_osx_support _aix_support uuid._get_command_stdout uuid._popen platform._syscmd_file platform._syscmd_ver platform.popen", "runs shell commands", true),
    ("inspect", "reaches arbitrary attributes and source", true),
    ("numpy.testing numpy.f2py numpy.distutils numpy.ctypeslib", "numpy gadget that compiles or runs code", true),
    ("operator.attrgetter operator.methodcaller _operator.attrgetter _operator.methodcaller", "calls arbitrary attributes of objects", false),
    ("functools.partialmethod", "binds arguments to arbitrary callables (gadget chains)", false),
    ("socket _socket ssl _ssl http httplib urllib urllib2 urllib3 requests aiohttp httpx webbrowser", "network access", false),
    ("ftplib smtplib poplib imaplib nntplib telnetlib xmlrpc socketserver asyncio", "network or subprocess access", false),
    ("shutil tempfile zipfile tarfile glob fileinput dbm sqlite3 mailbox", "file-system access", false),
    ("io.FileIO _io.FileIO io.open _io.open io.open_code _io.open_code codecs.open gzip.open gzip.GzipFile bz2.open bz2.BZ2File lzma.open lzma.LZMAFile", "opens or writes files", false),
    ("logging.FileHandler logging.handlers logging.config", "writes files or opens network connections", false),
    ("signal atexit _thread threading faulthandler resource gc", "changes process behaviour", false),
    ("numpy.memmap numpy.core.memmap numpy._core.memmap numpy.fromfile numpy.save numpy.savez numpy.savez_compressed numpy.savetxt numpy.loadtxt numpy.genfromtxt numpy.ndarray.tofile numpy.ndarray.dump", "reads or writes files", false),
    ("sklearn.utils._testing", "test helpers that run code or write files", false),
    // scikit-learn modules bind classes of other libraries at module level (`from gzip import
    // GzipFile`); the wildcard allow of sklearn classes must not reach them. Found by listing every
    // module-level `from X import Name` of scikit-learn 1.9.1 whose X is not sklearn; no pickle of a
    // real object names one (pickle writes a class's own __module__).
    (
        "sklearn.**.GzipFile sklearn.**.NamedTemporaryFile sklearn.**.TemporaryDirectory sklearn.**.TemporaryFile
         sklearn.**.SpooledTemporaryFile sklearn.**.Memory sklearn.**.Thread sklearn.**.Timer sklearn.**.Client
         sklearn.**.Listener sklearn.**.Connection sklearn.**.Popen sklearn.**.FunctionType sklearn.**.MethodType
         sklearn.**.ModuleType sklearn.**.CodeType sklearn.**.LambdaType sklearn.**.ZipFile sklearn.**.TarFile
         sklearn.**.DoctestItem sklearn.**.Progress sklearn.**.ThreadpoolController sklearn.**.ABCMeta
         sklearn.**.Request sklearn.**.SkipTest sklearn.**.Parameter sklearn.externals._numpydoc sklearn.conftest
         sklearn.callback._transport",
        "a class of another library bound inside a scikit-learn module (files, threads, processes, connections, code objects), or scikit-learn's documentation and test tooling",
        false,
    ),
    ("pathlib.*.write_text pathlib.*.write_bytes pathlib.*.unlink pathlib.*.rmdir pathlib.*.rename pathlib.*.replace pathlib.*.touch pathlib.*.mkdir pathlib.*.chmod pathlib.*.symlink_to pathlib.*.hardlink_to pathlib.*.open", "writes or removes files", false),
];

/// Exact names that a built-in deny rule covers but that are data: TorchScript's own pickler
/// writes them into every archive with list attributes or debug info, torch's C++ unpickler
/// rebuilds lists and type tags with them (`Unpickler::readGlobal`), and in Python they return
/// their argument (`torch/jit/_pickle.py`). Allowed below; `torch.jit` stays denied.
const DENY_EXCEPTIONS: &[&str] = &[
    "torch.jit._pickle.build_intlist",
    "torch.jit._pickle.build_tensorlist",
    "torch.jit._pickle.build_doublelist",
    "torch.jit._pickle.build_boollist",
    "torch.jit._pickle.build_tensor_from_id",
    "torch.jit._pickle.restore_type_tag",
];

/// Built-in allow rules: what real checkpoints (PyTorch, NumPy, joblib/scikit-learn) import.
/// Only constructors of data live here; their arguments are checked separately.
const ALLOW: &[(&str, &str)] = &[
    // torch.save: tensors are rebuilt from storages by these helpers (no code, only data).
    ("torch._utils._rebuild_* torch._tensor._rebuild_from_type torch._tensor._rebuild_from_type_v2", "tensor rebuild helpers"),
    // storages are referenced by class in persistent ids; TypedStorage/UntypedStorage hold bytes.
    ("torch.*Storage torch.cuda.*Storage torch.storage.UntypedStorage torch.storage.TypedStorage", "storage classes"),
    // pickled storages: the argument is itself scanned as a (nested) pickle.
    ("torch.storage._load_from_bytes", "storage bytes, scanned as a nested pickle"),
    ("torch.Size torch.device torch.Tensor torch._tensor.Tensor torch.serialization._get_layout", "tensor metadata"),
    (
        "torch.jit._pickle.build_intlist torch.jit._pickle.build_tensorlist torch.jit._pickle.build_doublelist
         torch.jit._pickle.build_boollist torch.jit._pickle.build_tensor_from_id torch.jit._pickle.restore_type_tag",
        "TorchScript list and type-tag builders (see DENY_EXCEPTIONS)",
    ),
    ("torch.nn.parameter.Parameter torch.nn.parameter.Buffer torch.nn.parameter.UninitializedParameter torch.nn.parameter.UninitializedBuffer", "parameters"),
    // whole-model pickles: nn.Module classes are rebuilt with __new__ and a state dict.
    ("torch.nn.modules.*.[A-Z]*", "torch.nn module classes"),
    (
        "torch.float torch.double torch.half torch.bfloat16 torch.float16 torch.float32 torch.float64
         torch.complex32 torch.complex64 torch.complex128 torch.cfloat torch.cdouble torch.chalf
         torch.uint8 torch.uint16 torch.uint32 torch.uint64 torch.int8 torch.int16 torch.short torch.int32
         torch.int torch.int64 torch.long torch.bool torch.qint8 torch.quint8 torch.qint32 torch.quint4x2
         torch.quint2x4 torch.float8_e4m3fn torch.float8_e5m2 torch.float8_e4m3fnuz torch.float8_e5m2fnuz",
        "dtype singletons",
    ),
    (
        "torch.strided torch.sparse_coo torch.sparse_csr torch.sparse_csc torch.sparse_bsr torch.sparse_bsc
         torch._mkldnn torch.contiguous_format torch.channels_last torch.channels_last_3d torch.preserve_format
         torch.per_tensor_affine torch.per_channel_affine torch.per_tensor_symmetric torch.per_channel_symmetric
         torch.per_channel_affine_float_qparams",
        "layout, memory-format and quantization singletons",
    ),
    // NumPy arrays and scalars: rebuilt from a dtype, a shape and raw bytes.
    (
        "numpy.core.multiarray._reconstruct numpy._core.multiarray._reconstruct numpy.core.multiarray.scalar
         numpy._core.multiarray.scalar numpy.ndarray numpy.dtype numpy.core.numeric._frombuffer
         numpy._core.numeric._frombuffer numpy.dtypes.*DType numpy.ma.core._mareconstruct numpy.ma.core.MaskedArray
         numpy._core._internal._convert_to_stringdtype_kwargs numpy.core._internal._convert_to_stringdtype_kwargs",
        "array reconstruction",
    ),
    (
        "numpy.bool_ numpy.bool numpy.int8 numpy.int16 numpy.int32 numpy.int64 numpy.uint8 numpy.uint16 numpy.uint32
         numpy.uint64 numpy.float16 numpy.float32 numpy.float64 numpy.longdouble numpy.complex64 numpy.complex128
         numpy.clongdouble numpy.str_ numpy.bytes_ numpy.void numpy.object_ numpy.datetime64 numpy.timedelta64
         numpy.intc numpy.uintc numpy.intp numpy.uintp numpy.longlong numpy.ulonglong numpy.half numpy.single
         numpy.double numpy.csingle numpy.cdouble numpy.short numpy.ushort numpy.byte numpy.ubyte",
        "scalar types",
    ),
    // RNG states saved with training checkpoints; the constructors look generators up by name.
    (
        "numpy.random._pickle.__randomstate_ctor numpy.random._pickle.__generator_ctor
         numpy.random._pickle.__bit_generator_ctor numpy.random._mt19937.MT19937 numpy.random._pcg64.PCG64
         numpy.random._pcg64.PCG64DXSM numpy.random._philox.Philox numpy.random._sfc64.SFC64
         numpy.random.mtrand.RandomState",
        "random generator state",
    ),
    ("collections.OrderedDict collections.defaultdict collections.Counter collections.deque", "containers (state dicts)"),
    (
        "builtins.set builtins.frozenset builtins.bytearray builtins.bytes builtins.slice builtins.complex
         builtins.range builtins.list builtins.tuple builtins.dict builtins.int builtins.float builtins.str
         builtins.bool builtins.object",
        "built-in data constructors",
    ),
    // protocol 0-2 encodings of bytes and objects.
    ("_codecs.encode copyreg._reconstructor copyreg.__newobj__ copyreg.__newobj_ex__", "protocol 0-2 object and bytes encoding"),
    ("functools.partial _functools.partial", "judged by the callable it wraps: the pickle scan reports that callable as an import of its own, and a partial it cannot follow as pickle-callable-unresolved"),
    (
        "datetime.datetime datetime.date datetime.time datetime.timedelta datetime.timezone decimal.Decimal
         fractions.Fraction uuid.UUID argparse.Namespace types.SimpleNamespace re._compile
         pathlib.Path pathlib.PosixPath pathlib.WindowsPath pathlib.PurePath pathlib.PurePosixPath pathlib.PureWindowsPath",
        "value types found in checkpoint metadata (training arguments, timestamps)",
    ),
    // joblib dumps: the wrapper only describes the raw array bytes that follow it.
    ("joblib.numpy_pickle.NumpyArrayWrapper sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper", "joblib array wrapper"),
    // scikit-learn estimators and the sparse matrices they hold: classes rebuilt from a state dict.
    ("sklearn.**.[A-Z]* scipy.sparse.**.*_matrix scipy.sparse.**.*_array", "scikit-learn estimator and scipy sparse classes"),
    // ---- reviewed additions (issue 9): each line names the source read and the version ----
    // scikit-learn 1.9.1 (and 1.3.2): private helper classes of estimators, e.g.
    // calibration._CalibratedClassifier (__init__ stores estimator, calibrators, classes, method),
    // _SigmoidCalibration and _TemperatureScaling (BaseEstimator: __setstate__ updates __dict__).
    // Every class of sklearn 1.9.1 was scanned (src/lists/gen_stdlib.py's primitives) in its
    // __new__/__init__/__setstate__/__del__/__setattr__/__reduce__/__hash__/__eq__: none opens
    // files, imports, evaluates or calls what it is given; re-exports of other libraries are denied.
    ("sklearn.**._[A-Z]*", "scikit-learn private classes (sklearn 1.9.1 calibration.py, _base.py: constructors store their arguments, state is a plain __dict__)"),
    // NumPy 2.4.6 and 1.26.4 (numpy/matrixlib/defmatrix.py, numpy/_core/records.py): ndarray and
    // numpy.void subclasses rebuilt by multiarray._reconstruct/scalar and ndarray.__setstate__; they
    // override no __setstate__/__reduce__. matrix(data) parses a string with ast.literal_eval only.
    (
        "numpy.matrix numpy.matrixlib.defmatrix.matrix numpy.matrixlib.matrix numpy.recarray numpy.record
         numpy.rec.recarray numpy.rec.record numpy.core.records.recarray numpy.core.records.record
         numpy._core.records.recarray numpy._core.records.record",
        "numpy matrix and record arrays (ndarray/void subclasses; numpy 2.4.6 matrixlib/defmatrix.py, _core/records.py)",
    ),
    // numpy/core/_internal.py (2.4.6 compat shim, 1.x original): _reconstruct(subtype, shape, dtype)
    // is ndarray.__new__(subtype, shape, dtype), for pickles made before NumPy 1.0.
    ("numpy.core._internal._reconstruct", "array reconstruction of NumPy < 1.0 pickles (ndarray.__new__; numpy 2.4.6 numpy/core/_internal.py)"),
    // numpy/_core/_internal.py 2.4.6: _convert_to_stringdtype_kwargs(coerce, na_object) returns
    // StringDType(coerce=..., na_object=...), how a StringDType array's dtype is pickled.
    ("numpy._core._internal._convert_to_stringdtype_kwargs", "StringDType reconstruction (numpy 2.4.6 _core/_internal.py)"),
    // numpy/random/__init__.py 2.4.6 (and mtrand.pyx <= 1.16): __RandomState_ctor() returns
    // RandomState(seed=0), takes no argument; bit_generator.pyx: __pyx_unpickle_SeedSequence is
    // Cython's unpickler (checks the checksum, SeedSequence.__new__(type), sets the state fields).
    (
        "numpy.random.__RandomState_ctor numpy.random.mtrand.__RandomState_ctor
         numpy.random.bit_generator.__pyx_unpickle_SeedSequence numpy.random.bit_generator.SeedSequence
         numpy.random._generator.Generator numpy.random.SeedSequence numpy.random.Generator",
        "random generator state of NumPy <= 1.16 and >= 1.17 (numpy 2.4.6 random/__init__.py, bit_generator.pyx)",
    ),
    // numpy/ma/core.py 2.4.6: _mareconstruct(subtype, baseclass, baseshape, basetype) builds two
    // empty ndarrays and calls subtype.__new__ (the class the pickle imported, judged itself);
    // MaskedArray.__setstate__ sets data, mask and fill_value; MaskedConstant.__reduce__ is
    // (MaskedConstant, ()), a singleton; mvoid is a masked numpy.void. numpy/ma/mrecords.py:
    // _mrreconstruct does the same for MaskedRecords.
    (
        "numpy.ma.MaskedArray numpy.ma.core.MaskedConstant numpy.ma.core.mvoid numpy.ma.mrecords.MaskedRecords
         numpy.ma.mrecords._mrreconstruct",
        "masked arrays (numpy 2.4.6 ma/core.py, ma/mrecords.py)",
    ),
    // joblib <= 0.9 wrappers (joblib 1.6.0 numpy_pickle_compat.py): joblib.load replaces them by
    // the array in a sibling file, np.load(os.path.join(dump dir, filename), allow_pickle=True)
    // (NDArrayWrapper) or a zlib file (ZNDArrayWrapper). The pickle emulator rejects a wrapper whose
    // filename is not a plain name in the dump's own folder (`pickle-joblib-sibling`); the sibling
    // files are judged as files of their own.
    (
        "joblib.numpy_pickle.NDArrayWrapper joblib.numpy_pickle.ZNDArrayWrapper
         sklearn.externals.joblib.numpy_pickle.NDArrayWrapper sklearn.externals.joblib.numpy_pickle.ZNDArrayWrapper",
        "joblib <= 0.9 array wrappers naming a sibling array file (joblib 1.6.0 numpy_pickle_compat.py)",
    ),
    // pandas 3.1.1 and 1.5.3 (core/indexes/*.py, core/internals/managers.py, core/generic.py,
    // _libs/*.pyx): the containers and their unpickling helpers. NDFrame.__setstate__ sets the
    // block manager and plain attributes; _new_Index(cls, d) is cls.__new__(cls, **d);
    // _new_DatetimeIndex/_new_PeriodIndex/_new_IntervalIndex build from arrays (cls.from_arrays);
    // _unpickle_block(values, placement, ndim) makes a block; __pyx_unpickle_NDArrayBacked is
    // Cython's unpickler. Time-zone strings in Timestamp/DatetimeTZDtype arguments are looked up
    // in the time-zone database (zoneinfo, pytz, dateutil: a "dateutil/<path>" zone makes dateutil
    // read that file's first bytes for a TZif header); nothing is evaluated, imported or called.
    (
        "pandas.DataFrame pandas.core.frame.DataFrame pandas.Series pandas.core.series.Series
         pandas.Index pandas.core.indexes.base.Index pandas.core.indexes.base._new_Index
         pandas.RangeIndex pandas.core.indexes.range.RangeIndex pandas.MultiIndex pandas.core.indexes.multi.MultiIndex
         pandas.DatetimeIndex pandas.core.indexes.datetimes.DatetimeIndex pandas.core.indexes.datetimes._new_DatetimeIndex
         pandas.TimedeltaIndex pandas.core.indexes.timedeltas.TimedeltaIndex
         pandas.PeriodIndex pandas.core.indexes.period.PeriodIndex pandas.core.indexes.period._new_PeriodIndex
         pandas.IntervalIndex pandas.core.indexes.interval.IntervalIndex pandas.core.indexes.interval._new_IntervalIndex
         pandas.CategoricalIndex pandas.core.indexes.category.CategoricalIndex
         pandas.core.indexes.numeric.Int64Index pandas.core.indexes.numeric.UInt64Index
         pandas.core.indexes.numeric.Float64Index pandas.core.indexes.numeric.NumericIndex
         pandas.core.indexes.frozen.FrozenNDArray pandas.core.indexes.frozen.FrozenList
         pandas.core.internals.managers.BlockManager pandas.core.internals.managers.SingleBlockManager
         pandas.core.internals.BlockManager pandas.core.internals.SingleBlockManager
         pandas._libs.internals._unpickle_block pandas.core.internals.blocks.new_block
         pandas._libs.arrays.__pyx_unpickle_NDArrayBacked",
        "pandas containers and their unpickling helpers (pandas 3.1.1 and 1.5.3 core/indexes, core/internals, core/generic.py)",
    ),
    (
        "pandas.Categorical pandas.core.arrays.categorical.Categorical pandas.arrays.[A-Z]*Array
         pandas.core.arrays.**.[A-Z]*Array pandas.[A-Z]*Dtype pandas.core.dtypes.dtypes.[A-Z]*Dtype
         pandas.core.arrays.*.[A-Z]*Dtype pandas.core.arrays.sparse.dtype.SparseDtype
         pandas._libs.sparse.IntIndex pandas._libs.sparse.BlockIndex",
        "pandas extension arrays and dtypes (pandas 3.1.1 core/arrays, core/dtypes/dtypes.py: values and metadata only)",
    ),
    (
        "pandas.Timestamp pandas._libs.tslibs.timestamps.Timestamp pandas._libs.tslibs.timestamps._unpickle_timestamp
         pandas.Timedelta pandas._libs.tslibs.timedeltas.Timedelta pandas._libs.tslibs.timedeltas._timedelta_unpickle
         pandas._libs.tslibs.nattype._nat_unpickle pandas._libs.tslibs.nattype.__nat_unpickle
         pandas.Period pandas._libs.tslibs.period.Period pandas._libs.tslibs.offsets.[A-Z]*
         pandas.tseries.offsets.[A-Z]*
         pandas.Interval pandas._libs.interval.Interval pandas.NA pandas._libs.missing.NA",
        "pandas scalars and date offsets (pandas 3.1.1 _libs/tslibs/*.pyx, 0.25.3 tseries/offsets.py: values, a unit, a time zone)",
    ),
    // CPython 3.11-3.13 Lib/zoneinfo/_zoneinfo.py (and Modules/_zoneinfo.c, the same logic):
    // ZoneInfo(key) and the classmethod ZoneInfo._unpickle(key, from_cache) (what
    // ZoneInfo.__reduce__ names, pickled as builtins.getattr(zoneinfo.ZoneInfo, '_unpickle'), e.g.
    // by pandas for tz-aware timestamps) call ZoneInfo(key) or ZoneInfo.no_cache(key):
    // _tzpath.find_tzfile validates the key (_validate_tzfile_path: no absolute path, nothing
    // that normalises outside the search root), opens TZPATH/<key> read-only or reads the
    // resource <key> of the data-only tzdata package (_common.load_tzdata), and parses it as
    // TZif. The time-zone database lookup pandas time-zone strings already make; nothing is
    // evaluated or called. Other names (ZoneInfo.from_file takes a file object) stay denied.
    (
        "zoneinfo.ZoneInfo zoneinfo.ZoneInfo._unpickle",
        "time zones of the time-zone database (CPython 3.11 Lib/zoneinfo/_zoneinfo.py, _tzpath.py: the key is validated)",
    ),
    // CPython 3.11 (Objects/exceptions.c, Python/bltinmodule.c, Lib/*.py).
    (
        "builtins.ArithmeticError builtins.AssertionError builtins.AttributeError builtins.BaseException
         builtins.BaseExceptionGroup builtins.BlockingIOError builtins.BrokenPipeError builtins.BufferError
         builtins.BytesWarning builtins.ChildProcessError builtins.ConnectionAbortedError builtins.ConnectionError
         builtins.ConnectionRefusedError builtins.ConnectionResetError builtins.DeprecationWarning builtins.EOFError
         builtins.EncodingWarning builtins.EnvironmentError builtins.Exception builtins.ExceptionGroup
         builtins.FileExistsError builtins.FileNotFoundError builtins.FloatingPointError builtins.FutureWarning
         builtins.GeneratorExit builtins.IOError builtins.ImportError builtins.ImportWarning builtins.IndentationError
         builtins.IndexError builtins.InterruptedError builtins.IsADirectoryError builtins.KeyError
         builtins.KeyboardInterrupt builtins.LookupError builtins.MemoryError builtins.ModuleNotFoundError
         builtins.NameError builtins.NotADirectoryError builtins.NotImplementedError builtins.OSError
         builtins.OverflowError builtins.PendingDeprecationWarning builtins.PermissionError
         builtins.ProcessLookupError builtins.RecursionError builtins.ReferenceError builtins.ResourceWarning
         builtins.RuntimeError builtins.RuntimeWarning builtins.StopAsyncIteration builtins.StopIteration
         builtins.SyntaxError builtins.SyntaxWarning builtins.SystemError builtins.SystemExit builtins.TabError
         builtins.TimeoutError builtins.TypeError builtins.UnboundLocalError builtins.UnicodeDecodeError
         builtins.UnicodeEncodeError builtins.UnicodeError builtins.UnicodeTranslateError builtins.UnicodeWarning
         builtins.UserWarning builtins.ValueError builtins.Warning builtins.ZeroDivisionError",
        "exception classes: BaseException.__reduce__ is (type, args, __dict__); the constructor stores args (CPython 3.11 Objects/exceptions.c)",
    ),
    (
        "builtins.hash builtins.type builtins.Ellipsis builtins.NotImplemented",
        "hash(x) calls x.__hash__ of a value the pickle built (gensim stores it as hashfxn); type(None), type(...) and \
         type(NotImplemented) are how pickle.save_type writes those types, and type(name, bases, dict) makes a class of \
         values the pickle already holds; Ellipsis and NotImplemented are singletons (CPython 3.11 bltinmodule.c, pickle.py)",
    ),
    (
        "collections.UserDict collections.UserList collections.UserString array.array array._array_reconstructor
         io.BytesIO _io.BytesIO io.StringIO _io.StringIO random.Random time.struct_time re.RegexFlag",
        "data types: containers over a dict/list/str (the targets of Python 2's UserDict), typed arrays \
         (_array_reconstructor only builds array subclasses), in-memory buffers, the Mersenne Twister (setstate \
         takes a tuple of ints), a time tuple and regex flags (CPython 3.11 collections/__init__.py, arraymodule.c, \
         _io/bytesio.c, random.py, timemodule.c, re/__init__.py)",
    ),
    (
        "logging.getLogger",
        "Logger.__reduce__ is (getLogger, (name,)): returns the named logger, creating an empty one (no handler, \
         no file) (CPython 3.11 logging/__init__.py)",
    ),
    (
        "typing.Any typing.Union typing.Optional typing.List typing.Dict typing.Tuple typing.Set typing.FrozenSet
         typing.Type typing.Callable typing.Literal typing.ClassVar typing.Final typing.Sequence typing.Mapping
         typing.Iterable operator.getitem _operator.getitem",
        "type annotations in saved configs (OmegaConf metadata holds typing.Any; List[int] pickles as \
         operator.getitem(typing.List, int)): subscripting builds alias objects; a string argument becomes a \
         ForwardRef that is compiled, never evaluated, while loading (CPython 3.11 typing.py, _operator.c)",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn imp(module: &str, name: &str) -> Import {
        Import {
            module: module.into(),
            name: name.into(),
            raw: None,
            opcode: "GLOBAL",
            offset: 0,
            member: None,
            evidence: None,
        }
    }

    fn class(l: &Lists, m: &str, n: &str) -> Class {
        l.classify(&imp(m, n))
    }

    #[test]
    fn builtin_classification() {
        let l = Lists::builtin();
        for (m, n) in [
            ("os", "system"),
            ("posix", "system"),
            ("builtins", "eval"),
            ("subprocess", "Popen"),
            ("asyncio.unix_events", "_UnixSubprocessTransport._start"),
            ("pathlib", "os.system"),
            ("collections", "OrderedDict.__init__.__globals__"),
            ("torch._utils", "_rebuild_tensor.__globals__"),
            ("torch.serialization", "load"),
            ("pip._internal.cli.main", "main"),
            ("numpy.testing._private.utils", "runstring"),
            ("torch.utils.bottleneck.__main__", "run_cprofile"),
            ("pandas", "eval"),
            ("somelib", "system"),
            ("mylib", "Thing.exec_module"),
            ("torch", "_utils.builtins.eval"),
            ("tkinter.__main__", "x"),
        ] {
            assert!(matches!(class(&l, m, n), Class::Dangerous(_)), "{m}.{n}");
        }
        for (m, n) in [
            ("torch._utils", "_rebuild_tensor_v2"),
            ("torch", "FloatStorage"),
            ("collections", "OrderedDict"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("torch", "float32"),
            ("torch.nn.modules.linear", "Linear"),
            ("copyreg", "__newobj__"),
            ("sklearn.linear_model._logistic", "LogisticRegression"),
            ("numpy.random._pickle", "__randomstate_ctor"),
            ("torch", "_utils._rebuild_tensor"),
        ] {
            assert_eq!(class(&l, m, n), Class::Allowed, "{m}.{n}");
        }
        for (m, n) in
            [("__main__", "Net"), ("math", "sqrt"), ("torch.nn.modules.linear", "helper"), ("torch", "_utils")]
        {
            assert_eq!(class(&l, m, n), Class::Unknown, "{m}.{n}");
        }
        let deep = vec!["a"; 100].join(".");
        assert!(matches!(class(&l, "mylib", &deep), Class::Dangerous(_)));
        let mut raw = imp("builtins", "set");
        raw.raw = Some(("__builtin__".into(), "set".into()));
        assert_eq!(l.classify(&raw), Class::Allowed);
    }

    #[test]
    fn policy_entries() {
        let mut l = Lists::builtin();
        assert!(l.allow("os", "x").is_err());
        assert!(l.allow("os.system", "x").is_err());
        assert!(l.allow("torch.*", "x").is_err());
        assert!(l.allow("builtins.eval", "x").is_err());
        assert!(l.allow("mylib.Thing.__reduce__", "x").is_err());
        assert!(l.allow("bad pattern", "x").is_err());
        assert_eq!(
            class(&l, "operator", "attrgetter"),
            Class::Dangerous("calls arbitrary attributes of objects".into())
        );
        l.allow("operator.attrgetter", "we use it").unwrap();
        assert_eq!(class(&l, "operator", "attrgetter"), Class::Allowed);
        l.allow("mylib.*", "ours").unwrap();
        assert_eq!(class(&l, "mylib.models", "Net"), Class::Allowed);
        assert_eq!(class(&l, "mylib", "x"), Class::Allowed);
        l.deny("mylib.models.Bad", "broken").unwrap();
        assert_eq!(class(&l, "mylib.models", "Bad"), Class::Denied("broken".into()));
        l.deny("torch.FloatStorage", "no").unwrap();
        assert_eq!(class(&l, "torch", "FloatStorage"), Class::Denied("no".into()));
        l.allow("mylib", "all of it").unwrap();
        assert_eq!(class(&l, "mylib.sub", "Y"), Class::Allowed);
    }

    #[test]
    fn one_finding_per_name_and_member() {
        let l = Lists::builtin();
        let mut a = imp("os", "system");
        a.evidence = Some("os.system('echo pwned')".into());
        let b = imp("os", "system");
        let mut c = imp("os", "system");
        c.member = Some("x.pkl".into());
        let d = imp("torch", "FloatStorage");
        let f = l.classify_all(&[a, b, c, d, imp("__main__", "Net")]);
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].code, "pickle-import-dangerous");
        assert_eq!(f[0].evidence.as_deref(), Some("os.system('echo pwned')"));
        assert_eq!(f[1].member.as_deref(), Some("x.pkl"));
        assert_eq!(f[2].code, "pickle-import-unknown");
    }

    fn dangerous(l: &Lists, m: &str, n: &str) -> bool {
        matches!(class(l, m, n), Class::Dangerous(_))
    }

    #[test]
    fn stdlib_table_is_sorted_and_whole() {
        let names: Vec<&str> = stdlib::STDLIB.iter().map(|(n, ..)| *n).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "stdlib.rs must be sorted and unique");
        // every module of sys.stdlib_module_names (3.11) has a line; a sample of each kind
        for n in ["typing", "mailcap", "os", "sys", "builtins", "math", "_pickle", "tkinter", "xml", "annotationlib"] {
            assert!(stdlib_module(n, false).is_some(), "{n}");
        }
        // Python 2 names only as the module a pickle writes
        assert!(stdlib_module("copy_reg", false).is_none());
        assert_eq!(stdlib_module("commands", true).map(|x| x.0), Some(StdlibVerdict::Dangerous));
        assert_eq!(stdlib_module("math", false).map(|x| x.0), Some(StdlibVerdict::Inert));
        assert!(stdlib_module("numpy", true).is_none());
    }

    #[test]
    fn third_party_gadgets_are_dangerous_and_their_data_classes_are_not() {
        let l = Lists::builtin();
        for (m, n) in [
            ("torch.serialization", "_load"),
            ("torch._weights_only_unpickler", "load"),
            ("gensim.utils", "unpickle"),
            ("gensim.models.word2vec", "Word2Vec.load"),
            ("nltk.data", "load"),
            ("IPython", "embed"),
            ("IPython.core.interactiveshell", "InteractiveShell.run_cell"),
            ("Cython.Build.Inline", "cython_inline"),
            ("mako.template", "Template"),
            ("sympy", "sympify"),
            ("sympy.parsing.sympy_parser", "parse_expr"),
            ("tensorflow", "py_function"),
            ("transformers", "pipeline"),
            ("transformers", "AutoModel.from_pretrained"),
            ("transformers.models.bert.modeling_bert", "BertModel.from_pretrained"),
            ("huggingface_hub", "hf_hub_download"),
            ("keras.config", "enable_unsafe_deserialization"),
            ("keras.models", "load_model"),
            ("tensorflow.saved_model", "load"),
            ("tensorflow.io", "write_file"),
            ("tensorflow.io.gfile", "GFile"),
            ("torch", "save"),
            ("h5py", "File"),
            ("nltk", "download"),
        ] {
            assert!(dangerous(&l, m, n), "{m}.{n}");
        }
        // What real checkpoints name from the same libraries stays as it was.
        assert_eq!(class(&l, "torch.serialization", "_get_layout"), Class::Allowed);
        assert_eq!(class(&l, "gensim.models.word2vec", "Word2Vec"), Class::Unknown);
        assert_eq!(class(&l, "transformers.models.bert.configuration_bert", "BertConfig"), Class::Unknown);
        assert_eq!(class(&l, "nltk.tokenize.punkt", "PunktSentenceTokenizer"), Class::Unknown);
    }

    #[test]
    fn stdlib_gadgets_are_dangerous() {
        let l = Lists::builtin();
        for (m, n) in [
            ("typing", "_eval_type"),
            ("typing", "ForwardRef"),
            ("typing", "ForwardRef._evaluate"),
            ("mailcap", "findmatch"),
            ("string", "Formatter"),
            ("functools", "reduce"),
            ("_functools", "reduce"),
            ("operator", "methodcaller"),
            ("builtins", "map"),
            ("builtins", "filter"),
            ("builtins", "print"),
            ("contextlib", "ExitStack"),
            ("weakref", "finalize"),
            ("atexit", "register"),
            ("copy", "deepcopy"),
            ("logging.config", "fileConfig"),
            ("logging", "FileHandler"),
            ("warnings", "filterwarnings"),
            ("unittest.mock", "patch"),
            ("unittest", "main"),
            ("tkinter", "Tk"),
            ("curses", "wrapper"),
            ("readline", "read_history_file"),
            ("rlcompleter", "Completer"),
            ("sched", "scheduler"),
            ("concurrent.futures", "ThreadPoolExecutor"),
            ("collections", "namedtuple"),
            ("xml.dom.minidom", "parse"),
            ("json", "loads"),
            ("gettext", "translation"),
            ("linecache", "getline"),
            ("zoneinfo", "ZoneInfo.from_file"),
            ("zoneinfo", "ZoneInfo.__init_subclass__"),
            ("time", "sleep"),
            ("_io", "open"),
            ("_sqlite3", "connect"),
            ("annotationlib", "call_annotate_function"),
            ("compression.zstd", "open"),
            ("_remote_debugging", "RemoteUnwinder"),
            // Python 2 names: written as such (protocol >= 3 does not map) or renamed
            ("commands", "getoutput"),
            ("popen2", "popen3"),
        ] {
            assert!(dangerous(&l, m, n), "{m}.{n}");
        }
        // a Python 2 name renamed by _compat_pickle is judged by both paths
        let mut reduce = imp("functools", "reduce");
        reduce.raw = Some(("__builtin__".into(), "reduce".into()));
        assert!(matches!(l.classify(&reduce), Class::Dangerous(_)));
        let mut recon = imp("copyreg", "_reconstructor");
        recon.raw = Some(("copy_reg".into(), "_reconstructor".into()));
        assert_eq!(l.classify(&recon), Class::Allowed);
        // the reason says what the module can do
        let Class::Dangerous(why) = class(&l, "typing", "_eval_type") else { panic!() };
        assert!(why.contains("standard-library module typing") && why.contains("eval"), "{why}");
        let Class::Dangerous(why) = class(&l, "mailcap", "findmatch") else { panic!() };
        assert!(why.contains("os.system"), "{why}");
    }

    #[test]
    fn stdlib_walks_and_inert_modules() {
        let l = Lists::builtin();
        // a walk through a module attribute is judged by the module it reaches
        assert!(dangerous(&l, "ipaddress", "functools.reduce"));
        assert!(dangerous(&l, "mylib", "collections.namedtuple"));
        assert!(dangerous(&l, "math", "typing._eval_type"));
        let Class::Dangerous(why) = class(&l, "ipaddress", "functools.reduce") else { panic!() };
        assert!(why.contains("walks into the standard-library module functools"), "{why}");
        // inert modules: names outside the allowlist stay suspicious, and say why
        for (m, n) in
            [("math", "sqrt"), ("colorsys", "rgb_to_hsv"), ("ipaddress", "ip_address"), ("zlib", "decompress")]
        {
            assert_eq!(class(&l, m, n), Class::Unknown, "{m}.{n}");
        }
        let f = l.classify_all(&[imp("math", "sqrt")]);
        assert!(f[0].message.contains("reviewed as inert"), "{}", f[0].message);
        // third-party names are untouched by the table
        assert_eq!(class(&l, "gensim.models.word2vec", "Word2Vec"), Class::Unknown);
    }

    #[test]
    fn stdlib_policy_entries() {
        let mut l = Lists::builtin();
        // a wildcard over a dangerous standard-library module is refused, exact names are not
        assert!(l.allow("collections.*", "x").is_err());
        assert!(l.allow("typing", "x").is_err());
        assert!(l.allow("xml.dom.*", "x").is_err());
        assert!(l.allow("math.*", "inert").is_ok());
        assert_eq!(class(&l, "math", "sqrt"), Class::Allowed);
        assert!(dangerous(&l, "typing", "NamedTuple"));
        l.allow("typing.NamedTuple", "our configs use it").unwrap();
        assert_eq!(class(&l, "typing", "NamedTuple"), Class::Allowed);
        assert!(dangerous(&l, "typing", "_eval_type"));
        // core rules stay closed
        assert!(l.allow("builtins.eval", "x").is_err());
        // a wildcard allow elsewhere is not blocked by the `**` deny rules of sklearn
        assert!(l.allow("mylib.*", "ours").is_ok());
        assert!(l.allow("sklearn.mything.*", "x").is_err());
    }

    /// Every exact name of the reviewed allow table is allowed, and the patterns all parse.
    #[test]
    fn reviewed_allow_entries() {
        let l = Lists::builtin();
        for (group, _) in ALLOW {
            for p in group.split_whitespace() {
                let pat = Pattern::parse(p, false).unwrap_or_else(|e| panic!("{e}"));
                if pat.is_exact() {
                    let (m, n) = p.rsplit_once('.').unwrap();
                    assert_eq!(class(&l, m, n), Class::Allowed, "{p}");
                }
            }
        }
        for (group, ..) in DENY {
            for p in group.split_whitespace() {
                Pattern::parse(p, true).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        // names the wildcard entries must cover: what numpy, pandas and scikit-learn pickles import
        for (m, n) in [
            ("sklearn.calibration", "_CalibratedClassifier"),
            ("sklearn.calibration", "_SigmoidCalibration"),
            ("sklearn.calibration", "_TemperatureScaling"),
            ("sklearn.isotonic", "IsotonicRegression"),
            ("pandas.arrays", "StringArray"),
            ("pandas.arrays", "DatetimeArray"),
            ("pandas.core.arrays.datetimes", "DatetimeArray"),
            ("pandas.core.arrays.integer", "IntegerArray"),
            ("pandas", "StringDtype"),
            ("pandas", "CategoricalDtype"),
            ("pandas.core.dtypes.dtypes", "CategoricalDtype"),
            ("pandas.core.dtypes.dtypes", "DatetimeTZDtype"),
            ("pandas._libs.tslibs.offsets", "MonthEnd"),
            ("pandas._libs.tslibs.offsets", "Day"),
            ("numpy.random._pickle", "__bit_generator_ctor"),
            ("builtins", "ValueError"),
        ] {
            assert_eq!(class(&l, m, n), Class::Allowed, "{m}.{n}");
        }
        // names that look alike but are not reviewed
        for (m, n) in [
            ("pandas", "read_pickle"),
            ("pandas.io.pickle", "read_pickle"),
            ("pandas.core.computation.eval", "eval"),
            ("numpy", "load"),
            ("numpy.ma", "load"),
            ("numpy", "bmat"),
            ("joblib.numpy_pickle_compat", "NDArrayWrapper"),
            ("sklearn.datasets._rcv1", "GzipFile"),
            ("sklearn.datasets._base", "NamedTemporaryFile"),
            ("sklearn.datasets._lfw", "Memory"),
            ("sklearn.callback._progressbar", "Thread"),
            ("sklearn.externals.array_api_extra.testing._testing", "FunctionType"),
            ("sklearn.utils._available_if", "MethodType"),
        ] {
            assert!(matches!(class(&l, m, n), Class::Dangerous(_) | Class::Unknown), "{m}.{n}");
        }
        for (m, n) in [("numpy", "bmat"), ("pandas._libs.tslibs", "nattype")] {
            assert_eq!(class(&l, m, n), Class::Unknown, "{m}.{n}");
        }
        assert!(dangerous(&l, "sklearn.datasets._rcv1", "GzipFile"));
    }

    #[test]
    fn globs() {
        assert!(glob(b"*Storage", b"FloatStorage"));
        assert!(!glob(b"*Storage", b"FloatStorageX"));
        assert!(glob(b"[A-Z]*", b"Linear"));
        assert!(!glob(b"[A-Z]*", b"linear"));
        assert!(glob(b"_rebuild_*", b"_rebuild_tensor_v2"));
    }
}
