//! What the pusher is told, through real pushes: how to take a file out of history when it
//! is in an earlier commit, allowlist advice only where it helps, no server path ever, and a
//! misconfigured LFS store named as the server's fault (the admin reads the audit log).

mod git_support;
use git_support::*;

fn gated(policy: &str) -> Env {
    let e = Env::new();
    std::fs::write(e.bare.join("modelgate.toml"), policy).unwrap();
    e
}

fn remote(out: &str) -> String {
    out.lines().filter(|l| l.starts_with("remote:")).collect::<Vec<_>>().join("\n")
}

#[test]
fn a_file_in_an_earlier_commit_is_taken_out_of_history() {
    let e = gated("");
    e.write("models/evil.pkl", BAD);
    let bad = e.commit("add a model");
    // Deleting it in a later commit does not take it out of the push.
    e.w(&["rm", "-q", "models/evil.pkl"]);
    e.write("README.md", b"removed the model\n");
    e.commit("remove it again");
    let out = assert_rejected(e.push(&["main"]));
    let s = short(&bad);
    assert!(out.contains(&format!("models/evil.pkl (commit {s} on refs/heads/main)")), "{out}");
    assert!(out.contains("deleting it in a new commit leaves it in history"), "{out}");
    assert!(out.contains(&format!("git rebase -i {s}~1")), "{out}");
    assert!(out.contains("git filter-repo --path models/evil.pkl --invert-paths"), "{out}");
    // Following the advice works.
    let o = e
        .git(&e.work)
        .env("FILTER_BRANCH_SQUELCH_WARNING", "1")
        .args(["filter-branch", "-f", "--index-filter", "git rm -q --cached --ignore-unmatch models/evil.pkl", "HEAD"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o.stderr));
    assert_accepted(e.push(&["main"]));

    // In the pushed commit itself, amending is enough, and that is what is said.
    e.write("x.pkl", BAD);
    e.commit("tip");
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("git rm --cached x.pkl") && out.contains("git commit --amend"), "{out}");
    assert!(!out.contains("rebase"), "{out}");
}

#[test]
fn allowlist_advice_only_where_an_entry_would_help() {
    let e = gated(
        r#"
[actions]
suspicious = "reject"

[[rule]]
paths = ["release/**"]
formats = ["pickle-based"]
action = "reject"
reason = "releases carry no pickles"
"#,
    );
    e.write("dev/custom.pkl", SUSPICIOUS_PICKLE);
    e.commit("custom class");
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("ask an admin to allowlist them"), "allowlisting would help here: {out}");
    assert!(out.contains("fix: check the name; if the library is trusted, add it to the policy allowlist"), "{out}");
    std::fs::create_dir_all(e.work.join("release")).unwrap();
    e.w(&["mv", "dev/custom.pkl", "release/custom.pkl"]);
    e.w(&["commit", "-q", "--amend", "-m", "released"]);
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("releases carry no pickles"), "{out}");
    let fixes: Vec<&str> = out.lines().filter(|l| l.contains("fix:")).collect();
    assert!(!fixes.iter().any(|l| l.contains("allowlist")), "a rule refuses pickles whatever they import: {out}");
}

#[test]
fn server_paths_are_never_shown() {
    let e = Env::new();
    let lfs_root = e.dir.path().join("srv-lfs-store");
    let policy = e.policy(
        "site-policy.toml",
        &format!(
            "[lfs]\nlayout = \"gitea\"\nroot = \"{}\"\n\n[[rule]]\nrepos = [\"{}\"]\nformats = [\"pickle-based\"]\naction = \"reject\"\nreason = \"no pickles here\"\n",
            lfs_root.display(),
            e.bare.canonicalize().unwrap().display()
        ),
    );
    e.install_gate(Some(&policy), &["--force"]);
    e.write("m.pkl", GOOD_PICKLE);
    e.write("w.bin", &pointer(b"the object was never stored"));
    e.commit("pickle and pointer");
    let out = assert_rejected(e.push(&["main"]));
    let said = remote(&out);
    assert!(said.contains("no pickles here"), "{out}");
    for secret in [e.dir.path().to_path_buf(), e.dir.path().canonicalize().unwrap(), lfs_root.clone()] {
        assert!(!said.contains(&secret.display().to_string()), "{} shown:\n{said}", secret.display());
    }
    // The missing store is the server's fault, said as such; the admin gets the details.
    assert!(said.contains("server misconfiguration") && !said.contains("was never uploaded"), "{said}");
    let audit = e.audit();
    let rec = audit.iter().find(|r| r["event"] == "lfs-store-misconfigured").expect("told the admin");
    assert!(rec["error"].as_str().unwrap().contains(&lfs_root.display().to_string()), "{rec}");
    // With the store in place the same pointer is an upload the pusher forgot.
    std::fs::create_dir_all(&lfs_root).unwrap();
    e.w(&["rm", "-q", "m.pkl"]);
    e.w(&["commit", "-q", "--amend", "-m", "pointer"]);
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("lfs-object-missing") && out.contains("git lfs push --all"), "{out}");
}
