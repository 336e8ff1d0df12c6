//! `modelgate scan` options, through the real binary: `-o/--output` (every format, atomic,
//! nothing replaced when the scan cannot run), `--quiet`, `--exclude` (matched like policy
//! paths, counted in the summary), the `-j` default in `--help`, and the progress bar's redraw
//! rate on a real pseudo-terminal (`script` from util-linux).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_modelgate");
const EVIL: &[u8] = b"\x80\x02cos\nsystem\nq\x00X\x0a\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03.";
const GOOD: &[u8] = b"\x80\x04K\x01.";
const SUSPICIOUS: &[u8] = b"\x80\x02c__main__\nMyModel\nq\x00)\x81q\x01.";

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn scan(cwd: &Path, args: &[&str]) -> Output {
    Command::new(BIN).current_dir(cwd).arg("scan").args(args).env_remove("RAYON_NUM_THREADS").output().unwrap()
}

/// models/{good,evil,sus}.pkl, models/sub/evil2.pkl, models/.cache/x/evil3.pkl, top.pkl (evil)
fn tree() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("models");
    std::fs::create_dir_all(m.join("sub")).unwrap();
    std::fs::create_dir_all(m.join(".cache/x")).unwrap();
    std::fs::write(m.join("good.pkl"), GOOD).unwrap();
    std::fs::write(m.join("evil.pkl"), EVIL).unwrap();
    std::fs::write(m.join("sus.pkl"), SUSPICIOUS).unwrap();
    std::fs::write(m.join("sub/evil2.pkl"), EVIL).unwrap();
    std::fs::write(m.join(".cache/x/evil3.pkl"), EVIL).unwrap();
    std::fs::write(dir.path().join("top.pkl"), EVIL).unwrap();
    let p = dir.path().to_path_buf();
    (dir, p)
}

#[test]
fn output_file_gets_what_stdout_would_for_every_format() {
    let (_d, root) = tree();
    for format in ["human", "json", "sarif"] {
        let to_stdout = scan(&root, &["--format", format, "models"]);
        assert_eq!(to_stdout.status.code(), Some(1));
        let name = format!("report.{format}");
        let o = scan(&root, &["--format", format, "-o", &name, "models"]);
        assert_eq!(o.status.code(), Some(1), "the exit code does not change: {}", show(&o.stderr));
        assert!(o.stdout.is_empty(), "{format}: nothing on stdout: {}", show(&o.stdout));
        let written = std::fs::read(root.join(&name)).unwrap();
        // SARIF and JSON carry no time stamps: the same bytes.
        assert_eq!(show(&written), show(&to_stdout.stdout), "{format}");
        assert!(!written.is_empty());
        // The long form, and `-` for stdout.
        let o = scan(&root, &["--format", format, "--output", "-", "models"]);
        assert_eq!(show(&o.stdout), show(&to_stdout.stdout), "{format}");
    }
    // Human lines to a file have no colour and the summary stays on stderr.
    let o = scan(&root, &["-o", "h.txt", "models"]);
    assert!(show(&o.stderr).contains("5 files:"), "{}", show(&o.stderr));
    let text = std::fs::read_to_string(root.join("h.txt")).unwrap();
    assert!(!text.contains('\x1b') && text.lines().count() == 5, "{text}");
    // No temporary file is left beside the report.
    let left: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".modelgate-report-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn output_replaces_atomically_and_only_a_complete_report() {
    let (_d, root) = tree();
    let dest = root.join("out.json");
    std::fs::write(&dest, b"old report").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o640)).unwrap();
    }
    // A scan that cannot run (bad policy) leaves the old report alone.
    std::fs::write(root.join("bad.toml"), b"[actions]\nsafe = \"rejct\"\n").unwrap();
    let o = scan(&root, &["--policy", "bad.toml", "--format", "json", "-o", "out.json", "models"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o.stderr));
    assert_eq!(std::fs::read(&dest).unwrap(), b"old report");
    // A directory that does not exist: exit 2, said plainly.
    let o = scan(&root, &["-o", "no/such/dir/r.txt", "models"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(show(&o.stderr).contains("--output no/such/dir/r.txt"), "{}", show(&o.stderr));
    // A directory as the output.
    let o = scan(&root, &["-o", "models", "models"]);
    assert_eq!(o.status.code(), Some(2));
    // A successful scan replaces it (a rename: a new inode), keeping its permissions.
    #[cfg(unix)]
    let ino = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&dest).unwrap().ino()
    };
    let o = scan(&root, &["--format", "json", "-o", "out.json", "models"]);
    assert_eq!(o.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&dest).unwrap()).unwrap();
    assert_eq!(doc["summary"]["files"], 5);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let m = std::fs::metadata(&dest).unwrap();
        assert_ne!(m.ino(), ino, "renamed into place, not rewritten");
        assert_eq!(m.permissions().mode() & 0o777, 0o640);
        // A new report file is 0644.
        scan(&root, &["-o", "new.txt", "models"]);
        assert_eq!(std::fs::metadata(root.join("new.txt")).unwrap().permissions().mode() & 0o777, 0o644);
    }
}

#[test]
fn quiet_drops_the_summary_not_the_report_or_the_exit_code() {
    let (_d, root) = tree();
    let loud = scan(&root, &["models"]);
    let quiet = scan(&root, &["--quiet", "models"]);
    assert_eq!(quiet.status.code(), Some(1));
    assert_eq!(loud.status.code(), Some(1));
    assert_eq!(show(&quiet.stdout), show(&loud.stdout));
    assert!(show(&loud.stderr).contains("5 files:"));
    assert!(quiet.stderr.is_empty(), "{}", show(&quiet.stderr));
    let q = scan(&root, &["-q", "models/good.pkl"]);
    assert_eq!(q.status.code(), Some(0));
    assert!(q.stderr.is_empty() && show(&q.stdout).contains("good.pkl"));
    // Quiet JSON is the same document.
    let a = scan(&root, &["-q", "--format", "json", "models"]);
    let b = scan(&root, &["--format", "json", "models"]);
    assert_eq!(a.stdout, b.stdout);
}

fn json_scan(root: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    let o = scan(root, &[&["--format", "json"], args].concat());
    let doc = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&o.stderr)));
    (o.status.code().unwrap(), doc)
}

fn paths(doc: &serde_json::Value) -> Vec<String> {
    doc["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap().to_string()).collect()
}

#[test]
fn exclude_matches_like_policy_paths_and_is_counted() {
    let (_d, root) = tree();
    // Relative to the directory argument: `*` stays in one component.
    let (code, doc) = json_scan(&root, &["--exclude", "*.pkl", "models"]);
    assert_eq!(paths(&doc), ["models/.cache/x/evil3.pkl", "models/sub/evil2.pkl"]);
    assert_eq!(doc["summary"]["excluded"], 3);
    assert_eq!(code, 1);
    // `**` spans components; repeated flags add up.
    let (code, doc) = json_scan(&root, &["--exclude", "**/evil*.pkl", "--exclude", "sus.pkl", "models"]);
    assert_eq!(paths(&doc), ["models/good.pkl"]);
    assert_eq!(doc["summary"]["excluded"], 4);
    assert_eq!(code, 0, "the excluded dangerous files no longer reject");
    // A directory leaves out everything below it; the glob is not matched against `models/...`.
    let (_, doc) = json_scan(&root, &["--exclude", ".cache", "--exclude", "models/sub/**", "models"]);
    assert_eq!(paths(&doc), ["models/evil.pkl", "models/good.pkl", "models/sub/evil2.pkl", "models/sus.pkl"]);
    assert_eq!(doc["summary"]["excluded"], 1);
    // A file argument is matched as given.
    let (_, doc) = json_scan(&root, &["--exclude", "models/*.pkl", "models/evil.pkl", "top.pkl"]);
    assert_eq!(paths(&doc), ["top.pkl"]);
    assert_eq!(doc["summary"]["excluded"], 1);
    // A path scanned through another argument stays scanned and is not counted.
    let (_, doc) = json_scan(&root, &["--exclude", "evil.pkl", "models", "models/evil.pkl"]);
    assert!(paths(&doc).contains(&"models/evil.pkl".to_string()));
    assert_eq!(doc["summary"]["excluded"], 0);
    // The human summary counts them; none excluded, nothing said.
    let o = scan(&root, &["--exclude", "**/sub/**", "models"]);
    assert!(show(&o.stderr).contains("; 1 excluded"), "{}", show(&o.stderr));
    let o = scan(&root, &["models"]);
    assert!(!show(&o.stderr).contains("excluded"), "{}", show(&o.stderr));
    // A bad glob cannot run.
    let o = scan(&root, &["--exclude", "a[", "models"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(show(&o.stderr).contains("--exclude: invalid glob `a[`"), "{}", show(&o.stderr));
}

fn jobs_default(envs: &[(&str, &str)]) -> String {
    let o = Command::new(BIN)
        .args(["scan", "--help"])
        .env_remove("RAYON_NUM_THREADS")
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let help = show(&o.stdout);
    let at = help.find("--jobs").unwrap_or_else(|| panic!("{help}"));
    let rest = &help[at..];
    let d = rest.find("[default: ").unwrap_or_else(|| panic!("{rest}"));
    rest[d + 10..].split(']').next().unwrap().to_string()
}

#[test]
fn jobs_help_shows_the_real_default() {
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(jobs_default(&[]), cores.to_string());
    // What rayon would start, its own variable included.
    assert_eq!(jobs_default(&[("RAYON_NUM_THREADS", "3")]), "3");
}

/// Run `modelgate scan` under `script`, which gives it a pseudo-terminal for stdout and stderr.
fn on_a_terminal(cmd: &str) -> Option<(Vec<u8>, f64)> {
    let ok = Command::new("script").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        return None;
    }
    let started = Instant::now();
    let o = Command::new("script")
        .args(["-qec", cmd, "/dev/null"])
        .env("MODELGATE_PROGRESS_AFTER_MS", "0")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    Some((o.stdout, started.elapsed().as_secs_f64()))
}

#[test]
fn progress_bar_redraws_at_a_human_rate_and_lines_stay_whole() {
    let dir = tempfile::tempdir().unwrap();
    let n = 1500;
    for i in 0..n {
        std::fs::write(dir.path().join(format!("f{i:04}.pkl")), GOOD).unwrap();
    }
    let cmd = format!("'{BIN}' scan -j 1 '{}'", dir.path().display());
    let Some((out, secs)) = on_a_terminal(&cmd) else {
        if std::env::var_os("CI").is_some() {
            panic!("`script` (util-linux) is needed for the progress-bar test");
        }
        eprintln!("skipped: no `script` (util-linux) to give the scan a terminal");
        return;
    };
    let text = show(&out);
    // Each frame of the bar shows `pos/len files`.
    let frames = text.matches(&format!("/{n} files")).count();
    assert!(frames >= 1, "the bar was drawn: {}", &text[..text.len().min(400)]);
    let most = (20.0 * secs).ceil() as usize + 2;
    assert!(frames <= most, "{frames} frames in {secs:.2}s: more than 20 a second");
    // Every file's line arrives whole, never cut by a frame of the bar.
    let lines = text
        .split("\r\n")
        .map(|l| l.rsplit("\x1b[2K").next().unwrap_or(l))
        .filter(|l| l.contains("[pickle]"))
        .filter(|l| l.contains("SAFE") && l.contains(" allow ") && l.ends_with(".pkl [pickle]"))
        .count();
    assert_eq!(lines, n, "{}", &text[..text.len().min(2000)]);
    assert!(text.contains(&format!("{n} files: 0 dangerous")), "the summary follows");
}
