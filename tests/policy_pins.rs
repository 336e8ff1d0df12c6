//! The strictest action wins, and what may pass is said by content: `[[allow]]` entries
//! pinned to a file's sha256, its git blob id or its Git LFS oid, with a reason and an
//! expiry date, in `modelgate scan`, the push gate (real pushes) and `modelgate lfs scan`.

mod git_support;
use git_support::*;
use modelgate::policy::{Date, Policy, PolicyError};
use std::path::Path;
use std::process::{Command, Output};

fn modelgate(args: &[&str], cwd: &Path) -> Output {
    Command::new(BIN).args(args).current_dir(cwd).env_remove("MODELGATE_POLICY").output().unwrap()
}

/// A server with both hooks as `modelgate install` writes them, and `policy` in the repository.
fn gated(policy: &str) -> Env {
    let e = Env::new();
    e.remove_hook("pre-receive");
    e.install_gate(None, &[]);
    std::fs::write(e.bare.join("modelgate.toml"), policy).unwrap();
    e
}

fn blob_id(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, bytes).unwrap();
    let o = Command::new("git").args(["hash-object", "--no-filters"]).arg(&p).output().unwrap();
    show(&o.stdout).trim().to_string()
}

#[test]
fn a_later_milder_rule_does_not_open_a_protected_ref() {
    // The issue's case: main refuses pickles; a later rule tags everything suspicious in
    // this repository. Under "last rule wins" the pickle landed on main.
    let e = gated(
        r#"
[[rule]]
refs = ["refs/heads/main", "refs/tags/**"]
formats = ["pickle-based"]
action = "reject"
reason = "no pickle-based file on protected refs"

[[rule]]
repos = ["**/server.git"]
actions = { suspicious = "tag", safe = "allow" }
reason = "this repository only labels suspicious files"
"#,
    );
    e.write("models/custom.pkl", SUSPICIOUS_PICKLE);
    let c = e.commit("a pickle");
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("decided by policy rule[0] (line 2): no pickle-based file on protected refs"), "{out}");
    // On another branch the milder rule is all there is: tagged and accepted.
    let out = assert_accepted(e.push(&[&format!("{c}:refs/heads/dev")]));
    assert!(out.contains("warning: models/custom.pkl"), "{out}");
    // `policy check` says the later rule never makes a file pass on its own.
    let o = modelgate(&["policy", "check", "modelgate.toml"], &e.bare);
    let text = show(&o.stdout);
    assert!(
        text.contains("`rule[1].actions.safe`: sets `safe = \"allow\"`, which `[actions] safe` gives anyway"),
        "{text}"
    );
}

#[test]
fn pinned_allow_entries_in_the_push_gate() {
    let fixture = [EVIL_PICKLE, b"# fixture 1"].concat();
    let other = [EVIL_PICKLE, b"# fixture 2"].concat();
    let blob = blob_id(&fixture);
    let sha = sha256_hex(&other);
    let e = gated(&format!(
        r#"
[[rule]]
refs = ["refs/heads/main"]
formats = ["pickle-based"]
action = "reject"
reason = "no pickles on main"

[[allow]]
blob = "{blob}"
reason = "the scanner's own test fixture"

[[allow]]
sha256 = "sha256:{sha}"
reason = "the second fixture"
expires = 2999-12-31
"#
    ));
    // Both dangerous fixtures pass, on main too, wherever they are: the pin is the content.
    e.write("tests/fixtures/evil.pkl", &fixture);
    e.write("tests/fixtures/copy/evil2.pkl", &other);
    let c = e.commit("fixtures");
    let out = assert_accepted(e.push(&["main"]));
    assert!(!out.contains("rejected"), "{out}");
    let n = e.b(&["notes", "--ref", "refs/notes/modelgate", "show", &c]);
    assert!(n.contains("tests/fixtures/evil.pkl: dangerous (pickle)"), "the record still says what it is: {n}");
    // One byte more is another file: rejected, with the advice an admin needs.
    let mut changed = fixture.clone();
    changed.push(b'\n');
    e.write("tests/fixtures/evil.pkl", &changed);
    e.commit("changed fixture");
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("tests/fixtures/evil.pkl") && out.contains(BAD_CODE), "{out}");
    assert!(out.contains(&format!("[[allow]] blob = \"{}\"", blob_id(&changed))), "{out}");
    assert!(!out.contains("allowlist"), "no import allowlist advice for a dangerous file: {out}");

    // An expired entry no longer applies.
    std::fs::write(
        e.bare.join("modelgate.toml"),
        format!("[[allow]]\nsha256 = \"{}\"\nreason = \"was fine\"\nexpires = 2020-01-01\n", sha256_hex(&changed)),
    )
    .unwrap();
    assert_rejected(e.push(&["main"]));
    std::fs::write(
        e.bare.join("modelgate.toml"),
        format!("[[allow]]\nsha256 = \"{}\"\nreason = \"reviewed\"\n", sha256_hex(&changed)),
    )
    .unwrap();
    assert_accepted(e.push(&["main"]));
}

#[test]
fn pinned_lfs_objects_by_oid() {
    let e = Env::new();
    let root = e.dir.path().join("lfs");
    let oid = put_gitea_object(&root, BAD);
    let policy = format!(
        "[lfs]\nlayout = \"gitea\"\nroot = \"{}\"\n\n[[allow]]\nsha256 = \"{oid}\"\nreason = \"a known sample\"\n",
        root.display()
    );
    std::fs::write(e.bare.join("modelgate.toml"), &policy).unwrap();
    e.write("w.bin", &pointer(BAD));
    e.commit("lfs pointer");
    assert_accepted(e.push(&["main"]));
    let p = e.policy("p.toml", &policy);
    let o = Command::new(BIN)
        .args(["lfs", "scan", "--policy", p.to_str().unwrap(), "--git-dir", e.bare.to_str().unwrap(), &oid])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}{}", show(&o.stdout), show(&o.stderr));
    assert!(show(&o.stdout).contains("dangerous (pickle) allow"), "{}", show(&o.stdout));
}

#[test]
fn pinned_allow_entries_in_scan() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("evil.pkl"), EVIL_PICKLE).unwrap();
    std::fs::write(dir.path().join("evil2.pkl"), [EVIL_PICKLE, b"x"].concat()).unwrap();
    let o = modelgate(&["scan", "evil.pkl"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    for pin in [format!("sha256 = \"{}\"", sha256_hex(EVIL_PICKLE)), format!("blob = \"{}\"", blob_id(EVIL_PICKLE))] {
        std::fs::write(dir.path().join("p.toml"), format!("[[allow]]\n{pin}\nreason = \"fixture\"\n")).unwrap();
        let o = modelgate(&["scan", "--policy", "p.toml", "--format", "json", "evil.pkl", "evil2.pkl"], dir.path());
        assert_eq!(o.status.code(), Some(1), "evil2.pkl is another file");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let f = &v["files"][0];
        assert_eq!((f["verdict"].as_str(), f["decision"].as_str()), (Some("dangerous"), Some("allow")), "{v}");
        assert_eq!(f["allowed_by"]["reason"], "fixture");
        assert_eq!(v["files"][1]["decision"], "reject");
    }
    // Expired: rejected again, and said.
    std::fs::write(
        dir.path().join("p.toml"),
        format!("[[allow]]\nsha256 = \"{}\"\nreason = \"fixture\"\nexpires = 2001-02-03\n", sha256_hex(EVIL_PICKLE)),
    )
    .unwrap();
    let o = modelgate(&["scan", "--policy", "p.toml", "evil.pkl"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(show(&o.stderr).contains("allow[0] (p.toml:1) expired on 2001-02-03"), "{}", show(&o.stderr));
}

#[test]
fn pin_entries_are_validated() {
    let problems = |text: &str| match Policy::parse(text, "p.toml") {
        Ok(_) => panic!("should be invalid: {text}"),
        Err(PolicyError { problems, .. }) => problems,
    };
    let has = |ps: &[modelgate::policy::Problem], key: &str, needle: &str| {
        assert!(ps.iter().any(|p| p.key == key && p.message.contains(needle)), "{key} {needle}: {ps:#?}");
    };
    let ps = problems("[[allow]]\nsha256 = \"abc\"\nreason = \"r\"\n");
    has(&ps, "allow[0].sha256", "not a sha256");
    let ps = problems("[[allow]]\nblob = \"zz\"\nreason = \"r\"\n");
    has(&ps, "allow[0].blob", "not a git blob id");
    let ps = problems(&format!("[[allow]]\nblob = \"{}\"\n", "a".repeat(40)));
    has(&ps, "allow[0].reason", "`reason` is required");
    let ps = problems(&format!("[[allow]]\nname = \"x.y\"\nsha256 = \"{}\"\nreason = \"r\"\n", "a".repeat(64)));
    has(&ps, "allow[0].sha256", "set one of `name`, `sha256` or `blob`");
    let ps = problems(&format!("[[deny]]\nsha256 = \"{}\"\nreason = \"r\"\n", "a".repeat(64)));
    has(&ps, "deny[0].sha256", "only `[[allow]]`");
    let ps = problems(&format!("[[allow]]\nblob = \"{}\"\nreason = \"r\"\nexpires = 2027-02-30\n", "a".repeat(40)));
    assert!(ps.iter().any(|p| p.line == 4 && p.message.contains("invalid date")), "{ps:#?}");
    let ps = problems(&format!("[[allow]]\nblob = \"{}\"\nreason = \"r\"\nexpires = \"2027-02-30\"\n", "a".repeat(40)));
    has(&ps, "allow[0].expires", "expected a date");
    let ps = problems(&format!("[[allow]]\nblob = \"{}\"\nreason = \"r\"\nexpires = 20270101\n", "a".repeat(40)));
    has(&ps, "allow[0].expires", "found integer");
    let ps = problems(&format!(
        "[[allow]]\nblob = \"{}\"\nreason = \"r\"\nexpires = 2027-01-01T00:00:00Z\n",
        "a".repeat(40)
    ));
    has(&ps, "allow[0].expires", "a date with a time");

    // Upper case, a `sha256:` prefix and a date as a string are fine.
    let text = format!(
        "[[allow]]\nsha256 = \"sha256:{}\"\nreason = \"r\"\nexpires = \"2030-06-01\"\n\n[[allow]]\nname = \"mylib.Layer\"\nreason = \"r\"\nexpires = 2001-01-01\n",
        "AB".repeat(32)
    );
    let p = Policy::parse(&text, "p").unwrap();
    assert_eq!(p.pinned[0].pin, modelgate::policy::Pin::Sha256("ab".repeat(32)));
    assert_eq!(p.pinned[0].expires, Date::new(2030, 6, 1));
    // An expired import name is not applied, and is remembered for warnings.
    assert_eq!(p.expired.len(), 1);
    assert_eq!(p.lists_digest(), Policy::parse("", "e").unwrap().lists_digest());
    // Pins change decisions, not verdicts: they are no part of the cache key.
    let q = Policy::parse(&text.replace("AB", "CD"), "q").unwrap();
    assert_ne!(p.pinned[0].pin, q.pinned[0].pin);
    assert_eq!(p.lists_digest(), q.lists_digest());
}
