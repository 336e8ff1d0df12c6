mod formats_common;
use formats_common::*;
use modelgate::finding::Verdict;
use modelgate::formats::eicar::EICAR;

#[test]
fn eicar_file_is_flagged() {
    for r in [scan(EICAR), scan_stream(EICAR)] {
        assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
        assert!(has(&r, "eicar-test-signature"));
        assert_eq!(r.findings[0].offset, Some(0));
    }
    let mut with_newline = EICAR.to_vec();
    with_newline.extend_from_slice(b"\r\n");
    assert!(has(&scan(&with_newline), "eicar-test-signature"));
}

#[test]
fn eicar_inside_a_model_is_flagged() {
    // In a safetensors tensor: the header is fine, the data region holds the signature.
    let h = format!(r#"{{"t":{{"dtype":"U8","shape":[{}],"data_offsets":[0,{}]}}}}"#, EICAR.len(), EICAR.len());
    let mut v = (h.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(h.as_bytes());
    v.extend_from_slice(EICAR);
    let r = scan(&v);
    assert_eq!(r.format, "safetensors");
    assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
    assert!(has(&r, "eicar-test-signature"));
}

#[test]
fn large_files_are_searched_at_both_ends_only() {
    let mut big = vec![0u8; 3 << 20];
    let n = big.len();
    big[n - 100..n - 100 + EICAR.len()].copy_from_slice(EICAR);
    let r = scan(&big);
    assert!(has(&r, "eicar-test-signature"), "{r:#?}");
    assert_eq!(r.findings[0].offset, Some((n - 100) as u64));
    let mut middle = vec![0u8; 3 << 20];
    middle[1 << 20..(1 << 20) + EICAR.len()].copy_from_slice(EICAR);
    assert!(!has(&scan(&middle), "eicar-test-signature"));
}

#[test]
fn ordinary_bytes_are_not_flagged() {
    let r = scan(b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE");
    assert!(!has(&r, "eicar-test-signature"));
    assert_eq!(r.verdict, Verdict::Unsupported);
}
