//! Git LFS objects outside a push. No forge runs a hook when an LFS object is uploaded, so:
//! `modelgate lfs scan` judges objects named by oid (for servers that can run a command
//! after an upload), and `modelgate lfs watch` polls a filesystem store, judges each object
//! once it is complete, and can move rejected objects to a quarantine directory so that
//! they can no longer be downloaded. Both write their verdicts to the cache the hook reads,
//! so a later push of a pointer to an object already judged reads none of its bytes.

use super::budget::FileMeter;
use super::gate::PolicyDecider;
use super::judge::{budget_judged, judge_lfs_object, run_pool, Jobs};
use super::{audit, now_secs, under, Action, Cache, HookConfig, Judged, Out};
use crate::finding::{Finding, Severity};
use crate::lfs::{self, Layout, LfsStore, Pointer};
use crate::policy::Policy;
use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// What an LFS command works with: the policy, the gate configuration it gives, and the
/// directory relative store, cache and audit-log paths are resolved against.
pub struct LfsRun<'p> {
    pub policy: &'p Policy,
    pub config: HookConfig,
    /// A repository's git directory, or any base directory for a server-wide store.
    pub base: PathBuf,
}

/// The verdict on one LFS object.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectVerdict {
    pub oid: String,
    pub verdict: String,
    pub format: String,
    pub size: u64,
    pub action: Action,
    /// What decided the action besides the verdict (a rule, `on_error`, `lfs_missing`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    pub cached: bool,
    pub imports: Vec<String>,
    pub findings: Vec<super::Fact>,
    /// Where a rejected object was moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<PathBuf>,
}

impl ObjectVerdict {
    fn new(oid: &str, j: Judged, action: Action, decided_by: Option<String>) -> ObjectVerdict {
        ObjectVerdict {
            oid: oid.to_string(),
            verdict: j.verdict.as_str().to_string(),
            format: j.format.clone(),
            size: j.size,
            action,
            decided_by,
            cached: j.cached,
            imports: j.imports.clone(),
            findings: j.findings,
            quarantined: None,
        }
    }

    /// One line for a terminal or a log.
    pub fn line(&self) -> String {
        let mut codes: Vec<&str> = Vec::new();
        for f in &self.findings {
            if !codes.contains(&f.code.as_str()) {
                codes.push(&f.code);
            }
        }
        let mut l = format!("sha256:{} {} ({}) {}", self.oid, self.verdict, self.format, self.action);
        if !codes.is_empty() {
            l.push_str(&format!(" [{}]", codes.join(", ")));
        }
        if let Some(e) = self.findings.iter().find_map(|f| f.evidence.as_deref()) {
            l.push_str(&format!(" evidence: {}", super::escape(e)));
        }
        if self.cached {
            l.push_str(" (cached)");
        }
        if let Some(q) = &self.quarantined {
            l.push_str(&format!(" quarantined to {}", q.display()));
        }
        l
    }
}

/// Accept `<oid>` or `sha256:<oid>` (64 lowercase hex characters).
pub fn parse_oid(text: &str) -> Result<String> {
    let t = text.trim();
    let oid = t.strip_prefix("sha256:").unwrap_or(t);
    if lfs::is_oid(oid) {
        Ok(oid.to_string())
    } else {
        bail!("not a git lfs oid (64 lowercase hex characters): {:?}", super::escape(t))
    }
}

impl LfsRun<'_> {
    fn cache(&self) -> Option<Cache> {
        self.config
            .cache_dir
            .as_ref()
            .map(|d| Cache::new(under(&self.base, d), &self.config.scan, &self.config.cache_salt))
    }

    fn decide(&self, oid: &str, j: Judged) -> ObjectVerdict {
        let decider = PolicyDecider { policy: self.policy, repos: Vec::new() };
        let (action, why) = decider.decide_at(&j, &[]);
        ObjectVerdict::new(oid, j, action, why)
    }

    fn audit(&self, event: &str, v: &[ObjectVerdict], out: &mut Out<'_>) {
        let records: Vec<serde_json::Value> = v
            .iter()
            .map(|o| {
                let codes: Vec<&str> = o.findings.iter().map(|f| f.code.as_str()).collect();
                serde_json::json!({
                    "time": now_secs(),
                    "event": event,
                    "lfs_oid": o.oid,
                    "verdict": o.verdict,
                    "format": o.format,
                    "action": o.action.as_str(),
                    "codes": codes,
                    "imports": o.imports,
                    "policy": o.decided_by,
                    "quarantined": o.quarantined,
                })
            })
            .collect();
        audit(&self.base, &self.config, &records, out);
    }

    /// Judge the objects named by `oids` (validated with [`parse_oid`]), in order.
    pub fn scan(&self, oids: &[String], err: &mut dyn std::io::Write) -> Result<Vec<ObjectVerdict>> {
        self.config.lfs.validate().map_err(|e| anyhow!("bad lfs configuration: {e}"))?;
        let jobs = ObjectJobs {
            oids: oids.to_vec(),
            base: self.base.clone(),
            store: self.config.lfs.clone(),
            config: self.config.clone(),
            cache: self.cache(),
            watch: false,
        };
        let judged = run_pool(Arc::new(jobs), &self.config.limits);
        let out: Vec<ObjectVerdict> = oids.iter().zip(judged).map(|(oid, j)| self.decide(oid, j)).collect();
        self.audit("lfs-scanned", &out, &mut Out::new(err, false));
        Ok(out)
    }
}

/// Objects to judge by oid.
struct ObjectJobs {
    oids: Vec<String>,
    base: PathBuf,
    store: LfsStore,
    config: HookConfig,
    cache: Option<Cache>,
    /// Watching: a cached verdict for an object of the same size is taken before hashing,
    /// and every other object is hashed (a half-written file does not hash to its oid).
    watch: bool,
}

impl Jobs for ObjectJobs {
    type Local = ();

    fn len(&self) -> usize {
        self.oids.len()
    }

    fn local(&self) {}

    fn judge(&self, _: &mut (), index: usize, meter: &Arc<FileMeter>) -> (Judged, Option<String>) {
        let Some(oid) = self.oids.get(index) else {
            return (budget_judged("internal-error", "no such object".into()), None);
        };
        let path = match self.store.object_path(&self.base, oid) {
            Ok(p) => p,
            Err(e) => return (Judged::from_findings(vec![unavailable(&e.0)], 0, Some(oid.clone())), None),
        };
        let size = match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => return (missing(oid, &path), None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (missing(oid, &path), None),
            Err(e) => return (Judged::from_findings(vec![unavailable(&e.to_string())], 0, Some(oid.clone())), None),
        };
        if let Some(m) = self.config.limits.max_file_size.filter(|m| size > *m) {
            let f = Finding::new(
                "file-too-large",
                Severity::Error,
                format!("{size} bytes is more than the policy's max_file_size of {m} bytes; not scanned"),
            );
            return (Judged::from_findings(vec![f], size, Some(oid.clone())), None);
        }
        let key = Cache::lfs_key(oid);
        if self.watch {
            if let Some(j) = self.cache.as_ref().and_then(|c| c.get(&key)).filter(|j| j.size == size) {
                return (Judged { cached: true, ..j }, None);
            }
        }
        let store = LfsStore { verify_sha256: self.store.verify_sha256 || self.watch, ..self.store.clone() };
        let pointer = Pointer { oid: oid.clone(), size, extensions: Vec::new() };
        let display = format!("sha256:{oid}");
        judge_lfs_object(&self.base, &store, &pointer, &display, &self.config.scan, self.cache.as_ref(), meter)
    }

    fn cache(&self) -> Option<&Cache> {
        self.cache.as_ref()
    }
}

fn missing(oid: &str, path: &Path) -> Judged {
    let f = Finding::new("lfs-object-missing", Severity::Error, format!("no lfs object at {}", path.display()))
        .evidence(format!("sha256:{oid}"));
    Judged::from_findings(vec![f], 0, Some(oid.to_string()))
}

fn unavailable(msg: &str) -> Finding {
    Finding::new("lfs-store-unavailable", Severity::Error, format!("cannot read the lfs store: {msg}"))
}

/// How `modelgate lfs watch` runs.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Move rejected objects here (created if needed).
    pub quarantine: Option<PathBuf>,
    /// Time between polls.
    pub interval: Duration,
    /// A file whose size and modification time have not changed for this long (or since
    /// the previous poll) is taken as finished.
    pub settle: Duration,
    /// Stop after this many polls (`--once` is 1); `None`: forever.
    pub max_iterations: Option<u64>,
    /// Objects are remembered one by one only while recent, so that memory does not grow
    /// with the store: an object whose status last changed (its ctime, which writing it or
    /// renaming it into the store sets, and which cannot be set back) before the previous
    /// poll began, less this margin, was seen by that poll and is passed over. The margin
    /// covers the clock skew of a network filesystem. [`WatchOptions::REMEMBER`] by default.
    pub remember: Duration,
}

impl WatchOptions {
    /// The default [`WatchOptions::remember`].
    pub const REMEMBER: Duration = Duration::from_secs(600);
}

/// Counts over a watch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WatchSummary {
    pub polls: u64,
    pub judged: u64,
    pub rejected: u64,
    pub quarantined: u64,
    /// Objects seen but not finished yet at the last poll.
    pub pending: u64,
    /// Objects remembered one by one after the last poll (unfinished or recently judged).
    pub remembered: u64,
}

/// A file seen in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime: SystemTime,
    /// The later of ctime and mtime.
    changed: SystemTime,
}

/// A mismatching object younger than this is taken as still being written.
const MISMATCH_GRACE: Duration = Duration::from_secs(60);

/// Objects judged together (the listing is streamed, so memory does not grow with the store).
const WATCH_BATCH: usize = 256;

impl LfsRun<'_> {
    /// The directory the store's objects are under, for listing.
    fn store_root(&self) -> Result<PathBuf> {
        let store = &self.config.lfs;
        if store.layout == Layout::Template {
            bail!("lfs watch needs a git-lfs, gitea or gitlab layout (a template store cannot be listed)");
        }
        store.validate().map_err(|e| anyhow!("bad lfs configuration: {e}"))?;
        let probe = store.object_path(&self.base, &"0".repeat(64)).map_err(|e| anyhow!("{e}"))?;
        probe
            .parent()
            .and_then(Path::parent)
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .ok_or_else(|| anyhow!("cannot find the lfs store root"))
    }

    /// Poll the store, judge finished objects, quarantine rejected ones. `report` is called
    /// for every object judged; `err` receives warnings.
    pub fn watch(
        &self,
        opts: &WatchOptions,
        report: &mut dyn FnMut(&ObjectVerdict),
        err: &mut dyn std::io::Write,
    ) -> Result<WatchSummary> {
        let root = self.store_root()?;
        if let Some(q) = &opts.quarantine {
            std::fs::create_dir_all(q).with_context(|| format!("cannot create quarantine {}", q.display()))?;
        }
        let mut w = Watcher {
            run: self,
            opts,
            root,
            report,
            out: Out::new(err, false),
            pending: HashMap::new(),
            recent: HashMap::new(),
            horizon: None,
            started: SystemTime::now(),
            ready: Vec::new(),
            unfinished: 0,
            summary: WatchSummary::default(),
        };
        loop {
            w.poll();
            if opts.max_iterations.is_some_and(|m| w.summary.polls >= m) {
                return Ok(w.summary);
            }
            std::thread::sleep(opts.interval);
        }
    }
}

/// The state of a watch between polls.
struct Watcher<'w, 'p> {
    run: &'w LfsRun<'p>,
    opts: &'w WatchOptions,
    root: PathBuf,
    report: &'w mut dyn FnMut(&ObjectVerdict),
    out: Out<'w>,
    /// Objects seen and not judged yet, with the poll that last listed them.
    pending: HashMap<String, (Stamp, u64)>,
    /// Objects judged that changed too recently to be passed over by [`Watcher::horizon`].
    recent: HashMap<String, Stamp>,
    /// Objects that changed before this were seen by an earlier poll.
    horizon: Option<SystemTime>,
    /// When the current poll began.
    started: SystemTime,
    ready: Vec<(String, Stamp, Duration)>,
    unfinished: u64,
    summary: WatchSummary,
}

impl Watcher<'_, '_> {
    fn poll(&mut self) {
        self.summary.polls += 1;
        self.started = fs_now();
        self.unfinished = 0;
        let root = self.root.clone();
        each_object(&root, self.run.config.lfs.layout, &mut |oid, stamp| self.consider(oid, stamp));
        self.judge_ready();
        let poll = self.summary.polls;
        // Gone from the store: forget.
        self.pending.retain(|_, (_, listed)| *listed == poll);
        let horizon = self.started.checked_sub(self.opts.remember);
        if let Some(h) = horizon {
            self.recent.retain(|_, s| s.changed >= h);
        }
        self.horizon = horizon;
        self.summary.pending = self.unfinished;
        self.summary.remembered = (self.pending.len() + self.recent.len()) as u64;
        self.out.flush();
    }

    fn consider(&mut self, oid: String, stamp: Stamp) {
        let pending = self.pending.get(&oid).map(|(s, _)| *s);
        if pending.is_none() && self.horizon.is_some_and(|h| stamp.changed < h) {
            return;
        }
        if self.recent.get(&oid) == Some(&stamp) {
            return;
        }
        let age = self.started.duration_since(stamp.mtime).unwrap_or_default();
        let settled = pending == Some(stamp) || age >= self.opts.settle;
        self.pending.insert(oid.clone(), (stamp, self.summary.polls));
        if settled {
            self.ready.push((oid, stamp, age));
            if self.ready.len() >= WATCH_BATCH {
                self.judge_ready();
            }
        } else {
            self.unfinished += 1;
        }
    }

    fn judge_ready(&mut self) {
        if self.ready.is_empty() {
            return;
        }
        let ready = std::mem::take(&mut self.ready);
        let run = self.run;
        let jobs = ObjectJobs {
            oids: ready.iter().map(|(o, _, _)| o.clone()).collect(),
            base: run.base.clone(),
            store: run.config.lfs.clone(),
            config: run.config.clone(),
            cache: run.cache(),
            watch: true,
        };
        let started = Instant::now();
        let judged = run_pool(Arc::new(jobs), &run.config.limits);
        let mut verdicts = Vec::new();
        for ((oid, stamp, age), j) in ready.into_iter().zip(judged) {
            let mismatch = j.findings.iter().any(|f| f.code == "lfs-object-mismatch");
            let vanished = j.findings.iter().any(|f| f.code == "lfs-object-missing");
            if vanished {
                // Moved away meanwhile: looked at afresh if it comes back.
                self.pending.remove(&oid);
                continue;
            }
            if mismatch && age + started.elapsed() < self.opts.settle + MISMATCH_GRACE {
                // Still being written: look again later.
                self.unfinished += 1;
                continue;
            }
            let mut v = run.decide(&oid, j);
            if v.action == Action::Reject {
                self.summary.rejected += 1;
                if let Some(q) = &self.opts.quarantine {
                    let layout = run.config.lfs.layout;
                    match quarantine(&self.root, layout, &run.base, &run.config.lfs, &oid, q, &v) {
                        Ok(dest) => {
                            self.summary.quarantined += 1;
                            v.quarantined = Some(dest);
                        }
                        Err(e) => self.out.line(&format!("modelgate: warning: cannot quarantine sha256:{oid}: {e:#}")),
                    }
                }
            }
            self.summary.judged += 1;
            self.pending.remove(&oid);
            // Older changes are passed over by the next poll's horizon anyway.
            if self.started.checked_sub(self.opts.remember).is_none_or(|h| stamp.changed >= h) {
                self.recent.insert(oid, stamp);
            }
            (self.report)(&v);
            verdicts.push(v);
        }
        run.audit("lfs-watched", &verdicts, &mut self.out);
    }
}

/// Call `f` for every object file under `root` whose place and name make a valid oid for
/// `layout`, directory by directory (sorted), without listing the whole store at once.
/// Temporary and partial files (other names, `tmp/` directories) are never candidates.
fn each_object(root: &Path, layout: Layout, f: &mut dyn FnMut(String, Stamp)) {
    let hex2 = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let dirs = |p: &Path| -> Vec<(String, PathBuf)> {
        let Ok(rd) = std::fs::read_dir(p) else { return Vec::new() };
        let mut v: Vec<_> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
            .filter(|(n, _)| hex2(n))
            .collect();
        v.sort();
        v
    };
    for (a, pa) in dirs(root) {
        for (b, pb) in dirs(&pa) {
            let Ok(rd) = std::fs::read_dir(&pb) else { continue };
            let mut found = Vec::new();
            for e in rd.filter_map(|e| e.ok()) {
                let Ok(name) = e.file_name().into_string() else { continue };
                let oid = match layout {
                    Layout::GitLfs if name.starts_with(&format!("{a}{b}")) => name,
                    Layout::Gitea | Layout::Gitlab => format!("{a}{b}{name}"),
                    _ => continue,
                };
                if !lfs::is_oid(&oid) {
                    continue;
                }
                // Regular files only: never follow a link out of the store.
                let Ok(m) = std::fs::symlink_metadata(e.path()) else { continue };
                if m.is_file() {
                    found.push((oid, stamp(&m)));
                }
            }
            found.sort_by(|x, y| x.0.cmp(&y.0));
            for (oid, st) in found {
                f(oid, st);
            }
        }
    }
}

fn stamp(m: &std::fs::Metadata) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let mtime = m.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let ctime = u64::try_from(m.ctime())
        .ok()
        .and_then(|s| SystemTime::UNIX_EPOCH.checked_add(Duration::new(s, u32::try_from(m.ctime_nsec()).unwrap_or(0))))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Stamp { size: m.len(), mtime, changed: ctime.max(mtime) }
}

/// Move a rejected object out of the store, with its verdict beside it.
fn quarantine(
    root: &Path,
    layout: Layout,
    base: &Path,
    store: &LfsStore,
    oid: &str,
    dir: &Path,
    v: &ObjectVerdict,
) -> Result<PathBuf> {
    let from = store.object_path(base, oid).map_err(|e| anyhow!("{e}"))?;
    if !from.starts_with(root) || !matches!(layout, Layout::GitLfs | Layout::Gitea | Layout::Gitlab) {
        bail!("object path {} is outside the store", from.display());
    }
    let dest = dir.join(oid);
    if let Err(e) = std::fs::rename(&from, &dest) {
        // Another filesystem: copy, then remove the original.
        if e.raw_os_error() != Some(18) {
            return Err(e).with_context(|| format!("cannot move {}", from.display()));
        }
        std::fs::copy(&from, &dest).with_context(|| format!("cannot copy {}", from.display()))?;
        std::fs::remove_file(&from).with_context(|| format!("cannot remove {}", from.display()))?;
    }
    let meta = serde_json::to_vec_pretty(&serde_json::json!({
        "time": now_secs(),
        "moved_from": from,
        "verdict": v,
    }))?;
    std::fs::write(dir.join(format!("{oid}.json")), meta)?;
    Ok(dest)
}

/// Now, as file times will say it: those come from the kernel's coarse clock, which lags the
/// system clock by up to a tick, so a file changed just after `SystemTime::now()` can carry an
/// earlier time and be passed over as old. A new file's time bounds it from below.
fn fs_now() -> SystemTime {
    let now = SystemTime::now();
    tempfile::tempfile().and_then(|f| f.metadata()).and_then(|m| m.modified()).map_or(now, |t| t.min(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_are_validated() {
        let oid = "ab".repeat(32);
        assert_eq!(parse_oid(&oid).unwrap(), oid);
        assert_eq!(parse_oid(&format!(" sha256:{oid}\n")).unwrap(), oid);
        assert!(parse_oid("../../etc/passwd").is_err());
        assert!(parse_oid(&oid.to_uppercase()).is_err());
        assert!(parse_oid(&oid[1..]).is_err());
    }

    #[test]
    fn listing_skips_temporary_and_misplaced_files() {
        let dir = tempfile::tempdir().unwrap();
        let oid = "ab".repeat(32);
        let gitea = dir.path().join("ab/ab");
        std::fs::create_dir_all(&gitea).unwrap();
        std::fs::write(gitea.join(&oid[4..]), b"x").unwrap();
        std::fs::write(gitea.join("upload-123.tmp"), b"x").unwrap();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        std::fs::write(dir.path().join("tmp").join(&oid), b"x").unwrap();
        let list = |layout| {
            let mut v = Vec::new();
            each_object(dir.path(), layout, &mut |oid, _| v.push(oid));
            v
        };
        let l = list(Layout::Gitea);
        assert_eq!(l, std::slice::from_ref(&oid));
        // The git-lfs layout names files by the whole oid, matching their directories.
        std::fs::write(gitea.join(&oid), b"x").unwrap();
        std::fs::write(gitea.join("cd".repeat(32)), b"x").unwrap();
        assert_eq!(list(Layout::GitLfs), [oid]);
    }
}
