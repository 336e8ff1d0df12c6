mod formats_common;
use formats_common::*;
use modelgate::finding::Verdict;

/// Fixtures written by h5py (tests/fixtures/formats/make_h5.py).
fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/formats/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn benign_models_are_safe() {
    for f in ["keras_dense_v0.h5", "keras_dense_latest.h5"] {
        assert_safe(&scan(&fixture(f)), "keras-h5");
        assert_safe(&scan_stream(&fixture(f)), "keras-h5");
    }
    assert_safe(&scan(&fixture("weights_only.h5")), "hdf5");
}

#[test]
fn lambda_layers_are_dangerous_in_every_layout() {
    // superblock 0 with a fixed string, superblock 0 with a variable-length string (global
    // heap), superblock 3 / object header 2, dense attribute storage (fractal heap + b-tree),
    // and a 1024-byte user block in front of the superblock.
    for f in [
        "keras_lambda_v0.h5",
        "keras_lambda_vlen.h5",
        "keras_lambda_latest.h5",
        "keras_lambda_dense_attrs.h5",
        "keras_lambda_userblock.h5",
    ] {
        let r = scan(&fixture(f));
        assert_eq!(r.format, "keras-h5", "{f}");
        assert_eq!(r.verdict, Verdict::Dangerous, "{f}: {r:#?}");
        let ev = evidence(&r, "keras-lambda-layer");
        assert!(ev.contains("model_config/seq/lambda_payload") && ev.contains("modelgate fixture"), "{f}: {ev}");
    }
}

#[test]
fn broken_config_json_is_an_error() {
    let mut b = fixture("keras_dense_v0.h5");
    let needle = b"{\"class_name\"";
    let at = b.windows(needle.len()).position(|w| w == needle).unwrap();
    b[at] = b'x';
    let r = scan(&b);
    assert_eq!(r.verdict, Verdict::Error, "{r:#?}");
    assert!(has(&r, "keras-config-malformed"));
}

#[test]
fn broken_structure_is_an_error() {
    let mut b = fixture("keras_dense_latest.h5");
    b.truncate(200);
    let r = scan(&b);
    assert_eq!(r.verdict, Verdict::Error, "{r:#?}");
    assert!(has(&r, "hdf5-malformed"));
    let r = scan(b"\x89HDF\r\n\x1a\n\x07");
    assert!(has(&r, "hdf5-malformed"));
}

#[test]
fn mangled_files_never_panic() {
    for f in ["keras_lambda_v0.h5", "keras_lambda_vlen.h5", "keras_lambda_latest.h5", "keras_lambda_dense_attrs.h5"] {
        never_panics(&fixture(f));
    }
}
