//! Finding the repositories of a fleet, and the name each is known by.
//!
//! A path is a repository (a bare one, a `.git` directory, or a work tree) or a directory
//! holding repositories somewhere below it: `*.git` directories, as plain git servers, Gitea
//! (`<root>/<owner>/<name>.git`) and GitLab (`<root>/@hashed/ab/cd/<sha256>.git`) keep them.
//! Directories are listed in name order, links are never followed, and nothing below a
//! repository is searched.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};

/// How a forge lays repositories out, which names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// Plain git: a repository is named by its absolute path.
    #[default]
    Git,
    /// Gitea / Forgejo: `owner/name` from `<root>/<owner>/<name>.git`.
    Gitea,
    /// GitLab: the project path from the repository's `gitlab.fullpath` (hashed storage).
    Gitlab,
}

impl Flavor {
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Git => "git",
            Flavor::Gitea => "gitea",
            Flavor::Gitlab => "gitlab",
        }
    }
}

/// A repository of the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    /// The name it is known by: stable across machines that mount the fleet at the same
    /// place, unique within one audit. Shards are picked by it and output is ordered by it.
    pub name: String,
    /// The forge's name for it (`owner/name`, a GitLab project path), when the layout says.
    pub forge_name: Option<String>,
    /// Its git directory (canonical).
    pub git_dir: PathBuf,
}

/// Deepest directory level searched below a path for repositories (GitLab's hashed
/// layout is 3 levels down, Gitea's 2; GitLab groups may nest in legacy storage).
const MAX_DEPTH: usize = 24;

/// Every repository at or below `paths`, each once (by canonical git directory), sorted by
/// name. A path that does not exist, or below which nothing is a repository, is an error:
/// an audit that silently covers nothing would read as a clean fleet.
pub fn discover(paths: &[PathBuf], flavor: Flavor) -> Result<Vec<Repo>> {
    let mut found: Vec<Repo> = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
        if !meta.is_dir() {
            bail!("{} is not a directory", p.display());
        }
        let root = std::fs::canonicalize(p).with_context(|| format!("cannot resolve {}", p.display()))?;
        let before = found.len();
        if let Some(git_dir) = git_dir_at(&root) {
            found.push(repo(&git_dir, None, flavor)?);
        } else {
            search(&root, &root, 0, flavor, &mut found)?;
        }
        if found.len() == before {
            bail!("no git repository at or below {}", p.display());
        }
    }
    found.sort_by(|a, b| a.git_dir.cmp(&b.git_dir));
    found.dedup_by(|a, b| a.git_dir == b.git_dir);
    // Names must be unique: a second repository claiming a name is known by its path.
    found.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.git_dir.cmp(&b.git_dir)));
    let mut names = std::collections::HashSet::new();
    for r in &mut found {
        if !names.insert(r.name.clone()) {
            r.name = r.git_dir.to_string_lossy().into_owned();
            names.insert(r.name.clone());
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

fn search(root: &Path, dir: &Path, depth: usize, flavor: Flavor, out: &mut Vec<Repo>) -> Result<()> {
    if depth >= MAX_DEPTH {
        return Ok(());
    }
    let rd = std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut entries: Vec<(std::ffi::OsString, PathBuf)> = Vec::new();
    for e in rd {
        let e = e.with_context(|| format!("cannot list {}", dir.display()))?;
        // Real directories only: a link could lead anywhere, or in circles.
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            entries.push((e.file_name(), e.path()));
        }
    }
    entries.sort();
    for (name, path) in entries {
        // GitLab's object pools (`@pools/...`) hold the shared objects of forks, which are
        // audited through the forks themselves.
        if flavor == Flavor::Gitlab && name == "@pools" {
            continue;
        }
        if name.to_string_lossy().ends_with(".git") {
            if let Some(git_dir) = git_dir_at(&path) {
                out.push(repo(&git_dir, Some(root), flavor)?);
                continue;
            }
        }
        search(root, &path, depth + 1, flavor, out)?;
    }
    Ok(())
}

/// The git directory of the repository at `dir`: `dir` itself when it looks like one (a
/// `HEAD`, an `objects` and a `refs` directory), or its `.git` directory.
fn git_dir_at(dir: &Path) -> Option<PathBuf> {
    let looks = |d: &Path| d.join("HEAD").is_file() && d.join("objects").is_dir() && d.join("refs").is_dir();
    if looks(dir) {
        return Some(dir.to_path_buf());
    }
    let dot = dir.join(".git");
    if dot.is_dir() && looks(&dot) {
        return Some(dot);
    }
    None
}

fn repo(git_dir: &Path, root: Option<&Path>, flavor: Flavor) -> Result<Repo> {
    let git_dir = std::fs::canonicalize(git_dir).with_context(|| format!("cannot resolve {}", git_dir.display()))?;
    let path_name = git_dir.to_string_lossy().into_owned();
    let forge_name = match flavor {
        Flavor::Git => None,
        Flavor::Gitea => gitea_name(&git_dir),
        Flavor::Gitlab => gitlab_name(&git_dir, root),
    };
    let name = forge_name.clone().unwrap_or(path_name);
    Ok(Repo { name, forge_name, git_dir })
}

/// `owner/name` of `<root>/<owner>/<name>.git` (a wiki keeps its `.wiki`).
fn gitea_name(git_dir: &Path) -> Option<String> {
    let file = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let last = file(git_dir)?;
    let name = last.strip_suffix(".git").unwrap_or(&last).to_string();
    let owner = git_dir.parent().and_then(file)?;
    crate::lfs::StoreRepo::new(&format!("{owner}/{name}")).map(|r| r.full().to_string())
}

/// GitLab writes the project's path into each repository's config (`gitlab.fullpath`);
/// without it, the path below the storage root.
fn gitlab_name(git_dir: &Path, root: Option<&Path>) -> Option<String> {
    if let Some(full) = config_value(git_dir, "gitlab", "fullpath") {
        return crate::lfs::StoreRepo::new(&full).map(|r| r.full().to_string());
    }
    let rel = git_dir.strip_prefix(root?).ok()?.to_string_lossy().into_owned();
    let rel = rel.strip_suffix(".git").unwrap_or(&rel).to_string();
    crate::lfs::StoreRepo::new(&rel).map(|r| r.full().to_string())
}

/// A value of the repository's own config file (not the user's or the system's).
fn config_value(git_dir: &Path, section: &str, key: &str) -> Option<String> {
    let text = std::fs::read(git_dir.join("config")).ok()?;
    let file = gix::config::File::from_bytes_no_includes(&text, gix::config::file::Metadata::api(), Default::default())
        .map_err(|e| anyhow!("{e}"))
        .ok()?;
    let v = file.string_by(section, None, key)?;
    let s = v.to_string();
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitea_names_come_from_the_layout() {
        assert_eq!(gitea_name(Path::new("/srv/gitea/alice/models.git")).as_deref(), Some("alice/models"));
        assert_eq!(gitea_name(Path::new("/srv/gitea/alice/models.wiki.git")).as_deref(), Some("alice/models.wiki"));
    }

    #[test]
    fn gitlab_names_come_from_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("@hashed/ab/cd/abcd.git");
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::write(repo.join("config"), "[core]\n\tbare = true\n[gitlab]\n\tfullpath = group/sub/project\n")
            .unwrap();
        assert_eq!(gitlab_name(&repo, Some(dir.path())).as_deref(), Some("group/sub/project"));
        std::fs::write(repo.join("config"), "[core]\n\tbare = true\n").unwrap();
        assert_eq!(gitlab_name(&repo, Some(dir.path())).as_deref(), Some("@hashed/ab/cd/abcd"));
        std::fs::write(repo.join("config"), "[gitlab]\n\tfullpath = ../../etc\n").unwrap();
        assert_eq!(gitlab_name(&repo, None), None);
    }
}
