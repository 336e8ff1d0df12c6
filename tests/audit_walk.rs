//! `modelgate audit` walks every ref's whole history: its file places against git's own
//! listing (`git ls-tree -r` of every commit `git rev-list --all` names, and the trees and
//! blobs refs name; symbolic links included), each place once, attributed to a commit that
//! introduced it (present there, absent from every parent) and to a ref whose history holds
//! that commit. Each place is judged with the checkouts a client gives it there
//! (`.gitattributes` at every level, `info/attributes`, `core.autocrlf`, symbolic links), as
//! the push gate judges it: the same histories pushed through real git to a bare repository
//! with the hook installed are rejected (or accepted) with the same records.

mod git_support;

use git_support::{assert_accepted, assert_rejected, git_cmd, show, Env, BIN, EVIL_PICKLE, GOOD_PICKLE};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `(path, blob)` pairs.
type Places = BTreeSet<(String, String)>;
/// Commit to its parents.
type Parents = BTreeMap<String, Vec<String>>;

struct Repo {
    _dir: tempfile::TempDir,
    home: PathBuf,
    work: PathBuf,
    bare: PathBuf,
}

impl Repo {
    fn new(format: &str) -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let work = dir.path().join("work");
        let bare = dir.path().join("srv").join("repo.git");
        let r = Repo { home, work: work.clone(), bare, _dir: dir };
        r.git(r._dir.path(), &["init", "-q", "-b", "main", &format!("--object-format={format}"), "work"]);
        r
    }

    fn git(&self, cwd: &Path, args: &[&str]) -> String {
        let o = git_cmd(&self.home, cwd).args(args).output().unwrap();
        assert!(o.status.success(), "git {args:?}: {}{}", show(&o.stdout), show(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim_end().to_string()
    }

    fn w(&self, args: &[&str]) -> String {
        self.git(&self.work, args)
    }

    fn b(&self, args: &[&str]) -> String {
        self.git(&self.bare, args)
    }

    fn write(&self, path: &str, bytes: &[u8]) {
        let p = self.work.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    fn commit(&self, msg: &str) -> String {
        self.w(&["add", "-A"]);
        self.w(&["commit", "-q", "--allow-empty", "-m", msg]);
        self.w(&["rev-parse", "HEAD"])
    }

    /// Make the bare server repository from the work repository (every branch and tag).
    fn publish(&self) {
        std::fs::create_dir_all(self.bare.parent().unwrap()).unwrap();
        self.git(
            self._dir.path(),
            &["clone", "-q", "--mirror", self.work.to_str().unwrap(), self.bare.to_str().unwrap()],
        );
    }

    /// A history with what a walk can get wrong: renames, a file deleted and re-added, a mode
    /// change, a symbolic link, a submodule, branches merged (one with a resolution of its
    /// own), an unrelated root, and tags of a commit, a tree and a blob.
    fn varied(format: &str) -> Repo {
        let r = Repo::new(format);
        r.write("README.md", b"hello\n");
        r.write("models/good.pkl", GOOD_PICKLE);
        r.write("src/a.txt", b"a\n");
        r.write("dir with space/\u{e9}t\u{e9}.txt", b"unicode\n");
        r.commit("root");
        r.write("src/b.txt", b"b\n");
        r.write("src/a.txt", b"a2\n");
        r.commit("second");
        r.w(&["mv", "src/b.txt", "src/moved.txt"]);
        std::os::unix::fs::symlink("../README.md", r.work.join("src/link")).unwrap();
        r.commit("rename and link");
        std::fs::remove_file(r.work.join("src/a.txt")).unwrap();
        r.commit("delete");
        r.write("src/a.txt", b"a2\n");
        r.write("models/copy-of-good.pkl", GOOD_PICKLE);
        r.commit("re-add");
        r.w(&["update-index", "--chmod=+x", "src/a.txt"]);
        r.w(&["commit", "-q", "-m", "mode"]);
        let sub = r.w(&["rev-parse", "HEAD~1"]);
        r.w(&["update-index", "--add", "--cacheinfo", &format!("160000,{sub},vendor/sub")]);
        r.w(&["commit", "-q", "-m", "submodule"]);
        // A branch merged without conflict, and one whose merge adds content of its own.
        r.w(&["checkout", "-q", "-b", "feature"]);
        r.write("models/evil.pkl", EVIL_PICKLE);
        r.write("src/feature.txt", b"f1\n");
        r.commit("feature 1");
        r.write("src/feature.txt", b"f2\n");
        r.commit("feature 2");
        r.w(&["checkout", "-q", "main"]);
        r.write("src/main-only.txt", b"m\n");
        r.commit("main moves on");
        r.w(&["merge", "-q", "--no-ff", "-m", "merge feature", "feature"]);
        r.w(&["checkout", "-q", "-b", "conflict", "HEAD~1"]);
        r.write("src/main-only.txt", b"from the branch\n");
        r.commit("conflicting");
        r.w(&["checkout", "-q", "main"]);
        r.write("src/main-only.txt", b"from main\n");
        r.commit("main side");
        let o = git_cmd(&r.home, &r.work).args(["merge", "-q", "conflict"]).output().unwrap();
        assert!(!o.status.success(), "the merge should conflict");
        r.write("src/main-only.txt", b"resolved by hand\n");
        r.w(&["add", "-A"]);
        r.w(&["commit", "-q", "--no-edit"]);
        // Tags: annotated on a commit, lightweight on a tree, annotated on a blob.
        r.w(&["tag", "-a", "-m", "release", "v1", "HEAD~2"]);
        let tree = r.w(&["rev-parse", "HEAD~3^{tree}"]);
        r.w(&["tag", "tree-tag", &tree]);
        let lone = {
            let p = r.work.join("lone.bin");
            std::fs::write(&p, b"a blob only a tag names\n").unwrap();
            let id = r.w(&["hash-object", "-w", "lone.bin"]);
            std::fs::remove_file(p).unwrap();
            id
        };
        r.w(&["tag", "-a", "-m", "blob", "blob-tag", &lone]);
        // An unrelated history.
        r.w(&["checkout", "-q", "--orphan", "other"]);
        r.w(&["rm", "-rq", "--cached", "."]);
        for e in std::fs::read_dir(&r.work).unwrap() {
            let e = e.unwrap();
            if e.file_name() != ".git" {
                let p = e.path();
                if p.is_dir() && !p.is_symlink() {
                    std::fs::remove_dir_all(p).unwrap();
                } else {
                    std::fs::remove_file(p).unwrap();
                }
            }
        }
        r.write("other.txt", b"other root\n");
        r.write("models/good.pkl", GOOD_PICKLE);
        r.commit("unrelated root");
        r.w(&["checkout", "-q", "main"]);
        r.publish();
        r
    }

    /// Every `(path, blob)` of every tree the refs reach, and the commits with their parents.
    fn expected(&self) -> (Places, Parents) {
        let mut places = BTreeSet::new();
        let mut parents = BTreeMap::new();
        for line in self.b(&["rev-list", "--all", "--parents"]).lines() {
            let mut ids = line.split(' ').map(str::to_string);
            let c = ids.next().unwrap();
            parents.insert(c.clone(), ids.collect());
            places.extend(self.blobs_of(&c));
        }
        for line in
            self.b(&["for-each-ref", "--format=%(objectname) %(objecttype) %(*objecttype) %(*objectname)"]).lines()
        {
            let f: Vec<&str> = line.split(' ').collect();
            let (kind, id) = if f[1] == "tag" { (f[2], f[3]) } else { (f[1], f[0]) };
            match kind {
                "tree" => places.extend(self.blobs_of(id)),
                "blob" => {
                    places.insert((String::new(), id.to_string()));
                }
                _ => {}
            }
        }
        (places, parents)
    }

    fn blobs_of(&self, treeish: &str) -> Vec<(String, String)> {
        let out = self.b(&["ls-tree", "-r", "-z", treeish]);
        out.split('\0')
            .filter(|e| !e.is_empty())
            .filter_map(|e| {
                let (meta, path) = e.split_once('\t').unwrap();
                let f: Vec<&str> = meta.split(' ').collect();
                // Symbolic links too: clients without symlinks write the target as a file.
                (f[1] == "blob").then(|| (path.to_string(), f[2].to_string()))
            })
            .collect()
    }

    fn audit(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let o = Command::new(BIN).arg("audit").args(args).arg(&self.bare).output().unwrap();
        assert!(o.status.code().is_some_and(|c| c <= 1), "{}", show(&o.stderr));
        show(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

fn check(format: &str) {
    let r = Repo::varied(format);
    let lines = r.audit(&["--all-files", "-q"]);
    let files: Vec<&serde_json::Value> = lines.iter().filter(|l| l["type"] == "file").collect();
    let (expected, parents) = r.expected();
    let got: Vec<(String, String)> = files
        .iter()
        .map(|f| (f["path"].as_str().unwrap().to_string(), f["blob"].as_str().unwrap().to_string()))
        .collect();
    let got_set: BTreeSet<(String, String)> = got.iter().cloned().collect();
    assert_eq!(got.len(), got_set.len(), "a place was recorded twice");
    assert_eq!(got_set, expected, "the places differ from git's listing");

    let repo = lines.iter().find(|l| l["type"] == "repository").unwrap();
    assert_eq!(repo["commits"].as_u64().unwrap() as usize, parents.len());
    let blobs: BTreeSet<&String> = expected.iter().map(|(_, b)| b).collect();
    assert_eq!(repo["blobs"].as_u64().unwrap() as usize, blobs.len());
    assert_eq!(repo["places"].as_u64().unwrap() as usize, expected.len());
    assert_eq!(repo["symlinks"], 1);
    assert_eq!(repo["submodules"], 1);
    assert!(repo["error"].is_null());

    for f in &files {
        let path = f["path"].as_str().unwrap();
        let blob = f["blob"].as_str().unwrap();
        let refname = f["ref"].as_str().unwrap();
        let Some(c) = f["commit"].as_str() else {
            // Only what a tag names directly has no commit.
            assert!(refname.starts_with("refs/tags/"), "{f}");
            continue;
        };
        assert!(r.blobs_of(c).contains(&(path.to_string(), blob.to_string())), "{path} is not in {c}");
        for p in &parents[c] {
            assert!(
                !r.blobs_of(p).contains(&(path.to_string(), blob.to_string())),
                "{path} ({blob}) attributed to {c}, but its parent {p} has it already"
            );
        }
        let o = git_cmd(&r.home, &r.bare).args(["merge-base", "--is-ancestor", c, refname]).output().unwrap();
        assert!(o.status.success(), "{c} is not in the history of {refname}");
    }
    // The merge's own resolution is a place of the merge; the branch's files keep their commits.
    let resolved = files.iter().find(|f| f["path"] == "src/main-only.txt" && f["size"] == 17).unwrap();
    let merge = r.b(&["rev-parse", "main"]);
    assert_eq!(resolved["commit"].as_str().unwrap(), merge);
    let evil = files.iter().find(|f| f["path"] == "models/evil.pkl").unwrap();
    assert_eq!(evil["commit"].as_str().unwrap(), r.b(&["rev-parse", "feature~1"]));
    assert_eq!(evil["ref"], "refs/heads/main", "HEAD's branch comes first");
    assert_eq!(evil["verdict"], "dangerous");
    assert_eq!(evil["decision"], "reject");
    // The unrelated root's copy of good.pkl is the same place (path, blob) as main's.
    assert_eq!(files.iter().filter(|f| f["path"] == "models/good.pkl").count(), 1);
    let lone = files.iter().find(|f| f["path"] == "").unwrap();
    assert_eq!(lone["ref"], "refs/tags/blob-tag");
}

#[test]
fn places_match_git_in_a_sha1_repository() {
    check("sha1");
}

#[test]
fn places_match_git_in_a_sha256_repository() {
    check("sha256");
}

#[test]
fn models_only_by_default_and_every_file_with_all_files() {
    let r = Repo::varied("sha1");
    let lines = r.audit(&["-q"]);
    let paths: BTreeSet<&str> =
        lines.iter().filter(|l| l["type"] == "file").map(|l| l["path"].as_str().unwrap()).collect();
    assert_eq!(paths, BTreeSet::from(["models/copy-of-good.pkl", "models/evil.pkl", "models/good.pkl"]));
    let summary = lines.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["files"], 3);
    assert_eq!(summary["dangerous"], 1);
    assert_eq!(summary["reject"], 1);
    assert_eq!(summary["exit_code"], 1);
    assert_eq!(summary["formats"]["pickle"], 3);
}

#[test]
fn a_shallow_repository_is_walked_from_its_boundary() {
    let r = Repo::varied("sha1");
    let shallow = r._dir.path().join("shallow.git");
    r.git(
        r._dir.path(),
        &["clone", "-q", "--bare", "--depth", "2", &format!("file://{}", r.bare.display()), shallow.to_str().unwrap()],
    );
    let o = Command::new(BIN).args(["audit", "-q", "--all-files"]).arg(&shallow).output().unwrap();
    let lines: Vec<serde_json::Value> = show(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let repo = lines.iter().find(|l| l["type"] == "repository").unwrap();
    assert!(repo["error"].is_null(), "{repo}");
    // Everything in the shallow history's trees is there, attributed to a commit it has.
    let tip_files = r.blobs_of("main");
    for (path, blob) in tip_files {
        assert!(
            lines.iter().any(|l| l["path"] == path.as_str() && l["blob"] == blob.as_str()),
            "{path} missing from the shallow audit"
        );
    }
}

#[test]
fn a_missing_object_fails_the_repository_not_the_audit() {
    let r = Repo::varied("sha1");
    let broken = r._dir.path().join("broken.git");
    r.git(r._dir.path(), &["clone", "-q", "--bare", "--no-local", r.bare.to_str().unwrap(), broken.to_str().unwrap()]);
    // Unpack, then delete one tree object: the history cannot be read whole.
    let packs: Vec<PathBuf> = std::fs::read_dir(broken.join("objects/pack"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .collect();
    for p in &packs {
        let data = std::fs::read(p).unwrap();
        std::fs::remove_file(p).unwrap();
        std::fs::remove_file(p.with_extension("idx")).unwrap();
        let mut c = git_cmd(&r.home, &broken);
        c.args(["unpack-objects", "-q"]).stdin(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&data).unwrap();
        assert!(child.wait().unwrap().success());
    }
    let tree = r.b(&["rev-parse", "main~3^{tree}"]);
    std::fs::remove_file(broken.join("objects").join(&tree[..2]).join(&tree[2..])).unwrap();
    let o = Command::new(BIN).args(["audit", "-q"]).arg(&broken).arg(&r.bare).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o.stderr));
    let lines: Vec<serde_json::Value> = show(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let repos: Vec<&serde_json::Value> = lines.iter().filter(|l| l["type"] == "repository").collect();
    assert_eq!(repos.len(), 2);
    let failed = repos.iter().find(|l| l["path"].as_str().unwrap().ends_with("broken.git")).unwrap();
    assert!(failed["error"].as_str().unwrap().contains(&tree), "{failed}");
    let ok = repos.iter().find(|l| l["path"].as_str().unwrap().ends_with("repo.git")).unwrap();
    assert!(ok["error"].is_null());
    assert_eq!(lines.last().unwrap()["failed"], 1);
}

// ---- Checkouts: the audit against the hook ----

/// A gated server (`e.bare`, the hook installed) and, next to it, a plain bare repository
/// that receives every push, gated or not: the audit reads that one.
struct Pair {
    e: Env,
    plain: PathBuf,
}

impl Pair {
    fn new() -> Pair {
        let e = Env::new();
        e.run(e.dir.path(), &["init", "-q", "--bare", "plain.git"]);
        let plain = e.dir.path().join("plain.git");
        Pair { e, plain }
    }

    /// `info/attributes` of both servers.
    fn info_attributes(&self, text: &str) {
        for dir in [&self.e.bare, &self.plain] {
            std::fs::create_dir_all(dir.join("info")).unwrap();
            std::fs::write(dir.join("info/attributes"), text).unwrap();
        }
    }

    /// Push main to both servers; the gated push's outcome.
    fn push(&self) -> (bool, String) {
        let url = format!("file://{}", self.plain.display());
        let o = self.e.git(&self.e.work).args(["push", "-q", "--force", &url, "main"]).output().unwrap();
        assert!(o.status.success(), "{}", show(&o.stderr));
        self.e.push(&["main"])
    }

    /// The hook's audit-log records of files it rejected or tagged, since `from`.
    fn hook_records(&self, from: usize) -> Vec<serde_json::Value> {
        self.e.audit().into_iter().skip(from).filter(|r| r["event"] == "rejected" || r["event"] == "tagged").collect()
    }

    /// Every file record of an audit of the plain server.
    fn audit(&self, extra: &[&str]) -> Vec<serde_json::Value> {
        let o = Command::new(BIN).args(["audit", "-q", "--all-files"]).args(extra).arg(&self.plain).output().unwrap();
        assert!(o.status.code().is_some_and(|c| c <= 1), "{}", show(&o.stderr));
        let lines: Vec<serde_json::Value> = show(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let repo = lines.iter().find(|l| l["type"] == "repository").unwrap();
        assert!(repo["error"].is_null(), "{repo}");
        lines.into_iter().filter(|l| l["type"] == "file").collect()
    }
}

/// The audit's record of `path` at `commit`.
fn at<'a>(files: &'a [serde_json::Value], path: &str, commit: &str) -> &'a serde_json::Value {
    let found: Vec<&serde_json::Value> =
        files.iter().filter(|f| f["path"] == path && f["commit"].as_str() == Some(commit)).collect();
    assert_eq!(found.len(), 1, "{path} at {commit}: {found:?}\n{files:?}");
    found[0]
}

/// The hook rejected the push with a record for `path` at `commit`: the audit rejects that
/// place with the same verdict, codes, imports and reason, and names the checkout that made
/// the verdict (`""`: the stored bytes).
fn same_as_hook(hook: &[serde_json::Value], files: &[serde_json::Value], path: &str, commit: &str) -> String {
    let h = hook
        .iter()
        .find(|r| r["path"] == path && r["commit"].as_str() == Some(commit))
        .unwrap_or_else(|| panic!("the hook has no record of {path} at {commit}: {hook:?}"));
    let a = at(files, path, commit);
    assert_eq!(a["decision"], "reject", "{a}");
    assert_eq!(h["decision"], "reject", "{h}");
    for (hk, ak) in [("verdict", "verdict"), ("codes", "codes"), ("imports", "imports"), ("policy", "decided_by")] {
        assert_eq!(h[hk], a[ak], "{hk}: hook {h}\naudit {a}");
    }
    assert_eq!(a["blob"], h["blob"]);
    assert_eq!(a["ref"], h["ref"]);
    // The checkout that made the verdict, in the hook's words.
    match a["checkout"].as_str() {
        Some(c) => assert!(a["decided_by"].as_str().unwrap().ends_with(&format!("as checked out with {c}")), "{a}"),
        None => assert!(!a["decided_by"].to_string().contains("checked out"), "{a}"),
    }
    a["checkout"].as_str().unwrap_or_default().to_string()
}

/// The payload ops (protocol 4): `os.system('echo pwned!')`, with no LF byte in them.
const OPS: &[u8] = b"\x8c\x02os\x8c\x06system\x93\x8c\x0becho pwned!\x85R";

/// A pickle harmless as stored that LF -> CRLF turns into `os.system` (the short byte
/// string ends early and the bytes it held run). Printable enough for git's text detection.
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

/// The same, binary to git's text detection (a NUL): only an attribute converts it.
fn binary_crlf_pickle() -> Vec<u8> {
    [b"C\x01\x000".as_slice(), &crlf_pickle()].concat()
}

/// [`EVIL_PICKLE`] running another 10-byte command.
fn evil(cmd: &str) -> Vec<u8> {
    assert_eq!(cmd.len(), 10);
    let mut p = EVIL_PICKLE.to_vec();
    let at = p.windows(10).position(|w| w == b"echo pwned").unwrap();
    p[at..at + 10].copy_from_slice(cmd.as_bytes());
    p
}

/// `text` as the Unicode code points of `bytes` (what a latin1 work tree file is to git).
fn latin1_as_utf8(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(|&b| char::from(b)).collect::<String>().into_bytes()
}

#[test]
fn working_tree_encodings_in_gitattributes_at_any_level_and_in_info_attributes() {
    let p = Pair::new();
    let e = &p.e;
    // The top level: a latin1 pickle (stored as UTF-8 text, no pickle), and a UTF-16 one
    // (no pickle either way: a .pkl no loader reads is an error).
    // (Patterns match without case on case-insensitive clients: `*.LAT` for `x.lat`.)
    e.write(
        ".gitattributes",
        b"*.pkl working-tree-encoding=latin1\nwide.pkl working-tree-encoding=UTF-16\n*.LAT working-tree-encoding=latin1\n",
    );
    e.write("x.lat", &latin1_as_utf8(&evil("echo pwneh")));
    e.write("models/enc.pkl", EVIL_PICKLE);
    let text: String = evil("echo pwneg").iter().map(|&b| char::from(b)).collect();
    let utf16: Vec<u8> = [vec![0xff, 0xfe], text.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()].concat();
    e.write("models/wide.pkl", &utf16);
    // A nested directory's own attributes; and a file only info/attributes converts.
    e.write("deep/er/.gitattributes", b"*.bin working-tree-encoding=ISO-8859-1\n");
    // (Other pickles each: the gate decides a blob over all its places.)
    e.write("deep/er/x.bin", &evil("echo pwnee"));
    e.write("plain.dat", &latin1_as_utf8(&evil("echo pwnef")));
    e.write("README.md", b"nothing to see\n");
    let c = e.commit("encoded");
    p.info_attributes("*.dat working-tree-encoding=latin1\n");
    let out = assert_rejected(p.push());
    let hook = p.hook_records(0);
    let files = p.audit(&[]);
    let mut checkouts = Vec::new();
    for path in ["models/enc.pkl", "deep/er/x.bin", "plain.dat", "x.lat"] {
        assert!(out.contains(path), "{out}");
        checkouts.push(same_as_hook(&hook, &files, path, &c));
        assert_eq!(at(&files, path, &c)["verdict"], "dangerous");
    }
    assert_eq!(checkouts[0], "working-tree-encoding=latin1");
    assert!(checkouts[1].starts_with("working-tree-encoding=ISO-8859-1"), "{checkouts:?}");
    assert_eq!(checkouts[2], "working-tree-encoding=latin1");
    assert_eq!(checkouts[3], "working-tree-encoding=latin1");
    // Stored as UTF-8 text, checked out as UTF-16: no pickle, an error, rejected.
    same_as_hook(&hook, &files, "models/wide.pkl", &c);
    let wide = at(&files, "models/wide.pkl", &c);
    assert_eq!((wide["verdict"].as_str(), wide["decision"].as_str()), (Some("error"), Some("reject")), "{wide}");
    assert!(wide["codes"].to_string().contains("model-content-unrecognised"), "{wide}");
    let readme = at(&files, "README.md", &c);
    assert_eq!((readme["decision"].as_str(), readme["checkout"].as_str()), (Some("allow"), None), "{readme}");
    // Without info/attributes, plain.dat is plain text again.
    std::fs::remove_file(p.plain.join("info/attributes")).unwrap();
    let files = p.audit(&[]);
    assert_eq!(at(&files, "plain.dat", &c)["decision"], "allow");
    assert_eq!(at(&files, "models/enc.pkl", &c)["decision"], "reject");
}

#[test]
fn line_endings_shift_opcodes_by_attribute_and_by_client_autocrlf() {
    let p = Pair::new();
    let e = &p.e;
    // eol=crlf from a nested .gitattributes, for a file git's detection takes for binary.
    e.write("a/.gitattributes", b"b/*.bin eol=crlf\n*.txt eol=crlf\n");
    e.write("a/b/x.bin", &binary_crlf_pickle());
    // No attribute: a client's core.autocrlf=true converts what looks like text.
    e.write("weights/model.pkl", &crlf_pickle());
    // Benign text under eol attributes stays allowed.
    e.write("a/notes.txt", b"line one\nline two\n");
    let c = e.commit("line endings");
    let out = assert_rejected(p.push());
    assert!(!out.contains("a/notes.txt"), "{out}");
    let hook = p.hook_records(0);
    let files = p.audit(&[]);
    assert_eq!(same_as_hook(&hook, &files, "a/b/x.bin", &c), "text, CRLF line endings");
    assert_eq!(same_as_hook(&hook, &files, "weights/model.pkl", &c), "core.autocrlf=true (LF -> CRLF)");
    let notes = at(&files, "a/notes.txt", &c);
    assert_eq!(notes["decision"], "allow", "{notes}");
    assert_eq!(files.iter().filter(|f| f["decision"] == "reject").count(), 2);
}

#[test]
fn attributes_arriving_after_the_blob_are_judged_where_they_arrive() {
    let p = Pair::new();
    let e = &p.e;
    e.write("m/x.bin", &binary_crlf_pickle());
    e.write("m/y.bin", b"\x00unrelated binary\n");
    e.write("other/z.bin", b"\x00outside m/\n");
    e.write("n/w.bin", &[binary_crlf_pickle().as_slice(), b"\x00"].concat());
    let first = e.commit("binary, harmless");
    assert_accepted(p.push());
    let logged = e.audit().len();
    // No blob changes; only the attributes do (a macro, defined at the top).
    e.write(".gitattributes", b"[attr]windows text eol=crlf\nm/** windows\n");
    let second = e.commit("attributes only");
    assert_rejected(p.push());
    let hook = p.hook_records(logged);
    let files = p.audit(&[]);
    // The blob is judged again under its new checkout, at the commit that gave it.
    let before = at(&files, "m/x.bin", &first);
    assert_eq!((before["decision"].as_str(), before["checkout"].as_str()), (Some("allow"), None), "{before}");
    assert_eq!(same_as_hook(&hook, &files, "m/x.bin", &second), "text, CRLF line endings");
    assert_eq!(before["blob"], at(&files, "m/x.bin", &second)["blob"]);
    // Every file below the attributes is looked at again; a file whose checkout did not
    // change is not recorded again.
    assert_eq!(files.iter().filter(|f| f["path"] == "m/y.bin").count(), 2, "its new checkout is text, CRLF");
    assert_eq!(files.iter().filter(|f| f["path"] == "other/z.bin").count(), 1);
    assert_eq!(files.iter().filter(|f| f["path"] == ".gitattributes").count(), 1);
    // Taking the top attributes away again (nothing new for m/: its old checkout was
    // judged) while a nested directory gets its own.
    std::fs::remove_file(e.work.join(".gitattributes")).unwrap();
    e.write("n/.gitattributes", b"*.bin eol=crlf\n");
    let third = e.commit("other attributes");
    let logged = e.audit().len();
    assert_rejected(p.push());
    let hook = p.hook_records(logged);
    let files = p.audit(&[]);
    assert_eq!(same_as_hook(&hook, &files, "n/w.bin", &third), "text, CRLF line endings");
    let at_third: Vec<&serde_json::Value> = files
        .iter()
        .filter(|f| f["commit"].as_str() == Some(third.as_str()) && f["path"] != "n/.gitattributes")
        .collect();
    assert_eq!(at_third.len(), 1, "{at_third:?}");
}

#[test]
fn an_unknown_filter_follows_on_error_and_symlinks_are_files() {
    let p = Pair::new();
    let e = &p.e;
    e.write(".gitattributes", b"*.pkl filter=mystery\n");
    e.write("m.pkl", GOOD_PICKLE);
    e.commit("filtered");
    let blob = e.hash_object(EVIL_PICKLE);
    e.w(&["update-index", "--add", "--cacheinfo", &format!("120000,{blob},link.pkl")]);
    e.w(&["commit", "-q", "-m", "a symbolic link"]);
    let c = e.w(&["rev-parse", "HEAD"]);
    let first = e.w(&["rev-parse", "HEAD~1"]);
    assert_rejected(p.push());
    let hook = p.hook_records(0);
    let files = p.audit(&[]);
    assert_eq!(same_as_hook(&hook, &files, "m.pkl", &first), "filter=mystery");
    let m = at(&files, "m.pkl", &first);
    assert_eq!(m["codes"][0], "checkout-filter-unknown");
    assert!(m["decided_by"].as_str().unwrap().contains("policy on_error = reject"), "{m}");
    // A symbolic link's target text is the file a client without symlinks gets.
    let link = at(&files, "link.pkl", &c);
    assert_eq!((link["verdict"].as_str(), link["decision"].as_str()), (Some("dangerous"), Some("reject")), "{link}");
    assert!(hook.iter().any(|r| r["path"] == "link.pkl" && r["verdict"] == "dangerous"), "{hook:?}");

    // With on_error = "tag" the gate lets it through with a warning, and so does the audit.
    let policy = e.policy("tag.toml", "[gate]\non_error = \"tag\"\n");
    let files = p.audit(&["--policy", policy.to_str().unwrap()]);
    let m = at(&files, "m.pkl", &first);
    assert_eq!((m["decision"].as_str(), m["checkout"].as_str()), (Some("tag"), Some("filter=mystery")), "{m}");
}

#[test]
fn deep_trees_are_walked_and_paths_the_gate_refuses_fail_closed() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let bare = dir.path().join("deep.git");
    let o = git_cmd(&home, dir.path()).args(["init", "-q", "--bare"]).arg(&bare).output().unwrap();
    assert!(o.status.success());
    let commit = |depth: usize, r: &str| {
        let path = format!("{}evil.pkl", "d/".repeat(depth));
        let mut s = format!(
            "commit {r}\ncommitter T <t@example.com> 1700000000 +0000\ndata 4\ndeep\nM 100644 inline {path}\ndata {}\n",
            EVIL_PICKLE.len()
        )
        .into_bytes();
        s.extend_from_slice(EVIL_PICKLE);
        s.push(b'\n');
        s
    };
    let import = |stream: Vec<u8>| {
        let mut c = git_cmd(&home, &bare);
        c.args(["fast-import", "--quiet"]).stdin(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&stream).unwrap();
        assert!(child.wait().unwrap().success());
    };
    let audit = || {
        let o = Command::new(BIN).args(["audit", "-q"]).arg(&bare).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", show(&o.stderr));
        show(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect::<Vec<serde_json::Value>>()
    };
    // Deeper than git's core.maxTreeDepth (4096): the walk is no recursion.
    import(commit(5000, "refs/heads/main"));
    let lines = audit();
    let f = lines.iter().find(|l| l["type"] == "file").unwrap();
    assert_eq!((f["verdict"].as_str(), f["path"].as_str().map(str::len)), (Some("dangerous"), Some(10_008)));
    // A path of more than 64 KiB, which the gate refuses too: the repository fails.
    import(commit(33_000, "refs/heads/deeper"));
    let lines = audit();
    let repo = lines.iter().find(|l| l["type"] == "repository").unwrap();
    assert!(repo["error"].as_str().unwrap().contains("nested too deeply"), "{repo}");
}
