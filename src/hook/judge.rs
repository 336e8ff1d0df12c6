//! Judging the blobs of a push in parallel: cache, LFS pointer resolution, then the engine.

use super::cache::Cache;
use super::HookConfig;
use crate::engine::{scan_source, FileReport};
use crate::finding::{Finding, Severity, Verdict};
use crate::git::{BlobReader, NewBlob, ObjectView};
use crate::lfs::{self, PointerCheck, Resolved};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One fact of a judgement, owned so that it can be cached and read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    pub code: String,
    #[serde(with = "severity_str")]
    pub severity: Severity,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
}

/// The judgement of one blob (or of the LFS object behind it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Judged {
    #[serde(with = "verdict_str")]
    pub verdict: Verdict,
    pub format: String,
    pub size: u64,
    /// `module.name` of each import, first-seen order.
    pub imports: Vec<String>,
    pub findings: Vec<Fact>,
    /// The LFS oid when the scanned bytes came from the LFS store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lfs_oid: Option<String>,
    /// Served from the verdict cache (not stored in it).
    #[serde(skip)]
    pub cached: bool,
}

impl Judged {
    fn from_report(r: &FileReport, lfs_oid: Option<String>) -> Judged {
        Judged {
            verdict: r.verdict,
            format: r.format.clone(),
            size: r.size,
            imports: r.import_names(),
            findings: r.findings.iter().map(Fact::from).collect(),
            lfs_oid,
            cached: false,
        }
    }

    fn from_findings(findings: Vec<Finding>, size: u64, lfs_oid: Option<String>) -> Judged {
        Judged {
            verdict: Verdict::from_findings(&findings, false),
            format: "unknown".into(),
            size,
            imports: Vec::new(),
            findings: findings.iter().map(Fact::from).collect(),
            lfs_oid,
            cached: false,
        }
    }

    /// A model format was recognised, or there is something to say about the file.
    pub fn is_model(&self) -> bool {
        self.format != "unknown" || self.verdict != Verdict::Unsupported || self.lfs_oid.is_some()
    }

    /// Distinct finding codes, most severe first.
    pub fn codes(&self) -> Vec<String> {
        let mut f: Vec<&Fact> = self.findings.iter().collect();
        f.sort_by_key(|x| std::cmp::Reverse(x.severity));
        let mut out: Vec<String> = Vec::new();
        for x in f {
            if !out.contains(&x.code) {
                out.push(x.code.clone());
            }
        }
        out
    }
}

impl From<&Finding> for Fact {
    fn from(f: &Finding) -> Fact {
        Fact {
            code: f.code.to_string(),
            severity: f.severity,
            message: f.message.clone(),
            member: f.member.clone(),
            offset: f.offset,
            evidence: f.evidence.clone(),
        }
    }
}

/// Judge every blob, in parallel, in the order given. Fresh judgements of content (not of
/// transient conditions such as a missing LFS object) are written to the cache.
pub fn judge_all(repo: &ObjectView, blobs: &[NewBlob], config: &HookConfig, cache: Option<&Cache>) -> Vec<Judged> {
    blobs
        .par_iter()
        .map_init(
            || repo.odb().map(|odb| BlobReader::new(odb, repo.git_dir(), config.stream_threshold)),
            |reader, blob| {
                let (judged, key) = match reader {
                    Ok(r) => judge_one(r, repo, blob, config, cache),
                    Err(e) => (read_error(&format!("cannot open the object store: {e}")), None),
                };
                if let (Some(c), Some(key)) = (cache, key) {
                    // A cache that cannot be written only costs a rescan next time.
                    let _ = c.put(&key, &judged);
                }
                judged
            },
        )
        .collect()
}

/// Returns the judgement and, when it may be cached, its key.
fn judge_one(
    reader: &mut BlobReader,
    repo: &ObjectView,
    blob: &NewBlob,
    config: &HookConfig,
    cache: Option<&Cache>,
) -> (Judged, Option<String>) {
    let blob_key = Cache::blob_key(&blob.id);
    if let Some(j) = cache.and_then(|c| c.get(&blob_key)) {
        return (Judged { cached: true, ..j }, None);
    }
    let read = match reader.read(&blob.id) {
        Ok(r) => r,
        Err(e) => return (read_error(&format!("cannot read blob {}: {e:#}", blob.id)), None),
    };
    let display = blob.display_path();
    if read.size < lfs::MAX_POINTER_SIZE {
        let bytes = match crate::source::read_up_to(read.source.as_ref(), 0, lfs::MAX_POINTER_SIZE as usize) {
            Ok(b) => b,
            Err(e) => return (read_error(&format!("cannot read blob {}: {e}", blob.id)), None),
        };
        match lfs::check_pointer(&bytes) {
            PointerCheck::NotPointer => {}
            PointerCheck::Invalid(reason) => {
                return (Judged::from_findings(vec![lfs::invalid_pointer(&reason)], read.size, None), Some(blob_key))
            }
            PointerCheck::Valid(p) => return judge_lfs(repo, &p, &display, config, cache),
        }
    }
    let report = scan_source(&display, read.source, &config.scan);
    (Judged::from_report(&report, None), Some(blob_key))
}

fn judge_lfs(
    repo: &ObjectView,
    p: &lfs::Pointer,
    display: &str,
    config: &HookConfig,
    cache: Option<&Cache>,
) -> (Judged, Option<String>) {
    // Resolve first (a stat and an open): the object must be there and match the pointer
    // before any cached verdict for its oid counts.
    match lfs::resolve(&config.lfs, repo.git_dir(), p) {
        Resolved::Found { source, .. } => {
            let key = Cache::lfs_key(&p.oid);
            if let Some(j) = cache.and_then(|c| c.get(&key)).filter(|j| j.size == p.size) {
                return (Judged { cached: true, ..j }, None);
            }
            let report = scan_source(display, Arc::new(source), &config.scan);
            (Judged::from_report(&report, Some(p.oid.clone())), Some(key))
        }
        Resolved::Problem(f) => (Judged::from_findings(vec![f], p.size, Some(p.oid.clone())), None),
    }
}

fn read_error(msg: &str) -> Judged {
    Judged::from_findings(vec![Finding::new("read-error", Severity::Error, msg)], 0, None)
}

mod verdict_str {
    use crate::finding::Verdict;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Verdict, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Verdict, D::Error> {
        let s = String::deserialize(d)?;
        Verdict::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown verdict {s:?}")))
    }
}

mod severity_str {
    use crate::finding::Severity;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Severity, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Severity, D::Error> {
        let s = String::deserialize(d)?;
        [Severity::Info, Severity::Suspicious, Severity::Error, Severity::Dangerous]
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown severity {s:?}")))
    }
}
