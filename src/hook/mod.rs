//! The push gate: `pre-receive` scans every blob a push introduces (and the LFS objects its
//! pointers name) and rejects the push when a file is dangerous or cannot be judged;
//! `post-receive` records the verdicts as git notes and in an audit log.
//!
//! What to do with a verdict is a [`Decide`] implementation: [`gate::PolicyDecider`] applies
//! a policy; [`DefaultDecision`] is the built-in behaviour. Any internal failure follows the
//! policy's `on_error` (default: reject, fail closed).

mod budget;
mod cache;
pub mod gate;
mod handoff;
pub mod install;
mod judge;
pub mod lfs_store;
mod message;
pub mod policy_test;
pub mod post_receive;
pub mod pre_receive;

pub use crate::policy::Action;
pub use budget::Limits;
pub use cache::Cache;
pub(crate) use judge::workers;
pub use judge::{judge_all, judge_push, Fact, Judged, Judgement, Variant};
pub use message::{escape, escape_bytes, Out};

use crate::engine::ScanOptions;
use crate::finding::{CodeInfo, Severity, Verdict};
use crate::git::NewBlob;
use crate::lfs::LfsStore;
use std::path::{Path, PathBuf};

pub const CODES: &[CodeInfo] = &[
    CodeInfo {
        code: "file-too-large",
        severity: Severity::Error,
        summary: "the file is larger than the policy's max_file_size and was not scanned",
        fix: "keep the file out of the repository, or ask an admin to raise max_file_size for it",
    },
    CodeInfo {
        code: "gate-file-timeout",
        severity: Severity::Error,
        summary: "the file's scan did not finish within the gate's per-file time budget",
        fix: "ask an admin to raise file_timeout in the policy, or convert the model to safetensors",
    },
    CodeInfo {
        code: "gate-file-budget-exceeded",
        severity: Severity::Error,
        summary: "the file's scan read more bytes than the gate's per-file byte budget",
        fix: "ask an admin to raise max_file_read_bytes in the policy, or convert the model to safetensors",
    },
    CodeInfo {
        code: "gate-push-budget-exceeded",
        severity: Severity::Error,
        summary: "the push ran out of its time or byte budget before this file was judged",
        fix: "push in smaller parts, or ask an admin to raise push_timeout or max_push_read_bytes",
    },
    CodeInfo {
        code: "gate-object-unreadable",
        severity: Severity::Error,
        summary: "the gate could not read the object from the repository or the lfs store",
        fix: "push again; if it persists, ask an admin to check the server's repository and disk",
    },
    CodeInfo {
        code: "checkout-filter-unknown",
        severity: Severity::Error,
        summary: "the path has a `filter` attribute: clients check out what their own filter program makes of it",
        fix: "remove the filter attribute for model files, or ask an admin whether on_error may let it through",
    },
    CodeInfo {
        code: "checkout-too-large",
        severity: Severity::Error,
        summary: "the file is too large for the gate to judge what git's checkout conversions make of it",
        fix: "remove `ident`, `eol`/`text` or `working-tree-encoding` attributes from large files",
    },
    CodeInfo {
        code: "checkout-encoding-unavailable",
        severity: Severity::Error,
        summary: "the gate could not produce the file in its `working-tree-encoding` to judge it",
        fix: "remove the working-tree-encoding attribute from model files, or ask an admin to install iconv",
    },
];

/// Codes that say the gate could not judge a file (its own failure or budget), not what the
/// file holds: such files follow the policy's `on_error`.
pub const GATE_FAILURE_CODES: &[&str] = &[
    "gate-file-timeout",
    "gate-file-budget-exceeded",
    "gate-push-budget-exceeded",
    "gate-object-unreadable",
    "lfs-store-unavailable",
    "internal-error",
    "checkout-filter-unknown",
    "checkout-too-large",
    "checkout-encoding-unavailable",
    "lfs-pointer-extension",
];

/// Turns a file's judgement into an action. [`gate::PolicyDecider`] applies a policy;
/// closures `Fn(&NewBlob, &Judged) -> Action` work too.
pub trait Decide: Sync {
    fn decide(&self, blob: &NewBlob, judged: &Judged) -> Action;

    /// The action and, when something besides the verdict decided it, why (a rule's reason,
    /// `on_error`, `lfs_missing`).
    fn decide_why(&self, blob: &NewBlob, judged: &Judged) -> (Action, Option<String>) {
        (self.decide(blob, judged), None)
    }

    /// Whether allowlisting the file's imports would let it pass: it is suspicious only
    /// because of imports outside the allowlist, and the same file judged safe would not be
    /// rejected. Rejection messages offer allowlist advice only then.
    fn allowlist_would_help(&self, blob: &NewBlob, judged: &Judged) -> bool {
        allowlist_would_help(self, blob, judged)
    }
}

/// [`Decide::allowlist_would_help`] for any decision.
pub fn allowlist_would_help<D: Decide + ?Sized>(d: &D, blob: &NewBlob, judged: &Judged) -> bool {
    const UNLISTED: &str = "pickle-import-unknown";
    if judged.verdict != Verdict::Suspicious
        || judged.findings.iter().any(|f| f.severity >= Severity::Suspicious && f.code != UNLISTED)
        || !judged.findings.iter().any(|f| f.code == UNLISTED)
    {
        return false;
    }
    let safe = Judged {
        verdict: Verdict::Safe,
        findings: judged.findings.iter().filter(|f| f.code != UNLISTED).cloned().collect(),
        ..judged.clone()
    };
    d.decide(blob, &safe) != Action::Reject
}

impl<F: Fn(&NewBlob, &Judged) -> Action + Sync> Decide for F {
    fn decide(&self, blob: &NewBlob, judged: &Judged) -> Action {
        self(blob, judged)
    }
}

/// Dangerous and error reject (this includes missing LFS objects), suspicious is tagged, safe and unsupported pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultDecision;

impl Decide for DefaultDecision {
    fn decide(&self, _blob: &NewBlob, judged: &Judged) -> Action {
        let lfs_problem =
            judged.findings.iter().any(|f| matches!(f.code.as_str(), "lfs-object-missing" | "lfs-object-mismatch"));
        match judged.verdict {
            _ if lfs_problem => Action::Reject,
            Verdict::Dangerous | Verdict::Error => Action::Reject,
            Verdict::Suspicious => Action::Tag,
            Verdict::Safe | Verdict::Unsupported => Action::Allow,
        }
    }
}

/// Settings of the gate. The policy fills this ([`gate::hook_config`]); [`Default`] is the
/// built-in behaviour.
#[derive(Debug, Clone)]
pub struct HookConfig {
    pub scan: ScanOptions,
    pub lfs: LfsStore,
    /// Time and byte budgets, and the size limit.
    pub limits: Limits,
    /// What happens to the push when the gate itself fails.
    pub on_error: Action,
    /// Who may skip the gate with `-o modelgate.skip=<reason>`.
    pub bypass: crate::policy::Bypass,
    /// Blobs of at least this many bytes are streamed to a temporary file, never loaded.
    pub stream_threshold: u64,
    /// Verdict cache; `None` disables it. Relative paths are under the git directory.
    pub cache_dir: Option<PathBuf>,
    /// Part of every cache key besides the engine version and the scan budgets: the policy
    /// puts a digest of its allow/deny lists here so that a list change invalidates verdicts.
    pub cache_salt: String,
    /// Where post-receive writes notes.
    pub notes_ref: String,
    /// JSON lines, one per judged file; `None` disables it. Relative paths are under the git directory.
    pub audit_log: Option<PathBuf>,
    /// Rejected files described in full (the rest are counted).
    pub max_reported: usize,
    /// Whose environment variables are believed (set from the policy or `--trust-env`).
    pub trust_env: crate::policy::TrustEnv,
    /// Some rule is scoped by ref: judge, per ref update, everything it newly makes
    /// reachable from its ref (objects already on the server included).
    pub ref_rules: bool,
}

impl Default for HookConfig {
    fn default() -> Self {
        HookConfig {
            scan: ScanOptions::default(),
            lfs: LfsStore::default(),
            limits: Limits::default(),
            on_error: Action::Reject,
            bypass: crate::policy::Bypass::default(),
            stream_threshold: 64 << 20,
            cache_dir: Some(PathBuf::from("modelgate/cache")),
            cache_salt: String::new(),
            notes_ref: "refs/notes/modelgate".into(),
            audit_log: Some(PathBuf::from("modelgate/audit.log")),
            max_reported: 50,
            trust_env: crate::policy::TrustEnv::None,
            ref_rules: false,
        }
    }
}

/// What a hook reads from its environment.
#[derive(Debug, Clone, Default)]
pub struct HookEnv {
    /// `GIT_DIR` (git sets `.`, the cwd being the bare repository).
    pub git_dir: PathBuf,
    pub git: crate::git::GitEnv,
    /// Running under GitLab (Gitaly): rejection lines get the `GL-HOOK-ERR: ` prefix.
    pub gitlab: bool,
    /// Who pushed, when a trusted environment says (see [`crate::policy::TrustEnv`]).
    pub pusher: Option<String>,
    /// The repository's forge name from a trusted environment: `GL_PROJECT_PATH`, or
    /// `GITEA_REPO_USER_NAME/GITEA_REPO_NAME`.
    pub forge_repo: Option<String>,
    /// `git push -o` options (`GIT_PUSH_OPTION_<n>`).
    pub push_options: Vec<String>,
    /// Server paths never shown to the pusher: every message line has them replaced.
    pub hidden: Vec<String>,
}

impl HookEnv {
    /// The environment git sets; no forge variable is believed (pusher and forge name unknown).
    pub fn from_env() -> HookEnv {
        HookEnv::from_env_trusting(crate::policy::TrustEnv::None, None)
    }

    /// The environment git sets, and the variables of a trusted forge environment: the
    /// pusher from `pusher_env` when given (the only variable believed for it then), else
    /// from the environment's pusher variable; the repository's forge name from its
    /// repository variables. Nothing else is read from the environment.
    pub fn from_env_trusting(trust: crate::policy::TrustEnv, pusher_env: Option<&str>) -> HookEnv {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let gitlab = ["GL_ID", "GL_PROJECT_PATH", "GL_REPOSITORY", "GL_USERNAME", "GL_PROTOCOL"]
            .iter()
            .any(|k| std::env::var_os(k).is_some());
        let pusher = match pusher_env {
            Some(name) => var(name),
            None => trust.pusher_var().and_then(var),
        };
        let parts: Vec<String> = trust.repo_vars().iter().filter_map(|k| var(k)).collect();
        let forge_repo = (!parts.is_empty() && parts.len() == trust.repo_vars().len()).then(|| parts.join("/"));
        let count = var("GIT_PUSH_OPTION_COUNT").and_then(|c| c.parse::<usize>().ok()).unwrap_or(0);
        let push_options =
            (0..count.min(1000)).filter_map(|i| std::env::var(format!("GIT_PUSH_OPTION_{i}")).ok()).collect();
        let mut env = HookEnv {
            git_dir: std::env::var_os("GIT_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")),
            git: crate::git::GitEnv::from_env(),
            gitlab,
            pusher,
            forge_repo,
            push_options,
            hidden: Vec::new(),
        };
        let git_dir = env.git_dir.clone();
        env.hide_paths([git_dir]);
        env
    }

    /// [`HookEnv::from_env_trusting`] with no trusted forge: only `pusher_env`, when given,
    /// names the pusher.
    pub fn from_env_with(pusher_env: Option<&str>) -> HookEnv {
        HookEnv::from_env_trusting(crate::policy::TrustEnv::None, pusher_env)
    }

    /// Hide these server paths (and their canonical forms) from the pusher.
    pub fn hide_paths(&mut self, paths: impl IntoIterator<Item = PathBuf>) {
        for p in paths {
            let canon = std::fs::canonicalize(&p).ok();
            for q in [Some(p), canon].into_iter().flatten() {
                let s = q.to_string_lossy().trim_end_matches('/').to_string();
                // Only absolute paths of some length: `.` or `/` would mangle every message.
                if s.starts_with('/') && s.len() > 4 && !self.hidden.contains(&s) {
                    self.hidden.push(s);
                }
            }
        }
        // Longest first, so that a path is replaced before a prefix of it.
        self.hidden.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// The names rules' `repos` globs are matched against: the forge name, then the
    /// repository's absolute path (without a trailing `/`).
    pub fn repo_names(&self) -> Vec<String> {
        let mut out: Vec<String> = self.forge_repo.iter().cloned().collect();
        let dir = std::fs::canonicalize(&self.git_dir).unwrap_or_else(|_| self.git_dir.clone());
        let path = dir.to_string_lossy().trim_end_matches('/').to_string();
        if !path.is_empty() {
            out.push(path);
        }
        out
    }

    /// The repository an LFS store template's `{repo}`, `{owner}` and `{name}` stand for:
    /// the forge name when a trusted environment gives it, else the last two components of
    /// the repository's path without `.git` (`/srv/git/owner/name.git` -> `owner/name`, the
    /// layout of Gitea's repository root).
    pub fn lfs_repo(&self) -> Option<crate::lfs::StoreRepo> {
        if let Some(r) = self.forge_repo.as_deref().and_then(crate::lfs::StoreRepo::new) {
            return Some(r);
        }
        let dir = std::fs::canonicalize(&self.git_dir).unwrap_or_else(|_| self.git_dir.clone());
        let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
        let last = name(&dir).unwrap_or_default();
        let last = last.strip_suffix(".git").unwrap_or(&last).to_string();
        let owner = dir.parent().and_then(name).unwrap_or_default();
        crate::lfs::StoreRepo::new(&format!("{owner}/{last}")).or_else(|| crate::lfs::StoreRepo::new(&last))
    }
}

fn under(git_dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        git_dir.join(p)
    }
}

/// Read all of hook stdin, refusing absurd sizes.
fn read_stdin(input: &mut dyn std::io::Read) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    input.take(crate::git::MAX_INPUT + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > crate::git::MAX_INPUT {
        anyhow::bail!("hook input is larger than {} bytes", crate::git::MAX_INPUT);
    }
    Ok(buf)
}

/// Append one JSON line per record to the audit log (best effort: failures are reported, not fatal).
fn audit(git_dir: &Path, config: &HookConfig, records: &[serde_json::Value], out: &mut Out<'_>) {
    let Some(log) = &config.audit_log else { return };
    if records.is_empty() {
        return;
    }
    let path = under(git_dir, log);
    let mut text = String::new();
    for r in records {
        text.push_str(&r.to_string());
        text.push('\n');
    }
    let res = (|| -> std::io::Result<()> {
        use std::io::Write;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        f.write_all(text.as_bytes())
    })();
    if let Err(e) = res {
        out.line(&format!("modelgate: warning: cannot write the audit log: {e}"));
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
