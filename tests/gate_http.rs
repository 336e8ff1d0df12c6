//! The push gate behind git's smart-HTTP transport, as plain-git servers expose repositories:
//! the real `git http-backend` (CGI) behind an HTTP server on 127.0.0.1 started by each test
//! (see `git_support::http`), hooks written by `modelgate install`, real `git push` over http://.

mod git_support;
use git_support::http::{Config, HttpGit, Served};
use git_support::*;

/// A protocol-2 pickle that calls `os.system(cmd)` when loaded.
fn system_pickle(cmd: &str) -> Vec<u8> {
    let mut p = b"\x80\x02cos\nsystem\n".to_vec();
    p.push(b'X'); // BINUNICODE
    p.extend_from_slice(&(cmd.len() as u32).to_le_bytes());
    p.extend_from_slice(cmd.as_bytes());
    p.extend_from_slice(b"\x85R."); // TUPLE1 REDUCE STOP
    p
}

/// A protocol-2 pickle of `{'w': [1.0, 2.0], 'name': 'tiny'}`: plain data, no imports.
fn dict_pickle() -> Vec<u8> {
    let text = |s: &str| [b"X".as_slice(), &(s.len() as u32).to_le_bytes(), s.as_bytes()].concat();
    let float = |f: f64| [b"G".as_slice(), &f.to_be_bytes()].concat();
    [
        b"\x80\x02}(".as_slice(), // PROTO 2, EMPTY_DICT, MARK
        &text("w"),
        b"](", // EMPTY_LIST, MARK
        &float(1.0),
        &float(2.0),
        b"e", // APPENDS
        &text("name"),
        &text("tiny"),
        b"u.", // SETITEMS, STOP
    ]
    .concat()
}

/// Incompressible bytes (xorshift64), so that the pack is as big as the files.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A server repository with the hooks `modelgate install` writes, served over HTTP; the work
/// repository's `origin` points at it (with `userinfo@` when given).
fn gated_over_http(push_users: &[(&str, &str)], userinfo: Option<&str>) -> (Env, HttpGit) {
    let e = Env::new();
    e.remove_hook("pre-receive");
    e.install_gate(None, &[]);
    let server = HttpGit::start(Config {
        root: e.dir.path().to_path_buf(),
        home: e.home.clone(),
        push_users: push_users.iter().map(|(u, p)| (u.to_string(), p.to_string())).collect(),
    })
    .expect("http server starts");
    let url = server.url("server.git");
    let url = match userinfo {
        Some(u) => url.replacen("http://", &format!("http://{u}@"), 1),
        None => url,
    };
    e.w(&["remote", "set-url", "origin", &url]);
    (e, server)
}

/// The pushes http-backend answered (`POST /server.git/git-receive-pack`).
fn receive_packs(server: &HttpGit) -> Vec<Served> {
    server.served().into_iter().filter(|s| s.method == "POST" && s.path == "/server.git/git-receive-pack").collect()
}

fn remote_lines(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.starts_with("remote:")).collect()
}

/// Whether the server repository holds an object (quarantined objects of a rejected push
/// must be gone).
fn server_has(e: &Env, id: &str) -> bool {
    e.git(&e.bare).args(["cat-file", "-e", id]).status().unwrap().success()
}

#[test]
fn dangerous_pickle_pushed_over_http_is_rejected_with_evidence() {
    let (e, server) = gated_over_http(&[], None);
    e.b(&["config", "http.receivepack", "true"]);
    e.write("README.md", b"models below\n");
    let base = e.commit("base");
    assert_accepted(e.push(&["main"]));
    assert_eq!(e.server_ref("refs/heads/main").as_deref(), Some(base.as_str()));

    let evil = system_pickle("echo pwned");
    let blob = e.hash_object(&evil);
    e.write("models/evil.pkl", &evil);
    e.commit("evil pickle");
    let out = assert_rejected(e.push(&["main"]));
    let remote = remote_lines(&out);
    assert!(remote.iter().any(|l| l.contains("models/evil.pkl") && l.contains(BAD_SHOWN)), "{out}");
    assert!(remote.iter().any(|l| l.contains(BAD_CODE)), "{out}");
    assert!(remote.iter().any(|l| l.contains(BAD_EVIDENCE)), "{out}");
    assert!(out.contains("[remote rejected] main -> main (pre-receive hook declined)"), "{out}");

    assert_eq!(e.server_ref("refs/heads/main").as_deref(), Some(base.as_str()), "ref unchanged");
    assert!(!server_has(&e, &blob), "the rejected push's objects stay out of the repository");
    let pushes = receive_packs(&server);
    assert_eq!(pushes.len(), 2, "both pushes went through http-backend: {pushes:?}");
    assert!(pushes.iter().all(|p| p.status == 200), "{pushes:?}");
    let audit = e.audit();
    assert!(
        audit.iter().any(|r| r["event"] == "rejected" && r["path"] == "models/evil.pkl" && r["codes"][0] == BAD_CODE),
        "{audit:?}"
    );
}

#[test]
fn benign_model_pushed_over_http_is_accepted_and_noted() {
    let (e, server) = gated_over_http(&[], None);
    e.b(&["config", "http.receivepack", "true"]);
    e.write("models/tiny.pkl", &dict_pickle());
    e.write("models/w.safetensors", &safetensors(None));
    let c = e.commit("a benign model");
    let out = assert_accepted(e.push(&["main"]));
    assert!(out.contains("remote: modelgate:"), "the gate ran: {out}");
    assert_eq!(e.server_ref("refs/heads/main").as_deref(), Some(c.as_str()));
    assert_eq!(receive_packs(&server).len(), 1);

    let note = e.b(&["notes", "--ref", "modelgate", "show", &c]);
    assert!(note.contains("models/tiny.pkl: safe (pickle)"), "{note}");
    assert!(note.contains("models/w.safetensors: safe (safetensors)"), "{note}");
    // And the pusher fetches the note back over the same server (upload-pack).
    e.w(&["fetch", "-q", "origin", "refs/notes/*:refs/notes/*"]);
    assert_eq!(e.w(&["notes", "--ref", "modelgate", "show", &c]), note);
    assert!(server.served().iter().any(|s| s.path == "/server.git/git-upload-pack" && s.status == 200));
}

#[test]
fn chunked_push_over_http_is_still_gated() {
    let (e, server) = gated_over_http(&[], None);
    e.b(&["config", "http.receivepack", "true"]);
    // Above http.postBuffer git streams the pack with `Transfer-Encoding: chunked`.
    e.w(&["config", "http.postBuffer", "4096"]);
    let mut blobs = Vec::new();
    for i in 0..6u64 {
        let data = noise((i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15), 64 * 1024);
        blobs.push(e.hash_object(&data));
        e.write(format!("data/part-{i}.dat"), &data);
    }
    e.write("models/evil.pkl", &system_pickle("echo pwned"));
    e.commit("data and an evil pickle");
    let out = assert_rejected(e.push(&["main"]));
    let remote = remote_lines(&out);
    assert!(remote.iter().any(|l| l.contains("models/evil.pkl") && l.contains(BAD_SHOWN)), "{out}");
    assert!(remote.iter().any(|l| l.contains(BAD_CODE)), "{out}");
    assert!(!out.contains("data/part-"), "only the pickle is reported: {out}");
    assert_eq!(e.server_ref("refs/heads/main"), None);
    assert!(blobs.iter().all(|b| !server_has(&e, b)), "quarantine dropped");
    let pushes = receive_packs(&server);
    let chunked: Vec<&Served> = pushes.iter().filter(|p| p.chunked).collect();
    assert_eq!(chunked.len(), 1, "the pack went chunked: {pushes:?}");
    assert!(chunked[0].body_len > 6 * 64 * 1024, "{pushes:?}");

    // The same data without the pickle (the commit redone: every new commit is scanned)
    // passes the same way, so the transport is not the reason.
    e.w(&["rm", "-q", "models/evil.pkl"]);
    e.w(&["commit", "-q", "--amend", "-m", "data only"]);
    let c = e.w(&["rev-parse", "HEAD"]);
    let out = assert_accepted(e.push(&["main"]));
    assert!(out.contains("remote: modelgate:"), "{out}");
    assert_eq!(e.server_ref("refs/heads/main").as_deref(), Some(c.as_str()));
    assert!(blobs.iter().all(|b| server_has(&e, b)));
    assert_eq!(receive_packs(&server).iter().filter(|p| p.chunked && p.status == 200).count(), 2);
}

#[test]
fn http_user_names_the_pusher_for_the_bypass() {
    let users = [("alice", "a-secret"), ("bob", "b-secret")];
    let (e, server) = gated_over_http(&users, None);
    // No http.receivepack: http-backend allows pushes because REMOTE_USER is set.
    std::fs::write(
        e.bare.join("modelgate.toml"),
        "[bypass]\npushers = [\"alice\"]\nreason = \"release managers\"\npusher_env = \"REMOTE_USER\"\n",
    )
    .unwrap();
    e.b(&["config", "receive.advertisePushOptions", "true"]);
    e.write("m/bad.model", BAD);
    e.commit("bad");
    let skip = ["-o", "modelgate.skip=hotfix for the demo", "main"];
    let base = server.url("server.git");
    let as_user = |user: &str, password: &str| base.replacen("http://", &format!("http://{user}:{password}@"), 1);

    // Without credentials the server asks for them (401), and git has none to give.
    let (ok, out) = e.push(&skip);
    assert!(!ok && out.contains("could not read Username"), "{out}");
    assert!(server.served().iter().any(|s| s.status == 401), "{:?}", server.served());

    // bob is a valid user, but not one who may bypass: refused, and the push is checked.
    e.w(&["remote", "set-url", "origin", &as_user("bob", "b-secret")]);
    let out = assert_rejected(e.push(&skip));
    assert!(out.contains("bypass refused: bob is not allowed to bypass the gate"), "{out}");
    assert_eq!(e.server_ref("refs/heads/main"), None);

    // alice may, and the bypass is loud and logged under her name.
    e.w(&["remote", "set-url", "origin", &as_user("alice", "a-secret")]);
    let out = assert_accepted(e.push(&skip));
    assert!(out.contains("BYPASS by alice"), "{out}");
    assert!(e.server_ref("refs/heads/main").is_some());
    let users: Vec<Option<String>> = receive_packs(&server).into_iter().map(|p| p.remote_user).collect();
    assert_eq!(users, [Some("bob".to_string()), Some("alice".to_string())]);
    let audit = e.audit();
    let bypass = audit.iter().find(|r| r["event"] == "bypass").expect("bypass logged");
    assert_eq!(bypass["pusher"], "alice");
}
