//! `modelgate audit` over a forge's repository root: Gitea and GitLab layouts, forks sharing
//! history, each repository's own policy (its file, or the one its installed hook names),
//! LFS objects, each blob judged once for the fleet, shards run by `xargs -P` and by the
//! Kubernetes manifest's own command and merged into the unsharded output, a resumed run,
//! and quarantine.

mod git_support;

use git_support::{git_cmd, pointer, sha256_hex, show, BIN, EVIL_PICKLE, GOOD_PICKLE, SUSPICIOUS_PICKLE};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Fleet {
    dir: tempfile::TempDir,
    home: PathBuf,
    root: PathBuf,
}

impl Fleet {
    fn new() -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let root = dir.path().join("repositories");
        std::fs::create_dir_all(&root).unwrap();
        Fleet { dir, home, root }
    }

    fn git(&self, cwd: &Path, args: &[&str]) -> String {
        let o = git_cmd(&self.home, cwd).args(args).output().unwrap();
        assert!(o.status.success(), "git {args:?}: {}{}", show(&o.stdout), show(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim_end().to_string()
    }

    /// A work repository with `files` committed one commit each, published as a bare
    /// repository at `rel` under the root. LFS files (`(path, object)`) get a pointer, and the
    /// object goes into the bare repository's store (`lfs/objects`, as a `file://` push leaves
    /// it).
    fn origin(&self, rel: &str, files: &[(&str, &[u8])], lfs: &[(&str, &[u8])]) -> PathBuf {
        let work = self.dir.path().join("work").join(rel);
        std::fs::create_dir_all(&work).unwrap();
        self.git(&work, &["init", "-q", "-b", "main"]);
        for (path, bytes) in files {
            let p = work.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, bytes).unwrap();
            self.git(&work, &["add", "-A"]);
            self.git(&work, &["commit", "-q", "-m", &format!("add {path}")]);
        }
        for (path, bytes) in lfs {
            let p = work.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, pointer(bytes)).unwrap();
            self.git(&work, &["add", "-A"]);
            self.git(&work, &["commit", "-q", "-m", &format!("add {path} (lfs)")]);
        }
        let bare = self.root.join(rel);
        std::fs::create_dir_all(bare.parent().unwrap()).unwrap();
        self.git(self.dir.path(), &["clone", "-q", "--bare", work.to_str().unwrap(), bare.to_str().unwrap()]);
        for (_, bytes) in lfs {
            put_lfs(&bare, bytes);
        }
        bare
    }

    /// A fork of `origin` at `rel`: `--shared` (objects stay in the origin, as GitLab's object
    /// pools) or a plain local clone (as Gitea copies), with its LFS objects hard-linked, and
    /// one commit of its own.
    fn fork(&self, origin: &Path, rel: &str, shared: bool, extra: (&str, &[u8])) -> PathBuf {
        let bare = self.root.join(rel);
        std::fs::create_dir_all(bare.parent().unwrap()).unwrap();
        let mut args = vec!["clone", "-q", "--bare"];
        if shared {
            args.push("--shared");
        }
        args.extend([origin.to_str().unwrap(), bare.to_str().unwrap()]);
        self.git(self.dir.path(), &args);
        link_tree(&origin.join("lfs"), &bare.join("lfs"));
        let work = self.dir.path().join("work").join(format!("{rel}-fork"));
        self.git(self.dir.path(), &["clone", "-q", bare.to_str().unwrap(), work.to_str().unwrap()]);
        std::fs::write(work.join(extra.0), extra.1).unwrap();
        self.git(&work, &["add", "-A"]);
        self.git(&work, &["commit", "-q", "-m", "fork's own"]);
        self.git(&work, &["push", "-q", "origin", "main"]);
        bare
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn put_lfs(bare: &Path, bytes: &[u8]) -> PathBuf {
    let oid = sha256_hex(bytes);
    let p = bare.join("lfs/objects").join(&oid[..2]).join(&oid[2..4]).join(&oid);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    p
}

fn link_tree(from: &Path, to: &Path) {
    if !from.exists() {
        return;
    }
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        let dest = to.join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::hard_link(e.path(), &dest).unwrap();
        }
    }
}

fn audit(args: &[&str], paths: &[&Path]) -> Output {
    Command::new(BIN).arg("audit").args(args).args(paths).output().unwrap()
}

fn lines(o: &[u8]) -> Vec<Value> {
    show(o).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn files<'a>(ls: &'a [Value], repo: &str) -> Vec<&'a Value> {
    ls.iter().filter(|l| l["type"] == "file" && l["repository"] == repo).collect()
}

fn file<'a>(ls: &'a [Value], repo: &str, path: &str) -> &'a Value {
    files(ls, repo).into_iter().find(|f| f["path"] == path).unwrap_or_else(|| panic!("no {path} in {repo}"))
}

/// The number in `... judged N (...` and `M from other repositories` of the closing stats.
fn stats(stderr: &[u8]) -> (u64, u64) {
    let s = show(stderr);
    let after = |key: &str| -> u64 {
        let i = s.find(key).unwrap_or_else(|| panic!("no {key:?} in {s}"));
        s[..i].split_whitespace().last().unwrap().parse().unwrap()
    };
    let judged: u64 = s.split("judged ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    (judged, after(" from other repositories"))
}

/// alice/models (origin), bob/models (shared fork), carol/models (copied fork with its own
/// stricter policy), dave/tools (no models), erin/hooked (a hook installed with a policy).
fn gitea() -> (Fleet, PathBuf) {
    let f = Fleet::new();
    let lfs_evil = [EVIL_PICKLE, b"padding to make another object".as_slice()].concat();
    let alice = f.origin(
        "alice/models.git",
        &[
            ("README.md", b"# models\n"),
            ("good.pkl", GOOD_PICKLE),
            ("evil.pkl", EVIL_PICKLE),
            ("sus.pkl", SUSPICIOUS_PICKLE),
        ],
        &[("weights/model.pkl", &lfs_evil), ("weights/ok.pkl", GOOD_PICKLE)],
    );
    f.fork(&alice, "bob/models.git", true, ("bob.txt", b"bob was here\n"));
    let carol = f.fork(&alice, "carol/models.git", false, ("carol.txt", b"carol was here\n"));
    std::fs::write(carol.join("modelgate.toml"), "[actions]\nsuspicious = \"reject\"\n").unwrap();
    f.origin("dave/tools.git", &[("tool.py", b"print('hi')\n")], &[]);
    let erin = f.origin("erin/hooked.git", &[("good.pkl", GOOD_PICKLE)], &[]);
    let policy = f.path("erin-policy.toml");
    std::fs::write(
        &policy,
        "[[rule]]\npaths = [\"**/*.pkl\"]\nactions = { safe = \"tag\" }\nreason = \"every pickle is reviewed\"\n",
    )
    .unwrap();
    let o =
        Command::new(BIN).args(["install", "--flavor", "gitea", "--policy"]).arg(&policy).arg(&erin).output().unwrap();
    assert!(o.status.success(), "{}", show(&o.stderr));
    let root = f.root.clone();
    (f, root)
}

#[test]
fn a_gitea_root_is_audited_with_each_repositorys_policy() {
    let (_f, root) = gitea();
    let o = audit(&["--flavor", "gitea"], &[&root]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o.stderr));
    let ls = lines(&o.stdout);
    let repos: Vec<&str> =
        ls.iter().filter(|l| l["type"] == "repository").map(|l| l["repository"].as_str().unwrap()).collect();
    assert_eq!(repos, ["alice/models", "bob/models", "carol/models", "dave/tools", "erin/hooked"]);
    for repo in ["alice/models", "bob/models", "carol/models"] {
        let evil = file(&ls, repo, "evil.pkl");
        assert_eq!((evil["verdict"].as_str(), evil["decision"].as_str()), (Some("dangerous"), Some("reject")));
        assert_eq!(evil["imports"][0], "os.system");
        assert_eq!(evil["findings"][0]["evidence"], "os.system('echo pwned')");
        // The LFS object behind the pointer is what is judged.
        let m = file(&ls, repo, "weights/model.pkl");
        assert_eq!(m["verdict"], "dangerous");
        assert_eq!(m["lfs_oid"].as_str().unwrap().len(), 64);
        assert_eq!(m["size"].as_u64().unwrap() as usize, EVIL_PICKLE.len() + 30);
        assert_eq!(file(&ls, repo, "weights/ok.pkl")["verdict"], "safe");
        assert_eq!(file(&ls, repo, "good.pkl")["decision"], "allow");
    }
    // Each repository's own policy: carol's rejects suspicious files, the others tag them.
    assert_eq!(file(&ls, "alice/models", "sus.pkl")["decision"], "tag");
    assert_eq!(file(&ls, "carol/models", "sus.pkl")["decision"], "reject");
    let carol = ls.iter().find(|l| l["repository"] == "carol/models" && l["type"] == "repository").unwrap();
    assert!(carol["policy"].as_str().unwrap().ends_with("carol/models.git/modelgate.toml"), "{carol}");
    // erin's installed hook names a policy: the audit uses it, and says which rule decided.
    let good = file(&ls, "erin/hooked", "good.pkl");
    assert_eq!(good["decision"], "tag");
    assert!(good["decided_by"].as_str().unwrap().contains("every pickle is reviewed"), "{good}");
    assert!(files(&ls, "dave/tools").is_empty());
    let s = ls.last().unwrap();
    assert_eq!(s["type"], "summary");
    assert_eq!(s["repositories"], 5);
    assert_eq!(s["dangerous"], 6);
    assert_eq!(s["reject"], 7);
    assert_eq!(s["exit_code"], 1);
}

#[test]
fn each_blob_is_judged_once_for_the_fleet() {
    let f = Fleet::new();
    let alice = f.origin(
        "alice/models.git",
        &[("good.pkl", GOOD_PICKLE), ("evil.pkl", EVIL_PICKLE), ("a.txt", b"a\n")],
        &[("w.pkl", b"\x80\x04K\x02.")],
    );
    f.fork(&alice, "bob/models.git", true, ("bob.txt", b"bob\n"));
    f.fork(&alice, "carol/models.git", false, ("carol.txt", b"carol\n"));
    let o = audit(&["--flavor", "gitea"], &[&f.root]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o.stderr));
    // alice's 4 blobs (3 files and a pointer), then only each fork's own file.
    let (judged, fleet) = stats(&o.stderr);
    assert_eq!((judged, fleet), (6, 8), "{}", show(&o.stderr));
    // A shared cache directory: a second run judges nothing but the files the gate does not
    // cache (small files of no known format cost less to judge again than to look up).
    let cache = f.path("cache");
    let first = audit(&["--flavor", "gitea", "--cache", cache.to_str().unwrap()], &[&f.root]);
    let second = audit(&["--flavor", "gitea", "--cache", cache.to_str().unwrap()], &[&f.root]);
    assert_eq!(first.stdout, second.stdout);
    assert_eq!(first.stdout, o.stdout);
    let s = show(&second.stderr);
    assert!(s.contains("3 from the cache"), "{s}");
}

#[test]
fn each_blob_is_judged_once_per_checkout_for_the_fleet() {
    let f = Fleet::new();
    // A pickle git's detection takes for binary, harmless as stored; LF -> CRLF turns its
    // short byte string's contents into opcodes. The attributes arrive in a later commit.
    let ops: &[u8] = b"\x8c\x02os\x8c\x06system\x93\x8c\x0becho pwned!\x85R";
    let q = [b"0".as_slice(), ops].concat();
    let mut p = b"C\x01\x000".to_vec();
    p.extend(b"N0".repeat(300));
    p.push(b'C');
    p.push(u8::try_from(2 * q.len()).unwrap());
    p.extend(std::iter::repeat_n(b'\n', q.len()));
    p.extend_from_slice(&q);
    p.push(b'.');
    let alice = f.origin("alice/models.git", &[("m/x.bin", &p), (".gitattributes", b"m/*.bin text eol=crlf\n")], &[]);
    f.fork(&alice, "bob/models.git", true, ("bob.txt", b"bob\n"));
    let o = audit(&["--flavor", "gitea"], &[&f.root]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o.stderr));
    // alice: m/x.bin as stored, m/x.bin with CRLF line endings, .gitattributes; bob: those
    // three from alice's judgements, and its own file.
    assert_eq!(stats(&o.stderr), (4, 3), "{}", show(&o.stderr));
    let ls = lines(&o.stdout);
    for repo in ["alice/models", "bob/models"] {
        let all = files(&ls, repo);
        let x: Vec<&&Value> = all.iter().filter(|r| r["path"] == "m/x.bin" && r["decision"] != "allow").collect();
        assert_eq!(x.len(), 1, "only the place with the attributes is rejected: {all:?}");
        assert_eq!(x[0]["decision"], "reject");
        assert_eq!(x[0]["verdict"], "dangerous");
        assert_eq!(x[0]["checkout"], "text, CRLF line endings");
        assert_eq!(x[0]["decided_by"], "as checked out with text, CRLF line endings");
    }
    // Through the disk cache: a second run judges nothing the gate keeps (the pickle under
    // both checkouts); the small files of no known format are judged again.
    let cache = f.path("cache");
    let first = audit(&["--flavor", "gitea", "--cache", cache.to_str().unwrap()], &[&f.root]);
    let second = audit(&["--flavor", "gitea", "--cache", cache.to_str().unwrap()], &[&f.root]);
    assert_eq!(first.stdout, o.stdout);
    assert_eq!(second.stdout, o.stdout);
    assert!(show(&second.stderr).contains("2 from the cache"), "{}", show(&second.stderr));
}

#[test]
fn a_blob_is_judged_again_under_a_name_that_claims_a_model() {
    // Bytes no format matches: unsupported under a neutral name, an error (fail closed)
    // under a name that claims a model format, whichever repository judged them first.
    let mut x: u64 = 7;
    let mut bytes = b"\xfe\xed\xfa\xce".to_vec();
    while bytes.len() < 3000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.push((x >> 24) as u8);
    }
    let f = Fleet::new();
    f.origin("alice/data.git", &[("a.bin", &bytes)], &[]);
    f.origin("bob/models.git", &[("weights/model.safetensors", &bytes), ("b.bin", &bytes)], &[]);
    let o = audit(&["--flavor", "gitea", "--all-files"], &[&f.root]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o.stderr));
    let ls = lines(&o.stdout);
    assert_eq!(file(&ls, "alice/data", "a.bin")["decision"], "allow");
    assert_eq!(file(&ls, "bob/models", "b.bin")["decision"], "allow");
    let m = file(&ls, "bob/models", "weights/model.safetensors");
    assert_eq!((m["verdict"].as_str(), m["decision"].as_str()), (Some("error"), Some("reject")), "{m}");
    assert!(m["codes"].to_string().contains("model-content-unrecognised"), "{m}");
    // alice's a.bin, bob's model.safetensors (another claim) judged; bob's b.bin from alice's.
    assert_eq!(stats(&o.stderr), (2, 1), "{}", show(&o.stderr));
}

/// Run the shards with `xargs -P`, as the README shows, and merge them.
fn sharded(root: &Path, out: &Path, n: usize, extra: &str) -> Output {
    std::fs::create_dir_all(out).unwrap();
    let cmd = format!(
        "seq 0 {last} | xargs -P {n} -I{{}} '{BIN}' audit -q --flavor gitea {extra} --shard {{}}/{n} '{root}' -o '{out}/shard-{{}}.jsonl'",
        last = n - 1,
        root = root.display(),
        out = out.display()
    );
    let o = Command::new("sh").args(["-c", &cmd]).output().unwrap();
    // xargs exits 123 when a command exited 1 (rejected files), which is a finished audit.
    assert!(matches!(o.status.code(), Some(0 | 123)), "{}", show(&o.stderr));
    let shards: Vec<PathBuf> = (0..n).map(|i| out.join(format!("shard-{i}.jsonl"))).collect();
    Command::new(BIN).args(["audit", "merge"]).args(&shards).output().unwrap()
}

#[test]
fn merged_shards_equal_the_unsharded_audit() {
    let (f, root) = gitea();
    let whole = audit(&["--flavor", "gitea"], &[&root]);
    for n in [1, 2, 3, 7] {
        let merged = sharded(&root, &f.path(&format!("shards-{n}")), n, "");
        assert_eq!(merged.status.code(), Some(1), "{}", show(&merged.stderr));
        assert_eq!(show(&merged.stdout), show(&whole.stdout), "{n} shards");
    }
    // Every repository is in exactly one shard, and each shard says which it is.
    let dir = f.path("shards-3");
    let mut seen = Vec::new();
    for i in 0..3 {
        let ls = lines(&std::fs::read(dir.join(format!("shard-{i}.jsonl"))).unwrap());
        assert_eq!(ls.last().unwrap()["shard"], format!("{i}/3"));
        seen.extend(ls.iter().filter(|l| l["type"] == "repository").map(|l| l["repository"].to_string()));
    }
    seen.sort();
    assert_eq!(seen.len(), 5);
    seen.dedup();
    assert_eq!(seen.len(), 5);
    // A missing shard, a shard given twice, or a truncated one is refused.
    let shard = |i: usize| dir.join(format!("shard-{i}.jsonl"));
    let o = Command::new(BIN).args(["audit", "merge"]).arg(shard(0)).arg(shard(2)).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(show(&o.stderr).contains("shard 1/3 is missing"), "{}", show(&o.stderr));
    let o = Command::new(BIN).args(["audit", "merge", "--partial"]).arg(shard(0)).arg(shard(2)).output().unwrap();
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", show(&o.stderr));
    let o = Command::new(BIN)
        .args(["audit", "merge"])
        .arg(shard(0))
        .arg(shard(1))
        .arg(shard(2))
        .arg(shard(1))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", show(&o.stdout));
    let text = std::fs::read_to_string(shard(1)).unwrap();
    let cut = dir.join("cut.jsonl");
    std::fs::write(&cut, text.lines().take(text.lines().count() - 1).collect::<Vec<_>>().join("\n")).unwrap();
    let o = Command::new(BIN).args(["audit", "merge"]).arg(shard(0)).arg(&cut).arg(shard(2)).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(show(&o.stderr).contains("no summary line"), "{}", show(&o.stderr));
    let edited = dir.join("edited.jsonl");
    std::fs::write(&edited, std::fs::read_to_string(shard(2)).unwrap().replace("\"reject\"", "\"allow\"")).unwrap();
    let o = Command::new(BIN).args(["audit", "merge"]).arg(shard(0)).arg(shard(1)).arg(&edited).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "an edited shard must not merge");
}

/// The lines of the manifest between `# begin NAME` and `# end NAME`, unindented.
fn manifest_script(path: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let begin = format!("# begin {name}");
    let end = format!("# end {name}");
    let lines: Vec<&str> = text.lines().collect();
    let a = lines.iter().position(|l| l.trim() == begin).unwrap_or_else(|| panic!("no {begin}"));
    let b = lines.iter().position(|l| l.trim() == end).unwrap();
    let indent = lines[a].len() - lines[a].trim_start().len();
    lines[a + 1..b].iter().map(|l| l.get(indent..).unwrap_or("")).collect::<Vec<_>>().join("\n")
}

#[test]
fn the_kubernetes_indexed_job_runs_its_shards_and_merges() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/audit-job.yaml");
    let merge_manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/audit-merge-job.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains("completionMode: Indexed"));
    let value = |key: &str| -> String {
        let l = text.lines().find(|l| l.trim_start().starts_with(key)).unwrap();
        l.split(':').nth(1).unwrap().trim().trim_matches('"').to_string()
    };
    let completions: usize = value("completions:").parse().unwrap();
    let shards_env = {
        let lines: Vec<&str> = text.lines().collect();
        let i = lines.iter().position(|l| l.trim() == "- name: SHARDS").unwrap();
        lines[i + 1].split(':').nth(1).unwrap().trim().trim_matches('"').parse::<usize>().unwrap()
    };
    assert_eq!(completions, shards_env, "SHARDS must equal completions");
    assert_eq!(value("parallelism:").parse::<usize>().unwrap(), completions);

    // Run each pod's command as Kubernetes would (JOB_COMPLETION_INDEX set), here with 3
    // shards on a local fleet, then the merge Job's command.
    let (f, root) = gitea();
    let out = f.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let script = manifest_script(&manifest, "shard command");
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    for i in 0..3 {
        let o = Command::new("sh")
            .args(["-c", &script])
            .env("JOB_COMPLETION_INDEX", i.to_string())
            .env("SHARDS", "3")
            .env("REPOS", &root)
            .env("OUT", &out)
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(o.status.success(), "pod {i}: {}{}", show(&o.stdout), show(&o.stderr));
    }
    let o = Command::new("sh")
        .args(["-c", &manifest_script(&merge_manifest, "merge command")])
        .env("OUT", &out)
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(o.status.success(), "merge: {}{}", show(&o.stdout), show(&o.stderr));
    let whole = audit(&["--flavor", "gitea"], &[&root]);
    assert_eq!(std::fs::read_to_string(out.join("audit.jsonl")).unwrap(), show(&whole.stdout));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("alice/models") && html.contains("data-count=\"dangerous\""));
}

#[test]
fn an_interrupted_audit_resumes_where_it_stopped() {
    let (f, root) = gitea();
    let whole = audit(&["--flavor", "gitea"], &[&root]);
    let state = f.path("audit.state");
    let first = audit(&["--flavor", "gitea", "--state", state.to_str().unwrap()], &[&root]);
    assert_eq!(first.stdout, whole.stdout);
    // Interrupted in the middle of writing the third repository: the first two are done.
    let text = std::fs::read_to_string(&state).unwrap();
    let all: Vec<&str> = text.lines().collect();
    let ends: Vec<usize> =
        all.iter().enumerate().filter(|(_, l)| l.contains("\"type\":\"repository\"")).map(|(i, _)| i).collect();
    let keep = all[..=ends[1]].join("\n") + "\n" + &all[ends[1] + 1][..20];
    std::fs::write(&state, keep).unwrap();
    let out = f.path("resumed.jsonl");
    let second =
        audit(&["--flavor", "gitea", "--state", state.to_str().unwrap(), "-o", out.to_str().unwrap()], &[&root]);
    assert_eq!(second.status.code(), Some(1));
    let err = show(&second.stderr);
    assert!(err.contains("(3 audited, 2 resumed)"), "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), show(&whole.stdout));
    // Run again: everything from the state file.
    let third = audit(&["--flavor", "gitea", "--state", state.to_str().unwrap()], &[&root]);
    assert!(show(&third.stderr).contains("(0 audited, 5 resumed)"), "{}", show(&third.stderr));
    assert_eq!(third.stdout, whole.stdout);
    // A state file of another audit is refused rather than mixed in.
    let other = audit(&["--flavor", "gitea", "--all-files", "--state", state.to_str().unwrap()], &[&root]);
    assert_eq!(other.status.code(), Some(2));
    assert!(show(&other.stderr).contains("belongs to another audit"), "{}", show(&other.stderr));
}

#[test]
fn quarantine_moves_rejected_lfs_objects_out_of_the_store() {
    let f = Fleet::new();
    let evil = [EVIL_PICKLE, b"lfs".as_slice()].concat();
    let alice = f.origin("alice/models.git", &[("a.txt", b"a\n")], &[("w/evil.pkl", &evil), ("w/ok.pkl", GOOD_PICKLE)]);
    let bob = f.fork(&alice, "bob/models.git", false, ("b.txt", b"b\n"));
    let q = f.path("quarantine");
    let oid = sha256_hex(&evil);
    let o = audit(&["--flavor", "gitea", "--quarantine", q.to_str().unwrap()], &[&f.root]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o.stderr));
    let ls = lines(&o.stdout);
    for (repo, dir) in [("alice/models", &alice), ("bob/models", &bob)] {
        let rec = file(&ls, repo, "w/evil.pkl");
        let moved = PathBuf::from(rec["quarantined"].as_str().unwrap_or_else(|| panic!("{rec}")));
        assert!(moved.starts_with(&q) && moved.is_file(), "{rec}");
        assert_eq!(std::fs::read(&moved).unwrap(), evil);
        assert!(!dir.join("lfs/objects").join(&oid[..2]).join(&oid[2..4]).join(&oid).exists());
        let meta: Value = serde_json::from_slice(&std::fs::read(format!("{}.json", moved.display())).unwrap()).unwrap();
        assert_eq!(meta["repository"], repo);
        assert_eq!(meta["verdict"]["verdict"], "dangerous");
        assert!(file(&ls, repo, "w/ok.pkl")["quarantined"].is_null());
    }
    let ok = sha256_hex(GOOD_PICKLE);
    assert!(alice.join("lfs/objects").join(&ok[..2]).join(&ok[2..4]).join(&ok).is_file());
}

#[test]
fn a_gitlab_hashed_root_names_projects_by_their_path() {
    let f = Fleet::new();
    let hashed = |n: &str| {
        let h = sha256_hex(n.as_bytes());
        format!("@hashed/{}/{}/{h}.git", &h[..2], &h[2..4])
    };
    let a = f.origin(&hashed("1"), &[("m/sus.pkl", SUSPICIOUS_PICKLE)], &[]);
    f.git(&a, &["config", "gitlab.fullpath", "ml-team/vision/detector"]);
    let b = f.origin(&hashed("2"), &[("m/sus.pkl", SUSPICIOUS_PICKLE)], &[]);
    f.git(&b, &["config", "gitlab.fullpath", "other/project"]);
    // An object pool is not a project: its forks are audited through themselves.
    let pool = f.origin("@pools/ab/cd/abcd.git", &[("m/evil.pkl", EVIL_PICKLE)], &[]);
    let _ = pool;
    let policy = f.path("policy.toml");
    std::fs::write(
        &policy,
        "[[rule]]\nrepos = [\"ml-team/**\"]\nactions = { suspicious = \"reject\" }\nreason = \"ml-team ships only allowlisted models\"\n",
    )
    .unwrap();
    let o = audit(&["--flavor", "gitlab", "--policy", policy.to_str().unwrap()], &[&f.root]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o.stderr));
    let ls = lines(&o.stdout);
    let repos: Vec<&str> =
        ls.iter().filter(|l| l["type"] == "repository").map(|l| l["repository"].as_str().unwrap()).collect();
    assert_eq!(repos, ["ml-team/vision/detector", "other/project"]);
    let d = file(&ls, "ml-team/vision/detector", "m/sus.pkl");
    assert_eq!(d["decision"], "reject");
    assert!(d["decided_by"].as_str().unwrap().contains("ml-team ships"), "{d}");
    assert_eq!(file(&ls, "other/project", "m/sus.pkl")["decision"], "tag");
}

#[test]
fn bad_paths_and_policies_fail_clearly() {
    let f = Fleet::new();
    let o = audit(&[], &[&f.path("nowhere")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(show(&o.stderr).contains("nowhere"), "{}", show(&o.stderr));
    // A directory with no repository is not a clean fleet.
    let o = audit(&[], &[&f.root]);
    assert_eq!(o.status.code(), Some(2));
    assert!(show(&o.stderr).contains("no git repository"), "{}", show(&o.stderr));
    // A repository whose own policy is broken fails (fail closed); the others are audited.
    let a = f.origin("a/one.git", &[("good.pkl", GOOD_PICKLE)], &[]);
    f.origin("a/two.git", &[("good.pkl", GOOD_PICKLE)], &[]);
    std::fs::write(a.join("modelgate.toml"), "[actions]\nsafe = \"rejct\"\n").unwrap();
    let o = audit(&["--flavor", "gitea"], &[&f.root]);
    assert_eq!(o.status.code(), Some(1));
    let ls = lines(&o.stdout);
    let one = ls.iter().find(|l| l["repository"] == "a/one" && l["type"] == "repository").unwrap();
    assert!(one["error"].as_str().unwrap().contains("rejct"), "{one}");
    assert_eq!(file(&ls, "a/two", "good.pkl")["decision"], "allow");
    assert_eq!(ls.last().unwrap()["failed"], 1);
    // --shard must be INDEX/COUNT with INDEX < COUNT.
    let o = audit(&["--shard", "3/3"], &[&f.root]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn html_output_is_one_self_contained_file() {
    let (f, root) = gitea();
    let out = f.path("report.html");
    let o = audit(&["--flavor", "gitea", "--format", "html", "-o", out.to_str().unwrap()], &[&root]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o.stderr));
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    for forbidden in ["http://", "https://", "src=\"", "<link", "@import", "url("] {
        assert!(!html.contains(forbidden), "{forbidden} in the report");
    }
    assert!(html.contains("Content-Security-Policy"));
    // Writing to something that is not a regular file writes into it, never replaces it.
    let o = audit(&["--flavor", "gitea", "-o", "/dev/null"], &[&root]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!std::fs::metadata("/dev/null").unwrap().is_file());
}
