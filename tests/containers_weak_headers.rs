//! Weak compression headers (an lzma-alone header, zlib's two bytes, joblib's `ZF` field) agree
//! with the readers that open them: data that Python's reader fails on at once is no compressed
//! file (it is sniffed on as whatever else it is), data it reads is a stream and what comes out
//! is judged.
mod containers_util;
mod loaders;

use containers_util::*;
use modelgate::finding::{Severity, Verdict};

/// The label of the wrapper a reader verdict belongs to.
const READERS: &[(&str, &str)] = &[("lzma", "lzma:"), ("zlib", "zlib:"), ("zf", "joblib-zlib:")];

/// Check `format` (the part of modelgate's format from this layer on) against one row's verdicts
/// (`prefix` picks `lzma`/`inner_lzma`); returns what disagrees.
fn disagreement(row: &serde_json::Value, prefix: &str, format: &str) -> Option<String> {
    for (reader, label) in READERS {
        let Some(v) = row.get(format!("{prefix}{reader}")).and_then(|v| v.as_str()) else { continue };
        let wrapped = format.starts_with(label);
        match v {
            // nothing comes out: not a compressed file
            "fails" if wrapped => return Some(format!("{reader} fails at once, modelgate says {format}")),
            // it reads to the end: a stream
            "clean" if !wrapped => return Some(format!("{reader} reads it, modelgate says {format}")),
            _ => {}
        }
    }
    None
}

/// MATLAB v4 files, joblib's `*.npy.z` siblings and raw array bytes, random weak headers and
/// real streams, whole, cut or followed by junk (tests/fixtures/joblib/weak_headers.py), judged
/// by `lzma.open`, joblib's zlib reader and `numpy_pickle_compat.read_zfile`.
#[test]
fn weak_headers_agree_with_python_readers() {
    let Some(py) = loaders::python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("weak.jsonl");
    loaders::run(&py, "joblib/weak_headers.py", &[out.to_str().unwrap(), "600", "1"]);
    let mut failures = Vec::new();
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for line in std::fs::read_to_string(&out).unwrap().lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let what = row["what"].as_str().unwrap();
        let bytes = loaders::unhex(row["hex"].as_str().unwrap());
        let r = scan(bytes.clone());
        no_internal_error(&r);
        let key = format!("{what}: lzma {} zlib {} zf {}", row["lzma"], row["zlib"], row["zf"]);
        *seen.entry(key).or_default() += 1;
        if let Some(d) = disagreement(&row, "", &r.format) {
            failures.push(format!("{what}: {d} ({} bytes)", bytes.len()));
            continue;
        }
        // a `ZF` file read_zfile reads: what comes out is judged the same way
        if row["zf"] == "clean" {
            let inner = r.format.strip_prefix("joblib-zlib:").unwrap_or_default();
            if let Some(d) = disagreement(&row, "inner_", inner) {
                failures.push(format!("{what}: inside ZF: {d}"));
            }
        }
        // benign data that is no stream, or a stream that reads cleanly, is no error
        let clean = READERS.iter().all(|(k, _)| row[*k].is_null() || row[*k] == "fails" || row[*k] == "clean");
        if clean && !what.contains("cut") && r.verdict == Verdict::Error {
            failures.push(format!("{what}: {}: error {:#?}", r.format, r.findings));
        }
        // a stream cut short that modelgate opens reports the damage
        if what.contains("cut")
            && row["lzma"] == "cut"
            && r.format.starts_with("lzma:")
            && !r.findings.iter().any(|f| f.code == "compressed-data-corrupt" && f.severity == Severity::Error)
        {
            failures.push(format!("{what}: cut stream not reported: {:#?}", r.findings));
        }
    }
    for (k, n) in &seen {
        eprintln!("{n:4}  {k}");
    }
    for kind in ["matlab-v4", "zf-sibling", "raw-array", "weak-alone", "weak-zlib", "alone whole", "zlib whole"] {
        assert!(seen.keys().filter(|k| k.starts_with(kind)).count() > 0, "no {kind} case");
    }
    assert!(failures.is_empty(), "{} disagreements:\n{}", failures.len(), failures.join("\n"));
}

/// A stream cut short whose start decodes to something a loader reads stays a stream: `lzma.open`
/// and joblib's zlib reader hand that start to `pickle.load`, so it is never allowed.
#[test]
fn a_cut_stream_of_a_pickle_stays_a_stream() {
    for (label, wrap) in [("lzma:", lzma_alone as fn(&[u8]) -> Vec<u8>), ("zlib:", zlib)] {
        let c = wrap(EVIL_PICKLE);
        let r = scan(c[..c.len() - 6].to_vec());
        assert!(r.format.starts_with(label), "{}", r.format);
        assert!(matches!(r.verdict, Verdict::Dangerous | Verdict::Error), "{label} {:?}", r.verdict);
    }
}
