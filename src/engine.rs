//! The dispatcher: sniff a target's content, hand it to the format parser, feed container
//! members back through itself under a depth and byte budget, then classify imports
//! against the allow/deny lists. Parsers never see policy, git or output.
//!
//! Every budget is the file's, shared by all nesting levels and parser instances (a crafted
//! file gets one allowance, not one per archive level): bytes decompressed, bytes held in
//! memory at once, archive members listed, member bytes handed back as windows (overlapping
//! members), structure bytes read by pointer-following parsers. Each ends in an `error`
//! finding.

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
    /// Decompressed bytes one file may expand to in total (zip bombs). Past [`EXPAND_FLOOR`] a
    /// file of known size may also expand at most [`EXPAND_RATIO`] times its size.
    pub max_expanded_bytes: u64,
    /// Bytes held in memory at once for one file (members that must be buffered to be read: a
    /// compressed nested archive, a 7z member), all nesting levels together.
    pub max_buffered_bytes: u64,
    /// Archive members per file, all nested archives together.
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
        code: "buffer-budget-exceeded",
        severity: Severity::Error,
        summary: "data that must be held in memory (a compressed nested archive, ...) exceeds the per-file budget",
        fix: "unpack the nested archives, or raise max_buffered_bytes in the policy if the file is trusted",
    },
    crate::finding::CodeInfo {
        code: "overlap-budget-exceeded",
        severity: Severity::Error,
        summary: "archive members overlap so much that scanning them all would read the file many times over",
        fix: "re-create the archive so that its members do not share bytes",
    },
    crate::finding::CodeInfo {
        code: "model-content-unrecognised",
        severity: Severity::Error,
        summary: "the name says model file, but the content is no format modelgate recognises",
        fix: "check the file: a loader may read it in a way modelgate cannot judge; re-export it in a standard format",
    },
    crate::finding::CodeInfo {
        code: "internal-error",
        severity: Severity::Error,
        summary: "modelgate hit an internal error while scanning this file",
        fix: "report it with the file's format; the file is rejected until it can be judged",
    },
];

/// Per-file scan state shared by the dispatcher and the parsers it calls: the sink for
/// findings and imports, the per-file budgets, and the way containers hand members back.
pub struct Scan<'a> {
    pub opts: &'a ScanOptions,
    /// Member path of what is being scanned now (`None` at the top level).
    member: Option<String>,
    /// The scanned file's own names (its path as given; a git blob may have several), which may
    /// claim a model format.
    names: Vec<String>,
    depth: u32,
    expanded: Arc<ExpandBudget>,
    budget: Arc<FileBudget>,
    out_imports: Vec<Import>,
    /// Indices into `out_imports` that a container judged in its own loader's context.
    in_context: std::collections::HashSet<usize>,
    out_findings: Vec<Finding>,
    /// A member of a model format was seen (so an empty finding list means "safe").
    model: bool,
    /// Pickle work this file may still cost, shared by every pickle stream in it.
    pub pickle: crate::formats::pickle::Budget,
    /// Inside a joblib `ZF` stream: content no format matches there is raw array data (see
    /// `formats::claimed_but_unknown`), so a name's model claim is not broken by it.
    pub in_joblib_zfile: bool,
    /// The source (its address) that [`detect::sniff`] just found no zip end record in,
    /// handed to the `formats::scan` that follows, which takes it at once (so it never
    /// outlives the source): that scan's polyglot check need not search the tail again.
    pub no_end_record: Option<usize>,
}

/// Work one file may cause beyond what its own bytes cost: every budget here is shared by all
/// nesting levels and parser instances of the file, so a crafted file gets one allowance, not
/// one per archive level. Each budget ends in an `error` finding.
#[derive(Debug)]
pub struct FileBudget {
    /// Archive members listed so far, all archives of the file together.
    members: AtomicU64,
    max_members: u64,
    /// Bytes held in memory right now by buffers (nested compressed archives, ...).
    held: Arc<AtomicU64>,
    max_held: u64,
    /// Bytes of archive members handed back as windows of bytes already in hand: members that
    /// overlap make a file of a few KB read as gigabytes. The allowance is a few passes over
    /// every byte the file has (its own and those decompressed into buffers).
    windows: AtomicU64,
    max_windows: AtomicU64,
    /// Bytes of structure read by parsers that follow pointers (HDF5).
    structure: AtomicU64,
    max_structure: u64,
}

/// Decompressed bytes any file may expand to whatever its size (within `max_expanded_bytes`).
pub const EXPAND_FLOOR: u64 = 64 << 20;
/// Past [`EXPAND_FLOOR`], a file may expand to this many times its size: one deflate layer
/// reaches at most ~1032:1, and real checkpoints compress a few times; more is layers of
/// compression over nothing (a bomb). Decoding costs time per byte (xz and bzip2 decode zeros
/// at tens of MB/s), so a few KB must not buy gigabytes.
pub const EXPAND_RATIO: u64 = 1100;

/// The expansion budget of a file of `size` bytes (`None`: a stream of unknown length).
fn expand_limit(opts: &ScanOptions, size: Option<u64>) -> u64 {
    match size {
        Some(n) => opts.max_expanded_bytes.min(EXPAND_FLOOR.max(n.saturating_mul(EXPAND_RATIO))),
        None => opts.max_expanded_bytes,
    }
}

/// Member bytes any file may hand back beyond one pass per nesting level over its bytes.
const WINDOW_SLACK: u64 = 64 << 20;

/// Structure bytes the pointer-following parsers (HDF5) may read per file.
pub const MAX_STRUCTURE_BYTES: u64 = 1 << 30;

impl FileBudget {
    fn new(opts: &ScanOptions, size: u64) -> FileBudget {
        let levels = u64::from(opts.max_depth) + 1;
        FileBudget {
            members: AtomicU64::new(0),
            max_members: opts.max_members,
            held: Arc::new(AtomicU64::new(0)),
            max_held: opts.max_buffered_bytes,
            windows: AtomicU64::new(0),
            max_windows: AtomicU64::new(levels.saturating_mul(size).saturating_add(WINDOW_SLACK)),
            structure: AtomicU64::new(0),
            max_structure: MAX_STRUCTURE_BYTES,
        }
    }
}

impl FileBudget {
    /// Count `n` bytes of structure read by a parser that follows pointers (HDF5); false
    /// once the file's budget of [`MAX_STRUCTURE_BYTES`] is spent.
    pub fn take_structure(&self, n: u64) -> bool {
        take(&self.structure, self.max_structure, n)
    }
}

/// Take `n` units from a shared counter capped at `max`; false (and nothing taken) past it.
fn take(counter: &AtomicU64, max: u64, n: u64) -> bool {
    counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| used.checked_add(n).filter(|&u| u <= max)).is_ok()
}

/// Bytes held in memory for one file, released when the buffer goes.
struct Held {
    counter: Arc<AtomicU64>,
    n: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.n, Ordering::Relaxed);
    }
}

/// A buffered stream, counted against its file's budget of bytes held while it lives.
struct BufferedSource {
    bytes: Vec<u8>,
    _held: Held,
}

impl Source for BufferedSource {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let data = usize::try_from(offset).ok().and_then(|o| self.bytes.get(o..)).unwrap_or(&[]);
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        Ok(n)
    }
}

/// A stream read into memory by [`Scan::buffer`].
pub enum Buffered<R> {
    /// All of it, counted against the file's budget while the source lives.
    Whole(Arc<dyn Source>),
    /// The file's budget of bytes held at once ran out: what was read (no longer counted),
    /// and the reader to go on with.
    Over(Vec<u8>, R),
    /// The reader failed: what it gave before, and the error.
    Failed(Arc<dyn Source>, io::Error),
}

impl<'a> Scan<'a> {
    fn new(opts: &'a ScanOptions, names: Vec<String>, size: Option<u64>) -> Scan<'a> {
        Scan {
            opts,
            member: None,
            names,
            depth: 0,
            expanded: Arc::new(ExpandBudget::new(expand_limit(opts, size))),
            budget: Arc::new(FileBudget::new(opts, size.unwrap_or(0))),
            out_imports: Vec::new(),
            in_context: std::collections::HashSet::new(),
            out_findings: Vec::new(),
            model: false,
            pickle: crate::formats::pickle::Budget::new(opts),
            in_joblib_zfile: false,
            no_end_record: None,
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

    /// The names of what is being scanned now: the innermost member's path inside its archive,
    /// or the file's own paths at the top level.
    pub fn current_names(&self) -> Vec<&str> {
        match &self.member {
            Some(m) => m.rsplit('!').next().into_iter().collect(),
            None => self.names.iter().map(String::as_str).collect(),
        }
    }

    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// Wrap a decompressing reader so that the file's total expansion is bounded; past the
    /// budget reads fail and the file gets an `expansion-budget-exceeded` finding.
    pub fn limit(&self, r: Box<dyn Read + Send>) -> Box<dyn Read + Send> {
        Box::new(Limited { inner: r, budget: self.expanded.clone() })
    }

    /// Count `n` bytes a decoder produced against the file's expansion budget (for decoders
    /// that cannot be wrapped by [`Scan::limit`]); false once it is spent.
    pub fn expand(&self, n: u64) -> bool {
        self.expanded.charge(n)
    }

    /// Count `n` archive members against the file's member budget (all archives together).
    /// Returns how many may be read: fewer than `n` once the budget runs out.
    pub fn take_members(&self, n: u64) -> u64 {
        let b = &self.budget;
        let mut granted = 0;
        let _ = b.members.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
            granted = n.min(b.max_members.saturating_sub(used));
            Some(used + granted)
        });
        granted
    }

    /// Archive members the file may still list.
    pub fn members_left(&self) -> u64 {
        self.budget.max_members.saturating_sub(self.budget.members.load(Ordering::Relaxed))
    }

    /// Count an archive member handed back as a window of `len` bytes already in hand (a
    /// stored member). False when the file's window budget is spent: members that overlap
    /// re-read the same bytes, and a few KB could otherwise read as gigabytes. The caller
    /// stops and reports with [`Scan::overlap_exceeded`].
    pub fn take_window(&self, len: u64) -> bool {
        take(&self.budget.windows, self.budget.max_windows.load(Ordering::Relaxed), len)
    }

    /// The finding for a spent window budget.
    pub fn overlap_exceeded(&mut self) {
        let f = Finding::new(
            "overlap-budget-exceeded",
            Severity::Error,
            format!(
                "archive members overlap: their bytes add up to more than {} bytes, several passes over the file; the rest were not scanned",
                self.budget.max_windows.load(Ordering::Relaxed)
            ),
        );
        self.finding(f);
    }

    /// The file's budgets, for parsers that hold them while they borrow no `Scan`.
    pub fn file_budget(&self) -> Arc<FileBudget> {
        self.budget.clone()
    }

    /// Read a stream into memory, counting the bytes against the file's budget of bytes held
    /// at once (a nested archive that is compressed at every level holds one buffer per level,
    /// all alive together). The bytes are released when the returned source is dropped.
    pub fn buffer<R: Read>(&self, mut r: R, size_hint: Option<u64>) -> Buffered<R> {
        let max = self.budget.max_held;
        let mut held = Held { counter: self.budget.held.clone(), n: 0 };
        let mut bytes: Vec<u8> = Vec::new();
        let first = size_hint.unwrap_or(0).clamp(64 << 10, 16 << 20);
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            let n = match r.read(&mut chunk) {
                Ok(0) => {
                    // Members of a buffered archive are windows of the buffer: a few passes more.
                    let levels = u64::from(self.opts.max_depth) + 1;
                    self.budget.max_windows.fetch_add(levels.saturating_mul(bytes.len() as u64), Ordering::Relaxed);
                    return Buffered::Whole(Arc::new(BufferedSource { bytes, _held: held }));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Buffered::Failed(Arc::new(BufferedSource { bytes, _held: held }), e),
            };
            if bytes.len() + n > bytes.capacity() {
                // Grow by doubling, never past what the file's budget still allows.
                let need = (bytes.len() + n - bytes.capacity()) as u64;
                let want = (bytes.len() as u64).max(first).max(need);
                let left = max.saturating_sub(held.counter.load(Ordering::Relaxed));
                let grant = if take(&held.counter, max, want) {
                    want
                } else if left >= need && take(&held.counter, max, left) {
                    left
                } else {
                    bytes.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
                    return Buffered::Over(bytes, r);
                };
                held.n += grant;
                let room = bytes.capacity() - bytes.len();
                bytes.reserve_exact(room.saturating_add(usize::try_from(grant).unwrap_or(usize::MAX)));
            }
            bytes.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
        }
    }

    /// Random access to `data` (a stream is buffered by [`Scan::buffer`]); on failure the
    /// finding is recorded and `None` returned. `what` names the data in the message.
    pub fn random(&mut self, data: Data, what: &str) -> Option<Arc<dyn Source>> {
        match data {
            Data::Random(src) => Some(src),
            Data::Stream(r, size) => match self.buffer(r, size) {
                Buffered::Whole(src) => Some(src),
                Buffered::Over(..) => {
                    let max = self.budget.max_held;
                    self.finding(Finding::new(
                        "buffer-budget-exceeded",
                        Severity::Error,
                        format!("cannot read {what}: it must be held in memory, and more than {max} bytes would be held at once for this file"),
                    ));
                    None
                }
                Buffered::Failed(_, e) => {
                    self.finding(Finding::new("read-error", Severity::Error, format!("cannot read {what}: {e}")));
                    None
                }
            },
        }
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

    fn charge(&self, n: u64) -> bool {
        let used = self.used.fetch_add(n, Ordering::Relaxed).saturating_add(n);
        if used > self.max {
            self.exceeded.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }
}

struct Limited {
    inner: Box<dyn Read + Send>,
    budget: Arc<ExpandBudget>,
}

impl Read for Limited {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if !self.budget.charge(n as u64) {
            return Err(io::Error::other("decompression budget exceeded"));
        }
        Ok(n)
    }
}

/// Scan one file on disk (`display` is its path as given, and the name it goes by).
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
/// `display` is also the name the bytes go by: a name that claims a model format (`*.pt`) makes
/// content that matches no format an `error`.
pub fn scan_source(display: &str, src: Arc<dyn Source>, opts: &ScanOptions) -> FileReport {
    scan_source_named(display, &[], src, opts)
}

/// [`scan_source`] for bytes known under more names than `display` (a git blob at several
/// paths): if any of them claims a model format, unrecognised content is an `error`.
pub fn scan_source_named(display: &str, names: &[&str], src: Arc<dyn Source>, opts: &ScanOptions) -> FileReport {
    let size = src.len();
    let clamav = opts.clamav.as_ref().map(|c| (c.clone(), src.clone()));
    let names = std::iter::once(display).chain(names.iter().copied()).map(str::to_string).collect();
    scan_top(display, names, Data::Random(src), Some(size), opts, clamav)
}

/// Scan any data; `size` is reported as-is and `display` is the name it goes by.
pub fn scan_data(display: &str, data: Data, size: Option<u64>, opts: &ScanOptions) -> FileReport {
    scan_top(display, vec![display.to_string()], data, size, opts, None)
}

/// Scan `data` as `format`, skipping detection: for fuzz targets and tests aimed at one parser
/// (every other step, budgets and the final classification included, is that of a scan).
pub fn scan_as(display: &str, format: Format, data: Data, opts: &ScanOptions) -> FileReport {
    FORCED.with(|f| *f.borrow_mut() = Some(format));
    let report = scan_top(display, vec![display.to_string()], data, None, opts, None);
    FORCED.with(|f| *f.borrow_mut() = None);
    report
}

thread_local! {
    /// The format [`scan_as`] imposes on the next top-level [`dispatch`] of this thread.
    static FORCED: std::cell::RefCell<Option<Format>> = const { std::cell::RefCell::new(None) };
}

type ClamavJob = (Arc<crate::clamav::ClamavConfig>, Arc<dyn Source>);

fn scan_top(
    display: &str,
    names: Vec<String>,
    data: Data,
    size: Option<u64>,
    opts: &ScanOptions,
    clamav: Option<ClamavJob>,
) -> FileReport {
    let mut scan = Scan::new(opts, names, size);
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
            format!(
                "decompressed data exceeds the budget of {} bytes (max_expanded_bytes, and at most {EXPAND_RATIO} times the file's size past {EXPAND_FLOOR} bytes)",
                scan.expanded.max
            ),
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
    if let Some(format) = FORCED.with(|f| f.borrow_mut().take()) {
        return crate::formats::scan(scan, format, data, hint);
    }
    let mut input_data = data;
    let format = match detect::sniff(&mut input_data, hint) {
        Ok(f) => f,
        Err(e) => {
            scan.finding(Finding::new("read-error", Severity::Error, format!("cannot read: {e}")));
            return Format::Unknown;
        }
    };
    // sniff searched the tail of a random-access source that it left unknown (or a pickle
    // probe) and found no end record there.
    if matches!(format, Format::Unknown | Format::PickleProbe) && hint != Hint::RawData {
        if let Data::Random(src) = &input_data {
            scan.no_end_record = Some(source_address(src));
        }
    }
    crate::formats::scan(scan, format, input_data, hint)
}

/// The address of a shared source (identity while it is alive).
pub(crate) fn source_address(src: &Arc<dyn crate::source::Source>) -> usize {
    Arc::as_ptr(src) as *const () as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_share_the_files_budget() {
        let opts = ScanOptions { max_buffered_bytes: 1 << 20, ..Default::default() };
        let s = Scan::new(&opts, Vec::new(), None);
        let exact = vec![7u8; 1 << 20];
        let Buffered::Whole(a) = s.buffer(&exact[..], None) else { panic!("1 MiB fits") };
        assert_eq!(a.len(), 1 << 20);
        // Nothing more fits while `a` is alive ...
        assert!(matches!(s.buffer(&[1u8][..], None), Buffered::Over(..)));
        drop(a);
        // ... and all of it once it is gone; one byte more than the budget never does.
        let over = vec![0u8; (1 << 20) + 1];
        match s.buffer(&over[..], Some(1 << 20)) {
            Buffered::Over(head, _) => assert!(head.len() <= over.len()),
            _ => panic!("over the budget"),
        }
        let Buffered::Whole(b) = s.buffer(&exact[..300_000], Some(10)) else { panic!() };
        assert_eq!(crate::source::read_up_to(b.as_ref(), 299_990, 100).unwrap(), vec![7u8; 10]);
        // What is held is the buffer's capacity: at least its length, at most twice it.
        let held = s.budget.held.load(Ordering::Relaxed);
        assert!((300_000..=600_000).contains(&held), "{held}");
        drop(b);
        assert_eq!(s.budget.held.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn members_and_windows_are_the_files() {
        let opts = ScanOptions { max_members: 10, max_depth: 1, ..Default::default() };
        let s = Scan::new(&opts, Vec::new(), Some(1000));
        assert_eq!(s.take_members(7), 7);
        assert_eq!(s.take_members(7), 3);
        assert_eq!(s.members_left(), 0);
        // Two passes over 1000 bytes, plus the slack.
        assert!(s.take_window(2000));
        assert!(s.take_window(WINDOW_SLACK));
        assert!(!s.take_window(1));
    }

    #[test]
    fn expansion_is_bounded_by_the_files_size() {
        let opts = ScanOptions::default();
        assert_eq!(expand_limit(&opts, Some(10)), EXPAND_FLOOR);
        assert_eq!(expand_limit(&opts, Some(1 << 30)), opts.max_expanded_bytes);
        assert_eq!(expand_limit(&opts, Some(1 << 20)), (1 << 20) * EXPAND_RATIO);
        assert_eq!(expand_limit(&opts, None), opts.max_expanded_bytes);
    }

    #[test]
    fn nested_member_paths() {
        let opts = ScanOptions::default();
        let mut s = Scan::new(&opts, Vec::new(), None);
        s.member = Some("a.zip".into());
        s.finding(Finding::new("x", Severity::Info, "m").member("b.pkl"));
        assert_eq!(s.out_findings[0].member.as_deref(), Some("a.zip!b.pkl"));
    }

    #[test]
    fn scan_as_skips_detection_once() {
        let opts = ScanOptions::default();
        let call = b"cos\nsystem\n(S'echo'\ntR.".to_vec();
        let forced = scan_as("x", Format::Npy, Data::bytes(call.clone()), &opts);
        assert_eq!(forced.format, "numpy");
        assert_ne!(forced.verdict, Verdict::Dangerous);
        // the next scan on this thread detects again
        let sniffed = scan_data("x", Data::bytes(call), None, &opts);
        assert_eq!(sniffed.format, "pickle");
        assert_eq!(sniffed.verdict, Verdict::Dangerous);
    }
}
