//! Every file place of a repository's whole history, each `(path, blob, checkout)` once.
//!
//! All refs are walked (HEAD's branch first, then branches, tags and every other ref, by
//! name): commits in an order where parents come before children, each commit diffed against
//! its first parent (a root commit against the empty tree). A `(path, blob, checkout)` is
//! recorded the first time it appears, with that commit and the ref whose history reached the
//! commit first. By induction every one of every commit's tree is recorded: either the path's
//! entry and every `.gitattributes` of the directories above it are as in the first parent
//! (so is its checkout: recorded with an older commit), or the diff reaches it. A merge
//! therefore records only what neither parent had (a conflict resolution, an evil merge),
//! and a file brought by a merged branch keeps the commit that introduced it on that branch.
//!
//! The checkouts of a file are those the push gate gives it ([`attr::checkouts`]): the
//! `.gitattributes` of every directory from the root down to the file's in that commit, the
//! repository's `info/attributes`, with and without case folding; a symbolic link is a file
//! with its target as content for clients without symlinks ([`Checkout::symlink`]). When a
//! directory's `.gitattributes` differs from the first parent's, every path below it is
//! looked at again (the gate's `force`), so that a blob whose attributes changed later is
//! recorded again, at the commit that changed them, with its new checkout.
//!
//! Trees and commits are read through [`PackedObjects`] (a delta-base cache over the
//! repository's packs), as the push gate reads a push: what `git rev-list --all --objects`
//! reads, with diffs instead of a set of seen trees. Tree entries are compared as raw bytes
//! straight from the decoded trees; a tree without `.gitattributes` on either side of a diff
//! is compared from the first entry that differs.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use crate::git::attr::{self, AttrFile, Checkout, Frame};
use crate::git::tree::{
    all_entries, attr_entry, changed, changed_bytes, may_have_attributes, Entry, S_IFDIR, S_IFGITLINK, S_IFLNK, S_IFMT,
    S_IFREG,
};
use crate::git::{GateRepo, PackedObjects};
use anyhow::{anyhow, bail, Result};
use gix::bstr::{BStr, BString, ByteSlice};
use gix::objs::Find;
use gix::ObjectId;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// One place a blob appears at, and how a client checks it out there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkPlace {
    pub blob: ObjectId,
    /// Path in the tree (raw bytes); empty for a blob a ref names directly.
    pub path: BString,
    /// The commit that introduced the blob at this path with this checkout; `None` for trees
    /// and blobs that refs (or tags) name directly.
    pub commit: Option<ObjectId>,
    /// The ref whose history reached it first.
    pub refname: BString,
    /// How a client writes it to a work tree there: an index into [`Walked::checkouts`].
    pub checkout: usize,
}

/// What a walk found.
#[derive(Debug, Default)]
pub struct Walked {
    /// Places in discovery order.
    pub places: Vec<WalkPlace>,
    /// The checkouts of the places, each once.
    pub checkouts: Vec<Checkout>,
    pub refs: u64,
    pub commits: u64,
    /// Symbolic links met (`(path, blob)` each once; also places: clients without symlinks
    /// write the target text as a file).
    pub symlinks: u64,
    /// Submodule entries (gitlinks) met: another repository's commit, not scanned here.
    pub submodules: u64,
}

/// A commit as the walk needs it.
struct CommitInfo {
    tree: ObjectId,
    first_parent: Option<ObjectId>,
    /// Index into the ref list.
    by_ref: usize,
}

/// Walk every ref of `repo`'s whole history.
pub fn walk(repo: &GateRepo) -> Result<Walked> {
    let gix_repo = &repo.repo;
    let kind = gix_repo.object_hash();
    // The packs of the repository and of its alternates (a fork's history is in those).
    let dirs = repo.view().objects_dirs();
    let dirs: Vec<&std::path::Path> = dirs.iter().map(std::path::PathBuf::as_path).collect();
    let objects = PackedObjects::open_dirs(&dirs, &gix_repo.objects, kind);
    let refs = ordered_refs(gix_repo)?;
    let shallow: HashSet<ObjectId> = gix_repo
        .shallow_commits()
        .map_err(|e| anyhow!("cannot read the shallow file: {e}"))?
        .map(|c| c.iter().copied().collect())
        .unwrap_or_default();
    let mut w = Walker::new(objects, kind, attr::info_attributes(repo.git_dir()));
    w.out.refs = refs.len() as u64;

    // Commits in post-order (parents first), each with the ref that reached it first.
    let mut info: HashMap<ObjectId, CommitInfo> = HashMap::new();
    let mut order: Vec<ObjectId> = Vec::new();
    let mut direct: Vec<(usize, ObjectId, gix::object::Kind)> = Vec::new();
    for (ri, (name, id)) in refs.iter().enumerate() {
        let (target, k) = w.peel(*id).map_err(|e| anyhow!("ref {}: {e:#}", name.to_str_lossy()))?;
        if k != gix::object::Kind::Commit {
            direct.push((ri, target, k));
            continue;
        }
        if info.contains_key(&target) {
            continue;
        }
        let mut stack: Vec<(ObjectId, bool)> = vec![(target, false)];
        while let Some((c, expanded)) = stack.pop() {
            if expanded {
                order.push(c);
                continue;
            }
            if info.contains_key(&c) {
                continue;
            }
            let (tree, parents) = w.commit(c).map_err(|e| anyhow!("history of {}: {e:#}", name.to_str_lossy()))?;
            // A shallow repository's boundary commits have parents that are not there.
            let parents: Vec<ObjectId> = if shallow.contains(&c) { Vec::new() } else { parents };
            info.insert(c, CommitInfo { tree, first_parent: parents.first().copied(), by_ref: ri });
            stack.push((c, true));
            for p in parents.iter().rev() {
                if !info.contains_key(p) {
                    stack.push((*p, false));
                }
            }
        }
    }
    w.out.commits = order.len() as u64;

    for c in &order {
        let Some(ci) = info.get(c) else { continue };
        let old = ci.first_parent.and_then(|p| info.get(&p)).map(|p| p.tree);
        let refname = refs.get(ci.by_ref).map(|(n, _)| n.as_bstr()).unwrap_or_default();
        w.diff_root(old, ci.tree, &At { commit: Some(*c), refname })?;
    }
    for (ri, id, k) in direct {
        let refname = refs.get(ri).map(|(n, _)| n.as_bstr()).unwrap_or_default();
        let at = At { commit: None, refname };
        match k {
            gix::object::Kind::Tree => w.diff_root(None, id, &at)?,
            // What a ref names directly is checked out by no attributes.
            gix::object::Kind::Blob => w.add(id, CHECKOUT_DEFAULT, &at),
            _ => bail!("ref {} names a tag chain that does not end", refname.to_str_lossy()),
        }
    }
    w.out.checkouts = std::mem::take(&mut w.checkouts);
    Ok(w.out)
}

/// Every ref (symbolic refs resolved) with the object it names: the branch HEAD names first,
/// then `refs/heads/*`, `refs/tags/*`, and every other ref, each group by name. Refs that
/// name nothing (an unborn branch) are left out; a detached HEAD comes first as `HEAD`.
fn ordered_refs(repo: &gix::Repository) -> Result<Vec<(BString, ObjectId)>> {
    let head_name: Option<BString> = repo.head_name().ok().flatten().map(|n| n.as_bstr().to_owned());
    let mut all: Vec<(BString, ObjectId)> = Vec::new();
    let platform = repo.references().map_err(|e| anyhow!("cannot list refs: {e}"))?;
    let iter = platform.all().map_err(|e| anyhow!("cannot list refs: {e}"))?;
    for r in iter {
        let r = r.map_err(|e| anyhow!("cannot read a ref: {e}"))?;
        let name = r.name().as_bstr().to_owned();
        let id = match r.target() {
            gix::refs::TargetRef::Object(id) => id.to_owned(),
            gix::refs::TargetRef::Symbolic(_) => {
                let mut r = r;
                match r.follow_to_object() {
                    Ok(id) => id.detach(),
                    // A symbolic ref to an unborn branch: nothing there.
                    Err(_) => continue,
                }
            }
        };
        all.push((name, id));
    }
    if head_name.is_none() {
        if let Ok(Some(id)) = repo.head_id().map(|id| Some(id.detach())) {
            all.push((BString::from("HEAD"), id));
        }
    }
    let group = |n: &BStr| -> u8 {
        if Some(n) == head_name.as_ref().map(|h| h.as_bstr()) || n == "HEAD" {
            0
        } else if n.starts_with(b"refs/heads/") {
            1
        } else if n.starts_with(b"refs/tags/") {
            2
        } else {
            3
        }
    };
    all.sort_by(|a, b| (group(a.0.as_bstr()), &a.0).cmp(&(group(b.0.as_bstr()), &b.0)));
    all.dedup_by(|a, b| a.0 == b.0);
    Ok(all)
}

/// Where the places being recorded come from.
struct At<'a> {
    commit: Option<ObjectId>,
    refname: &'a BStr,
}

/// Index of [`Checkout::default`] and [`Checkout::symlink`] in [`Walker::checkouts`].
const CHECKOUT_DEFAULT: u32 = 0;
const CHECKOUT_SYMLINK: u32 = 1;
/// The `seen` kind of a gitlink (not a checkout).
const GITLINK: u32 = u32::MAX;

/// Paths longer than this are refused, as the push gate refuses them (`nested too deeply`).
const MAX_PATH: usize = 64 << 10;

/// A directory being diffed: what changed in it, and the next change to record.
struct Level {
    changes: Vec<Change>,
    /// The names of `changes`, one after the other.
    names: Vec<u8>,
    next: usize,
    /// Length of the directory's path in [`Walker::path`].
    base: usize,
    /// Every entry below is recorded (attributes above changed).
    force: bool,
    /// Its `.gitattributes` is on [`Walker::frames`].
    frame: bool,
}

/// An entry of a directory that is not identical in the old tree.
#[derive(Clone)]
struct Change {
    mode: u32,
    name: std::ops::Range<usize>,
    id: ObjectId,
    /// The old tree of the same name, for a directory.
    old: Option<ObjectId>,
}

struct Walker<'r> {
    objects: PackedObjects<'r>,
    kind: gix::hash::Kind,
    hash_len: usize,
    out: Walked,
    /// `(path, object, checkout)` recorded so far: an index into `checkouts`, or [`GITLINK`].
    seen: HashSet<(BString, ObjectId, u32)>,
    /// Every checkout met, each once (the default and a symbolic link's first).
    checkouts: Vec<Checkout>,
    checkout_ids: HashMap<Checkout, u32>,
    /// `$GIT_DIR/info/attributes`.
    info: Option<Arc<AttrFile>>,
    /// Parsed `.gitattributes` blobs (top-level parses count macros, hence the flag).
    attr_files: HashMap<(ObjectId, bool), Arc<AttrFile>>,
    /// The path of the tree being diffed, and the attributes of its directories, top first.
    path: Vec<u8>,
    frames: Vec<Frame>,
    buf: Vec<u8>,
}

impl<'r> Walker<'r> {
    fn new(objects: PackedObjects<'r>, kind: gix::hash::Kind, info: Option<Arc<AttrFile>>) -> Walker<'r> {
        let checkouts = vec![Checkout::default(), Checkout::symlink()];
        let checkout_ids = checkouts.iter().cloned().zip(0..).collect();
        Walker {
            objects,
            kind,
            hash_len: kind.len_in_bytes(),
            out: Walked::default(),
            seen: HashSet::new(),
            checkouts,
            checkout_ids,
            info,
            attr_files: HashMap::new(),
            path: Vec::new(),
            frames: Vec::new(),
            buf: Vec::new(),
        }
    }

    /// Read an object, requiring it to be there.
    fn read(&mut self, id: ObjectId) -> Result<gix::object::Kind> {
        let data = self.objects.try_find(&id, &mut self.buf).map_err(|e| anyhow!("cannot read object {id}: {e}"))?;
        let data = data.ok_or_else(|| anyhow!("object {id} is missing"))?;
        Ok(data.kind)
    }

    /// Follow annotated tags to the object they finally name.
    fn peel(&mut self, mut id: ObjectId) -> Result<(ObjectId, gix::object::Kind)> {
        for _ in 0..64 {
            let k = self.read(id)?;
            if k != gix::object::Kind::Tag {
                return Ok((id, k));
            }
            id = gix::objs::TagRefIter::from_bytes(&self.buf, self.kind)
                .target_id()
                .map_err(|e| anyhow!("malformed tag {id}: {e}"))?;
        }
        Ok((id, gix::object::Kind::Tag))
    }

    /// A commit's tree and parents.
    fn commit(&mut self, id: ObjectId) -> Result<(ObjectId, Vec<ObjectId>)> {
        let k = self.read(id)?;
        if k != gix::object::Kind::Commit {
            bail!("object {id} is a {k}, not a commit");
        }
        let mut it = gix::objs::CommitRefIter::from_bytes(&self.buf, self.kind);
        let tree = it.tree_id().map_err(|e| anyhow!("malformed commit {id}: {e}"))?;
        let parents = it.parent_ids().collect();
        Ok((tree, parents))
    }

    /// Record what changed from root tree `old` (or the empty tree) to `new`: directory by
    /// directory, depth first, entries in tree order (a stack of directories, not recursion:
    /// trees may nest thousands deep).
    fn diff_root(&mut self, old: Option<ObjectId>, new: ObjectId, at: &At<'_>) -> Result<()> {
        self.path.clear();
        self.frames.clear();
        let res = self.diff(old, new, at);
        self.path.clear();
        self.frames.clear();
        res.map_err(|e| match at.commit {
            Some(c) => e.context(format!("commit {c}")),
            None => e,
        })
    }

    fn diff(&mut self, old: Option<ObjectId>, new: ObjectId, at: &At<'_>) -> Result<()> {
        let mut stack: Vec<Level> = Vec::new();
        stack.extend(self.open(old, new, false)?);
        while let Some(level) = stack.last_mut() {
            let Some(change) = level.changes.get(level.next).cloned() else {
                if level.frame {
                    self.frames.pop();
                }
                stack.pop();
                continue;
            };
            level.next += 1;
            self.path.truncate(level.base);
            if level.base > 0 {
                self.path.push(b'/');
            }
            self.path.extend_from_slice(level.names.get(change.name).unwrap_or_default());
            let (id, force) = (change.id, level.force);
            match change.mode & S_IFMT {
                S_IFDIR => {
                    if self.path.len() > MAX_PATH {
                        bail!("tree {id} is nested too deeply");
                    }
                    stack.extend(self.open(change.old, id, force)?);
                }
                S_IFREG => self.file(id, at),
                S_IFLNK => {
                    if self.seen.insert((BString::from(self.path.as_slice()), id, CHECKOUT_SYMLINK)) {
                        self.out.symlinks += 1;
                        self.push(id, CHECKOUT_SYMLINK, at);
                    }
                }
                // Gitlinks (and any other mode, which git's canon_mode takes for one).
                _ => {
                    if self.seen.insert((BString::from(self.path.as_slice()), id, GITLINK)) {
                        self.out.submodules += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// The directory at `self.path`: the entries of tree `new` not identical in `old` (with
    /// `force`, every entry: the attributes of a directory above changed); its
    /// `.gitattributes` pushed on the frames. `None` when the trees are the same.
    fn open(&mut self, old: Option<ObjectId>, new: ObjectId, force: bool) -> Result<Option<Level>> {
        if !force && old == Some(new) {
            return Ok(None);
        }
        let objects = &self.objects;
        let tree = |id: ObjectId| -> Result<_> {
            let obj = objects.object(&id).map_err(|e| anyhow!("cannot read tree {id}: {e:#}"))?;
            let obj = obj.ok_or_else(|| anyhow!("tree {id} is missing"))?;
            if obj.kind != gix::object::Kind::Tree {
                bail!("object {id} is a {}, not a tree", obj.kind);
            }
            Ok(obj)
        };
        let new_obj = tree(new)?;
        let old_obj = match old {
            Some(o) if !force => Some(tree(o)?),
            _ => None,
        };
        let hash_len = self.hash_len;
        let malformed = |id: ObjectId| anyhow!("malformed tree {id}");
        let mut force = force;
        let mut frame = false;
        let attrs =
            may_have_attributes(&new_obj.data) || old_obj.as_ref().is_some_and(|o| may_have_attributes(&o.data));
        let todo: Vec<(Entry<'_>, Option<Entry<'_>>)> = match (&old_obj, old) {
            // The common case: no attributes on either side, compared from the first
            // entry that differs.
            (Some(o), Some(_)) if !attrs => {
                changed_bytes(&o.data, &new_obj.data, hash_len).ok_or_else(|| malformed(new))?
            }
            _ => {
                let n = all_entries(&new_obj.data, hash_len).ok_or_else(|| malformed(new))?;
                let p = match (&old_obj, old) {
                    (Some(o), Some(old_id)) => all_entries(&o.data, hash_len).ok_or_else(|| malformed(old_id))?,
                    _ => Vec::new(),
                };
                let here = attr_entry(&n);
                // Attributes that changed here change the checkouts of everything below.
                if old_obj.is_some() && here.map(|e| e.raw) != attr_entry(&p).map(|e| e.raw) {
                    force = true;
                }
                if let Some(e) = here.filter(|e| e.mode & S_IFMT != S_IFGITLINK) {
                    let file = self.attr_file(ObjectId::from_bytes_or_panic(e.id), self.path.is_empty());
                    self.frames.push(Frame { dir: Some(self.path.clone()), file });
                    frame = true;
                }
                if force || old_obj.is_none() {
                    n.into_iter().map(|e| (e, None)).collect()
                } else {
                    changed(&p, &n)
                }
            }
        };
        let mut level = Level {
            changes: Vec::with_capacity(todo.len()),
            names: Vec::new(),
            next: 0,
            base: self.path.len(),
            force,
            frame,
        };
        for (n, o) in todo {
            let start = level.names.len();
            level.names.extend_from_slice(n.name);
            level.changes.push(Change {
                mode: n.mode,
                name: start..level.names.len(),
                id: ObjectId::from_bytes_or_panic(n.id),
                old: o.filter(Entry::is_tree).map(|o| ObjectId::from_bytes_or_panic(o.id)),
            });
        }
        Ok(Some(level))
    }

    /// A regular file at `self.path`, under each of its checkouts.
    fn file(&mut self, id: ObjectId, at: &At<'_>) {
        if self.frames.is_empty() && self.info.is_none() {
            self.add(id, CHECKOUT_DEFAULT, at);
            return;
        }
        for co in attr::checkouts(&self.frames, self.info.as_ref(), &self.path) {
            let ci = match self.checkout_ids.get(&co) {
                Some(&i) => i,
                None => {
                    let i = self.checkouts.len() as u32;
                    self.checkouts.push(co.clone());
                    self.checkout_ids.insert(co, i);
                    i
                }
            };
            self.add(id, ci, at);
        }
    }

    /// Record `(self.path, blob, checkout)` unless it was recorded before.
    fn add(&mut self, blob: ObjectId, checkout: u32, at: &At<'_>) {
        if self.seen.insert((BString::from(self.path.as_slice()), blob, checkout)) {
            self.push(blob, checkout, at);
        }
    }

    fn push(&mut self, blob: ObjectId, checkout: u32, at: &At<'_>) {
        self.out.places.push(WalkPlace {
            blob,
            path: BString::from(self.path.as_slice()),
            commit: at.commit,
            refname: at.refname.to_owned(),
            checkout: checkout as usize,
        });
    }

    /// A `.gitattributes` blob, parsed once; an unreadable one reads as empty, as git does.
    fn attr_file(&mut self, id: ObjectId, top: bool) -> Arc<AttrFile> {
        if let Some(f) = self.attr_files.get(&(id, top)) {
            return f.clone();
        }
        let file = match self.objects.object(&id) {
            Ok(Some(o)) if o.kind == gix::object::Kind::Blob && (o.data.len() as u64) < attr::MAX_FILE => {
                AttrFile::parse(&o.data, top)
            }
            _ => AttrFile::default(),
        };
        let file = Arc::new(file);
        self.attr_files.insert((id, top), file.clone());
        file
    }
}
