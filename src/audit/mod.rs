//! `modelgate audit`: what a forge already holds. Every blob reachable from any ref of every
//! repository, through all history, and the LFS objects its pointers name, judged as the push
//! gate judges a push (the same policy lookup, engine, LFS resolution, budgets and decisions),
//! with one JSON record per file place.
//!
//! Each blob (and each LFS object, per store file) is judged once for the whole fleet: an
//! in-memory table in front of the gate's content-addressed cache (which `--cache DIR` shares
//! between runs, shards and the hooks), so a fork or a mirror costs only its walk.
//!
//! Repositories are audited one after the other in name order (each one's files in
//! parallel); `--shard i/n` takes a stable subset by a hash of the name, and shards' outputs
//! merge into the unsharded output ([`records::Fleet`]). A state file makes a run resumable
//! ([`state::Journal`]).

pub mod cli;
pub mod discover;
pub mod notes;
pub mod records;
pub mod state;
pub mod walk;

use crate::git::attr::Checkout;
use crate::git::{GateRepo, GitEnv, NewBlob, ObjectId, Place};
use crate::hook::gate::{find_policy, hook_config, PolicyDecider, PolicySource, SYSTEM_POLICY};
use crate::hook::{escape_bytes, judge_all, Action, Cache, HookConfig, HookEnv, Judged};
use crate::policy::Policy;
use anyhow::{anyhow, Context, Result};
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
    for r in mine {
        let block = match journal.as_mut().and_then(|j| j.done.remove(&r.name)) {
            Some(b) => {
                auditor.stats.resumed += 1;
                b
            }
            None => {
                let b = auditor.audit(r);
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
    progress.finish();
    Ok(Outcome { summary, stats: auditor.stats })
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
    /// Judgements by policy and blob.
    blobs: HashMap<(usize, ObjectId), Arc<Judged>>,
    /// LFS pointer blobs: the oid each names.
    pointers: HashMap<ObjectId, String>,
    /// Judgements of LFS objects by policy and [`ObjectKey`].
    objects: HashMap<(usize, ObjectKey), Arc<Judged>>,
    stats: Stats,
}

impl<'o> Auditor<'o> {
    fn new(opts: &'o Options) -> Auditor<'o> {
        Auditor {
            opts,
            policies: HashMap::new(),
            blobs: HashMap::new(),
            pointers: HashMap::new(),
            objects: HashMap::new(),
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
    fn audit(&mut self, repo: &Repo) -> Block {
        let mut rec = RepoRecord {
            repository: repo.name.clone(),
            path: repo.git_dir.display().to_string(),
            flavor: self.opts.flavor.as_str().to_string(),
            ..Default::default()
        };
        let source = policy_source(self.opts.policy.as_deref(), &repo.git_dir);
        rec.policy = Some(source.path().map_or_else(|| "built-in policy".to_string(), |p| p.display().to_string()));
        let files = match self.judging(&source) {
            Ok(j) => self.audit_with(repo, &j, &mut rec),
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

    fn audit_with(&mut self, repo: &Repo, j: &Judging, rec: &mut RepoRecord) -> Result<Vec<FileRecord>> {
        let started = std::time::Instant::now();
        let gate = GateRepo::open(&repo.git_dir, &GitEnv::default())?;
        let walked = walk::walk(&gate)?;
        self.stats.walk_time += started.elapsed();
        rec.refs = walked.refs;
        rec.commits = walked.commits;
        rec.places = walked.places.len() as u64;
        rec.symlinks = walked.symlinks;
        rec.submodules = walked.submodules;

        // The repository as the hook sees it: its forge name (from the layout, which the
        // audit trusts) names the LFS store of a template and is matched by rules' `repos`.
        let env = HookEnv { git_dir: repo.git_dir.clone(), forge_repo: repo.forge_name.clone(), ..Default::default() };
        let mut config = j.config.clone();
        config.lfs.repo = env.lfs_repo();
        config.lfs.validate().map_err(|e| anyhow!("bad lfs configuration: {e}"))?;

        // Each blob once: from this run's table, else judged (through the disk cache).
        let started = std::time::Instant::now();
        let mut order: Vec<ObjectId> = Vec::new();
        let mut first: HashMap<ObjectId, usize> = HashMap::new();
        for (i, p) in walked.places.iter().enumerate() {
            if let std::collections::hash_map::Entry::Vacant(e) = first.entry(p.blob) {
                e.insert(i);
                order.push(p.blob);
            }
        }
        rec.blobs = order.len() as u64;
        let mut known: HashMap<ObjectId, Arc<Judged>> = HashMap::new();
        let mut todo: Vec<NewBlob> = Vec::new();
        for id in &order {
            if let Some(jd) = self.lookup(j.id, id, &config, &repo.git_dir) {
                self.stats.from_fleet += 1;
                known.insert(*id, jd);
                continue;
            }
            let Some(p) = first.get(id).and_then(|i| walked.places.get(*i)) else { continue };
            todo.push(NewBlob {
                id: *id,
                places: vec![Place {
                    path: p.path.clone(),
                    commit: p.commit,
                    refname: p.refname.clone(),
                    checkout: Checkout::default(),
                }],
            });
        }
        let at = pack_order(&repo.git_dir, gate.object_hash(), &todo.iter().map(|b| b.id).collect::<Vec<_>>());
        let mut sorted: Vec<(usize, NewBlob)> = todo.into_iter().enumerate().collect();
        sorted.sort_by_key(|(i, _)| at.get(*i).copied().unwrap_or((usize::MAX, 0)));
        let todo: Vec<NewBlob> = sorted.into_iter().map(|(_, b)| b).collect();
        let judged = judge_all(gate.view(), &todo, &config, j.cache.as_ref());
        for (b, jd) in todo.iter().zip(judged) {
            self.stats.from_cache += u64::from(jd.cached);
            self.stats.judged += u64::from(!jd.cached);
            if !jd.cached {
                self.stats.judged_bytes += jd.size;
            }
            let jd = Arc::new(jd);
            self.remember(j.id, b.id, &jd, &config, &repo.git_dir);
            known.insert(b.id, jd);
        }
        self.stats.judge_time += started.elapsed();
        rec.bytes = order.iter().filter_map(|id| known.get(id)).map(|jd| jd.size).sum();

        // One record per place, decided there.
        let decider = PolicyDecider::new(&j.policy, env.repo_names()).with_objects(&repo.git_dir, &GitEnv::default());
        let mut files = Vec::new();
        let mut quarantined: HashMap<String, Option<String>> = HashMap::new();
        for p in &walked.places {
            let Some(jd) = known.get(&p.blob) else { continue };
            // The checkout of a place without attributes (`.gitattributes` are not read here yet):
            // as stored, and with a client's `core.autocrlf`, as the hook judges such a place.
            let place = Place {
                path: p.path.clone(),
                commit: p.commit,
                refname: p.refname.clone(),
                checkout: Checkout::default(),
            };
            let blob = NewBlob { id: p.blob, places: vec![place] };
            let (action, why) = crate::hook::Decide::decide_why(&decider, &blob, jd);
            if !(self.opts.all_files || jd.is_model() || action != Action::Allow) {
                continue;
            }
            let mut moved = None;
            if let (Some(dir), Some(oid), Action::Reject) = (&self.opts.quarantine, &jd.lfs_oid, action) {
                moved = quarantined
                    .entry(oid.clone())
                    .or_insert_with(|| quarantine(&config, &repo.git_dir, oid, dir, &repo.name, jd))
                    .clone();
            }
            files.push(FileRecord {
                repository: repo.name.clone(),
                refname: Some(escape_bytes(&p.refname)),
                commit: p.commit.map(|c| c.to_string()),
                path: escape_bytes(&p.path),
                blob: Some(p.blob.to_string()),
                lfs_oid: jd.lfs_oid.clone(),
                size: Some(jd.size),
                format: jd.format.clone(),
                verdict: jd.verdict.as_str().to_string(),
                decision: action.as_str().to_string(),
                decided_by: why,
                codes: jd.codes(),
                imports: jd.imports.clone(),
                findings: jd.findings.clone(),
                quarantined: moved,
            });
        }
        Ok(files)
    }

    /// A judgement made earlier in this run for this blob under this policy: of the blob
    /// itself, or, for an LFS pointer, of its object when this repository's store has it too
    /// (see [`ObjectKey`]).
    fn lookup(&self, policy: usize, id: &ObjectId, config: &HookConfig, git_dir: &Path) -> Option<Arc<Judged>> {
        if let Some(j) = self.blobs.get(&(policy, *id)) {
            return Some(j.clone());
        }
        let oid = self.pointers.get(id)?;
        let key = ObjectKey::of(config, git_dir, oid)?;
        self.objects.get(&(policy, key)).cloned()
    }

    fn remember(&mut self, policy: usize, id: ObjectId, j: &Arc<Judged>, config: &HookConfig, git_dir: &Path) {
        match &j.lfs_oid {
            None => {
                self.blobs.insert((policy, id), j.clone());
            }
            Some(oid) => {
                self.pointers.insert(id, oid.clone());
                // Only objects that were there: a missing one is looked up again (a stat).
                let found = !j.findings.iter().any(|f| f.code.starts_with("lfs-"));
                if let Some(key) = ObjectKey::of(config, git_dir, oid).filter(|_| found) {
                    self.objects.insert((policy, key), j.clone());
                }
            }
        }
    }
}

/// An LFS object as the run's table knows it: its oid and size, and when the store verifies
/// content (`verify_sha256`), the very file (device and inode: hard-linked copies are one
/// file). Without verification the gate's cache takes an object of the oid and the pointer's
/// size as known, and so does this; with it, another file is hashed again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ObjectKey {
    oid: String,
    size: u64,
    file: Option<(u64, u64)>,
}

impl ObjectKey {
    /// The key of `oid` in this repository's store; `None` when it is not there.
    fn of(config: &HookConfig, git_dir: &Path, oid: &str) -> Option<ObjectKey> {
        use std::os::unix::fs::MetadataExt;
        let path = config.lfs.object_path(git_dir, oid).ok()?;
        let m = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
        let file = config.lfs.verify_sha256.then(|| (m.dev(), m.ino()));
        Some(ObjectKey { oid: oid.to_string(), size: m.len(), file })
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

/// Move a rejected LFS object out of a filesystem store, with its verdict beside it (as
/// `modelgate lfs watch --quarantine` does). Returns where it went; `None` when it is not
/// there (already moved, never uploaded) or cannot be moved (said on stderr).
fn quarantine(config: &HookConfig, git_dir: &Path, oid: &str, dir: &Path, repo: &str, j: &Judged) -> Option<String> {
    let res = (|| -> Result<Option<PathBuf>> {
        let from = config.lfs.object_path(git_dir, oid).map_err(|e| anyhow!("{e}"))?;
        match std::fs::symlink_metadata(&from) {
            Ok(m) if m.is_file() => {}
            _ => return Ok(None),
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // Objects of several repositories may share an oid (a store naming repositories, or
        // one store per repository): the repository is in the name of the second.
        let with_repo = format!("{}--{oid}", repo.replace('/', "--"));
        let name = match config.lfs.names_repo() || dir.join(oid).exists() {
            true => with_repo,
            false => oid.to_string(),
        };
        let dest = dir.join(&name);
        if let Err(e) = std::fs::rename(&from, &dest) {
            if e.raw_os_error() != Some(18) {
                return Err(e).with_context(|| format!("cannot move {}", from.display()));
            }
            std::fs::copy(&from, &dest).with_context(|| format!("cannot copy {}", from.display()))?;
            std::fs::remove_file(&from).with_context(|| format!("cannot remove {}", from.display()))?;
        }
        let meta = serde_json::to_vec_pretty(&serde_json::json!({
            "moved_from": from,
            "repository": repo,
            "oid": oid,
            "verdict": j,
        }))?;
        std::fs::write(dir.join(format!("{name}.json")), meta)?;
        Ok(Some(dest))
    })();
    match res {
        Ok(p) => p.map(|p| p.display().to_string()),
        Err(e) => {
            eprintln!("modelgate: warning: cannot quarantine sha256:{oid}: {e:#}");
            None
        }
    }
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
