//! What a clone checks out is what the gate judges: pushes through real git whose stored
//! bytes are harmless but whose checkout is a dangerous pickle (gitattributes conversions,
//! `core.autocrlf=true`, symbolic links on clients without symlinks). Each attack is shown
//! to work against a server without the gate (a victim's clone gets the payload), then
//! rejected by the gate.

mod git_support;
use git_support::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The payload ops (protocol 4): `os.system('echo pwned!')`, with no LF byte in them.
const OPS: &[u8] = b"\x8c\x02os\x8c\x06system\x93\x8c\x0becho pwned!\x85R";

/// A bare repository without the gate, next to the gated one.
fn plain_server(e: &Env) -> PathBuf {
    let p = e.dir.path().join("plain.git");
    if !p.exists() {
        e.run(e.dir.path(), &["init", "-q", "--bare", "plain.git"]);
    }
    p
}

fn push_to(e: &Env, server: &Path, args: &[&str]) -> (bool, String) {
    let url = format!("file://{}", server.display());
    let o = e.git(&e.work).args(["push", &url]).args(args).output().unwrap();
    (o.status.success(), format!("{}{}", show(&o.stdout), show(&o.stderr)))
}

/// Clone the way a Windows victim would: `core.autocrlf=true`, `core.symlinks=false`.
fn victim_clone(e: &Env, server: &Path, name: &str) -> PathBuf {
    let dest = e.dir.path().join(name);
    let url = format!("file://{}", server.display());
    e.run(
        e.dir.path(),
        &[
            "-c",
            "core.autocrlf=true",
            "-c",
            "core.symlinks=false",
            "-c",
            "protocol.file.allow=always",
            "clone",
            "-q",
            "--recurse-submodules",
            "--branch",
            "main",
            &url,
            dest.to_str().unwrap(),
        ],
    );
    dest
}

/// `modelgate scan` of a checked-out file: its verdict.
fn scan_verdict(path: &Path) -> String {
    let o = Command::new(BIN).args(["scan", "--format", "json"]).arg(path).output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    doc["files"][0]["verdict"].as_str().unwrap().to_string()
}

/// Push to an ungated server and prove the victim gets a dangerous file at `path`; then
/// push the same to the gated server and expect a rejection naming `path`.
fn attack(e: &Env, path: &str, expect: &str) -> String {
    attack_with(e, path, expect, true)
}

fn attack_with(e: &Env, path: &str, expect: &str, stored_harmless: bool) -> String {
    let plain = plain_server(e);
    assert_accepted(push_to(e, &plain, &["main"]));
    let victim = victim_clone(e, &plain, &format!("victim-{}", path.replace('/', "_")));
    let got = victim.join(path);
    assert_eq!(scan_verdict(&got), "dangerous", "the attack does not work: {}", got.display());
    // The stored blob itself looks harmless.
    let stored = e.w(&["rev-parse", &format!("HEAD:{path}")]);
    let blob = e.dir.path().join("stored-blob");
    let bytes = e.git(&e.work).args(["cat-file", "blob", &stored]).output().unwrap().stdout;
    std::fs::write(&blob, bytes).unwrap();
    if stored_harmless {
        assert_ne!(scan_verdict(&blob), "dangerous", "the stored bytes are already dangerous");
    }

    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains(path) && out.contains("DANGEROUS"), "{out}");
    assert!(out.contains(expect), "{out}");
    assert_eq!(e.server_ref("refs/heads/main"), None);
    out
}

#[test]
fn working_tree_encoding_gives_back_the_pickle() {
    for enc in ["latin1", "ISO-8859-1", "UTF-16", "UTF-16LE-BOM", "UTF-32BE"] {
        let e = Env::new();
        // The attacker's pickle in the work tree; git stores it re-encoded as UTF-8, which is
        // no pickle; every checkout encodes it back.
        e.write(".gitattributes", format!("*.pkl working-tree-encoding={enc}\n").as_bytes());
        let pickle = EVIL_PICKLE;
        let text: String = pickle.iter().map(|&b| char::from(b)).collect();
        let worktree = match enc {
            "latin1" | "ISO-8859-1" => pickle.to_vec(),
            "UTF-16" => [vec![0xff, 0xfe], text.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()].concat(),
            "UTF-16LE-BOM" => [vec![0xff, 0xfe], text.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()].concat(),
            _ => text.chars().flat_map(|c| (c as u32).to_be_bytes()).collect(),
        };
        e.write("models/enc.pkl", &worktree);
        e.commit("encoded");
        if enc.starts_with("UTF") {
            // UTF-16/32 checkouts are no pickle; the gate judges them, and accepts what is harmless.
            let plain = plain_server(&e);
            assert_accepted(push_to(&e, &plain, &["main"]));
            let victim = victim_clone(&e, &plain, "victim");
            assert_eq!(std::fs::read(victim.join("models/enc.pkl")).unwrap(), worktree, "{enc}");
            let out = e.push(&["main"]);
            assert!(out.0, "{enc}: {}", out.1);
            continue;
        }
        let out = attack(&e, "models/enc.pkl", &format!("working-tree-encoding={enc}"));
        assert!(out.contains("pickle-import-dangerous"), "{out}");
    }
}

/// A pickle that is harmless as stored; with LF -> CRLF the short byte string ends early
/// and the bytes it held run: `os.system`. Printable enough for git's text detection.
fn crlf_pickle() -> Vec<u8> {
    let q = [b"0".as_slice(), OPS].concat();
    let n = q.len();
    let mut p = b"N0".repeat(300);
    p.push(b'C');
    p.push(u8::try_from(2 * n).unwrap());
    p.extend(std::iter::repeat_n(b'\n', n));
    p.extend_from_slice(&q);
    p.push(b'.');
    p
}

#[test]
fn autocrlf_on_the_client_shifts_opcodes() {
    let e = Env::new();
    e.write("weights/model.pkl", &crlf_pickle());
    e.commit("looks harmless");
    attack(&e, "weights/model.pkl", "core.autocrlf=true");
}

#[test]
fn eol_attribute_shifts_opcodes_for_every_client() {
    let e = Env::new();
    // Binary to git's detection (a NUL), so only the attribute converts it.
    let mut p = b"C\x01\x000".to_vec();
    p.extend_from_slice(&crlf_pickle());
    e.write("a/b/x.bin", &p);
    e.write("a/.gitattributes", b"b/*.bin eol=crlf\n");
    e.commit("eol");
    attack(&e, "a/b/x.bin", "CRLF line endings");
}

#[test]
fn changing_only_gitattributes_is_judged_again() {
    let e = Env::new();
    let mut p = b"C\x01\x000".to_vec();
    p.extend_from_slice(&crlf_pickle());
    e.write("m/x.bin", &p);
    e.commit("binary, harmless");
    assert_accepted(e.push(&["main"]));
    // No blob changes; only the attributes at the top do (a macro, defined there).
    e.write(".gitattributes", b"[attr]windows text eol=crlf\nm/** windows\n");
    e.commit("attributes only");
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("m/x.bin") && out.contains("DANGEROUS"), "{out}");
}

#[test]
fn ident_expansion_shifts_opcodes() {
    let e = Env::new();
    // "$Id$" grows by 43 bytes on checkout: the byte string then ends before the payload.
    let q = [b"0".as_slice(), &b"N".repeat(14), OPS].concat();
    assert_eq!(q.len(), 43);
    let mut s = b"$Id$".to_vec();
    s.extend_from_slice(&q);
    let mut p = b"C".to_vec();
    p.push(u8::try_from(s.len()).unwrap());
    p.extend_from_slice(&s);
    p.push(b'.');
    e.write("id.pkl", &p);
    e.write(".gitattributes", b"*.pkl ident\n");
    e.commit("ident");
    attack(&e, "id.pkl", "ident");
}

#[test]
fn symlink_blobs_are_files_on_windows_clients() {
    let e = Env::new();
    e.write("README.md", b"readme\n");
    e.commit("base");
    let blob = e.hash_object(EVIL_PICKLE);
    e.w(&["update-index", "--add", "--cacheinfo", &format!("120000,{blob},link.pkl")]);
    e.w(&["commit", "-q", "-m", "a symbolic link"]);
    // The target text is the pickle: the stored bytes are the payload, which a gate that
    // skips symbolic links never looked at.
    attack_with(&e, "link.pkl", "link.pkl", false);
}

#[test]
fn unknown_filter_follows_on_error() {
    let e = Env::new();
    e.write(".gitattributes", b"*.pkl filter=mystery\n");
    e.write("m.pkl", GOOD_PICKLE);
    e.commit("filtered");
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("m.pkl") && out.contains("checkout-filter-unknown"), "{out}");
    // With on_error = tag the push goes through, with a warning.
    std::fs::write(e.bare.join("modelgate.toml"), "[gate]\non_error = \"tag\"\n").unwrap();
    e.remove_hook("pre-receive");
    e.install_gate(None, &[]);
    let out = assert_accepted(e.push(&["main"]));
    assert!(out.contains("checkout-filter-unknown"), "{out}");
}

#[test]
fn info_attributes_on_the_server_count_too() {
    let e = Env::new();
    let pickle = EVIL_PICKLE;
    let text: String = pickle.iter().map(|&b| char::from(b)).collect();
    e.write("x.dat", text.as_bytes());
    e.commit("utf-8 text");
    // Server-side checkouts and archives (`git archive`) apply info/attributes.
    std::fs::create_dir_all(e.bare.join("info")).unwrap();
    std::fs::write(e.bare.join("info/attributes"), "*.dat working-tree-encoding=latin1\n").unwrap();
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("x.dat") && out.contains("working-tree-encoding=latin1"), "{out}");
}
