mod formats_common;
use formats_common::*;
use modelgate::finding::Verdict;

fn file(header: &str, data_len: usize) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend(std::iter::repeat_n(0u8, data_len));
    v
}

const BENIGN: &str = r#"{"__metadata__":{"format":"pt","license":"MIT"},"bias":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"w":{"dtype":"F16","shape":[2,4],"data_offsets":[16,32]}}  "#;

#[test]
fn benign_file_is_safe_from_file_and_stream() {
    let f = file(BENIGN, 32);
    assert_safe(&scan(&f), "safetensors");
    assert_safe(&scan_stream(&f), "safetensors");
}

#[test]
fn metadata_code_is_dangerous_with_evidence() {
    let h = r#"{"__metadata__":{"model_info":"import os; os.system('echo pwned')"},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#;
    let r = scan(&file(h, 1));
    assert_eq!(r.verdict, Verdict::Dangerous);
    assert!(evidence(&r, "safetensors-metadata-code").contains("os.system('echo pwned')"), "{r:#?}");
}

#[test]
fn metadata_shell_and_markup_are_suspicious() {
    for v in ["rm -rf /tmp/x && wget http://example.invalid/x", "<script>alert(1)</script>"] {
        let h = format!(r#"{{"__metadata__":{{"note":{}}}}}"#, serde_json::to_string(v).unwrap());
        let r = scan(&file(&h, 0));
        assert_eq!(r.verdict, Verdict::Suspicious, "{r:#?}");
        assert!(has(&r, "safetensors-metadata-suspicious"));
    }
    let h = r#"{"__metadata__":{"url":"https://huggingface.co/org/model"}}"#;
    assert_safe(&scan(&file(h, 0)), "safetensors");
}

#[test]
fn malformed_files_are_errors() {
    let mut long = file(BENIGN, 32);
    long[..8].copy_from_slice(&10_000u64.to_le_bytes());
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (long, "past the end of the file"),
        (file(BENIGN, 31), "past the end of the data region"),
        (file(BENIGN, 40), "cover 32 bytes"),
        (file(r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}"#, 8), "needs 16 bytes"),
        (
            file(
                r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}}"#,
                5,
            ),
            "overlaps",
        ),
        (file(r#"{"a": nope}"#, 0), "not a json object"),
    ];
    for (bytes, want) in cases {
        for r in [scan(&bytes), scan_stream(&bytes)] {
            assert_eq!(r.format, "safetensors");
            assert_eq!(r.verdict, Verdict::Error, "{want}: {r:#?}");
            assert!(
                r.findings.iter().any(|f| f.code == "safetensors-malformed" && f.message.contains(want)),
                "{want}: {r:#?}"
            );
        }
    }
}

#[test]
fn huge_declared_header_is_rejected_without_allocating() {
    let mut v = 99_999_999u64.to_le_bytes().to_vec();
    v.extend_from_slice(br#"{"a":{}}"#);
    let r = scan(&v);
    assert!(has(&r, "safetensors-malformed"));
    let mut v = ((1u64 << 31) + 5).to_le_bytes().to_vec();
    v.extend_from_slice(br#"{"a":{}}"#);
    let r = scan_stream(&v);
    assert!(r.findings.iter().any(|f| f.message.contains("loader's limit")), "{r:#?}");
}

#[test]
fn multi_gb_file_is_judged_by_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.safetensors");
    let n: u64 = 6 << 30;
    let h = format!(r#"{{"w":{{"dtype":"U8","shape":[{n}],"data_offsets":[0,{n}]}}}}"#);
    let mut head = (h.len() as u64).to_le_bytes().to_vec();
    head.extend_from_slice(h.as_bytes());
    std::fs::write(&p, &head).unwrap();
    std::fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(head.len() as u64 + n).unwrap();
    let t = std::time::Instant::now();
    let r = modelgate::engine::scan_path(&p, "big", &Default::default());
    assert_safe(&r, "safetensors");
    assert!(t.elapsed() < std::time::Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn a_pickle_named_safetensors_is_not_safetensors() {
    let r = scan(b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01.");
    assert_ne!(r.format, "safetensors");
}

#[test]
fn mangled_headers_never_panic() {
    never_panics(&file(BENIGN, 32));
    never_panics(&file(r#"{"__metadata__":{"a":"import os"},"x":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}}"#, 1));
}
