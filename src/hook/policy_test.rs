//! `modelgate policy test`: the decision the push gate would make for files at a repository,
//! ref and path, without pushing. Files are judged as the hook judges blobs (an LFS pointer
//! is resolved in the policy's store, with the same budgets), and decided by the same
//! [`PolicyDecider`], content pins included.

use super::budget::{FileMeter, Guarded};
use super::gate::{hook_config, PolicyDecider};
use super::judge::{judge_lfs_object, run_pool, Jobs, Names};
use super::{Action, HookConfig, Judged};
use crate::finding::{Finding, Severity};
use crate::lfs;
use crate::policy::{FileIds, Policy};
use crate::source::{FileSource, Source};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where files are tried: their repository and ref.
#[derive(Debug, Clone, Default)]
pub struct Place {
    /// The repository's name rules' `repos` match, and an LFS template's `{repo}`: a forge
    /// name (`owner/name`) or a path.
    pub repo: Option<String>,
    /// A full ref name (`refs/heads/main`).
    pub refname: Option<String>,
}

/// One file tried.
#[derive(Debug, Clone)]
pub struct Tried {
    pub file: PathBuf,
    /// Its path in the repository.
    pub path: Option<String>,
    pub judged: Judged,
    pub action: Action,
    /// What decided the action besides `[actions]`: a rule, a pinned allow entry, `on_error`.
    pub why: Option<String>,
    /// Allowlisting the file's imports would let it pass.
    pub allowlist_helps: bool,
}

/// Judge and decide `files` (on disk, and their path in the repository) at `place`. `base`
/// is the directory relative store, cache and audit paths are resolved against (a
/// repository's git directory).
pub fn try_files(policy: &Policy, files: &[(PathBuf, Option<String>)], place: &Place, base: &Path) -> Vec<Tried> {
    let mut config = hook_config(policy);
    config.cache_dir = None;
    config.lfs.repo = place.repo.as_deref().and_then(lfs::StoreRepo::new);
    let jobs =
        FileJobs { files: files.iter().map(|(f, _)| f.clone()).collect(), config: config.clone(), base: base.into() };
    let judged = run_pool(Arc::new(jobs), &config.limits);
    let repos: Vec<String> = place.repo.iter().cloned().collect();
    let decider = PolicyDecider::new(policy, repos);
    let (sha, _, b256) = policy.pins_needed();
    let mut out = Vec::new();
    for ((file, path), judged) in files.iter().zip(judged) {
        let ids = FileSource::open(file).and_then(|s| FileIds::of(&s, (sha, true, b256))).unwrap_or_default();
        let mut content = ids.content();
        if judged.lfs_oid.is_some() {
            content.sha256 = judged.lfs_oid.as_deref();
        }
        let places = [(path.as_deref(), place.refname.as_deref())];
        let (action, why) = decider.decide_content(&judged, &places, content);
        let allowlist_helps = action == Action::Reject && {
            let blob = crate::git::NewBlob {
                id: ids
                    .blob_sha1
                    .as_deref()
                    .and_then(|h| gix::ObjectId::from_hex(h.as_bytes()).ok())
                    .unwrap_or_else(|| gix::ObjectId::null(gix::hash::Kind::Sha1)),
                places: vec![crate::git::Place {
                    path: path.clone().unwrap_or_default().into(),
                    commit: None,
                    refname: place.refname.clone().unwrap_or_default().into(),
                    checkout: Default::default(),
                }],
            };
            super::allowlist_would_help(&decider, &blob, &judged)
        };
        out.push(Tried { file: file.clone(), path: path.clone(), judged, action, why, allowlist_helps });
    }
    out
}

struct FileJobs {
    files: Vec<PathBuf>,
    config: HookConfig,
    base: PathBuf,
}

impl Jobs for FileJobs {
    type Local = ();

    fn len(&self) -> usize {
        self.files.len()
    }

    fn local(&self) {}

    fn judge(&self, _: &mut (), index: usize, meter: &Arc<FileMeter>) -> (Judged, Option<String>) {
        let Some(path) = self.files.get(index) else {
            return (super::judge::budget_judged("internal-error", "no such file".into()), None);
        };
        let display = path.display().to_string();
        let src = match FileSource::open(path) {
            Ok(s) => s,
            Err(e) => {
                let f = Finding::new("read-error", Severity::Error, format!("cannot read {display}: {e}"));
                return (Judged::from_findings(vec![f], 0, None), None);
            }
        };
        let size = src.len();
        if let Some(m) = self.config.limits.max_file_size.filter(|m| size > *m) {
            let f = Finding::new(
                "file-too-large",
                Severity::Error,
                format!("{size} bytes is more than the policy's max_file_size of {m} bytes; not scanned"),
            );
            return (Judged::from_findings(vec![f], size, None), None);
        }
        let source: Arc<dyn Source> = Arc::new(Guarded::new(Arc::new(src), meter.clone()));
        if size < lfs::MAX_POINTER_SIZE {
            let bytes =
                crate::source::read_up_to(source.as_ref(), 0, lfs::MAX_POINTER_SIZE as usize).unwrap_or_default();
            // Exactly what git-lfs would smudge is a pointer (`lfs::decode_pointer`); anything else is a file.
            if let Some(p) = lfs::decode_pointer(&bytes) {
                let (repo_config, scan) = (&self.config.lfs, &self.config.scan);
                let (mut judged, note) =
                    judge_lfs_object(&self.base, repo_config, &p, &Names::one(&display), scan, None, meter);
                if !p.extensions.is_empty() {
                    judged.findings.push(super::Fact::from(&lfs::extension_finding(&p)));
                    if judged.verdict != crate::finding::Verdict::Dangerous {
                        judged.verdict = crate::finding::Verdict::Error;
                    }
                }
                return (judged, note);
            }
        }
        let report = crate::engine::scan_source(&display, source, &self.config.scan);
        (Judged::from_report(&report, None), None)
    }

    fn cache(&self) -> Option<&super::Cache> {
        None
    }
}
