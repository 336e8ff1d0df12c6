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

/// Wrappers whose dtype is pickled in many forms (tests/fixtures/joblib/dtype_variants.py):
/// where joblib read the data as a pickle the marker ran, and modelgate must say dangerous;
/// where it read raw data and loaded cleanly, modelgate must say safe; where numpy crashed
/// (a crafted state makes it build object arrays from raw bytes), modelgate must not say safe.
#[test]
fn pickled_dtype_states_agree_with_joblib() {
    let Some(py) = loaders::python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dtypes.jsonl");
    loaders::run(&py, "joblib/dtype_variants.py", &[out.to_str().unwrap(), "400", "5"]);
    let (mut markers, mut clean, mut crashed, mut closed, mut polyglots) = (0, 0, 0, 0, 0);
    let mut failures = Vec::new();
    for line in std::fs::read_to_string(&out).unwrap().lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let r = scan(loaders::unhex(row["hex"].as_str().unwrap()));
        let what = row["what"].as_str().unwrap();
        if row["marker"].as_bool().unwrap() {
            markers += 1;
            if r.verdict != Verdict::Dangerous {
                failures.push(format!("payload ran, verdict {:?}: {what}\n{:#?}", r.verdict, r.findings));
            }
        } else if row["loaded"].as_bool().unwrap() {
            clean += 1;
            // failing closed where modelgate cannot follow (a flag word beyond 64 bits: the data
            // is then scanned as a pickle too) or where the flags deny objects the dtype stores
            let closed_msg = r
                .findings
                .iter()
                .any(|f| f.message.contains("cannot tell how joblib reads") || f.message.contains("raw pointers"));
            // the array data of these variants is the payload pickle: joblib.load reads it as
            // raw data, but pickle.load of the same file reads it as opcodes and runs it
            // (checked with CPython), a polyglot the pickle scan reports
            let polyglot = r.findings.iter().any(|f| {
                f.code == "pickle-loader-divergence"
                    && f.message.contains("joblib array wrapper")
                    && f.evidence.as_deref().unwrap_or("").contains("mg_dtype_marker")
            });
            if matches!(r.verdict, Verdict::Error | Verdict::Dangerous) && closed_msg {
                closed += 1;
            } else if polyglot && r.verdict == Verdict::Dangerous {
                polyglots += 1;
            } else if r.verdict != Verdict::Safe {
                failures.push(format!("joblib loads it cleanly, verdict {:?}: {what}\n{:#?}", r.verdict, r.findings));
            }
        } else if row["crashed"].as_bool().unwrap() {
            crashed += 1;
            if r.verdict == Verdict::Safe {
                failures.push(format!("numpy crashes on it, verdict Safe: {what}"));
            }
        }
    }
    eprintln!(
        "{markers} payloads ran, {clean} clean loads ({closed} failed closed, {polyglots} run by pickle.load), {crashed} numpy crashes"
    );
    assert!(markers > 50 && clean > 50, "too few cases of each kind");
    assert!(closed * 5 < clean, "too many clean loads failed closed: {closed} of {clean}");
    assert!(failures.is_empty(), "{} disagreements:\n{}", failures.len(), failures.join("\n\n"));
}

/// Compressed-stream layouts (tests/fixtures/joblib/stream_variants.py) read by Python's
/// `gzip.open`, `bz2.open` and `lzma.open` under `pickle.load`: where the marker ran,
/// modelgate must say dangerous; where the file loaded cleanly, safe.
#[test]
fn stream_layouts_agree_with_python() {
    let Some(py) = loaders::python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("streams.jsonl");
    loaders::run(&py, "joblib/stream_variants.py", &[out.to_str().unwrap(), "300", "1"]);
    let (mut markers, mut clean) = (0, 0);
    let mut failures = Vec::new();
    for line in std::fs::read_to_string(&out).unwrap().lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let r = scan(loaders::unhex(row["hex"].as_str().unwrap()));
        let what = row["what"].as_str().unwrap();
        if row["marker"].as_bool().unwrap() {
            markers += 1;
            if r.verdict != Verdict::Dangerous {
                failures.push(format!("payload ran, verdict {:?}: {what}\n{:#?}", r.verdict, r.findings));
            }
        } else if row["loaded"].as_bool().unwrap() {
            clean += 1;
            if r.verdict != Verdict::Safe {
                failures.push(format!("loads cleanly, verdict {:?}: {what}\n{:#?}", r.verdict, r.findings));
            }
        }
    }
    eprintln!("{markers} payloads ran, {clean} clean loads");
    assert!(markers > 50 && clean > 50, "too few cases of each kind");
    assert!(failures.is_empty(), "{} disagreements:\n{}", failures.len(), failures.join("\n\n"));
}
