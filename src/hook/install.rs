//! `modelgate install`: put the pre-receive and post-receive hooks where each server runs
//! them. Plain git runs `hooks/<name>`; Gitea and Forgejo run every executable in
//! `hooks/<name>.d/` from their own `hooks/<name>`; GitLab (Gitaly) runs
//! `custom_hooks/<name>.d/*` of a repository, or `<custom_hooks_dir>/<name>.d/*` server-wide.
//!
//! Gitea and Forgejo write the hooks of each repository they create, so a per-repository
//! install misses every repository created later. The server-wide Gitea install writes a
//! hooks directory that git uses for every repository once the forge user's git
//! configuration names it (`core.hooksPath`): its `pre-receive` and `post-receive` run the
//! gate, then the repository's own `hooks/<name>` (Gitea's dispatcher) with the same stdin;
//! every other hook name just runs the repository's own hook, so nothing of the forge is
//! skipped.
//!
//! Every file written carries [`MARKER`], so that installing again only updates it (keeping
//! the policy and trusted environment the hooks were using unless told otherwise), a hook
//! someone else wrote is never overwritten without `--force` (it is then kept as
//! `<file>.modelgate-backup`), and uninstalling removes only marked files (restoring a backup).

use crate::policy::TrustEnv;
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

/// Hook names git runs that a server-wide hooks directory (`core.hooksPath`) must pass on
/// to the repository's own hooks (githooks(5)). Left out: `push-to-checkout` (its mere
/// presence changes what `receive.denyCurrentBranch=updateInstead` does) and
/// `fsmonitor-watchman` (named by configuration, never looked up in the hooks directory).
pub const CHAINED_HOOKS: &[&str] = &[
    "applypatch-msg",
    "pre-applypatch",
    "post-applypatch",
    "pre-commit",
    "pre-merge-commit",
    "prepare-commit-msg",
    "commit-msg",
    "post-commit",
    "pre-rebase",
    "post-checkout",
    "post-merge",
    "pre-push",
    "pre-receive",
    "update",
    "proc-receive",
    "post-receive",
    "post-update",
    "reference-transaction",
    "pre-auto-gc",
    "post-rewrite",
    "sendemail-validate",
    "post-index-change",
    "p4-changelist",
    "p4-prepare-changelist",
    "p4-post-changelist",
    "p4-pre-submit",
];

/// Which policy the hooks name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyChoice {
    /// Keep what installed hooks name (nothing for a new install): re-running `install`
    /// never drops a policy silently.
    Keep,
    /// Pass this file with `--policy` (absolute).
    Set(PathBuf),
    /// Pass no `--policy`: the hook's own lookup.
    Drop,
}

/// What to install.
#[derive(Debug, Clone)]
pub struct Options {
    pub flavor: Flavor,
    /// The binary the hooks run (absolute).
    pub bin: PathBuf,
    pub policy: PolicyChoice,
    /// The environment the hooks believe (`--trust-env`); `None`: keep what installed hooks
    /// say, else the flavor's own (`gitea`, `gitlab`; nothing for plain git).
    pub trust: Option<TrustEnv>,
    pub force: bool,
}

impl Flavor {
    /// The environment a forge's hooks can believe: the forge sets these variables itself
    /// after it authenticated the pusher.
    pub fn default_trust(self) -> Option<TrustEnv> {
        match self {
            Flavor::Git => None,
            Flavor::Gitea => Some(TrustEnv::Gitea),
            Flavor::Gitlab => Some(TrustEnv::Gitlab),
        }
    }
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
    /// What was kept or what to do next.
    Note(String),
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
            Outcome::Note(n) => write!(f, "note: {n}"),
        }
    }
}

/// The shim a hook file holds: exec the binary with the hook name.
pub fn shim(bin: &Path, hook: &str, policy: Option<&Path>) -> String {
    shim_with(bin, hook, policy, None)
}

/// [`shim`] with the environment the hook believes.
pub fn shim_with(bin: &Path, hook: &str, policy: Option<&Path>, trust: Option<TrustEnv>) -> String {
    format!("#!/bin/sh\n{MARKER}\nexec {} \"$@\"\n", gate_command(bin, hook, policy, trust))
}

/// `'<bin>' hook <name> [--policy '<file>'] [--trust-env <env>]`.
fn gate_command(bin: &Path, hook: &str, policy: Option<&Path>, trust: Option<TrustEnv>) -> String {
    let policy = policy.map(|p| format!(" --policy {}", sh_quote(&p.to_string_lossy()))).unwrap_or_default();
    let trust = trust.filter(|t| *t != TrustEnv::None).map(|t| format!(" --trust-env {t}")).unwrap_or_default();
    format!("{} hook {hook}{policy}{trust}", sh_quote(&bin.to_string_lossy()))
}

/// A hook of the server-wide hooks directory (`core.hooksPath`). For `pre-receive` and
/// `post-receive` (`gate` given): keep stdin, run the gate on it, then the repository's own
/// hook with the same stdin and arguments (a rejection of the gate stops a pre-receive; a
/// post-receive goes on whatever the gate's outcome). For every other name: run the
/// repository's own hook if it has one.
pub fn chain_script(hook: &str, gate: Option<&str>) -> String {
    let find_own = format!(
        r#"hook={hook}
# The repository's own hooks directory (for a linked worktree, the common one).
if [ -n "$GIT_DIR" ] && [ ! -f "$GIT_DIR/commondir" ]; then
  common=$GIT_DIR
else
  common=$(git rev-parse --git-common-dir 2>/dev/null) || common=${{GIT_DIR:-.}}
fi
own="$common/hooks/$hook"
runs_own() {{ [ -f "$own" ] && [ -x "$own" ] && ! [ "$own" -ef "$0" ]; }}
"#
    );
    let body = match gate {
        None => "if runs_own; then\n  exec \"$own\" \"$@\"\nfi\nexit 0\n".to_string(),
        Some(cmd) => {
            let after_gate = if hook == "pre-receive" {
                format!("{cmd} <\"$input\" || exit $?\n")
            } else {
                format!("{cmd} <\"$input\"\n")
            };
            format!(
                r#"input=$(mktemp "${{TMPDIR:-/tmp}}/modelgate-$hook.XXXXXX") || exit 1
trap 'rm -f "$input"' EXIT
cat >"$input" || exit 1
{after_gate}if runs_own; then
  "$own" "$@" <"$input" || exit $?
fi
exit 0
"#
            )
        }
    };
    let what = if gate.is_some() {
        "the modelgate push gate, then this repository's own hooks/<name> (same stdin)"
    } else {
        "this repository's own hooks/<name>"
    };
    format!("#!/bin/sh\n{MARKER}\n# A core.hooksPath hook for every repository: runs {what}.\n{find_own}{body}")
}

/// What an installed shim passes: `(--policy, --trust-env)`.
pub fn installed_args(text: &str) -> (Option<PathBuf>, Option<TrustEnv>) {
    let policy = text.find(" --policy '").and_then(|i| sh_unquote(text.get(i + 10..)?)).map(PathBuf::from);
    let trust = text.split_whitespace().skip_while(|w| *w != "--trust-env").nth(1).and_then(TrustEnv::parse);
    (policy, trust)
}

/// The value of a single-quoted word as [`sh_quote`] writes it, at the start of `s`.
fn sh_unquote(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = s.strip_prefix('\'')?;
    loop {
        let end = rest.find('\'')?;
        out.push_str(rest.get(..end)?);
        rest = rest.get(end + 1..)?;
        match rest.strip_prefix("\\''") {
            Some(r) => {
                out.push('\'');
                rest = r;
            }
            None => return Some(out),
        }
    }
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
/// a server-wide hooks directory (then `repo` is ignored): GitLab's `custom_hooks_dir`, or
/// for Gitea a `core.hooksPath` directory with every hook name git runs.
pub fn targets(flavor: Flavor, repo: Option<&Path>, global: Option<&Path>) -> Result<Vec<(&'static str, PathBuf)>> {
    if let Some(g) = global {
        return match flavor {
            Flavor::Git => bail!("--global-dir is for the gitea flavor (a core.hooksPath directory) or the gitlab flavor (gitaly's custom_hooks_dir)"),
            Flavor::Gitlab => Ok(HOOKS.iter().map(|h| (*h, g.join(format!("{h}.d")).join("modelgate"))).collect()),
            Flavor::Gitea => Ok(CHAINED_HOOKS.iter().map(|h| (*h, g.join(h))).collect()),
        };
    }
    let repo = repo.ok_or_else(|| anyhow!("no repository given"))?;
    Ok(HOOKS
        .iter()
        .map(|h| {
            let file = match flavor {
                Flavor::Git => repo.join("hooks").join(h),
                Flavor::Gitea => repo.join("hooks").join(format!("{h}.d")).join("modelgate"),
                Flavor::Gitlab => repo.join("custom_hooks").join(format!("{h}.d")).join("modelgate"),
            };
            (*h, file)
        })
        .collect())
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
    let chained = opts.flavor == Flavor::Gitea && global.is_some();
    // What installed hooks name, so that installing again keeps it.
    let mut kept_policy: Option<PathBuf> = None;
    let mut kept_trust: Option<TrustEnv> = None;
    for (hook, path) in &files {
        if let (true, Current::Ours(text)) = (HOOKS.contains(hook), current(path)?) {
            let (p, t) = installed_args(&text);
            kept_policy = kept_policy.or(p);
            kept_trust = kept_trust.or(t);
        }
    }
    let policy = match &opts.policy {
        PolicyChoice::Keep => kept_policy.clone(),
        PolicyChoice::Set(p) => Some(p.clone()),
        PolicyChoice::Drop => None,
    };
    let trust = opts.trust.or(kept_trust).or(opts.flavor.default_trust());
    let mut plan = Vec::new();
    for (hook, path) in &files {
        let want = if chained {
            let gate = HOOKS.contains(hook).then(|| gate_command(&opts.bin, hook, policy.as_deref(), trust));
            chain_script(hook, gate.as_deref())
        } else {
            shim_with(&opts.bin, hook, policy.as_deref(), trust)
        };
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
    if let (PolicyChoice::Keep, Some(p)) = (&opts.policy, &kept_policy) {
        out.push(Outcome::Note(format!(
            "the hooks keep using the policy {} (give --policy FILE to change it, --no-policy to drop it)",
            p.display()
        )));
        if let Err(e) = crate::policy::Policy::from_file(p) {
            out.push(Outcome::Warning(format!("the policy the hooks use does not load: {e:#}")));
        }
    }
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

/// Point git at a server-wide hooks directory for every repository: `core.hooksPath` in the
/// git configuration file the forge's user reads (Gitea runs git with `HOME` set to its
/// `[git] HOME_PATH`, by default `<APP_DATA_PATH>/home`, so `<that>/.gitconfig`). Refuses to
/// replace another `core.hooksPath` without `force`.
pub fn set_hooks_path(config: &Path, dir: &Path, force: bool) -> Result<Outcome> {
    let current = git_config_get(config, "core.hooksPath")?;
    let want = dir.to_string_lossy().into_owned();
    match current {
        Some(c) if c == want => return Ok(Outcome::Note(format!("{} already sets core.hooksPath = {want}", config.display()))),
        Some(c) if !force => bail!(
            "{} already sets core.hooksPath = {c}; the hooks there would stop running. Chain them from {} or use --force",
            config.display(),
            dir.display()
        ),
        _ => {}
    }
    git_config(config, &["core.hooksPath", &want])?;
    Ok(Outcome::Note(format!("set core.hooksPath = {want} in {}", config.display())))
}

/// Undo [`set_hooks_path`] when the configuration still names `dir`.
pub fn unset_hooks_path(config: &Path, dir: &Path) -> Result<Outcome> {
    match git_config_get(config, "core.hooksPath")? {
        Some(c) if Path::new(&c) == dir => {
            git_config(config, &["--unset", "core.hooksPath"])?;
            Ok(Outcome::Note(format!("removed core.hooksPath from {}", config.display())))
        }
        Some(c) => Ok(Outcome::Note(format!("left core.hooksPath = {c} in {} (not modelgate's)", config.display()))),
        None => Ok(Outcome::Note(format!("{} sets no core.hooksPath", config.display()))),
    }
}

fn git_config_get(file: &Path, key: &str) -> Result<Option<String>> {
    let o = std::process::Command::new("git")
        .arg("config")
        .arg("--file")
        .arg(file)
        .args(["--get", key])
        .output()
        .context("cannot run git config")?;
    match o.status.code() {
        Some(0) => Ok(Some(String::from_utf8_lossy(&o.stdout).trim_end_matches('\n').to_string())),
        Some(1) => Ok(None),
        _ => bail!("git config --file {} failed: {}", file.display(), String::from_utf8_lossy(&o.stderr).trim()),
    }
}

fn git_config(file: &Path, args: &[&str]) -> Result<()> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let o = std::process::Command::new("git")
        .arg("config")
        .arg("--file")
        .arg(file)
        .args(args)
        .output()
        .context("cannot run git config")?;
    if !o.status.success() {
        bail!("git config --file {} failed: {}", file.display(), String::from_utf8_lossy(&o.stderr).trim());
    }
    Ok(())
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
        if flavor != Flavor::Git && !(flavor == Flavor::Gitea && global.is_some()) {
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
    fn installed_args_are_read_back() {
        let p = Path::new("/etc/it's/policy.toml");
        let s = shim_with(Path::new("/usr/bin/modelgate"), "pre-receive", Some(p), Some(TrustEnv::Gitea));
        assert_eq!(installed_args(&s), (Some(p.to_path_buf()), Some(TrustEnv::Gitea)));
        let s = shim(Path::new("/usr/bin/modelgate"), "pre-receive", None);
        assert_eq!(installed_args(&s), (None, None));
        let chain = chain_script("pre-receive", Some(&gate_command(Path::new("/b"), "pre-receive", Some(p), None)));
        assert_eq!(installed_args(&chain).0.as_deref(), Some(p));
        assert!(is_ours(&chain) && is_ours(&chain_script("update", None)));
    }

    #[test]
    fn target_paths() {
        let r = Path::new("/srv/r.git");
        let t = targets(Flavor::Gitea, Some(r), None).unwrap();
        assert_eq!(t[0].1, Path::new("/srv/r.git/hooks/pre-receive.d/modelgate"));
        let t = targets(Flavor::Gitlab, None, Some(Path::new("/opt/hooks"))).unwrap();
        assert_eq!(t[1].1, Path::new("/opt/hooks/post-receive.d/modelgate"));
        assert!(targets(Flavor::Git, None, Some(Path::new("/x"))).is_err());
        let t = targets(Flavor::Gitea, None, Some(Path::new("/srv/hooks"))).unwrap();
        assert!(t.iter().any(|(h, p)| *h == "update" && p == Path::new("/srv/hooks/update")));
        assert!(!t.iter().any(|(h, _)| *h == "push-to-checkout"));
    }
}
