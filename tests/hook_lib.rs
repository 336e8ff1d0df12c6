//! The hook as a library and as a process outside a push: failing closed, decisions,
//! streaming big blobs, the verdict cache and configured LFS stores, on real repositories.

mod git_support;
use git_support::*;
use modelgate::git::{BlobReader, GateRepo, GitEnv};
use modelgate::hook::{pre_receive, Action, DefaultDecision, HookConfig, HookEnv, Judged};
use std::io::Write;
use std::process::{Command, Stdio};

/// Objects land on the server without the gate, under a ref that is then deleted, so the
/// server has them but no ref reaches them (as in a push being judged).
fn land_unreferenced(e: &Env, commit: &str) {
    e.remove_hook("pre-receive");
    assert_accepted(e.push(&[&format!("{commit}:refs/heads/landing")]));
    e.b(&["update-ref", "-d", "refs/heads/landing"]);
    e.install_hook("pre-receive");
}

fn run(e: &Env, config: &HookConfig, stdin: &str) -> (i32, String) {
    run_decide(e, config, &DefaultDecision, stdin)
}

fn run_decide(e: &Env, config: &HookConfig, decide: &dyn modelgate::hook::Decide, stdin: &str) -> (i32, String) {
    let env = HookEnv { git_dir: e.bare.clone(), ..Default::default() };
    let mut err = Vec::new();
    let code = pre_receive::run_io(&env, config, decide, &mut stdin.as_bytes(), &mut err);
    (code, show(&err))
}

fn create(commit: &str) -> String {
    let zero = "0".repeat(commit.len());
    format!("{zero} {commit} refs/heads/main\n")
}

fn binary(cwd: &std::path::Path, git_dir: &str, stdin: &[u8]) -> (i32, String) {
    let mut c = Command::new(BIN);
    c.args(["hook", "pre-receive"])
        .current_dir(cwd)
        .env("GIT_DIR", git_dir)
        .env_remove("GIT_QUARANTINE_PATH")
        .env_remove("GIT_OBJECT_DIRECTORY")
        .env_remove("GIT_ALTERNATE_OBJECT_DIRECTORIES")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let o = child.wait_with_output().unwrap();
    (o.status.code().unwrap_or(-1), show(&o.stderr))
}

#[test]
fn fails_closed_on_bad_input_and_missing_repository() {
    let e = Env::new();
    let (code, err) = binary(&e.bare, ".", b"this is not a ref update\n");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("push rejected") && err.contains("bad ref update on line 1"), "{err}");

    let (code, err) = binary(&e.bare, ".", format!("{} {} refs/heads/x\n", "a".repeat(40), "b".repeat(40)).as_bytes());
    assert_eq!(code, 1, "an unknown object must not pass: {err}");
    assert!(err.contains("push rejected"), "{err}");

    let nowhere = e.dir.path().join("no-such-repo");
    let (code, err) = binary(e.dir.path(), nowhere.to_str().unwrap(), b"");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot open repository"), "{err}");

    // A bad LFS configuration rejects too.
    let mut config = HookConfig::default();
    config.lfs.layout = modelgate::lfs::Layout::Gitea;
    e.write("a.txt", b"a\n");
    let c = e.commit("a");
    land_unreferenced(&e, &c);
    let (code, err) = run(&e, &config, &create(&c));
    assert_eq!(code, 1);
    assert!(err.contains("bad lfs configuration"), "{err}");
}

#[test]
fn decisions_come_from_the_decide_implementation() {
    let e = Env::new();
    e.write("x/a.model", BAD);
    let c = e.commit("bad");
    land_unreferenced(&e, &c);
    let config = HookConfig { cache_dir: None, audit_log: None, ..Default::default() };
    assert_eq!(run(&e, &config, &create(&c)).0, 1);
    let allow_bad = |b: &modelgate::git::NewBlob, j: &Judged| {
        if b.places[0].path == "x/a.model" && j.format == BAD_FORMAT {
            Action::Tag
        } else {
            Action::Reject
        }
    };
    let (code, err) = run_decide(&e, &config, &allow_bad, &create(&c));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning: x/a.model") && err.contains(BAD_CODE), "{err}");
}

#[test]
fn big_blobs_are_streamed_and_replace_refs_ignored() {
    let e = Env::new();
    e.write("a.txt", b"a\n");
    e.commit("base");
    assert_accepted(e.push(&["main"]));
    let bad = e.hash_object(BAD);
    let good = e.hash_object(b"stand-in\n");
    e.w(&["replace", &bad, &good]);
    assert_accepted(e.push(&[&format!("refs/replace/{bad}")]));
    e.write("big.model", BAD);
    let c = e.commit("bad");
    land_unreferenced(&e, &c);
    let stdin = format!("{} {c} refs/heads/main\n", e.server_ref("refs/heads/main").unwrap());
    for threshold in [1, 64 << 20] {
        let config = HookConfig { stream_threshold: threshold, cache_dir: None, ..Default::default() };
        let (code, err) = run(&e, &config, &stdin);
        assert_eq!(code, 1, "threshold {threshold}: {err}");
        assert!(err.contains("big.model") && err.contains(BAD_CODE), "{err}");
    }

    // Streamed and loaded bytes agree.
    let repo = GateRepo::open(&e.bare, &GitEnv::default()).unwrap();
    let id = modelgate::git::ObjectId::from_hex(bad.as_bytes()).unwrap();
    for threshold in [0, 1 << 20] {
        let mut r = BlobReader::new(repo.view().odb().unwrap(), repo.git_dir(), threshold);
        let blob = r.read(&id).unwrap();
        assert_eq!(blob.streamed, threshold == 0);
        assert_eq!(modelgate::source::read_up_to(blob.source.as_ref(), 0, 1000).unwrap(), BAD);
    }
}

#[test]
fn cached_verdicts_read_no_bytes() {
    let e = Env::new();
    e.write("model.pkl", GOOD_PICKLE);
    let c = e.commit("model");
    land_unreferenced(&e, &c);
    let config = HookConfig::default();
    let stdin = create(&c);
    let (code, err) = run(&e, &config, &stdin);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("(0 from cache)"), "{err}");
    // Remove the blob from the server: only the cache can answer now.
    let blob = e.w(&["rev-parse", "HEAD:model.pkl"]);
    std::fs::remove_file(e.bare.join("objects").join(&blob[..2]).join(&blob[2..])).unwrap();
    let (code, err) = run(&e, &config, &stdin);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("1 new file(s) checked (1 from cache)"), "{err}");
    // Without the cache the missing blob is an error, and errors reject.
    let (code, err) = run(&e, &HookConfig { cache_dir: None, ..Default::default() }, &stdin);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("gate-object-unreadable"), "{err}");
    // A different salt (another policy) does not reuse the verdict.
    let (code, _) = run(&e, &HookConfig { cache_salt: "other lists".into(), ..Default::default() }, &stdin);
    assert_eq!(code, 1);
}

#[test]
fn configured_gitea_store_resolves_pointers() {
    use sha2::{Digest, Sha256};
    let e = Env::new();
    let oid: String = Sha256::digest(BAD).iter().map(|x| format!("{x:02x}")).collect();
    e.write(
        "w.bin",
        format!("version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {}\n", BAD.len()).as_bytes(),
    );
    let c = e.commit("pointer");
    land_unreferenced(&e, &c);
    let root = e.dir.path().join("gitea-lfs");
    let config = HookConfig {
        lfs: modelgate::lfs::LfsStore {
            layout: modelgate::lfs::Layout::Gitea,
            root: Some(root.clone()),
            verify_sha256: true,
            ..Default::default()
        },
        cache_dir: None,
        ..Default::default()
    };
    let (code, err) = run(&e, &config, &create(&c));
    assert_eq!(code, 1);
    assert!(err.contains("lfs-object-missing") && err.contains("git lfs push --all"), "{err}");
    let obj = root.join(&oid[0..2]).join(&oid[2..4]).join(&oid[4..]);
    std::fs::create_dir_all(obj.parent().unwrap()).unwrap();
    std::fs::write(&obj, BAD).unwrap();
    let (code, err) = run(&e, &config, &create(&c));
    assert_eq!(code, 1);
    assert!(err.contains("w.bin") && err.contains(BAD_CODE), "{err}");
    // Same size, other bytes: the sha256 check catches the swap.
    let mut other = BAD.to_vec();
    *other.last_mut().unwrap() ^= 1;
    std::fs::write(&obj, &other).unwrap();
    let (code, err) = run(&e, &config, &create(&c));
    assert_eq!(code, 1);
    assert!(err.contains("lfs-object-mismatch"), "{err}");
}
