//! Judging the blobs of a push in parallel: cache, LFS pointer resolution, then the engine.

use super::budget::{FileMeter, Guarded, PushMeter, Stop};
use super::cache::Cache;
use super::{HookConfig, Limits};
use crate::engine::{scan_source_named, FileReport};
use crate::finding::{Finding, Severity, Verdict};
use crate::git::{BlobReader, Checkout, NewBlob, ObjectView};
use crate::lfs::{self, Resolved};
use crate::source::{BytesSource, Source};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// One fact of a judgement, owned so that it can be cached and read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    pub code: String,
    #[serde(with = "severity_str")]
    pub severity: Severity,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
}

/// The judgement of one blob (or of the LFS object behind it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Judged {
    #[serde(with = "verdict_str")]
    pub verdict: Verdict,
    pub format: String,
    pub size: u64,
    /// `module.name` of each import, first-seen order.
    pub imports: Vec<String>,
    pub findings: Vec<Fact>,
    /// The LFS oid when the scanned bytes came from the LFS store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lfs_oid: Option<String>,
    /// Served from the verdict cache (not stored in it).
    #[serde(skip)]
    pub cached: bool,
}

impl Judged {
    pub(crate) fn from_report(r: &FileReport, lfs_oid: Option<String>) -> Judged {
        Judged {
            verdict: r.verdict,
            format: r.format.clone(),
            size: r.size,
            imports: r.import_names(),
            findings: r.findings.iter().map(Fact::from).collect(),
            lfs_oid,
            cached: false,
        }
    }

    pub(crate) fn from_findings(findings: Vec<Finding>, size: u64, lfs_oid: Option<String>) -> Judged {
        Judged {
            verdict: Verdict::from_findings(&findings, false),
            format: "unknown".into(),
            size,
            imports: Vec::new(),
            findings: findings.iter().map(Fact::from).collect(),
            lfs_oid,
            cached: false,
        }
    }

    /// A model format was recognised, or there is something to say about the file.
    pub fn is_model(&self) -> bool {
        self.format != "unknown" || self.verdict != Verdict::Unsupported || self.lfs_oid.is_some()
    }

    /// Distinct finding codes, most severe first.
    pub fn codes(&self) -> Vec<String> {
        let mut f: Vec<&Fact> = self.findings.iter().collect();
        f.sort_by_key(|x| std::cmp::Reverse(x.severity));
        let mut out: Vec<String> = Vec::new();
        for x in f {
            if !out.contains(&x.code) {
                out.push(x.code.clone());
            }
        }
        out
    }
}

impl From<&Finding> for Fact {
    fn from(f: &Finding) -> Fact {
        Fact {
            code: f.code.to_string(),
            severity: f.severity,
            message: f.message.clone(),
            member: f.member.clone(),
            offset: f.offset,
            evidence: f.evidence.clone(),
        }
    }
}

/// Judge every blob in the order given, on worker threads, within the time and byte budgets
/// of `config.limits`. A file whose judgement runs past the file timeout is abandoned (its
/// reads fail from then on and its result is ignored) and judged `gate-file-timeout`; when
/// the push budget runs out, every file not yet judged is `gate-push-budget-exceeded`.
/// Fresh judgements of content (not of budgets or transient conditions such as a missing
/// LFS object) are written to the cache.
pub fn judge_all(repo: &ObjectView, blobs: &[NewBlob], config: &HookConfig, cache: Option<&Cache>) -> Vec<Judged> {
    judge_push(repo, blobs, config, cache).into_iter().map(|j| j.judged).collect()
}

/// A judgement of what a client may check out besides the stored bytes.
#[derive(Debug, Clone)]
pub struct Variant {
    /// How the bytes come about, e.g. `core.autocrlf=true (LF -> CRLF)`.
    pub checkout: String,
    pub judged: Judged,
}

/// A blob's judgement: the stored bytes (or the LFS object behind a pointer), and every
/// other way its places check out (line endings, `ident`, `working-tree-encoding`, the
/// pointer text itself for clients without git-lfs, a filter program that cannot be judged).
#[derive(Debug, Clone)]
pub struct Judgement {
    pub judged: Judged,
    pub variants: Vec<Variant>,
}

impl Judgement {
    /// The stored judgement first, then the variants with their checkout.
    pub fn all(&self) -> impl Iterator<Item = (Option<&str>, &Judged)> {
        std::iter::once((None, &self.judged))
            .chain(self.variants.iter().map(|v| (Some(v.checkout.as_str()), &v.judged)))
    }
}

/// [`judge_all`] with the checkout variants of every blob.
pub fn judge_push(repo: &ObjectView, blobs: &[NewBlob], config: &HookConfig, cache: Option<&Cache>) -> Vec<Judgement> {
    let jobs = Arc::new(BlobJobs {
        blobs: blobs.to_vec(),
        config: config.clone(),
        cache: cache.cloned(),
        store_dir: repo.store_dir().to_path_buf(),
        git_dir: repo.git_dir().to_path_buf(),
        kind: repo.object_hash(),
        variants: Mutex::new(std::collections::HashMap::new()),
    });
    let judged = run_pool(jobs.clone(), &config.limits);
    let mut variants = std::mem::take(&mut *lock(&jobs.variants));
    judged
        .into_iter()
        .enumerate()
        .map(|(i, judged)| {
            // Variants of a judgement the budget replaced are dropped with it.
            let v = if judged.findings.iter().any(|f| super::GATE_FAILURE_CODES.contains(&f.code.as_str())) {
                Vec::new()
            } else {
                variants.remove(&i).unwrap_or_default()
            };
            Judgement { judged, variants: v }
        })
        .collect()
}

/// A list of things to judge, for [`run_pool`]. `Local` is per-worker state.
pub(crate) trait Jobs: Send + Sync + 'static {
    type Local;
    fn len(&self) -> usize;
    fn local(&self) -> Self::Local;
    /// Judge item `index`, charging every byte read to `meter`; returns the judgement and,
    /// when it may be cached, its key.
    fn judge(&self, local: &mut Self::Local, index: usize, meter: &Arc<FileMeter>) -> (Judged, Option<String>);
    fn cache(&self) -> Option<&Cache>;
}

struct BlobJobs {
    blobs: Vec<NewBlob>,
    config: HookConfig,
    cache: Option<Cache>,
    store_dir: PathBuf,
    git_dir: PathBuf,
    kind: gix::hash::Kind,
    /// Variant judgements by blob index (side results of `judge`).
    variants: Mutex<std::collections::HashMap<usize, Vec<Variant>>>,
}

impl Jobs for BlobJobs {
    type Local = Result<BlobReader, String>;

    fn len(&self) -> usize {
        self.blobs.len()
    }

    fn local(&self) -> Self::Local {
        BlobReader::at(&self.store_dir, self.kind, &self.git_dir, self.config.stream_threshold)
            .map_err(|e| format!("cannot open the object store: {e}"))
    }

    fn judge(&self, local: &mut Self::Local, index: usize, meter: &Arc<FileMeter>) -> (Judged, Option<String>) {
        let Some(blob) = self.blobs.get(index) else {
            return (budget_judged("internal-error", "no such file".into()), None);
        };
        let ctx = Ctx { git_dir: &self.git_dir, config: &self.config, cache: self.cache.as_ref(), meter };
        match local {
            Ok(r) => {
                let (j, key, variants) = judge_one(r, &ctx, blob);
                if !variants.is_empty() {
                    lock(&self.variants).insert(index, variants);
                }
                (j, key)
            }
            Err(e) => (unreadable(e), None),
        }
    }

    fn cache(&self) -> Option<&Cache> {
        self.cache.as_ref()
    }
}

/// Judge every item of `jobs` on worker threads within `limits`, results in item order.
pub(crate) fn run_pool<J: Jobs>(jobs: Arc<J>, limits: &Limits) -> Vec<Judged> {
    let n = jobs.len();
    if n == 0 {
        return Vec::new();
    }
    let shared = Arc::new(Shared {
        jobs,
        file_read_bytes: limits.file_read_bytes,
        file_timeout: limits.file_timeout,
        next: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        push: Arc::new(PushMeter::new(limits.push_read_bytes)),
        slots: Mutex::new(Vec::new()),
        sent: AtomicUsize::new(0),
        n,
        all_sent: (Mutex::new(false), std::sync::Condvar::new()),
    });
    let (tx, rx) = mpsc::channel::<Done>();
    let workers = workers(limits.jobs).min(n);
    let mut results: Vec<Option<Judged>> = vec![None; n];
    let mut done = 0;
    for _ in 0..workers {
        spawn_worker(&shared, &tx);
    }
    let started = Instant::now();
    let push_deadline = limits.push_timeout.map(|t| started + t);
    while done < n {
        let now = Instant::now();
        let mut wake = push_deadline;
        if let Some(t) = limits.file_timeout {
            for s in lock(&shared.slots).iter().filter(|s| !s.abandoned) {
                if let Some(r) = &s.running {
                    wake = Some(wake.map_or(r.started + t, |w| w.min(r.started + t)));
                }
            }
        }
        // Workers register the file they start without telling this thread: look again
        // soon so that a new file's deadline is not missed.
        if limits.file_timeout.is_some() {
            wake = Some(wake.map_or(now + POLL, |w| w.min(now + POLL)));
        }
        // Results are collected in batches: waking this thread for each of tens of
        // thousands of small files cost more than judging them. Workers wake it when the
        // last result is in; otherwise it looks at the deadlines (and the results) every POLL.
        let mut disconnected = false;
        loop {
            match rx.try_recv() {
                Ok(d) => {
                    if let Some(slot @ None) = results.get_mut(d.index) {
                        *slot = Some(d.judged);
                        done += 1;
                    }
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    disconnected = true;
                    break;
                }
            }
        }
        if disconnected {
            break;
        }
        if done < n {
            let (m, cv) = &shared.all_sent;
            let guard = lock(m);
            if !*guard {
                let wait = wake.map_or(POLL, |w| w.saturating_duration_since(now).min(POLL));
                let _ = cv.wait_timeout(guard, wait);
            }
        }
        let now = Instant::now();
        if push_deadline.is_some_and(|d| now >= d) {
            shared.stop.store(true, Ordering::Relaxed);
            for s in lock(&shared.slots).iter() {
                if let Some(r) = &s.running {
                    r.meter.cancel();
                }
            }
            let t = limits.push_timeout.unwrap_or_default();
            for r in results.iter_mut().filter(|r| r.is_none()) {
                *r = Some(budget_judged(
                    "gate-push-budget-exceeded",
                    format!("not judged: the push's time budget of {} ran out", show_duration(t)),
                ));
            }
            break;
        }
        let Some(t) = limits.file_timeout else { continue };
        let mut respawn = 0;
        for s in lock(&shared.slots).iter_mut().filter(|s| !s.abandoned) {
            let Some(r) = &s.running else { continue };
            if now < r.started + t {
                continue;
            }
            r.meter.cancel();
            s.abandoned = true;
            respawn += 1;
            if let Some(slot @ None) = results.get_mut(r.index) {
                *slot = Some(budget_judged(
                    "gate-file-timeout",
                    format!("the scan did not finish within the file time budget of {}", show_duration(t)),
                ));
                done += 1;
            }
        }
        for _ in 0..respawn {
            spawn_worker(&shared, &tx);
        }
    }
    // Only reachable with holes if every worker died, which catch_unwind prevents.
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| budget_judged("internal-error", "the file was never judged".into())))
        .collect()
}

/// Files of no known format are cached from this size on.
const CACHE_MIN_UNKNOWN: u64 = 1 << 20;

/// How often the waiting thread looks for files past their deadline.
const POLL: Duration = Duration::from_millis(20);

/// What the workers share with the thread that waits for them. Owned, so that an
/// abandoned worker can outlive the call.
struct Shared<J> {
    jobs: Arc<J>,
    file_read_bytes: Option<u64>,
    file_timeout: Option<Duration>,
    next: AtomicUsize,
    stop: AtomicBool,
    push: Arc<PushMeter>,
    slots: Mutex<Vec<Slot>>,
    /// Results sent, and a flag with a condition variable set when all `n` are.
    sent: AtomicUsize,
    n: usize,
    all_sent: (Mutex<bool>, std::sync::Condvar),
}

/// A worker thread's state.
struct Slot {
    running: Option<Running>,
    /// Its current item timed out: it stops after that item.
    abandoned: bool,
}

struct Running {
    index: usize,
    started: Instant,
    meter: Arc<FileMeter>,
}

struct Done {
    index: usize,
    judged: Judged,
}

/// Threads a pool of `jobs` judges on (`0`: one per core).
pub(crate) fn workers(jobs: usize) -> usize {
    match jobs {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn spawn_worker<J: Jobs>(shared: &Arc<Shared<J>>, tx: &mpsc::Sender<Done>) {
    let id = {
        let mut slots = lock(&shared.slots);
        slots.push(Slot { running: None, abandoned: false });
        slots.len() - 1
    };
    let (shared, tx) = (shared.clone(), tx.clone());
    // Without a thread the slot stays idle and the other workers take the items; with no
    // worker at all, the items end as `internal-error`.
    let _ = reuse::spawn(format!("modelgate-judge-{id}"), Box::new(move || worker(&shared, id, &tx)));
}

/// Worker threads that wait for the next task instead of ending: a judgement's memory
/// (the allocator's per-thread heap) is then reused by the next pool rather than faulted in
/// fresh, which on an audit of a hundred repositories (a pool each) was a tenth of the time.
/// A task runs exactly as on a thread of its own; a thread still busy (a worker abandoned
/// at its time budget) simply is not idle.
mod reuse {
    use std::sync::{mpsc, Mutex};

    type Task = Box<dyn FnOnce() + Send + 'static>;

    /// Idle threads, each waiting on its channel for one task.
    static IDLE: Mutex<Vec<mpsc::Sender<Task>>> = Mutex::new(Vec::new());
    /// More idle threads than this end instead of waiting.
    const MAX_IDLE: usize = 64;

    fn idle() -> std::sync::MutexGuard<'static, Vec<mpsc::Sender<Task>>> {
        IDLE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Run `task` on an idle thread, or on a new one named `name`.
    pub fn spawn(name: String, task: Task) -> std::io::Result<()> {
        let mut task = task;
        loop {
            let Some(tx) = idle().pop() else { break };
            match tx.send(task) {
                Ok(()) => return Ok(()),
                // That thread is gone: the task comes back.
                Err(mpsc::SendError(t)) => task = t,
            }
        }
        std::thread::Builder::new().name(name).spawn(move || {
            let mut next = Some(task);
            while let Some(task) = next.take() {
                // A task catches its own panics; one that escapes ends only the task.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(task));
                let (tx, rx) = mpsc::channel();
                {
                    let mut idle = idle();
                    if idle.len() >= MAX_IDLE {
                        return;
                    }
                    idle.push(tx);
                }
                next = rx.recv().ok();
            }
        })?;
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn tasks_run_once_each_and_a_panicking_task_ends_only_itself() {
            let (tx, rx) = std::sync::mpsc::channel();
            for round in 0..3 {
                for i in 0..4 {
                    let tx = tx.clone();
                    super::spawn(
                        "t".into(),
                        Box::new(move || tx.send((round, i, std::thread::current().id())).unwrap()),
                    )
                    .unwrap();
                }
                let mut got: Vec<_> = (0..4).map(|_| rx.recv().unwrap()).collect();
                got.sort_by_key(|g| g.1);
                assert_eq!(
                    got.iter().map(|g| (g.0, g.1)).collect::<Vec<_>>(),
                    (0..4).map(|i| (round, i)).collect::<Vec<_>>()
                );
                // Let the threads go idle before the next round.
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            // A panicking task does not take its thread's later tasks with it.
            super::spawn("t".into(), Box::new(|| panic!("a task panics"))).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(50));
            let tx2 = tx.clone();
            super::spawn("t".into(), Box::new(move || tx2.send((9, 9, std::thread::current().id())).unwrap())).unwrap();
            assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap().0, 9);
        }
    }
}

fn worker<J: Jobs>(shared: &Shared<J>, id: usize, tx: &mpsc::Sender<Done>) {
    let mut local = shared.jobs.local();
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let index = shared.next.fetch_add(1, Ordering::Relaxed);
        if index >= shared.jobs.len() {
            return;
        }
        let meter = Arc::new(FileMeter::new(shared.file_read_bytes, shared.push.clone()));
        let started = Instant::now();
        if let Some(s) = lock(&shared.slots).get_mut(id) {
            s.running = Some(Running { index, started, meter: meter.clone() });
        }
        let run =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shared.jobs.judge(&mut local, index, &meter)));
        let (judged, key) = match run {
            Ok(out) => out,
            Err(_) => (budget_judged("internal-error", "the gate panicked while judging this file".into()), None),
        };
        let judged = match meter.stopped() {
            None => {
                // Small files of no known format cost less to judge again than to cache.
                let worth = judged.is_model() || judged.size >= CACHE_MIN_UNKNOWN;
                // clamd being away is no fact about the content.
                let worth = worth && !judged.findings.iter().any(|f| f.code == "clamav-error");
                if let (Some(c), Some(key), true) = (shared.jobs.cache(), key, worth) {
                    // A cache that cannot be written only costs a rescan next time.
                    let _ = c.put(&key, &judged);
                }
                judged
            }
            Some(Stop::Cancelled) => judged,
            Some(Stop::FileBytes) => budget_judged(
                "gate-file-budget-exceeded",
                format!("the scan read more than the file byte budget of {} bytes", meter.max()),
            ),
            Some(Stop::PushBytes) => {
                budget_judged("gate-push-budget-exceeded", "not judged: the push's byte budget ran out".to_string())
            }
        };
        // Finished, but late: the budget holds whether or not the waiting thread noticed in
        // time (what was found dangerous stays dangerous). A complete judgement stays cached.
        let judged = match shared.file_timeout.filter(|t| started.elapsed() > *t) {
            Some(t) if judged.verdict != crate::finding::Verdict::Dangerous => budget_judged(
                "gate-file-timeout",
                format!("the scan did not finish within the file time budget of {}", show_duration(t)),
            ),
            _ => judged,
        };
        let abandoned = {
            let mut slots = lock(&shared.slots);
            let s = slots.get_mut(id);
            let abandoned = s.as_ref().is_none_or(|s| s.abandoned);
            if let Some(s) = s {
                s.running = None;
            }
            abandoned
        };
        if abandoned || tx.send(Done { index, judged }).is_err() {
            return;
        }
        if shared.sent.fetch_add(1, Ordering::AcqRel) + 1 >= shared.n {
            let (m, cv) = &shared.all_sent;
            *lock(m) = true;
            cv.notify_all();
        }
    }
}

/// What one judgement needs besides the blob.
struct Ctx<'a> {
    git_dir: &'a Path,
    config: &'a HookConfig,
    cache: Option<&'a Cache>,
    meter: &'a Arc<FileMeter>,
}

/// The judgements of a blob's checkout variants under one [`Checkout`], as cached.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckoutEntry {
    variants: Vec<(String, Judged)>,
}

/// Cache key of a blob's variants under a checkout: the blob's key with a digest of it.
fn checkout_key(id: &gix::ObjectId, co: &Checkout) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("{co:?}").as_bytes());
    let tag: String = d.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("co{tag}-{}", Cache::blob_key(id))
}

/// The names bytes go by, as far as their judgement depends on them: a name that claims a
/// model format (`*.safetensors`, `saved_model.pb`) makes content that matches no format an
/// `error` (`model-content-unrecognised`). A blob is checked out under every path it has, so
/// every claim among them counts, not only the path it is shown by; and a cached judgement
/// holds only for the same claims (the cache key carries a digest of them).
pub(crate) struct Names {
    /// The name shown (the first place's path).
    pub display: String,
    /// One path for each claim that `display` does not make.
    others: Vec<String>,
    /// `""` when no name claims a model, else `n<digest of the claims>-`.
    tag: String,
}

impl Names {
    /// Bytes known by one name.
    pub fn one(display: &str) -> Names {
        Names::new(display.to_string(), std::iter::empty())
    }

    /// A blob's names: its display path and the paths of all its places.
    pub fn of(blob: &NewBlob) -> Names {
        Names::new(blob.display_path(), blob.places.iter().map(|p| String::from_utf8_lossy(&p.path).into_owned()))
    }

    fn new(display: String, paths: impl Iterator<Item = String>) -> Names {
        let mut claims: Vec<String> = crate::formats::claimed_model(&display).into_iter().collect();
        let mut others = Vec::new();
        for path in paths {
            if let Some(c) = crate::formats::claimed_model(&path).filter(|c| !claims.contains(c)) {
                claims.push(c);
                others.push(path);
            }
        }
        let tag = match claims.is_empty() {
            true => String::new(),
            false => {
                use sha2::Digest;
                claims.sort();
                let d = sha2::Sha256::digest(claims.join("\0").as_bytes());
                let hex: String = d.iter().take(8).map(|b| format!("{b:02x}")).collect();
                format!("n{hex}-")
            }
        };
        Names { display, others, tag }
    }

    /// Scan `src` under these names.
    fn scan(&self, src: Arc<dyn Source>, opts: &crate::engine::ScanOptions) -> FileReport {
        let others: Vec<&str> = self.others.iter().map(String::as_str).collect();
        scan_source_named(&self.display, &others, src, opts)
    }

    /// `key` for judgements made under these names.
    fn key(&self, key: String) -> String {
        format!("{}{key}", self.tag)
    }

    /// The cache key of judgements made under these names from the bytes of key `base`: the
    /// names count only for content no format matched (the claim rule), so judgements of
    /// recognised content (`recognised`) hold under any name.
    fn key_for(&self, base: String, recognised: bool) -> String {
        match recognised {
            true => base,
            false => self.key(base),
        }
    }

    /// A cached value for the bytes of key `base` that holds under these names.
    fn cached<T: serde::de::DeserializeOwned>(
        &self,
        cache: &Cache,
        base: &str,
        recognised: impl Fn(&T) -> bool,
    ) -> Option<T> {
        match cache.get_value::<T>(base) {
            Some(v) if self.tag.is_empty() || recognised(&v) => Some(v),
            _ if self.tag.is_empty() => None,
            _ => cache.get_value(&self.key(base.to_string())),
        }
    }
}

/// Whether the claim rule could not have applied to `j` (its content matched a format).
fn recognised(j: &Judged) -> bool {
    j.format != "unknown"
}

impl CheckoutEntry {
    fn recognised(&self) -> bool {
        self.variants.iter().all(|(_, j)| recognised(j))
    }
}

/// The judgement of the stored bytes and, when it may be cached, its key; then the
/// judgements of every other checkout of the blob's places.
fn judge_one(reader: &mut BlobReader, ctx: &Ctx<'_>, blob: &NewBlob) -> (Judged, Option<String>, Vec<Variant>) {
    let max_size = ctx.config.limits.max_file_size;
    let names = Names::of(blob);
    let blob_key = Cache::blob_key(&blob.id);
    let mut checkouts: Vec<&Checkout> = Vec::new();
    for p in &blob.places {
        if !checkouts.contains(&&p.checkout) {
            checkouts.push(&p.checkout);
        }
    }
    let default = Checkout::default();
    if checkouts.is_empty() {
        checkouts.push(&default);
    }
    // Symbolic links are written as stored: only other checkouts can give other bytes.
    let converting: Vec<&Checkout> = checkouts.iter().copied().filter(|c| !c.symlink).collect();
    if let Some(j) = ctx.cache.and_then(|c| names.cached(c, &blob_key, recognised)) {
        if let Some(m) = max_size.filter(|m| j.size > *m) {
            return (too_large(j.size, m, j.lfs_oid), None, Vec::new());
        }
        let entries: Option<Vec<CheckoutEntry>> = converting
            .iter()
            .map(|co| ctx.cache.and_then(|c| names.cached(c, &checkout_key(&blob.id, co), CheckoutEntry::recognised)))
            .collect();
        if let Some(entries) = entries {
            let mut variants: Vec<Variant> = Vec::new();
            for (checkout, judged) in entries.into_iter().flat_map(|e| e.variants) {
                if !variants.iter().any(|v| v.checkout == checkout) {
                    variants.push(Variant { checkout, judged: Judged { cached: true, ..judged } });
                }
            }
            return (Judged { cached: true, ..j }, None, variants);
        }
    }
    if let Err(e) = ctx.meter.check() {
        return (unreadable(&format!("cannot read blob {}: {e}", blob.id)), None, Vec::new());
    }
    let unreadable_blob =
        |e: anyhow::Error| (unreadable(&format!("cannot read blob {}: {e:#}", blob.id)), None, Vec::new());
    // Most blobs are small: read in one lookup. Others by their header's size, which may
    // be over the limit before anything is read.
    let read = match reader.try_read_small(&blob.id) {
        Ok(Some(r)) => r,
        Ok(None) => {
            let size = match reader.size(&blob.id) {
                Ok(s) => s,
                Err(e) => return unreadable_blob(e),
            };
            if let Some(m) = max_size.filter(|m| size > *m) {
                return (too_large(size, m, None), None, Vec::new());
            }
            match reader.read_sized(&blob.id, size, &|| ctx.meter.check()) {
                Ok(r) => r,
                Err(e) => return unreadable_blob(e),
            }
        }
        Err(e) => return unreadable_blob(e),
    };
    if let Some(m) = max_size.filter(|m| read.size > *m) {
        return (too_large(read.size, m, None), None, Vec::new());
    }
    let source: Arc<dyn Source> = Arc::new(Guarded::new(read.source.clone(), ctx.meter.clone()));
    let head = match crate::source::read_up_to(source.as_ref(), 0, lfs::MAX_POINTER_SIZE as usize) {
        Ok(b) => b,
        Err(e) => return (unreadable(&format!("cannot read blob {}: {e}", blob.id)), None, Vec::new()),
    };
    let mut variants = Vec::new();
    let (stored, key) = match lfs::decode_pointer(&head) {
        Some(p) => {
            // A client with git-lfs gets the object; one without it gets the pointer text.
            let plain = Judged::from_report(&names.scan(source.clone(), &ctx.config.scan), None);
            variants
                .push(Variant { checkout: "the pointer text itself (a client without git-lfs)".into(), judged: plain });
            judge_pointer(ctx, &p, &names)
        }
        None => {
            let j = Judged::from_report(&names.scan(source, &ctx.config.scan), None);
            let key = names.key_for(blob_key, recognised(&j));
            (j, Some(key))
        }
    };
    if converting.is_empty() {
        return (stored, key, variants);
    }
    // Other checkouts need the bytes in memory; a streamed blob is converted only if
    // git would convert it, which is then an error (it cannot be judged within memory).
    let bytes = read.memory.as_ref().map(|m| m.0.as_slice());
    let hex = blob.id.to_string();
    // Judgements by label, shared between checkouts.
    let mut done: Vec<(String, Judged)> = Vec::new();
    let worth_primary = stored.is_model() || stored.size >= CACHE_MIN_UNKNOWN;
    for co in converting {
        let mut mine: Vec<(String, Judged)> = Vec::new();
        fn add(done: &mut Vec<(String, Judged)>, label: String, judged: Judged, mine: &mut Vec<(String, Judged)>) {
            if !done.iter().any(|(l, _)| *l == label) {
                done.push((label.clone(), judged.clone()));
            }
            mine.push((label, judged));
        }
        if let Some(f) = co.filter.as_deref().filter(|f| *f != "lfs") {
            let finding = Finding::new(
                "checkout-filter-unknown",
                Severity::Error,
                format!("the path has filter={f}: clients with that filter configured check out what its program makes of the blob, which cannot be judged here"),
            );
            add(&mut done, format!("filter={f}"), Judged::from_findings(vec![finding], read.size, None), &mut mine);
        }
        match bytes {
            None => {
                if streamed_would_convert(co) {
                    let finding = Finding::new(
                        "checkout-too-large",
                        Severity::Error,
                        format!("the blob is {} bytes, too large to judge what git's checkout conversions (ident, end of line, working-tree-encoding) make of it", read.size),
                    );
                    add(
                        &mut done,
                        "a checkout conversion of a large file".into(),
                        Judged::from_findings(vec![finding], read.size, None),
                        &mut mine,
                    );
                }
            }
            Some(bytes) => {
                let (vs, problems) = crate::git::convert::variants(bytes, &hex, co);
                for why in problems {
                    let label = format!("working-tree-encoding={}", co.encoding.as_deref().unwrap_or_default());
                    let finding = Finding::new("checkout-encoding-unavailable", Severity::Error, why);
                    add(&mut done, label, Judged::from_findings(vec![finding], read.size, None), &mut mine);
                }
                for v in vs {
                    if let Some((_, j)) = done.iter().find(|(l, _)| *l == v.label) {
                        mine.push((v.label.clone(), j.clone()));
                        continue;
                    }
                    for (label, judged) in judge_variant(ctx, &names, v) {
                        add(&mut done, label, judged, &mut mine);
                    }
                }
            }
        }
        // Kept with the stored bytes' verdict when either is worth keeping.
        let worth = worth_primary || mine.iter().any(|(_, j)| j.is_model());
        if worth && ctx.meter.stopped().is_none() && !mine.iter().any(|(_, j)| is_gate_failure(j)) {
            if let Some(c) = ctx.cache {
                let entry = CheckoutEntry { variants: mine };
                let _ = c.put_value(&names.key_for(checkout_key(&blob.id, co), entry.recognised()), &entry);
            }
        }
    }
    variants.extend(done.into_iter().map(|(checkout, judged)| Variant { checkout, judged }));
    (stored, key, variants)
}

/// A judgement that says the gate could not judge (never cached).
fn is_gate_failure(j: &Judged) -> bool {
    j.findings.iter().any(|f| {
        super::GATE_FAILURE_CODES.contains(&f.code.as_str())
            && !f.code.starts_with("checkout-")
            && f.code != "lfs-pointer-extension"
    }) || j.findings.iter().any(|f| f.code == "clamav-error" || f.code == "lfs-object-missing")
}

/// Whether a streamed (large) blob might be converted at checkout: `ident`, an encoding, or
/// CRLF line endings forced by attributes. Auto-detected text is left aside: a file this
/// large that git would take for text is judged as stored only (its LF -> CRLF form
/// differs from it only by CR bytes before line feeds).
fn streamed_would_convert(co: &Checkout) -> bool {
    !co.symlink && (co.ident || co.encoding.is_some() || co.crlf == crate::git::Crlf::Always)
}

/// Judge one checkout variant: its bytes as a file, and the LFS object they name when
/// git-lfs would take them for a pointer.
fn judge_variant(ctx: &Ctx<'_>, names: &Names, v: crate::git::convert::Variant) -> Vec<(String, Judged)> {
    let mut out = Vec::new();
    if let Some(p) = lfs::decode_pointer(&v.bytes) {
        let (j, k) = judge_pointer(ctx, &p, names);
        store(ctx, k.as_deref(), &j);
        out.push((format!("{}, then git-lfs", v.label), j));
    }
    let src: Arc<dyn Source> = Arc::new(Guarded::new(Arc::new(BytesSource(v.bytes)), ctx.meter.clone()));
    out.push((v.label, Judged::from_report(&names.scan(src, &ctx.config.scan), None)));
    out
}

/// Write a fresh judgement to the cache when it is worth keeping (as the worker does for
/// the stored bytes).
fn store(ctx: &Ctx<'_>, key: Option<&str>, j: &Judged) {
    let (Some(c), Some(key)) = (ctx.cache, key) else { return };
    if ctx.meter.stopped().is_some() {
        return;
    }
    let worth = (j.is_model() || j.size >= CACHE_MIN_UNKNOWN) && !j.findings.iter().any(|f| f.code == "clamav-error");
    if worth {
        let _ = c.put(key, j);
    }
}

fn judge_pointer(ctx: &Ctx<'_>, p: &lfs::Pointer, names: &Names) -> (Judged, Option<String>) {
    if let Some(m) = ctx.config.limits.max_file_size.filter(|m| p.size > *m) {
        return (too_large(p.size, m, Some(p.oid.clone())), None);
    }
    let (mut j, key) = judge_lfs_object(ctx.git_dir, &ctx.config.lfs, p, names, &ctx.config.scan, ctx.cache, ctx.meter);
    if !p.extensions.is_empty() {
        j.findings.push(Fact::from(&lfs::extension_finding(p)));
        if j.verdict != Verdict::Dangerous {
            j.verdict = Verdict::Error;
        }
        // Not a fact about the object alone: not cached with it.
        return (j, None);
    }
    (j, key)
}

/// Judge the LFS object behind a valid pointer: resolve it (it must be there and match the
/// pointer before any cached verdict for its oid counts), then the cache, then the engine.
/// Every byte read (the sha256 check included) is charged to `meter`.
pub(crate) fn judge_lfs_object(
    git_dir: &Path,
    store: &lfs::LfsStore,
    p: &lfs::Pointer,
    names: &Names,
    opts: &crate::engine::ScanOptions,
    cache: Option<&Cache>,
    meter: &Arc<FileMeter>,
) -> (Judged, Option<String>) {
    let unverified = lfs::LfsStore { verify_sha256: false, ..store.clone() };
    let source = match lfs::resolve(&unverified, git_dir, p) {
        Resolved::Found { source, .. } => Arc::new(Guarded::new(source, meter.clone())),
        Resolved::Problem(f) => return (Judged::from_findings(vec![f], p.size, Some(p.oid.clone())), None),
    };
    if store.verify_sha256 {
        match lfs::sha256_of(source.as_ref()) {
            Ok(h) if h == p.oid => {}
            Ok(h) => {
                let f =
                    Finding::new("lfs-object-mismatch", Severity::Error, "lfs object content does not hash to its oid")
                        .evidence(format!("sha256:{} (content hashes to sha256:{h})", p.oid));
                return (Judged::from_findings(vec![f], p.size, Some(p.oid.clone())), None);
            }
            Err(e) => return (unreadable(&format!("cannot read lfs object sha256:{}: {e}", p.oid)), None),
        }
    }
    let key = Cache::lfs_key(&p.oid);
    if let Some(j) = cache.and_then(|c| names.cached(c, &key, recognised)).filter(|j: &Judged| j.size == p.size) {
        return (Judged { cached: true, ..j }, None);
    }
    let j = Judged::from_report(&names.scan(source, opts), Some(p.oid.clone()));
    let key = names.key_for(key, recognised(&j));
    (j, Some(key))
}

fn unreadable(msg: &str) -> Judged {
    budget_judged("gate-object-unreadable", msg.to_string())
}

/// A judgement that is about the gate, not the content: never cached.
pub(crate) fn budget_judged(code: &'static str, msg: String) -> Judged {
    Judged::from_findings(vec![Finding::new(code, Severity::Error, msg)], 0, None)
}

fn too_large(size: u64, max: u64, lfs_oid: Option<String>) -> Judged {
    let f = Finding::new(
        "file-too-large",
        Severity::Error,
        format!("{size} bytes is more than the policy's max_file_size of {max} bytes; not scanned"),
    );
    Judged::from_findings(vec![f], size, lfs_oid)
}

/// `2m`, `30s`, `250ms`.
pub(crate) fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 60_000 == 0 && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 && ms > 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

mod verdict_str {
    use crate::finding::Verdict;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Verdict, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Verdict, D::Error> {
        let s = String::deserialize(d)?;
        Verdict::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown verdict {s:?}")))
    }
}

mod severity_str {
    use crate::finding::Severity;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Severity, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Severity, D::Error> {
        let s = String::deserialize(d)?;
        [Severity::Info, Severity::Suspicious, Severity::Error, Severity::Dangerous]
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown severity {s:?}")))
    }
}
