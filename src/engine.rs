//! The dispatcher: sniff a target's content, hand it to the format parser, feed container
//! members back through itself under a depth and byte budget, then classify imports
//! against the allow/deny lists. Parsers never see policy, git or output.

use crate::detect::{self, Format};
use crate::finding::{Finding, Severity, Verdict};
use crate::lists::Lists;
use crate::source::{Data, Source};
use serde::Serialize;

pub use crate::finding::{Hint, Import};
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Knobs and budgets of a scan. Every budget ends in a finding, never a crash.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Allow/deny lists (built-in plus policy additions).
    pub lists: Arc<Lists>,
    /// Containers nested deeper than this are not opened (finding `container-too-deep`).
    pub max_depth: u32,
    /// Decompressed bytes one file may expand to in total (zip bombs).
    pub max_expanded_bytes: u64,
    /// A member that must be held in memory (a nested archive that is compressed) may be at most this big.
    pub max_buffered_bytes: u64,
    /// Members per archive.
    pub max_members: u64,
    /// Pickle opcodes per file (every stream in it, nested pickles included).
    pub max_pickle_opcodes: u64,
    /// Values one pickle stream holds at once (stack, memo and what they reach).
    pub max_pickle_values: usize,
    /// Bytes of one string/bytes constant read to look for a nested pickle.
    pub max_nested_pickle_bytes: u64,
    /// Hand every top-level file to clamd too (the policy's `[clamav]`).
    pub clamav: Option<Arc<crate::clamav::ClamavConfig>>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            lists: Arc::new(Lists::builtin()),
            max_depth: 8,
            max_expanded_bytes: 16 << 30,
            max_buffered_bytes: 512 << 20,
            max_members: 200_000,
            max_pickle_opcodes: 100_000_000,
            max_pickle_values: 8_000_000,
            max_nested_pickle_bytes: 64 << 20,
            clamav: None,
        }
    }
}

/// Everything learned about one scan target.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub path: String,
    pub format: String,
    pub verdict: Verdict,
    pub size: u64,
    pub imports: Vec<Import>,
    pub findings: Vec<Finding>,
}

impl FileReport {
    /// Unique `module.name` strings in first-seen order.
    pub fn import_names(&self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        self.imports.iter().map(Import::full_name).filter(|n| seen.insert(n.clone())).collect()
    }

    /// The most severe finding (the first of equals).
    pub fn worst(&self) -> Option<&Finding> {
        self.findings.iter().fold(None, |best: Option<&Finding>, f| match best {
            Some(b) if b.severity >= f.severity => Some(b),
            _ => Some(f),
        })
    }
}

pub const CODES: &[crate::finding::CodeInfo] = &[
    crate::finding::CodeInfo {
        code: "read-error",
        severity: Severity::Error,
        summary: "the file or an archive member could not be read",
        fix: "check the file is complete and readable, then scan again",
    },
    crate::finding::CodeInfo {
        code: "container-too-deep",
        severity: Severity::Error,
        summary: "archives are nested deeper than the scan depth budget",
        fix: "unpack the nested archives; models never need deep nesting",
    },
    crate::finding::CodeInfo {
        code: "expansion-budget-exceeded",
        severity: Severity::Error,
        summary: "compressed data expands past the byte budget (possible decompression bomb)",
        fix: "store the model uncompressed, or raise the budget in the policy if the file is trusted",
    },
    crate::finding::CodeInfo {
        code: "internal-error",
        severity: Severity::Error,
        summary: "modelgate hit an internal error while scanning this file",
        fix: "report it with the file's format; the file is rejected until it can be judged",
    },
];

/// Per-file scan state shared by the dispatcher and the parsers it calls: the sink for
/// findings and imports, and the way containers hand members back.
pub struct Scan<'a> {
    pub opts: &'a ScanOptions,
    /// Member path of what is being scanned now (`None` at the top level).
    member: Option<String>,
    depth: u32,
    expanded: Arc<ExpandBudget>,
    out_imports: Vec<Import>,
    /// Indices into `out_imports` that a container judged in its own loader's context.
    in_context: std::collections::HashSet<usize>,
    out_findings: Vec<Finding>,
    /// A member of a model format was seen (so an empty finding list means "safe").
    model: bool,
    /// Pickle work this file may still cost, shared by every pickle stream in it.
    pub pickle: crate::formats::pickle::Budget,
}

impl<'a> Scan<'a> {
    fn new(opts: &'a ScanOptions) -> Scan<'a> {
        Scan {
            opts,
            member: None,
            depth: 0,
            expanded: Arc::new(ExpandBudget::new(opts.max_expanded_bytes)),
            out_imports: Vec::new(),
            in_context: std::collections::HashSet::new(),
            out_findings: Vec::new(),
            model: false,
            pickle: crate::formats::pickle::Budget::new(opts),
        }
    }

    /// Record a finding in the current member.
    pub fn finding(&mut self, mut f: Finding) {
        if let Some(m) = &self.member {
            f = match f.member.take() {
                Some(inner) => f.member(format!("{m}!{inner}")),
                None => f.member(m.clone()),
            };
        }
        self.out_findings.push(f);
    }

    /// Record an import in the current member.
    pub fn import(&mut self, mut i: Import) {
        if i.member.is_none() {
            i.member = self.member.clone();
        }
        self.out_imports.push(i);
    }

    /// A mark for [`Scan::imports_since`]: the number of imports recorded so far.
    pub fn import_mark(&self) -> usize {
        self.out_imports.len()
    }

    /// The imports recorded since `mark`, with their index, for a container that judges its
    /// members' imports in its own loader's context.
    pub fn imports_since(&self, mark: usize) -> impl Iterator<Item = (usize, &Import)> {
        self.out_imports.iter().enumerate().skip(mark)
    }

    /// Leave import `index` out of the allow/deny classification: its container's loader does
    /// not import it as Python would (TorchScript resolves `__torch__.*` names to classes
    /// compiled from the archive's own code). It stays in the report's import list.
    pub fn import_in_context(&mut self, index: usize) {
        self.in_context.insert(index);
    }

    /// Note that a model format was recognised (an empty finding list then means safe).
    pub fn mark_model(&mut self) {
        self.model = true;
    }

    /// Current member path, for parsers that build evidence.
    pub fn member_path(&self) -> Option<&str> {
        self.member.as_deref()
    }

    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// Wrap a decompressing reader so that the file's total expansion is bounded; past the
    /// budget reads fail and the file gets an `expansion-budget-exceeded` finding.
    pub fn limit(&self, r: Box<dyn Read + Send>) -> Box<dyn Read + Send> {
        Box::new(Limited { inner: r, budget: self.expanded.clone() })
    }

    /// Scan data that a single-stream wrapper (gzip, ...) decoded, under the same member path.
    pub fn inner(&mut self, data: Data, hint: Hint) -> Format {
        if self.depth >= self.opts.max_depth {
            self.finding(Finding::new(
                "container-too-deep",
                Severity::Error,
                format!("not opened: nesting depth {} reached", self.opts.max_depth),
            ));
            return Format::Unknown;
        }
        self.depth += 1;
        let fmt = dispatch(self, data, hint);
        self.depth -= 1;
        fmt
    }

    /// Scan a container member through the dispatcher. Returns the member's format.
    pub fn member(&mut self, name: &str, data: Data, hint: Hint) -> Format {
        self.within(name, |s| dispatch(s, data, hint)).unwrap_or(Format::Unknown)
    }

    /// Run `f` in the context of container member `name` (its findings and imports carry the
    /// member path), for containers that walk a member's layout themselves (torch's legacy tar).
    /// `None` when the depth budget is spent.
    pub fn within<R>(&mut self, name: &str, f: impl FnOnce(&mut Scan<'a>) -> R) -> Option<R> {
        if self.depth >= self.opts.max_depth {
            self.finding(
                Finding::new(
                    "container-too-deep",
                    Severity::Error,
                    format!("not opened: nesting depth {} reached", self.opts.max_depth),
                )
                .member(name),
            );
            return None;
        }
        let saved = self.member.take();
        self.member = Some(match &saved {
            Some(outer) => format!("{outer}!{name}"),
            None => name.to_string(),
        });
        self.depth += 1;
        let out = f(self);
        self.depth -= 1;
        self.member = saved;
        Some(out)
    }
}

/// Decompressed bytes spent by one file, shared by every reader that expands data.
#[derive(Debug)]
pub struct ExpandBudget {
    used: AtomicU64,
    max: u64,
    exceeded: AtomicBool,
}

impl ExpandBudget {
    fn new(max: u64) -> ExpandBudget {
        ExpandBudget { used: AtomicU64::new(0), max, exceeded: AtomicBool::new(false) }
    }
}

struct Limited {
    inner: Box<dyn Read + Send>,
    budget: Arc<ExpandBudget>,
}

impl Read for Limited {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let used = self.budget.used.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if used > self.budget.max {
            self.budget.exceeded.store(true, Ordering::Relaxed);
            return Err(io::Error::other("decompression budget exceeded"));
        }
        Ok(n)
    }
}

/// Scan one file on disk.
pub fn scan_path(path: &std::path::Path, display: &str, opts: &ScanOptions) -> FileReport {
    match crate::source::FileSource::open(path) {
        Ok(src) => scan_source(display, Arc::new(src), opts),
        Err(e) => {
            let mut f = Finding::new("read-error", Severity::Error, format!("cannot read file: {e}"));
            f.evidence = None;
            FileReport {
                path: display.to_string(),
                format: "unknown".into(),
                verdict: Verdict::Error,
                size: 0,
                imports: Vec::new(),
                findings: vec![f],
            }
        }
    }
}

/// Scan random-access bytes (a file, an LFS object, a blob); clamd sees them too when configured.
pub fn scan_source(display: &str, src: Arc<dyn Source>, opts: &ScanOptions) -> FileReport {
    let size = src.len();
    let clamav = opts.clamav.as_ref().map(|c| (c.clone(), src.clone()));
    scan_top(display, Data::Random(src), Some(size), opts, clamav)
}

/// Scan any data; `size` is reported as-is.
pub fn scan_data(display: &str, data: Data, size: Option<u64>, opts: &ScanOptions) -> FileReport {
    scan_top(display, data, size, opts, None)
}

type ClamavJob = (Arc<crate::clamav::ClamavConfig>, Arc<dyn Source>);

fn scan_top(display: &str, data: Data, size: Option<u64>, opts: &ScanOptions, clamav: Option<ClamavJob>) -> FileReport {
    let mut scan = Scan::new(opts);
    let format = {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dispatch(&mut scan, data, Hint::Sniff)));
        match run {
            Ok(f) => f,
            Err(_) => {
                scan.finding(Finding::new("internal-error", Severity::Error, "the scanner panicked on this file"));
                Format::Unknown
            }
        }
    };
    if scan.expanded.exceeded.load(Ordering::Relaxed) {
        let f = Finding::new(
            "expansion-budget-exceeded",
            Severity::Error,
            format!("decompressed data exceeds the budget of {} bytes", opts.max_expanded_bytes),
        );
        scan.finding(f);
    }
    if let Some((cfg, src)) = clamav {
        for f in crate::clamav::check(&cfg, src.as_ref()) {
            scan.finding(f);
        }
    }
    let Scan { out_imports: imports, out_findings: mut findings, model, in_context, .. } = scan;
    if in_context.is_empty() {
        findings.extend(opts.lists.classify_all(&imports));
    } else {
        let judged: Vec<Import> =
            imports.iter().enumerate().filter(|(i, _)| !in_context.contains(i)).map(|(_, imp)| imp.clone()).collect();
        findings.extend(opts.lists.classify_all(&judged));
    }
    let model = model || !imports.is_empty();
    let verdict = Verdict::from_findings(&findings, model);
    FileReport {
        path: display.to_string(),
        format: format.label(),
        verdict,
        size: size.unwrap_or(0),
        imports,
        findings,
    }
}

/// Detect and scan one piece of data in the current context.
fn dispatch(scan: &mut Scan<'_>, data: Data, hint: Hint) -> Format {
    let mut input_data = data;
    let format = match detect::sniff(&mut input_data, hint) {
        Ok(f) => f,
        Err(e) => {
            scan.finding(Finding::new("read-error", Severity::Error, format!("cannot read: {e}")));
            return Format::Unknown;
        }
    };
    crate::formats::scan(scan, format, input_data, hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_member_paths() {
        let opts = ScanOptions::default();
        let mut s = Scan::new(&opts);
        s.member = Some("a.zip".into());
        s.finding(Finding::new("x", Severity::Info, "m").member("b.pkl"));
        assert_eq!(s.out_findings[0].member.as_deref(), Some("a.zip!b.pkl"));
    }
}
