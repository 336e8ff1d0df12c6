//! `pre-receive`: judge every blob a push introduces; exit 1 rejects the whole push.

use super::{audit, now_secs, read_stdin, under, Action, Cache, Decide, HookConfig, HookEnv, Judged, Out};
use crate::finding::{code_info, Verdict};
use crate::git::{self, existing_tips, introduced, parse_updates, GateRepo, NewBlob, UpdateKind};
use anyhow::{anyhow, Result};
use std::io::{Read, Write};

/// What a pre-receive run found.
#[derive(Debug, Default)]
pub struct Summary {
    /// Blobs judged (each distinct blob once).
    pub files: usize,
    /// Of those, served from the cache.
    pub cached: usize,
    pub rejected: usize,
    pub tagged: usize,
    pub new_commits: usize,
}

impl Summary {
    pub fn exit_code(&self) -> i32 {
        i32::from(self.rejected > 0)
    }
}

/// Run as the hook binary does: environment, stdin and stderr of this process, default
/// configuration and decision. Returns the exit code.
pub fn run() -> i32 {
    run_with(&HookConfig::default(), &super::DefaultDecision)
}

/// [`run`] with a configuration and decision from the policy.
pub fn run_with(config: &HookConfig, decide: &dyn Decide) -> i32 {
    let env = HookEnv::from_env();
    let mut stdin = std::io::stdin().lock();
    let mut stderr = std::io::stderr().lock();
    run_io(&env, config, decide, &mut stdin, &mut stderr)
}

/// The whole hook with explicit inputs and output; any failure rejects the push.
pub fn run_io(
    env: &HookEnv,
    config: &HookConfig,
    decide: &dyn Decide,
    stdin: &mut dyn Read,
    err: &mut dyn Write,
) -> i32 {
    let mut out = Out::new(err, env.gitlab);
    let res =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pre_receive(env, config, decide, stdin, &mut out)));
    let code = match res {
        Ok(Ok(summary)) => summary.exit_code(),
        Ok(Err(e)) => {
            out.line(&format!("modelgate: push rejected: {e:#}"));
            out.line("modelgate: the push gate failed, so nothing was accepted; ask an admin to check the server");
            1
        }
        Err(_) => {
            out.line("modelgate: push rejected: internal error (panic) in the push gate");
            1
        }
    };
    out.flush();
    code
}

/// Judge the push described by `stdin` and report to `out`.
pub fn pre_receive(
    env: &HookEnv,
    config: &HookConfig,
    decide: &dyn Decide,
    stdin: &mut dyn Read,
    out: &mut Out<'_>,
) -> Result<Summary> {
    let input = read_stdin(stdin)?;
    config.lfs.validate().map_err(|e| anyhow!("bad lfs configuration: {e}"))?;
    let repo = GateRepo::open(&env.git_dir, &env.git)?;
    let updates = parse_updates(&input, repo.object_hash()).map_err(|e| anyhow!("{e}"))?;
    if updates.iter().all(|u| u.kind() == UpdateKind::Delete) {
        return Ok(Summary::default());
    }
    let hidden = existing_tips(&repo.repo, |_| false)?;
    let intro = introduced(&repo.repo, &updates, &hidden)?;
    let cache =
        config.cache_dir.as_ref().map(|d| Cache::new(under(repo.git_dir(), d), &config.scan, &config.cache_salt));
    let judged = super::judge_all(repo.view(), &intro.blobs, config, cache.as_ref());

    let mut s = Summary { files: judged.len(), new_commits: intro.commits.len(), ..Default::default() };
    let mut rejected: Vec<(&NewBlob, &Judged)> = Vec::new();
    let mut tagged: Vec<(&NewBlob, &Judged)> = Vec::new();
    for (blob, j) in intro.blobs.iter().zip(&judged) {
        s.cached += usize::from(j.cached);
        match decide.decide(blob, j) {
            Action::Reject => rejected.push((blob, j)),
            Action::Tag => tagged.push((blob, j)),
            Action::Allow => {}
        }
    }
    s.rejected = rejected.len();
    s.tagged = tagged.len();

    for (blob, j) in &tagged {
        out.line(&format!(
            "modelgate: warning: {} is {} ({}); accepted and recorded",
            where_(blob),
            j.verdict,
            j.codes().join(", ")
        ));
    }
    if rejected.is_empty() {
        if s.files > 0 {
            out.line(&format!(
                "modelgate: {} new file(s) checked ({} from cache), {} warning(s); push accepted",
                s.files, s.cached, s.tagged
            ));
        }
        return Ok(s);
    }
    out.line(&format!("modelgate: push rejected: {} file(s) failed the model scan", rejected.len()));
    for (blob, j) in rejected.iter().take(config.max_reported) {
        describe(out, blob, j);
    }
    if rejected.len() > config.max_reported {
        out.line(&format!("modelgate: ... and {} more file(s)", rejected.len() - config.max_reported));
    }
    let records: Vec<serde_json::Value> = rejected
        .iter()
        .flat_map(|(blob, j)| {
            blob.places.iter().map(move |p| {
                serde_json::json!({
                    "time": now_secs(),
                    "event": "rejected",
                    "ref": super::escape_bytes(&p.refname),
                    "commit": p.commit.map(|c| c.to_string()),
                    "path": super::escape_bytes(&p.path),
                    "blob": blob.id.to_string(),
                    "lfs_oid": j.lfs_oid,
                    "verdict": j.verdict.as_str(),
                    "codes": j.codes(),
                    "imports": j.imports,
                    "pusher": env.pusher,
                })
            })
        })
        .collect();
    audit(repo.git_dir(), config, &records, out);
    Ok(s)
}

/// `path (commit abc1234 on refs/heads/x)` for a blob's first place.
fn where_(blob: &NewBlob) -> String {
    let Some(p) = blob.places.first() else { return blob.id.to_string() };
    let path = if p.path.is_empty() {
        format!("blob {} at {}", git::short(&blob.id), super::escape_bytes(&p.refname))
    } else {
        super::escape_bytes(&p.path)
    };
    match p.commit {
        Some(c) => format!("{path} (commit {} on {})", git::short(&c), super::escape_bytes(&p.refname)),
        None => format!("{path} (on {})", super::escape_bytes(&p.refname)),
    }
}

fn describe(out: &mut Out<'_>, blob: &NewBlob, j: &Judged) {
    out.line("");
    let lfs =
        j.lfs_oid.as_deref().map(|o| format!(", lfs object sha256:{}", &o[..o.len().min(12)])).unwrap_or_default();
    out.line(&format!("  {}: {} ({}{})", where_(blob), j.verdict.as_str().to_uppercase(), j.format, lfs));
    for p in blob.places.iter().skip(1).take(5) {
        let at = p.commit.map(|c| format!(" (commit {})", git::short(&c))).unwrap_or_default();
        out.line(&format!("    also at {}{at}", super::escape_bytes(&p.path)));
    }
    let mut facts: Vec<_> = j.findings.iter().filter(|f| f.severity > crate::finding::Severity::Info).collect();
    facts.sort_by_key(|f| std::cmp::Reverse(f.severity));
    for f in facts.iter().take(5) {
        let mut loc = String::new();
        if let Some(m) = &f.member {
            loc.push_str(&format!(" in {m}"));
        }
        if let Some(o) = f.offset {
            loc.push_str(&format!(" at offset {o}"));
        }
        out.line(&format!("    [{}] {}: {}{loc}", f.severity.as_str(), f.code, f.message));
        if let Some(e) = &f.evidence {
            out.line(&format!("      evidence: {e}"));
        }
    }
    if facts.len() > 5 {
        out.line(&format!("    ... and {} more finding(s)", facts.len() - 5));
    }
    if !j.imports.is_empty() {
        let shown: Vec<&str> = j.imports.iter().take(10).map(String::as_str).collect();
        out.line(&format!("    imports: {}", shown.join(", ")));
    }
    let mut fixes: Vec<&str> = Vec::new();
    for f in &facts {
        if let Some(info) = code_info(&f.code) {
            if !fixes.contains(&info.fix) {
                fixes.push(info.fix);
            }
        }
    }
    for fix in fixes.iter().take(3) {
        out.line(&format!("    fix: {fix}"));
    }
    let lfs_issue = j.findings.iter().any(|f| f.code.starts_with("lfs-"));
    if !lfs_issue && (matches!(j.verdict, Verdict::Dangerous | Verdict::Suspicious) || j.format != "unknown") {
        out.line("    fix: convert the model to safetensors (loading it runs no code), or ask an admin for an allowlist entry");
    }
}
