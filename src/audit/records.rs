//! The audit's JSON lines: one `file` record per file place, a `repository` record closing
//! each repository's block, and a `summary` record last. Shards and resumed runs are
//! combined block by block ([`Fleet`]), so that a merged audit is the unsharded audit, line
//! for line: blocks are ordered by repository name, records keep their order within a block,
//! and every count of the summary is a sum over blocks.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use crate::finding::Verdict;
use crate::hook::{Action, Fact};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// One line of an audit's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Line {
    File(FileRecord),
    Repository(RepoRecord),
    Summary(Summary),
}

/// A file at one place of a repository's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FileRecord {
    pub repository: String,
    /// The ref whose history reached the commit first; `null` when unknown (from notes).
    #[serde(rename = "ref")]
    pub refname: Option<String>,
    /// The commit that introduced the file at this path; `null` for a tree or blob a ref names.
    pub commit: Option<String>,
    /// Path in the tree (control characters shown escaped, `\xNN` for bytes that are not UTF-8).
    pub path: String,
    /// The git blob (the pointer, for an LFS file); `null` when unknown (from notes).
    pub blob: Option<String>,
    /// The LFS object judged instead of the pointer.
    pub lfs_oid: Option<String>,
    /// Bytes of what was judged (the LFS object for a pointer); `null` when unknown.
    pub size: Option<u64>,
    pub format: String,
    pub verdict: String,
    pub decision: String,
    /// What decided the action besides the verdict: a rule, a pinned allow entry, `on_error`.
    pub decided_by: Option<String>,
    /// The checkout whose bytes made the verdict, in the push gate's words (e.g.
    /// `working-tree-encoding=latin1`, `text, CRLF line endings`, `core.autocrlf=true (LF ->
    /// CRLF)`, `filter=foo`); `null` for the bytes as stored (the LFS object for a pointer).
    #[serde(default)]
    pub checkout: Option<String>,
    /// Distinct finding codes, most severe first.
    pub codes: Vec<String>,
    pub imports: Vec<String>,
    pub findings: Vec<Fact>,
    /// Where `--quarantine` moved the LFS object.
    pub quarantined: Option<String>,
}

/// Everything about one repository; closes its block of file records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RepoRecord {
    pub repository: String,
    /// Its git directory.
    pub path: String,
    pub flavor: String,
    /// The policy it was judged with (a file, or `built-in policy`).
    pub policy: Option<String>,
    pub refs: u64,
    pub commits: u64,
    /// Distinct blobs in its history.
    pub blobs: u64,
    /// File places in its history, model or not: `(path, blob)` pairs, a pair again at a
    /// commit that changed its checkout (its attributes).
    pub places: u64,
    /// Bytes of its distinct blobs (the LFS object's size for a pointer).
    pub bytes: u64,
    pub symlinks: u64,
    pub submodules: u64,
    /// File records in its block.
    pub files: u64,
    /// Why it could not be audited (fail closed: the audit exits 1).
    pub error: Option<String>,
}

/// Counts over an audit (or merged shards).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Summary {
    pub modelgate: String,
    /// `i/n` for one shard's output; `null` for a whole audit (or merged shards).
    pub shard: Option<String>,
    pub repositories: u64,
    /// Repositories that could not be audited.
    pub failed: u64,
    pub refs: u64,
    pub commits: u64,
    pub blobs: u64,
    pub places: u64,
    pub bytes: u64,
    /// File records.
    pub files: u64,
    pub safe: u64,
    pub suspicious: u64,
    pub dangerous: u64,
    pub unsupported: u64,
    pub error: u64,
    pub allow: u64,
    pub tag: u64,
    pub reject: u64,
    /// File records per format.
    pub formats: BTreeMap<String, u64>,
    /// 1 when a file is rejected or a repository could not be audited.
    pub exit_code: i32,
}

impl Summary {
    /// No counts yet.
    pub fn new(shard: Option<String>) -> Summary {
        Summary { modelgate: env!("CARGO_PKG_VERSION").to_string(), shard, ..Default::default() }
    }

    /// Count a repository's block.
    pub fn add_block(&mut self, b: &Block) {
        b.files.iter().for_each(|f| self.add_file(f));
        self.add_repo(&b.repo);
        self.finish();
    }

    fn add_file(&mut self, f: &FileRecord) {
        self.files += 1;
        match Verdict::parse(&f.verdict) {
            Some(Verdict::Safe) => self.safe += 1,
            Some(Verdict::Suspicious) => self.suspicious += 1,
            Some(Verdict::Dangerous) => self.dangerous += 1,
            Some(Verdict::Unsupported) => self.unsupported += 1,
            Some(Verdict::Error) | None => self.error += 1,
        }
        match Action::parse(&f.decision) {
            Some(Action::Allow) => self.allow += 1,
            Some(Action::Tag) => self.tag += 1,
            Some(Action::Reject) | None => self.reject += 1,
        }
        *self.formats.entry(f.format.clone()).or_default() += 1;
    }

    fn add_repo(&mut self, r: &RepoRecord) {
        self.repositories += 1;
        self.failed += u64::from(r.error.is_some());
        self.refs += r.refs;
        self.commits += r.commits;
        self.blobs += r.blobs;
        self.places += r.places;
        self.bytes += r.bytes;
    }

    fn finish(&mut self) {
        self.exit_code = i32::from(self.reject > 0 || self.failed > 0);
    }
}

/// One repository's lines: its file records and the record that closes them.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub files: Vec<FileRecord>,
    pub repo: RepoRecord,
}

impl Block {
    /// The block as JSON lines.
    pub fn to_lines(&self) -> Result<String> {
        let mut s = String::new();
        for f in &self.files {
            s.push_str(&serde_json::to_string(&Line::File(f.clone()))?);
            s.push('\n');
        }
        s.push_str(&serde_json::to_string(&Line::Repository(self.repo.clone()))?);
        s.push('\n');
        Ok(s)
    }
}

/// The blocks of an audit, by repository name.
#[derive(Debug, Default)]
pub struct Fleet {
    pub blocks: BTreeMap<String, Block>,
    /// The shard each input said it was (`(index, count)`), for completeness checks.
    pub shards: Vec<(u64, u64, String)>,
}

impl Fleet {
    /// Add a finished block; a repository may appear once.
    pub fn add(&mut self, block: Block, origin: &str) -> Result<()> {
        let name = block.repo.repository.clone();
        if self.blocks.contains_key(&name) {
            bail!("repository {name:?} appears twice ({origin}): were shards run with overlapping --shard values?");
        }
        self.blocks.insert(name, block);
        Ok(())
    }

    /// The summary over every block.
    pub fn summary(&self, shard: Option<String>) -> Summary {
        let mut s = Summary::new(shard);
        for b in self.blocks.values() {
            s.add_block(b);
        }
        s.finish();
        s
    }

    /// Read one audit output (JSON lines). Every file record must be closed by its
    /// repository's record with the right count, and the output must end in a summary that
    /// agrees with its blocks: a truncated or edited shard is refused, not half-merged.
    pub fn read_output(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let origin = path.display().to_string();
        let mut own = Fleet::default();
        let mut pending: Vec<FileRecord> = Vec::new();
        let mut summary: Option<Summary> = None;
        for (n, raw) in text.lines().enumerate() {
            if raw.trim().is_empty() {
                continue;
            }
            let at = || format!("{origin}:{}", n + 1);
            if summary.is_some() {
                bail!("{}: a line after the summary", at());
            }
            let line: Line = serde_json::from_str(raw).map_err(|e| anyhow!("{}: not an audit record: {e}", at()))?;
            match line {
                Line::File(f) => pending.push(f),
                Line::Repository(r) => {
                    let files = std::mem::take(&mut pending);
                    if files.len() as u64 != r.files || files.iter().any(|f| f.repository != r.repository) {
                        bail!("{}: the records before repository {:?} do not belong to it", at(), r.repository);
                    }
                    own.add(Block { files, repo: r }, &at())?;
                }
                Line::Summary(s) => summary = Some(s),
            }
        }
        if !pending.is_empty() {
            bail!("{origin}: file records without their repository record (an interrupted audit?)");
        }
        let summary = summary.ok_or_else(|| anyhow!("{origin}: no summary line (an interrupted audit?)"))?;
        let mut expect = own.summary(summary.shard.clone());
        expect.modelgate.clone_from(&summary.modelgate);
        if expect != summary {
            bail!("{origin}: the summary does not agree with the records");
        }
        if let Some(sh) = &summary.shard {
            let (i, n) = parse_shard(sh).map_err(|e| anyhow!("{origin}: {e}"))?;
            self.shards.push((i, n, origin.clone()));
        }
        for (_, b) in std::mem::take(&mut own.blocks) {
            self.add(b, &origin)?;
        }
        Ok(())
    }

    /// With shard outputs: every shard of one `n` is there, once.
    pub fn check_shards(&self) -> Result<()> {
        if self.shards.is_empty() {
            return Ok(());
        }
        let n = self.shards.first().map_or(0, |s| s.1);
        if let Some((_, m, o)) = self.shards.iter().find(|s| s.1 != n) {
            bail!("{o} is a shard of {m}, the others of {n}");
        }
        for i in 0..n {
            let count = self.shards.iter().filter(|s| s.0 == i).count();
            if count == 0 {
                bail!("shard {i}/{n} is missing (give every shard's output, or --partial)");
            }
        }
        Ok(())
    }

    /// Every block then the summary, as JSON lines.
    pub fn to_lines(&self, shard: Option<String>) -> Result<String> {
        let mut s = String::new();
        for b in self.blocks.values() {
            s.push_str(&b.to_lines()?);
        }
        s.push_str(&serde_json::to_string(&Line::Summary(self.summary(shard)))?);
        s.push('\n');
        Ok(s)
    }
}

/// `i/n` with `0 <= i < n`.
pub fn parse_shard(s: &str) -> Result<(u64, u64)> {
    let (i, n) = s.split_once('/').ok_or_else(|| anyhow!("shard {s:?} is not INDEX/COUNT (e.g. 0/4)"))?;
    let i: u64 = i.trim().parse().map_err(|_| anyhow!("shard index {i:?} is not a number"))?;
    let n: u64 = n.trim().parse().map_err(|_| anyhow!("shard count {n:?} is not a number"))?;
    if n == 0 || i >= n {
        bail!("shard {i}/{n}: the index counts from 0 and must be below the count");
    }
    Ok((i, n))
}

/// Whether the repository named `name` belongs to shard `i` of `n`: by a hash of the name,
/// so that every machine agrees without talking to the others.
pub fn in_shard(name: &str, i: u64, n: u64) -> bool {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(name.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(h.get(..8).unwrap_or(&[0; 8]));
    u64::from_be_bytes(b) % n == i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_names() {
        assert_eq!(parse_shard("2/4").unwrap(), (2, 4));
        for bad in ["4/4", "0/0", "1", "a/2", "-1/2"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
        for name in ["a/b", "group/sub/project", "/srv/git/x.git", ""] {
            let hits: Vec<u64> = (0..5).filter(|i| in_shard(name, *i, 5)).collect();
            assert_eq!(hits.len(), 1, "{name}");
        }
    }
}
