//! `modelgate audit`: what a forge already holds. Every blob reachable from any ref of every
//! repository, through all history, and the LFS objects its pointers name, judged as the push
//! gate judges a push (the same policy lookup, engine, LFS resolution, budgets, checkout
//! conversions and decisions), with one JSON record per file place.
//!
//! Each blob is judged once per checkout and name claim for the whole fleet (each LFS
//! object once per object its repository's store holds, as the store's `head` describes it):
//! an in-memory table in front of the gate's content-addressed cache (which `--cache DIR`
//! shares between runs, shards and the hooks), so a fork or a mirror costs only its walk.
//!
//! Repositories are audited one after the other in name order (each one's files in
//! parallel, the next ones walked ahead on their own threads); `--shard i/n` takes a stable subset by a hash of the name, and shards' outputs
//! merge into the unsharded output ([`records::Fleet`]). A state file makes a run resumable
//! ([`state::Journal`]).

pub mod cli;
pub mod discover;
pub mod notes;
pub mod records;
pub mod state;
pub mod walk;

use crate::git::attr::Checkout;
use crate::git::{GateRepo, GitEnv, NewBlob, ObjectId, ObjectView, Place};
use crate::hook::gate::{find_policy, hook_config, PolicyDecider, PolicySource, SYSTEM_POLICY};
use crate::hook::{escape_bytes, judge_push, Action, Cache, HookConfig, HookEnv, Judged, Judgement};
use crate::policy::Policy;
use crate::store::LfsObjects;
use anyhow::{anyhow, bail, Context, Result};
use discover::{Flavor, Repo};
use records::{Block, FileRecord, RepoRecord, Summary};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How an audit runs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub paths: Vec<PathBuf>,
    pub flavor: Flavor,
    /// One policy for every repository; otherwise each repository's own (see [`policy_source`]).
    pub policy: Option<PathBuf>,
    /// `(index, count)`.
    pub shard: Option<(u64, u64)>,
    /// The verdict cache shared with other runs (and the hooks, when it is theirs).
    pub cache_dir: Option<PathBuf>,
    /// Move rejected LFS objects of a filesystem store here.
    pub quarantine: Option<PathBuf>,
    /// The resumable run's state file.
    pub state: Option<PathBuf>,
    /// Files judged at once; 0: one per core.
    pub jobs: usize,
    /// A record for every file place, not only models and files that are not allowed.
    pub all_files: bool,
    /// Show progress on stderr.
    pub progress: bool,
}

/// What a run did beyond its records (not part of the output: it differs between a sharded,
/// resumed or repeated run and a whole one).
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Repositories audited by this run.
    pub audited: u64,
    /// Repositories taken from the state file.
    pub resumed: u64,
    /// Repositories of other shards.
    pub other_shards: u64,
    /// Blobs (and LFS objects) judged by the engine in this run.
    pub judged: u64,
    /// Served from the verdict cache on disk.
    pub from_cache: u64,
    /// Served from this run's table (judged in another repository).
    pub from_fleet: u64,
    /// Bytes of what was judged.
    pub judged_bytes: u64,
    pub walk_time: std::time::Duration,
    pub judge_time: std::time::Duration,
}

/// The end of a run.
#[derive(Debug)]
pub struct Outcome {
    pub summary: Summary,
    pub stats: Stats,
}

/// Run an audit; `sink` receives each repository's block in name order (finished
/// repositories of a resumed run included).
pub fn run(opts: &Options, sink: &mut dyn FnMut(&Block) -> Result<()>) -> Result<Outcome> {
    let repos = discover::discover(&opts.paths, opts.flavor)?;
    let shard = opts.shard.map(|(i, n)| format!("{i}/{n}"));
    let mut journal = match &opts.state {
        Some(p) => Some(state::Journal::open(p, &header(opts, shard.clone())?)?),
        None => None,
    };
    let mut auditor = Auditor::new(opts);
    let mine: Vec<&Repo> =
        repos.iter().filter(|r| opts.shard.is_none_or(|(i, n)| records::in_shard(&r.name, i, n))).collect();
    auditor.stats.other_shards = (repos.len() - mine.len()) as u64;
    let progress = Progress::new(opts.progress, mine.len() as u64);
    let mut summary = Summary::new(shard);
    // The next repository is walked on its own thread while this one's files are judged:
    // the walk reads trees on one core, judging takes every core.
    let walk_these: Vec<&Repo> =
        mine.iter().copied().filter(|r| journal.as_ref().is_none_or(|j| !j.done.contains_key(&r.name))).collect();
    std::thread::scope(|scope| -> Result<()> {
        // As many walking threads as judging ones: a fork's judgements come from the fleet
        // table, so a run of forks is all walking.
        let mut walks = Ahead::start(scope, &walk_these, crate::hook::workers(opts.jobs), &|r: &&Repo| Walk::of(r));
        for r in mine {
            let block = match journal.as_mut().and_then(|j| j.done.remove(&r.name)) {
                Some(b) => {
                    auditor.stats.resumed += 1;
                    b
                }
                None => {
                    // Without a walking thread (or out of step with them): walked here.
                    let walked = walks.next().filter(|w| w.name == r.name).unwrap_or_else(|| Walk::of(r));
                    let b = auditor.audit(r, walked);
                    if let Some(j) = journal.as_mut() {
                        j.record(&b)?;
                    }
                    auditor.stats.audited += 1;
                    b
                }
            };
            progress.repo(&auditor.stats);
            sink(&block)?;
            summary.add_block(&block);
        }
        Ok(())
    })?;
    progress.finish();
    Ok(Outcome { summary, stats: auditor.stats })
}

/// `f` of each item, in the items' order, computed by threads at most as many items ahead
/// of the consumer as there are threads (so that memory stays that of a few results).
struct Ahead<R> {
    results: Vec<std::sync::mpsc::Receiver<R>>,
    at: usize,
    /// One ticket back for each result taken: a thread takes one before each item.
    tickets: std::sync::mpsc::SyncSender<()>,
}

impl<R: Send> Ahead<R> {
    fn start<'scope, 'env, T: Sync>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        items: &'env [T],
        threads: usize,
        f: &'env (dyn Fn(&T) -> R + Sync),
    ) -> Ahead<R> {
        let threads = threads.clamp(1, items.len().max(1));
        let (senders, results): (Vec<_>, Vec<_>) = items.iter().map(|_| std::sync::mpsc::sync_channel::<R>(1)).unzip();
        let (tickets, taken) = std::sync::mpsc::sync_channel::<()>(threads);
        for _ in 0..threads {
            let _ = tickets.try_send(());
        }
        let shared = Arc::new((senders, std::sync::Mutex::new(taken), std::sync::atomic::AtomicUsize::new(0)));
        for i in 0..threads {
            let shared = shared.clone();
            let spawned =
                std::thread::Builder::new().name(format!("modelgate-walk-{i}")).spawn_scoped(scope, move || {
                    let (senders, taken, next) = &*shared;
                    loop {
                        let ticket = taken.lock().map(|t| t.recv());
                        if !matches!(ticket, Ok(Ok(()))) {
                            return;
                        }
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let (Some(item), Some(tx)) = (items.get(i), senders.get(i)) else { return };
                        if tx.send(f(item)).is_err() {
                            return;
                        }
                    }
                });
            if spawned.is_err() {
                break;
            }
        }
        // Without any thread the senders go with `shared` here, and `next` says so.
        Ahead { results, at: 0, tickets }
    }

    /// The next result; `None` at the end or when no thread computes it.
    fn next(&mut self) -> Option<R> {
        let r = self.results.get(self.at)?.recv().ok();
        self.at += 1;
        let _ = self.tickets.try_send(());
        r
    }
}

/// A repository opened and walked (or why not), and how long that took.
struct Walk {
    name: String,
    walked: Result<(ObjectView, walk::Walked)>,
    took: std::time::Duration,
}

impl Walk {
    fn of(repo: &Repo) -> Walk {
        let started = std::time::Instant::now();
        let walked = std::panic::catch_unwind(|| -> Result<_> {
            let gate = GateRepo::open(&repo.git_dir, &GitEnv::default())?;
            let walked = walk::walk(&gate)?;
            Ok((gate.into_view(), walked))
        })
        .unwrap_or_else(|_| Err(anyhow!("internal error: the walk of this repository panicked")));
        Walk { name: repo.name.clone(), walked, took: started.elapsed() }
    }
}

fn header(opts: &Options, shard: Option<String>) -> Result<state::Header> {
    let paths = opts
        .paths
        .iter()
        .map(|p| std::fs::canonicalize(p).map(|c| c.to_string_lossy().into_owned()))
        .collect::<std::io::Result<Vec<_>>>()
        .context("cannot resolve the paths")?;
    Ok(state::Header {
        kind: state::Header::KIND.to_string(),
        modelgate: crate::ENGINE_VERSION.to_string(),
        flavor: opts.flavor.as_str().to_string(),
        paths,
        shard,
        policy: opts
            .policy
            .as_ref()
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()).display().to_string()),
        all_files: opts.all_files,
    })
}

/// Where a repository's policy comes from, as the hook finds it: `--policy` of the audit,
/// else the `--policy` its installed modelgate hook names (plain, Gitea or GitLab layout),
/// else `$GIT_DIR/modelgate.toml`, else [`SYSTEM_POLICY`], else the built-in policy.
/// (`$MODELGATE_POLICY`, which only a trusted forge environment may set for a hook, is not
/// read: the audit has no pusher environment.)
pub fn policy_source(flag: Option<&Path>, git_dir: &Path) -> PolicySource {
    if let Some(f) = flag {
        return PolicySource::Flag(f.to_path_buf());
    }
    for hook in [
        git_dir.join("hooks").join("pre-receive"),
        git_dir.join("hooks").join("pre-receive.d").join("modelgate"),
        git_dir.join("custom_hooks").join("pre-receive.d").join("modelgate"),
    ] {
        let Ok(text) = std::fs::read_to_string(&hook) else { continue };
        if !text.lines().any(|l| l == crate::hook::install::MARKER) {
            continue;
        }
        if let (Some(p), _) = crate::hook::install::installed_args(&text) {
            return PolicySource::Flag(p);
        }
    }
    find_policy(None, None, git_dir, Path::new(SYSTEM_POLICY))
}

/// A loaded policy and what judging with it needs.
struct Judging {
    /// Index in [`Auditor::policies`]: part of every table key, so that verdicts under one
    /// policy's lists and budgets are never served under another's.
    id: usize,
    policy: Policy,
    config: HookConfig,
    cache: Option<Cache>,
}

/// The fleet-wide state of a run.
struct Auditor<'o> {
    opts: &'o Options,
    /// Policies by source (`None`: built-in); a policy that fails to load is kept as its error.
    policies: HashMap<Option<PathBuf>, Result<Arc<Judging>, String>>,
    /// How places are seen, numbered for the keys below: the checkout, and the model format
    /// the place's name claims (`*.pt`: content nothing recognises is then an error), on both
    /// of which a judgement depends.
    views: HashMap<(Checkout, Option<String>), u32>,
    /// Judgements of blobs by policy, blob and view (the stored bytes and every other way
    /// that view's checkout writes them).
    blobs: HashMap<(usize, ObjectId, u32), Arc<Judgement>>,
    /// LFS pointer blobs: the oid each names.
    pointers: HashMap<ObjectId, String>,
    /// Judgements of LFS pointers by policy, pointer blob, view and the [`ObjectKey`] of the
    /// object (in the store of the repository that judged it).
    objects: HashMap<(usize, ObjectId, u32, ObjectKey), Arc<Judgement>>,
    /// LFS objects this run moved to the quarantine, by where they were
    /// ([`LfsObjects::locate`]): their key when judged, and where they went.
    moved: HashMap<String, (Option<ObjectKey>, Option<String>)>,
    /// Quarantine warnings already shown.
    warned: std::collections::HashSet<String>,
    stats: Stats,
}

/// The LFS store of the repository being audited: opened once (on the first pointer), with
/// the [`ObjectKey`] of each oid asked for (one `head` per oid).
struct RepoStore<'c> {
    config: &'c HookConfig,
    git_dir: &'c Path,
    store: Option<Result<Arc<dyn LfsObjects>, String>>,
    keys: HashMap<String, Option<ObjectKey>>,
}

impl RepoStore<'_> {
    fn store(&mut self) -> Result<Arc<dyn LfsObjects>, String> {
        let (lfs, git_dir) = (&self.config.lfs, self.git_dir);
        self.store.get_or_insert_with(|| crate::store::open(lfs, git_dir).map_err(|e| e.0)).clone()
    }

    /// The key of `oid` in this store: of the object it holds, or of the object this run
    /// moved from its place to the quarantine; `None` when it holds none (or cannot be asked).
    fn key(&mut self, oid: &str, moved: &HashMap<String, (Option<ObjectKey>, Option<String>)>) -> Option<ObjectKey> {
        if let Some(k) = self.keys.get(oid) {
            return k.clone();
        }
        let store = self.store().ok()?;
        let key = match moved.get(&store.locate(oid)) {
            Some((k, _)) => k.clone(),
            None => ObjectKey::of(store.as_ref(), &self.config.lfs, oid),
        };
        self.keys.insert(oid.to_string(), key.clone());
        key
    }
}

impl<'o> Auditor<'o> {
    fn new(opts: &'o Options) -> Auditor<'o> {
        Auditor {
            opts,
            policies: HashMap::new(),
            views: HashMap::new(),
            blobs: HashMap::new(),
            pointers: HashMap::new(),
            objects: HashMap::new(),
            moved: HashMap::new(),
            warned: Default::default(),
            stats: Stats::default(),
        }
    }

    fn judging(&mut self, source: &PolicySource) -> Result<Arc<Judging>, String> {
        let key = source.path().map(Path::to_path_buf);
        if let Some(j) = self.policies.get(&key) {
            return j.clone();
        }
        let id = self.policies.len();
        let loaded = match &key {
            Some(p) => Policy::from_file(p).map_err(|e| format!("{e:#}")),
            None => Ok(Policy::builtin()),
        };
        let judging = loaded.map(|policy| {
            let mut config = hook_config(&policy);
            // An audit is no push: only the per-file budgets hold.
            config.limits.push_timeout = None;
            config.limits.push_read_bytes = None;
            config.limits.jobs = self.opts.jobs;
            let cache = self.opts.cache_dir.as_ref().map(|d| Cache::new(d.clone(), &config.scan, &config.cache_salt));
            Arc::new(Judging { id, policy, config, cache })
        });
        self.policies.insert(key, judging.clone());
        judging
    }

    /// Audit one repository; a failure is the repository record's error.
    fn audit(&mut self, repo: &Repo, walked: Walk) -> Block {
        let mut rec = RepoRecord {
            repository: repo.name.clone(),
            path: repo.git_dir.display().to_string(),
            flavor: self.opts.flavor.as_str().to_string(),
            ..Default::default()
        };
        let source = policy_source(self.opts.policy.as_deref(), &repo.git_dir);
        rec.policy = Some(source.path().map_or_else(|| "built-in policy".to_string(), |p| p.display().to_string()));
        let files = match self.judging(&source) {
            Ok(j) => self.audit_with(repo, walked, &j, &mut rec),
            Err(e) => Err(anyhow!("the repository's policy cannot be loaded: {e}")),
        };
        match files {
            Ok(files) => {
                rec.files = files.len() as u64;
                Block { files, repo: rec }
            }
            Err(e) => {
                rec.error = Some(format!("{e:#}"));
                Block { files: Vec::new(), repo: rec }
            }
        }
    }

    fn audit_with(&mut self, repo: &Repo, walk: Walk, j: &Judging, rec: &mut RepoRecord) -> Result<Vec<FileRecord>> {
        self.stats.walk_time += walk.took;
        let (objects, walked) = walk.walked?;
        rec.refs = walked.refs;
        rec.commits = walked.commits;
        rec.symlinks = walked.symlinks;
        rec.submodules = walked.submodules;

        // The repository as the hook sees it: its forge name (from the layout, which the
        // audit trusts) names the LFS store of a template and is matched by rules' `repos`.
        let env = HookEnv { git_dir: repo.git_dir.clone(), forge_repo: repo.forge_name.clone(), ..Default::default() };
        let mut config = j.config.clone();
        config.lfs.repo = env.lfs_repo();
        config.lfs.validate().map_err(|e| anyhow!("bad lfs configuration: {e}"))?;
        let mut store = RepoStore { config: &config, git_dir: &repo.git_dir, store: None, keys: HashMap::new() };

        // Each (blob, view) once: from this run's table, else judged (through the disk
        // cache), as the hook judges a blob at a place with that checkout and name.
        let started = std::time::Instant::now();
        // How each place is seen: the run's number of its checkout and claim.
        let mut local: HashMap<(usize, Option<String>), u32> = HashMap::new();
        let mut views: Vec<u32> = Vec::with_capacity(walked.places.len());
        for p in &walked.places {
            let claim = crate::formats::claimed_model(&String::from_utf8_lossy(&p.path));
            let n = match local.get(&(p.checkout, claim.clone())) {
                Some(&n) => n,
                None => {
                    let co = walked.checkouts.get(p.checkout).cloned().unwrap_or_default();
                    let n = self.view(co, claim.clone());
                    local.insert((p.checkout, claim), n);
                    n
                }
            };
            views.push(n);
        }
        let view = |i: usize| views.get(i).copied().unwrap_or(u32::MAX);
        let checkout = |p: &walk::WalkPlace| walked.checkouts.get(p.checkout).cloned().unwrap_or_default();
        let mut order: Vec<(ObjectId, u32)> = Vec::new();
        let mut first: HashMap<(ObjectId, u32), usize> = HashMap::new();
        for (i, p) in walked.places.iter().enumerate() {
            if let std::collections::hash_map::Entry::Vacant(e) = first.entry((p.blob, view(i))) {
                e.insert(i);
                order.push((p.blob, view(i)));
            }
        }
        let mut known: HashMap<(ObjectId, u32), Arc<Judgement>> = HashMap::new();
        let mut todo: Vec<(NewBlob, u32)> = Vec::new();
        for &(id, co) in &order {
            if let Some(jd) = self.lookup(j.id, id, co, &mut store) {
                self.stats.from_fleet += 1;
                known.insert((id, co), jd);
                continue;
            }
            let Some(p) = first.get(&(id, co)).and_then(|i| walked.places.get(*i)) else { continue };
            let place =
                Place { path: p.path.clone(), commit: p.commit, refname: p.refname.clone(), checkout: checkout(p) };
            todo.push((NewBlob { id, places: vec![place] }, co));
        }
        let at = pack_order(&repo.git_dir, objects.object_hash(), &todo.iter().map(|(b, _)| b.id).collect::<Vec<_>>());
        let mut sorted: Vec<(usize, (NewBlob, u32))> = todo.into_iter().enumerate().collect();
        sorted.sort_by_key(|(i, _)| at.get(*i).copied().unwrap_or((usize::MAX, 0)));
        let (todo, numbered): (Vec<NewBlob>, Vec<u32>) = sorted.into_iter().map(|(_, b)| b).unzip();
        let judged = judge_push(&objects, &todo, &config, j.cache.as_ref());
        for ((b, co), jd) in todo.iter().zip(numbered).zip(judged) {
            self.stats.from_cache += u64::from(jd.judged.cached);
            self.stats.judged += u64::from(!jd.judged.cached);
            if !jd.judged.cached {
                self.stats.judged_bytes += jd.judged.size;
            }
            let jd = Arc::new(jd);
            self.remember(j.id, b.id, co, &jd, &mut store);
            known.insert((b.id, co), jd);
        }
        self.stats.judge_time += started.elapsed();
        // Distinct blobs, with the size of what was judged for each.
        let mut sizes: HashMap<ObjectId, u64> = HashMap::with_capacity(order.len());
        for key in &order {
            let size = known.get(key).map_or(0, |jd| jd.judged.size);
            sizes.entry(key.0).or_insert(size);
        }
        rec.blobs = sizes.len() as u64;
        rec.bytes = sizes.values().sum();

        // One record per place (a path and its blob, at the commit that introduced them
        // with these checkouts), decided there as the hook decides a blob: over every way
        // the place checks out, the strictest decision wins (between equal decisions, the
        // worse verdict). The walk gives a place's checkouts one after the other.
        let decider = PolicyDecider::new(&j.policy, env.repo_names()).with_objects(&repo.git_dir, &GitEnv::default());
        let mut files = Vec::new();
        let mut at = 0;
        rec.places = 0;
        while let Some(p) = walked.places.get(at) {
            let n = walked
                .places
                .get(at..)
                .unwrap_or_default()
                .iter()
                .take_while(|q| q.blob == p.blob && q.path == p.path && q.commit == p.commit && q.refname == p.refname)
                .count();
            let group = walked.places.get(at..at + n).unwrap_or_default();
            let judgements: Vec<&Arc<Judgement>> = (at..at + n).filter_map(|i| known.get(&(p.blob, view(i)))).collect();
            at += n;
            rec.places += 1;
            let Some(jd) = judgements.first().copied() else { continue };
            let places = group
                .iter()
                .map(|q| Place {
                    path: q.path.clone(),
                    commit: q.commit,
                    refname: q.refname.clone(),
                    checkout: checkout(q),
                })
                .collect();
            let blob = NewBlob { id: p.blob, places };
            let Some((action, why, v, checkout)) = strictest(&decider, &blob, &judgements) else { continue };
            let model = judgements.iter().any(|j| j.all().any(|(_, v)| v.is_model()));
            if !(self.opts.all_files || model || action != Action::Allow) {
                continue;
            }
            // The LFS object itself rejected: out of the store with it.
            let mut moved = None;
            if let (Some(dir), Some(oid)) = (&self.opts.quarantine, &jd.judged.lfs_oid) {
                if crate::hook::Decide::decide(&decider, &blob, &jd.judged) == Action::Reject && found(&jd.judged) {
                    moved = self.quarantine(&mut store, oid, dir, &repo.name, &jd.judged);
                }
            }
            files.push(FileRecord {
                repository: repo.name.clone(),
                refname: Some(escape_bytes(&p.refname)),
                commit: p.commit.map(|c| c.to_string()),
                path: escape_bytes(&p.path),
                blob: Some(p.blob.to_string()),
                lfs_oid: v.lfs_oid.clone().or_else(|| jd.judged.lfs_oid.clone()),
                size: Some(v.size),
                format: v.format.clone(),
                verdict: v.verdict.as_str().to_string(),
                decision: action.as_str().to_string(),
                decided_by: why,
                checkout: checkout.map(str::to_string),
                codes: v.codes(),
                imports: v.imports.clone(),
                findings: v.findings.clone(),
                quarantined: moved,
            });
        }
        Ok(files)
    }

    /// A judgement made earlier in this run for this blob and view under this policy: of
    /// the blob itself, or, for an LFS pointer, when this repository's store holds the same
    /// object (see [`ObjectKey`]).
    fn lookup(&self, policy: usize, id: ObjectId, view: u32, store: &mut RepoStore<'_>) -> Option<Arc<Judgement>> {
        if let Some(j) = self.blobs.get(&(policy, id, view)) {
            return Some(j.clone());
        }
        let oid = self.pointers.get(&id)?;
        let key = store.key(oid, &self.moved)?;
        self.objects.get(&(policy, id, view, key)).cloned()
    }

    /// The run's number of a view (a checkout and a claim).
    fn view(&mut self, co: Checkout, claim: Option<String>) -> u32 {
        let n = self.views.len() as u32;
        *self.views.entry((co, claim)).or_insert(n)
    }

    fn remember(&mut self, policy: usize, id: ObjectId, view: u32, j: &Arc<Judgement>, store: &mut RepoStore<'_>) {
        match &j.judged.lfs_oid {
            None => {
                self.blobs.insert((policy, id, view), j.clone());
            }
            Some(oid) => {
                self.pointers.insert(id, oid.clone());
                // Only objects that were there: a missing one is looked up again.
                if !found(&j.judged) {
                    return;
                }
                // Its size is the judgement's (the object's, checked against the pointer):
                // without verification that is its whole key, and the store is not asked.
                let key = match store.config.lfs.verify_sha256 {
                    false => {
                        let key = ObjectKey { oid: oid.clone(), size: j.judged.size, version: None };
                        store.keys.entry(oid.clone()).or_insert_with(|| Some(key.clone())).clone()
                    }
                    true => store.key(oid, &self.moved),
                };
                if let Some(key) = key {
                    self.objects.insert((policy, id, view, key), j.clone());
                }
            }
        }
    }

    /// Move a rejected LFS object out of the repository's store, with its verdict beside
    /// it, as `modelgate lfs watch --quarantine` does: into a directory for a filesystem
    /// store, within the bucket (`s3://<bucket>/<prefix>`) for an S3 store. Returns where it
    /// went (also when this run moved it already, for another repository sharing the store);
    /// `None` when it is not there or cannot be moved (said on stderr, once per reason).
    fn quarantine(
        &mut self,
        store: &mut RepoStore<'_>,
        oid: &str,
        dir: &Path,
        repo: &str,
        j: &Judged,
    ) -> Option<String> {
        let res = (|| -> Result<Option<String>> {
            let s = store.store().map_err(|e| anyhow!("{e}"))?;
            let place = s.locate(oid);
            if let Some((_, dest)) = self.moved.get(&place) {
                return Ok(dest.clone());
            }
            let s3 = store.config.lfs.layout == crate::lfs::Layout::S3;
            if !s3 && dir.to_string_lossy().starts_with("s3://") {
                bail!("a filesystem lfs store quarantines to a directory, not to {}", dir.display());
            }
            // Objects of several repositories may share an oid (a store naming repositories, or
            // one store per repository): the repository is in the name of the second.
            let with_repo = format!("{}--{oid}", repo.replace('/', "--"));
            let name = match store.config.lfs.names_repo() || (!s3 && dir.join(oid).exists()) {
                true => with_repo,
                false => oid.to_string(),
            };
            let record = serde_json::json!({
                "moved_from": place,
                "repository": repo,
                "oid": oid,
                "verdict": j,
            });
            let key = store.key(oid, &self.moved);
            let dest = s.quarantine(oid, &name, dir, &record).map_err(|e| anyhow!("{e}"))?;
            if dest.is_some() {
                self.moved.insert(place, (key, dest.clone()));
            }
            Ok(dest)
        })();
        match res {
            Ok(p) => p,
            Err(e) => {
                let msg = format!("{e:#}");
                if self.warned.insert(msg.clone()) {
                    eprintln!("modelgate: warning: cannot quarantine sha256:{oid}: {msg}");
                }
                None
            }
        }
    }
}

/// The stored judgement is of an object the store holds (not missing, mismatched or unreadable).
fn found(j: &Judged) -> bool {
    !j.findings.iter().any(|f| f.code.starts_with("lfs-"))
}

/// The decision of a place over every way it checks out, as the push gate takes it
/// (`pre_receive`): the strictest action, and between equal actions the worse verdict; with
/// why (`...; as checked out with <checkout>`), the judgement that decided and its checkout
/// (`None`: the stored bytes, or the LFS object behind a pointer).
fn strictest<'j>(
    decider: &PolicyDecider<'_>,
    blob: &NewBlob,
    judgements: &[&'j Arc<Judgement>],
) -> Option<(Action, Option<String>, &'j Judged, Option<&'j str>)> {
    let mut best: Option<(Action, Option<String>, &Judged, Option<&str>)> = None;
    for (checkout, v) in judgements.iter().flat_map(|j| j.all()) {
        let (a, why) = crate::hook::Decide::decide_why(decider, blob, v);
        if best.as_ref().is_none_or(|(b, _, bv, _)| a > *b || (a == *b && v.verdict > bv.verdict)) {
            let why = match (checkout, why) {
                (Some(c), Some(w)) => Some(format!("{w}; as checked out with {c}")),
                (Some(c), None) => Some(format!("as checked out with {c}")),
                (None, w) => w,
            };
            best = Some((a, why, v, checkout));
        }
    }
    best
}

/// An LFS object as the run's table knows it: its oid and size as the store says
/// ([`LfsObjects::head`]), and when the store verifies content (`verify_sha256`) the very
/// object (a file's device and inode: hard-linked copies are one file; an S3 object's key and
/// ETag). Without verification the gate's cache takes an object of the oid and the pointer's
/// size as known, and so does this; with it, another object is hashed again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ObjectKey {
    oid: String,
    size: u64,
    version: Option<String>,
}

impl ObjectKey {
    /// The key of `oid` in `store`; `None` when it is not there, or cannot be identified.
    fn of(store: &dyn LfsObjects, lfs: &crate::lfs::LfsStore, oid: &str) -> Option<ObjectKey> {
        let meta = store.head(oid).ok()??;
        let version = match lfs.verify_sha256 {
            false => None,
            true if lfs.layout == crate::lfs::Layout::S3 => Some(format!("{} {}", meta.place, meta.version?)),
            true => Some(meta.version?),
        };
        Some(ObjectKey { oid: oid.to_string(), size: meta.size, version })
    }
}

/// Where each blob is in the repository's packs (`(pack, offset)`, in `ids` order; loose
/// objects and objects of alternates last): reading blobs in this order lets each one's
/// delta base come from the reader's cache.
fn pack_order(git_dir: &Path, kind: gix::hash::Kind, ids: &[ObjectId]) -> Vec<(usize, u64)> {
    let dir = git_dir.join("objects").join("pack");
    let mut idx: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "idx"))
        .collect();
    idx.sort();
    let indices: Vec<gix::odb::pack::index::File> =
        idx.iter().filter_map(|p| gix::odb::pack::index::File::at(p, kind).ok()).collect();
    ids.iter()
        .map(|id| {
            indices
                .iter()
                .enumerate()
                .find_map(|(n, i)| i.lookup(id).map(|e| (n, i.pack_offset_at_index(e))))
                .unwrap_or((usize::MAX, 0))
        })
        .collect()
}

/// Progress on stderr: repositories, blobs, bytes.
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(on: bool, repos: u64) -> Progress {
        if !on {
            return Progress(None);
        }
        let bar = indicatif::ProgressBar::new(repos);
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(10));
        if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} repositories  {msg}") {
            bar.set_style(style);
        }
        Progress(Some(bar))
    }

    fn repo(&self, s: &Stats) {
        if let Some(b) = &self.0 {
            b.inc(1);
            b.set_message(format!(
                "{} blobs judged, {} from the fleet, {}",
                s.judged,
                s.from_fleet,
                human_bytes(s.judged_bytes)
            ));
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// `1.5 GiB`.
pub fn human_bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    match u {
        0 => format!("{n} B"),
        _ => format!("{v:.1} {}", units.get(u).unwrap_or(&"B")),
    }
}
