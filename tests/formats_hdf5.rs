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

#[test]
fn self_referencing_continuations_are_bounded() {
    // Object header v1 at 96 whose only message is a continuation to itself.
    let mut b = fixture("keras_dense_v0.h5");
    let root = 0x60usize;
    assert_eq!(b[root], 1, "fixture layout changed");
    let msg_at = root + 16;
    b[root + 2..root + 4].copy_from_slice(&1u16.to_le_bytes());
    b[root + 8..root + 12].copy_from_slice(&24u32.to_le_bytes());
    b[msg_at..msg_at + 2].copy_from_slice(&0x10u16.to_le_bytes());
    b[msg_at + 2..msg_at + 4].copy_from_slice(&16u16.to_le_bytes());
    b[msg_at + 8..msg_at + 16].copy_from_slice(&(msg_at as u64).to_le_bytes());
    b[msg_at + 16..msg_at + 24].copy_from_slice(&24u64.to_le_bytes());
    let t = std::time::Instant::now();
    let r = scan(&b);
    assert!(has(&r, "hdf5-malformed"), "{r:#?}");
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
}
