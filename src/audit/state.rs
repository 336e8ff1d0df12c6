//! The state file of a resumable audit: a journal of finished repositories.
//!
//! The first line says which audit it belongs to (paths, flavor, shard, policy, options); then
//! each finished repository's block of records is appended whole and synced to disk before
//! the next repository starts. On resume, complete blocks are taken as done and anything after
//! the last complete block (a repository interrupted mid-write) is cut off, so an interrupted
//! audit continues where it stopped and its output is that of an uninterrupted one.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use super::records::{Block, FileRecord, Line};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What makes two audit runs the same audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    #[serde(rename = "type")]
    pub kind: String,
    pub modelgate: String,
    pub flavor: String,
    pub paths: Vec<String>,
    pub shard: Option<String>,
    pub policy: Option<String>,
    pub all_files: bool,
}

impl Header {
    pub const KIND: &'static str = "audit-state";
}

/// An open state file.
pub struct Journal {
    path: PathBuf,
    file: std::fs::File,
    /// Blocks of repositories finished by earlier runs, by repository name.
    pub done: BTreeMap<String, Block>,
}

impl Journal {
    /// Open (or start) the state file at `path` for the audit `header` describes.
    pub fn open(path: &Path, header: &Header) -> Result<Journal> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read the state file {}", path.display())),
        };
        let mut done = BTreeMap::new();
        let mut keep = 0usize;
        if !text.is_empty() {
            let (first, mut rest) =
                split_line(&text, 0).ok_or_else(|| anyhow!("{}: empty first line", path.display()))?;
            let found: Header = serde_json::from_slice(first)
                .map_err(|_| anyhow!("{} is not an audit state file; give another --state path", path.display()))?;
            if found != *header {
                bail!(
                    "the state file {} belongs to another audit (other paths, flavor, shard, policy, options or \
                     modelgate version); remove it to start over",
                    path.display()
                );
            }
            keep = rest;
            let mut pending: Vec<FileRecord> = Vec::new();
            while let Some((line, next)) = split_line(&text, rest) {
                // An unparsable line can only be the torn last write: stop there.
                let Ok(parsed) = serde_json::from_slice::<Line>(line) else { break };
                rest = next;
                match parsed {
                    Line::File(f) => pending.push(f),
                    Line::Repository(r) => {
                        let files = std::mem::take(&mut pending);
                        if files.len() as u64 != r.files {
                            break;
                        }
                        done.insert(r.repository.clone(), Block { files, repo: r });
                        keep = rest;
                    }
                    Line::Summary(_) => break,
                }
            }
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open the state file {}", path.display()))?;
        if text.is_empty() {
            let mut h = serde_json::to_string(header)?;
            h.push('\n');
            file.write_all(h.as_bytes())?;
            file.sync_data()?;
        } else {
            // Drop a block that an interruption left half-written.
            file.set_len(keep as u64)?;
        }
        use std::io::Seek;
        file.seek(std::io::SeekFrom::End(0))?;
        Ok(Journal { path: path.to_path_buf(), file, done })
    }

    /// Record a finished repository: written whole and synced before the audit goes on.
    pub fn record(&mut self, block: &Block) -> Result<()> {
        let text = block.to_lines()?;
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.sync_data())
            .with_context(|| format!("cannot write the state file {}", self.path.display()))
    }
}

/// The line starting at `at` (without its `\n`) and where the next one starts; a last line
/// without `\n` is incomplete and not returned.
fn split_line(text: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = text.get(at..)?;
    let end = rest.iter().position(|&b| b == b'\n')?;
    Some((rest.get(..end)?, at + end + 1))
}
