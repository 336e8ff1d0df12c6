//! The real loaders agree: pickles that use standard-library gadgets (typing._eval_type,
//! mailcap.findmatch) and old joblib wrappers naming a file outside the dump's folder run a
//! payload in CPython's pickle / joblib.load (tests/lists_loader.py proves it with a marker file),
//! and modelgate calls each of them dangerous; the wrapper as joblib 0.9 wrote it loads and is safe.
//! Needs python3 (and numpy + joblib for the joblib cases: CI installs them under /opt/mg-lists-ci);
//! skipped without python3 unless CI=true.

use modelgate::engine::{scan_path, ScanOptions};
use modelgate::finding::Verdict;
use std::path::Path;
use std::process::Command;

const CI_LIBS: &str = "/opt/mg-lists-ci";

#[test]
fn real_loaders_fire_where_modelgate_says_dangerous() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if Command::new("python3").arg("--version").output().is_err() {
        assert!(!ci, "python3 is required when CI=true");
        eprintln!("skipping: python3 not found");
        return;
    }
    let dir = std::env::temp_dir().join(format!("mg-lists-loader-{}", std::process::id()));
    let mut cmd = Command::new("python3");
    cmd.arg("tests/lists_loader.py").arg(&dir);
    if Path::new(CI_LIBS).is_dir() {
        let old = std::env::var("PYTHONPATH").unwrap_or_default();
        cmd.env("PYTHONPATH", if old.is_empty() { CI_LIBS.to_string() } else { format!("{CI_LIBS}:{old}") });
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "lists_loader.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let cases: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = cases.iter().filter_map(|c| c["case"].as_str()).collect();
    assert!(names.contains(&"typing-eval-type"), "{names:?}");
    if ci {
        assert!(names.contains(&"joblib-wrapper-absolute"), "numpy and joblib are required when CI=true: {names:?}");
    }
    let opts = ScanOptions::default();
    for c in &cases {
        let file = c["file"].as_str().unwrap();
        let case = c["case"].as_str().unwrap();
        let r = scan_path(Path::new(file), file, &opts);
        if c["fired"].as_bool() == Some(true) {
            assert_eq!(r.verdict, Verdict::Dangerous, "{case}: the loader ran the payload: {:?}", r.findings);
        } else {
            assert_eq!(c["loads"].as_bool(), Some(true), "{case}: the control does not load");
            assert_eq!(r.verdict, Verdict::Safe, "{case}: {:?}", r.findings);
        }
        // every payload case really fired: a case that stops firing no longer tests anything
        if case != "joblib-wrapper-sibling" {
            assert_eq!(c["fired"].as_bool(), Some(true), "{case} did not fire in the real loader");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
