//! Git LFS through real pushes: the real git-lfs client uploads to a file:// bare
//! repository (objects land in `<bare>/lfs/objects`) before the pack is sent.

mod git_support;
use git_support::*;

/// Fails (never skips) without git-lfs: `apt-get install git-lfs`.
fn lfs_env() -> Env {
    let ok = std::process::Command::new("git").args(["lfs", "version"]).output().map(|o| o.status.success());
    assert!(matches!(ok, Ok(true)), "git-lfs is not installed");
    let e = Env::new();
    e.w(&["lfs", "install", "--local"]);
    e.w(&["lfs", "track", "*.bin"]);
    e.w(&["add", ".gitattributes"]);
    e.w(&["commit", "-q", "-m", "track"]);
    e
}

#[test]
fn lfs_object_is_resolved_and_scanned() {
    let e = lfs_env();
    e.write("weights/good.bin", b"benign lfs payload\n");
    e.commit("good lfs");
    // The blob in git is a pointer; the server's store has the object.
    let blob = e.w(&["cat-file", "-p", "HEAD:weights/good.bin"]);
    assert!(blob.starts_with("version https://git-lfs.github.com/spec/v1"), "{blob}");
    assert_accepted(e.push(&["main"]));
    let oid = sha256_hex(b"benign lfs payload\n");
    assert!(e.bare.join(format!("lfs/objects/{}/{}/{oid}", &oid[0..2], &oid[2..4])).is_file());

    e.write("weights/bad.bin", BAD);
    let c = e.commit("bad lfs");
    let out = assert_rejected(e.push(&["main"]));
    let oid = sha256_hex(BAD);
    assert!(out.contains("weights/bad.bin") && out.contains(short(&c)), "{out}");
    assert!(out.contains(BAD_CODE), "{out}");
    assert!(out.contains(&format!("lfs object sha256:{}", &oid[..12])), "{out}");
}

#[test]
fn missing_lfs_object_is_rejected_with_push_hint() {
    let e = lfs_env();
    e.write("model.bin", b"never uploaded\n");
    e.commit("skip push");
    let out = assert_rejected(e.push_env(&["main"], &[("GIT_LFS_SKIP_PUSH", "1")]));
    assert!(out.contains("model.bin"), "{out}");
    assert!(out.contains("lfs-object-missing"), "{out}");
    assert!(out.contains("git lfs push --all"), "{out}");
    // Uploading the object makes the same push pass.
    e.w(&["lfs", "push", "--all", "origin"]);
    assert_accepted(e.push(&["main"]));
}

#[test]
fn forged_pointers_are_judged_as_git_lfs_reads_them() {
    let e = lfs_env();
    // Written as plain files (*.txt is not tracked), so git stores the text as is. git-lfs
    // does not take these for pointers (bad oid, an extra line): clients check them out as
    // they are, so they are judged as plain text.
    e.write(
        "traversal.txt",
        b"version https://git-lfs.github.com/spec/v1\noid sha256:../../../../etc/passwd\nsize 100\n",
    );
    e.commit("forged");
    assert_accepted(e.push(&["main"]));

    let oid = sha256_hex(b"x");
    e.write(
        "junk.txt",
        format!("version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize 1\nextra junk\n").as_bytes(),
    );
    e.commit("junk");
    assert_accepted(e.push(&["main"]));

    // A well-formed pointer whose size does not match the stored object.
    e.write("real.bin", b"x");
    e.commit("real");
    assert_accepted(e.push(&["main"]));
    e.write("liar.txt", format!("version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize 2\n").as_bytes());
    e.commit("size lie");
    // The client would refuse to upload; an attacker skips its pre-push hook.
    let out = assert_rejected(e.push(&["--no-verify", "main"]));
    assert!(out.contains("liar.txt") && out.contains("lfs-object-mismatch"), "{out}");
}

/// Needs the real pickle parser (a placeholder in this branch).
#[test]
fn dangerous_pickle_in_lfs_is_rejected() {
    let e = lfs_env();
    e.write("evil.bin", EVIL_PICKLE);
    e.commit("evil lfs");
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("evil.bin") && out.contains("os.system('echo pwned')"), "{out}");
}
