//! post-receive: notes per new commit and the audit log, through real pushes.

mod git_support;
use git_support::*;

fn note(e: &Env, commit: &str) -> Option<String> {
    let o = e.git(&e.bare).args(["notes", "--ref", "refs/notes/modelgate", "show", commit]).output().unwrap();
    o.status.success().then(|| show(&o.stdout))
}

#[test]
fn notes_and_audit_log_for_model_files() {
    let e = Env::new();
    e.install_hook("post-receive");
    e.write("README.md", b"text only\n");
    let plain = e.commit("no model");
    e.write("models/weights.pkl", GOOD_PICKLE);
    e.write("models/copy.pkl", GOOD_PICKLE);
    let c = e.commit("a model");
    let out = assert_accepted(e.push(&["main"]));
    assert!(!out.contains("modelgate: warning"), "{out}");

    let n = note(&e, &c).expect("a note on the commit with a model");
    assert!(n.starts_with("modelgate "), "{n}");
    assert!(n.contains("models/weights.pkl: safe (pickle)"), "{n}");
    assert!(n.contains("models/copy.pkl: safe (pickle)"), "{n}");
    assert_eq!(note(&e, &plain), None, "no note without model files");

    let log = std::fs::read_to_string(e.bare.join("modelgate/audit.log")).unwrap();
    let recs: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(recs.len(), 2, "{log}");
    assert!(recs.iter().all(|r| r["event"] == "received" && r["verdict"] == "safe" && r["commit"] == c.as_str()));
    assert!(recs.iter().any(|r| r["path"] == "models/weights.pkl"));

    // A new branch at a commit the server has adds no note and no audit line.
    e.w(&["branch", "again"]);
    assert_accepted(e.push(&["again"]));
    assert_eq!(note(&e, &c).unwrap().matches("modelgate ").count(), 1);
    assert_eq!(std::fs::read_to_string(e.bare.join("modelgate/audit.log")).unwrap().lines().count(), 2);
}

#[test]
fn note_is_appended_to_an_existing_note() {
    let e = Env::new();
    e.install_hook("post-receive");
    e.write("w.pkl", GOOD_PICKLE);
    let c = e.commit("model");
    // Land the commit without the hooks, annotate it by hand, then make it new again.
    e.remove_hook("pre-receive");
    e.remove_hook("post-receive");
    e.push(&["main:refs/heads/tmp"]);
    e.b(&["notes", "--ref", "refs/notes/modelgate", "add", "-m", "reviewed by hand", &c]);
    e.b(&["update-ref", "-d", "refs/heads/tmp"]);
    e.install_hook("pre-receive");
    e.install_hook("post-receive");
    assert_accepted(e.push(&["main"]));
    let n = note(&e, &c).unwrap();
    assert!(n.starts_with("reviewed by hand\n"), "{n}");
    assert!(n.contains("w.pkl: safe (pickle)"), "{n}");
}

#[test]
fn without_pre_receive_results_post_receive_works_them_out() {
    let e = Env::new();
    e.remove_hook("pre-receive");
    e.install_hook("post-receive");
    e.write("m/w.pkl", GOOD_PICKLE);
    let c = e.commit("model");
    assert_accepted(e.push(&["main"]));
    let n = note(&e, &c).expect("a note");
    assert!(n.contains("m/w.pkl: safe (pickle)"), "{n}");
    // With pre-receive, its results are handed over and consumed.
    e.install_hook("pre-receive");
    e.write("m/x.pkl", SUSPICIOUS_PICKLE);
    let c = e.commit("another");
    assert_accepted(e.push(&["main"]));
    assert!(note(&e, &c).unwrap().contains("m/x.pkl: suspicious (pickle)"));
    let left = std::fs::read_dir(e.bare.join("modelgate/handoff")).unwrap().count();
    assert_eq!(left, 0, "the handoff is removed once used");
}
