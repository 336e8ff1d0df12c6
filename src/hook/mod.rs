//! The push gate: `pre-receive` scans every blob a push introduces (and the LFS objects its
//! pointers name) and rejects the push when a file is dangerous or cannot be judged;
//! `post-receive` records the verdicts as git notes and in an audit log.
//!
//! What to do with a verdict is a [`Decide`] implementation (the policy at merge); this
//! module only defines the default. Any internal failure rejects the push (fail closed).

mod cache;
mod judge;
mod message;
pub mod post_receive;
pub mod pre_receive;

pub use cache::Cache;
pub use judge::{judge_all, Fact, Judged};
pub use message::{escape, escape_bytes, Out};

use crate::engine::ScanOptions;
use crate::finding::{CodeInfo, Verdict};
use crate::git::NewBlob;
use crate::lfs::LfsStore;
use std::path::{Path, PathBuf};

pub const CODES: &[CodeInfo] = &[];

/// What the gate does with one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The push is rejected.
    Reject,
    /// Accepted with a warning (and recorded in the note).
    Tag,
    Allow,
}

/// Turns a file's judgement into an action. The policy module implements this at merge;
/// closures `Fn(&NewBlob, &Judged) -> Action` work too.
pub trait Decide: Sync {
    fn decide(&self, blob: &NewBlob, judged: &Judged) -> Action;
}

impl<F: Fn(&NewBlob, &Judged) -> Action + Sync> Decide for F {
    fn decide(&self, blob: &NewBlob, judged: &Judged) -> Action {
        self(blob, judged)
    }
}

/// Dangerous and error reject (this includes invalid LFS pointers and missing LFS
/// objects), suspicious is tagged, safe and unsupported pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultDecision;

impl Decide for DefaultDecision {
    fn decide(&self, _blob: &NewBlob, judged: &Judged) -> Action {
        let lfs_problem = judged
            .findings
            .iter()
            .any(|f| matches!(f.code.as_str(), "lfs-pointer-invalid" | "lfs-object-missing" | "lfs-object-mismatch"));
        match judged.verdict {
            _ if lfs_problem => Action::Reject,
            Verdict::Dangerous | Verdict::Error => Action::Reject,
            Verdict::Suspicious => Action::Tag,
            Verdict::Safe | Verdict::Unsupported => Action::Allow,
        }
    }
}

/// Settings of the gate. The policy fills this; [`Default`] is the built-in behaviour.
#[derive(Debug, Clone)]
pub struct HookConfig {
    pub scan: ScanOptions,
    pub lfs: LfsStore,
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
}

impl Default for HookConfig {
    fn default() -> Self {
        HookConfig {
            scan: ScanOptions::default(),
            lfs: LfsStore::default(),
            stream_threshold: 64 << 20,
            cache_dir: Some(PathBuf::from("modelgate/cache")),
            cache_salt: String::new(),
            notes_ref: "refs/notes/modelgate".into(),
            audit_log: Some(PathBuf::from("modelgate/audit.log")),
            max_reported: 50,
        }
    }
}

/// What a hook reads from its environment.
#[derive(Debug, Clone, Default)]
pub struct HookEnv {
    /// `GIT_DIR` (git sets `.`, the cwd being the bare repository).
    pub git_dir: PathBuf,
    pub git: crate::git::GitEnv,
    /// Running under GitLab (Gitaly): message lines get the `GL-HOOK-ERR: ` prefix.
    pub gitlab: bool,
    /// Who pushed, when the forge says (`GL_USERNAME`, `GITEA_PUSHER_NAME`).
    pub pusher: Option<String>,
}

impl HookEnv {
    pub fn from_env() -> HookEnv {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        HookEnv {
            git_dir: std::env::var_os("GIT_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")),
            git: crate::git::GitEnv::from_env(),
            gitlab: ["GL_ID", "GL_PROJECT_PATH", "GL_REPOSITORY", "GL_USERNAME", "GL_PROTOCOL"]
                .iter()
                .any(|k| std::env::var_os(k).is_some()),
            pusher: var("GL_USERNAME").or_else(|| var("GITEA_PUSHER_NAME")),
        }
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
