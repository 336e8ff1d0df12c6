//! The policy applied by the gate: where the hook finds its policy, the [`HookConfig`] a
//! policy gives, and [`PolicyDecider`], the [`Decide`] that applies it to each place a blob
//! appears (path, ref, repository, format).

use super::{Action, Decide, HookConfig, HookEnv, Judged, Limits, GATE_FAILURE_CODES};
use crate::finding::{Severity, Verdict};
use crate::git::NewBlob;
use crate::policy::{ContentIds, MatchedAllow, MatchedRule, Policy, Subject, TrustEnv};
use anyhow::{anyhow, Result};
use gix::bstr::ByteSlice;
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// Find and load the policy for an LFS command run on `git_dir` by an admin (the environment
/// is the admin's: `$MODELGATE_POLICY` is read). The error names the file and every
/// problem in it. Hooks use [`load_hook_policy`].
pub fn load_policy(flag: Option<&Path>, git_dir: &Path) -> Result<(Policy, PolicySource)> {
    let source = find_policy(flag, std::env::var_os("MODELGATE_POLICY"), git_dir, Path::new(SYSTEM_POLICY));
    let policy = match source.path() {
        Some(p) => Policy::from_file(p).map_err(|e| anyhow!("{e:#}"))?,
        None => Policy::builtin(),
    };
    Ok((policy, source))
}

/// A policy for a hook: where it came from, and what the pusher may be told about a
/// failure (never a server path: that goes to the audit log).
pub struct HookPolicy {
    pub policy: Policy,
    pub source: PolicySource,
    /// The environment the hook believes: `--trust-env` of the hook, else the policy's
    /// `[gate] trust_env`.
    pub trust: TrustEnv,
    /// Lines for the pusher that are not errors (a `MODELGATE_POLICY` that was ignored).
    pub notes: Vec<String>,
}

/// A policy a hook could not load.
pub struct PolicyFailure {
    /// For the pusher: the problems with line, column and key, the file named by its base name.
    pub pusher: Vec<String>,
    /// For the admin (audit log): the whole message, paths included.
    pub admin: String,
}

/// Find and load the policy for a hook. The environment may name a policy
/// (`MODELGATE_POLICY`) only when it is trusted: by `trust_flag` (the hook's `--trust-env`,
/// written by `modelgate install`), or by the `[gate] trust_env` of the policy the hook finds
/// without the variable (`--policy`, `$GIT_DIR/modelgate.toml`, [`SYSTEM_POLICY`], built-in).
/// With `--policy` the variable is never read.
pub fn load_hook_policy(
    flag: Option<&Path>,
    trust_flag: Option<TrustEnv>,
    git_dir: &Path,
    env_policy: Option<OsString>,
    system: &Path,
) -> Result<HookPolicy, PolicyFailure> {
    let load = |source: PolicySource| -> Result<(Policy, PolicySource), PolicyFailure> {
        match source.path() {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(text) => {
                    let origin = p.display().to_string();
                    Policy::parse(&text, &origin).map(|pol| (pol, source.clone())).map_err(|e| {
                        let name = p.file_name().map_or_else(|| "policy".into(), |n| n.to_string_lossy().into_owned());
                        let mut pusher = vec![format!("invalid policy {name}: {} problem(s)", e.problems.len())];
                        for pr in &e.problems {
                            let key = if pr.key.is_empty() { String::new() } else { format!(" `{}`:", pr.key) };
                            pusher.push(format!("  {name}:{}:{}:{key} {}", pr.line, pr.column, pr.message));
                        }
                        PolicyFailure { pusher, admin: e.to_string() }
                    })
                }
                Err(err) => {
                    let name = p.file_name().map_or_else(|| "policy".into(), |n| n.to_string_lossy().into_owned());
                    Err(PolicyFailure {
                        pusher: vec![format!("cannot read the policy file ({name}): {}", io_reason(&err))],
                        admin: format!("cannot read policy {}: {err}", p.display()),
                    })
                }
            },
            None => Ok((Policy::builtin(), PolicySource::Builtin)),
        }
    };
    let env_policy = env_policy.filter(|e| !e.is_empty());
    let mut notes = Vec::new();
    if let Some(f) = flag {
        let (policy, source) = load(PolicySource::Flag(f.to_path_buf()))?;
        let trust = trust_flag.unwrap_or(policy.gate.trust_env);
        if env_policy.is_some() {
            notes.push("modelgate: note: MODELGATE_POLICY is ignored: the hook names its policy".to_string());
        }
        return Ok(HookPolicy { policy, source, trust, notes });
    }
    let (policy, source) = load(find_policy(None, None, git_dir, system))?;
    let trust = trust_flag.unwrap_or(policy.gate.trust_env);
    match env_policy {
        Some(e) if trust != TrustEnv::None => {
            let (policy, source) = load(PolicySource::Env(PathBuf::from(e)))?;
            let trust = trust_flag.unwrap_or(policy.gate.trust_env);
            Ok(HookPolicy { policy, source, trust, notes })
        }
        Some(_) => {
            notes.push(
                "modelgate: note: MODELGATE_POLICY is ignored: this server does not trust the push environment"
                    .to_string(),
            );
            Ok(HookPolicy { policy, source, trust, notes })
        }
        None => Ok(HookPolicy { policy, source, trust, notes }),
    }
}

/// An I/O error as a pusher may read it (no path).
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "it does not exist".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => "it cannot be read".into(),
    }
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
        trust_env: g.trust_env,
        ref_rules: policy.rules.iter().any(|r| !r.refs.is_empty()),
        ..HookConfig::default()
    }
}

/// The configuration and environment of a hook run with a loaded policy: the trusted
/// environment decides who pushed and the repository's forge name, which names the LFS
/// store of a template (`{repo}`), and which server paths are hidden from the pusher.
pub fn hook_setup(hp: &HookPolicy) -> (HookConfig, HookEnv) {
    let mut config = hook_config(&hp.policy);
    config.trust_env = hp.trust;
    let mut env = HookEnv::from_env_trusting(hp.trust, hp.policy.bypass.pusher_env.as_deref());
    config.lfs.repo = env.lfs_repo();
    let mut hidden: Vec<PathBuf> = Vec::new();
    hidden.extend(hp.source.path().map(Path::to_path_buf));
    hidden.extend(config.lfs.root.clone().filter(|r| r.is_absolute()));
    if let Some(t) = config.lfs.template.as_deref().filter(|t| t.starts_with('/')) {
        hidden.extend(t.split('{').next().map(PathBuf::from));
    }
    hidden.extend(config.cache_dir.clone().filter(|p| p.is_absolute()));
    hidden.extend(config.audit_log.clone().filter(|p| p.is_absolute()));
    env.hide_paths(hidden);
    (config, env)
}

/// Applies a policy to the judgements of a push.
pub struct PolicyDecider<'p> {
    pub policy: &'p Policy,
    /// Names of the repository matched by rules' `repos` ([`super::HookEnv::repo_names`]).
    pub repos: Vec<String>,
    /// Where blobs are read to hash them for `sha256` pins (only when the policy has such
    /// pins and a blob would not pass otherwise); `None`: `sha256` pins match LFS oids only.
    objects: Option<(PathBuf, crate::git::GitEnv)>,
    hashed: Mutex<HashMap<gix::ObjectId, Option<String>>>,
}

impl<'p> PolicyDecider<'p> {
    pub fn new(policy: &'p Policy, repos: Vec<String>) -> PolicyDecider<'p> {
        PolicyDecider { policy, repos, objects: None, hashed: Mutex::new(HashMap::new()) }
    }

    /// Read blobs of the repository at `git_dir` (seen as a hook sees it) to match `sha256` pins.
    pub fn with_objects(mut self, git_dir: &Path, git: &crate::git::GitEnv) -> Self {
        self.objects = Some((git_dir.to_path_buf(), git.clone()));
        self
    }

    /// Decide for a judgement found at `places` (`(path, ref)`; either may be unknown). The
    /// strictest action over the places wins. See [`PolicyDecider::decide_content`].
    pub fn decide_at(&self, judged: &Judged, places: &[(Option<&str>, Option<&str>)]) -> (Action, Option<String>) {
        let content = ContentIds { sha256: judged.lfs_oid.as_deref(), ..Default::default() };
        self.decide_content(judged, places, content)
    }

    /// Decide for a judgement of a file with these content ids, found at `places`. An
    /// `[[allow]]` entry pinned to the content allows it outright. Otherwise the strictest
    /// action wins, among the places and, at each, among the base action and every matching
    /// rule. The base action is `[actions]` for the verdict; for a file the gate could not
    /// judge (its own failure or budget) it is `on_error`, and for a pointer to a missing
    /// LFS object `lfs_missing` (neither excuses anything dangerous that was found).
    pub fn decide_content(
        &self,
        judged: &Judged,
        places: &[(Option<&str>, Option<&str>)],
        content: ContentIds<'_>,
    ) -> (Action, Option<String>) {
        if let Some(m) = self.policy.pinned_allow(&content) {
            return (Action::Allow, Some(allowed_why(&m)));
        }
        let g = &self.policy.gate;
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
                content,
            };
            let d = self.policy.decide_facts(&subject, judged.verdict, &facts);
            let kept = |code: &str| facts.iter().enumerate().any(|(i, (c, _))| *c == code && !d.is_suppressed(i));
            let base = if judged.verdict == Verdict::Dangerous {
                None
            } else if GATE_FAILURE_CODES.iter().any(|c| kept(c)) {
                Some((g.on_error, format!("the gate could not judge this file: policy on_error = {}", g.on_error)))
            } else if kept("lfs-object-missing") {
                Some((g.lfs_missing, format!("policy lfs_missing = {}", g.lfs_missing)))
            } else {
                None
            };
            let (action, why) = match base {
                Some((a, why)) => {
                    let (action, rule) = self.policy.strictest(&subject, Verdict::Error, a);
                    (action, Some(rule.map_or(why, |r| rule_why(&r))))
                }
                None => (d.action, d.rule.as_ref().map(rule_why)),
            };
            if best.as_ref().is_none_or(|(a, _)| action > *a) {
                best = Some((action, why));
            }
        }
        best.unwrap_or((Action::Reject, None))
    }

    /// The sha256 of a blob's content, read from the repository (cached per blob).
    fn sha256_of_blob(&self, id: &gix::ObjectId) -> Option<String> {
        let (git_dir, git) = self.objects.as_ref()?;
        let mut hashed = self.hashed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(h) = hashed.get(id) {
            return h.clone();
        }
        let h = (|| -> Option<String> {
            let repo = crate::git::GateRepo::open(git_dir, git).ok()?;
            let odb = repo.view().odb().ok()?;
            let mut reader = crate::git::BlobReader::new(odb, repo.git_dir(), 64 << 20);
            let blob = reader.read(id).ok()?;
            crate::lfs::sha256_of(blob.source.as_ref()).ok()
        })();
        hashed.insert(*id, h.clone());
        h
    }
}

/// `policy rule[2] (line 14): reason`: no file path, the pusher reads it.
fn rule_why(r: &MatchedRule) -> String {
    format!("policy rule[{}] (line {}): {}", r.index, r.line, r.reason)
}

fn allowed_why(m: &MatchedAllow) -> String {
    format!("policy allow[{}] (line {}) pinned to {}: {}", m.entry, m.line, m.pin, m.reason)
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
        let blob_hex = blob.id.to_hex().to_string();
        let content = ContentIds { sha256: judged.lfs_oid.as_deref(), blob: Some(&blob_hex), blob256: None };
        let decided = self.decide_content(judged, &places, content);
        // A `sha256` pin of a plain blob: hash it only when it would not pass anyway.
        if decided.0 == Action::Allow || judged.lfs_oid.is_some() || !self.policy.pins_needed().0 {
            return decided;
        }
        let Some(sha) = self.sha256_of_blob(&blob.id) else { return decided };
        let content = ContentIds { sha256: Some(&sha), blob: Some(&blob_hex), blob256: None };
        match self.policy.pinned_allow(&content) {
            Some(m) => (Action::Allow, Some(allowed_why(&m))),
            None => decided,
        }
    }
}

/// Ref updates of a push that touch the gate's notes ref: the ref itself, a ref below it
/// (which would block it), or a ref it is below. Deletions count.
pub fn touches_notes_ref<'u>(updates: &'u [crate::git::RefUpdate], notes_ref: &str) -> Vec<&'u crate::git::RefUpdate> {
    let n = notes_ref.as_bytes();
    updates
        .iter()
        .filter(|u| {
            let name: &[u8] = u.name.as_ref();
            name == n
                || (name.len() > n.len() && name.starts_with(n) && name.get(n.len()) == Some(&b'/'))
                || (n.len() > name.len() && n.starts_with(name) && n.get(name.len()) == Some(&b'/'))
        })
        .collect()
}

/// Reject a push that touches the gate's notes ref (see [`touches_notes_ref`]) unless a
/// bypass was honoured. Returns the summary of the rejection, `None` to go on.
pub(crate) fn guard_notes_ref(
    env: &HookEnv,
    config: &HookConfig,
    updates: &[crate::git::RefUpdate],
    bypassed: bool,
    git_dir: &Path,
    out: &mut super::Out<'_>,
) -> Option<super::pre_receive::Summary> {
    let touched = touches_notes_ref(updates, &config.notes_ref);
    if touched.is_empty() {
        return None;
    }
    let names: Vec<String> = touched.iter().map(|u| super::escape_bytes(&u.name)).collect();
    let record = serde_json::json!({
        "time": super::now_secs(),
        "event": if bypassed { "notes-ref-bypassed" } else { "notes-ref-refused" },
        "refs": names,
        "pusher": env.pusher,
    });
    super::audit(git_dir, config, &[record], out);
    if bypassed {
        out.line(&format!(
            "modelgate: BYPASS: the gate's record {} is changed by this push (logged)",
            config.notes_ref
        ));
        return None;
    }
    out.line(&format!(
        "modelgate: push rejected: {} is the push gate's record of its verdicts; pushes may not create, change or \
         delete it",
        names.join(", ")
    ));
    out.line("modelgate: push the other refs without it (the gate writes its notes itself after each push)");
    Some(super::pre_receive::Summary { rejected: touched.len(), ..Default::default() })
}

/// Tell the admin, through the audit log, what the pusher is only told is a server
/// misconfiguration: an LFS store that cannot be used.
pub(crate) fn admin_notices(git_dir: &Path, config: &HookConfig, judged: &[Judged], out: &mut super::Out<'_>) {
    let store_failed = judged.iter().any(|j| j.findings.iter().any(|f| f.code == "lfs-store-unavailable"));
    if !store_failed {
        return;
    }
    let Some(problem) = config.lfs.misconfiguration(git_dir) else { return };
    let record = serde_json::json!({
        "time": super::now_secs(),
        "event": "lfs-store-misconfigured",
        "error": problem,
        "hint": "check [lfs] root/template in the policy (Gitea: [lfs] PATH of app.ini; GitLab: shared/lfs-objects)",
    });
    super::audit(git_dir, config, &[record], out);
}

/// What the rejection message of one file advises besides its findings' fixes.
pub(crate) struct Tips {
    path: Option<String>,
    commit: Option<String>,
    at_tip: bool,
    verdict: Verdict,
    allowlist_helps: bool,
    model: bool,
    blob: String,
    not_content: bool,
}

impl Tips {
    pub(crate) fn new(updates: &[crate::git::RefUpdate], decide: &dyn Decide, blob: &NewBlob, j: &Judged) -> Tips {
        let place = blob.places.first();
        let update = place.and_then(|p| updates.iter().find(|u| u.name == p.refname));
        let is_branch = place.is_some_and(|p| !p.refname.starts_with(b"refs/tags/"));
        let commit = place.and_then(|p| p.commit).filter(|_| is_branch);
        let not_content = j.findings.iter().any(|f| {
            f.code.starts_with("lfs-") || f.code == "file-too-large" || GATE_FAILURE_CODES.contains(&f.code.as_str())
        });
        Tips {
            path: place.filter(|p| !p.path.is_empty()).map(|p| super::escape_bytes(&p.path)),
            commit: commit.map(|c| crate::git::short(&c)),
            at_tip: match (commit, update) {
                (Some(c), Some(u)) => c == u.new,
                _ => true,
            },
            verdict: j.verdict,
            allowlist_helps: decide.allowlist_would_help(blob, j),
            model: j.format != "unknown" || matches!(j.verdict, Verdict::Dangerous | Verdict::Suspicious),
            blob: blob.id.to_hex().to_string(),
            not_content,
        }
    }

    /// `fix:` lines: the fixes of the findings shown (allowlist advice only where it helps),
    /// then the advice on the file itself.
    pub(crate) fn fixes(&self, codes: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for code in codes {
            let Some(info) = crate::finding::code_info(code) else { continue };
            let line = format!("fix: {}", info.fix);
            if (!self.allowlist_helps && info.fix.contains("allowlist")) || out.contains(&line) {
                continue;
            }
            if out.len() < 3 {
                out.push(line);
            }
        }
        let said_safetensors = out.iter().any(|l| l.contains("safetensors"));
        let advice = super::message::Advice {
            path: self.path.as_deref(),
            commit: self.commit.as_deref(),
            at_tip: self.at_tip,
            verdict: self.verdict,
            allowlist_helps: self.allowlist_helps,
            model: self.model && !said_safetensors,
            blob: &self.blob,
            not_content: self.not_content,
        };
        out.extend(advice.lines());
        out
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
