//! The policy's decision is called `decision` in every JSON modelgate writes: `scan --format
//! json` and `sarif`, `lfs scan --format json`, and the audit log lines of `lfs scan`, the
//! pre-receive hook (rejected files) and the post-receive hook (accepted files). No output
//! calls it `action`. Each is produced by the real binary, the hooks through real pushes.

mod git_support;
use git_support::*;
use serde_json::Value;
use std::process::Command;

/// Every object with a string `verdict` (a judged file or object) carries a `decision` among
/// allow/tag/reject, and no object anywhere has an `action` key. Returns how many it checked.
fn check(v: &Value, what: &str) -> usize {
    match v {
        Value::Object(m) => {
            assert!(!m.contains_key("action"), "{what}: `action` instead of `decision`: {v}");
            let mut n = 0;
            if m.get("verdict").is_some_and(Value::is_string) {
                let d = m.get("decision").and_then(Value::as_str);
                assert!(matches!(d, Some("allow" | "tag" | "reject")), "{what}: no decision: {v}");
                n += 1;
            }
            n + m.values().map(|x| check(x, what)).sum::<usize>()
        }
        Value::Array(a) => a.iter().map(|x| check(x, what)).sum(),
        _ => 0,
    }
}

fn decision_of<'a>(records: &'a [Value], event: &str, path: &str) -> Option<&'a str> {
    records.iter().find(|r| r["event"] == event && r["path"] == path).and_then(|r| r["decision"].as_str())
}

#[test]
fn scan_json_and_sarif_say_decision() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.pkl"), BAD).unwrap();
    std::fs::write(dir.path().join("sus.pkl"), SUSPICIOUS_PICKLE).unwrap();
    std::fs::write(dir.path().join("good.pkl"), GOOD_PICKLE).unwrap();
    let o = Command::new(BIN).args(["scan", "--format", "json"]).arg(dir.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o.stderr));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(check(&doc, "scan --format json"), 3);
    let by_name = |n: &str| {
        doc["files"].as_array().unwrap().iter().find(|f| f["path"].as_str().unwrap().ends_with(n)).unwrap()["decision"]
            .clone()
    };
    assert_eq!(by_name("bad.pkl"), "reject");
    assert_eq!(by_name("sus.pkl"), "tag");
    assert_eq!(by_name("good.pkl"), "allow");

    let o = Command::new(BIN).args(["scan", "--format", "sarif"]).arg(dir.path()).output().unwrap();
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(check(&doc, "scan --format sarif") >= 2, "every result's properties carry verdict and decision");
}

#[test]
fn lfs_scan_json_and_its_audit_log_say_decision() {
    let e = Env::new();
    let root = e.dir.path().join("lfs-store");
    std::fs::create_dir_all(&root).unwrap();
    let policy = e.policy("lfs.toml", &format!("[lfs]\nlayout = \"gitea\"\nroot = \"{}\"\n", root.display()));
    let bad = put_gitea_object(&root, BAD);
    let good = put_gitea_object(&root, &safetensors(None));
    let o = Command::new(BIN)
        .args(["lfs", "scan", "--format", "json", "--policy"])
        .arg(&policy)
        .arg("--git-dir")
        .arg(&e.bare)
        .args([&bad, &good])
        .env_remove("MODELGATE_POLICY")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o.stderr));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(check(&doc, "lfs scan --format json"), 2);
    assert_eq!(doc["objects"][0]["decision"], "reject");
    assert_eq!(doc["objects"][1]["decision"], "allow");

    let log = e.audit();
    let scanned: Vec<&Value> = log.iter().filter(|r| r["event"] == "lfs-scanned").collect();
    assert_eq!(scanned.len(), 2, "{log:#?}");
    for r in &scanned {
        check(r, "lfs scan audit log");
    }
    assert_eq!(scanned.iter().find(|r| r["lfs_oid"] == bad.as_str()).unwrap()["decision"], "reject");
}

#[test]
fn hook_audit_log_says_decision_for_rejected_and_received_files() {
    let e = Env::new();
    e.install_hook("post-receive");
    e.write("README", b"models\n");
    e.commit("base");
    assert_accepted(e.push(&["main"]));
    // Rejected by pre-receive.
    e.write("models/bad.pkl", BAD);
    e.commit("bad");
    assert_rejected(e.push(&["main"]));
    let log = e.audit();
    assert_eq!(decision_of(&log, "rejected", "models/bad.pkl"), Some("reject"), "{log:#?}");

    // Accepted: post-receive records the decisions pre-receive made.
    e.w(&["reset", "-q", "--hard", "HEAD~1"]);
    e.write("models/sus.pkl", SUSPICIOUS_PICKLE);
    e.write("models/good.pkl", GOOD_PICKLE);
    e.commit("models");
    assert_accepted(e.push(&["main"]));
    let log = e.audit();
    assert_eq!(decision_of(&log, "received", "models/sus.pkl"), Some("tag"), "{log:#?}");
    assert_eq!(decision_of(&log, "received", "models/good.pkl"), Some("allow"), "{log:#?}");
    let judged = log.iter().map(|r| check(r, "hook audit log")).sum::<usize>();
    assert!(judged >= 3, "{log:#?}");
}
