//! `post-receive`: after the refs moved, record per new commit a git note listing each
//! model file with its verdict, imports and codes (appended to any existing note), and a
//! JSON line per file in the audit log. Verdicts come from the cache pre-receive filled.
//!
//! All the notes of one push go into one notes commit, written with gix (no `git` process),
//! and the notes ref is moved with a compare-and-swap: the update succeeds only if the ref
//! still points where it did when the notes were merged onto it (`git update-ref <ref> <new>
//! <old>`). When another push moved it meanwhile, the notes are merged again onto the new
//! tip (notes of other commits are kept, a note of the same commit gets ours appended) and
//! the swap is retried.

use super::handoff::{Handoff, HandoffFile, HandoffPlace};
use super::{audit, now_secs, read_stdin, under, Cache, HookConfig, HookEnv, Judged, Out};
use crate::git::{existing_tips, introduced, parse_updates, GateRepo, RefUpdate, UpdateKind};
use anyhow::{anyhow, bail, Result};
use gix::bstr::BString;
use gix::ObjectId;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

/// What a post-receive run recorded.
#[derive(Debug, Default)]
pub struct Summary {
    /// Commits that got a note.
    pub notes: usize,
    /// Audit log lines written.
    pub audited: usize,
}

/// Run as the hook binary does; returns the exit code (git ignores it, but failures are shown).
pub fn run() -> i32 {
    run_with(&HookConfig::default())
}

/// `modelgate hook post-receive [--policy FILE] [--trust-env ENV]`: the same policy lookup as
/// pre-receive; a policy that cannot be loaded is reported (the push has already landed).
pub fn run_policy(policy_flag: Option<&Path>, trust_flag: Option<crate::policy::TrustEnv>) -> i32 {
    let probe = HookEnv::from_env();
    let env_policy = std::env::var_os("MODELGATE_POLICY");
    let system = Path::new(super::gate::SYSTEM_POLICY);
    match super::gate::load_hook_policy(policy_flag, trust_flag, &probe.git_dir, env_policy, system) {
        Ok(hp) => {
            let (config, env) = super::gate::hook_setup(&hp);
            let mut stdin = std::io::stdin().lock();
            let mut stderr = std::io::stderr().lock();
            run_io(&env, &config, &mut stdin, &mut stderr)
        }
        Err(e) => {
            let mut stderr = std::io::stderr().lock();
            let mut out = Out::for_hook(&mut stderr, &probe);
            out.line("modelgate: warning: scan results not recorded: the policy cannot be loaded");
            for l in &e.pusher {
                out.line(&format!("modelgate: {l}"));
            }
            let record = serde_json::json!({ "time": now_secs(), "event": "policy-error", "error": e.admin });
            audit(&probe.git_dir, &HookConfig::default(), &[record], &mut out);
            out.flush();
            1
        }
    }
}

pub fn run_with(config: &HookConfig) -> i32 {
    let env = HookEnv::from_env_trusting(config.trust_env, config.bypass.pusher_env.as_deref());
    let mut stdin = std::io::stdin().lock();
    let mut stderr = std::io::stderr().lock();
    run_io(&env, config, &mut stdin, &mut stderr)
}

pub fn run_io(env: &HookEnv, config: &HookConfig, stdin: &mut dyn Read, err: &mut dyn Write) -> i32 {
    let mut out = Out::for_hook(err, env);
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| post_receive(env, config, stdin, &mut out)));
    let code = match res {
        Ok(Ok(_)) => 0,
        Ok(Err(e)) => {
            out.line(&format!("modelgate: warning: could not record scan results: {e:#}"));
            1
        }
        Err(_) => {
            out.line("modelgate: warning: internal error (panic) while recording scan results");
            1
        }
    };
    out.flush();
    code
}

pub fn post_receive(env: &HookEnv, config: &HookConfig, stdin: &mut dyn Read, out: &mut Out<'_>) -> Result<Summary> {
    let input = read_stdin(stdin)?;
    let repo = GateRepo::open(&env.git_dir, &env.git)?;
    let updates: Vec<RefUpdate> = parse_updates(&input, repo.object_hash())
        .map_err(|e| anyhow!("{e}"))?
        .into_iter()
        .filter(|u| u.kind() != UpdateKind::Delete)
        .collect();
    // A push that changed the notes ref (a bypass) records nothing about it.
    let notes_touched = super::gate::touches_notes_ref(&updates, &config.notes_ref);
    let updates: Vec<RefUpdate> =
        updates.iter().filter(|u| !notes_touched.iter().any(|t| t.name == u.name)).cloned().collect();
    if updates.is_empty() {
        return Ok(Summary::default());
    }
    let h = match super::handoff::take(repo.git_dir(), &input, &config.cache_salt) {
        Some(h) => h,
        None => work_out(&repo, &updates, config)?,
    };

    let mut per_commit: HashMap<&str, Vec<String>> = HashMap::new();
    let mut records = Vec::new();
    for f in &h.files {
        let j = &f.judged;
        for p in &f.places {
            if let Some(c) = &p.commit {
                per_commit.entry(c.as_str()).or_default().push(note_line(&p.path, &f.blob, j));
            }
            records.push(serde_json::json!({
                "time": now_secs(),
                "event": "received",
                "ref": p.refname,
                "commit": p.commit,
                "path": p.path,
                "blob": f.blob,
                "lfs_oid": j.lfs_oid,
                "verdict": j.verdict.as_str(),
                "decision": f.decision,
                "format": j.format,
                "codes": j.codes(),
                "imports": j.imports,
                "pusher": env.pusher,
            }));
        }
    }
    let mut s = Summary { audited: records.len(), ..Default::default() };
    audit(repo.git_dir(), config, &records, out);
    let mut notes = Vec::new();
    for c in &h.commits {
        let Some(lines) = per_commit.get(c.as_str()) else { continue };
        let mut text = format!("modelgate {}\n", crate::ENGINE_VERSION);
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        let id = ObjectId::from_hex(c.as_bytes()).map_err(|e| anyhow!("bad commit id {c}: {e}"))?;
        notes.push((id, text));
    }
    s.notes = write_notes(repo.git_dir(), &config.notes_ref, &notes)?;
    Ok(s)
}

/// Without a handoff: find what the push introduced and judge it (mostly from the cache).
fn work_out(repo: &GateRepo, updates: &[RefUpdate], config: &HookConfig) -> Result<Handoff> {
    // The refs have moved: what was new is what the pushed refs reach and neither the other
    // refs nor the pushed refs' old values reach.
    let pushed: HashSet<&[u8]> = updates.iter().map(|u| u.name.as_slice()).collect();
    let mut hidden = existing_tips(&repo.repo, |name| pushed.contains(name.as_ref() as &[u8]))?;
    for u in updates {
        if !u.old.is_null() && matches!(repo.repo.find_header(u.old).map(|h| h.kind()), Ok(gix::object::Kind::Commit)) {
            hidden.push(u.old);
        }
    }
    let intro = introduced(repo, updates, &hidden)?;
    let cache =
        config.cache_dir.as_ref().map(|d| Cache::new(under(repo.git_dir(), d), &config.scan, &config.cache_salt));
    let judged = super::judge_all(repo.view(), &intro.blobs, config, cache.as_ref());
    let files = intro
        .blobs
        .iter()
        .zip(judged)
        .filter(|(_, j)| j.is_model())
        .map(|(b, judged)| HandoffFile {
            blob: b.id.to_string(),
            places: b
                .places
                .iter()
                .map(|p| HandoffPlace {
                    path: super::escape_bytes(&p.path),
                    commit: p.commit.map(|c| c.to_string()),
                    refname: super::escape_bytes(&p.refname),
                })
                .collect(),
            judged,
            decision: None,
        })
        .collect();
    Ok(Handoff {
        engine: crate::ENGINE_VERSION.to_string(),
        salt: config.cache_salt.clone(),
        commits: intro.commits.iter().map(|c| c.to_string()).collect(),
        files,
    })
}

fn note_line(path: &str, blob: &str, j: &Judged) -> String {
    let mut l = format!("{path}: {} ({})", j.verdict, j.format);
    if let Some(o) = &j.lfs_oid {
        l.push_str(&format!(" lfs sha256:{o}"));
    } else {
        l.push_str(&format!(" blob {blob}"));
    }
    if !j.imports.is_empty() {
        l.push_str(&format!("; imports: {}", super::escape(&j.imports.join(", "))));
    }
    let codes = j.codes();
    if !codes.is_empty() {
        l.push_str(&format!("; codes: {}", codes.join(", ")));
    }
    l
}

/// How often the notes ref is swapped before giving up, and the longest pause between tries.
const NOTES_ATTEMPTS: u32 = 60;
const NOTES_MAX_PAUSE: Duration = Duration::from_millis(250);

/// Add `notes` (commit, text) to the notes at `notes_ref` in one notes commit, appending to
/// a commit's existing note with a blank line between (as `git notes append` does), and
/// move the ref with a compare-and-swap, merging again and retrying when another writer
/// moved it meanwhile. Returns the number of notes written.
pub fn write_notes(git_dir: &Path, notes_ref: &str, notes: &[(ObjectId, String)]) -> Result<usize> {
    if notes.is_empty() {
        return Ok(0);
    }
    let repo = gix::open(git_dir).map_err(|e| anyhow!("cannot open the repository to write notes: {e}"))?;
    let name: gix::refs::FullName =
        notes_ref.try_into().map_err(|e| anyhow!("`{notes_ref}` is not a ref name: {e}"))?;
    let mut last_error = String::new();
    for attempt in 0..NOTES_ATTEMPTS {
        if attempt > 0 {
            pause(attempt);
        }
        let tip = match repo.try_find_reference(notes_ref) {
            Ok(r) => r.and_then(|r| r.try_id().map(|id| id.detach())),
            Err(e) => {
                last_error = e.to_string();
                continue;
            }
        };
        let commit = match notes_commit(&repo, tip, notes) {
            Ok(Some(c)) => c,
            Ok(None) => return Ok(notes.len()),
            Err(e) => return Err(e),
        };
        let expected = match tip {
            Some(t) => gix::refs::transaction::PreviousValue::MustExistAndMatch(gix::refs::Target::Object(t)),
            None => gix::refs::transaction::PreviousValue::MustNotExist,
        };
        let edit = gix::refs::transaction::RefEdit {
            change: gix::refs::transaction::Change::Update {
                log: gix::refs::transaction::LogChange {
                    mode: gix::refs::transaction::RefLog::AndReference,
                    force_create_reflog: false,
                    message: "notes: modelgate verdicts".into(),
                },
                expected,
                new: gix::refs::Target::Object(commit),
            },
            name: name.clone(),
            deref: false,
        };
        let sig = signature();
        let mut time = gix::date::parse::TimeBuf::default();
        match repo.edit_references_as([edit], Some(sig.to_ref(&mut time))) {
            Ok(_) => return Ok(notes.len()),
            // The ref moved (or is locked by another writer): merge onto the new tip and retry.
            Err(e) => last_error = e.to_string(),
        }
    }
    bail!("cannot update {notes_ref} after {NOTES_ATTEMPTS} attempts: {last_error}")
}

/// A growing pause with jitter, so that writers racing for the ref spread out.
fn pause(attempt: u32) {
    let base = Duration::from_millis(5u64.saturating_mul(1 << attempt.min(6)));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0);
    let jitter = Duration::from_micros((nanos ^ u64::from(std::process::id())) % 20_000);
    std::thread::sleep((base + jitter).min(NOTES_MAX_PAUSE));
}

fn signature() -> gix::actor::Signature {
    gix::actor::Signature {
        name: "modelgate".into(),
        email: "modelgate@localhost".into(),
        time: gix::date::Time::now_utc(),
    }
}

/// Write the trees and the commit that add `notes` on top of the notes commit `tip`;
/// `None` when that changes nothing.
fn notes_commit(
    repo: &gix::Repository,
    tip: Option<ObjectId>,
    notes: &[(ObjectId, String)],
) -> Result<Option<ObjectId>> {
    let base_tree = match tip {
        Some(t) => {
            let c = repo.find_object(t).map_err(|e| anyhow!("cannot read notes commit {t}: {e}"))?;
            let c = c.try_into_commit().map_err(|e| anyhow!("notes ref does not point to a commit: {e}"))?;
            Some(c.tree_id().map_err(|e| anyhow!("cannot read notes commit {t}: {e}"))?.detach())
        }
        None => None,
    };
    let batch: Vec<(String, &str)> = notes.iter().map(|(c, t)| (c.to_hex().to_string(), t.as_str())).collect();
    let tree = merge_notes(repo, base_tree, &batch)?;
    if Some(tree) == base_tree {
        return Ok(None);
    }
    let sig = signature();
    let commit = gix::objs::Commit {
        tree,
        parents: tip.into_iter().collect(),
        author: sig.clone(),
        committer: sig,
        encoding: None,
        message: format!("Notes added by modelgate for {} commit(s)\n", notes.len()).into(),
        extra_headers: Vec::new(),
    };
    let id = repo.write_object(&commit).map_err(|e| anyhow!("cannot write the notes commit: {e}"))?;
    Ok(Some(id.detach()))
}

/// Notes one level of the notes tree holds before new notes go into `xx/` subtrees (git
/// fans a notes tree out at about this size; it reads any mix of layouts).
const FANOUT_AT: usize = 256;

/// Add notes (remaining hex of the annotated commit's id at this level, text) to the notes
/// tree `tree`, keeping its fan-out: a note goes where one for the same commit already is
/// (and is appended to), else into the `xx/` subtree of its next two hex digits when this
/// level has subtrees or would grow past [`FANOUT_AT`] notes, else into this tree. Other
/// entries are kept as they are. Returns the new tree's id.
fn merge_notes(repo: &gix::Repository, tree: Option<ObjectId>, notes: &[(String, &str)]) -> Result<ObjectId> {
    use gix::objs::tree::{Entry, EntryKind};
    let mut entries: Vec<Entry> = match tree {
        Some(t) => {
            let obj = repo.find_object(t).map_err(|e| anyhow!("cannot read notes tree {t}: {e}"))?;
            let tree = obj.try_into_tree().map_err(|e| anyhow!("bad notes tree {t}: {e}"))?;
            let decoded = tree.decode().map_err(|e| anyhow!("bad notes tree {t}: {e}"))?;
            gix::objs::Tree::from(decoded).entries
        }
        None => Vec::new(),
    };
    // Entries by name: blobs (notes) and trees (fan-out subtrees) apart.
    let mut blobs: HashMap<BString, usize> = HashMap::new();
    let mut trees: HashMap<BString, usize> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        if e.mode.is_tree() {
            trees.insert(e.filename.clone(), i);
        } else {
            blobs.insert(e.filename.clone(), i);
        }
    }
    let fan_out = !trees.is_empty() || blobs.len() + notes.len() > FANOUT_AT;
    let mut subtrees: BTreeMap<BString, Vec<(String, &str)>> = BTreeMap::new();
    for (hex, text) in notes {
        if let Some(&i) = blobs.get(hex.as_bytes()) {
            let old_id = entries.get(i).map(|e| e.oid).ok_or_else(|| anyhow!("notes tree changed"))?;
            let old = repo.find_object(old_id).map_err(|e| anyhow!("cannot read note {old_id}: {e}"))?;
            let mut combined = old.data.to_vec();
            if !combined.is_empty() {
                if !combined.ends_with(b"\n") {
                    combined.push(b'\n');
                }
                combined.push(b'\n');
            }
            combined.extend_from_slice(text.as_bytes());
            let blob = repo.write_blob(&combined).map_err(|e| anyhow!("cannot write a note: {e}"))?;
            if let Some(e) = entries.get_mut(i) {
                e.oid = blob.detach();
            }
            continue;
        }
        let fan = hex.get(..2).filter(|f| hex.len() > 2 && (fan_out || trees.contains_key(f.as_bytes())));
        if let Some(fan) = fan {
            subtrees.entry(fan.into()).or_default().push((hex.get(2..).unwrap_or_default().to_string(), *text));
            continue;
        }
        let blob = repo.write_blob(text.as_bytes()).map_err(|e| anyhow!("cannot write a note: {e}"))?;
        blobs.insert(hex.as_str().into(), entries.len());
        entries.push(Entry { mode: EntryKind::Blob.into(), filename: hex.as_str().into(), oid: blob.detach() });
    }
    for (fan, batch) in subtrees {
        let at = trees.get(&fan).copied();
        let sub = merge_notes(repo, at.and_then(|i| entries.get(i)).map(|e| e.oid), &batch)?;
        match at.and_then(|i| entries.get_mut(i)) {
            Some(e) => e.oid = sub,
            None => entries.push(Entry { mode: EntryKind::Tree.into(), filename: fan, oid: sub }),
        }
    }
    entries.sort();
    let id =
        repo.write_object(&gix::objs::Tree { entries }).map_err(|e| anyhow!("cannot write the notes tree: {e}"))?;
    Ok(id.detach())
}
