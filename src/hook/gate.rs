//! The policy applied by the gate: where the hook finds its policy, the [`HookConfig`] a
//! policy gives, and [`PolicyDecider`], the [`Decide`] that applies it to each place a blob
//! appears (path, ref, repository, format).

use super::{Action, Decide, HookConfig, Judged, Limits, GATE_FAILURE_CODES};
use crate::finding::{Severity, Verdict};
use crate::git::NewBlob;
use crate::policy::{Policy, Subject};
use anyhow::{anyhow, Result};
use gix::bstr::ByteSlice;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The system-wide policy file, used when no other is found.
pub const SYSTEM_POLICY: &str = "/etc/modelgate/policy.toml";

/// The policy file name looked up in the repository's git directory.
pub const REPO_POLICY: &str = "modelgate.toml";

/// Where a policy was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// `--policy FILE`.
    Flag(PathBuf),
    /// `$MODELGATE_POLICY`.
    Env(PathBuf),
    /// `$GIT_DIR/modelgate.toml`.
    Repo(PathBuf),
    /// [`SYSTEM_POLICY`].
    System(PathBuf),
    Builtin,
}

impl PolicySource {
    pub fn path(&self) -> Option<&Path> {
        match self {
            PolicySource::Flag(p) | PolicySource::Env(p) | PolicySource::Repo(p) | PolicySource::System(p) => Some(p),
            PolicySource::Builtin => None,
        }
    }
}

/// The policy lookup: `--policy FILE`, else `$MODELGATE_POLICY`, else
/// `<git_dir>/modelgate.toml`, else `system`, else the built-in policy. A file named
/// explicitly (flag or variable) is used even if it does not exist, so that loading it fails.
pub fn find_policy(flag: Option<&Path>, env: Option<OsString>, git_dir: &Path, system: &Path) -> PolicySource {
    if let Some(f) = flag {
        return PolicySource::Flag(f.to_path_buf());
    }
    if let Some(e) = env.filter(|e| !e.is_empty()) {
        return PolicySource::Env(PathBuf::from(e));
    }
    // Absolute, so that messages name the file plainly (hooks run with `GIT_DIR=.`).
    let repo = std::fs::canonicalize(git_dir).unwrap_or_else(|_| git_dir.to_path_buf()).join(REPO_POLICY);
    // `symlink_metadata`: a dangling link is still "there" and then fails to load.
    if std::fs::symlink_metadata(&repo).is_ok() {
        return PolicySource::Repo(repo);
    }
    if std::fs::symlink_metadata(system).is_ok() {
        return PolicySource::System(system.to_path_buf());
    }
    PolicySource::Builtin
}

/// Find and load the policy for a hook or LFS command run on `git_dir`. The error names the
/// file and every problem in it.
pub fn load_policy(flag: Option<&Path>, git_dir: &Path) -> Result<(Policy, PolicySource)> {
    let source = find_policy(flag, std::env::var_os("MODELGATE_POLICY"), git_dir, Path::new(SYSTEM_POLICY));
    let policy = match source.path() {
        Some(p) => Policy::from_file(p).map_err(|e| anyhow!("{e:#}"))?,
        None => Policy::builtin(),
    };
    Ok((policy, source))
}

/// The gate configuration a policy gives.
pub fn hook_config(policy: &Policy) -> HookConfig {
    let g = &policy.gate;
    HookConfig {
        scan: policy.scan_options().clone(),
        lfs: policy.lfs.clone(),
        limits: Limits {
            file_timeout: Some(g.file_timeout),
            push_timeout: Some(g.push_timeout),
            file_read_bytes: Some(g.max_file_read_bytes),
            push_read_bytes: Some(g.max_push_read_bytes),
            max_file_size: g.max_file_size,
            jobs: 0,
        },
        on_error: g.on_error,
        bypass: policy.bypass.clone(),
        cache_dir: g.cache_dir.clone(),
        cache_salt: format!("lists:{}", policy.lists_digest()),
        notes_ref: g.notes_ref.clone(),
        audit_log: g.audit_log.clone(),
        ref_rules: policy.rules.iter().any(|r| !r.refs.is_empty()),
        ..HookConfig::default()
    }
}

/// Applies a policy to the judgements of a push.
pub struct PolicyDecider<'p> {
    pub policy: &'p Policy,
    /// Names of the repository matched by rules' `repos` ([`super::HookEnv::repo_names`]).
    pub repos: Vec<String>,
}

impl PolicyDecider<'_> {
    /// Decide for a judgement found at `places` (`(path, ref)`; either may be unknown). The
    /// strictest action over the places wins. Files the gate could not judge follow
    /// `on_error`; pointers to missing LFS objects follow `lfs_missing` (unless something
    /// dangerous was found, which always goes through the verdict actions).
    pub fn decide_at(&self, judged: &Judged, places: &[(Option<&str>, Option<&str>)]) -> (Action, Option<String>) {
        let g = &self.policy.gate;
        if judged.verdict != Verdict::Dangerous {
            if judged.findings.iter().any(|f| GATE_FAILURE_CODES.contains(&f.code.as_str())) {
                return (
                    g.on_error,
                    Some(format!("the gate could not judge this file: policy on_error = {}", g.on_error)),
                );
            }
            if judged.findings.iter().any(|f| f.code == "lfs-object-missing") {
                return (g.lfs_missing, Some(format!("policy lfs_missing = {}", g.lfs_missing)));
            }
        }
        let facts: Vec<(&str, Severity)> = judged.findings.iter().map(|f| (f.code.as_str(), f.severity)).collect();
        let mut best: Option<(Action, Option<String>)> = None;
        let none = [(None, None)];
        let places = if places.is_empty() { &none[..] } else { places };
        for (path, refname) in places {
            let subject = Subject {
                path: *path,
                refname: *refname,
                repos: &self.repos,
                format: &judged.format,
                imports: !judged.imports.is_empty(),
            };
            let d = self.policy.decide_facts(&subject, judged.verdict, &facts);
            let why = d.rule.map(|r| format!("policy rule at {}:{}: {}", self.policy.origin, r.line, r.reason));
            if best.as_ref().is_none_or(|(a, _)| d.action > *a) {
                best = Some((d.action, why));
            }
        }
        best.unwrap_or((Action::Reject, None))
    }
}

impl Decide for PolicyDecider<'_> {
    fn decide(&self, blob: &NewBlob, judged: &Judged) -> Action {
        self.decide_why(blob, judged).0
    }

    fn decide_why(&self, blob: &NewBlob, judged: &Judged) -> (Action, Option<String>) {
        let owned: Vec<(Option<String>, String)> = blob
            .places
            .iter()
            .map(|p| {
                let path = (!p.path.is_empty()).then(|| p.path.to_str_lossy().into_owned());
                (path, p.refname.to_str_lossy().into_owned())
            })
            .collect();
        let places: Vec<(Option<&str>, Option<&str>)> =
            owned.iter().map(|(p, r)| (p.as_deref(), Some(r.as_str()))).collect();
        self.decide_at(judged, &places)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_order() {
        let dir = tempfile::tempdir().unwrap();
        let git = dir.path().canonicalize().unwrap().join("repo.git");
        std::fs::create_dir_all(&git).unwrap();
        let system = dir.path().join("system.toml");
        let flag = dir.path().join("flag.toml");
        let env = Some(OsString::from(dir.path().join("env.toml")));
        assert_eq!(find_policy(None, None, &git, &system), PolicySource::Builtin);
        std::fs::write(&system, "").unwrap();
        assert_eq!(find_policy(None, None, &git, &system), PolicySource::System(system.clone()));
        std::fs::write(git.join(REPO_POLICY), "").unwrap();
        assert_eq!(find_policy(None, None, &git, &system), PolicySource::Repo(git.join(REPO_POLICY)));
        assert_eq!(find_policy(None, Some(OsString::new()), &git, &system), PolicySource::Repo(git.join(REPO_POLICY)));
        assert_eq!(find_policy(None, env.clone(), &git, &system), PolicySource::Env(dir.path().join("env.toml")));
        assert_eq!(find_policy(Some(&flag), env, &git, &system), PolicySource::Flag(flag));
    }
}
