//! Records from the notes `post-receive` writes (`refs/notes/modelgate`): one note per
//! commit, a header line `modelgate <version>` then a line per model file,
//! `<path>: <verdict> (<format>) blob <id>|lfs sha256:<oid>[; imports: a, b][; codes: x, y]`
//! (notes appended later follow after a blank line). Lines are read from the right, so a path
//! may hold anything; what cannot be read is reported, never guessed.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use super::discover::Repo;
use super::records::{Block, FileRecord, RepoRecord};
use crate::finding::{Severity, Verdict};
use crate::git::{GateRepo, GitEnv};
use crate::hook::gate::PolicyDecider;
use crate::hook::{Fact, Judged};
use crate::policy::{ContentIds, Policy};
use anyhow::{anyhow, bail, Result};
use gix::bstr::{BString, ByteSlice};
use gix::objs::Find;
use gix::ObjectId;
use std::collections::HashSet;

/// One file line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteLine {
    pub path: String,
    pub verdict: Verdict,
    pub format: String,
    pub blob: Option<String>,
    pub lfs_oid: Option<String>,
    pub imports: Vec<String>,
    pub codes: Vec<String>,
}

/// Parse a file line of a note; `None` for anything else.
pub fn parse_line(line: &str) -> Option<NoteLine> {
    let mut rest = line;
    let mut codes = Vec::new();
    if let Some(i) = rest.rfind("; codes: ") {
        let list = rest.get(i + 9..)?;
        let ok = list.split(", ").all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        if ok {
            codes = list.split(", ").map(str::to_string).collect();
            rest = rest.get(..i)?;
        }
    }
    let mut imports = Vec::new();
    if let Some(i) = rest.rfind("; imports: ") {
        imports = rest.get(i + 11..)?.split(", ").map(str::to_string).collect();
        rest = rest.get(..i)?;
    }
    let (head, id) = rest.rsplit_once(' ')?;
    let (head, blob, lfs_oid) = if let Some(h) = head.strip_suffix(" lfs") {
        let oid = id.strip_prefix("sha256:")?;
        crate::lfs::is_oid(oid).then_some(())?;
        (h, None, Some(oid.to_string()))
    } else {
        let h = head.strip_suffix(" blob")?;
        let hex = id.len() == 40 || id.len() == 64;
        (hex && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(())?;
        (h, Some(id.to_string()), None)
    };
    let head = head.strip_suffix(')')?;
    let (head, format) = head.rsplit_once(" (")?;
    let (path, verdict) = head.rsplit_once(": ")?;
    let verdict = Verdict::parse(verdict)?;
    Some(NoteLine { path: path.to_string(), verdict, format: format.to_string(), blob, lfs_oid, imports, codes })
}

/// The records of every note on `notes_ref` of `repo`, decided with `policy`.
pub fn read(repo: &Repo, notes_ref: &str, policy: &Policy, policy_name: &str) -> Result<Block> {
    let gate = GateRepo::open(&repo.git_dir, &GitEnv::default())?;
    let r = &gate.repo;
    let kind = r.object_hash();
    let mut rec = RepoRecord {
        repository: repo.name.clone(),
        path: repo.git_dir.display().to_string(),
        flavor: "notes".into(),
        policy: Some(policy_name.to_string()),
        ..Default::default()
    };
    let tip = match r.try_find_reference(notes_ref).map_err(|e| anyhow!("cannot read {notes_ref}: {e}"))? {
        Some(mut reference) => reference.peel_to_id().map_err(|e| anyhow!("cannot read {notes_ref}: {e}"))?.detach(),
        None => return Ok(Block { files: Vec::new(), repo: rec }),
    };
    let commit = r.find_commit(tip).map_err(|e| anyhow!("cannot read the notes commit {tip}: {e}"))?;
    let tree = commit.tree_id().map_err(|e| anyhow!("cannot read the notes commit {tip}: {e}"))?.detach();
    let mut notes: Vec<(String, ObjectId)> = Vec::new();
    collect(r, tree, String::new(), kind.len_in_hex(), 0, &mut notes)?;
    notes.sort();
    let env = crate::hook::HookEnv {
        git_dir: repo.git_dir.clone(),
        forge_repo: repo.forge_name.clone(),
        ..Default::default()
    };
    let decider = PolicyDecider::new(policy, env.repo_names());
    let mut files = Vec::new();
    let mut contents = HashSet::new();
    let mut buf = Vec::new();
    for (commit, note) in &notes {
        let data = r.objects.try_find(note, &mut buf).map_err(|e| anyhow!("cannot read note {note}: {e}"))?;
        let data = data.ok_or_else(|| anyhow!("note {note} of commit {commit} is missing"))?;
        let text = String::from_utf8_lossy(data.data).into_owned();
        rec.commits += 1;
        for line in text.lines() {
            if line.is_empty() || line.starts_with("modelgate ") {
                continue;
            }
            let Some(n) = parse_line(line) else {
                bail!("note of commit {commit}: cannot read the line {:?}", crate::hook::escape(line));
            };
            rec.places += 1;
            contents.insert(n.blob.clone().or(n.lfs_oid.clone()).unwrap_or_default());
            let size = n.blob.as_deref().and_then(|b| ObjectId::from_hex(b.as_bytes()).ok()).and_then(|id| {
                use gix::odb::Header;
                r.objects.try_header(&id).ok().flatten().map(|h| h.size())
            });
            let findings: Vec<Fact> = n
                .codes
                .iter()
                .map(|c| {
                    let info = crate::finding::code_info(c);
                    Fact {
                        code: c.clone(),
                        severity: info.map_or(Severity::Info, |i| i.severity),
                        message: info.map_or_else(|| "(recorded in a note)".to_string(), |i| i.summary.to_string()),
                        member: None,
                        offset: None,
                        evidence: None,
                    }
                })
                .collect();
            let judged = Judged {
                verdict: n.verdict,
                format: n.format.clone(),
                size: size.unwrap_or(0),
                imports: n.imports.clone(),
                findings: findings.clone(),
                lfs_oid: n.lfs_oid.clone(),
                cached: false,
            };
            let content = ContentIds { sha256: n.lfs_oid.as_deref(), blob: n.blob.as_deref(), blob256: None };
            let (action, why) = decider.decide_content(&judged, &[(Some(n.path.as_str()), None)], content);
            files.push(FileRecord {
                repository: repo.name.clone(),
                refname: None,
                commit: Some(commit.clone()),
                path: n.path,
                blob: n.blob,
                lfs_oid: n.lfs_oid,
                size,
                format: n.format,
                verdict: n.verdict.as_str().to_string(),
                decision: action.as_str().to_string(),
                decided_by: why,
                checkout: None,
                codes: n.codes,
                imports: n.imports,
                findings,
                quarantined: None,
            });
        }
    }
    rec.blobs = contents.len() as u64;
    rec.files = files.len() as u64;
    Ok(Block { files, repo: rec })
}

/// The notes of a notes tree: entries whose names (joined across fan-out directories) make a
/// full commit id.
fn collect(
    r: &gix::Repository,
    tree: ObjectId,
    prefix: String,
    hex_len: usize,
    depth: usize,
    out: &mut Vec<(String, ObjectId)>,
) -> Result<()> {
    if depth > hex_len / 2 {
        return Ok(());
    }
    let t = r.find_tree(tree).map_err(|e| anyhow!("cannot read the notes tree {tree}: {e}"))?;
    for e in t.iter() {
        let e = e.map_err(|e| anyhow!("cannot read the notes tree {tree}: {e}"))?;
        let name: BString = e.filename().to_owned();
        let Ok(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let full = format!("{prefix}{name}");
        if e.mode().is_tree() && full.len() < hex_len {
            collect(r, e.oid().to_owned(), full, hex_len, depth + 1, out)?;
        } else if e.mode().is_blob() && full.len() == hex_len {
            out.push((full.to_lowercase(), e.oid().to_owned()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_from_the_right() {
        let b = "99b036b3a4fe4c9e9aa8e1b1b4e5cc9e0bb8b3e7";
        let l = parse_line(&format!(
            "models/a: b (c).pkl: dangerous (pickle) blob {b}; imports: os.system, x; y; codes: pickle-import-dangerous"
        ))
        .unwrap();
        assert_eq!(l.path, "models/a: b (c).pkl");
        assert_eq!(l.verdict, Verdict::Dangerous);
        assert_eq!(l.format, "pickle");
        assert_eq!(l.blob.as_deref(), Some(b));
        assert_eq!(l.imports, ["os.system", "x; y"]);
        assert_eq!(l.codes, ["pickle-import-dangerous"]);
        let oid = "ab".repeat(32);
        let l = parse_line(&format!("w.safetensors: safe (safetensors) lfs sha256:{oid}")).unwrap();
        assert_eq!((l.lfs_oid.as_deref(), l.blob), (Some(oid.as_str()), None));
        assert!(parse_line("garbage").is_none());
        assert!(parse_line(&format!("x: maybe (pickle) blob {b}")).is_none());
    }
}
