//! Which blobs a push introduces, and where.
//!
//! New commits are those reachable from the pushed tips but from no existing ref; each is
//! diffed against each parent (a root commit against the empty tree), so a blob that only
//! moved is seen again but is deduplicated by id. Refs that point straight at a tree or a
//! blob (directly or through annotated tags) bring the whole tree or the blob.

use super::open::GateRepo;
use super::packed::PackedObjects;
use super::updates::{RefUpdate, UpdateKind};
use anyhow::{anyhow, bail, Context, Result};
use gix::bstr::{BStr, BString, ByteSlice};
use gix::objs::tree::EntryKind;
use gix::ObjectId;
use std::collections::{HashMap, HashSet};

/// Where a blob appears in the push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// Path in the tree (raw bytes); empty for a blob a ref points at directly.
    pub path: BString,
    /// The commit that added or changed it; `None` for trees and blobs reached through tags.
    pub commit: Option<ObjectId>,
    /// The ref whose update brought it.
    pub refname: BString,
}

/// A blob the push introduces, with every place it appears.
#[derive(Debug, Clone)]
pub struct NewBlob {
    pub id: ObjectId,
    pub places: Vec<Place>,
}

/// Everything a push introduces.
#[derive(Debug, Default)]
pub struct Introduced {
    /// Each blob once, in discovery order.
    pub blobs: Vec<NewBlob>,
    /// New commits, each once, in walk order (newest first per ref).
    pub commits: Vec<ObjectId>,
    /// Submodule entries (gitlinks) seen and not scanned.
    pub submodules: usize,
    /// Symbolic links seen and not scanned (their blob is a link target, never loaded).
    pub symlinks: usize,
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
    let repo = &gate.repo;
    let trees = PackedObjects::open(gate.view().first_objects_dir(), &repo.objects, repo.object_hash());
    let mut c = Collector {
        repo,
        trees,
        out: Introduced::default(),
        index: HashMap::new(),
        seen_commits: HashSet::new(),
        bufs: Default::default(),
    };
    let hidden_set: HashSet<ObjectId> = hidden.iter().copied().collect();
    for u in updates {
        if u.kind() == UpdateKind::Delete {
            continue;
        }
        let (target, kind) =
            peel(repo, u.new).with_context(|| format!("cannot read the object {} pushed to {}", u.new, u.name))?;
        match kind {
            gix::object::Kind::Commit => {
                if hidden_set.contains(&target) {
                    continue;
                }
                c.walk(target, hidden, u.name.as_bstr())?;
            }
            gix::object::Kind::Tree => c.tree_diff(None, target, None, u.name.as_bstr())?,
            gix::object::Kind::Blob => c.add(target, BString::default(), None, u.name.as_bstr()),
            gix::object::Kind::Tag => bail!("tag chain too long at {}", u.name),
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

struct Collector<'r> {
    repo: &'r gix::Repository,
    /// Trees are read through this (see [`PackedObjects`]).
    trees: PackedObjects<'r>,
    out: Introduced,
    index: HashMap<ObjectId, usize>,
    seen_commits: HashSet<ObjectId>,
    /// Reused buffers for the two root trees of a diff.
    bufs: [Vec<u8>; 2],
}

impl Collector<'_> {
    fn walk(&mut self, tip: ObjectId, hidden: &[ObjectId], refname: &BStr) -> Result<()> {
        let walk = self
            .repo
            .rev_walk([tip])
            .with_hidden(hidden.iter().copied())
            .use_commit_graph(false)
            .all()
            .map_err(|e| anyhow!("cannot walk history from {tip}: {e}"))?;
        for info in walk {
            let info = info.map_err(|e| anyhow!("cannot walk history from {tip}: {e}"))?;
            if !self.seen_commits.insert(info.id) {
                continue;
            }
            self.out.commits.push(info.id);
            let tree = self.tree_of(info.id)?;
            let parents: Vec<ObjectId> = info.parent_ids.iter().copied().collect();
            if parents.is_empty() {
                self.tree_diff(None, tree, Some(info.id), refname)?;
            }
            for p in parents {
                let ptree = self.tree_of(p)?;
                self.tree_diff(Some(ptree), tree, Some(info.id), refname)?;
            }
        }
        Ok(())
    }

    fn tree_of(&self, commit: ObjectId) -> Result<ObjectId> {
        let c = self.repo.find_commit(commit).map_err(|e| anyhow!("cannot read commit {commit}: {e}"))?;
        c.tree_id().map(|t| t.detach()).map_err(|e| anyhow!("cannot read commit {commit}: {e}"))
    }

    /// Record the blobs that are added or changed from `old` (or the empty tree) to `new`.
    fn tree_diff(
        &mut self,
        old: Option<ObjectId>,
        new: ObjectId,
        commit: Option<ObjectId>,
        refname: &BStr,
    ) -> Result<()> {
        let kind = self.repo.object_hash();
        let [mut old_data, mut new_data] = std::mem::take(&mut self.bufs);
        self.tree_data(new, &mut new_data)?;
        match old {
            Some(o) => self.tree_data(o, &mut old_data)?,
            None => old_data.clear(),
        }
        let mut recorder = gix::diff::tree::Recorder::default();
        let mut state = gix::diff::tree::State::default();
        let diffed = gix::diff::tree(
            gix::objs::TreeRefIter::from_bytes(&old_data, kind),
            gix::objs::TreeRefIter::from_bytes(&new_data, kind),
            &mut state,
            &self.trees,
            &mut recorder,
        );
        self.bufs = [old_data, new_data];
        diffed.map_err(|e| anyhow!("cannot diff trees {new}: {e}"))?;
        for change in recorder.records {
            use gix::diff::tree::recorder::Change;
            let (mode, oid, path) = match change {
                Change::Addition { entry_mode, oid, path, .. } => (entry_mode, oid, path),
                Change::Modification { entry_mode, oid, path, .. } => (entry_mode, oid, path),
                Change::Deletion { .. } => continue,
            };
            match mode.kind() {
                EntryKind::Blob | EntryKind::BlobExecutable => self.add(oid, path, commit, refname),
                EntryKind::Commit => self.out.submodules += 1,
                EntryKind::Link => self.out.symlinks += 1,
                EntryKind::Tree => {}
            }
        }
        Ok(())
    }

    fn tree_data(&self, id: ObjectId, buf: &mut Vec<u8>) -> Result<()> {
        use gix::objs::Find;
        let obj = self.trees.try_find(&id, buf).map_err(|e| anyhow!("cannot read tree {id}: {e}"))?;
        let obj = obj.ok_or_else(|| anyhow!("cannot read tree {id}: object missing"))?;
        if obj.kind != gix::object::Kind::Tree {
            bail!("object {id} is a {}, not a tree", obj.kind);
        }
        Ok(())
    }

    fn add(&mut self, id: ObjectId, path: BString, commit: Option<ObjectId>, refname: &BStr) {
        let place = Place { path, commit, refname: refname.to_owned() };
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
}

impl NewBlob {
    /// The path shown for the blob (its first place), as lossy text.
    pub fn display_path(&self) -> String {
        match self.places.first() {
            Some(p) if !p.path.is_empty() => p.path.to_str_lossy().into_owned(),
            Some(p) => format!("(blob at {})", p.refname.to_str_lossy()),
            None => self.id.to_string(),
        }
    }
}
