//! `.npy` headers against the real numpy: thousands of header spellings made by
//! tests/fixtures/numpy/npy_variants.py, each loaded with `np.load(allow_pickle=True)`.
//! A file whose marker payload ran must be rejected as dangerous; a file numpy loads cleanly
//! must be safe; wherever numpy reads the header, modelgate must read the same shape, order,
//! `hasobject` and item size.
mod containers_util;
mod loaders;

use containers_util::scan;
use modelgate::finding::Verdict;
use modelgate::formats::numpy::{dtype::DtError, read_header};
use modelgate::source::Data;

#[test]
fn header_spellings_agree_with_numpy() {
    let Some(py) = loaders::python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("npy.jsonl");
    loaders::run(&py, "numpy/npy_variants.py", &[out.to_str().unwrap(), "2500", "11"]);
    let text = std::fs::read_to_string(&out).unwrap();
    let (mut markers, mut benign, mut headers, mut over) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let bytes = loaders::unhex(row["hex"].as_str().unwrap());
        let what = row["text"].as_str().unwrap_or("").to_string();
        let r = scan(bytes.clone());
        if row["marker"].as_bool().unwrap() {
            markers += 1;
            if r.verdict != Verdict::Dangerous {
                failures.push(format!("marker ran but verdict {:?}: {what:?}\n{:#?}", r.verdict, r.findings));
            }
        } else if row["loads"].as_bool().unwrap() {
            benign += 1;
            if r.verdict != Verdict::Safe {
                failures
                    .push(format!("numpy loads it cleanly but verdict {:?}: {what:?}\n{:#?}", r.verdict, r.findings));
            }
        }
        let ours = read_header(&mut Data::bytes(bytes).into_input());
        match (&row["header"], ours) {
            // a header whose descr numpy refuses reads as Invalid here: only a dtype counts
            (serde_json::Value::Null, Ok(ours)) => over += usize::from(ours.dtype.is_ok()),
            (serde_json::Value::Null, Err(_)) => {}
            (_, Err(e)) => failures.push(format!("numpy reads the header, modelgate does not ({e}): {what:?}")),
            (h, Ok(ours)) => {
                headers += 1;
                let shape: Vec<i128> =
                    h["shape"].as_array().unwrap().iter().map(|d| d.as_i64().unwrap() as i128).collect();
                let dt = match &ours.dtype {
                    Ok(dt) => dt.clone(),
                    Err(DtError::Invalid(e) | DtError::Unknown(e)) => {
                        failures.push(format!("numpy builds the dtype, modelgate does not ({e}): {what:?}"));
                        continue;
                    }
                };
                let same = ours.shape == shape
                    && ours.fortran_order == h["fortran"].as_bool().unwrap()
                    && dt.has_object() == h["hasobject"].as_bool().unwrap()
                    && dt.itemsize == h["itemsize"].as_u64();
                if !same {
                    failures.push(format!("numpy reads {h}, modelgate {ours:?}: {what:?}"));
                }
            }
        }
    }
    eprintln!("{markers} payloads ran, {benign} clean loads, {headers} headers compared, {over} accepted beyond numpy");
    assert!(markers > 300 && benign > 300 && headers > 1000, "too few cases of each kind");
    assert!(failures.is_empty(), "{} disagreements:\n{}", failures.len(), failures.join("\n\n"));
}
