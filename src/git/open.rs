//! Opening the repository inside a hook so that quarantined objects are visible.
//!
//! gix ignores `GIT_QUARANTINE_PATH`, `GIT_OBJECT_DIRECTORY` and
//! `GIT_ALTERNATE_OBJECT_DIRECTORIES`, so the object store is replaced by one rooted in an
//! empty temporary directory outside the repository whose `info/alternates` lists the
//! quarantine, the other alternates and the main store (with no other directory, the main
//! store is opened as it is). Nothing is ever written into the
//! quarantine (git would migrate it into the repository), and a store opened this way
//! applies no `refs/replace/*` substitution, so pushed replace refs cannot change what is
//! scanned.

use anyhow::{anyhow, bail, Context, Result};
use gix::hash::Kind;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Decoded objects kept by gix: commits, read by the walk and again for their trees (trees
/// are read through [`super::PackedObjects`], which keeps its own cache). 16 MiB measured no
/// faster on a 10,000-commit push.
const OBJECT_CACHE_BYTES: usize = 4 << 20;

/// The object-directory variables git sets for hooks.
#[derive(Debug, Clone, Default)]
pub struct GitEnv {
    pub quarantine: Option<PathBuf>,
    pub object_directory: Option<PathBuf>,
    /// `GIT_ALTERNATE_OBJECT_DIRECTORIES`, unsplit.
    pub alternates: Option<OsString>,
}

impl GitEnv {
    pub fn from_env() -> GitEnv {
        GitEnv {
            quarantine: std::env::var_os("GIT_QUARANTINE_PATH").map(PathBuf::from),
            object_directory: std::env::var_os("GIT_OBJECT_DIRECTORY").map(PathBuf::from),
            alternates: std::env::var_os("GIT_ALTERNATE_OBJECT_DIRECTORIES"),
        }
    }
}

/// A repository whose object store sees quarantined objects and applies no replace refs.
pub struct GateRepo {
    /// Refs, config and (through the replaced store) objects.
    pub repo: gix::Repository,
    view: ObjectView,
}

/// The same object view as a [`GateRepo`], shareable across threads: each thread opens
/// its own store handle with [`ObjectView::odb`] (gix handles are not `Send` without
/// gix's `parallel` feature).
pub struct ObjectView {
    git_dir: PathBuf,
    kind: Kind,
    /// Holds `info/alternates` (deleted on drop), or is the repository's own object
    /// directory when that is the only one.
    store_dir: StoreDir,
    /// The object directory listed first: the quarantine during a push.
    first_dir: Option<PathBuf>,
    /// Every object directory listed (not their own alternates).
    dirs: Vec<PathBuf>,
}

impl ObjectView {
    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    pub fn object_hash(&self) -> Kind {
        self.kind
    }

    /// The directory whose `info/alternates` make up this view (exists while `self` lives).
    pub fn store_dir(&self) -> &Path {
        match &self.store_dir {
            StoreDir::Temp(t) => t.path(),
            StoreDir::Main(p) => p,
        }
    }

    /// The object directory searched first: the quarantine during a push, which holds its objects.
    pub fn first_objects_dir(&self) -> Option<&Path> {
        self.first_dir.as_deref()
    }

    /// Every object directory of the view, each listed one followed by the alternates it
    /// names (recursively); a directory whose alternates cannot be read is listed alone.
    pub fn objects_dirs(&self) -> Vec<PathBuf> {
        let cwd = std::env::current_dir().unwrap_or_else(|_| self.git_dir.clone());
        let mut out: Vec<PathBuf> = Vec::new();
        for d in &self.dirs {
            for x in std::iter::once(d.clone()).chain(gix::odb::alternate::resolve(d.clone(), &cwd).unwrap_or_default())
            {
                if !out.contains(&x) {
                    out.push(x);
                }
            }
        }
        out
    }

    /// A fresh object store handle with this view.
    pub fn odb(&self) -> std::io::Result<gix::odb::Handle> {
        gix::odb::at(self.store_dir(), self.kind)
    }
}

impl GateRepo {
    /// Open the repository at `git_dir` with the object directories named in `env`.
    pub fn open(git_dir: &Path, env: &GitEnv) -> Result<GateRepo> {
        let git_dir = absolute(git_dir)?;
        let mut repo = gix::open_with_environment_overrides(&git_dir)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("cannot open repository {}", git_dir.display()))?;
        let kind = repo.object_hash();
        let main = absolute(repo.objects.store_ref().path())?;

        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut add = |p: PathBuf| {
            if !dirs.contains(&p) {
                dirs.push(p);
            }
        };
        if let Some(q) = &env.quarantine {
            add(absolute(q)?);
        }
        if let Some(o) = &env.object_directory {
            add(absolute(o)?);
        }
        if let Some(alts) = &env.alternates {
            for a in split_alternates(alts)? {
                add(absolute(&a)?);
            }
        }
        add(main);

        let store_dir = match dirs.as_slice() {
            // Nothing to combine (an audit, or a hook without a quarantine): no directory.
            [only] if env.quarantine.is_none() => StoreDir::Main(only.clone()),
            _ => StoreDir::Temp(alternates_dir(&git_dir, &dirs)?),
        };
        let store_path = match &store_dir {
            StoreDir::Temp(t) => t.path(),
            StoreDir::Main(p) => p.as_path(),
        };
        let handle = gix::odb::at(store_path, kind).context("cannot open the object store")?;
        repo.objects = gix::OdbHandle::new(handle, kind);
        // Each new commit is read twice (by the walk, then for its tree): keep decoded objects.
        repo.object_cache_size(OBJECT_CACHE_BYTES);
        let first_dir = dirs.first().cloned();
        Ok(GateRepo { repo, view: ObjectView { git_dir, kind, store_dir, first_dir, dirs } })
    }

    /// The repository's git directory (not the quarantine).
    pub fn git_dir(&self) -> &Path {
        &self.view.git_dir
    }

    pub fn object_hash(&self) -> Kind {
        self.view.kind
    }

    pub fn view(&self) -> &ObjectView {
        &self.view
    }

    /// The object view alone, to send to another thread (the repository stays on this one).
    pub fn into_view(self) -> ObjectView {
        self.view
    }
}

/// Where a view's object store is opened.
enum StoreDir {
    Temp(tempfile::TempDir),
    Main(PathBuf),
}

/// An empty temporary object directory outside the repository whose `info/alternates` lists `dirs`.
fn alternates_dir(git_dir: &Path, dirs: &[PathBuf]) -> Result<tempfile::TempDir> {
    let store_dir =
        tempfile::Builder::new().prefix("modelgate-odb-").tempdir().context("cannot create a temporary directory")?;
    let canon_tmp = store_dir.path().canonicalize()?;
    if canon_tmp.starts_with(git_dir.canonicalize()?) {
        bail!("the temporary directory {} is inside the repository; set TMPDIR elsewhere", canon_tmp.display());
    }
    let mut alternates = Vec::new();
    for d in dirs {
        let s = d.to_str().ok_or_else(|| anyhow!("object directory {} is not utf-8", d.display()))?;
        if s.contains('\n') || s.starts_with('"') || s.starts_with('#') {
            bail!("object directory {s:?} cannot be listed as an alternate");
        }
        alternates.extend_from_slice(s.as_bytes());
        alternates.push(b'\n');
    }
    std::fs::create_dir_all(store_dir.path().join("info"))?;
    std::fs::write(store_dir.path().join("info").join("alternates"), alternates)?;

    Ok(store_dir)
}

/// Split `GIT_ALTERNATE_OBJECT_DIRECTORIES`: `:`-separated, an entry starting with `"` is
/// C-quoted (git's `quote_c_style`).
fn split_alternates(v: &std::ffi::OsStr) -> Result<Vec<PathBuf>> {
    let s = v.to_str().ok_or_else(|| anyhow!("GIT_ALTERNATE_OBJECT_DIRECTORIES is not utf-8"))?;
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(q) = rest.strip_prefix('"') {
            let (path, after) =
                unquote_c(q).ok_or_else(|| anyhow!("bad quoting in GIT_ALTERNATE_OBJECT_DIRECTORIES"))?;
            out.push(PathBuf::from(path));
            rest = after.strip_prefix(':').unwrap_or(after);
        } else {
            let (entry, after) = rest.split_once(':').unwrap_or((rest, ""));
            if !entry.is_empty() {
                out.push(PathBuf::from(entry));
            }
            rest = after;
        }
    }
    Ok(out)
}

/// Undo C quoting up to the closing quote; returns the text and what follows the quote.
fn unquote_c(s: &str) -> Option<(String, &str)> {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => return Some((String::from_utf8(out).ok()?, s.get(i + 1..)?)),
            b'\\' => {
                let e = *bytes.get(i + 1)?;
                i += 2;
                out.push(match e {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'a' => 7,
                    b'b' => 8,
                    b'f' => 12,
                    b'r' => b'\r',
                    b'v' => 11,
                    b'0'..=b'3' => {
                        let oct = bytes.get(i - 1..i + 2)?;
                        i += 2;
                        u8::from_str_radix(std::str::from_utf8(oct).ok()?, 8).ok()?
                    }
                    other => other,
                });
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    None
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_alternates() {
        let v = split_alternates(std::ffi::OsStr::new("/a/objects:\"/b\\\"x\\n\\303\\244\":/c")).unwrap();
        assert_eq!(v, vec![PathBuf::from("/a/objects"), PathBuf::from("/b\"x\nä"), PathBuf::from("/c")]);
        assert!(split_alternates(std::ffi::OsStr::new("\"/unterminated")).is_err());
        assert!(split_alternates(std::ffi::OsStr::new("")).unwrap().is_empty());
    }
}
