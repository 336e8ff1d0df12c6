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

fn header(descr: &str, shape: &str) -> String {
    format!("{{'descr': {descr}, 'fortran_order': False, 'shape': {shape}, }}")
}

#[test]
fn objects_in_every_spelling_python_reads_are_found() {
    // ast.literal_eval reads these as an object dtype: escapes, prefixes, concatenation,
    // triple quotes, comments and continuations, other number forms, a later duplicate key
    let spellings = [
        header("'\\x4f'", "(1,)"),
        header("'\\117'", "(1,)"),
        header("u'\\u004f'", "(1,)"),
        header("'\\U0000004F'", "(1,)"),
        header("'|' 'O'", "(1,)"),
        header("'''|O'''", "(1,)"),
        header("R'O'", "(1,)"),
        header("'\\x11'", "(1,)"),
        header("'O 8'", "(1,)"),
        header("'obj' \"ect\"", "(0x_1,)"),
        header("'i4,O'", "(True,)"),
        header("[('a', '<i4'), ('b', 'O')]", "(1,)"),
        header("('V', 'O')", "(1,)"),
        header("['aO']", "(1,)"),
        header("{('a', 'O'): 1}", "(1,)"),
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'descr': '|O'}".into(),
        "{'descr':\n  # the dtype\n  '|O', 'fortran_order': False, \\\n 'shape': (1,)}".into(),
        "  {'descr' : '|O'  ,\t'fortran_order':False,'shape':(1L,)}".into(),
    ];
    for h in &spellings {
        for v in [1u8, 3] {
            let bytes = npy_with(v, h, EVIL_PICKLE);
            let r = scan(bytes);
            // Python 2 longs only in versions 1 and 2 (numpy's _filter_header)
            if v == 3 && h.contains("1L") {
                assert_eq!(one(&r, "npy-bad-header").severity, Severity::Error, "{h}");
                continue;
            }
            assert_eq!(r.verdict, Verdict::Dangerous, "v{v} {h}: {:#?}", r.findings);
        }
    }
}

#[test]
fn escapes_are_never_kept_literally_and_numpy_refusals_are_errors() {
    // a raw string keeps the backslash: dtype '\x4f' is no dtype, numpy refuses the file
    for descr in ["r'\\x4f'", "'O16'", "'Object'", "('V8', 'O')", "[(1, 'O')]", "'\\N{LATIN CAPITAL LETTER O}'"] {
        let r = scan(npy_with(1, &header(descr, "(1,)"), EVIL_PICKLE));
        assert_eq!(r.verdict, Verdict::Error, "{descr}: {:#?}", r.findings);
        assert_eq!(one(&r, "npy-bad-header").severity, Severity::Error);
    }
    // a nameless subarray of objects is padding, which numpy drops: raw bytes, no pickle
    let r = scan(npy_with(1, &header("[('', 'O', (2,)), ('a', '<i4')]", "(1,)"), &[0u8; 20]));
    assert_eq!(r.verdict, Verdict::Safe, "{:#?}", r.findings);
}

#[test]
fn descriptions_beyond_the_model_fail_closed_but_are_scanned() {
    // a field given as a set: its order is random per process
    let r = scan(npy_with(1, &header("[{'a', 'O'}]", "(1,)"), EVIL_PICKLE));
    assert!(find(&r, "npy-bad-header").iter().any(|f| f.message.contains("cannot be judged")), "{:#?}", r.findings);
    assert_eq!(r.verdict, Verdict::Dangerous);
}

#[test]
fn object_shapes_do_not_matter() {
    // read_array unpickles an object array whatever its shape says
    let r = scan(npy_with(1, &header("'|O'", "(-5, 0)"), EVIL_PICKLE));
    assert_eq!(r.verdict, Verdict::Dangerous);
    let r = scan(npy_with(1, &header("'<f4'", "(-5,)"), b""));
    assert_eq!(one(&r, "npy-bad-header").severity, Severity::Error);
}

#[test]
fn npz_members_of_any_name_are_arrays() {
    // NpzFile.__getitem__ opens any member that starts with the magic as an array
    let evil = npy_with(1, &header("'\\x4f'", "(1,)"), EVIL_PICKLE);
    for name in ["weights", "a.npy", "x.npy.bin", "dir/arr"] {
        let r = scan(zip(&[Z::deflated(name, &evil), Z::stored("ok.npy", &npy_f4(3))]));
        assert!(dangerous_at(&r, name), "{name}: {:#?}", r.findings);
    }
}

#[test]
fn header_mutations_never_panic() {
    // token-aware mutations of valid headers: quotes, escapes, brackets, numbers, names
    let pieces: &[&str] = &[
        "'", "\"", "'''", "\\", "\\x", "\\u00", "\\N{", "\\\n", "#", "\n", "(", ")", "[", "]", "{", "}", ",", ":",
        "0x", "0o_", "1_", "L", "j", "e9", "-", "+", "...", "True", "set()", "u'", "rb'", "\u{e9}", "\0", "O", "i4,",
    ];
    let bases = [
        header("[('a', '<i4'), ('b', 'O', (2,))]", "(3,)"),
        header("'i4,(2,)O'", "(0x10, 2L)"),
        header("('V', 'O')", "()"),
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..3000 {
        let base = &bases[i % bases.len()];
        let mut chars: Vec<char> = base.chars().collect();
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % (chars.len() + 1);
            let piece = pieces[(next() as usize) % pieces.len()];
            if next() % 2 == 0 && at < chars.len() {
                chars.remove(at);
            }
            for (k, c) in piece.chars().enumerate() {
                chars.insert((at + k).min(chars.len()), c);
            }
        }
        let text: String = chars.into_iter().collect();
        for v in [1u8, 3] {
            let r = scan(npy_with(v, &text, EVIL_PICKLE));
            assert!(find(&r, "internal-error").is_empty(), "{text:?}: {:#?}", r.findings);
        }
    }
}
