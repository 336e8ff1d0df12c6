//! Real git for the push-gate tests: a bare "server" repository with the modelgate hooks
//! installed and a work repository that pushes to it over file:// (smart HTTP: [`http`]).
#![allow(dead_code)]

pub mod http;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_modelgate");

/// A real dangerous pickle: `os.system('echo pwned')`.
pub const EVIL_PICKLE: &[u8] = b"\x80\x02cos\nsystem\nq\x00X\x0a\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03.";
/// The file the push tests expect the gate to reject, with what the rejection shows.
pub const BAD: &[u8] = EVIL_PICKLE;
pub const BAD_CODE: &str = "pickle-import-dangerous";
pub const BAD_SHOWN: &str = "DANGEROUS (pickle)";
pub const BAD_VERDICT: &str = "dangerous";
pub const BAD_FORMAT: &str = "pickle";
pub const BAD_FIX: &str = "fix: do not load the file";
pub const BAD_EVIDENCE: &str = "os.system('echo pwned')";
/// A pickle that imports a class of the saving script: suspicious.
pub const SUSPICIOUS_PICKLE: &[u8] = b"\x80\x02c__main__\nMyModel\nq\x00)\x81q\x01.";
/// A benign pickle (protocol 4, the int 1).
pub const GOOD_PICKLE: &[u8] = b"\x80\x04K\x01.";

pub struct Env {
    pub dir: tempfile::TempDir,
    pub bare: PathBuf,
    pub work: PathBuf,
    pub home: PathBuf,
}

/// A git command with an isolated configuration.
pub fn git_cmd(home: &Path, cwd: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(cwd)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Tester")
        .env("GIT_AUTHOR_EMAIL", "tester@example.com")
        .env("GIT_COMMITTER_NAME", "Tester")
        .env("GIT_COMMITTER_EMAIL", "tester@example.com")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_OBJECT_DIRECTORY")
        .env_remove("GIT_ALTERNATE_OBJECT_DIRECTORIES")
        .env_remove("GIT_QUARANTINE_PATH")
        .env_remove("GL_ID")
        .env_remove("GL_PROJECT_PATH")
        .env_remove("GL_REPOSITORY")
        .env_remove("GL_USERNAME")
        .env_remove("GL_PROTOCOL")
        .env_remove("GITEA_REPO_USER_NAME")
        .env_remove("GITEA_REPO_NAME")
        .env_remove("GITEA_PUSHER_NAME")
        .env_remove("MODELGATE_POLICY")
        .env_remove("MODELGATE")
        .stdin(Stdio::null());
    c
}

impl Env {
    /// SHA-1 repositories with the pre-receive hook.
    pub fn new() -> Env {
        Env::with_format("sha1")
    }

    pub fn with_format(format: &str) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        let home = root.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let bare = root.join("server.git");
        let work = root.join("work");
        let env = Env { dir, bare: bare.clone(), work: work.clone(), home };
        env.run(&root, &["init", "-q", "--bare", &format!("--object-format={format}"), "server.git"]);
        env.run(&root, &["init", "-q", "-b", "main", &format!("--object-format={format}"), "work"]);
        env.run(&work, &["remote", "add", "origin", &format!("file://{}", bare.display())]);
        env.install_hook("pre-receive");
        env
    }

    pub fn install_hook(&self, name: &str) {
        let path = self.bare.join("hooks").join(name);
        std::fs::write(&path, format!("#!/bin/sh\nexec '{BIN}' hook {name}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    pub fn remove_hook(&self, name: &str) {
        let _ = std::fs::remove_file(self.bare.join("hooks").join(name));
    }

    pub fn git(&self, cwd: &Path) -> Command {
        git_cmd(&self.home, cwd)
    }

    /// Run git, panicking with its output on failure; returns stdout.
    pub fn run(&self, cwd: &Path, args: &[&str]) -> String {
        let o = self.git(cwd).args(args).output().expect("git runs");
        assert!(o.status.success(), "git {args:?} failed:\n{}{}", show(&o.stdout), show(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// Run git in the work repository.
    pub fn w(&self, args: &[&str]) -> String {
        self.run(&self.work, args)
    }

    /// Run git in the bare repository.
    pub fn b(&self, args: &[&str]) -> String {
        self.run(&self.bare, args)
    }

    /// Write a file in the work tree (parents created).
    pub fn write(&self, path: impl AsRef<Path>, bytes: &[u8]) {
        let p = self.work.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    /// Add everything and commit; returns the commit id.
    pub fn commit(&self, msg: &str) -> String {
        self.w(&["add", "-A"]);
        self.w(&["commit", "-q", "--allow-empty", "-m", msg]);
        self.w(&["rev-parse", "HEAD"])
    }

    /// `git push origin <args>`: (accepted, combined output).
    pub fn push(&self, args: &[&str]) -> (bool, String) {
        self.push_env(args, &[])
    }

    pub fn push_env(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
        let mut c = self.git(&self.work);
        c.args(["push", "origin"]).args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().expect("git push runs");
        (o.status.success(), format!("{}{}", show(&o.stdout), show(&o.stderr)))
    }

    /// The server's value of a ref, if any.
    pub fn server_ref(&self, name: &str) -> Option<String> {
        let o = self.git(&self.bare).args(["rev-parse", "--verify", "-q", name]).output().unwrap();
        o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    /// Blob id of bytes in the work repository's format (writes the object).
    pub fn hash_object(&self, bytes: &[u8]) -> String {
        let mut c = self.git(&self.work);
        c.args(["hash-object", "-w", "--stdin"]).stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success());
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }
}

impl Env {
    /// Write a policy file in the test directory and return its path.
    pub fn policy(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Install the hooks with `modelgate install --policy <policy> [args] <bare>`.
    pub fn install_gate(&self, policy: Option<&Path>, args: &[&str]) -> String {
        let mut c = Command::new(BIN);
        c.arg("install").args(args);
        if let Some(p) = policy {
            c.arg("--policy").arg(p);
        }
        let o = c.arg(&self.bare).output().unwrap();
        assert!(o.status.success(), "install failed:\n{}{}", show(&o.stdout), show(&o.stderr));
        show(&o.stdout)
    }

    /// Audit log lines of the server repository.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.bare.join("modelgate/audit.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// A safetensors file with one F32 tensor of two values, and optional metadata.
pub fn safetensors(metadata: Option<(&str, &str)>) -> Vec<u8> {
    let meta = metadata.map(|(k, v)| format!(",\"__metadata__\":{{{}:{}}}", json(k), json(v))).unwrap_or_default();
    let header = format!("{{\"w\":{{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}{meta}}}");
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&[0; 8]);
    out
}

fn json(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// sha256 of bytes, lowercase hex (an LFS oid).
pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// A Git LFS pointer to `bytes`.
pub fn pointer(bytes: &[u8]) -> Vec<u8> {
    format!("version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize {}\n", sha256_hex(bytes), bytes.len())
        .into_bytes()
}

/// Store `bytes` in a Gitea-layout LFS store; returns the oid.
pub fn put_gitea_object(root: &Path, bytes: &[u8]) -> String {
    let oid = sha256_hex(bytes);
    let p = root.join(&oid[0..2]).join(&oid[2..4]).join(&oid[4..]);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
    oid
}

pub fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn short(id: &str) -> &str {
    &id[..7]
}

/// Assert a push was rejected by modelgate (not by something else) and return its output.
#[track_caller]
pub fn assert_rejected(r: (bool, String)) -> String {
    assert!(!r.0, "push was accepted:\n{}", r.1);
    assert!(r.1.contains("pre-receive hook declined"), "rejected for another reason:\n{}", r.1);
    assert!(r.1.contains("modelgate: push rejected"), "no modelgate message:\n{}", r.1);
    r.1
}

#[track_caller]
pub fn assert_accepted(r: (bool, String)) -> String {
    assert!(r.0, "push was rejected:\n{}", r.1);
    r.1
}

pub fn output_ok(o: &Output) -> bool {
    o.status.success()
}
