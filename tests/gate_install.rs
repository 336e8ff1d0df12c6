//! `modelgate install`: idempotent, never overwrites a foreign hook without --force, and
//! --uninstall removes only what it added.

mod git_support;
use git_support::*;
use std::path::Path;
use std::process::{Command, Output};

fn install(args: &[&str], repos: &[&Path]) -> Output {
    let mut c = Command::new(BIN);
    c.arg("install").args(args);
    for r in repos {
        c.arg(r);
    }
    c.output().unwrap()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn plain_git_install_is_idempotent_and_respects_foreign_hooks() {
    let e = Env::new();
    let pre = e.bare.join("hooks/pre-receive");
    let post = e.bare.join("hooks/post-receive");
    // The test harness's own hook is foreign to `modelgate install`.
    let foreign = read(&pre);
    let o = install(&[], &[&e.bare]);
    assert_eq!(o.status.code(), Some(2));
    assert!(show(&o.stderr).contains("was not written by modelgate; use --force"), "{}", show(&o.stderr));
    assert_eq!(read(&pre), foreign, "nothing changed");
    assert!(!post.exists(), "a refusal installs nothing");

    let o = install(&["--force"], &[&e.bare]);
    assert!(o.status.success(), "{}", show(&o.stderr));
    let out = show(&o.stdout);
    assert!(out.contains("replaced") && out.contains("pre-receive.modelgate-backup"), "{out}");
    assert!(out.contains(&format!("installed {}", post.display())), "{out}");
    let shim = read(&pre);
    assert!(shim.contains(modelgate::hook::install::MARKER) && shim.contains("hook pre-receive"), "{shim}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&pre).unwrap().permissions().mode() & 0o777, 0o755);

    // Again: nothing to do.
    let o = install(&[], &[&e.bare]);
    assert!(o.status.success());
    assert_eq!(show(&o.stdout).matches("already installed").count(), 2, "{}", show(&o.stdout));
    // With a policy: updated in place, and the policy is checked first.
    let bad = e.policy("bad.toml", "[actions]\nsafe = 1\n");
    let o = install(&["--policy", bad.to_str().unwrap()], &[&e.bare]);
    assert_eq!(o.status.code(), Some(2));
    assert!(show(&o.stderr).contains("bad.toml:2:8"), "{}", show(&o.stderr));
    let good = e.policy("good.toml", "");
    let o = install(&["--policy", good.to_str().unwrap()], &[&e.bare]);
    assert_eq!(show(&o.stdout).matches("updated").count(), 2, "{}", show(&o.stdout));
    assert!(read(&pre).contains(&format!("--policy '{}'", good.canonicalize().unwrap().display())));

    // The installed hooks work.
    e.write("bad.model", BAD);
    e.commit("bad");
    assert_rejected(e.push(&["main"]));

    // Uninstall: ours removed, the foreign hook restored; again: nothing there.
    let o = install(&["--uninstall"], &[&e.bare]);
    assert!(o.status.success());
    assert!(show(&o.stdout).contains("restored"), "{}", show(&o.stdout));
    assert_eq!(read(&pre), foreign);
    assert!(!post.exists());
    assert!(!e.bare.join("hooks/pre-receive.modelgate-backup").exists());
    let o = install(&["--uninstall"], &[&e.bare]);
    assert!(show(&o.stdout).contains("left alone") && show(&o.stdout).contains("not installed"), "{}", show(&o.stdout));
    assert_eq!(read(&pre), foreign, "a foreign hook is never removed");
}

#[test]
fn gitea_and_gitlab_layouts_and_several_repositories() {
    let e = Env::new();
    let other = e.dir.path().join("other.git");
    e.run(e.dir.path(), &["init", "-q", "--bare", "other.git"]);
    // Gitea's own files in the .d directory stay.
    std::fs::create_dir_all(e.bare.join("hooks/pre-receive.d")).unwrap();
    std::fs::write(e.bare.join("hooks/pre-receive.d/gitea"), "#!/bin/sh\n").unwrap();
    let o = install(&["--flavor", "gitea"], &[&e.bare, &other]);
    assert!(o.status.success(), "{}", show(&o.stderr));
    for r in [&e.bare, &other] {
        assert!(
            r.join("hooks/pre-receive.d/modelgate").is_file() && r.join("hooks/post-receive.d/modelgate").is_file()
        );
    }
    // Neither repository has Gitea's dispatcher here: the admin is told.
    assert!(show(&o.stderr).contains("is not Gitea's dispatcher"), "{}", show(&o.stderr));
    let o = install(&["--flavor", "gitea", "--uninstall"], &[&e.bare, &other]);
    assert!(o.status.success());
    assert!(e.bare.join("hooks/pre-receive.d/gitea").is_file());
    assert!(!e.bare.join("hooks/pre-receive.d/modelgate").exists());
    assert!(!e.bare.join("hooks/post-receive.d").exists(), "an emptied .d directory goes");
    assert!(!other.join("hooks/pre-receive.d").exists());

    // GitLab: custom_hooks inside the repository; a foreign custom hook needs --force.
    std::fs::create_dir_all(other.join("custom_hooks/pre-receive.d")).unwrap();
    std::fs::write(other.join("custom_hooks/pre-receive.d/modelgate"), "#!/bin/sh\necho someone else\n").unwrap();
    let o = install(&["--flavor", "gitlab"], &[&other]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!other.join("custom_hooks/post-receive.d").exists());
    let o = install(&["--flavor", "gitlab", "--force"], &[&other]);
    assert!(o.status.success());
    // The kept copy is no longer executable, so the forge's dispatcher does not run it.
    use std::os::unix::fs::PermissionsExt;
    let kept = other.join("custom_hooks/pre-receive.d/modelgate.modelgate-backup");
    assert_eq!(std::fs::metadata(&kept).unwrap().permissions().mode() & 0o111, 0);
    let o = install(&["--flavor", "gitlab", "--uninstall"], &[&other]);
    assert!(o.status.success());
    let restored = other.join("custom_hooks/pre-receive.d/modelgate");
    assert_eq!(read(&restored), "#!/bin/sh\necho someone else\n");
    assert_ne!(std::fs::metadata(&restored).unwrap().permissions().mode() & 0o100, 0);
    assert!(!other.join("custom_hooks/post-receive.d").exists());

    // Not a repository: an error naming it.
    let o = install(&[], &[e.dir.path()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(show(&o.stderr).contains("is not a git repository"), "{}", show(&o.stderr));
}

#[test]
fn installing_again_keeps_the_policy_the_hooks_use() {
    let e = Env::new();
    e.remove_hook("pre-receive");
    let pre = e.bare.join("hooks/pre-receive");
    let policy = e.policy("strict.toml", "[actions]\nsuspicious = \"reject\"\n");
    let o = install(&["--policy", policy.to_str().unwrap()], &[&e.bare]);
    assert!(o.status.success(), "{}", show(&o.stderr));
    let first = read(&pre);
    // Again without --policy (say, with another binary): the policy stays, and is named.
    let o = install(&["--bin", BIN], &[&e.bare]);
    assert!(o.status.success(), "{}", show(&o.stderr));
    let out = show(&o.stdout);
    assert!(out.contains("keep using the policy") && out.contains("strict.toml"), "{out}");
    assert_eq!(read(&pre), first);
    e.write("sus.pkl", SUSPICIOUS_PICKLE);
    e.commit("suspicious");
    assert_rejected(e.push(&["main"]));
    // A kept policy that no longer loads is said at install time.
    std::fs::write(&policy, "[actions]\nsuspicious = \"maybe\"\n").unwrap();
    let o = install(&[], &[&e.bare]);
    assert!(show(&o.stderr).contains("the policy the hooks use does not load"), "{}", show(&o.stderr));
    // --no-policy drops it on purpose.
    let o = install(&["--no-policy"], &[&e.bare]);
    assert!(o.status.success());
    assert!(!read(&pre).contains("--policy"), "{}", read(&pre));
    assert_accepted(e.push(&["main"]));
    // The trusted environment is kept the same way, and can be changed.
    let o = install(&["--trust-env", "http"], &[&e.bare]);
    assert!(o.status.success());
    assert!(read(&pre).contains("--trust-env http"));
    install(&[], &[&e.bare]);
    assert!(read(&pre).contains("--trust-env http"));
}
