//! `modelgate install`: put the pre-receive and post-receive hooks where each server runs
//! them. Plain git runs `hooks/<name>`; Gitea and Forgejo run every executable in
//! `hooks/<name>.d/` from their own `hooks/<name>`; GitLab (Gitaly) runs
//! `custom_hooks/<name>.d/*` of a repository, or `<custom_hooks_dir>/<name>.d/*` server-wide.
//!
//! Every file written carries [`MARKER`], so that installing again only updates it,
//! a hook someone else wrote is never overwritten without `--force` (it is then kept as
//! `<file>.modelgate-backup`), and uninstalling removes only marked files (restoring a backup).

use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};

/// The line that marks a hook file as written by `modelgate install`.
pub const MARKER: &str = "# installed by `modelgate install`; `modelgate install --uninstall` removes it";

/// The hooks installed.
pub const HOOKS: &[&str] = &["pre-receive", "post-receive"];

/// Suffix of the copy of a foreign hook replaced with `--force`.
pub const BACKUP_SUFFIX: &str = ".modelgate-backup";

/// Which server runs the hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `hooks/<name>`.
    Git,
    /// `hooks/<name>.d/modelgate`.
    Gitea,
    /// `custom_hooks/<name>.d/modelgate`, or `<dir>/<name>.d/modelgate` with a global dir.
    Gitlab,
}

/// What to install.
#[derive(Debug, Clone)]
pub struct Options {
    pub flavor: Flavor,
    /// The binary the hooks run (absolute).
    pub bin: PathBuf,
    /// A policy file the hooks pass with `--policy` (absolute).
    pub policy: Option<PathBuf>,
    pub force: bool,
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Installed(PathBuf),
    /// An older modelgate hook (other binary or policy) was rewritten.
    Updated(PathBuf),
    Unchanged(PathBuf),
    /// A foreign hook was replaced (`--force`) and kept at the backup path.
    Replaced {
        path: PathBuf,
        backup: PathBuf,
    },
    Removed(PathBuf),
    /// Removed, and the backup of the hook it had replaced put back.
    Restored(PathBuf),
    /// Nothing of modelgate's there.
    Absent(PathBuf),
    /// A hook modelgate did not write; left alone.
    Foreign(PathBuf),
    /// Something the admin should know (e.g. Gitea's dispatcher is missing).
    Warning(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Installed(p) => write!(f, "installed {}", p.display()),
            Outcome::Updated(p) => write!(f, "updated {}", p.display()),
            Outcome::Unchanged(p) => write!(f, "already installed {}", p.display()),
            Outcome::Replaced { path, backup } => {
                write!(f, "replaced {} (the previous hook is kept as {})", path.display(), backup.display())
            }
            Outcome::Removed(p) => write!(f, "removed {}", p.display()),
            Outcome::Restored(p) => write!(f, "removed modelgate's hook and restored the previous {}", p.display()),
            Outcome::Absent(p) => write!(f, "not installed {}", p.display()),
            Outcome::Foreign(p) => write!(f, "left alone {} (not written by modelgate)", p.display()),
            Outcome::Warning(w) => write!(f, "warning: {w}"),
        }
    }
}

/// The shim a hook file holds: exec the binary with the hook name.
pub fn shim(bin: &Path, hook: &str, policy: Option<&Path>) -> String {
    let policy = policy.map(|p| format!(" --policy {}", sh_quote(&p.to_string_lossy()))).unwrap_or_default();
    format!("#!/bin/sh\n{MARKER}\nexec {} hook {hook}{policy} \"$@\"\n", sh_quote(&bin.to_string_lossy()))
}

/// Quote for sh: single quotes, with `'` as `'\''`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The git directory of a repository argument (a bare repository, or a work tree's `.git`).
pub fn git_dir_of(repo: &Path) -> Result<PathBuf> {
    let is_git_dir = |p: &Path| p.join("HEAD").is_file() && p.join("objects").is_dir();
    if is_git_dir(repo) {
        return Ok(repo.to_path_buf());
    }
    let dot = repo.join(".git");
    if is_git_dir(&dot) {
        return Ok(dot);
    }
    bail!("{} is not a git repository", repo.display())
}

/// The hook files of one target: `(hook name, file)`. `repo` is a git directory; `global`
/// a GitLab server-wide custom hooks directory (then `repo` is ignored).
pub fn targets(flavor: Flavor, repo: Option<&Path>, global: Option<&Path>) -> Result<Vec<(&'static str, PathBuf)>> {
    let file = |name: &str| -> Result<PathBuf> {
        if let Some(g) = global {
            if flavor != Flavor::Gitlab {
                bail!("--global-dir is for the gitlab flavor (gitaly's custom_hooks_dir)");
            }
            return Ok(g.join(format!("{name}.d")).join("modelgate"));
        }
        let repo = repo.ok_or_else(|| anyhow!("no repository given"))?;
        Ok(match flavor {
            Flavor::Git => repo.join("hooks").join(name),
            Flavor::Gitea => repo.join("hooks").join(format!("{name}.d")).join("modelgate"),
            Flavor::Gitlab => repo.join("custom_hooks").join(format!("{name}.d")).join("modelgate"),
        })
    };
    HOOKS.iter().map(|h| Ok((*h, file(h)?))).collect()
}

fn is_ours(text: &str) -> bool {
    text.lines().any(|l| l == MARKER)
}

/// What is at a hook path now.
enum Current {
    Nothing,
    Ours(String),
    Foreign,
}

fn current(path: &Path) -> Result<Current> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Current::Nothing),
        Err(e) => Err(e).with_context(|| format!("cannot inspect {}", path.display())),
        Ok(m) if !m.is_file() => Ok(Current::Foreign),
        Ok(_) => {
            let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            match String::from_utf8(bytes) {
                Ok(t) if is_ours(&t) => Ok(Current::Ours(t)),
                _ => Ok(Current::Foreign),
            }
        }
    }
}

fn backup_of(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(BACKUP_SUFFIX);
    PathBuf::from(s)
}

/// Install the hooks into one target. Checks every file before writing any, so a refusal
/// leaves nothing half-installed.
pub fn install(opts: &Options, repo: Option<&Path>, global: Option<&Path>) -> Result<Vec<Outcome>> {
    let files = targets(opts.flavor, repo, global)?;
    let mut plan = Vec::new();
    for (hook, path) in &files {
        let want = shim(&opts.bin, hook, opts.policy.as_deref());
        let now = current(path)?;
        if matches!(now, Current::Foreign) {
            if !opts.force {
                bail!(
                    "{} exists and was not written by modelgate; use --force to replace it (it is kept as {})",
                    path.display(),
                    backup_of(path).display()
                );
            }
            if std::fs::symlink_metadata(backup_of(path)).is_ok() {
                bail!(
                    "{} exists and so does {}; move one of them away first",
                    path.display(),
                    backup_of(path).display()
                );
            }
        }
        plan.push((path.clone(), want, now));
    }
    let mut out = Vec::new();
    for (path, want, now) in plan {
        let outcome = match now {
            Current::Ours(text) if text == want => Outcome::Unchanged(path.clone()),
            Current::Ours(_) => {
                write_hook(&path, &want)?;
                Outcome::Updated(path.clone())
            }
            Current::Nothing => {
                write_hook(&path, &want)?;
                Outcome::Installed(path.clone())
            }
            Current::Foreign => {
                let backup = backup_of(&path);
                std::fs::rename(&path, &backup).with_context(|| format!("cannot move {} aside", path.display()))?;
                // Dispatchers run every executable in a `.d` directory: the backup must not be one.
                set_exec(&backup, false)?;
                write_hook(&path, &want)?;
                Outcome::Replaced { path: path.clone(), backup }
            }
        };
        out.push(outcome);
    }
    if opts.flavor == Flavor::Gitea {
        if let Some(repo) = repo {
            for hook in HOOKS {
                let dispatcher = repo.join("hooks").join(hook);
                let ok = std::fs::read_to_string(&dispatcher).is_ok_and(|t| t.contains(".d/"));
                if !ok {
                    out.push(Outcome::Warning(format!(
                        "{} is not Gitea's dispatcher, so {hook}.d/modelgate will not run; \
                         run Gitea's \"Resynchronize git hooks\" admin task",
                        dispatcher.display()
                    )));
                }
            }
        }
    }
    Ok(out)
}

/// Add (for whoever may read it) or remove the executable bits of a regular file.
fn set_exec(path: &Path, on: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let m = std::fs::symlink_metadata(path)?;
    if !m.is_file() {
        return Ok(());
    }
    let mode = m.permissions().mode();
    let mode = if on { mode | ((mode & 0o444) >> 2) } else { mode & !0o111 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot change the mode of {}", path.display()))
}

/// Write an executable hook atomically (temporary file beside it, then rename).
fn write_hook(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().ok_or_else(|| anyhow!("no directory for {}", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o755))?;
    tmp.persist(path).map_err(|e| e.error).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Remove the hooks modelgate installed into one target; foreign files stay.
pub fn uninstall(flavor: Flavor, repo: Option<&Path>, global: Option<&Path>) -> Result<Vec<Outcome>> {
    let mut out = Vec::new();
    for (_, path) in targets(flavor, repo, global)? {
        match current(&path)? {
            Current::Nothing => out.push(Outcome::Absent(path.clone())),
            Current::Foreign => out.push(Outcome::Foreign(path.clone())),
            Current::Ours(_) => {
                std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
                let backup = backup_of(&path);
                if std::fs::symlink_metadata(&backup).is_ok() {
                    std::fs::rename(&backup, &path).with_context(|| format!("cannot restore {}", backup.display()))?;
                    set_exec(&path, true)?;
                    out.push(Outcome::Restored(path.clone()));
                } else {
                    out.push(Outcome::Removed(path.clone()));
                }
            }
        }
        // Directories modelgate created (`<name>.d`, `custom_hooks`) go when empty.
        if flavor != Flavor::Git {
            let d = path.parent().map(Path::to_path_buf);
            for dir in [d.clone(), d.and_then(|d| d.parent().map(Path::to_path_buf))].into_iter().flatten() {
                let named_by_us = dir.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy();
                    n.ends_with(".d") || (n == "custom_hooks" && global.is_none())
                });
                if named_by_us {
                    // Fails (and is meant to) when the directory is not empty.
                    let _ = std::fs::remove_dir(&dir);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shim_quotes_paths() {
        let s = shim(Path::new("/opt/it's here/modelgate"), "pre-receive", Some(Path::new("/etc/p.toml")));
        assert_eq!(
            s,
            format!("#!/bin/sh\n{MARKER}\nexec '/opt/it'\\''s here/modelgate' hook pre-receive --policy '/etc/p.toml' \"$@\"\n")
        );
        assert!(is_ours(&s));
        assert!(!is_ours("#!/bin/sh\necho mine\n"));
    }

    #[test]
    fn target_paths() {
        let r = Path::new("/srv/r.git");
        let t = targets(Flavor::Gitea, Some(r), None).unwrap();
        assert_eq!(t[0].1, Path::new("/srv/r.git/hooks/pre-receive.d/modelgate"));
        let t = targets(Flavor::Gitlab, None, Some(Path::new("/opt/hooks"))).unwrap();
        assert_eq!(t[1].1, Path::new("/opt/hooks/post-receive.d/modelgate"));
        assert!(targets(Flavor::Git, None, Some(Path::new("/x"))).is_err());
    }
}
