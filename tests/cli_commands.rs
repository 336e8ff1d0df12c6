//! `modelgate explain | completions | policy` through the real binary.

use std::process::{Command, Output};

fn modelgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_modelgate")).args(args).output().expect("run modelgate")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn explain_a_code() {
    let o = modelgate(&["explain", "read-error"]);
    assert_eq!(o.status.code(), Some(0));
    let out = text(&o.stdout);
    let info = modelgate::finding::code_info("read-error").unwrap();
    assert!(out.starts_with("read-error\n  severity: error"), "{out}");
    assert!(out.contains(info.summary) && out.contains(info.fix), "{out}");
}

#[test]
fn explain_an_unknown_code_suggests_close_ones() {
    let o = modelgate(&["explain", "read-eror"]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.starts_with("error: unknown code `read-eror`; did you mean:"), "{err}");
    assert!(err.contains("  read-error"), "{err}");
    let o = modelgate(&["explain", "zzzzzzzzzzzzzzzz"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("modelgate explain --list"));
    let o = modelgate(&["explain"]);
    assert_eq!(o.status.code(), Some(2), "a code or --list is required");
}

#[test]
fn explain_list_has_every_code() {
    let o = modelgate(&["explain", "--list"]);
    assert_eq!(o.status.code(), Some(0));
    let out = text(&o.stdout);
    let codes = modelgate::finding::all_codes();
    assert_eq!(out.lines().count(), codes.len());
    for c in codes {
        assert!(out.lines().any(|l| l.starts_with(&format!("{} ", c.code)) && l.ends_with(c.summary)), "{}", c.code);
    }
}

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = modelgate(&["completions", shell]);
        assert_eq!(o.status.code(), Some(0), "{shell}");
        let out = text(&o.stdout);
        assert!(out.contains("modelgate") && out.contains("list-imports"), "{shell}: {out}");
    }
    assert_eq!(modelgate(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn policy_show_default_and_check() {
    let o = modelgate(&["policy", "show-default"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(text(&o.stdout), modelgate::policy::DEFAULT_POLICY);

    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, &o.stdout).unwrap();
    let o = modelgate(&["policy", "check", good.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).ends_with(": ok (0 rules, 0 exceptions)\n"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[actions]\nsafe = 1\n\n[[rule]]\npaths = [\"**\"]\n").unwrap();
    let o = modelgate(&["policy", "check", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.contains("3 problems"), "{err}");
    assert!(err.contains("bad.toml:2:8: `actions.safe`: invalid type: integer"), "{err}");
    assert!(err.contains("bad.toml:4:1: `rule[0].actions`: `actions` is required"), "{err}");
    assert!(err.contains("bad.toml:4:1: `rule[0].reason`: `reason` is required"), "{err}");

    let o = modelgate(&["policy", "check", dir.path().join("none.toml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).starts_with("error: cannot read policy"));
}

#[test]
fn help_and_version_exit_0() {
    for args in [&["--help"][..], &["--version"], &["scan", "--help"]] {
        let o = modelgate(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        assert!(!o.stdout.is_empty());
    }
}
