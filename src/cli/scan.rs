//! `modelgate scan`: expand arguments into targets (less `--exclude` globs), scan them in
//! parallel, and feed the printer in stable (path) order while later files are still being
//! scanned. A progress bar on a terminal is redrawn at most [`REDRAW_HZ`] times a second.

use crate::engine::{scan_path, FileReport, ScanOptions};
use crate::finding::{CodeInfo, Finding, Severity, Verdict};
use crate::policy::{Decision, Policy};
use crate::report::{Printer, Summary};
use anyhow::Context as _;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// The most progress-bar redraws per second (a human rate; a terminal drawing thousands of
/// lines a second slows the scan and flickers).
pub const REDRAW_HZ: u8 = 15;

pub const CODES: &[CodeInfo] = &[
    CodeInfo {
        code: "skipped-symlink",
        severity: Severity::Info,
        summary: "a symbolic link was not followed, so its target was not scanned",
        fix: "scan the link's target directly if it is a model you load",
    },
    CodeInfo {
        code: "skipped-special-file",
        severity: Severity::Info,
        summary: "a fifo, socket or device file was not read",
        fix: "nothing to do unless a model is served through it; scan the real file instead",
    },
];

/// One thing to report on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub path: PathBuf,
    /// Shown in reports.
    pub display: String,
    /// Matched by policy globs: relative to the directory argument, or the file argument as given.
    pub rel: String,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File,
    Symlink,
    Special,
    /// Could not be listed or inspected (missing, permission denied, ...).
    Unreadable(String),
}

/// `--exclude` globs, compiled as the policy's `paths` are (`policy::load::glob`: `*` and `?`
/// stay within one component, `**` spans several, `{a,b}` alternates).
pub fn excludes(globs: &[String]) -> anyhow::Result<GlobSet> {
    let mut set = GlobSetBuilder::new();
    for g in globs {
        if g.is_empty() {
            anyhow::bail!("--exclude: empty glob");
        }
        let glob = GlobBuilder::new(g)
            .literal_separator(true)
            .build()
            .map_err(|e| anyhow::anyhow!("--exclude: invalid glob `{g}`: {}", e.kind()))?;
        set.add(glob);
    }
    set.build().context("--exclude: cannot compile the globs")
}

/// A path (relative to its argument, `/`-separated) is excluded when it, or a directory it is
/// in, matches: `--exclude .git` leaves out everything below `.git/`.
fn is_excluded(set: &GlobSet, rel: &str) -> bool {
    if set.is_empty() {
        return false;
    }
    set.is_match(rel) || rel.match_indices('/').any(|(i, _)| rel.get(..i).is_some_and(|dir| set.is_match(dir)))
}

/// Expand arguments: directories recursively (symlinks not followed), sorted by display path,
/// duplicates removed. Missing paths become `Unreadable` targets, never an abort.
pub fn collect(args: &[PathBuf]) -> Vec<Target> {
    collect_excluding(args, &GlobSet::empty()).0
}

/// [`collect`], leaving out what `exclude` matches (against the path relative to the directory
/// argument, or a file argument as given, like the policy's `paths`); also returns how many
/// files were left out.
pub fn collect_excluding(args: &[PathBuf], exclude: &GlobSet) -> (Vec<Target>, u64) {
    let mut out = Vec::new();
    let mut excluded: Vec<String> = Vec::new();
    for arg in args {
        let display = clean(&arg.to_string_lossy());
        if is_excluded(exclude, &display) {
            excluded.push(display);
            continue;
        }
        let meta = match std::fs::symlink_metadata(arg) {
            Ok(m) => m,
            Err(e) => {
                out.push(target(arg.clone(), display.clone(), display, Kind::Unreadable(e.to_string())));
                continue;
            }
        };
        if !meta.is_dir() {
            out.push(target(arg.clone(), display.clone(), display, kind_of(&meta.file_type())));
            continue;
        }
        for entry in walkdir::WalkDir::new(arg).follow_links(false).min_depth(1) {
            match entry {
                Ok(e) if e.file_type().is_dir() => {}
                Ok(e) => {
                    let kind = kind_of(&e.file_type());
                    let rel = relative(e.path(), arg);
                    let display = clean(&e.path().to_string_lossy());
                    if is_excluded(exclude, &rel) {
                        excluded.push(display);
                        continue;
                    }
                    out.push(target(e.path().to_path_buf(), display, rel, kind));
                }
                Err(err) => {
                    let path = err.path().unwrap_or(arg).to_path_buf();
                    if is_excluded(exclude, &relative(&path, arg)) {
                        excluded.push(clean(&path.to_string_lossy()));
                        continue;
                    }
                    let msg = err.io_error().map_or_else(|| err.to_string(), |io| io.to_string());
                    out.push(target(
                        path.clone(),
                        clean(&path.to_string_lossy()),
                        relative(&path, arg),
                        Kind::Unreadable(msg),
                    ));
                }
            }
        }
    }
    out.sort_by(|a, b| a.display.cmp(&b.display));
    out.dedup_by(|a, b| a.display == b.display);
    excluded.sort();
    excluded.dedup();
    // A path both scanned (from one argument) and excluded (from another) is scanned.
    excluded.retain(|d| out.binary_search_by(|t| t.display.as_str().cmp(d)).is_err());
    (out, excluded.len() as u64)
}

fn target(path: PathBuf, display: String, rel: String, kind: Kind) -> Target {
    Target { path, display, rel, kind }
}

fn kind_of(t: &std::fs::FileType) -> Kind {
    if t.is_file() {
        Kind::File
    } else if t.is_symlink() {
        Kind::Symlink
    } else {
        Kind::Special
    }
}

fn clean(s: &str) -> String {
    let s = s.strip_prefix("./").unwrap_or(s);
    if std::path::MAIN_SEPARATOR == '\\' {
        s.replace('\\', "/")
    } else {
        s.to_string()
    }
}

/// `path` relative to `root`, `/`-separated.
fn relative(path: &Path, root: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// Scan (or describe) one target.
pub fn scan_target(t: &Target, opts: &ScanOptions) -> FileReport {
    let (format, finding) = match &t.kind {
        Kind::File => return scan_path(&t.path, &t.display, opts),
        Kind::Symlink => {
            let to = std::fs::read_link(&t.path).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
            let f = Finding::new("skipped-symlink", Severity::Info, "symbolic link not followed").evidence(to);
            ("symlink", f)
        }
        Kind::Special => ("special", Finding::new("skipped-special-file", Severity::Info, "special file not read")),
        Kind::Unreadable(e) => ("unknown", Finding::new("read-error", Severity::Error, format!("cannot read: {e}"))),
    };
    let findings = vec![finding];
    FileReport {
        path: t.display.clone(),
        format: format.to_string(),
        verdict: Verdict::from_findings(&findings, false),
        size: 0,
        imports: Vec::new(),
        findings,
    }
}

/// The policy's decision on a scanned file; when it would not pass and the policy pins
/// `[[allow]]` entries to content, the file's content ids are computed and checked too.
fn decide(policy: &Policy, t: &Target, report: &FileReport) -> Decision {
    let decision = policy.decide(report, &t.rel);
    let needs = policy.pins_needed();
    if decision.action == crate::policy::Action::Allow || needs == (false, false, false) || t.kind != Kind::File {
        return decision;
    }
    let ids = crate::source::FileSource::open(&t.path).and_then(|src| crate::policy::FileIds::of(&src, needs));
    match ids {
        Ok(ids) => {
            let pinned = policy.decide_content(report, &t.rel, ids.content());
            if pinned.allowed.is_some() {
                pinned
            } else {
                decision
            }
        }
        Err(_) => decision,
    }
}

/// What a completed scan produced besides the printed output.
#[derive(Debug, Default)]
pub struct Outcome {
    pub summary: Summary,
    /// Indices of the policy exceptions that dropped at least one finding.
    pub used: HashSet<usize>,
}

/// Standard output held back while a progress bar is drawn on the same terminal, written out
/// with the bar's redraws: one clear-and-redraw for many lines instead of one per file.
#[derive(Debug, Clone, Default)]
pub struct Held(Arc<Mutex<Vec<u8>>>);

impl Held {
    fn take(&self) -> Vec<u8> {
        self.0.lock().map(|mut b| std::mem::take(&mut *b)).unwrap_or_default()
    }
}

impl Write for Held {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().map_err(|_| std::io::Error::other("poisoned output buffer"))?.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How [`run`] works besides what it scans.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Worker threads; 0: one per core.
    pub jobs: usize,
    /// Show a progress bar on stderr once the scan has taken [`RunOptions::progress_after`].
    pub progress: bool,
    pub progress_after: Duration,
    /// The printer writes here instead of stdout; [`run`] passes it on to stdout between redraws.
    pub held: Option<Held>,
}

impl RunOptions {
    pub fn new(jobs: usize) -> RunOptions {
        RunOptions { jobs, progress: false, progress_after: Duration::from_secs(1), held: None }
    }
}

/// Scan every target on `opts.jobs` threads and push each file into `printer` in target order.
/// A progress bar appears on stderr when `opts.progress` is set and the scan is slow; it is
/// redrawn (and held output written) at most [`REDRAW_HZ`] times a second.
pub fn run(
    policy: &Policy,
    targets: &[Target],
    opts: &RunOptions,
    printer: &mut dyn Printer,
) -> anyhow::Result<Outcome> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(opts.jobs).build().context("cannot start worker threads")?;
    let scan_opts = policy.scan_options();
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(usize, FileReport, Decision)>();
    let bar = indicatif::ProgressBar::hidden();
    bar.set_length(targets.len() as u64);
    let started = Instant::now();
    let tick = Duration::from_millis(1000 / u64::from(REDRAW_HZ));
    let mut last_draw = started;
    let mut out = Outcome::default();
    let mut failed: Option<std::io::Error> = None;
    let mut stdout = std::io::stdout();
    // Write what the printer held, under one clear-and-redraw of the bar; false when there
    // was nothing to write.
    let mut pass_on = |bar: &indicatif::ProgressBar, failed: &mut Option<std::io::Error>| -> bool {
        let Some(held) = &opts.held else { return false };
        let bytes = held.take();
        if bytes.is_empty() || failed.is_some() {
            return false;
        }
        if let Err(e) = bar.suspend(|| stdout.write_all(&bytes).and_then(|()| stdout.flush())) {
            *failed = Some(e);
            stop.store(true, Ordering::Relaxed);
        }
        true
    };
    // Each tick draws the bar once: either held output is written (which redraws it) or the
    // position moves, alternately when both are due.
    let mut wrote_last_tick = false;

    std::thread::scope(|s| {
        let stop = &stop;
        s.spawn(move || {
            pool.install(|| {
                targets.par_iter().enumerate().for_each_with(tx, |tx, (i, t)| {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let report = scan_target(t, scan_opts);
                    let decision = decide(policy, t, &report);
                    let _ = tx.send((i, report, decision));
                })
            })
        });

        // Workers finish out of order; hold results until every earlier file is printed.
        let mut pending = BTreeMap::new();
        let mut next = 0;
        loop {
            let (item, done) = match rx.recv_timeout(tick) {
                Ok(item) => (Some(item), false),
                Err(mpsc::RecvTimeoutError::Timeout) => (None, false),
                Err(mpsc::RecvTimeoutError::Disconnected) => (None, true),
            };
            if let Some((i, report, decision)) = item {
                pending.insert(i, (report, decision));
            }
            while let Some((report, decision)) = pending.remove(&next) {
                next += 1;
                out.summary.add(&decision);
                out.used.extend(decision.suppressed.iter().map(|s| s.exception));
                if failed.is_none() {
                    if let Err(e) = printer.file(&report, &decision) {
                        failed = Some(e);
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            }
            if done {
                break;
            }
            if last_draw.elapsed() < tick {
                continue;
            }
            last_draw = Instant::now();
            if opts.progress && bar.is_hidden() && started.elapsed() >= opts.progress_after {
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} files {elapsed}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(REDRAW_HZ));
            }
            wrote_last_tick = !wrote_last_tick && pass_on(&bar, &mut failed);
            if !wrote_last_tick {
                bar.set_position(next as u64);
            }
        }
    });
    bar.finish_and_clear();
    pass_on(&bar, &mut failed);
    if let Some(e) = failed {
        return Err(e).context("cannot write the report");
    }
    if out.summary.files != targets.len() as u64 {
        anyhow::bail!("internal error: {} of {} files were scanned", out.summary.files, targets.len());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_path_is_an_error_target() {
        let t = collect(&[PathBuf::from("/nonexistent/modelgate/x.pt")]);
        assert_eq!(t.len(), 1);
        assert!(matches!(t[0].kind, Kind::Unreadable(_)));
        let r = scan_target(&t[0], &ScanOptions::default());
        assert_eq!(r.verdict, Verdict::Error);
        assert_eq!(r.findings[0].code, "read-error");
    }

    #[test]
    fn relative_paths_use_slashes() {
        assert_eq!(relative(Path::new("root/a/b.pt"), Path::new("root")), "a/b.pt");
        assert_eq!(relative(Path::new("root/a/b.pt"), Path::new("root/")), "a/b.pt");
        assert_eq!(clean("./x/y"), "x/y");
    }
}
