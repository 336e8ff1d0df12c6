//! The gate's record: one notes commit per push, moved with a compare-and-swap so that
//! concurrent pushes lose no note; notes merged into an existing (fanned-out) notes tree;
//! and the notes ref protected from pushes, deletions included.

mod git_support;
use git_support::*;
use std::path::PathBuf;

const NOTES: &str = "refs/notes/modelgate";

fn note(e: &Env, commit: &str) -> Option<String> {
    let o = e.git(&e.bare).args(["notes", "--ref", NOTES, "show", commit]).output().unwrap();
    o.status.success().then(|| show(&o.stdout))
}

/// A server with both hooks as `modelgate install` writes them.
fn gated() -> Env {
    let e = Env::new();
    e.remove_hook("pre-receive");
    e.install_gate(None, &[]);
    e
}

#[test]
fn ten_concurrent_pushes_keep_every_note() {
    let e = gated();
    e.write("README.md", b"base\n");
    e.commit("base");
    assert_accepted(e.push(&["main"]));
    const PUSHES: usize = 10;
    const COMMITS: usize = 3;
    // Ten clones, each with several new commits that hold a model file.
    let mut clones: Vec<(PathBuf, Vec<String>)> = Vec::new();
    for i in 0..PUSHES {
        let name = format!("clone{i}");
        e.run(e.dir.path(), &["clone", "-q", &format!("file://{}", e.bare.display()), &name]);
        let dir = e.dir.path().join(&name);
        e.run(&dir, &["checkout", "-q", "-b", &format!("b{i}")]);
        let mut commits = Vec::new();
        for j in 0..COMMITS {
            std::fs::write(dir.join(format!("m{j}.safetensors")), safetensors(Some(("push", &format!("{i}-{j}")))))
                .unwrap();
            e.run(&dir, &["add", "-A"]);
            e.run(&dir, &["commit", "-q", "-m", &format!("push {i} commit {j}")]);
            commits.push(e.run(&dir, &["rev-parse", "HEAD"]));
        }
        clones.push((dir, commits));
    }
    let barrier = std::sync::Barrier::new(PUSHES);
    let results: Vec<(bool, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = clones
            .iter()
            .enumerate()
            .map(|(i, (dir, _))| {
                let (barrier, e) = (&barrier, &e);
                s.spawn(move || {
                    barrier.wait();
                    let o = e.git(dir).args(["push", "origin", &format!("b{i}")]).output().unwrap();
                    (o.status.success(), format!("{}{}", show(&o.stdout), show(&o.stderr)))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in results {
        let out = assert_accepted(r);
        assert!(!out.contains("could not record"), "{out}");
    }
    for (i, (_, commits)) in clones.iter().enumerate() {
        for (j, c) in commits.iter().enumerate() {
            let n = note(&e, c).unwrap_or_else(|| panic!("push {i} commit {j} ({c}) has no note"));
            assert!(n.contains(&format!("m{j}.safetensors: safe (safetensors)")), "{n}");
            assert_eq!(n.matches("modelgate ").count(), 1, "one note per commit: {n}");
        }
    }
    // One notes commit per push, in one line of history.
    assert_eq!(e.b(&["rev-list", "--count", NOTES]), PUSHES.to_string());
    assert_eq!(e.b(&["rev-list", "--count", "--merges", NOTES]), "0");
    assert_eq!(e.b(&["notes", "--ref", NOTES, "list"]).lines().count(), PUSHES * COMMITS);
}

#[test]
fn notes_join_a_fanned_out_notes_tree_and_a_note_of_the_same_commit() {
    let e = gated();
    // 300 commits noted by hand through fast-import, which writes a fanned-out notes tree.
    let mut stream = String::new();
    for i in 0..300 {
        stream.push_str(&format!(
            "commit refs/heads/old\nmark :{}\ncommitter T <t@x> {} +0000\ndata 4\nc{:03}\n\n",
            i + 1,
            1_700_000_000 + i,
            i
        ));
    }
    stream.push_str("commit refs/notes/modelgate\ncommitter T <t@x> 1700001000 +0000\ndata 6\nnotes\n");
    for i in 0..300 {
        stream.push_str(&format!("N inline :{}\ndata 8\nold {:03}\n\n", i + 1, i));
    }
    let mut c = e.git(&e.bare);
    c.args(["fast-import", "--quiet"]).stdin(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(stream.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    let tree = e.b(&["ls-tree", NOTES]);
    assert!(tree.lines().all(|l| l.contains(" tree ")), "fast-import fans out 300 notes: {tree}");
    let old = e.b(&["rev-parse", "refs/heads/old~7"]);
    assert_eq!(note(&e, &old).unwrap(), "old 292\n");

    e.write("w.safetensors", &safetensors(None));
    let c1 = e.commit("a model");
    assert_accepted(e.push(&["main"]));
    assert!(note(&e, &c1).unwrap().contains("w.safetensors: safe (safetensors)"));
    assert_eq!(note(&e, &old).unwrap(), "old 292\n", "old notes are kept");
    assert_eq!(e.b(&["notes", "--ref", NOTES, "list"]).lines().count(), 301);
    // git itself can keep writing to the tree modelgate wrote.
    e.b(&["notes", "--ref", NOTES, "append", "-m", "by hand", &c1]);
    let n = note(&e, &c1).unwrap();
    assert!(n.starts_with("modelgate ") && n.ends_with("\n\nby hand\n"), "{n}");
}

/// Push a local notes ref (or its deletion) to the server.
fn push_notes(e: &Env, spec: &str, env: &[(&str, &str)]) -> (bool, String) {
    e.push_env(&[spec], env)
}

#[test]
fn pushes_cannot_write_or_delete_the_gates_notes() {
    let e = gated();
    e.b(&["config", "receive.advertisePushOptions", "true"]);
    std::fs::write(
        e.bare.join("modelgate.toml"),
        "[gate]\ntrust_env = \"gitea\"\n[bypass]\npushers = [\"admin\"]\nreason = \"repairs\"\n",
    )
    .unwrap();
    e.write("w.safetensors", &safetensors(None));
    let c = e.commit("model");
    assert_accepted(e.push(&["main"]));
    let recorded = e.server_ref(NOTES).expect("the gate wrote its notes");

    // A forged note: pushing the notes ref is refused, whatever it holds.
    e.w(&["notes", "--ref", NOTES, "add", "-f", "-m", "w.safetensors: safe, trust me", &c]);
    let out = assert_rejected(push_notes(&e, &format!("+{NOTES}:{NOTES}"), &[]));
    assert!(out.contains("is the push gate's record"), "{out}");
    // ... also next to an ordinary ref update, and under another name below it.
    e.write("x.txt", b"x\n");
    e.commit("more");
    assert_rejected(e.push(&["main", &format!("+{NOTES}:{NOTES}")]));
    assert_rejected(push_notes(&e, &format!("{NOTES}:{NOTES}/shadow"), &[]));
    assert_eq!(e.server_ref("refs/heads/main").as_deref(), Some(c.as_str()), "nothing of a refused push lands");

    // A pure deletion (no quarantine, nothing to scan) is refused too.
    let out = assert_rejected(push_notes(&e, &format!(":{NOTES}"), &[]));
    assert!(out.contains("may not create, change or delete it"), "{out}");
    assert_eq!(e.server_ref(NOTES).as_deref(), Some(recorded.as_str()));
    // An ordinary deletion still works.
    e.w(&["push", "-q", "origin", "main:refs/heads/tmp"]);
    assert_accepted(e.push(&[":refs/heads/tmp"]));
    let audit = e.audit();
    assert!(audit.iter().filter(|r| r["event"] == "notes-ref-refused").count() >= 3, "{audit:?}");

    // An admin's bypass may repair the record.
    let skip = ["-o", "modelgate.skip=repair the record", &format!(":{NOTES}")];
    let refused = e.push_env(&skip, &[("GITEA_PUSHER_NAME", "mallory")]);
    assert_rejected(refused);
    let out = assert_accepted(e.push_env(&skip, &[("GITEA_PUSHER_NAME", "admin")]));
    assert!(out.contains("BYPASS"), "{out}");
    assert_eq!(e.server_ref(NOTES), None);
}

#[test]
fn a_push_of_many_noted_commits_fans_the_notes_tree_out() {
    let e = gated();
    // 300 commits, each adding its own small model file, through fast-import.
    let mut stream = Vec::new();
    for i in 0..300 {
        let model = safetensors(Some(("n", &i.to_string())));
        stream.extend_from_slice(
            format!("commit refs/heads/main\ncommitter T <t@x> {} +0000\ndata 4\nc{i:03}\n", 1_700_000_000 + i)
                .as_bytes(),
        );
        stream.extend_from_slice(format!("M 100644 inline m{i}.safetensors\ndata {}\n", model.len()).as_bytes());
        stream.extend_from_slice(&model);
        stream.extend_from_slice(b"\n\n");
    }
    let mut c = e.git(&e.work);
    c.args(["fast-import", "--quiet"]).stdin(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&stream).unwrap();
    assert!(child.wait().unwrap().success());
    assert_accepted(e.push(&["main"]));
    let top = e.b(&["ls-tree", NOTES]);
    assert!(top.lines().all(|l| l.contains(" tree ")), "300 new notes go into subtrees: {top}");
    assert_eq!(e.b(&["notes", "--ref", NOTES, "list"]).lines().count(), 300);
    let c = e.b(&["rev-parse", "main~123"]);
    assert!(note(&e, &c).unwrap().contains("m176.safetensors: safe (safetensors)"));
}
