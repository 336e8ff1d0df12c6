//! Where Git LFS objects are kept: a directory on this machine (laid out by git-lfs, a forge,
//! or a template) or an S3-compatible bucket ([`s3`]). One small interface over both, for
//! whoever needs an object by oid without caring where it lives: `lfs scan`, `lfs watch`,
//! the push gate (through [`crate::lfs::resolve`]) and `audit` (its look-ups and quarantine).
//!
//! A store answers three ways about an object: here it is (its size and a version that
//! changes when its content does), it is not there (`Ok(None)`: never uploaded), or the
//! store cannot be asked (`Err`: unreachable, refused credentials, a missing root). Only the
//! second is the uploader's fault; the third is the server's and is reported as such.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

mod credentials;
pub mod s3;

use crate::lfs::{Layout, LfsStore, StoreError};
use crate::source::{FileSource, Source};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// An object found in a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    /// When it was written (a file's later of mtime and ctime; S3's `Last-Modified`).
    pub modified: SystemTime,
    /// Changes whenever the content may have: a file's device and inode, an S3 ETag.
    pub version: Option<String>,
    /// Where it is, for the admin: a path, or `s3://bucket/key`.
    pub place: String,
}

/// An object a listing found: its oid, the repository its key names (a template naming
/// repositories), its size and when it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub oid: String,
    pub repo: Option<crate::lfs::StoreRepo>,
    pub size: u64,
    pub modified: SystemTime,
}

/// A store of LFS objects.
pub trait LfsObjects: Send + Sync {
    /// The store, for the admin (`/srv/lfs`, `s3://bucket/prefix at http://...`).
    fn describe(&self) -> String;
    /// Where the object `oid` is or would be, for messages: a path, or `s3://bucket/key`.
    fn locate(&self, oid: &str) -> String;
    /// The object `oid` (of the store's repository, for a store that names repositories).
    fn head(&self, oid: &str) -> Result<Option<ObjectMeta>, StoreError>;
    /// Its bytes, random access (an S3 object is read by ranged GETs as a scan asks).
    fn open(&self, oid: &str, meta: &ObjectMeta) -> Result<Arc<dyn Source>, StoreError>;
    /// Move the object out of the store so it can no longer be downloaded, with `record`
    /// (a JSON verdict) beside it, as `<name>` and `<name>.json` under `to`: a directory, or
    /// for an S3 store `s3://<its bucket>/<prefix>` (a server-side copy, then a delete).
    /// `Ok(None)` when the object is not there (already moved, never uploaded).
    fn quarantine(
        &self,
        oid: &str,
        name: &str,
        to: &Path,
        record: &serde_json::Value,
    ) -> Result<Option<String>, StoreError>;
    /// Why the store cannot be used at all (a missing root, an unreachable bucket), for the
    /// admin; `None` when it can.
    fn problem(&self) -> Option<String>;
}

/// The store `lfs` describes, for the repository whose git directory is `base` (relative
/// roots and the git-lfs default are under it). `lfs.repo` names the repository for
/// templates that use it.
pub fn open(lfs: &LfsStore, base: &Path) -> Result<Arc<dyn LfsObjects>, StoreError> {
    lfs.validate()?;
    if lfs.layout == Layout::S3 {
        return Ok(Arc::new(s3::S3Store::new(lfs)?));
    }
    Ok(Arc::new(FsStore { lfs: lfs.clone(), base: base.to_path_buf() }))
}

/// A store on this machine's filesystem.
struct FsStore {
    lfs: LfsStore,
    base: PathBuf,
}

impl LfsObjects for FsStore {
    fn describe(&self) -> String {
        self.lfs.configured_root(&self.base).unwrap_or_else(|| self.base.join("lfs/objects")).display().to_string()
    }

    fn locate(&self, oid: &str) -> String {
        match self.lfs.object_path(&self.base, oid) {
            Ok(p) => p.display().to_string(),
            Err(e) => format!("{} ({})", self.describe(), e.0),
        }
    }

    fn head(&self, oid: &str) -> Result<Option<ObjectMeta>, StoreError> {
        use std::os::unix::fs::MetadataExt;
        let path = self.lfs.object_path(&self.base, oid)?;
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => {
                let ctime = u64::try_from(m.ctime()).ok().map(std::time::Duration::from_secs);
                let ctime = ctime.and_then(|d| SystemTime::UNIX_EPOCH.checked_add(d)).unwrap_or(SystemTime::UNIX_EPOCH);
                let mtime = m.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                Ok(Some(ObjectMeta {
                    size: m.len(),
                    modified: mtime.max(ctime),
                    version: Some(format!("{}:{}", m.dev(), m.ino())),
                    place: path.display().to_string(),
                }))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match self.lfs.misconfiguration(&self.base) {
                Some(problem) => Err(StoreError(problem)),
                None => Ok(None),
            },
            Err(e) => Err(StoreError(format!("cannot read {}: {e}", path.display()))),
        }
    }

    fn open(&self, oid: &str, _meta: &ObjectMeta) -> Result<Arc<dyn Source>, StoreError> {
        let path = self.lfs.object_path(&self.base, oid)?;
        let src = FileSource::open(&path).map_err(|e| StoreError(format!("cannot open {}: {e}", path.display())))?;
        Ok(Arc::new(src))
    }

    fn quarantine(
        &self,
        oid: &str,
        name: &str,
        to: &Path,
        record: &serde_json::Value,
    ) -> Result<Option<String>, StoreError> {
        let err = |what: &str, p: &Path, e: std::io::Error| StoreError(format!("cannot {what} {}: {e}", p.display()));
        let from = self.lfs.object_path(&self.base, oid)?;
        match std::fs::symlink_metadata(&from) {
            Ok(m) if m.is_file() => {}
            _ => return Ok(None),
        }
        std::fs::create_dir_all(to).map_err(|e| err("create", to, e))?;
        let dest = to.join(name);
        if let Err(e) = std::fs::rename(&from, &dest) {
            // EXDEV: another filesystem; copy, then remove the original.
            if e.raw_os_error() != Some(18) {
                return Err(err("move", &from, e));
            }
            std::fs::copy(&from, &dest).map_err(|e| err("copy", &from, e))?;
            std::fs::remove_file(&from).map_err(|e| err("remove", &from, e))?;
        }
        let json = serde_json::to_vec_pretty(record).map_err(|e| StoreError(e.to_string()))?;
        let meta = to.join(format!("{name}.json"));
        std::fs::write(&meta, json).map_err(|e| err("write", &meta, e))?;
        Ok(Some(dest.display().to_string()))
    }

    fn problem(&self) -> Option<String> {
        self.lfs.misconfiguration(&self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filesystem_store_answers_three_ways() {
        let dir = tempfile::tempdir().unwrap();
        let oid = "ab".repeat(32);
        let lfs = LfsStore { layout: Layout::Gitea, root: Some(dir.path().join("lfs")), ..Default::default() };
        let store = open(&lfs, dir.path()).unwrap();
        // The root is missing: the server's fault, not "never uploaded".
        assert!(store.head(&oid).is_err());
        assert!(store.problem().is_some());
        std::fs::create_dir_all(dir.path().join("lfs/ab/ab")).unwrap();
        assert_eq!(store.head(&oid).unwrap(), None);
        std::fs::write(dir.path().join("lfs/ab/ab").join(&oid[4..]), b"hello").unwrap();
        let meta = store.head(&oid).unwrap().unwrap();
        assert_eq!(meta.size, 5);
        let src = store.open(&oid, &meta).unwrap();
        assert_eq!(crate::source::read_up_to(src.as_ref(), 0, 10).unwrap(), b"hello");
        let q = dir.path().join("q");
        let moved = store.quarantine(&oid, &oid, &q, &serde_json::json!({"verdict": "dangerous"})).unwrap();
        assert_eq!(moved, Some(q.join(&oid).display().to_string()));
        assert!(q.join(format!("{oid}.json")).is_file());
        assert_eq!(store.head(&oid).unwrap(), None);
        assert_eq!(store.quarantine(&oid, &oid, &q, &serde_json::json!({})).unwrap(), None);
    }
}
