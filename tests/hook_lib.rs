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

/// A reader whose store refuses big allocations reads small blobs in one lookup, falls back to
/// the header and `git cat-file` for big ones, and still holds in memory a small blob stored
/// as a delta of a big one (gix refuses the base).
#[test]
fn a_limited_reader_reads_small_blobs_big_blobs_and_deltas_of_big_bases() {
    let e = Env::new();
    let mut big = Vec::new();
    for i in 0..4000u32 {
        big.extend_from_slice(format!("line {i} of a text that git will store as the base\n").as_bytes());
    }
    let mut small = big[..big.len() / 3].to_vec();
    small.extend_from_slice(b"the small version ends here\n");
    e.write("big.txt", &big);
    e.commit("big");
    e.write("big.txt", &small);
    e.commit("small");
    e.w(&["repack", "-adf", "--window=10", "--depth=5"]);
    let ids = [e.hash_object(&big), e.hash_object(&small)];
    // The small blob is a delta of the big one in the pack.
    let verify = e.w(&["verify-pack", "-v", &glob_pack(&e.work.join(".git/objects/pack"))]);
    let delta_line = verify.lines().find(|l| l.starts_with(ids[1].as_str())).unwrap().to_string();
    assert!(delta_line.contains(&ids[0]), "not a delta of the big blob: {delta_line}");

    let repo = GateRepo::open(&e.work.join(".git"), &GitEnv::default()).unwrap();
    let threshold = (big.len() as u64 + small.len() as u64) / 2;
    let mut r = BlobReader::at(repo.view().store_dir(), repo.object_hash(), repo.git_dir(), threshold).unwrap();
    let big_id = modelgate::git::ObjectId::from_hex(ids[0].as_bytes()).unwrap();
    let small_id = modelgate::git::ObjectId::from_hex(ids[1].as_bytes()).unwrap();
    assert!(r.try_read_small(&big_id).unwrap().is_none(), "over the limit");
    let b = r.read(&big_id).unwrap();
    assert!(b.streamed && b.memory.is_none());
    assert_eq!(modelgate::source::read_up_to(b.source.as_ref(), 0, big.len() + 1).unwrap(), big);
    // gix cannot resolve the delta within the limit; the header says small, and git reads it.
    assert!(r.try_read_small(&small_id).unwrap().is_none(), "the base is over the limit");
    let s = r.read(&small_id).unwrap();
    assert!(!s.streamed);
    assert_eq!(s.memory.as_ref().unwrap().0, small);
    // A missing object is an error, not "too big".
    let missing = modelgate::git::ObjectId::from_hex(b"0123456789012345678901234567890123456789").unwrap();
    assert!(r.try_read_small(&missing).is_err());
}

fn glob_pack(dir: &std::path::Path) -> String {
    let idx = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "idx"))
        .unwrap();
    idx.display().to_string()
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
    // No store at all is the server's fault, not the pusher's, and says so.
    let (code, err) = run(&e, &config, &create(&c));
    assert_eq!(code, 1);
    assert!(err.contains("server misconfiguration") && !err.contains("git lfs push"), "{err}");
    std::fs::create_dir_all(&root).unwrap();
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

/// Feed a fast-import stream to git in the work repository.
fn fast_import(e: &Env, stream: &[u8]) {
    let mut c = e.git(&e.work);
    c.args(["fast-import", "--quiet"]).stdin(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stream).unwrap();
    assert!(child.wait().unwrap().success());
}

/// Every object of the server repository, with its type.
fn all_objects(e: &Env, git_dir: &std::path::Path) -> Vec<(modelgate::git::ObjectId, String)> {
    let out = e.run(git_dir, &["cat-file", "--batch-all-objects", "--batch-check=%(objectname) %(objecttype)"]);
    out.lines()
        .map(|l| {
            let (id, kind) = l.split_once(' ').unwrap();
            (modelgate::git::ObjectId::from_hex(id.as_bytes()).unwrap(), kind.to_string())
        })
        .collect()
}

/// Read every object through `PackedObjects` and check it against the object store and its
/// own id; returns the reader's counts.
fn check_packed(e: &Env, git_dir: &std::path::Path) -> (usize, modelgate::git::PackedStats) {
    use gix::objs::Find;
    let repo = GateRepo::open(git_dir, &GitEnv::default()).unwrap();
    let objects_dir = repo.view().first_objects_dir().unwrap().to_path_buf();
    assert_eq!(objects_dir, git_dir.join("objects"));
    let packed = modelgate::git::PackedObjects::open(Some(&objects_dir), &repo.repo.objects, repo.object_hash());
    assert!(packed.packs() > 0);
    let objects = all_objects(e, git_dir);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    // Twice: decoded, then (partly) from the cache.
    for _ in 0..2 {
        for (id, kind) in &objects {
            let mine = packed.try_find(id, &mut a).unwrap().unwrap();
            let theirs = repo.repo.objects.try_find(id, &mut b).unwrap().unwrap();
            assert_eq!((mine.kind, mine.data), (theirs.kind, theirs.data), "{id}");
            assert_eq!(mine.kind.to_string(), *kind);
            assert_eq!(gix::objs::compute_hash(repo.object_hash(), mine.kind, mine.data).unwrap(), *id);
        }
    }
    (objects.len(), packed.stats())
}

/// (deltas by offset, deltas by id, deepest chain) over the packs of `git_dir`.
fn delta_shapes(e: &Env, git_dir: &std::path::Path) -> (usize, usize, usize) {
    use gix::odb::pack;
    let (mut ofs, mut refs, mut depth) = (0, 0, 0);
    for f in std::fs::read_dir(git_dir.join("objects/pack")).unwrap() {
        let path = f.unwrap().path();
        if path.extension().is_some_and(|x| x == "idx") {
            let index = pack::index::File::at(&path, gix::hash::Kind::Sha1).unwrap();
            let data = pack::data::File::at(path.with_extension("pack"), gix::hash::Kind::Sha1).unwrap();
            for entry in index.iter() {
                match data.entry(entry.pack_offset).unwrap().header {
                    pack::data::entry::Header::OfsDelta { .. } => ofs += 1,
                    pack::data::entry::Header::RefDelta { .. } => refs += 1,
                    _ => {}
                }
            }
            let v = e.run(git_dir, &["verify-pack", "-v", path.to_str().unwrap()]);
            for l in v.lines().filter(|l| l.starts_with("chain length = ")) {
                let n: usize = l["chain length = ".len()..].split(':').next().unwrap().parse().unwrap();
                depth = depth.max(n);
            }
        }
    }
    (ofs, refs, depth)
}

#[test]
fn packed_trees_decode_like_the_object_store() {
    let e = Env::new();
    e.remove_hook("pre-receive");
    // fast-import deltifies each tree against its previous version: chains up to 50 deep.
    let mut s = Vec::new();
    for c in 0..130u32 {
        s.extend_from_slice(b"commit refs/heads/main\ncommitter t <t@example.com> 1700000000 +0000\ndata 2\nc\n");
        for f in [c % 7, c % 11 + 20] {
            let body = format!("file {f} version {c}\n");
            s.extend_from_slice(
                format!("M 100644 inline dir/sub{}/f{f}\ndata {}\n{body}\n", f % 3, body.len()).as_bytes(),
            );
        }
    }
    fast_import(&e, &s);
    e.w(&["checkout", "-q", "-f", "main"]);
    assert_accepted(e.push(&["main"]));
    // An incremental push of more than 100 objects: a second (thin, then completed) pack.
    for c in 0..40 {
        e.write(format!("dir/sub1/f{}", c % 5), format!("later {c}\n").as_bytes());
        e.write(format!("dir/new{}/g", c % 4), format!("new {c}\n").as_bytes());
        e.commit("later");
    }
    assert_accepted(e.push(&["main"]));
    let packs = std::fs::read_dir(e.bare.join("objects/pack")).unwrap().count();
    assert!(packs >= 4, "two packs with their indexes expected, found {packs} files");
    let (ofs, refs, depth) = delta_shapes(&e, &e.bare);
    assert!(ofs > 100 && refs == 0 && depth >= 40, "{ofs} {refs} {depth}");
    let (n, stats) = check_packed(&e, &e.bare);
    assert_eq!(stats.decoded, 2 * n as u64, "{stats:?}");
    assert_eq!(stats.from_store, 0);

    // Repacked with deltas referenced by id instead of offset, and a loose object besides.
    let copy = e.dir.path().join("copy.git");
    e.run(e.dir.path(), &["clone", "-q", "--bare", "--no-local", e.bare.to_str().unwrap(), copy.to_str().unwrap()]);
    e.run(&copy, &["-c", "repack.useDeltaBaseOffset=false", "repack", "-q", "-a", "-d", "-f", "--depth=50"]);
    let mut c = e.git(&copy);
    c.args(["hash-object", "-w", "--stdin"]).stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"a loose object\n").unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let (ofs, refs, depth) = delta_shapes(&e, &copy);
    assert!(ofs == 0 && refs > 100 && depth >= 10, "{ofs} {refs} {depth}");
    let (n, stats) = check_packed(&e, &copy);
    assert_eq!(stats.from_store, 2, "only the loose object comes from the store: {stats:?}");
    assert_eq!(stats.decoded, 2 * (n as u64 - 1));
}

/// A small deterministic generator (the history must be the same on every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// Files under `dir` of the work tree (relative paths), symlinks included.
fn files(e: &Env, dir: &str) -> Vec<String> {
    let root = e.work.join(dir);
    let mut out: Vec<String> = walkdir::WalkDir::new(&root)
        .into_iter()
        .filter_entry(|d| d.file_name() != ".git")
        .filter_map(Result::ok)
        .filter(|d| !d.file_type().is_dir())
        .map(|d| d.path().strip_prefix(&e.work).unwrap().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// Write a file, unless a file stands where a directory would have to be.
fn put(e: &Env, path: impl AsRef<std::path::Path>, bytes: &[u8]) {
    let p = e.work.join(path);
    if std::fs::create_dir_all(p.parent().unwrap()).is_ok() && !p.is_dir() {
        std::fs::write(p, bytes).unwrap();
    }
}

/// One random change under `dir`: add, modify, delete, rename, chmod, file to directory and
/// back, symlinks; contents come from a small pool so that blobs repeat across paths.
fn mutate(e: &Env, rng: &mut Lcg, dir: &str) {
    use std::os::unix::fs::PermissionsExt;
    let pool = |n: usize| format!("content {n}\n").into_bytes();
    let existing = files(e, dir);
    let pick = |rng: &mut Lcg| existing.get(rng.next(existing.len().max(1))).cloned();
    let fresh = |rng: &mut Lcg| {
        let depth = 1 + rng.next(3);
        let mut p = dir.to_string();
        for _ in 0..depth {
            p.push_str(&format!("/{}", ["a", "b", "c"][rng.next(3)]));
        }
        format!("{p}/f{}", rng.next(6))
    };
    let op = if existing.is_empty() { 0 } else { rng.next(8) };
    let path = |p: &str| e.work.join(p);
    match (op, pick(rng)) {
        (1, Some(f)) => put(e, &f, &pool(rng.next(9))),
        (2, Some(f)) => std::fs::remove_file(path(&f)).unwrap(),
        (3, Some(f)) => {
            let to = fresh(rng);
            if !path(&to).exists() && !to.starts_with(&format!("{f}/")) {
                let _ = std::fs::create_dir_all(path(&to).parent().unwrap());
                if std::fs::rename(path(&f), path(&to)).is_err() {
                    put(e, &to, b"renamed\n");
                }
            }
        }
        (4, Some(f)) if path(&f).is_file() && !path(&f).is_symlink() => {
            let mode = std::fs::metadata(path(&f)).unwrap().permissions().mode();
            std::fs::set_permissions(path(&f), std::fs::Permissions::from_mode(mode ^ 0o111)).unwrap();
        }
        (5, Some(f)) => {
            // A file becomes a directory of the same name.
            std::fs::remove_file(path(&f)).unwrap();
            put(e, format!("{f}/inner"), &pool(rng.next(9)));
        }
        (6, Some(f)) => {
            // A directory becomes a file of the same name.
            let d = std::path::Path::new(&f).parent().unwrap().to_string_lossy().into_owned();
            if d != dir {
                std::fs::remove_dir_all(path(&d)).unwrap();
                put(e, &d, &pool(rng.next(9)));
            }
        }
        (7, _) => {
            let at = fresh(rng);
            if !path(&at).exists() {
                let _ = std::fs::create_dir_all(path(&at).parent().unwrap());
                if std::os::unix::fs::symlink(format!("target{}", rng.next(3)), path(&at)).is_err() {
                    put(e, &at, b"no link\n");
                }
            }
        }
        _ => {
            let at = fresh(rng);
            if std::fs::create_dir_all(path(&at).parent().unwrap()).is_ok() && !path(&at).is_dir() {
                put(e, &at, &pool(rng.next(9)));
            }
        }
    }
}

/// Parse `git diff-tree -r -z --raw` records: (new mode, new id, status, path).
fn raw_records(out: &[u8]) -> Vec<(String, String, String, String)> {
    let mut fields = out.split(|b| *b == 0).map(|f| String::from_utf8_lossy(f).into_owned());
    let mut recs = Vec::new();
    while let Some(meta) = fields.next() {
        if !meta.starts_with(':') {
            continue;
        }
        let parts: Vec<&str> = meta[1..].split(' ').collect();
        let path = fields.next().unwrap();
        recs.push((parts[1].to_string(), parts[3].to_string(), parts[4].to_string(), path));
    }
    recs
}

/// `introduced` finds exactly what git's own per-parent diffs show as added or changed, over
/// a generated history with merges, renames, mode and type changes, symlinks and a gitlink.
#[test]
fn introduced_matches_git_diff_tree() {
    use std::collections::BTreeSet;
    let e = Env::new();
    e.remove_hook("pre-receive");
    let mut rng = Lcg(7);
    for i in 0..6 {
        mutate(&e, &mut rng, "m");
        e.commit(&format!("old {i}"));
    }
    assert_accepted(e.push(&["main"]));
    let old = e.w(&["rev-parse", "HEAD"]);
    for round in 0..4 {
        e.w(&["checkout", "-q", "-B", "side"]);
        for i in 0..4 {
            mutate(&e, &mut rng, "s");
            e.commit(&format!("side {round} {i}"));
        }
        e.w(&["checkout", "-q", "main"]);
        for i in 0..6 {
            for _ in 0..1 + rng.next(3) {
                mutate(&e, &mut rng, "m");
            }
            e.commit(&format!("main {round} {i}"));
        }
        if round == 1 {
            // Type changes: a file becomes a symlink, a symlink a file.
            let all = files(&e, "m");
            let file = all.iter().find(|f| !e.work.join(f).is_symlink()).unwrap();
            let link = all.iter().find(|f| e.work.join(f).is_symlink());
            std::fs::remove_file(e.work.join(file)).unwrap();
            std::os::unix::fs::symlink("elsewhere", e.work.join(file)).unwrap();
            if let Some(link) = link {
                std::fs::remove_file(e.work.join(link)).unwrap();
                std::fs::write(e.work.join(link), b"content 1\n").unwrap();
            }
            e.commit("type changes");
        }
        if round == 2 {
            // A gitlink, and an evil merge (a file in neither parent).
            e.w(&["update-index", "--add", "--cacheinfo", &format!("160000,{old},mods/sub")]);
            e.w(&["commit", "-q", "-m", "submodule"]);
            e.w(&["merge", "-q", "--no-ff", "--no-commit", "side"]);
            e.write("evil.txt", b"content 3\n");
            e.w(&["add", "evil.txt"]);
            e.w(&["commit", "-q", "--no-edit"]);
        } else {
            e.w(&["merge", "-q", "--no-ff", "--no-edit", "side"]);
        }
    }
    e.w(&["checkout", "-q", "side"]);
    mutate(&e, &mut rng, "s");
    e.commit("side tip");
    let (main, side) = (e.w(&["rev-parse", "main"]), e.w(&["rev-parse", "side"]));
    assert_accepted(e.push(&["main:refs/heads/landing", "side:refs/heads/landing2"]));
    e.b(&["update-ref", "-d", "refs/heads/landing"]);
    e.b(&["update-ref", "-d", "refs/heads/landing2"]);

    // What git says.
    let empty = e.b(&["hash-object", "-t", "tree", "/dev/null"]);
    let commits = e.b(&["rev-list", &main, &side, "--not", "--all"]);
    let (mut want, mut links, mut gitlinks) = (BTreeSet::new(), 0, 0);
    let (mut merges, mut types) = (0, 0);
    for c in commits.lines() {
        let line = e.b(&["rev-list", "--parents", "-n1", c]);
        let mut parents: Vec<&str> = line.split(' ').skip(1).collect();
        merges += usize::from(parents.len() > 1);
        if parents.is_empty() {
            parents.push(&empty);
        }
        for p in parents {
            let o = e.git(&e.bare).args(["diff-tree", "-r", "--no-renames", "--raw", "-z", p, c]).output().unwrap();
            assert!(o.status.success());
            for (mode, id, status, path) in raw_records(&o.stdout) {
                types += usize::from(status == "T");
                if status == "D" {
                    continue;
                }
                match mode.as_str() {
                    "100644" | "100755" => {
                        want.insert((id, path, c.to_string()));
                    }
                    // Symbolic links are judged too: a client without symlinks writes a file.
                    "120000" => {
                        links += 1;
                        want.insert((id, path, c.to_string()));
                    }
                    "160000" => gitlinks += 1,
                    m => panic!("unexpected mode {m}"),
                }
            }
        }
    }
    assert!(
        merges >= 4 && links > 0 && gitlinks > 0 && types >= 2 && want.len() > 40,
        "{merges} {links} {gitlinks} {types} {}",
        want.len()
    );

    // What the gate finds.
    let repo = GateRepo::open(&e.bare, &GitEnv::default()).unwrap();
    let stdin = format!("{old} {main} refs/heads/main\n{} {side} refs/heads/side\n", "0".repeat(40));
    let updates = modelgate::git::parse_updates(stdin.as_bytes(), repo.object_hash()).unwrap();
    let hidden = modelgate::git::existing_tips(&repo.repo, |_| false).unwrap();
    let intro = modelgate::git::introduced(&repo, &updates, &hidden).unwrap();
    let mut got = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for b in &intro.blobs {
        assert!(ids.insert(b.id), "blob {} listed twice", b.id);
        for p in &b.places {
            let commit = p.commit.expect("every place is in a commit").to_string();
            assert!(got.insert((b.id.to_string(), p.path.to_string(), commit)), "place listed twice");
        }
    }
    assert_eq!(got, want);
    assert_eq!((intro.symlinks, intro.submodules), (links, gitlinks));
    let walked: BTreeSet<String> = intro.commits.iter().map(|c| c.to_string()).collect();
    assert_eq!(walked, commits.lines().map(str::to_string).collect());
}
