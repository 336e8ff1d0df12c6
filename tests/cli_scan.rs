//! `modelgate scan` through the real binary: exit codes, output formats, paths.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn modelgate(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(args)
        .current_dir(cwd)
        .env_remove("NO_COLOR")
        .output()
        .expect("run modelgate")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A directory with plain files that are no model format (verdict `unsupported`).
fn plain_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("models/sub")).unwrap();
    std::fs::write(dir.path().join("models/notes.txt"), "notes about the model\n").unwrap();
    std::fs::write(dir.path().join("models/sub/b.txt"), "nothing\n").unwrap();
    std::fs::write(dir.path().join("models/a.txt"), "nothing\n").unwrap();
    dir
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not json ({e}): {}", stdout(o)))
}

#[test]
fn clean_scan_exits_0_in_sorted_order() {
    let dir = plain_dir();
    let o = modelgate(&["scan", "-j", "2", "models"], dir.path());
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let paths: Vec<String> =
        stdout(&o).lines().map(|l| l.split_whitespace().nth(2).unwrap_or_default().to_string()).collect();
    assert_eq!(paths, ["models/a.txt", "models/notes.txt", "models/sub/b.txt"]);
    assert!(stdout(&o).lines().all(|l| l.starts_with("UNSUPPORTED allow ")), "{}", stdout(&o));
    let summary = stderr(&o);
    assert!(
        summary.contains("3 files:") && summary.contains("3 unsupported") && summary.contains("0 rejected"),
        "{summary}"
    );
}

#[test]
fn missing_path_is_an_error_verdict_and_exit_1() {
    let dir = plain_dir();
    let o = modelgate(&["scan", "models/a.txt", "does/not/exist.pt"], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    let line = out.lines().find(|l| l.contains("does/not/exist.pt")).expect("a line for the missing path");
    assert!(line.starts_with("ERROR       reject does/not/exist.pt [unknown] read-error: "), "{line}");
    assert!(out.contains("models/a.txt"), "the other file is still reported: {out}");
}

#[test]
fn bad_arguments_and_bad_policies_exit_2() {
    let dir = plain_dir();
    for args in [
        &["scan"][..],
        &["scan", "--format", "xml", "models"],
        &["scan", "--no-such-flag", "models"],
        &["frobnicate"],
        &["scan", "--policy", "missing.toml", "models"],
    ] {
        let o = modelgate(args, dir.path());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{args:?} printed to stdout");
    }
    std::fs::write(dir.path().join("bad.toml"), "[actions]\nsafe = \"perhaps\"\n\n[[ignore]]\ncode = \"read-error\"\n")
        .unwrap();
    let o = modelgate(&["scan", "--policy", "bad.toml", "models"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.starts_with("error: invalid policy bad.toml: 2 problems"), "{err}");
    assert!(err.contains("bad.toml:2:8: `actions.safe`: unknown action `perhaps`"), "{err}");
    assert!(err.contains("bad.toml:4:1: `ignore[0].reason`: `reason` is required"), "{err}");
}

#[test]
fn json_document_has_every_documented_key() {
    let dir = plain_dir();
    let o = modelgate(&["scan", "--format", "json", "models", "gone.pkl"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!(v["modelgate"], env!("CARGO_PKG_VERSION"));
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 4);
    let keys = ["path", "format", "verdict", "decision", "size", "imports", "findings", "rule", "allowed_by"];
    for f in files {
        for k in keys {
            assert!(f.get(k).is_some(), "file lacks {k}: {f}");
        }
        assert_eq!(f.as_object().unwrap().len(), keys.len(), "{f}");
        assert!(f["imports"].is_array() && f["findings"].is_array() && f["size"].is_u64());
    }
    let gone = files.iter().find(|f| f["path"] == "gone.pkl").unwrap();
    assert_eq!((gone["verdict"].as_str(), gone["decision"].as_str()), (Some("error"), Some("reject")));
    let finding = &gone["findings"][0];
    for k in ["code", "severity", "message", "member", "offset", "evidence"] {
        assert!(finding.get(k).is_some(), "finding lacks {k}: {finding}");
    }
    assert_eq!(finding["code"], "read-error");
    assert_eq!(finding["severity"], "error");
    assert!(finding["member"].is_null() && finding["offset"].is_null() && finding["evidence"].is_null());
    let s = &v["summary"];
    for (k, n) in [
        ("files", 4),
        ("safe", 0),
        ("suspicious", 0),
        ("dangerous", 0),
        ("unsupported", 3),
        ("error", 1),
        ("allow", 3),
        ("tag", 0),
        ("reject", 1),
        ("exit_code", 1),
    ] {
        assert_eq!(s[k], n, "summary.{k}: {s}");
    }
    assert!(o.stderr.is_empty(), "json mode keeps stderr quiet: {}", stderr(&o));
}

#[test]
fn sarif_log_shape() {
    let dir = plain_dir();
    let o = modelgate(&["scan", "--format", "sarif", "models", "gone dir/x.pt"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!(v["version"], "2.1.0");
    assert!(v["$schema"].as_str().unwrap().contains("sarif"));
    let driver = &v["runs"][0]["tool"]["driver"];
    assert_eq!(driver["name"], "modelgate");
    assert_eq!(driver["version"], env!("CARGO_PKG_VERSION"));
    assert!(driver["informationUri"].as_str().unwrap().starts_with("https://"));
    let rules = driver["rules"].as_array().unwrap();
    let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    for code in modelgate::finding::all_codes() {
        assert!(ids.contains(&code.code), "rule {} missing", code.code);
    }
    assert!(rules.iter().all(|r| r["shortDescription"]["text"].is_string() && r["help"]["text"].is_string()));
    let results = v["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{results:?}");
    let r = &results[0];
    assert_eq!(r["ruleId"], "read-error");
    assert_eq!(r["level"], "error");
    assert!(r["message"]["text"].as_str().unwrap().starts_with("cannot read"));
    assert_eq!(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"], "gone%20dir/x.pt");
    let idx = r["ruleIndex"].as_u64().unwrap() as usize;
    assert_eq!(rules[idx]["id"], "read-error");
    assert!(r["properties"].get("evidence").is_some() && r["properties"].get("offset").is_some());
}

#[test]
fn list_imports_prints_one_line_per_file() {
    let dir = plain_dir();
    let o = modelgate(&["scan", "--list-imports", "models"], dir.path());
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stdout(&o),
        "models/a.txt: (no imports)\nmodels/notes.txt: (no imports)\nmodels/sub/b.txt: (no imports)\n"
    );
    let o = modelgate(&["scan", "--list-imports", "--format", "json", "models"], dir.path());
    assert!(json(&o)["files"].as_array().unwrap().iter().all(|f| f["imports"].is_array()));
}

#[cfg(unix)]
#[test]
fn control_characters_never_reach_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let evil = "evil\x1b[2J\x1b]0;owned\x07\rname.bin";
    std::fs::write(dir.path().join(evil), "data\n").unwrap();
    let o = modelgate(&["scan", "-v", "."], dir.path());
    let out = stdout(&o);
    assert!(!out.bytes().any(|b| b == 0x1b || b == b'\r' || b == 0x07), "{out:?}");
    assert!(out.contains("evil\\x1b[2J\\x1b]0;owned\\x07\\x0dname.bin"), "{out:?}");
    let o = modelgate(&["scan", "--list-imports", "."], dir.path());
    assert!(!o.stdout.contains(&0x1b));
    // JSON escapes them its own way and keeps the exact name.
    let o = modelgate(&["scan", "--format", "json", "."], dir.path());
    assert_eq!(json(&o)["files"][0]["path"], evil);
}

#[cfg(unix)]
#[test]
fn symlinks_are_skipped_not_followed() {
    let dir = plain_dir();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "x\n").unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("models/linkdir")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), dir.path().join("models/link.pt")).unwrap();
    let o = modelgate(&["scan", "--format", "json", "models", "models/link.pt"], dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    let files = v["files"].as_array().unwrap();
    assert!(
        files.iter().all(|f| !f["path"].as_str().unwrap().contains("linkdir/")),
        "a symlinked directory was followed"
    );
    let links: Vec<&Value> = files.iter().filter(|f| f["format"] == "symlink").collect();
    assert_eq!(links.len(), 2, "{files:?}");
    for l in links {
        assert_eq!(l["verdict"], "unsupported");
        assert_eq!(l["findings"][0]["code"], "skipped-symlink");
    }
    // `models/link.pt` given twice (walked and as an argument) is reported once.
    assert_eq!(files.iter().filter(|f| f["path"] == "models/link.pt").count(), 1);
}

#[test]
fn policy_rules_and_exceptions_apply_to_relative_paths() {
    let dir = plain_dir();
    // The strictest action wins: a rule can make `[actions]` stricter for its paths.
    let policy = r#"
[actions]
error = "allow"

[[rule]]
paths = ["missing/**"]
actions = { error = "tag" }
reason = "not there yet"

[[ignore]]
code = "read-error"
paths = ["gone.pkl"]
reason = "known"

[[ignore]]
code = "container-too-deep"
reason = "stale"
"#;
    std::fs::write(dir.path().join("p.toml"), policy).unwrap();
    let o = modelgate(&["scan", "--policy", "p.toml", "--format", "json", "missing/x.pt", "gone.pkl"], dir.path());
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let v = json(&o);
    let gone = &v["files"][0];
    assert_eq!((gone["path"].as_str(), gone["verdict"].as_str()), (Some("gone.pkl"), Some("unsupported")));
    assert_eq!(gone["findings"].as_array().map(Vec::len), Some(0), "the ignored finding is dropped");
    let missing = &v["files"][1];
    assert_eq!((missing["verdict"].as_str(), missing["decision"].as_str()), (Some("error"), Some("tag")));
    assert_eq!(missing["rule"]["line"], 5);
    assert_eq!(missing["rule"]["reason"], "not there yet");
    let err = stderr(&o);
    assert!(
        err.contains("warning: exception ignore[1] for `container-too-deep` (p.toml:15) matched no finding"),
        "{err}"
    );
    assert!(!err.contains("ignore[0]"), "{err}");

    // Relative to the directory argument: `models/**` does not match inside `scan models`.
    std::fs::write(
        dir.path().join("r.toml"),
        "[[rule]]\npaths = [\"sub/*.txt\"]\nactions = { unsupported = \"reject\" }\nreason = \"r\"\n",
    )
    .unwrap();
    let o = modelgate(&["scan", "--policy", "r.toml", "models"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    let rejected: Vec<&str> = out.lines().filter(|l| l.contains(" reject ")).collect();
    assert_eq!(rejected.len(), 1);
    assert!(rejected[0].contains("models/sub/b.txt"), "{rejected:?}");
}

#[test]
fn verbose_shows_ignored_findings_and_the_rule() {
    let dir = plain_dir();
    std::fs::write(
        dir.path().join("p.toml"),
        "[[ignore]]\ncode = \"read-error\"\nreason = \"known gap\"\n[[rule]]\npaths = [\"*.pkl\"]\nactions = { unsupported = \"tag\" }\nreason = \"watch\"\n",
    )
    .unwrap();
    let o = modelgate(&["scan", "-v", "--policy", "p.toml", "gone.pkl"], dir.path());
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(out.starts_with("UNSUPPORTED tag    gone.pkl [unknown]\n"), "{out}");
    assert!(out.contains("ignored    read-error: cannot read") && out.contains("(ignored: known gap)"), "{out}");
    assert!(out.contains("rule at line 4: watch"), "{out}");
}
