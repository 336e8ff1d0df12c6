//! The real loaders (numpy, joblib from PyPI, pinned in `.ci/requirements.txt`), for tests
//! that compare modelgate with them. `.ci/run` installs them into a venv at /opt/mg-venv;
//! `MG_PYTHON` names another interpreter. Without one the tests are skipped, unless CI=true.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A Python that imports numpy and joblib, or `None` (the caller skips; under CI=true this panics).
pub fn python() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = match std::env::var_os("MG_PYTHON") {
        Some(p) => vec![PathBuf::from(p)],
        None => vec![PathBuf::from("/opt/mg-venv/bin/python")],
    };
    for p in candidates {
        let ok = Command::new(&p).args(["-c", "import numpy, joblib"]).output().is_ok_and(|o| o.status.success());
        if ok {
            return Some(p);
        }
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("numpy and joblib are required when CI=true (.ci/run installs them into /opt/mg-venv)");
    }
    eprintln!("skipping: no Python with numpy and joblib (set MG_PYTHON or run .ci/run)");
    None
}

/// Run `script` (under tests/fixtures) with `args`; panics with its output on failure.
pub fn run(python: &Path, script: &str, args: &[&str]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(script);
    let out = Command::new(python).arg(&path).args(args).output().expect("run python");
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex")).collect()
}
