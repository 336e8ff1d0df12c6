//! Git LFS pointers as git-lfs reads them: the gate's decoder agrees with the real
//! `git lfs smudge` on pointer text git-lfs accepts beyond the canonical form (white space
//! around it, CRLF, old spec URLs, signs and zeros in the size, blobs over 1024 bytes whose
//! first 1024 bytes are a pointer), and a push of such text naming a dangerous object in
//! the store is rejected, where a server without the gate lets a git-lfs clone get it.

mod git_support;
use git_support::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn require_git_lfs() {
    let ok = Command::new("git").args(["lfs", "version"]).output().map(|o| o.status.success());
    assert!(matches!(ok, Ok(true)), "git-lfs is not installed");
}

/// Put `bytes` where `git lfs` keeps objects for `git_dir` (a clone's `.git` or a bare repo).
fn put_object(git_dir: &Path, bytes: &[u8]) -> String {
    let oid = sha256_hex(bytes);
    let p = git_dir.join("lfs/objects").join(&oid[0..2]).join(&oid[2..4]).join(&oid);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
    oid
}

/// What the real `git lfs smudge` writes for `input` in `repo`.
fn smudge(e: &Env, repo: &Path, input: &[u8]) -> Vec<u8> {
    let mut c = e.git(repo);
    c.args(["lfs", "smudge", "x"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let w = std::thread::spawn(move || stdin.write_all(&data));
    let o = child.wait_with_output().unwrap();
    let _ = w.join();
    o.stdout
}

fn candidates(oid: &str) -> Vec<Vec<u8>> {
    let canon = format!("version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize 4\n");
    let mut v: Vec<String> = vec![
        canon.clone(),
        format!("  \n\n{canon}\n \t"),
        format!("\u{a0}\u{3000}{canon}\u{2029}"),
        canon.replace('\n', "\r\n"),
        canon.replace('\n', "\n\n"),
        canon.trim_end().to_string(),
        canon.replace("git-lfs.github.com/spec/v1", "hawser.github.com/spec/v1"),
        canon.replace("https://git-lfs.github.com/spec/v1", "http://git-media.io/v/2"),
        canon.replace("size 4", "size +4"),
        canon.replace("size 4", "size 0004"),
        canon.replace("size 4\n", "size 4 \n"),
        // Not pointers to git-lfs:
        canon.replace("spec/v1", "spec/v2"),
        canon.replace(oid, &oid.to_uppercase()),
        canon.replace("\noid", "\n oid"),
        canon.replace(&format!("{oid}\n"), &format!("{oid} \n")),
        format!("{canon}extra line\n"),
        format!("version https://git-lfs.github.com/spec/v1\nsize 4\noid sha256:{oid}\n"),
        canon.replace('\n', "\r\r\n"),
        canon.replace("size 4", "size 4_0"),
        format!("x{canon}"),
    ];
    v.push(format!("{}{canon}", " ".repeat(1024)));
    let mut out: Vec<Vec<u8>> = v.into_iter().map(String::into_bytes).collect();
    // Over 1024 bytes, the first 1024 a pointer: the rest is never read.
    let mut big = canon.clone().into_bytes();
    big.resize(1024, b' ');
    big.extend_from_slice(EVIL_PICKLE);
    out.push(big);
    // Invalid UTF-8 before it is no white space.
    out.push([b"\xa0".as_slice(), canon.as_bytes()].concat());
    out
}

#[test]
fn the_decoder_agrees_with_git_lfs_smudge() {
    require_git_lfs();
    let e = Env::new();
    e.w(&["lfs", "install", "--local"]);
    let oid = put_object(&e.work.join(".git"), b"evil");
    for c in candidates(&oid) {
        let out = smudge(&e, &e.work, &c);
        let git_lfs = if out == b"evil" {
            true
        } else {
            assert_eq!(out, c, "git lfs smudge neither smudged nor passed through {:?}", show(&c));
            false
        };
        let ours = modelgate::lfs::decode_pointer(&c);
        assert_eq!(ours.is_some(), git_lfs, "{:?}: git-lfs {git_lfs}, modelgate {ours:?}", show(&c));
        if let Some(p) = ours {
            assert_eq!((p.oid.as_str(), p.size), (oid.as_str(), 4));
        }
    }
}

/// Pointer text for an oid.
type MakePointer = Box<dyn Fn(&str) -> Vec<u8>>;

fn plain_server(e: &Env) -> PathBuf {
    let p = e.dir.path().join("plain.git");
    e.run(e.dir.path(), &["init", "-q", "--bare", "plain.git"]);
    e.run(&p, &["symbolic-ref", "HEAD", "refs/heads/main"]);
    p
}

/// Clone with git-lfs's smudge filter, as a victim with git-lfs installed does. (With
/// `filter.lfs.process` as well, git-lfs's filter process loses track of a blob over 1024
/// bytes and the checkout fails; the one-file `git-lfs smudge` filter reads its first 1024
/// bytes and checks out the object.)
fn lfs_clone(e: &Env, server: &Path, name: &str) -> PathBuf {
    let dest = e.dir.path().join(name);
    e.run(
        e.dir.path(),
        &[
            "-c",
            "filter.lfs.smudge=git-lfs smudge -- %f",
            "-c",
            "filter.lfs.required=true",
            "-c",
            "core.autocrlf=true",
            "clone",
            "-q",
            "--branch",
            "main",
            &format!("file://{}", server.display()),
            dest.to_str().unwrap(),
        ],
    );
    dest
}

#[test]
fn pointer_text_git_lfs_accepts_resolves_to_the_store_object() {
    require_git_lfs();
    let forms: Vec<(&str, MakePointer)> = vec![
        (
            "white space around it",
            Box::new(|oid: &str| {
                format!(
                    "  \n\nversion https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {}\n \t",
                    EVIL_PICKLE.len()
                )
                .into_bytes()
            }),
        ),
        (
            "over 1024 bytes",
            Box::new(|oid: &str| {
                let mut b = format!(
                    "version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {}\n",
                    EVIL_PICKLE.len()
                )
                .into_bytes();
                b.resize(1024, b'\n');
                b.extend_from_slice(b"lots of harmless text after the first kilobyte\n");
                b
            }),
        ),
        (
            "an old spec url",
            Box::new(|oid: &str| {
                format!(
                    "version https://hawser.github.com/spec/v1\r\noid sha256:{oid}\r\nsize +{}\r\n",
                    EVIL_PICKLE.len()
                )
                .into_bytes()
            }),
        ),
    ];
    for (what, make) in forms {
        let e = Env::new();
        let plain = plain_server(&e);
        // The object is in the stores (uploaded by some other push; no hook runs for that).
        let oid = put_object(&plain, EVIL_PICKLE);
        put_object(&e.bare, EVIL_PICKLE);
        e.write(".gitattributes", b"*.bin filter=lfs diff=lfs merge=lfs -text\n");
        e.write("weights/model.bin", &make(&oid));
        e.commit(what);
        let (ok, out) = {
            let url = format!("file://{}", plain.display());
            let o = e.git(&e.work).args(["push", &url, "main"]).output().unwrap();
            (o.status.success(), show(&o.stderr))
        };
        assert!(ok, "{out}");
        let victim = lfs_clone(&e, &plain, "victim");
        assert_eq!(std::fs::read(victim.join("weights/model.bin")).unwrap(), EVIL_PICKLE, "{what}");

        let out = assert_rejected(e.push(&["main"]));
        assert!(out.contains("weights/model.bin") && out.contains(BAD_CODE), "{what}: {out}");
        assert!(out.contains(&format!("lfs object sha256:{}", &oid[..12])), "{what}: {out}");
    }
}

#[test]
fn text_git_lfs_does_not_take_for_a_pointer_is_judged_as_it_is() {
    require_git_lfs();
    let e = Env::new();
    let oid = put_object(&e.bare, EVIL_PICKLE);
    // A key out of order: git-lfs writes the text as it is, so the object is never checked out.
    e.write(".gitattributes", b"*.bin filter=lfs -text\n");
    e.write(
        "x.bin",
        format!("version https://git-lfs.github.com/spec/v1\nsize {}\noid sha256:{oid}\n", EVIL_PICKLE.len())
            .as_bytes(),
    );
    e.commit("not a pointer");
    assert_accepted(e.push(&["main"]));
    let victim = lfs_clone(&e, &e.bare, "victim");
    assert_ne!(std::fs::read(victim.join("x.bin")).unwrap(), EVIL_PICKLE);
}

#[test]
fn a_pointer_with_extensions_follows_on_error() {
    require_git_lfs();
    let e = Env::new();
    let oid = put_object(&e.bare, b"harmless\n");
    e.write(
        "x.bin",
        format!("version https://git-lfs.github.com/spec/v1\next-0-foo sha256:{oid}\noid sha256:{oid}\nsize 9\n")
            .as_bytes(),
    );
    e.commit("extension");
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("lfs-pointer-extension") && out.contains("ext-0-foo"), "{out}");
}
