//! Names that claim a model format: content still decides the format, but content that no
//! format matched is an `error` (fail closed) when the name says model, inside archives too.
mod containers_util;

use containers_util::*;
use modelgate::engine::{scan_source, FileReport, ScanOptions};
use modelgate::finding::{Severity, Verdict};
use modelgate::source::BytesSource;
use std::sync::Arc;

fn scan_named(name: &str, bytes: &[u8]) -> FileReport {
    scan_source(name, Arc::new(BytesSource(bytes.to_vec())), &ScanOptions::default())
}

const JUNK: &[u8] = b"\xff\xd8\xff\xe0 not a model format at all \x00\x01\x02";

#[test]
fn unrecognised_content_under_a_model_name_is_an_error() {
    // A safetensors header longer than the file: no longer a safetensors file to the sniffer.
    let mut bad_st = (1u64 << 40).to_le_bytes().to_vec();
    bad_st.extend_from_slice(br#"{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("model.safetensors", bad_st),
        ("model.gguf", JUNK.to_vec()),
        ("model.onnx", JUNK.to_vec()),
        ("weights.pt", JUNK.to_vec()),
        ("weights.PTH", JUNK.to_vec()),
        ("model.ckpt", JUNK.to_vec()),
        ("model.pkl", JUNK.to_vec()),
        ("model.joblib", JUNK.to_vec()),
        ("arr.npy", JUNK.to_vec()),
        ("model.h5", JUNK.to_vec()),
        ("model.keras", JUNK.to_vec()),
        ("model.tflite", JUNK.to_vec()),
        ("export/saved_model.pb", JUNK.to_vec()),
        // Plain JSON is no model either.
        ("model.safetensors", br#"{"a": 1}"#.to_vec()),
        // A compression suffix after the model name: joblib decompresses by content.
        ("model.pkl.gz", gzip(JUNK)),
    ];
    for (name, bytes) in cases {
        let r = scan_named(name, &bytes);
        assert_eq!(r.verdict, Verdict::Error, "{name}: {r:#?}");
        let f = one(&r, "model-content-unrecognised");
        assert_eq!(f.severity, Severity::Error);
        assert!(f.message.contains("model"), "{}", f.message);
    }
}

#[test]
fn other_names_stay_unsupported() {
    for name in ["README.md", "train.py", "notes", "vocab.bin", "fingerprint.pb", "flax_model.msgpack", "sp.model"] {
        let r = scan_named(name, JUNK);
        assert_eq!(r.verdict, Verdict::Unsupported, "{name}: {r:#?}");
        assert!(r.findings.is_empty(), "{name}: {r:#?}");
    }
    // An empty file runs nothing whatever its name.
    assert_eq!(scan_named("model.pt", b"").verdict, Verdict::Unsupported);
    // A git-lfs pointer (what a client without git-lfs checks out) is git-lfs's text, no model.
    let pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n";
    assert_eq!(scan_named("model.safetensors", pointer).verdict, Verdict::Unsupported);
    // Anything else in the same place is not.
    let mut tampered = pointer.to_vec();
    tampered[0] = b'V';
    assert_eq!(scan_named("model.safetensors", &tampered).verdict, Verdict::Error);
}

#[test]
fn recognised_content_decides_whatever_the_name() {
    // A pickle named .safetensors is a pickle.
    let r = scan_named("model.safetensors", EVIL_PICKLE);
    assert_eq!(r.format, "pickle");
    assert_eq!(r.verdict, Verdict::Dangerous);
    let r = scan_named("model.pt", &torch_zip(b"\x80\x02}q\x00."));
    assert_eq!(r.verdict, Verdict::Safe, "{r:#?}");
}

#[test]
fn member_names_claim_too() {
    let r = scan_named(
        "bundle.zip",
        &zip(&[
            Z::stored("weights/model.pt", JUNK),
            Z::stored("README.md", JUNK),
            Z::deflated("w/a.npy", JUNK),
            // zipfile cuts names at a NUL: this is `model.pkl` to Python.
            Z::stored("model.pkl\0.txt", JUNK),
        ]),
    );
    let members: Vec<_> = find(&r, "model-content-unrecognised").iter().map(|f| f.member.clone().unwrap()).collect();
    assert_eq!(members, ["weights/model.pt", "w/a.npy", "model.pkl\0.txt"]);
    assert_eq!(r.verdict, Verdict::Error);
    // In a tar, and nested.
    let inner = tar(&[("m/model.safetensors", JUNK)]);
    let r = scan_named("x.tar.gz", &gzip(&zip(&[Z::stored("inner.tar", &inner)])));
    assert_eq!(one(&r, "model-content-unrecognised").member.as_deref(), Some("inner.tar!m/model.safetensors"));
}

#[test]
fn any_of_several_names_claims() {
    // A git blob pushed at two paths: the second name claims a model.
    let src = Arc::new(BytesSource(JUNK.to_vec()));
    let r = modelgate::engine::scan_source_named("docs/a.txt", &["models/a.pt"], src.clone(), &ScanOptions::default());
    assert_eq!(r.verdict, Verdict::Error, "{r:#?}");
    let r = modelgate::engine::scan_source_named("docs/a.txt", &["docs/b.md"], src, &ScanOptions::default());
    assert_eq!(r.verdict, Verdict::Unsupported);
}

/// joblib < 0.10 wrote each array of a compressed dump to `<dump>_NN.npy.z`: `ZF`, the hex
/// length padded to 19 bytes, then zlib of the array's raw bytes (numpy_pickle_compat
/// write_zfile), which ZNDArrayWrapper hands to `ndarray.__setstate__`. Those bytes are array
/// data, not a model the name claims; the same bytes gzipped under a model name still are.
#[test]
fn raw_array_bytes_in_a_joblib_zfile_are_array_data() {
    use std::io::Write;
    let raw: Vec<u8> =
        (0..4000u32).flat_map(|i| ((i as f32) * 0.37).to_le_bytes()).chain(JUNK.iter().copied()).collect();
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(3));
    z.write_all(&raw).unwrap();
    let mut zfile = b"ZF".to_vec();
    zfile.extend_from_slice(format!("{:<19}", format!("{:#x}", raw.len())).as_bytes());
    zfile.extend_from_slice(&z.finish().unwrap());
    let r = scan_named("dump.pkl_01.npy.z", &zfile);
    assert_eq!(r.verdict, Verdict::Unsupported, "{r:#?}");
    assert!(r.findings.iter().all(|f| f.code != "model-content-unrecognised"), "{r:#?}");
    let r = scan_named("weights.npy.gz", &gzip(&raw));
    assert_eq!(r.verdict, Verdict::Error, "{r:#?}");
}
