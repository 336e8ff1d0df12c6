//! joblib dumps and compression wrappers made by the real libraries
//! (tests/fixtures/joblib/make_fixtures.py, which proves each with its loader: benign ones load
//! cleanly, malicious ones run a marker payload). modelgate must pass every benign one and
//! reject every malicious one as dangerous. The committed copies are checked always; the
//! generator is also run afresh when the loaders are installed (always under CI=true).
mod containers_util;
mod loaders;

use containers_util::scan;
use modelgate::finding::Verdict;
use std::path::Path;

fn check_dir(dir: &Path) -> usize {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let cases = manifest["cases"].as_array().unwrap();
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let bytes = std::fs::read(dir.join(format!("{name}.bin"))).unwrap();
        let r = scan(bytes);
        let want = if case["expect"] == "benign" { Verdict::Safe } else { Verdict::Dangerous };
        if r.verdict != want {
            failures.push(format!(
                "{name} ({} under {}): {:?} as {}, want {want:?}\n{:#?}",
                case["expect"], case["loader"], r.verdict, r.format, r.findings
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases disagree:\n{}", failures.len(), cases.len(), failures.join("\n"));
    cases.len()
}

#[test]
fn committed_fixtures() {
    let n = check_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/joblib"));
    assert!(n >= 50);
}

#[test]
fn fixtures_made_afresh_by_the_installed_loaders() {
    let Some(py) = loaders::python() else { return };
    let dir = tempfile::tempdir().unwrap();
    loaders::run(&py, "joblib/make_fixtures.py", &[dir.path().to_str().unwrap()]);
    check_dir(dir.path());
}
