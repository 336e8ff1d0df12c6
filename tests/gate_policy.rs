//! The scoped policy: rules by repository, ref, path and format; the [gate], [lfs] and
//! [bypass] sections; every problem with its line, column and key.

use modelgate::finding::{Severity, Verdict};
use modelgate::hook::gate::{hook_config, PolicyDecider};
use modelgate::hook::{Action, Fact, Judged};
use modelgate::policy::{Policy, PolicyError, Problem, Subject};
use std::time::Duration;

fn problems(text: &str) -> Vec<Problem> {
    match Policy::parse(text, "p.toml") {
        Ok(_) => panic!("policy should be invalid:\n{text}"),
        Err(PolicyError { problems, .. }) => problems,
    }
}

#[track_caller]
fn has(ps: &[Problem], line: usize, key: &str, needle: &str) {
    assert!(
        ps.iter().any(|p| p.line == line && p.key == key && p.message.contains(needle)),
        "no problem at line {line} key {key} containing {needle:?} in {ps:#?}"
    );
}

fn subject<'a>(path: &'a str, refname: &'a str, repos: &'a [String], format: &'a str) -> Subject<'a> {
    Subject { path: Some(path), refname: Some(refname), repos, format, ..Default::default() }
}

fn action(p: &Policy, s: &Subject<'_>, v: Verdict) -> Action {
    p.decide_facts(s, v, &[]).action
}

#[test]
fn rules_scope_by_repository_ref_path_and_format() {
    let p = Policy::parse(
        r#"
[[rule]]
repos = ["hub/*"]
not_formats = ["safetensors", "gguf", "onnx", "json"]
action = "reject"
reason = "the mirror serves only safetensors, gguf and onnx"

[[rule]]
refs = ["refs/heads/main", "refs/tags/**"]
formats = ["pickle-based"]
action = "reject"
reason = "no pickle on protected refs"

[[rule]]
paths = ["legacy/**"]
refs = ["refs/heads/main"]
actions = { dangerous = "tag" }
reason = "quarantined legacy area"
"#,
        "p.toml",
    )
    .unwrap();
    let hub = vec!["hub/mirror".to_string(), "/srv/git/hub/mirror.git".to_string()];
    let other = vec!["team/models".to_string()];
    // Format rules look at the detected format, whatever the name.
    assert_eq!(action(&p, &subject("w.safetensors", "refs/heads/x", &hub, "pickle"), Verdict::Safe), Action::Reject);
    assert_eq!(action(&p, &subject("w.bin", "refs/heads/x", &hub, "safetensors"), Verdict::Safe), Action::Allow);
    assert_eq!(action(&p, &subject("README.md", "refs/heads/x", &hub, "unknown"), Verdict::Unsupported), Action::Allow);
    // Wrapped formats: every layer must be allowed.
    assert_eq!(action(&p, &subject("w.gz", "refs/heads/x", &hub, "gzip:safetensors"), Verdict::Safe), Action::Reject);
    assert_eq!(action(&p, &subject("w.pkl", "refs/heads/x", &other, "pickle"), Verdict::Safe), Action::Allow);
    // Ref globs: `*` stays in one component, `**` crosses.
    assert_eq!(action(&p, &subject("w.pkl", "refs/heads/main", &other, "pickle"), Verdict::Safe), Action::Reject);
    assert_eq!(action(&p, &subject("w.pkl", "refs/tags/v1/rc", &other, "pytorch"), Verdict::Safe), Action::Reject);
    assert_eq!(action(&p, &subject("w.pkl", "refs/heads/dev", &other, "pickle"), Verdict::Safe), Action::Allow);
    assert_eq!(action(&p, &subject("a.gz", "refs/heads/main", &other, "gzip:pickle"), Verdict::Safe), Action::Reject);
    // `pickle-based` also covers any file in which a pickle import was found.
    let mut zip = subject("a.zip", "refs/heads/main", &other, "zip");
    assert_eq!(action(&p, &zip, Verdict::Suspicious), Action::Tag);
    zip.imports = true;
    assert_eq!(action(&p, &zip, Verdict::Suspicious), Action::Reject);
    // Path and ref together: a rule milder than [actions] changes nothing, the strictest
    // action wins, and the first rule that sets it is named.
    let s = subject("legacy/old.pt", "refs/heads/main", &other, "pytorch");
    assert_eq!(action(&p, &s, Verdict::Dangerous), Action::Reject);
    let d = p.decide_facts(&s, Verdict::Dangerous, &[]);
    assert_eq!(d.rule.map(|r| r.line), Some(8));
    let dev = subject("legacy/old.pt", "refs/heads/dev", &other, "pytorch");
    assert_eq!(p.decide_facts(&dev, Verdict::Dangerous, &[]).rule, None, "only [actions]");
    // The protected-ref rule decides a safe pickle there, and is named.
    let d = p.decide_facts(&s, Verdict::Safe, &[]);
    assert_eq!((d.action, d.rule.as_ref().map(|r| r.line)), (Action::Reject, Some(8)));
    // Outside a push (no ref, no repository) ref and repo rules never match.
    let scan = Subject { path: Some("legacy/old.pt"), format: "pickle", ..Default::default() };
    assert_eq!(action(&p, &scan, Verdict::Safe), Action::Allow);
    assert_eq!(action(&p, &scan, Verdict::Dangerous), Action::Reject);
}

#[test]
fn gate_lfs_and_bypass_sections() {
    let p = Policy::parse(
        r#"
[gate]
on_error = "allow"
lfs_missing = "tag"
max_file_size = 1_000
file_timeout = "250ms"
push_timeout = "2m"
max_file_read_bytes = 4096
max_push_read_bytes = 8192
notes_ref = "refs/notes/commits"
audit_log = ""
cache_dir = "/var/cache/modelgate"

[lfs]
layout = "gitea"
root = "/var/lib/gitea/data/lfs"
verify_sha256 = true

[bypass]
pushers = ["alice", "release-bot"]
pusher_env = "REMOTE_USER"
reason = "release managers"
"#,
        "p.toml",
    )
    .unwrap();
    let g = &p.gate;
    assert_eq!((g.on_error, g.lfs_missing), (Action::Allow, Action::Tag));
    assert_eq!(g.max_file_size, Some(1000));
    assert_eq!((g.file_timeout, g.push_timeout), (Duration::from_millis(250), Duration::from_secs(120)));
    assert_eq!(g.notes_ref, "refs/notes/commits");
    assert_eq!(g.audit_log, None);
    assert!(p.bypass.allows("alice") && !p.bypass.allows("bob"));
    let c = hook_config(&p);
    assert_eq!(c.limits.file_read_bytes, Some(4096));
    assert_eq!(c.limits.push_read_bytes, Some(8192));
    assert_eq!(c.lfs.layout, modelgate::lfs::Layout::Gitea);
    assert!(c.lfs.verify_sha256);
    assert_eq!(c.cache_dir.as_deref(), Some(std::path::Path::new("/var/cache/modelgate")));
    assert_eq!(c.on_error, Action::Allow);
}

#[test]
fn scoped_problems_have_locations() {
    let ps = problems(
        r#"[gate]
on_error = "ignore"
file_timeout = "10"
push_timeout = "25h"
notes_ref = "refs/heads/x"
max_push_read_bytes = 0
colour = 1

[lfs]
layout = "s4"

[bypass]
pushers = ["alice", ""]
pusher_env = "1BAD"

[[rule]]
repos = []
formats = ["pikle"]
action = "reject"
actions = { safe = "tag" }
reason = "x"

[[rule]]
reason = "no matcher"
action = "reject"

[[rule]]
refs = ["refs/heads/[x"]
action = "deny"
reason = "r"
"#,
    );
    has(&ps, 2, "gate.on_error", "unknown action `ignore`");
    has(&ps, 3, "gate.file_timeout", "not a duration");
    has(&ps, 4, "gate.push_timeout", "out of range");
    has(&ps, 5, "gate.notes_ref", "refs/notes/");
    has(&ps, 6, "gate.max_push_read_bytes", "out of range");
    has(&ps, 7, "gate.colour", "unknown key `colour`");
    has(&ps, 10, "lfs.layout", "unknown variant `s4`");
    has(&ps, 13, "bypass.pushers[1]", "cannot be empty");
    has(&ps, 14, "bypass.pusher_env", "not an environment variable name");
    has(&ps, 12, "bypass.reason", "`reason` is required");
    has(&ps, 17, "rule[0].repos", "`repos` is empty");
    has(&ps, 18, "rule[0].formats[0]", "unknown format `pikle`");
    has(&ps, 19, "rule[0].action", "either `action` or `actions`");
    has(&ps, 23, "rule[1].paths", "a rule needs a matcher");
    has(&ps, 28, "rule[2].refs[0]", "invalid glob");
    has(&ps, 29, "rule[2].action", "unknown action `deny`");
    // The message names the file, line, column and key.
    let e = Policy::parse("[gate]\nfile_timeout = \"soon\"\n", "/etc/modelgate/policy.toml").unwrap_err();
    assert!(e.to_string().contains("/etc/modelgate/policy.toml:2:16: `gate.file_timeout`:"), "{e}");
}

#[test]
fn a_broken_lfs_store_is_a_policy_problem() {
    let ps = problems("[lfs]\nlayout = \"template\"\ntemplate = \"/srv/lfs/{oid0:2}\"\n");
    has(&ps, 1, "lfs", "every character of the oid");
    let ps = problems("[lfs]\nlayout = \"gitea\"\n");
    has(&ps, 1, "lfs", "needs a root");
}

#[test]
fn lists_digest_follows_allow_and_deny_entries() {
    let a = Policy::parse("", "a").unwrap();
    let b = Policy::parse("[[allow]]\nname = \"mylib.Layer\"\nreason = \"ours\"\n", "b").unwrap();
    let c = Policy::parse("[[allow]]\nname = \"mylib.Layer\"\nreason = \"other words\"\n", "c").unwrap();
    let d = Policy::parse("[[deny]]\nname = \"mylib.Layer\"\nreason = \"ours\"\n", "d").unwrap();
    assert_ne!(a.lists_digest(), b.lists_digest());
    assert_eq!(b.lists_digest(), c.lists_digest(), "the reason does not change verdicts");
    assert_ne!(b.lists_digest(), d.lists_digest());
    assert_ne!(hook_config(&a).cache_salt, hook_config(&b).cache_salt);
    // Exceptions and actions are applied afresh to cached verdicts: not in the salt.
    let e = Policy::parse("[actions]\nsuspicious = \"reject\"\n", "e").unwrap();
    assert_eq!(hook_config(&a).cache_salt, hook_config(&e).cache_salt);
}

fn judged(verdict: Verdict, format: &str, codes: &[(&str, Severity)]) -> Judged {
    let findings = codes
        .iter()
        .map(|(c, s)| Fact {
            code: c.to_string(),
            severity: *s,
            message: "m".into(),
            member: None,
            offset: None,
            evidence: None,
        })
        .collect();
    Judged { verdict, format: format.into(), size: 1, imports: Vec::new(), findings, lfs_oid: None, cached: false }
}

#[test]
fn decider_applies_on_error_lfs_missing_and_the_strictest_place() {
    let p = Policy::parse(
        r#"
[gate]
on_error = "tag"
lfs_missing = "allow"

[[rule]]
paths = ["release/**"]
actions = { suspicious = "reject" }
reason = "releases are strict"
"#,
        "p.toml",
    )
    .unwrap();
    let d = PolicyDecider::new(&p, Vec::new());
    let timeout = judged(Verdict::Error, "unknown", &[("gate-file-timeout", Severity::Error)]);
    let (a, why) = d.decide_at(&timeout, &[(Some("x.pt"), Some("refs/heads/main"))]);
    assert_eq!(a, Action::Tag);
    assert!(why.unwrap().contains("on_error = tag"));
    let missing = judged(Verdict::Error, "unknown", &[("lfs-object-missing", Severity::Error)]);
    assert_eq!(d.decide_at(&missing, &[]).0, Action::Allow);
    // Something dangerous is never excused by on_error or lfs_missing.
    let both = judged(
        Verdict::Dangerous,
        "pickle",
        &[("gate-file-timeout", Severity::Error), ("lfs-pointer-invalid", Severity::Dangerous)],
    );
    assert_eq!(d.decide_at(&both, &[]).0, Action::Reject);
    // The same blob at two paths: the strictest decision wins, with its rule.
    let sus = judged(Verdict::Suspicious, "pickle", &[("x", Severity::Suspicious)]);
    let (a, why) = d.decide_at(&sus, &[(Some("dev/m.pkl"), None), (Some("release/m.pkl"), None)]);
    assert_eq!(a, Action::Reject);
    let why = why.unwrap();
    assert!(why.contains("rule[0] (line 6): releases are strict") && !why.contains("p.toml"), "{why}");
    assert_eq!(d.decide_at(&sus, &[(Some("dev/m.pkl"), None)]).0, Action::Tag);
}
