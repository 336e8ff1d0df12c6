//! `deploy/systemd/`: the `lfs watch` service passes `systemd-analyze verify` (its binary and
//! its `man:` documentation resolved: the pages `modelgate man` writes), is hardened (checked
//! by `systemd-analyze security --offline`), its command lines run, and its user is created by
//! `systemd-sysusers`. Without systemd's tools the systemd checks are skipped with a message,
//! except under `CI=true` (`.ci/run` installs them).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_modelgate");
const UNIT: &str = "modelgate-lfs-watch.service";

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd")
}

fn unit_text() -> String {
    std::fs::read_to_string(deploy().join(UNIT)).unwrap()
}

/// `key=value` lines of the unit (comments and sections left out), in order.
fn settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .collect()
}

fn get<'a>(s: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    s.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
}

/// Whether a systemd tool runs here; panics under CI, where `.ci/run` installs it.
fn tool(name: &str) -> bool {
    if Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success()) {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{name} is missing; .ci/run installs systemd under CI=true");
    }
    eprintln!("skipped: {name} is not installed (Debian: apt-get install systemd)");
    false
}

#[test]
fn the_service_is_hardened_and_runs_as_its_own_user() {
    let s = settings(&unit_text());
    let one = |k: &str| get(&s, k).last().copied().unwrap_or_else(|| panic!("{k} is not set"));
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("ProtectHome"), "yes");
    assert_eq!(one("PrivateTmp"), "yes");
    assert_eq!(one("CapabilityBoundingSet"), "", "no capabilities at all");
    let user = one("User");
    assert!(!user.is_empty() && user != "root" && user != "0", "a dedicated user, not {user}");
    // The user the sysusers file creates.
    let sysusers = std::fs::read_to_string(deploy().join("modelgate.sysusers.conf")).unwrap();
    assert!(sysusers.lines().any(|l| l.split_whitespace().take(2).eq(["u", user])), "{sysusers}");
    // Everything the watcher writes is writable under ProtectSystem=strict: the quarantine and
    // --git-dir (cache, audit log) under its StateDirectory, and the store it moves objects from.
    let state = Path::new("/var/lib").join(one("StateDirectory"));
    let exec = one("ExecStart");
    let args: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(args.get(1..3), Some(&["lfs", "watch"][..]), "{exec}");
    let flag = |f: &str| args.iter().position(|a| *a == f).and_then(|i| args.get(i + 1)).copied();
    for f in ["--quarantine", "--git-dir"] {
        let p = Path::new(flag(f).unwrap_or_else(|| panic!("{exec} has no {f}")));
        assert!(p.starts_with(&state), "{f} {} is under the state directory {}", p.display(), state.display());
    }
    let rw = get(&s, "ReadWritePaths");
    assert!(rw.iter().any(|p| p.ends_with("/lfs") || p.ends_with("lfs-objects")), "the LFS store: {rw:?}");
}

/// The unit with the binary at `bin` instead of /usr/local/bin/modelgate.
fn unit_for(dir: &Path, bin: &str) -> PathBuf {
    let path = dir.join(UNIT);
    std::fs::write(&path, unit_text().replace("/usr/local/bin/modelgate", bin)).unwrap();
    path
}

#[test]
fn systemd_analyze_verify_accepts_the_service() {
    if !tool("systemd-analyze") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for(dir.path(), BIN);
    // `Documentation=man:modelgate-lfs-watch(1)` is looked up with man: the generated pages.
    let man = dir.path().join("man");
    let o = Command::new(BIN).arg("man").arg(man.join("man1")).output().unwrap();
    assert!(o.status.success());
    let verify = |unit: &Path| -> Output {
        Command::new("systemd-analyze")
            .args(["verify", "--man=yes"])
            .arg(unit)
            .env("MANPATH", &man)
            .env("SYSTEMD_LOG_COLOR", "0")
            .output()
            .unwrap()
    };
    let o = verify(&unit);
    assert!(o.status.success(), "{}{}", show(&o.stdout), show(&o.stderr));
    // systemd-analyze exits 0 on unknown keys and bad values, so any message is a failure.
    assert!(o.stderr.is_empty() && o.stdout.is_empty(), "{}{}", show(&o.stdout), show(&o.stderr));
    // The check can fail: a misspelt value is reported.
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join(UNIT), std::fs::read_to_string(&unit).unwrap().replace("=strict", "=stric")).unwrap();
    let o = verify(&bad.join(UNIT));
    assert!(!o.stderr.is_empty(), "a bad ProtectSystem value is reported");

    // The hardening, as systemd scores it (0 best, 10 worst; 1.5 at the time of writing).
    let o = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .env("SYSTEMD_COLORS", "0")
        .output()
        .unwrap();
    let out = show(&o.stdout);
    let level: f64 = out
        .lines()
        .find_map(|l| l.split("Overall exposure level for").nth(1))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}{}", show(&o.stderr)));
    assert!(level <= 2.0, "exposure level {level}:\n{out}");
}

#[test]
fn the_services_command_lines_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("lfs");
    std::fs::create_dir_all(&store).unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, format!("[lfs]\nlayout = \"gitea\"\nroot = \"{}\"\n", store.display())).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let s = settings(&unit_text());
    for key in ["ExecStartPre", "ExecStart"] {
        for line in get(&s, key) {
            let line = line
                .replace("/usr/local/bin/modelgate", BIN)
                .replace("/etc/modelgate/policy.toml", &policy.display().to_string())
                .replace("/var/lib/modelgate", &state.display().to_string());
            let mut args = line.split_whitespace();
            let mut c = Command::new(args.next().unwrap());
            c.args(args).env_remove("MODELGATE_POLICY");
            if key == "ExecStart" {
                c.arg("--once");
            }
            let o = c.output().unwrap();
            assert!(o.status.success(), "{key}={line}:\n{}{}", show(&o.stdout), show(&o.stderr));
        }
    }
    assert!(state.join("quarantine").is_dir(), "the quarantine is made under the state directory");
}

#[test]
fn systemd_sysusers_creates_the_user() {
    if !tool("systemd-sysusers") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    let o = Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg(deploy().join("modelgate.sysusers.conf"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o.stderr));
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let user = settings(&unit_text()).into_iter().find(|(k, _)| k == "User").unwrap().1;
    let line = passwd.lines().find(|l| l.starts_with(&format!("{user}:"))).unwrap_or_else(|| panic!("{passwd}"));
    assert!(line.ends_with(":/usr/sbin/nologin"), "no login shell: {line}");
}
