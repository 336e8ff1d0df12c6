//! NumPy `.npy` headers and `.npz` archives.
mod containers_util;

use containers_util::*;
use modelgate::finding::{Severity, Verdict};

#[test]
fn versions_one_two_three() {
    for v in [1u8, 2, 3] {
        let r = scan(npy_with(v, "{'descr': '<i8', 'fortran_order': True, 'shape': (2, 3), }", &[0u8; 48]));
        assert_eq!(r.format, "numpy");
        assert!(r.findings.is_empty(), "v{v}: {:#?}", r.findings);
        assert_eq!(r.verdict, Verdict::Safe);
    }
    let r = scan(npy_with(3, "{'descr': [('ünï', '<f8')], 'fortran_order': False, 'shape': (1,), }", &[0u8; 8]));
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    let mut bad = npy_f4(1);
    bad[6] = 4;
    let f = one(&scan(bad), "npy-bad-header").message.clone();
    assert!(f.contains("version 4.0"), "{f}");
}

#[test]
fn structured_and_scalar_arrays() {
    let r = scan(npy_with(
        1,
        "{'descr': [('a', '<i4'), ('b', '<f8', (2,)), ('c', [('d', '|u1')])], 'fortran_order': False, 'shape': (3,), }",
        &[0u8; 3 * (4 + 16 + 1)],
    ));
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    let r = scan(npy_with(1, "{'descr': '<c16', 'fortran_order': False, 'shape': (), }", &[0u8; 16]));
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    let r = scan(npy_with(1, "{'descr': '<U4', 'fortran_order': False, 'shape': (0, 5), }", b""));
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
}

#[test]
fn size_mismatch_is_reported() {
    let r = scan(npy_with(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (10,), }", &[0u8; 12]));
    let f = one(&r, "npy-size-mismatch");
    assert!(f.message.contains("truncated"));
    assert_eq!(f.severity, Severity::Suspicious);
    let mut extra = npy_f4(2);
    extra.extend_from_slice(b"cos\nsystem\n");
    assert!(one(&scan(extra), "npy-size-mismatch").message.contains("extra bytes"));
    // Huge declared shapes do not overflow.
    let r = scan(npy_with(
        1,
        "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }",
        b"",
    ));
    assert_eq!(one(&r, "npy-size-mismatch").severity, Severity::Suspicious);
}

#[test]
fn malformed_headers_are_errors() {
    for h in [
        "{'descr': '<f4', 'fortran_order': False}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1}",
        "{'descr': 5, 'fortran_order': False, 'shape': (1,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': [1]}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)",
        "__import__('os').system('echo pwned')",
        "",
    ] {
        let r = scan(npy_with(1, h, &[0u8; 4]));
        assert_eq!(one(&r, "npy-bad-header").severity, Severity::Error, "{h}");
        assert_eq!(r.verdict, Verdict::Error);
    }
    // Declared header longer than the file.
    let mut short = npy_f4(1);
    short[8..10].copy_from_slice(&60000u16.to_le_bytes());
    assert!(!find(&scan(short), "npy-bad-header").is_empty());
    // Version 2 with a 4 GiB header length is refused without allocating it.
    let mut big = npy_with(2, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", &[0u8; 4]);
    big[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(one(&scan(big), "npy-bad-header").message.contains("cap"));
}

#[test]
fn object_arrays_hand_the_payload_on_as_a_pickle() {
    // The payload is itself an .npy here, so that the hand-off is visible without the pickle parser:
    // a Pickle hint does not stop content detection of unmistakable magic.
    let r = scan(npy_object(&npy_probe()));
    assert_eq!(r.format, "numpy");
    assert_eq!(one(&r, "npy-bad-header").member, None);
    // Structured dtypes with an object field, and dtype strings naming objects.
    for descr in ["[('a', '<i4'), ('b', '|O')]", "'object'", "'|O8'", "[('x', [('y', 'O')])]", "('O', (2,))"] {
        let r =
            scan(npy_with(1, &format!("{{'descr': {descr}, 'fortran_order': False, 'shape': (1,), }}"), &npy_probe()));
        assert_eq!(find(&r, "npy-bad-header").len(), 1, "{descr}: {:#?}", r.findings);
        assert!(find(&r, "npy-size-mismatch").is_empty(), "{descr}");
    }
    // From a stream too (an object array in a deflated .npz).
    let r = scan(zip(&[Z::deflated("a.npy", &npy_object(&npy_probe())), Z::deflated("b.npy", &npy_f4(8))]));
    assert_eq!(r.format, "numpy-npz");
    assert_eq!(one(&r, "npy-bad-header").member.as_deref(), Some("a.npy"));
}
