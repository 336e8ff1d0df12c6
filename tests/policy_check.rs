//! `modelgate policy check`: remarks about a policy that loads (rules that can never match or
//! never change a decision, expired entries, a missing LFS store, what `scan` ignores), and
//! `modelgate policy test`: the gate's decision for files without pushing.

mod git_support;
use git_support::*;
use std::path::Path;
use std::process::{Command, Output};

fn modelgate(args: &[&str], cwd: &Path) -> Output {
    Command::new(BIN).args(args).current_dir(cwd).env_remove("MODELGATE_POLICY").output().unwrap()
}

fn check(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.toml"), text).unwrap();
    let o = modelgate(&["policy", "check", "--deny-warnings", "p.toml"], dir.path());
    (o.status.code(), format!("{}{}", show(&o.stdout), show(&o.stderr)))
}

#[track_caller]
fn says(out: &str, line: usize, level: &str, key: &str, needle: &str) {
    let want = format!("p.toml:{line}: {level}: `{key}`: ");
    assert!(out.lines().any(|l| l.starts_with(&want) && l.contains(needle)), "no `{want}...{needle}` in:\n{out}");
}

#[test]
fn the_default_policy_has_nothing_to_say() {
    let (code, out) = check(modelgate::policy::DEFAULT_POLICY);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out, "p.toml: ok (0 rules, 0 exceptions)\n");
}

#[test]
fn rules_that_never_match_or_never_apply() {
    let text = r#"
[actions]
suspicious = "reject"

[[rule]]
paths = ["/models/**", "./vendor/**"]
action = "tag"
reason = "absolute paths never match"

[[rule]]
refs = ["main", "refs/heads/a b"]
formats = ["pickle-based"]
action = "reject"
reason = "short ref names never match"

[[rule]]
formats = ["safetensors"]
not_formats = ["any"]
action = "reject"
reason = "no format is both"

[[rule]]
paths = ["vendor/**"]
actions = { suspicious = "tag", error = "reject" }
reason = "milder than [actions] for suspicious"

[[rule]]
paths = ["**"]
actions = { unsupported = "reject" }
reason = "everything unknown is refused"

[[rule]]
paths = ["docs/**"]
actions = { unsupported = "tag" }
reason = "covered by the rule above"

[[ignore]]
code = "read-error"
paths = ["./fixtures/**"]
reason = "never matches either"
"#;
    let (code, out) = check(text);
    assert_eq!(code, Some(1), "warnings with --deny-warnings: {out}");
    assert!(out.starts_with("p.toml: ok (6 rules, 1 exceptions); "), "{out}");
    says(&out, 5, "warning", "rule[0].paths[0]", "without a leading `/`");
    says(&out, 5, "warning", "rule[0].paths[1]", "never start with `./`");
    says(&out, 10, "warning", "rule[1].refs[0]", "did you mean `refs/heads/main` or `refs/tags/main`?");
    says(&out, 10, "warning", "rule[1].refs[1]", "git refuses ' ' in ref names");
    says(&out, 10, "note", "rule[1]", "only the push gate applies this rule; `modelgate scan` ignores it");
    says(
        &out,
        16,
        "warning",
        "rule[2].formats",
        "no format is in `formats` (safetensors) and outside `not_formats` (any)",
    );
    says(
        &out,
        22,
        "warning",
        "rule[3].actions.suspicious",
        "the strictest action wins, so this never makes a file pass",
    );
    says(&out, 22, "warning", "rule[3].actions.suspicious", "[[allow]] sha256");
    says(&out, 32, "warning", "rule[5].actions.unsupported", "rule[4] (line 27) matches every file this rule matches");
    says(&out, 32, "warning", "rule[5]", "never changes a decision");
    says(&out, 37, "warning", "ignore[0].paths[0]", "never start with `./`");
    // rule[3]'s `error = "reject"` is what [actions] says anyway: a note, not a warning.
    says(&out, 22, "note", "rule[3].actions.error", "gives anyway");
    // Without --deny-warnings the exit code is 0.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.toml"), text).unwrap();
    assert_eq!(modelgate(&["policy", "check", "p.toml"], dir.path()).status.code(), Some(0));
}

#[test]
fn expired_entries_a_missing_store_and_untrusted_names() {
    let text = format!(
        r#"
[gate]
on_error = "tag"

[lfs]
layout = "gitea"
root = "/nonexistent/modelgate/lfs"

[bypass]
pushers = ["admin"]
reason = "ops"

[[allow]]
sha256 = "{sha}"
reason = "an old fixture"
expires = 2001-01-01

[[allow]]
name = "mylib.Layer"
reason = "was ours"
expires = 2002-02-02

[[rule]]
repos = ["hub/*"]
actions = {{ error = "reject" }}
reason = "errors are refused in the mirror even when the gate fails"
"#,
        sha = "ab".repeat(32)
    );
    let (code, out) = check(&text);
    assert_eq!(code, Some(1), "{out}");
    says(&out, 13, "warning", "allow[0].expires", "expired on 2001-01-01");
    says(&out, 18, "warning", "allow[1].expires", "`mylib.Layer` is no longer allowlisted");
    assert!(
        out.contains("p.toml: warning: `lfs.root`: the lfs store /nonexistent/modelgate/lfs cannot be read"),
        "{out}"
    );
    assert!(
        out.contains("p.toml: note: `bypass.pushers`: the gate knows who pushes only from a trusted environment"),
        "{out}"
    );
    says(&out, 23, "note", "rule[0].repos", "`hub/*` name a forge repository");
    // `error = "reject"` is above on_error = "tag": it does apply to files the gate failed on.
    assert!(!out.contains("rule[0].actions.error"), "{out}");
    // Trusted, the names are read: no note about them.
    let (_, out) = check(&text.replace("[gate]\n", "[gate]\ntrust_env = \"gitea\"\n"));
    assert!(!out.contains("rule[0].repos") && !out.contains("bypass.pushers"), "{out}");
}

#[test]
fn policy_test_shows_the_gates_decision_without_a_push() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("p.toml"),
        r#"
[bypass]
pushers = ["release-bot"]
reason = "releases"

[[rule]]
repos = ["hub/*"]
not_formats = ["safetensors", "gguf", "onnx", "json"]
action = "reject"
reason = "the mirror serves safetensors, gguf and onnx only"

[[rule]]
refs = ["refs/heads/main"]
formats = ["pickle-based"]
action = "reject"
reason = "no pickles on main"
"#,
    )
    .unwrap();
    std::fs::write(d.join("good.pkl"), GOOD_PICKLE).unwrap();
    std::fs::write(d.join("w.bin"), safetensors(None)).unwrap();
    std::fs::write(d.join("sus.pkl"), SUSPICIOUS_PICKLE).unwrap();
    let run = |args: &[&str]| {
        let mut a = vec!["policy", "test", "--policy", "p.toml"];
        a.extend_from_slice(args);
        let o = modelgate(&a, d);
        (o.status.code(), show(&o.stdout), show(&o.stderr))
    };
    // A benign pickle, named like anything, in the mirror: the format rule decides.
    let (code, out, err) =
        run(&["--repo", "hub/mirror", "--ref", "refs/heads/dev", "--path", "m/x.safetensors", "good.pkl"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("REJECT  m/x.safetensors (refs/heads/dev in hub/mirror): safe (pickle)"), "{out}");
    assert!(out.contains("decided by policy rule[0] (line 6): the mirror serves"), "{out}");
    // Elsewhere on dev it passes; on main the ref rule decides; a safetensors file passes.
    let (code, out, _) = run(&["--repo", "team/models", "--ref", "refs/heads/dev", "good.pkl", "w.bin"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ALLOW   good.pkl (refs/heads/dev in team/models): safe (pickle)"), "{out}");
    assert!(out.contains("decided by [actions] safe = \"allow\""), "{out}");
    assert!(out.contains("ALLOW   w.bin (refs/heads/dev in team/models): safe (safetensors)"), "{out}");
    let (code, out, _) =
        run(&["--ref", "refs/heads/main", "--path", "models", "good.pkl", "w.bin", "--pusher", "release-bot"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("REJECT  models/good.pkl (refs/heads/main)") && out.contains("no pickles on main"), "{out}");
    assert!(out.contains("ALLOW   models/w.bin"), "{out}");
    assert!(out.contains("bypass: release-bot may skip the gate"), "{out}");
    // A suspicious pickle on dev is tagged; allowlisting its imports would help on main.
    let (code, out, _) = run(&["--ref", "refs/heads/dev", "sus.pkl"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("TAG     sus.pkl (refs/heads/dev): suspicious (pickle)") && out.contains("pickle-import-unknown"),
        "{out}"
    );
    // Ref names are full.
    let (code, _, err) = run(&["--ref", "main", "good.pkl"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("give the full ref name: `refs/heads/main`"), "{err}");
}
