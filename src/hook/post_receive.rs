//! `post-receive`: after the refs moved, record per new commit a git note listing each
//! model file with its verdict, imports and codes (appended to any existing note), and a
//! JSON line per file in the audit log. Verdicts come from the cache pre-receive filled.

use super::handoff::{Handoff, HandoffFile, HandoffPlace};
use super::{audit, now_secs, read_stdin, under, Cache, HookConfig, HookEnv, Judged, Out};
use crate::git::{existing_tips, introduced, parse_updates, GateRepo, RefUpdate, UpdateKind};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::process::{Command, Stdio};

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

/// `modelgate hook post-receive [--policy FILE]`: the same policy lookup as pre-receive; a
/// policy that cannot be loaded is reported (the push has already landed).
pub fn run_policy(policy_flag: Option<&std::path::Path>) -> i32 {
    let probe = HookEnv::from_env();
    match super::gate::load_policy(policy_flag, &probe.git_dir) {
        Ok((policy, _)) => run_with(&super::gate::hook_config(&policy)),
        Err(e) => {
            let mut stderr = std::io::stderr().lock();
            let mut out = Out::new(&mut stderr, probe.gitlab);
            out.line("modelgate: warning: scan results not recorded: the policy cannot be loaded");
            for l in format!("{e:#}").lines() {
                out.line(&format!("modelgate: {l}"));
            }
            out.flush();
            1
        }
    }
}

pub fn run_with(config: &HookConfig) -> i32 {
    let env = HookEnv::from_env_with(config.bypass.pusher_env.as_deref());
    let mut stdin = std::io::stdin().lock();
    let mut stderr = std::io::stderr().lock();
    run_io(&env, config, &mut stdin, &mut stderr)
}

pub fn run_io(env: &HookEnv, config: &HookConfig, stdin: &mut dyn Read, err: &mut dyn Write) -> i32 {
    let mut out = Out::new(err, env.gitlab);
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
        .filter(|u| u.kind() != UpdateKind::Delete && u.name != config.notes_ref.as_bytes())
        .collect();
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
                "format": j.format,
                "codes": j.codes(),
                "imports": j.imports,
                "pusher": env.pusher,
            }));
        }
    }
    let mut s = Summary { audited: records.len(), ..Default::default() };
    audit(repo.git_dir(), config, &records, out);
    for c in &h.commits {
        let Some(lines) = per_commit.get(c.as_str()) else { continue };
        let mut text = format!("modelgate {}\n", crate::ENGINE_VERSION);
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        append_note(repo.git_dir(), &config.notes_ref, c, &text)?;
        s.notes += 1;
    }
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

/// `git notes append`: adds to an existing note with a blank line between.
fn append_note(git_dir: &std::path::Path, notes_ref: &str, commit: &str, text: &str) -> Result<()> {
    let mut cmd = Command::new("git");
    cmd.arg("--git-dir").arg(git_dir).args(["notes", "--ref", notes_ref, "append", "-F", "-"]).arg(commit);
    // Notes are written by the gate, whatever identity the server lacks.
    for (k, v) in [
        ("GIT_AUTHOR_NAME", "modelgate"),
        ("GIT_AUTHOR_EMAIL", "modelgate@localhost"),
        ("GIT_COMMITTER_NAME", "modelgate"),
        ("GIT_COMMITTER_EMAIL", "modelgate@localhost"),
    ] {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run git notes")?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(text.as_bytes())?;
    }
    let o = child.wait_with_output()?;
    if !o.status.success() {
        bail!("git notes failed for {commit}: {}", String::from_utf8_lossy(&o.stderr).trim());
    }
    Ok(())
}
