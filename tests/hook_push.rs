//! Real pushes through a real pre-receive hook that execs the modelgate binary.

mod git_support;
use git_support::*;

#[test]
fn new_branch_benign_accepted_bad_rejected_with_details() {
    let e = Env::new();
    e.write("README.md", b"hello\n");
    e.commit("benign");
    let out = assert_accepted(e.push(&["main"]));
    assert!(out.contains("modelgate: 1 new file(s) checked"), "{out}");

    e.w(&["checkout", "-q", "-b", "feature"]);
    e.write("models/archive.model", BAD);
    let c = e.commit("bad");
    let out = assert_rejected(e.push(&["feature"]));
    assert!(out.contains("models/archive.model"), "{out}");
    assert!(out.contains(&format!("commit {}", short(&c))), "{out}");
    assert!(out.contains("refs/heads/feature"), "{out}");
    assert!(out.contains(BAD_SHOWN), "{out}");
    assert!(out.contains(BAD_CODE), "{out}");
    assert!(out.contains(BAD_FIX), "{out}");
    assert!(out.contains(&format!("evidence: {BAD_EVIDENCE}")), "{out}");
    assert!(out.contains("safetensors"), "{out}");
    assert_eq!(e.server_ref("refs/heads/feature"), None);
}

#[test]
fn fast_forward_and_several_refs_in_one_push() {
    let e = Env::new();
    e.write("a.txt", b"a\n");
    let base = e.commit("base");
    assert_accepted(e.push(&["main"]));

    e.write("b.txt", b"b\n");
    e.commit("ff");
    e.w(&["branch", "other", &base]);
    e.w(&["checkout", "-q", "other"]);
    e.write("deep/dir/x.model", BAD);
    e.commit("bad on other");
    e.w(&["checkout", "-q", "main"]);
    // One bad ref rejects the whole push: neither ref moves.
    let out = assert_rejected(e.push(&["main", "other"]));
    assert!(out.contains("deep/dir/x.model") && out.contains("refs/heads/other"), "{out}");
    assert_eq!(e.server_ref("refs/heads/main").as_deref(), Some(base.as_str()));
    assert_eq!(e.server_ref("refs/heads/other"), None);
    let out = assert_accepted(e.push(&["main"]));
    assert!(out.contains("1 new file(s) checked"), "only the new blob is checked: {out}");
}

#[test]
fn force_push_scans_the_rewritten_history() {
    let e = Env::new();
    e.write("a.txt", b"a\n");
    e.commit("one");
    e.write("b.txt", b"b\n");
    e.commit("two");
    assert_accepted(e.push(&["main"]));

    e.w(&["reset", "-q", "--hard", "HEAD~1"]);
    e.write("c.model", BAD);
    e.commit("rewritten");
    let out = assert_rejected(e.push(&["--force", "main"]));
    assert!(out.contains("c.model"), "{out}");
    e.w(&["reset", "-q", "--hard", "HEAD~1"]);
    e.write("c.txt", b"fine\n");
    e.commit("rewritten benign");
    assert_accepted(e.push(&["--force", "main"]));
}

#[test]
fn tags_annotated_lightweight_to_blob_and_tree() {
    let e = Env::new();
    e.write("a.txt", b"a\n");
    e.commit("base");
    assert_accepted(e.push(&["main"]));

    // A commit on no branch, reachable only through a tag.
    e.w(&["checkout", "-q", "--detach"]);
    e.write("tagged.model", BAD);
    let c = e.commit("tagged only");
    e.w(&["tag", "-a", "-m", "annotated", "v1", &c]);
    let out = assert_rejected(e.push(&["refs/tags/v1"]));
    assert!(out.contains("tagged.model") && out.contains(&short(&c).to_string()), "{out}");
    e.w(&["tag", "light", &c]);
    assert_rejected(e.push(&["refs/tags/light"]));

    // A tag of a bad blob, and of a tree holding one.
    let blob = e.hash_object(BAD);
    e.w(&["tag", "-a", "-m", "blob tag", "blobtag", &blob]);
    let out = assert_rejected(e.push(&["refs/tags/blobtag"]));
    assert!(out.contains(&format!("blob {} at refs/tags/blobtag", short(&blob))), "{out}");
    let tree = e.w(&["rev-parse", &format!("{c}^{{tree}}")]);
    e.w(&["tag", "-a", "-m", "tree tag", "treetag", &tree]);
    let out = assert_rejected(e.push(&["refs/tags/treetag"]));
    assert!(out.contains("tagged.model"), "{out}");
    // A lightweight ref straight at a blob.
    let out = assert_rejected(e.push(&[&format!("{blob}:refs/tags/rawblob")]));
    assert!(out.contains("refs/tags/rawblob"), "{out}");

    // Benign tags pass, including a tag of a commit the server already has.
    e.w(&["tag", "-a", "-m", "ok", "v0", "main"]);
    assert_accepted(e.push(&["refs/tags/v0"]));
    let good = e.hash_object(b"just text\n");
    e.w(&["tag", "-a", "-m", "ok blob", "goodblob", &good]);
    assert_accepted(e.push(&["refs/tags/goodblob"]));
}

#[test]
fn deletion_is_accepted_without_scanning() {
    let e = Env::new();
    e.write("a.txt", b"a\n");
    e.commit("base");
    e.w(&["branch", "gone"]);
    assert_accepted(e.push(&["main", "gone"]));
    let out = assert_accepted(e.push(&["--delete", "gone"]));
    assert!(!out.contains("checked"), "{out}");
    assert_eq!(e.server_ref("refs/heads/gone"), None);
    // A branch created at a commit the server has brings nothing new.
    e.w(&["branch", "again"]);
    let out = assert_accepted(e.push(&["again"]));
    assert!(!out.contains("checked"), "{out}");
}

#[test]
fn merge_commits_and_evil_merges() {
    let e = Env::new();
    e.write("a.txt", b"a\n");
    e.commit("base");
    assert_accepted(e.push(&["main"]));
    e.w(&["checkout", "-q", "-b", "side"]);
    e.write("side.model", BAD);
    e.commit("side bad");
    e.w(&["checkout", "-q", "main"]);
    e.write("m.txt", b"m\n");
    e.commit("main moves");
    e.w(&["merge", "-q", "--no-edit", "side"]);
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("side.model"), "{out}");

    // An evil merge: the bad file is in neither parent, only in the merge commit.
    e.w(&["reset", "-q", "--hard", "origin/main"]);
    e.w(&["checkout", "-q", "-B", "side2", "main~0"]);
    e.write("s2.txt", b"s2\n");
    e.commit("side2");
    e.w(&["checkout", "-q", "main"]);
    e.write("m2.txt", b"m2\n");
    e.commit("main2");
    e.w(&["merge", "-q", "--no-commit", "--no-ff", "side2"]);
    e.write("evil.model", BAD);
    e.w(&["add", "evil.model"]);
    let merge = {
        e.w(&["commit", "-q", "--no-edit"]);
        e.w(&["rev-parse", "HEAD"])
    };
    assert_eq!(e.w(&["rev-list", "--parents", "-n1", "HEAD"]).split(' ').count(), 3);
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("evil.model") && out.contains(short(&merge)), "{out}");
}

#[test]
fn root_commit_on_orphan_branch() {
    let e = Env::new();
    e.write("a.txt", b"a\n");
    e.commit("base");
    assert_accepted(e.push(&["main"]));
    e.w(&["checkout", "-q", "--orphan", "orphan"]);
    e.w(&["rm", "-q", "-rf", "--cached", "."]);
    std::fs::remove_file(e.work.join("a.txt")).unwrap();
    e.write("root.model", BAD);
    let c = e.commit("root");
    assert_eq!(e.w(&["rev-list", "--count", "HEAD"]), "1");
    let out = assert_rejected(e.push(&["orphan"]));
    assert!(out.contains("root.model") && out.contains(short(&c)), "{out}");
}

#[test]
fn renames_are_served_from_the_cache() {
    let e = Env::new();
    e.write("m/weights.pkl", GOOD_PICKLE);
    e.write("notes.txt", b"text\n");
    e.commit("model");
    let out = assert_accepted(e.push(&["main"]));
    assert!(out.contains("2 new file(s) checked (0 from cache)"), "{out}");
    e.w(&["mv", "m/weights.pkl", "m/renamed.pkl"]);
    e.commit("rename");
    let out = assert_accepted(e.push(&["main"]));
    assert!(out.contains("1 new file(s) checked (1 from cache)"), "{out}");
    assert!(e.bare.join("modelgate/cache").is_dir());
}

#[test]
fn more_than_100_objects_arrive_packed() {
    let e = Env::new();
    for i in 0..150 {
        e.write(format!("data/file{i:03}.txt"), format!("file {i}\n").as_bytes());
    }
    e.write("data/zzz.model", BAD);
    e.commit("many");
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("data/zzz.model"), "{out}");
    std::fs::remove_file(e.work.join("data/zzz.model")).unwrap();
    e.w(&["commit", "-q", "--amend", "-a", "-m", "many benign"]);
    let out = assert_accepted(e.push(&["main"]));
    assert!(out.contains("150 new file(s) checked"), "{out}");
}

#[test]
fn sha256_repository() {
    let e = Env::with_format("sha256");
    e.write("a.txt", b"a\n");
    e.commit("base");
    assert_accepted(e.push(&["main"]));
    e.write("x/bad.model", BAD);
    let c = e.commit("bad");
    assert_eq!(c.len(), 64);
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("x/bad.model") && out.contains(short(&c)), "{out}");
}

#[test]
fn pushed_replace_refs_do_not_change_what_is_scanned() {
    let e = Env::new();
    e.write("a.txt", b"a\n");
    e.commit("base");
    assert_accepted(e.push(&["main"]));
    // First a replace ref that maps the (future) bad blob to a benign one...
    let bad = e.hash_object(BAD);
    let good = e.hash_object(b"benign stand-in\n");
    e.w(&["replace", &bad, &good]);
    assert_accepted(e.push(&[&format!("refs/replace/{bad}")]));
    assert_eq!(e.server_ref(&format!("refs/replace/{bad}")).as_deref(), Some(good.as_str()));
    // ...then the bad blob itself: the gate must read the real bytes.
    e.write("swap.model", BAD);
    e.commit("bad behind a replace ref");
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("swap.model") && out.contains(BAD_CODE), "{out}");
    // Both in one push as well.
    e.w(&["replace", "-d", &bad]);
    let good2 = e.hash_object(b"another stand-in\n");
    e.w(&["replace", "-f", &bad, &good2]);
    let out = assert_rejected(e.push(&["--force", "main", &format!("+refs/replace/{bad}")]));
    assert!(out.contains("swap.model"), "{out}");
}

#[test]
fn control_characters_in_names_are_escaped() {
    let e = Env::new();
    let name = "evil\x1b[2J\x1b]0;owned\x07name\r.model";
    e.write(name, BAD);
    e.commit("bad name");
    let out = assert_rejected(e.push(&["main"]));
    assert!(!out.contains('\x1b') && !out.contains('\x07'), "raw control characters reached the pusher: {out:?}");
    assert!(out.contains("evil\\x1b[2J\\x1b]0;owned\\x07name\\x0d.model"), "{out}");
}

#[test]
fn gitlab_lines_are_prefixed() {
    let e = Env::new();
    e.write("bad.model", BAD);
    e.commit("bad");
    let out = assert_rejected(e.push_env(&["main"], &[("GL_ID", "user-1"), ("GL_PROJECT_PATH", "g/p")]));
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("remote: ")).collect();
    assert!(!lines.is_empty());
    for l in lines {
        assert!(l.starts_with("remote: GL-HOOK-ERR: "), "{l}");
    }
}

#[test]
fn rejections_are_audited() {
    let e = Env::new();
    e.write("bad.model", BAD);
    e.commit("bad");
    assert_rejected(e.push(&["main"]));
    let log = std::fs::read_to_string(e.bare.join("modelgate/audit.log")).unwrap();
    let v: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(v["event"], "rejected");
    assert_eq!(v["path"], "bad.model");
    assert_eq!(v["verdict"], BAD_VERDICT);
    assert_eq!(v["codes"][0], BAD_CODE);
}

#[test]
fn push_over_git_daemon() {
    let e = Env::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = e.dir.path().to_path_buf();
    let mut daemon = e
        .git(&base)
        .args([
            "daemon",
            "--export-all",
            "--enable=receive-pack",
            "--reuseaddr",
            "--listen=127.0.0.1",
            &format!("--port={port}"),
            &format!("--base-path={}", base.display()),
            &base.display().to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(&mut daemon);
    let url = format!("git://127.0.0.1:{port}/server.git");
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(up, "git daemon did not start");
    e.w(&["remote", "set-url", "origin", &url]);
    e.write("a.txt", b"a\n");
    e.commit("benign");
    assert_accepted(e.push(&["main"]));
    e.write("d.model", BAD);
    e.commit("bad");
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("d.model"), "{out}");
}

#[test]
fn refs_for_are_scanned_like_any_ref() {
    let e = Env::new();
    e.write("a.txt", b"a\n");
    e.commit("base");
    assert_accepted(e.push(&["main"]));
    e.write("review.model", BAD);
    e.commit("for review");
    let out = assert_rejected(e.push(&["HEAD:refs/for/main"]));
    assert!(out.contains("review.model") && out.contains("refs/for/main"), "{out}");
}

/// Needs the real pickle parser (a placeholder in this branch).
#[test]
fn dangerous_pickle_is_rejected_with_evidence() {
    let e = Env::new();
    e.write("models/evil.pkl", EVIL_PICKLE);
    let c = e.commit("evil pickle");
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("models/evil.pkl") && out.contains(short(&c)), "{out}");
    assert!(out.contains("DANGEROUS"), "{out}");
    assert!(out.contains("os.system('echo pwned')"), "{out}");
}

#[test]
fn one_new_blob_at_two_paths_in_two_commits_is_judged_once_with_every_place() {
    let e = Env::new();
    e.write("a.txt", b"a\n");
    e.commit("base");
    assert_accepted(e.push(&["main"]));
    e.write("x/one.model", BAD);
    e.write("y/deeper/two.model", BAD);
    let c1 = e.commit("twice");
    e.write("z/three.model", BAD);
    e.write("z/readme.txt", b"fine\n");
    let c2 = e.commit("and again");
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("push rejected: 1 file(s) failed"), "one blob, judged once: {out}");
    // Walk order is newest first: the first place is in the second commit.
    assert!(out.contains(&format!("z/three.model (commit {} on refs/heads/main)", short(&c2))), "{out}");
    assert!(out.contains(&format!("also at x/one.model (commit {})", short(&c1))), "{out}");
    assert!(out.contains(&format!("also at y/deeper/two.model (commit {})", short(&c1))), "{out}");
    let audit = e.audit();
    let places: Vec<&str> =
        audit.iter().filter(|r| r["event"] == "rejected").map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(places.len(), 3, "{audit:?}");
    for p in ["x/one.model", "y/deeper/two.model", "z/three.model"] {
        assert!(places.contains(&p), "{p} missing from {places:?}");
    }

    // The same with a benign blob: one judgement, no read from the cache for it.
    e.w(&["reset", "-q", "--hard", "HEAD~2"]);
    e.write("x/one.pkl", GOOD_PICKLE);
    e.write("y/two.pkl", GOOD_PICKLE);
    e.commit("twice");
    e.write("z/three.pkl", GOOD_PICKLE);
    e.commit("and again");
    let out = assert_accepted(e.push(&["main"]));
    assert!(out.contains("1 new file(s) checked (0 from cache)"), "{out}");
}

#[test]
fn an_old_subtree_added_again_comes_from_the_cache_and_deep_changes_are_found() {
    // Small pickles: judged files of a known format are cached (small text files are not).
    let pickle = |n: u8| vec![0x80, 4, b'K', n, b'.'];
    let e = Env::new();
    e.write("lib/a/b/c/model.pkl", &pickle(1));
    e.write("lib/a/b/c/notes.pkl", &pickle(3));
    e.write("lib/a/other.pkl", &pickle(4));
    e.write("lib/top.pkl", &pickle(5));
    let base = e.commit("base");
    let out = assert_accepted(e.push(&["main"]));
    assert!(out.contains("4 new file(s) checked (0 from cache)"), "{out}");

    e.w(&["rm", "-q", "-r", "lib"]);
    e.commit("drop lib");
    // Put lib back exactly, and next to it a copy that differs in one file three levels down.
    e.w(&["checkout", &base, "--", "lib"]);
    for f in ["a/b/c/notes.pkl", "a/other.pkl", "top.pkl"] {
        std::fs::create_dir_all(e.work.join("vendor").join(f).parent().unwrap()).unwrap();
        std::fs::copy(e.work.join("lib").join(f), e.work.join("vendor").join(f)).unwrap();
    }
    e.write("vendor/a/b/c/model.pkl", &pickle(2));
    let readd = e.commit("lib again, and a vendored copy");
    assert_eq!(e.w(&["rev-parse", &format!("{readd}:lib")]), e.w(&["rev-parse", &format!("{base}:lib")]));
    assert_eq!(
        e.w(&["rev-parse", &format!("{readd}:vendor/a/other.pkl")]),
        e.w(&["rev-parse", &format!("{base}:lib/a/other.pkl")])
    );
    let out = assert_accepted(e.push(&["main"]));
    // The four old blobs (at lib/ and, all but one, at vendor/) are judged from the cache;
    // only the changed pickle deep under vendor/ is read and scanned.
    assert!(out.contains("5 new file(s) checked (4 from cache)"), "{out}");

    // The same shape with a dangerous change deep down is rejected, naming it.
    e.w(&["reset", "-q", "--hard", "HEAD~1"]);
    e.w(&["checkout", &base, "--", "lib"]);
    e.write("vendor/a/b/c/model.pkl", BAD);
    e.write("vendor/a/other.pkl", &pickle(4));
    e.commit("lib again, and a bad copy");
    let out = assert_rejected(e.push(&["--force", "main"]));
    assert!(out.contains("vendor/a/b/c/model.pkl") && out.contains(BAD_CODE), "{out}");
    assert!(out.contains("push rejected: 1 file(s) failed"), "{out}");
}

/// Blobs over the streaming threshold (64 MiB) go through a temporary file that never keeps
/// a name: nothing is left in TMPDIR after a rejection, nor after a judgement abandoned at
/// its time budget while git is still streaming (the hook exits with that worker running).
#[test]
fn streamed_blobs_leave_no_temporary_files() {
    let e = Env::new();
    let tmp = e.dir.path().join("hook-tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(
        e.bare.join("hooks/pre-receive"),
        format!("#!/bin/sh\nTMPDIR='{}' exec '{BIN}' hook pre-receive\n", tmp.display()),
    )
    .unwrap();
    let left = || std::fs::read_dir(&tmp).unwrap().map(|f| f.unwrap().path()).collect::<Vec<_>>();
    let mut big = BAD.to_vec();
    big.resize(65 << 20, 0);
    e.write("big.model", &big);
    drop(big);
    e.commit("big");
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("big.model") && out.contains(BAD_CODE), "{out}");
    assert_eq!(left(), Vec::<std::path::PathBuf>::new());

    std::fs::write(e.bare.join("modelgate.toml"), "[gate]\nfile_timeout = \"1ms\"\ncache_dir = \"\"\n").unwrap();
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("gate-file-timeout") && out.contains("big.model"), "{out}");
    assert_eq!(left(), Vec::<std::path::PathBuf>::new());
}
