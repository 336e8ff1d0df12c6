//! What pre-receive hands to post-receive for an accepted push, so that post-receive does
//! not walk the history and judge the files a second time. Keyed by the hook's stdin (git
//! gives both hooks the same lines when every ref was updated); when the lines differ (a
//! ref failed to update), post-receive finds nothing and works it out itself. Written in
//! the repository's `modelgate/handoff/`, never in the quarantine.

use super::Judged;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Handoffs older than this are left-overs of pushes another hook rejected after ours.
const STALE: Duration = Duration::from_secs(3600);

/// The model files of an accepted push and its new commits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Handoff {
    /// Engine and policy the verdicts were made with; a mismatch discards the handoff.
    pub engine: String,
    pub salt: String,
    pub commits: Vec<String>,
    pub files: Vec<HandoffFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HandoffFile {
    pub blob: String,
    pub places: Vec<HandoffPlace>,
    pub judged: Judged,
    /// pre-receive's decision (`allow`, `tag`, or `reject` for a bypassed push); `None` when
    /// post-receive worked the push out itself (it has no policy decision to give).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
}

/// Where a file appears; path and ref already escaped for display.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HandoffPlace {
    pub path: String,
    pub commit: Option<String>,
    pub refname: String,
}

fn dir(git_dir: &Path) -> PathBuf {
    git_dir.join("modelgate").join("handoff")
}

fn file(git_dir: &Path, input: &[u8]) -> PathBuf {
    let key: String = Sha256::digest(input).iter().map(|b| format!("{b:02x}")).collect();
    dir(git_dir).join(format!("{key}.json"))
}

/// Write the handoff for this stdin (atomically), and drop stale ones.
pub fn save(git_dir: &Path, input: &[u8], h: &Handoff) -> std::io::Result<()> {
    let d = dir(git_dir);
    std::fs::create_dir_all(&d)?;
    if let Ok(rd) = std::fs::read_dir(&d) {
        let now = SystemTime::now();
        for e in rd.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STALE);
            if old {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let tmp = tempfile::NamedTempFile::new_in(&d)?;
    // serde_json writes token by token: unbuffered, a 10,000-commit push took 10,000s of writes.
    let mut w = std::io::BufWriter::new(tmp);
    serde_json::to_writer(&mut w, h)?;
    let tmp = w.into_inner().map_err(|e| e.into_error())?;
    tmp.persist(file(git_dir, input)).map_err(|e| e.error)?;
    Ok(())
}

/// Take (read and remove) the handoff for this stdin, if one was made with this engine and salt.
pub fn take(git_dir: &Path, input: &[u8], salt: &str) -> Option<Handoff> {
    let path = file(git_dir, input);
    let bytes = std::fs::read(&path).ok()?;
    let _ = std::fs::remove_file(&path);
    let h: Handoff = serde_json::from_slice(&bytes).ok()?;
    (h.engine == crate::ENGINE_VERSION && h.salt == salt).then_some(h)
}
