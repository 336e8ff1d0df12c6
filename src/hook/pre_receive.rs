//! `pre-receive`: judge every blob a push introduces; exit 1 rejects the whole push.

use super::gate::{hook_setup, load_hook_policy, PolicyDecider};
use super::{audit, now_secs, read_stdin, under, Action, Cache, Decide, HookConfig, HookEnv, Judged, Out};
use crate::git::{self, existing_tips, introduced_with, parse_updates, GateRepo, NewBlob, UpdateKind, WalkOptions};
use anyhow::{anyhow, Result};
use std::io::{Read, Write};
use std::path::Path;

/// The push option that asks to skip the gate: `git push -o modelgate.skip=<reason>`.
pub const SKIP_OPTION: &str = "modelgate.skip";

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
    /// Files the policy rejects that a bypass let through.
    pub bypassed: usize,
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
    let env = HookEnv::from_env_trusting(config.trust_env, config.bypass.pusher_env.as_deref());
    let mut stdin = std::io::stdin().lock();
    let mut stderr = std::io::stderr().lock();
    run_io(&env, config, decide, &mut stdin, &mut stderr)
}

/// The hook as `modelgate hook pre-receive [--policy FILE] [--trust-env ENV]` runs it: find
/// and load the policy (a policy that fails to load rejects the push, naming the problems but
/// no server path), then judge the push with it.
pub fn run_policy(policy_flag: Option<&Path>, trust_flag: Option<crate::policy::TrustEnv>) -> i32 {
    let probe = HookEnv::from_env();
    let env_policy = std::env::var_os("MODELGATE_POLICY");
    let system = Path::new(super::gate::SYSTEM_POLICY);
    let hp = match load_hook_policy(policy_flag, trust_flag, &probe.git_dir, env_policy, system) {
        Ok(p) => p,
        Err(e) => {
            let mut stderr = std::io::stderr().lock();
            let mut out = Out::for_hook(&mut stderr, &probe);
            out.reject();
            out.line("modelgate: push rejected: the push gate's policy cannot be loaded");
            for l in &e.pusher {
                out.line(&format!("modelgate: {l}"));
            }
            out.line("modelgate: nothing is accepted until an admin fixes the policy (`modelgate policy check FILE`)");
            let record = serde_json::json!({ "time": now_secs(), "event": "policy-error", "error": e.admin });
            audit(&probe.git_dir, &HookConfig::default(), &[record], &mut out);
            out.flush();
            return 1;
        }
    };
    let (config, env) = hook_setup(&hp);
    let decider = PolicyDecider::new(&hp.policy, env.repo_names()).with_objects(&env.git_dir, &env.git);
    let mut stdin = std::io::stdin().lock();
    let mut stderr = std::io::stderr().lock();
    if !hp.notes.is_empty() {
        let mut out = Out::for_hook(&mut stderr, &env);
        hp.notes.iter().for_each(|n| out.line(n));
    }
    run_io(&env, &config, &decider, &mut stdin, &mut stderr)
}

/// The whole hook with explicit inputs and output; any failure rejects the push.
pub fn run_io(
    env: &HookEnv,
    config: &HookConfig,
    decide: &dyn Decide,
    stdin: &mut dyn Read,
    err: &mut dyn Write,
) -> i32 {
    let mut out = Out::for_hook(err, env);
    let res =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pre_receive(env, config, decide, stdin, &mut out)));
    let failure = match res {
        Ok(Ok(summary)) => {
            if summary.exit_code() != 0 {
                out.reject();
            }
            out.flush();
            return summary.exit_code();
        }
        Ok(Err(e)) => format!("{e:#}"),
        Err(_) => "internal error (panic) in the push gate".to_string(),
    };
    let code = if config.on_error == Action::Reject {
        out.reject();
        out.line(&format!("modelgate: push rejected: {failure}"));
        out.line("modelgate: the push gate failed, so nothing was accepted; ask an admin to check the server");
        1
    } else {
        out.line(&format!("modelgate: warning: the push gate failed: {failure}"));
        out.line(&format!(
            "modelgate: warning: push accepted WITHOUT a model scan (policy on_error = {})",
            config.on_error
        ));
        let record = serde_json::json!({
            "time": now_secs(),
            "event": "gate-failed",
            "error": failure,
            "on_error": config.on_error.as_str(),
            "pusher": env.pusher,
        });
        audit(&env.git_dir, config, &[record], &mut out);
        0
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
    let bypass = bypass(env, config, &updates, repo.git_dir(), out);
    // The gate's record: pushes may not write, delete or block its notes ref (a pure
    // deletion included, which has no quarantine and nothing else to judge).
    if let Some(s) = super::gate::guard_notes_ref(env, config, &updates, bypass.is_some(), repo.git_dir(), out) {
        return Ok(s);
    }
    if updates.iter().all(|u| u.kind() == UpdateKind::Delete) {
        return Ok(Summary::default());
    }
    let hidden = existing_tips(&repo.repo, |_| false)?;
    let opts =
        WalkOptions { per_ref: config.ref_rules, quarantine: true, info_attributes: info_attributes(repo.git_dir()) };
    let intro = introduced_with(&repo, &updates, &hidden, &opts)?;
    let cache =
        config.cache_dir.as_ref().map(|d| Cache::new(under(repo.git_dir(), d), &config.scan, &config.cache_salt));
    let judgements = super::judge_push(repo.view(), &intro.blobs, config, cache.as_ref());
    let judged: Vec<Judged> = judgements.iter().map(|j| j.judged.clone()).collect();
    super::gate::admin_notices(repo.git_dir(), config, &judged, out);

    let mut s = Summary { files: judged.len(), new_commits: intro.commits.len(), ..Default::default() };
    let mut rejected: Vec<(&NewBlob, &Judged, Option<String>)> = Vec::new();
    let mut tagged: Vec<(&NewBlob, &Judged, Option<String>)> = Vec::new();
    let mut decisions: Vec<Action> = Vec::with_capacity(judgements.len());
    for (blob, j) in intro.blobs.iter().zip(&judgements) {
        s.cached += usize::from(j.judged.cached);
        // Every way the file can be checked out is decided; the strictest wins.
        let mut best: Option<(Action, Option<String>, &Judged)> = None;
        for (checkout, v) in j.all() {
            let (a, why) = decide.decide_why(blob, v);
            if best.as_ref().is_none_or(|(b, ..)| a > *b) {
                let why = match (checkout, why) {
                    (Some(c), Some(w)) => Some(format!("{w}; as checked out with {c}")),
                    (Some(c), None) => Some(format!("as checked out with {c}")),
                    (None, w) => w,
                };
                best = Some((a, why, v));
            }
        }
        decisions.push(best.as_ref().map_or(Action::Allow, |b| b.0));
        match best {
            Some((Action::Reject, why, v)) => rejected.push((blob, v, why)),
            Some((Action::Tag, why, v)) => tagged.push((blob, v, why)),
            _ => {}
        }
    }
    s.tagged = tagged.len();

    for (blob, j, why) in &tagged {
        let codes = j.codes().join(", ");
        let why = why.as_deref().map(|w| format!("; {w}")).unwrap_or_default();
        out.line(&format!(
            "modelgate: warning: {} is {} ({codes}){why}; accepted and recorded",
            where_(blob),
            j.verdict
        ));
    }
    if let Some(b) = bypass.filter(|_| !rejected.is_empty()) {
        s.bypassed = rejected.len();
        out.line(&format!(
            "modelgate: BYPASS by {}: {} file(s) the policy rejects were accepted ({})",
            b.pusher,
            rejected.len(),
            b.reason
        ));
        for (blob, j, why) in rejected.iter().take(config.max_reported) {
            describe(out, blob, j, why.as_deref(), &super::gate::Tips::new(&updates, decide, blob, j));
        }
        let records = records("bypassed", Action::Reject, env, &rejected);
        audit(repo.git_dir(), config, &records, out);
        hand_off(repo.git_dir(), &input, config, &intro, (&judged, &decisions), out);
        return Ok(s);
    }
    s.rejected = rejected.len();
    if rejected.is_empty() {
        hand_off(repo.git_dir(), &input, config, &intro, (&judged, &decisions), out);
        if s.files > 0 {
            out.line(&format!(
                "modelgate: {} new file(s) checked ({} from cache), {} warning(s); push accepted",
                s.files, s.cached, s.tagged
            ));
        }
        return Ok(s);
    }
    out.line(&format!("modelgate: push rejected: {} file(s) failed the model scan", rejected.len()));
    for (blob, j, why) in rejected.iter().take(config.max_reported) {
        describe(out, blob, j, why.as_deref(), &super::gate::Tips::new(&updates, decide, blob, j));
    }
    if rejected.len() > config.max_reported {
        out.line(&format!("modelgate: ... and {} more file(s)", rejected.len() - config.max_reported));
    }
    let records = records("rejected", Action::Reject, env, &rejected);
    audit(repo.git_dir(), config, &records, out);
    Ok(s)
}

/// `$GIT_DIR/info/attributes` (server-side checkouts and archives apply it), if readable.
fn info_attributes(git_dir: &Path) -> Option<Vec<u8>> {
    let path = git_dir.join("info").join("attributes");
    let meta = std::fs::metadata(&path).ok()?;
    if !meta.is_file() || meta.len() >= git::attr::MAX_FILE {
        return None;
    }
    std::fs::read(path).ok()
}

/// Leave the model files of an accepted push for post-receive.
fn hand_off(
    git_dir: &Path,
    input: &[u8],
    config: &HookConfig,
    intro: &git::Introduced,
    (judged, decisions): (&[Judged], &[Action]),
    out: &mut Out<'_>,
) {
    let files = intro
        .blobs
        .iter()
        .zip(judged.iter().zip(decisions))
        .filter(|(_, (j, _))| j.is_model())
        .map(|(b, (j, d))| super::handoff::HandoffFile {
            blob: b.id.to_string(),
            places: b
                .places
                .iter()
                .map(|p| super::handoff::HandoffPlace {
                    path: super::escape_bytes(&p.path),
                    commit: p.commit.map(|c| c.to_string()),
                    refname: super::escape_bytes(&p.refname),
                })
                .collect(),
            judged: j.clone(),
            decision: Some(d.as_str().to_string()),
        })
        .collect();
    let h = super::handoff::Handoff {
        engine: crate::ENGINE_VERSION.to_string(),
        salt: config.cache_salt.clone(),
        commits: intro.commits.iter().map(|c| c.to_string()).collect(),
        files,
    };
    if let Err(e) = super::handoff::save(git_dir, input, &h) {
        // post-receive then works it out itself.
        out.line(&format!("modelgate: warning: cannot leave the results for post-receive: {e}"));
    }
}

/// One audit record per place of each file, all with the policy's `decision` (a bypassed
/// file's is still `reject`: the bypass, not the policy, let it in).
fn records(
    event: &str,
    decision: Action,
    env: &HookEnv,
    files: &[(&NewBlob, &Judged, Option<String>)],
) -> Vec<serde_json::Value> {
    files
        .iter()
        .flat_map(|(blob, j, why)| {
            blob.places.iter().map(move |p| {
                serde_json::json!({
                    "time": now_secs(),
                    "event": event,
                    "ref": super::escape_bytes(&p.refname),
                    "commit": p.commit.map(|c| c.to_string()),
                    "path": super::escape_bytes(&p.path),
                    "blob": blob.id.to_string(),
                    "lfs_oid": j.lfs_oid,
                    "verdict": j.verdict.as_str(),
                    "decision": decision.as_str(),
                    "format": j.format,
                    "codes": j.codes(),
                    "imports": j.imports,
                    "policy": why,
                    "pusher": env.pusher,
                })
            })
        })
        .collect()
}

/// An honoured bypass request.
struct Bypassed {
    pusher: String,
    reason: String,
}

/// Look for `-o modelgate.skip=<reason>`; honour it only for a pusher the policy lists.
/// Every request is shown to the pusher and written to the audit log.
fn bypass(
    env: &HookEnv,
    config: &HookConfig,
    updates: &[git::RefUpdate],
    git_dir: &Path,
    out: &mut Out<'_>,
) -> Option<Bypassed> {
    let request = env.push_options.iter().find_map(|o| {
        let rest = o.strip_prefix(SKIP_OPTION)?;
        if rest.is_empty() {
            Some(String::new())
        } else {
            rest.strip_prefix('=').map(|r| r.trim().to_string())
        }
    })?;
    let pusher = env.pusher.clone();
    let refusal = match &pusher {
        _ if request.is_empty() => Some("give a reason: `git push -o modelgate.skip=\"<why>\"`".to_string()),
        None => Some("the pusher is unknown on this server".to_string()),
        Some(p) if !config.bypass.allows(p) => Some(format!("{p} is not allowed to bypass the gate")),
        Some(_) => None,
    };
    let record = serde_json::json!({
        "time": now_secs(),
        "event": if refusal.is_some() { "bypass-refused" } else { "bypass" },
        "pusher": pusher,
        "reason": request,
        "refused": refusal,
        "refs": updates.iter().map(|u| super::escape_bytes(&u.name)).collect::<Vec<_>>(),
    });
    audit(git_dir, config, &[record], out);
    match refusal {
        Some(why) => {
            out.line(&format!("modelgate: bypass refused: {why}; the push is checked as usual"));
            None
        }
        None => {
            let pusher = pusher.unwrap_or_default();
            out.line(&format!("modelgate: bypass requested by {pusher}: {request} (logged)"));
            Some(Bypassed { pusher, reason: request })
        }
    }
}

/// `path (commit abc1234 on refs/heads/x)` for a blob's first place.
fn where_(blob: &NewBlob) -> String {
    let Some(p) = blob.places.first() else {
        return format!("blob {} (stored by the push, reached by no ref)", blob.id);
    };
    if p.refname.is_empty() {
        let path = if p.path.is_empty() { format!("blob {}", blob.id) } else { super::escape_bytes(&p.path) };
        return match p.commit {
            Some(c) => format!("{path} (blob {}, commit {} reached by no ref)", git::short(&blob.id), git::short(&c)),
            None => format!("{path} (blob {}, reached by no ref)", git::short(&blob.id)),
        };
    }
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

fn describe(out: &mut Out<'_>, blob: &NewBlob, j: &Judged, why: Option<&str>, tips: &super::gate::Tips) {
    out.line("");
    let lfs =
        j.lfs_oid.as_deref().map(|o| format!(", lfs object sha256:{}", &o[..o.len().min(12)])).unwrap_or_default();
    out.line(&format!("  {}: {} ({}{})", where_(blob), j.verdict.as_str().to_uppercase(), j.format, lfs));
    for p in blob.places.iter().skip(1).take(5) {
        let at = p.commit.map(|c| format!(" (commit {})", git::short(&c))).unwrap_or_default();
        out.line(&format!("    also at {}{at}", super::escape_bytes(&p.path)));
    }
    if let Some(w) = why {
        out.line(&format!("    decided by {w}"));
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
    for fix in tips.fixes(&facts.iter().map(|f| f.code.as_str()).collect::<Vec<_>>()) {
        out.line(&format!("    {fix}"));
    }
}
