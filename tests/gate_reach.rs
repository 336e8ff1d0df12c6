//! Every object a push stores is judged, whether a ref reaches it or not (a pack carrying a
//! commit that only a gitlink names, which `git clone --recurse-submodules` fetches by id),
//! and ref-scoped rules hold on every path into the ref (fast-forwards to commits already on
//! the server, tags on existing commits, one commit pushed to several refs).

mod git_support;
use git_support::*;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

/// Send a pack made of everything reachable from `revs` with one ref update, straight to
/// `git receive-pack` (a client that puts extra objects in its pack). Returns
/// (ref accepted, everything receive-pack said).
fn raw_push(e: &Env, server: &Path, new: &str, refname: &str, revs: &[&str]) -> (bool, String) {
    let mut po = e.git(&e.work);
    po.args(["pack-objects", "-q", "--revs", "--stdout"]).stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = po.spawn().unwrap();
    child.stdin.take().unwrap().write_all(format!("{}\n", revs.join("\n")).as_bytes()).unwrap();
    let pack = child.wait_with_output().unwrap();
    assert!(pack.status.success());
    let zero = "0".repeat(new.len());
    let line = format!("{zero} {new} {refname}\0report-status\n");
    let mut req = format!("{:04x}{line}0000", line.len() + 4).into_bytes();
    req.extend_from_slice(&pack.stdout);
    let mut rp = e.git(&e.work);
    rp.arg("receive-pack").arg(server).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = rp.spawn().unwrap();
    child.stdin.take().unwrap().write_all(&req).unwrap();
    let o = child.wait_with_output().unwrap();
    let out = format!("{}{}", show(&o.stdout), show(&o.stderr));
    (out.contains(&format!("ok {refname}")), out)
}

fn plain_server(e: &Env) -> std::path::PathBuf {
    let p = e.dir.path().join("plain.git");
    e.run(e.dir.path(), &["init", "-q", "--bare", "plain.git"]);
    e.run(&p, &["symbolic-ref", "HEAD", "refs/heads/main"]);
    p
}

/// A commit (on no branch) holding `evil.pkl`, and `main` with a submodule at `sub`
/// whose gitlink names it and whose URL is `server` itself.
fn gitlink_into_itself(e: &Env, server: &Path) -> (String, String) {
    e.write("evil.pkl", EVIL_PICKLE);
    let hidden = e.commit("hidden");
    e.w(&["checkout", "-q", "--orphan", "main2"]);
    e.w(&["rm", "-q", "-rf", "."]);
    e.write(
        ".gitmodules",
        format!("[submodule \"sub\"]\n\tpath = sub\n\turl = file://{}\n", server.display()).as_bytes(),
    );
    e.w(&["add", ".gitmodules"]);
    e.w(&["update-index", "--add", "--cacheinfo", &format!("160000,{hidden},sub")]);
    e.w(&["commit", "-q", "-m", "main with a submodule"]);
    let main = e.w(&["rev-parse", "HEAD"]);
    (hidden, main)
}

#[test]
fn a_commit_only_a_gitlink_names_is_judged() {
    // Against a server without the gate, a recursive clone gets the payload.
    let e = Env::new();
    let plain = plain_server(&e);
    let (hidden, main) = gitlink_into_itself(&e, &plain);
    let (ok, out) = raw_push(&e, &plain, &main, "refs/heads/main", &[&main, &hidden]);
    assert!(ok, "{out}");
    assert_eq!(e.run(&plain, &["branch", "--contains", &hidden]), "", "no ref reaches it");
    let victim = e.dir.path().join("victim");
    e.run(
        e.dir.path(),
        &[
            "-c",
            "protocol.file.allow=always",
            "-c",
            "core.autocrlf=true",
            "clone",
            "-q",
            "--recurse-submodules",
            &format!("file://{}", plain.display()),
            victim.to_str().unwrap(),
        ],
    );
    assert_eq!(std::fs::read(victim.join("sub/evil.pkl")).unwrap(), EVIL_PICKLE);

    // The gate walks the gitlink's target and judges it at its path in the checkout.
    let e = Env::new();
    let (hidden, main) = gitlink_into_itself(&e, &e.bare);
    let (ok, out) = raw_push(&e, &e.bare, &main, "refs/heads/main", &[&main, &hidden]);
    assert!(!ok, "{out}");
    assert!(out.contains("sub/evil.pkl") && out.contains(BAD_CODE), "{out}");
    assert_eq!(e.server_ref("refs/heads/main"), None);
}

#[test]
fn a_blob_no_ref_reaches_is_judged_and_shown_by_id() {
    let e = Env::new();
    e.write("README.md", b"hello\n");
    let main = e.commit("readme");
    let blob = e.hash_object(EVIL_PICKLE);
    let (ok, out) = raw_push(&e, &e.bare, &main, "refs/heads/main", &[&main, &blob]);
    assert!(!ok, "{out}");
    assert!(out.contains(&blob) && out.contains("reached by no ref") && out.contains(BAD_CODE), "{out}");
    // Without the extra blob the same update goes through.
    let (ok, out) = raw_push(&e, &e.bare, &main, "refs/heads/main", &[&main]);
    assert!(ok, "{out}");
}

#[test]
fn an_unreachable_commit_in_the_pack_is_judged_with_its_paths() {
    let e = Env::new();
    e.write("README.md", b"hello\n");
    let main = e.commit("readme");
    e.w(&["checkout", "-q", "-b", "side"]);
    e.write("deep/dir/model.pkl", EVIL_PICKLE);
    let side = e.commit("side");
    let (ok, out) = raw_push(&e, &e.bare, &main, "refs/heads/main", &[&main, &side]);
    assert!(!ok, "{out}");
    assert!(out.contains("deep/dir/model.pkl") && out.contains("reached by no ref"), "{out}");
}

const REF_RULE: &str = r#"
[[rule]]
refs = ["refs/heads/main", "refs/tags/**"]
formats = ["pickle-based"]
action = "reject"
reason = "no pickles on main or in releases"
"#;

fn ref_gated() -> Env {
    let e = Env::new();
    std::fs::write(e.bare.join("modelgate.toml"), REF_RULE).unwrap();
    e.write("README.md", b"hello\n");
    e.commit("base");
    assert_accepted(e.push(&["main"]));
    e
}

#[test]
fn fast_forward_to_a_commit_already_on_a_branch() {
    let e = ref_gated();
    e.w(&["checkout", "-q", "-b", "dev"]);
    e.write("m/model.pkl", GOOD_PICKLE);
    e.commit("a pickle on dev");
    e.write("m/model.pkl", b"gone again\n");
    e.commit("and replaced");
    // dev is not protected.
    assert_accepted(e.push(&["dev"]));
    // main moves to dev's tip: no new object, but the pickle enters main's history.
    let out = assert_rejected(e.push(&["dev:main"]));
    assert!(out.contains("m/model.pkl") && out.contains("no pickles on main"), "{out}");
    assert!(out.contains("refs/heads/main"), "{out}");
}

#[test]
fn a_tag_on_an_existing_commit() {
    let e = ref_gated();
    e.w(&["checkout", "-q", "-b", "dev"]);
    e.write("m/model.pkl", GOOD_PICKLE);
    e.commit("a pickle on dev");
    assert_accepted(e.push(&["dev"]));
    e.w(&["tag", "v1"]);
    let out = assert_rejected(e.push(&["refs/tags/v1"]));
    assert!(out.contains("m/model.pkl") && out.contains("no pickles on main"), "{out}");
    e.w(&["tag", "-a", "-m", "release", "v2"]);
    let out = assert_rejected(e.push(&["refs/tags/v2"]));
    assert!(out.contains("m/model.pkl"), "{out}");
    // A tag on a commit without pickles in its history is fine.
    e.w(&["tag", "v0", "main"]);
    assert_accepted(e.push(&["refs/tags/v0"]));
}

#[test]
fn one_new_commit_pushed_to_several_refs() {
    let e = ref_gated();
    e.write("m/model.pkl", GOOD_PICKLE);
    e.commit("a pickle");
    // `feature` comes first and walks the commit; main's rule must still see it.
    let out = assert_rejected(e.push(&["HEAD:refs/heads/feature", "HEAD:refs/heads/main"]));
    assert!(out.contains("m/model.pkl") && out.contains("no pickles on main"), "{out}");
    // To feature alone, it is accepted.
    assert_accepted(e.push(&["HEAD:refs/heads/feature"]));
}

#[test]
fn without_ref_rules_no_per_ref_walk_is_needed() {
    // The same fast-forward with a policy that scopes nothing by ref is accepted.
    let e = Env::new();
    e.write("README.md", b"hello\n");
    e.commit("base");
    assert_accepted(e.push(&["main"]));
    e.w(&["checkout", "-q", "-b", "dev"]);
    e.write("m/model.pkl", GOOD_PICKLE);
    e.commit("a pickle on dev");
    assert_accepted(e.push(&["dev"]));
    let out = assert_accepted(e.push(&["dev:main"]));
    assert!(!out.contains("m/model.pkl"), "{out}");
}
