//! Which blobs a push introduces, where, and how clients would check them out.
//!
//! New commits are those reachable from the pushed tips but from no existing ref; each is
//! diffed against each parent (a root commit against the empty tree). A path counts as
//! changed when its entry (mode and id) differs, and every path below a directory whose
//! `.gitattributes` changed counts as changed too (its checkout conversions may have), so a
//! push that only edits attributes is judged again. Refs that point straight at a tree or
//! a blob (directly or through annotated tags) bring the whole tree or the blob.
//!
//! Beyond what refs reach ([`WalkOptions`]): the targets of gitlinks that exist here (a
//! submodule pointing into this repository, which `git clone --recurse-submodules` fetches
//! by id), every other commit, tree and blob stored in the quarantine (a pack may carry
//! objects no ref reaches), and per ref update everything it newly makes reachable from that
//! ref (`old..new`, all of `new` for a created ref), so that ref-scoped rules see each path
//! into the ref, objects already on the server included.
//!
//! Trees are diffed here rather than with `gix::diff::tree`: entries are compared as raw
//! bytes straight from the decoded (and cached) tree objects, without copying them.

use super::attr::{AttrFile, Checkout, Frame};
use super::open::GateRepo;
use super::packed::{Obj, PackedObjects};
use super::tree::{
    attr_entry, changed, changed_bytes, entries, may_have_attributes, Entry, S_IFDIR, S_IFGITLINK, S_IFLNK, S_IFMT,
    S_IFREG,
};
use super::updates::{RefUpdate, UpdateKind};
use anyhow::{anyhow, bail, Context, Result};
use gix::bstr::{BStr, BString, ByteSlice};
use gix::ObjectId;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

/// Maps and sets keyed by object ids hash by the ids' first bytes (they are hashes already):
/// SipHash over every id was a visible part of walking a long history.
type IdMap<V> = gix::hashtable::HashMap<ObjectId, V>;
type IdSet = gix::hashtable::HashSet<ObjectId>;

/// Where a blob appears in the push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// Path in the tree (raw bytes); empty for a blob a ref points at directly, or one only
    /// found in the quarantine.
    pub path: BString,
    /// The commit that added or changed it; `None` for trees and blobs reached through tags.
    pub commit: Option<ObjectId>,
    /// The ref whose update brought it; empty when no ref reaches it.
    pub refname: BString,
    /// How a client writes it to a work tree there.
    pub checkout: Checkout,
}

/// A blob the push introduces, with every place it appears.
#[derive(Debug, Clone)]
pub struct NewBlob {
    pub id: ObjectId,
    /// Empty for a blob that no walk reached (stored in the quarantine, shown by id).
    pub places: Vec<Place>,
}

/// Everything a push introduces.
#[derive(Debug, Default)]
pub struct Introduced {
    /// Each blob once, in discovery order.
    pub blobs: Vec<NewBlob>,
    /// New commits, each once, in walk order (newest first per ref).
    pub commits: Vec<ObjectId>,
    /// Submodule entries (gitlinks) seen.
    pub submodules: usize,
    /// Gitlink targets present in the repository whose history was walked.
    pub submodules_walked: usize,
    /// Symbolic links seen (judged as files: clients without symlinks write them as such).
    pub symlinks: usize,
    /// Quarantined objects no ref reaches that were looked at.
    pub unreachable: usize,
}

/// What to walk besides the new commits of the pushed refs.
#[derive(Debug, Clone, Default)]
pub struct WalkOptions {
    /// Per ref update, everything it newly makes reachable from the ref (for ref-scoped rules).
    pub per_ref: bool,
    /// Every object stored in the quarantine, reachable or not, and gitlink targets.
    pub quarantine: bool,
    /// `$GIT_DIR/info/attributes`, which server-side checkouts and archives apply on top.
    pub info_attributes: Option<Vec<u8>>,
}

/// The commits existing refs point at (peeled), except refs for which `skip` is true.
/// Refs that cannot be peeled, or peel to non-commits, are ignored.
pub fn existing_tips(repo: &gix::Repository, skip: impl Fn(&BStr) -> bool) -> Result<Vec<ObjectId>> {
    let mut out = HashSet::new();
    let platform = repo.references().map_err(|e| anyhow!("cannot list refs: {e}"))?;
    let iter = platform.all().map_err(|e| anyhow!("cannot list refs: {e}"))?;
    for r in iter {
        let Ok(mut r) = r else { continue };
        if skip(r.name().as_bstr()) {
            continue;
        }
        let Ok(id) = r.peel_to_id() else { continue };
        let id = id.detach();
        if matches!(repo.find_header(id).map(|h| h.kind()), Ok(gix::object::Kind::Commit)) {
            out.insert(id);
        }
    }
    Ok(out.into_iter().collect())
}

/// Collect the blobs introduced by `updates`, hiding every commit reachable from `hidden`.
pub fn introduced(gate: &GateRepo, updates: &[RefUpdate], hidden: &[ObjectId]) -> Result<Introduced> {
    introduced_with(gate, updates, hidden, &WalkOptions::default())
}

/// [`introduced`] with the extra walks of `opts`.
pub fn introduced_with(
    gate: &GateRepo,
    updates: &[RefUpdate],
    hidden: &[ObjectId],
    opts: &WalkOptions,
) -> Result<Introduced> {
    let repo = &gate.repo;
    let objects = PackedObjects::open(gate.view().first_objects_dir(), &repo.objects, repo.object_hash());
    let info = opts.info_attributes.as_deref().map(AttrFile::parse_file).filter(|f| !f.is_empty()).map(Arc::new);
    let mut c = Collector {
        repo,
        view: gate.view(),
        differ: Differ::new(objects, info.clone(), repo.object_hash(), opts.per_ref),
        info,
        out: Introduced::default(),
        index: IdMap::default(),
        seen_commits: IdSet::default(),
        seen_trees: IdSet::default(),
        gitlinks: Vec::new(),
        memo: opts.per_ref.then(IdMap::default),
    };
    let hidden_set: IdSet = hidden.iter().copied().collect();
    for u in updates {
        if u.kind() == UpdateKind::Delete {
            continue;
        }
        let (target, kind) =
            peel(repo, u.new).with_context(|| format!("cannot read the object {} pushed to {}", u.new, u.name))?;
        let ctx = Ctx { refname: u.name.clone(), base: BString::default() };
        match kind {
            gix::object::Kind::Commit => {
                if hidden_set.contains(&target) {
                    continue;
                }
                c.walk(target, hidden, &ctx)?;
            }
            gix::object::Kind::Tree => c.whole_tree(target, None, &ctx)?,
            gix::object::Kind::Blob => c.add(target, BString::default(), None, &ctx, Checkout::default()),
            gix::object::Kind::Tag => bail!("tag chain too long at {}", u.name),
        }
    }
    if opts.quarantine {
        c.walk_gitlinks(hidden)?;
        c.quarantined(gate, hidden)?;
        c.walk_gitlinks(hidden)?;
    }
    if opts.per_ref {
        for u in updates {
            if u.kind() == UpdateKind::Delete {
                continue;
            }
            c.per_ref(u)?;
        }
    }
    Ok(c.out)
}

/// Follow annotated tags to the object they finally name.
fn peel(repo: &gix::Repository, mut id: ObjectId) -> Result<(ObjectId, gix::object::Kind)> {
    for _ in 0..64 {
        let obj = repo.find_object(id).map_err(|e| anyhow!("{e}"))?;
        if obj.kind != gix::object::Kind::Tag {
            return Ok((id, obj.kind));
        }
        id = gix::objs::TagRef::from_bytes(&obj.data, repo.object_hash())
            .map_err(|e| anyhow!("malformed tag {id}: {e}"))?
            .target();
    }
    Ok((id, gix::object::Kind::Tag))
}

/// Fewer new commits than this are diffed on the calling thread.
const PARALLEL_MIN_COMMITS: usize = 256;

/// A thread that ran out of commits takes half of what another has left when that is at
/// least this many (a thread starting elsewhere in the history reads its trees' delta chains
/// from their bases again, which a few commits do not repay).
const STEAL_MIN_COMMITS: usize = 64;

/// The commits to diff, shared out between threads as runs of consecutive commits (which
/// share most of their trees, and so the thread's object cache). Each thread starts with an
/// equal run; one that finishes takes the second half of the longest run left: commits
/// differ in cost (the newest trees of a growing history are the biggest), so equal shares
/// left one thread idle for a fifth of the walk.
struct Shares {
    /// Per thread, `[next, end)` of its current run.
    runs: std::sync::Mutex<Vec<(usize, usize)>>,
}

impl Shares {
    fn new(n: usize, threads: usize) -> Shares {
        let per = n.div_ceil(threads.max(1));
        let runs = (0..threads).map(|t| ((t * per).min(n), ((t + 1) * per).min(n))).collect();
        Shares { runs: std::sync::Mutex::new(runs) }
    }

    /// The next commit for thread `me`, and whether it starts a new run (taken from another
    /// thread; the first commit of a thread's own run is not marked).
    fn next(&self, me: usize) -> Option<(usize, bool)> {
        let mut runs = self.runs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (next, end) = *runs.get(me)?;
        if next < end {
            if let Some(r) = runs.get_mut(me) {
                r.0 += 1;
            }
            return Some((next, false));
        }
        let (victim, left) =
            runs.iter().enumerate().map(|(i, (n, e))| (i, e.saturating_sub(*n))).max_by_key(|(_, l)| *l)?;
        if left < STEAL_MIN_COMMITS {
            return None;
        }
        let (vn, ve) = *runs.get(victim)?;
        let mid = vn + left / 2;
        if let Some(v) = runs.get_mut(victim) {
            v.1 = mid;
        }
        if let Some(r) = runs.get_mut(me) {
            *r = (mid + 1, ve);
        }
        Some((mid, true))
    }
}

/// The ref a walk is for, and the path its trees sit at (a gitlink's path for a submodule).
#[derive(Clone)]
struct Ctx {
    refname: BString,
    base: BString,
}

/// A place recorded for a commit, for the per-ref walks.
#[derive(Clone)]
struct Memo {
    blob: ObjectId,
    path: BString,
    checkout: Checkout,
}

/// What diffs found, in order, before it is merged into the collection.
#[derive(Default)]
struct Found {
    places: Vec<(ObjectId, Place)>,
    gitlinks: Vec<(ObjectId, BString, BString)>,
    trees: Vec<ObjectId>,
    symlinks: usize,
    submodules: usize,
    /// Per commit diffed, its places (when per-ref walks follow).
    memo: Vec<(ObjectId, Vec<Memo>)>,
}

/// Diffs trees: one per thread, each with its own object cache.
struct Differ<'s> {
    objects: PackedObjects<'s>,
    info: Option<Arc<AttrFile>>,
    hash_len: usize,
    /// Parsed `.gitattributes` blobs (top-level parses count macros, hence the flag).
    attr_files: HashMap<(ObjectId, bool), Arc<AttrFile>>,
    /// Record places per commit for the per-ref walks.
    record: bool,
    recording: Option<Vec<Memo>>,
    found: Found,
}

struct Collector<'r> {
    repo: &'r gix::Repository,
    view: &'r super::open::ObjectView,
    differ: Differ<'r>,
    info: Option<Arc<AttrFile>>,
    out: Introduced,
    index: IdMap<usize>,
    seen_commits: IdSet,
    seen_trees: IdSet,
    /// Gitlink targets seen: (commit, path of the gitlink, ref).
    gitlinks: Vec<(ObjectId, BString, BString)>,
    /// Per commit, the places its diff gave (only when per-ref walks follow).
    memo: Option<IdMap<Rc<Vec<Memo>>>>,
}

impl<'s> Differ<'s> {
    fn new(objects: PackedObjects<'s>, info: Option<Arc<AttrFile>>, kind: gix::hash::Kind, record: bool) -> Differ<'s> {
        Differ {
            objects,
            info,
            hash_len: kind.len_in_bytes(),
            attr_files: HashMap::new(),
            record,
            recording: None,
            found: Found::default(),
        }
    }

    /// Diff a commit against each parent (a root commit against nothing).
    fn commit_diff(&mut self, commit: ObjectId, parents: &[ObjectId], ctx: &Ctx) -> Result<()> {
        let tree = self.tree_of(commit)?;
        if self.record {
            self.recording = Some(Vec::new());
        }
        if parents.is_empty() {
            self.diff_root(None, tree, Some(commit), ctx)?;
        }
        for p in parents {
            let ptree = self.tree_of(*p)?;
            self.diff_root(Some(ptree), tree, Some(commit), ctx)?;
        }
        if let Some(rec) = self.recording.take() {
            self.found.memo.push((commit, rec));
        }
        Ok(())
    }

    /// The tree of a commit, read from the commit object's first line.
    fn tree_of(&self, commit: ObjectId) -> Result<ObjectId> {
        let obj = self.objects.object(&commit).map_err(|e| anyhow!("cannot read commit {commit}: {e:#}"))?;
        let obj = obj.ok_or_else(|| anyhow!("cannot read commit {commit}: object missing"))?;
        if obj.kind != gix::object::Kind::Commit {
            bail!("object {commit} is a {}, not a commit", obj.kind);
        }
        let hex = obj
            .data
            .strip_prefix(b"tree ")
            .and_then(|r| r.get(..self.hash_len * 2))
            .ok_or_else(|| anyhow!("malformed commit {commit}"))?;
        ObjectId::from_hex(hex).map_err(|e| anyhow!("malformed commit {commit}: {e}"))
    }

    fn tree(&self, id: &ObjectId) -> Result<Rc<Obj>> {
        let obj = self.objects.object(id).map_err(|e| anyhow!("cannot read tree {id}: {e:#}"))?;
        let obj = obj.ok_or_else(|| anyhow!("cannot read tree {id}: object missing"))?;
        if obj.kind != gix::object::Kind::Tree {
            bail!("object {id} is a {}, not a tree", obj.kind);
        }
        Ok(obj)
    }

    fn diff_root(&mut self, old: Option<ObjectId>, new: ObjectId, commit: Option<ObjectId>, ctx: &Ctx) -> Result<()> {
        if old == Some(new) {
            return Ok(());
        }
        let mut frames = Vec::new();
        let mut path = Vec::new();
        self.diff(old, new, &mut path, &mut frames, false, commit, ctx)
    }

    /// Record every entry of tree `new` (at `path`) that is not identical in `old`; with
    /// `force`, every entry.
    #[allow(clippy::too_many_arguments)]
    fn diff(
        &mut self,
        old: Option<ObjectId>,
        new: ObjectId,
        path: &mut Vec<u8>,
        frames: &mut Vec<Frame>,
        mut force: bool,
        commit: Option<ObjectId>,
        ctx: &Ctx,
    ) -> Result<()> {
        if path.len() > 64 << 10 {
            bail!("tree {new} is nested too deeply");
        }
        self.found.trees.push(new);
        let new_obj = self.tree(&new)?;
        let old_obj = match old {
            Some(o) if !force => Some(self.tree(&o)?),
            _ => None,
        };
        let hash_len = self.hash_len;
        // A `.gitattributes` entry anywhere (git reads it even from an unsorted tree) makes
        // the full comparison necessary; the common case compares raw bytes only.
        let slow = force
            || old_obj.is_none()
            || may_have_attributes(&new_obj.data)
            || old_obj.as_ref().is_some_and(|o| may_have_attributes(&o.data));
        let mut new_attr: Option<Entry<'_>> = None;
        let changed: Vec<(Entry<'_>, Option<Entry<'_>>)> = match (&old_obj, slow) {
            (Some(o), false) => match changed_bytes(&o.data, &new_obj.data, hash_len) {
                Some(c) => c,
                None => {
                    force = true;
                    entries(&new_obj.data, hash_len).0.into_iter().map(|e| (e, None)).collect()
                }
            },
            _ => {
                let (new_entries, new_bad) = entries(&new_obj.data, hash_len);
                let (old_entries, old_bad) = match &old_obj {
                    Some(o) => entries(&o.data, hash_len),
                    None => (Vec::new(), false),
                };
                if new_bad || old_bad {
                    // Malformed: judge everything in it.
                    force = true;
                }
                // The directory's own attributes, and whether they changed.
                new_attr = new_entries.iter().find(|e| e.name == b".gitattributes" && !e.is_tree()).copied();
                if !force
                    && old_obj.is_some()
                    && attr_entry(&new_entries).map(|e| e.raw) != attr_entry(&old_entries).map(|e| e.raw)
                {
                    force = true;
                }
                if old_obj.is_none() && old.is_some() {
                    force = true;
                }
                if force || old_obj.is_none() {
                    new_entries.iter().map(|e| (*e, None)).collect()
                } else {
                    changed(&old_entries, &new_entries)
                }
            }
        };
        let pushed = match new_attr {
            Some(e) if e.mode & S_IFMT != S_IFGITLINK => {
                let id = ObjectId::from_bytes_or_panic(e.id);
                let top = path.is_empty();
                let file = self.attr_file(id, top);
                frames.push(Frame { dir: Some(path.clone()), file });
                true
            }
            _ => false,
        };
        let base_len = path.len();
        for (n, o) in changed {
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(n.name);
            let id = ObjectId::from_bytes_or_panic(n.id);
            match n.mode & S_IFMT {
                S_IFDIR => {
                    let old_sub = o.filter(|o| o.is_tree()).map(|o| ObjectId::from_bytes_or_panic(o.id));
                    self.diff(old_sub, id, path, frames, force, commit, ctx)?;
                }
                S_IFREG => {
                    let checkouts = self.checkouts(frames, path);
                    for co in checkouts {
                        self.add(id, BString::from(path.as_slice()), commit, ctx, co);
                    }
                }
                S_IFLNK => {
                    self.found.symlinks += 1;
                    self.add(id, BString::from(path.as_slice()), commit, ctx, Checkout::symlink());
                }
                // Gitlinks (and any other mode, which git's canon_mode takes for one).
                _ => {
                    self.found.submodules += 1;
                    self.found.gitlinks.push((id, full_path(ctx.base.as_bstr(), path), ctx.refname.clone()));
                }
            }
            path.truncate(base_len);
        }
        if pushed {
            frames.pop();
        }
        Ok(())
    }

    fn attr_file(&mut self, id: ObjectId, top: bool) -> Arc<AttrFile> {
        if let Some(f) = self.attr_files.get(&(id, top)) {
            return f.clone();
        }
        // An unreadable attributes file reads as empty, as git does.
        let file = match self.objects.object(&id) {
            Ok(Some(o)) if o.kind == gix::object::Kind::Blob && (o.data.len() as u64) < super::attr::MAX_FILE => {
                AttrFile::parse(&o.data, top)
            }
            _ => AttrFile::default(),
        };
        let file = Arc::new(file);
        self.attr_files.insert((id, top), file.clone());
        file
    }

    /// The distinct checkouts of `path` under `frames` ([`super::attr::checkouts`]).
    fn checkouts(&self, frames: &[Frame], path: &[u8]) -> Vec<Checkout> {
        super::attr::checkouts(frames, self.info.as_ref(), path)
    }

    fn add(&mut self, id: ObjectId, path: BString, commit: Option<ObjectId>, ctx: &Ctx, checkout: Checkout) {
        let path = if path.is_empty() { path } else { full_path(ctx.base.as_bstr(), &path) };
        if let Some(rec) = self.recording.as_mut() {
            rec.push(Memo { blob: id, path: path.clone(), checkout: checkout.clone() });
        }
        self.found.places.push((id, Place { path, commit, refname: ctx.refname.clone(), checkout }));
    }
}

impl Collector<'_> {
    /// Walk the commits reachable from `tip` and not from `hidden`, diffing each new one.
    fn walk(&mut self, tip: ObjectId, hidden: &[ObjectId], ctx: &Ctx) -> Result<()> {
        let walk = self
            .repo
            .rev_walk([tip])
            .with_hidden(hidden.iter().copied())
            .use_commit_graph(false)
            .all()
            .map_err(|e| anyhow!("cannot walk history from {tip}: {e}"))?;
        let mut todo: Vec<(ObjectId, Vec<ObjectId>)> = Vec::new();
        for info in walk {
            let info = info.map_err(|e| anyhow!("cannot walk history from {tip}: {e}"))?;
            if !self.seen_commits.insert(info.id) {
                continue;
            }
            self.out.commits.push(info.id);
            todo.push((info.id, info.parent_ids.iter().copied().collect()));
        }
        self.diff_commits(&todo, ctx)
    }

    /// Diff commits, on several threads when there are many; the places are merged in
    /// the order of `todo`.
    fn diff_commits(&mut self, todo: &[(ObjectId, Vec<ObjectId>)], ctx: &Ctx) -> Result<()> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
        if threads < 2 || todo.len() < PARALLEL_MIN_COMMITS {
            for (c, parents) in todo {
                self.differ.commit_diff(*c, parents, ctx)?;
            }
            let found = std::mem::take(&mut self.differ.found);
            self.absorb(found);
            return Ok(());
        }
        let shares = Shares::new(todo.len(), threads);
        let view = self.view;
        let info = self.info.clone();
        let record = self.memo.is_some();
        let results: Vec<Result<Vec<(usize, Found)>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|me| {
                    let (info, shares) = (info.clone(), &shares);
                    scope.spawn(move || -> Result<Vec<(usize, Found)>> {
                        let kind = view.object_hash();
                        let handle = view.odb().context("cannot open the object store")?;
                        let odb = gix::OdbHandle::new(handle, kind);
                        let objects = PackedObjects::open(view.first_objects_dir(), &odb, kind);
                        let mut d = Differ::new(objects, info, kind, record);
                        // What this thread found, per run of consecutive commits.
                        let mut runs: Vec<(usize, Found)> = Vec::new();
                        let mut start = None;
                        while let Some((i, fresh)) = shares.next(me) {
                            if fresh || start.is_none() {
                                if let Some(s) = start {
                                    runs.push((s, std::mem::take(&mut d.found)));
                                }
                                start = Some(i);
                            }
                            let Some((c, parents)) = todo.get(i) else { break };
                            d.commit_diff(*c, parents, ctx)?;
                        }
                        if let Some(s) = start {
                            runs.push((s, d.found));
                        }
                        Ok(runs)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("a walk thread panicked")))).collect()
        });
        let mut runs = Vec::new();
        for r in results {
            runs.extend(r?);
        }
        // Runs cover `todo` without overlap: in order of their first commit, they are in walk order.
        runs.sort_by_key(|(start, _)| *start);
        for (_, found) in runs {
            self.absorb(found);
        }
        Ok(())
    }

    /// Merge what diffs found into the collection.
    fn absorb(&mut self, found: Found) {
        for (id, place) in found.places {
            self.add_place(id, place);
        }
        self.gitlinks.extend(found.gitlinks);
        self.seen_trees.extend(found.trees);
        self.out.symlinks += found.symlinks;
        self.out.submodules += found.submodules;
        if let Some(memo) = self.memo.as_mut() {
            for (c, rec) in found.memo {
                memo.insert(c, Rc::new(rec));
            }
        }
    }

    fn whole_tree(&mut self, tree: ObjectId, commit: Option<ObjectId>, ctx: &Ctx) -> Result<()> {
        self.differ.diff_root(None, tree, commit, ctx)?;
        let found = std::mem::take(&mut self.differ.found);
        self.absorb(found);
        Ok(())
    }

    fn add(&mut self, id: ObjectId, path: BString, commit: Option<ObjectId>, ctx: &Ctx, checkout: Checkout) {
        self.differ.add(id, path, commit, ctx, checkout);
        let found = std::mem::take(&mut self.differ.found);
        self.absorb(found);
    }

    fn add_place(&mut self, id: ObjectId, place: Place) {
        match self.index.get(&id) {
            Some(&i) => {
                if let Some(b) = self.out.blobs.get_mut(i) {
                    if !b.places.contains(&place) {
                        b.places.push(place);
                    }
                }
            }
            None => {
                self.index.insert(id, self.out.blobs.len());
                self.out.blobs.push(NewBlob { id, places: vec![place] });
            }
        }
    }

    /// Walk the history of every gitlink target that exists here and was not walked yet:
    /// its files appear under the gitlink's path in a recursive clone.
    fn walk_gitlinks(&mut self, hidden: &[ObjectId]) -> Result<()> {
        let mut done: IdSet = IdSet::default();
        while let Some((target, path, refname)) = self.gitlinks.pop() {
            if self.seen_commits.contains(&target) || !done.insert(target) {
                continue;
            }
            let Ok(h) = self.repo.find_header(target) else { continue };
            if h.kind() != gix::object::Kind::Commit {
                continue;
            }
            self.out.submodules_walked += 1;
            let ctx = Ctx { refname, base: path };
            self.walk(target, hidden, &ctx)?;
        }
        Ok(())
    }

    /// Every object stored in the quarantine that no walk reached: commits are walked,
    /// trees read whole, tags followed, and blobs judged by id.
    fn quarantined(&mut self, gate: &GateRepo, hidden: &[ObjectId]) -> Result<()> {
        let Some(dir) = gate.view().first_objects_dir() else { return Ok(()) };
        let mut ids: Vec<ObjectId> = self.differ.objects.pack_ids().collect();
        ids.extend(loose_ids(dir, self.repo.object_hash()));
        let mut pending: Vec<ObjectId> = Vec::new();
        for id in ids {
            if self.seen_commits.contains(&id) || self.seen_trees.contains(&id) || self.index.contains_key(&id) {
                continue;
            }
            pending.push(id);
        }
        let none = Ctx { refname: BString::default(), base: BString::default() };
        // Commits first: their trees give paths (and attributes) to what they hold.
        let mut kinds: Vec<(ObjectId, gix::object::Kind)> = Vec::new();
        for id in pending {
            let h = self.repo.find_header(id).map_err(|e| anyhow!("cannot read quarantined object {id}: {e}"))?;
            kinds.push((id, h.kind()));
        }
        kinds.sort_by_key(|(_, k)| match k {
            gix::object::Kind::Tag => 0,
            gix::object::Kind::Commit => 1,
            gix::object::Kind::Tree => 2,
            gix::object::Kind::Blob => 3,
        });
        for (id, kind) in kinds {
            if self.seen_commits.contains(&id) || self.seen_trees.contains(&id) || self.index.contains_key(&id) {
                continue;
            }
            self.out.unreachable += 1;
            match kind {
                gix::object::Kind::Tag => {
                    let (target, k) = peel(self.repo, id)?;
                    match k {
                        gix::object::Kind::Commit if !self.seen_commits.contains(&target) => {
                            self.walk(target, hidden, &none)?
                        }
                        gix::object::Kind::Tree if !self.seen_trees.contains(&target) => {
                            self.whole_tree(target, None, &none)?
                        }
                        _ => {}
                    }
                }
                gix::object::Kind::Commit => self.walk(id, hidden, &none)?,
                gix::object::Kind::Tree => self.whole_tree(id, None, &none)?,
                gix::object::Kind::Blob => {
                    self.index.insert(id, self.out.blobs.len());
                    self.out.blobs.push(NewBlob { id, places: Vec::new() });
                }
            }
        }
        Ok(())
    }

    /// Everything `u` newly makes reachable from its ref: the diffs of every commit in
    /// `old..new` (all of `new`'s history for a new ref), from the diffs already made where
    /// the commits are new, recorded with `u`'s ref name.
    fn per_ref(&mut self, u: &RefUpdate) -> Result<()> {
        let (target, kind) = peel(self.repo, u.new)?;
        let ctx = Ctx { refname: u.name.clone(), base: BString::default() };
        match kind {
            gix::object::Kind::Commit => {}
            gix::object::Kind::Tree => return self.whole_tree(target, None, &ctx),
            gix::object::Kind::Blob => {
                self.add(target, BString::default(), None, &ctx, Checkout::default());
                return Ok(());
            }
            gix::object::Kind::Tag => return Ok(()),
        }
        let mut hide = Vec::new();
        if !u.old.is_null() {
            if let Ok((old, gix::object::Kind::Commit)) = peel(self.repo, u.old) {
                hide.push(old);
            }
        }
        let walk = self
            .repo
            .rev_walk([target])
            .with_hidden(hide)
            .use_commit_graph(false)
            .all()
            .map_err(|e| anyhow!("cannot walk history from {target}: {e}"))?;
        for info in walk {
            let info = info.map_err(|e| anyhow!("cannot walk history from {target}: {e}"))?;
            let memo = self.memo.as_ref().and_then(|m| m.get(&info.id).cloned());
            match memo {
                Some(places) => {
                    for m in places.iter() {
                        let place = Place {
                            path: m.path.clone(),
                            commit: Some(info.id),
                            refname: u.name.clone(),
                            checkout: m.checkout.clone(),
                        };
                        self.add_place(m.blob, place);
                    }
                }
                None => {
                    let parents: Vec<ObjectId> = info.parent_ids.iter().copied().collect();
                    self.differ.commit_diff(info.id, &parents, &ctx)?;
                    let found = std::mem::take(&mut self.differ.found);
                    self.absorb(found);
                }
            }
        }
        Ok(())
    }
}

fn full_path(base: &BStr, path: &[u8]) -> BString {
    if base.is_empty() {
        return BString::from(path);
    }
    let mut p = BString::from(base.as_bytes());
    p.push(b'/');
    p.extend_from_slice(path);
    p
}

/// Loose objects of an object directory (`xx/yyyy...`).
fn loose_ids(dir: &std::path::Path, kind: gix::hash::Kind) -> Vec<ObjectId> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(prefix) = name.to_str().filter(|n| n.len() == 2 && n.bytes().all(|b| b.is_ascii_hexdigit())) else {
            continue;
        };
        let Ok(sub) = std::fs::read_dir(e.path()) else { continue };
        for f in sub.flatten() {
            let rest = f.file_name();
            let Some(rest) = rest.to_str() else { continue };
            let hex = format!("{prefix}{rest}");
            if hex.len() == kind.len_in_hex() {
                if let Ok(id) = ObjectId::from_hex(hex.as_bytes()) {
                    out.push(id);
                }
            }
        }
    }
    out
}

impl NewBlob {
    /// The path shown for the blob (its first place), as lossy text.
    pub fn display_path(&self) -> String {
        match self.places.first() {
            Some(p) if !p.path.is_empty() => p.path.to_str_lossy().into_owned(),
            Some(p) if !p.refname.is_empty() => format!("(blob at {})", p.refname.to_str_lossy()),
            _ => format!("(blob {} reached by no ref)", self.id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every commit is handed out exactly once, as runs of consecutive commits that, sorted by
    /// their first commit, give back the walk order; a thread that finishes early takes work.
    #[test]
    fn shares_hand_out_each_commit_once_in_runs() {
        for (n, threads) in [(10_000, 2), (1_000, 3), (257, 4), (64, 2)] {
            let shares = Shares::new(n, threads);
            let runs: Vec<Vec<Vec<usize>>> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..threads)
                    .map(|me| {
                        let shares = &shares;
                        s.spawn(move || {
                            let mut runs: Vec<Vec<usize>> = Vec::new();
                            while let Some((i, fresh)) = shares.next(me) {
                                if fresh || runs.is_empty() {
                                    runs.push(Vec::new());
                                }
                                runs.last_mut().unwrap().push(i);
                                // Thread 0 is slow: the others must take from it.
                                if me == 0 {
                                    std::thread::sleep(std::time::Duration::from_micros(50));
                                }
                            }
                            runs
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let mut all: Vec<Vec<usize>> = runs.iter().flatten().cloned().collect();
            for r in &all {
                assert!(r.windows(2).all(|w| w[1] == w[0] + 1), "a run is consecutive: {r:?}");
            }
            all.sort_by_key(|r| r[0]);
            let order: Vec<usize> = all.into_iter().flatten().collect();
            assert_eq!(order, (0..n).collect::<Vec<_>>(), "{n} commits, {threads} threads");
            if n >= 1_000 {
                assert!(runs.iter().skip(1).any(|r| r.len() > 1), "an idle thread took part of another's run");
            }
        }
    }
}
