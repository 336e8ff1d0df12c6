//! Git LFS objects outside a push. No forge runs a hook when an LFS object is uploaded, so:
//! `modelgate lfs scan` judges objects named by oid (for servers that can run a command
//! after an upload), and `modelgate lfs watch` polls a filesystem store, judges each object
//! once it is complete, and can move rejected objects to a quarantine directory so that
//! they can no longer be downloaded. Both write their verdicts to the cache the hook reads,
//! so a later push of a pointer to an object already judged reads none of its bytes.

use super::budget::FileMeter;
use super::gate::PolicyDecider;
use super::judge::{budget_judged, judge_lfs_object, run_pool, Jobs, Names};
use super::{audit, now_secs, under, Action, Cache, HookConfig, Judged, Out};
use crate::finding::{Finding, Severity};
use crate::lfs::{self, Layout, LfsStore, Pointer, StoreRepo, TemplateBinding, TemplateToken as Token};
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
    /// The repository whose store holds it (a template store naming repositories).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    pub verdict: String,
    pub format: String,
    pub size: u64,
    /// `decision` in JSON, as in every other command's output.
    #[serde(rename = "decision")]
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
    fn new(key: &ObjKey, j: Judged, action: Action, decided_by: Option<String>) -> ObjectVerdict {
        ObjectVerdict {
            oid: key.oid.clone(),
            repo: key.repo.as_ref().map(|r| r.full().to_string()),
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
        let repo = self.repo.as_deref().map(|r| format!(" in {}", super::escape(r))).unwrap_or_default();
        let mut l = format!("sha256:{}{repo} {} ({}) {}", self.oid, self.verdict, self.format, self.action);
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

    fn decide(&self, key: &ObjKey, j: Judged) -> ObjectVerdict {
        let repo = key.repo.as_ref().or(self.config.lfs.repo.as_ref());
        let repos: Vec<String> = repo.iter().map(|r| r.full().to_string()).collect();
        let decider = PolicyDecider::new(self.policy, repos);
        let (action, why) = decider.decide_at(&j, &[]);
        ObjectVerdict::new(key, j, action, why)
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
                    "repo": o.repo,
                    "verdict": o.verdict,
                    "format": o.format,
                    "decision": o.action.as_str(),
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
        let keys: Vec<ObjKey> =
            oids.iter().map(|o| ObjKey { oid: o.clone(), repo: self.config.lfs.repo.clone() }).collect();
        let jobs = ObjectJobs {
            objects: keys.clone(),
            base: self.base.clone(),
            store: self.config.lfs.clone(),
            config: self.config.clone(),
            cache: self.cache(),
            watch: false,
        };
        let judged = run_pool(Arc::new(jobs), &self.config.limits);
        let out: Vec<ObjectVerdict> = keys.iter().zip(judged).map(|(k, j)| self.decide(k, j)).collect();
        self.audit("lfs-scanned", &out, &mut Out::new(err, false));
        Ok(out)
    }
}

/// An object of the store: its oid, and for a template store naming repositories, whose.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ObjKey {
    oid: String,
    repo: Option<StoreRepo>,
}

/// Objects to judge by oid.
struct ObjectJobs {
    objects: Vec<ObjKey>,
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
        self.objects.len()
    }

    fn local(&self) {}

    fn judge(&self, _: &mut (), index: usize, meter: &Arc<FileMeter>) -> (Judged, Option<String>) {
        let Some(ObjKey { oid, repo }) = self.objects.get(index) else {
            return (budget_judged("internal-error", "no such object".into()), None);
        };
        let store = LfsStore { repo: repo.clone().or_else(|| self.store.repo.clone()), ..self.store.clone() };
        // The store answers: here it is, not there (never uploaded), or cannot be asked.
        let found = crate::store::open(&store, &self.base).and_then(|s| Ok((s.head(oid)?, s.locate(oid))));
        let size = match found {
            Ok((Some(m), _)) => m.size,
            Ok((None, place)) => return (missing(oid, &place), None),
            Err(e) => return (Judged::from_findings(vec![unavailable(&e.0)], 0, Some(oid.clone())), None),
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
        // Watching a directory, a half-written file does not hash to its oid; an S3 object
        // appears whole (PUT and multipart completion are atomic): no need to read it all.
        let hash = self.watch && store.layout != Layout::S3;
        let store = LfsStore { verify_sha256: self.store.verify_sha256 || hash, ..store };
        let pointer = Pointer { oid: oid.clone(), size, extensions: Vec::new() };
        let display = format!("sha256:{oid}");
        judge_lfs_object(
            &self.base,
            &store,
            &pointer,
            &Names::one(&display),
            &self.config.scan,
            self.cache.as_ref(),
            meter,
        )
    }

    fn cache(&self) -> Option<&Cache> {
        self.cache.as_ref()
    }
}

fn missing(oid: &str, place: &str) -> Judged {
    let f = Finding::new("lfs-object-missing", Severity::Error, format!("no lfs object at {place}"))
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
    /// How the store's objects are listed: the directory they are under, and for a template
    /// store the path pattern below it.
    fn listing(&self) -> Result<Listing> {
        let store = &self.config.lfs;
        store.validate().map_err(|e| anyhow!("bad lfs configuration: {e}"))?;
        if store.layout == Layout::S3 {
            let s3 = crate::store::s3::S3Store::new(store).map_err(|e| anyhow!("{e}"))?;
            return Ok(Listing { root: PathBuf::new(), pattern: None, s3: Some(Arc::new(s3)) });
        }
        if store.layout == Layout::Template {
            let template = store.template.as_deref().unwrap_or_default();
            let base = match &store.root {
                Some(r) => self.base.join(r),
                None => self.base.clone(),
            };
            let full = base.join(template).to_string_lossy().into_owned();
            let (fixed, pattern) = split_template(&full).map_err(|e| anyhow!("bad lfs template: {e}"))?;
            return Ok(Listing { root: fixed, pattern: Some(pattern), s3: None });
        }
        let probe = store.object_path(&self.base, &"0".repeat(64)).map_err(|e| anyhow!("{e}"))?;
        let root = probe
            .parent()
            .and_then(Path::parent)
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .ok_or_else(|| anyhow!("cannot find the lfs store root"))?;
        Ok(Listing { root, pattern: None, s3: None })
    }

    /// Poll the store, judge finished objects, quarantine rejected ones. `report` is called
    /// for every object judged; `err` receives warnings.
    pub fn watch(
        &self,
        opts: &WatchOptions,
        report: &mut dyn FnMut(&ObjectVerdict),
        err: &mut dyn std::io::Write,
    ) -> Result<WatchSummary> {
        let listing = self.listing()?;
        if let Some(problem) = self.config.lfs.misconfiguration(&self.base) {
            bail!("{problem}");
        }
        let root = listing.root.clone();
        if let Some(q) = opts.quarantine.as_ref().filter(|_| listing.s3.is_none()) {
            std::fs::create_dir_all(q).with_context(|| format!("cannot create quarantine {}", q.display()))?;
        }
        let mut w = Watcher {
            run: self,
            opts,
            root,
            pattern: listing.pattern,
            s3: listing.s3,
            s3_judged: Default::default(),
            s3_hasher: Default::default(),
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
    /// A template store's path pattern below `root`.
    pattern: Option<Vec<Segment>>,
    s3: Option<Arc<crate::store::s3::S3Store>>,
    /// An S3 store's judged objects, by a keyed hash of (key, size, Last-Modified): 8 bytes
    /// each. The horizon is not used there: the Last-Modified of a multipart upload is when
    /// it began (it may be long before the object appears) and comes from the server's clock.
    s3_judged: std::collections::HashSet<u64>,
    s3_hasher: std::collections::hash_map::RandomState,
    report: &'w mut dyn FnMut(&ObjectVerdict),
    out: Out<'w>,
    /// Objects seen and not judged yet, with the poll that last listed them.
    pending: HashMap<ObjKey, (Stamp, u64)>,
    /// Objects judged that changed too recently to be passed over by [`Watcher::horizon`].
    recent: HashMap<ObjKey, Stamp>,
    /// Objects that changed before this were seen by an earlier poll.
    horizon: Option<SystemTime>,
    /// When the current poll began.
    started: SystemTime,
    ready: Vec<(ObjKey, Stamp, Duration)>,
    unfinished: u64,
    summary: WatchSummary,
}

impl Watcher<'_, '_> {
    fn poll(&mut self) {
        self.summary.polls += 1;
        self.started = fs_now();
        self.unfinished = 0;
        let root = self.root.clone();
        if let Some(s3) = self.s3.clone() {
            let listed = s3.list(&mut |l| {
                let stamp = Stamp { size: l.size, mtime: l.modified, changed: l.modified };
                let key = ObjKey { oid: l.oid, repo: l.repo };
                if !self.s3_judged.contains(&self.s3_hash(&key, &stamp)) {
                    self.consider(key, stamp)
                }
            });
            if let Err(e) = listed {
                self.out.line(&format!("modelgate: warning: cannot list the lfs store: {e}"));
            }
        } else {
            match self.pattern.clone() {
                Some(pattern) => each_template_object(&root, &pattern, &mut |key, stamp| self.consider(key, stamp)),
                None => each_object(&root, self.run.config.lfs.layout, &mut |oid, stamp| {
                    self.consider(ObjKey { oid, repo: None }, stamp)
                }),
            }
        }
        self.judge_ready();
        let poll = self.summary.polls;
        // Gone from the store: forget.
        self.pending.retain(|_, (_, listed)| *listed == poll);
        let horizon = self.started.checked_sub(self.opts.remember);
        if let Some(h) = horizon {
            self.recent.retain(|_, s| s.changed >= h);
        }
        self.horizon = horizon.filter(|_| self.s3.is_none());
        self.summary.pending = self.unfinished;
        self.summary.remembered = (self.pending.len() + self.recent.len()) as u64;
        self.out.flush();
    }

    fn s3_hash(&self, key: &ObjKey, stamp: &Stamp) -> u64 {
        use std::hash::BuildHasher;
        self.s3_hasher.hash_one((key, stamp.size, stamp.mtime))
    }

    fn consider(&mut self, oid: ObjKey, stamp: Stamp) {
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
            objects: ready.iter().map(|(o, _, _)| o.clone()).collect(),
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
                        Err(e) => {
                            self.out.line(&format!("modelgate: warning: cannot quarantine sha256:{}: {e:#}", oid.oid))
                        }
                    }
                }
            }
            self.summary.judged += 1;
            self.pending.remove(&oid);
            // An S3 object is remembered once judged, unless the store could not be read.
            if self.s3.is_some() && !v.findings.iter().any(|f| f.code == "lfs-store-unavailable") {
                let h = self.s3_hash(&oid, &stamp);
                self.s3_judged.insert(h);
            }
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

/// How `lfs watch` lists a store.
struct Listing {
    root: PathBuf,
    pattern: Option<Vec<Segment>>,
    /// An S3 store is listed by ListObjectsV2.
    s3: Option<Arc<crate::store::s3::S3Store>>,
}

/// One path component of a template store, below its fixed part.
type Segment = Vec<Token>;

/// Split an absolute template path into the directory before its first placeholder and the
/// patterns of the components from there on.
fn split_template(full: &str) -> Result<(PathBuf, Vec<Segment>), String> {
    let comps: Vec<&str> = full.split('/').collect();
    let first = comps.iter().position(|c| c.contains('{')).ok_or("the template has no placeholder")?;
    let fixed = comps.get(..first).unwrap_or_default().join("/");
    let fixed = if fixed.is_empty() { "/".to_string() } else { fixed };
    let mut segs = Vec::new();
    for c in comps.get(first..).unwrap_or_default() {
        if c.is_empty() {
            continue;
        }
        segs.push(lfs::template_tokens(c)?);
    }
    Ok((PathBuf::from(fixed), segs))
}

/// Match one directory entry name against a segment's tokens (backtracking over the
/// variable-length repository placeholders); every way it matches.
fn match_segment(tokens: &[Token], name: &str, b: &TemplateBinding, out: &mut Vec<TemplateBinding>) {
    let Some((first, rest)) = tokens.split_first() else {
        if name.is_empty() {
            out.push(b.clone());
        }
        return;
    };
    match first {
        Token::Lit(l) => {
            if let Some(r) = name.strip_prefix(l.as_str()) {
                match_segment(rest, r, b, out);
            }
        }
        Token::Oid(a, z) => {
            let n = z.saturating_sub(*a);
            let Some(nb) = name.get(..n).and_then(|part| b.bind_oid(*a, part)) else { return };
            match_segment(rest, name.get(n..).unwrap_or_default(), &nb, out);
        }
        Token::Repo | Token::Owner | Token::Name => {
            for end in (1..=name.len()).filter(|e| name.is_char_boundary(*e)) {
                let Some(nb) = b.bind_name(first, name.get(..end).unwrap_or_default()) else { continue };
                match_segment(rest, name.get(end..).unwrap_or_default(), &nb, out);
            }
        }
    }
}

/// Deepest a `{repo}` or `{owner}` component may reach (GitLab groups nest).
const MAX_REPO_DEPTH: usize = 8;

/// Call `f` for every object file of a template store: entries of `root` are matched
/// component by component against `pattern`; a component that is exactly `{repo}` or
/// `{owner}` may span several directories (`group/sub`). Only regular files whose place
/// gives a full valid oid are candidates; links are never followed.
fn each_template_object(root: &Path, pattern: &[Segment], f: &mut dyn FnMut(ObjKey, Stamp)) {
    let mut seen = std::collections::HashSet::new();
    walk_template(root, pattern, 0, &TemplateBinding::new(), None, 0, &mut |k, s| {
        if seen.insert(k.clone()) {
            f(k, s);
        }
    });
}

fn walk_template(
    dir: &Path,
    pattern: &[Segment],
    i: usize,
    b: &TemplateBinding,
    // The directories a multi-level `{repo}`/`{owner}` has taken so far (`group/`).
    partial: Option<&str>,
    depth: usize,
    f: &mut dyn FnMut(ObjKey, Stamp),
) {
    let Some(seg) = pattern.get(i) else { return };
    let last = i + 1 == pattern.len();
    let multi = matches!(seg.as_slice(), [Token::Repo] | [Token::Owner]);
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<(String, PathBuf)> =
        rd.filter_map(|e| e.ok()).filter_map(|e| Some((e.file_name().into_string().ok()?, e.path()))).collect();
    entries.sort();
    for (name, path) in entries {
        let Ok(m) = std::fs::symlink_metadata(&path) else { continue };
        let full_name = match partial {
            Some(p) => format!("{p}{name}"),
            None => name.clone(),
        };
        if last {
            if !m.is_file() {
                continue;
            }
            let mut found = Vec::new();
            match_segment(seg, &full_name, b, &mut found);
            for nb in found {
                if let Some((oid, repo)) = nb.resolved() {
                    let k = ObjKey { oid, repo };
                    f(k, stamp(&m));
                }
            }
            continue;
        }
        if !m.is_dir() {
            continue;
        }
        let mut found = Vec::new();
        match_segment(seg, &full_name, b, &mut found);
        for nb in &found {
            walk_template(&path, pattern, i + 1, nb, None, 0, f);
        }
        if multi && depth + 1 < MAX_REPO_DEPTH && name != "." && name != ".." {
            walk_template(&path, pattern, i, b, Some(&format!("{full_name}/")), depth + 1, f);
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
    _layout: Layout,
    base: &Path,
    store: &LfsStore,
    key: &ObjKey,
    dir: &Path,
    v: &ObjectVerdict,
) -> Result<PathBuf> {
    let store = LfsStore { repo: key.repo.clone().or_else(|| store.repo.clone()), ..store.clone() };
    if store.layout == Layout::S3 {
        // Within the bucket (`--quarantine s3://<bucket>/<prefix>`): a server-side copy.
        let name = match &key.repo {
            Some(r) => format!("{}--{}", r.full().replace('/', "--"), key.oid),
            None => key.oid.clone(),
        };
        let record = serde_json::json!({ "time": now_secs(), "verdict": v });
        let s3 = crate::store::open(&store, base).map_err(|e| anyhow!("{e}"))?;
        return match s3.quarantine(&key.oid, &name, dir, &record).map_err(|e| anyhow!("{e}"))? {
            Some(dest) => Ok(PathBuf::from(dest)),
            None => bail!("the object is no longer in the store"),
        };
    }
    let from = store.object_path(base, &key.oid).map_err(|e| anyhow!("{e}"))?;
    if !from.starts_with(root) {
        bail!("object path {} is outside the store", from.display());
    }
    // Objects of several repositories may share an oid: the repository is in the name.
    let name = match &key.repo {
        Some(r) => format!("{}--{}", r.full().replace('/', "--"), key.oid),
        None => key.oid.clone(),
    };
    let oid = &name;
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
