//! Every file place of a repository's whole history, each `(path, blob)` once.
//!
//! All refs are walked (HEAD's branch first, then branches, tags and every other ref, by
//! name): commits in an order where parents come before children, each commit diffed against
//! its first parent (a root commit against the empty tree). A `(path, blob)` pair is recorded
//! the first time it appears, with that commit and the ref whose history reached the commit
//! first. By induction every pair of every commit's tree is recorded: it either is in the
//! first parent's tree (recorded with an older commit) or is a change against it. A merge
//! therefore records only what neither parent had (a conflict resolution, an evil merge),
//! and a file brought by a merged branch keeps the commit that introduced it on that branch.
//!
//! Trees and commits are read through [`PackedObjects`] (a delta-base cache over the
//! repository's packs), as the push gate reads a push: what `git rev-list --all --objects`
//! reads, with diffs instead of a set of seen trees.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use crate::git::{GateRepo, PackedObjects};
use anyhow::{anyhow, bail, Result};
use gix::bstr::{BStr, BString, ByteSlice};
use gix::objs::tree::EntryKind;
use gix::objs::Find;
use gix::ObjectId;
use std::collections::{HashMap, HashSet};

/// One place a blob appears at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkPlace {
    pub blob: ObjectId,
    /// Path in the tree (raw bytes); empty for a blob a ref names directly.
    pub path: BString,
    /// The commit that introduced the blob at this path; `None` for trees and blobs that refs
    /// (or tags) name directly.
    pub commit: Option<ObjectId>,
    /// The ref whose history reached it first.
    pub refname: BString,
}

/// What a walk found.
#[derive(Debug, Default)]
pub struct Walked {
    /// Places in discovery order.
    pub places: Vec<WalkPlace>,
    pub refs: u64,
    pub commits: u64,
    /// Symbolic links met (their blob is a link target, never loaded by anything).
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
    let objects = PackedObjects::open(repo.view().first_objects_dir(), &gix_repo.objects, kind);
    let refs = ordered_refs(gix_repo)?;
    let shallow: HashSet<ObjectId> = gix_repo
        .shallow_commits()
        .map_err(|e| anyhow!("cannot read the shallow file: {e}"))?
        .map(|c| c.iter().copied().collect())
        .unwrap_or_default();
    let mut w = Walker {
        objects,
        kind,
        out: Walked { refs: refs.len() as u64, ..Default::default() },
        seen: HashSet::new(),
        buf: Vec::new(),
        bufs: Default::default(),
    };

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
        w.diff(old, ci.tree, Some(*c), refname)?;
    }
    for (ri, id, k) in direct {
        let refname = refs.get(ri).map(|(n, _)| n.as_bstr()).unwrap_or_default();
        match k {
            gix::object::Kind::Tree => w.diff(None, id, None, refname)?,
            gix::object::Kind::Blob => w.add(id, BString::default(), None, refname),
            _ => bail!("ref {} names a tag chain that does not end", refname.to_str_lossy()),
        }
    }
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

struct Walker<'r> {
    objects: PackedObjects<'r>,
    kind: gix::hash::Kind,
    out: Walked,
    /// `(path, object, kind)` recorded so far (kind: 0 blob, 1 symbolic link, 2 gitlink).
    seen: HashSet<(BString, ObjectId, u8)>,
    buf: Vec<u8>,
    bufs: [Vec<u8>; 2],
}

impl Walker<'_> {
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

    fn tree_data(&self, id: ObjectId, buf: &mut Vec<u8>) -> Result<()> {
        let obj = self.objects.try_find(&id, buf).map_err(|e| anyhow!("cannot read tree {id}: {e}"))?;
        let obj = obj.ok_or_else(|| anyhow!("tree {id} is missing"))?;
        if obj.kind != gix::object::Kind::Tree {
            bail!("object {id} is a {}, not a tree", obj.kind);
        }
        Ok(())
    }

    /// Record what changed from `old` (or the empty tree) to `new`.
    fn diff(&mut self, old: Option<ObjectId>, new: ObjectId, commit: Option<ObjectId>, refname: &BStr) -> Result<()> {
        if old == Some(new) {
            return Ok(());
        }
        let [mut old_data, mut new_data] = std::mem::take(&mut self.bufs);
        let read = self.tree_data(new, &mut new_data).and_then(|()| match old {
            Some(o) => self.tree_data(o, &mut old_data),
            None => {
                old_data.clear();
                Ok(())
            }
        });
        if let Err(e) = read {
            self.bufs = [old_data, new_data];
            return Err(e);
        }
        let mut recorder = gix::diff::tree::Recorder::default();
        let mut state = gix::diff::tree::State::default();
        let diffed = gix::diff::tree(
            gix::objs::TreeRefIter::from_bytes(&old_data, self.kind),
            gix::objs::TreeRefIter::from_bytes(&new_data, self.kind),
            &mut state,
            &self.objects,
            &mut recorder,
        );
        self.bufs = [old_data, new_data];
        diffed.map_err(|e| anyhow!("cannot diff trees of {}: {e}", commit.unwrap_or(new)))?;
        for change in recorder.records {
            use gix::diff::tree::recorder::Change;
            let (mode, oid, path) = match change {
                Change::Addition { entry_mode, oid, path, .. } => (entry_mode, oid, path),
                Change::Modification { entry_mode, oid, path, .. } => (entry_mode, oid, path),
                Change::Deletion { .. } => continue,
            };
            match mode.kind() {
                EntryKind::Blob | EntryKind::BlobExecutable => self.add(oid, path, commit, refname),
                EntryKind::Commit => {
                    if self.seen.insert((path, oid, 2)) {
                        self.out.submodules += 1;
                    }
                }
                EntryKind::Link => {
                    if self.seen.insert((path, oid, 1)) {
                        self.out.symlinks += 1;
                    }
                }
                EntryKind::Tree => {}
            }
        }
        Ok(())
    }

    fn add(&mut self, blob: ObjectId, path: BString, commit: Option<ObjectId>, refname: &BStr) {
        if !self.seen.insert((path.clone(), blob, 0)) {
            return;
        }
        self.out.places.push(WalkPlace { blob, path, commit, refname: refname.to_owned() });
    }
}
