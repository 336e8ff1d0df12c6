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

mod containers_util;

/// The signature at the start of a member, in every kind of archive and for every way a
/// member is read (sniffed, raw tensor bytes, torch's tar layout).
#[test]
fn eicar_at_the_start_of_any_member() {
    use containers_util::{gzip, sevenz, tar, zip, Z};
    let mut after = EICAR.to_vec();
    after.extend_from_slice(b"\r\n and more bytes after it");
    // Raw tensor bytes are never parsed, but their start is checked.
    let torch_raw = zip(&[Z::stored("archive/data.pkl", b"\x80\x02}q\x00."), Z::stored("archive/data/0", &after)]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("zip", zip(&[Z::stored("readme.txt", b"hello"), Z::stored("eicar.com", &after)]), "eicar.com"),
        ("deflated zip", zip(&[Z::deflated("a/eicar.txt", &after)]), "a/eicar.txt"),
        ("torch storage", torch_raw, "archive/data/0"),
        ("tar", tar(&[("x", b"x"), ("eicar", &after)]), "eicar"),
        ("tar.gz", gzip(&tar(&[("eicar", &after)])), "eicar"),
        ("7z", sevenz(&[("eicar", &after)], false), "eicar"),
        ("nested", zip(&[Z::stored("in.zip", &zip(&[Z::stored("eicar", &after)]))]), "in.zip!eicar"),
        // A member that is itself a tar whose first header's name is the signature.
        ("tar named", zip(&[Z::stored("t.tar", &tar(&[(std::str::from_utf8(EICAR).unwrap(), b"x")]))]), "t.tar"),
        // torch's legacy tar layout: `storages` is walked, not sniffed.
        (
            "torch tar",
            tar(&[("storages", &after), ("tensors", b"\x80\x02K\x00."), ("pickle", b"\x80\x02}.")]),
            "storages",
        ),
    ];
    for (what, bytes, member) in cases {
        let r = scan(&bytes);
        let f = r
            .findings
            .iter()
            .find(|f| f.code == "eicar-test-signature")
            .unwrap_or_else(|| panic!("{what}: {:#?}", r.findings));
        assert_eq!(f.member.as_deref(), Some(member), "{what}");
        assert_eq!(f.offset, Some(0), "{what}");
        assert_eq!(r.verdict, Verdict::Dangerous, "{what}");
    }
}

#[test]
fn a_tar_file_named_by_the_signature_is_flagged() {
    // A tar file whose first bytes are the signature (its first member's name).
    let t = containers_util::tar(&[(std::str::from_utf8(EICAR).unwrap(), b"data")]);
    let r = scan(&t);
    assert_eq!(r.format, "tar");
    assert!(has(&r, "eicar-test-signature"), "{r:#?}");
}
