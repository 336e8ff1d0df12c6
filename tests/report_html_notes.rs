//! `modelgate report --notes`: the verdicts the push gate recorded as git notes, read back
//! into records (and the HTML report), decided with the repository's policy.

mod git_support;

use git_support::{show, Env, BIN, GOOD_PICKLE, SUSPICIOUS_PICKLE};
use serde_json::Value;
use std::process::Command;

#[test]
fn notes_of_accepted_pushes_become_records() {
    let env = Env::new();
    env.install_hook("post-receive");
    env.write("models/good.pkl", GOOD_PICKLE);
    env.write("README.md", b"readme\n");
    let first = env.commit("good");
    env.write("models/odd name: (x).pkl", SUSPICIOUS_PICKLE);
    let second = env.commit("suspicious");
    let (ok, out) = env.push(&["main"]);
    assert!(ok, "{out}");
    assert!(!env.b(&["notes", "--ref=refs/notes/modelgate", "list"]).is_empty(), "no notes written");

    let o = Command::new(BIN).args(["report", "--notes", "--format", "jsonl"]).arg(&env.bare).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o.stderr));
    let lines: Vec<Value> = show(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let files: Vec<&Value> = lines.iter().filter(|l| l["type"] == "file").collect();
    assert_eq!(files.len(), 2, "{lines:?}");
    let good = files.iter().find(|f| f["path"] == "models/good.pkl").unwrap();
    assert_eq!(good["commit"], first.as_str());
    assert_eq!((good["verdict"].as_str(), good["decision"].as_str()), (Some("safe"), Some("allow")));
    assert_eq!(good["blob"], env.hash_object(GOOD_PICKLE).as_str());
    assert_eq!(good["size"], GOOD_PICKLE.len());
    let odd = files.iter().find(|f| f["path"] == "models/odd name: (x).pkl").unwrap();
    assert_eq!(odd["commit"], second.as_str());
    assert_eq!((odd["verdict"].as_str(), odd["decision"].as_str()), (Some("suspicious"), Some("tag")));
    assert_eq!(odd["imports"][0], "__main__.MyModel");
    assert_eq!(odd["codes"][0], "pickle-import-unknown");
    let summary = lines.last().unwrap();
    assert_eq!((summary["files"].as_u64(), summary["tag"].as_u64()), (Some(2), Some(1)));

    // Decided with another policy: the recorded verdicts, today's decision.
    let strict = env.policy("strict.toml", "[actions]\nsuspicious = \"reject\"\n");
    let o = Command::new(BIN)
        .args(["report", "--notes", "--format", "jsonl", "--policy"])
        .arg(&strict)
        .arg(&env.bare)
        .output()
        .unwrap();
    let lines: Vec<Value> = show(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let odd = lines.iter().find(|f| f["path"] == "models/odd name: (x).pkl").unwrap();
    assert_eq!(odd["decision"], "reject");

    // The HTML report of the same notes.
    let html = env.dir.path().join("notes.html");
    let o = Command::new(BIN).args(["report", "--notes", "-o"]).arg(&html).arg(&env.bare).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o.stderr));
    let text = std::fs::read_to_string(&html).unwrap();
    assert!(text.contains("models/odd name: (x).pkl"));
    assert!(text.contains("Detected Pickle imports (1)"));
    assert!(text.contains("data-count=\"suspicious\"><span class=\"n\">1</span>"));

    // A repository without notes has no records; a damaged note is an error, not a guess.
    env.b(&["notes", "--ref=refs/notes/modelgate", "add", "-f", "-m", "modelgate 0\nnot a file line", &first]);
    let o = Command::new(BIN).args(["report", "--notes"]).arg(&env.bare).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(show(&o.stderr).contains("cannot read the line"), "{}", show(&o.stderr));
}
