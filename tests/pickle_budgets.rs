//! Budgets: per file (opcodes and nested pickles, shared by every stream of a file), what is
//! held at once (values still reachable, not values ever created), and inputs of a few KB
//! built to expand (each once took minutes or gigabytes). Every budget ends in an `error`
//! finding; dangerous outranks it. Timing targets live in bench/pickle_budgets.py.

mod common;

use common::{dump, must, scan, scan_with, P};
use modelgate::engine::{scan_data, ScanOptions};
use modelgate::source::Data;
use std::io::Write;

fn codes(r: &modelgate::engine::FileReport) -> Vec<&str> {
    r.findings.iter().map(|f| f.code).collect()
}

fn count(r: &modelgate::engine::FileReport, code: &str) -> usize {
    r.findings.iter().filter(|f| f.code == code).count()
}

/// A list of `n` floats, pickled as CPython does (APPENDS batches of 1000).
fn float_list(n: usize) -> Vec<u8> {
    let mut b = vec![0x80, 4, b']'];
    let mut i = 0;
    while i < n {
        b.push(b'(');
        for _ in 0..1000.min(n - i) {
            b.push(b'G');
            b.extend_from_slice(&(i as f64 * 0.5).to_be_bytes());
            i += 1;
        }
        b.push(b'e');
    }
    b.push(b'.');
    b
}

fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// `proto 2; GLOBAL module name; BINPUT 0` then a constant memoized at 1.
fn with_decoder(module: &str, name: &str, constant: P) -> P {
    P::proto(2).global(module, name).binput(0).raw(&constant.bytes()).binput(1)
}

#[test]
fn values_held_not_values_created() {
    // the case: a plain list of five million floats is data, not a budget overrun
    let r = scan(&float_list(5_000_000));
    assert_eq!(r.verdict.as_str(), "safe", "{}", dump(&r));
    // with a small budget, a million floats still pass (they are garbage once appended) ...
    let opts = ScanOptions { max_pickle_values: 100_000, ..ScanOptions::default() };
    let r = scan_with(&float_list(1_000_000), &opts);
    assert_eq!(r.verdict.as_str(), "safe", "{}", dump(&r));
    // ... but 200,000 lists held by the memo are held at once
    let mut b = vec![0x80, 4];
    for _ in 0..200_000 {
        b.extend_from_slice(b"]\x94");
    }
    b.push(b'.');
    let r = scan_with(&b, &opts);
    assert!(must(&r, "pickle-budget-exceeded").message.contains("held at once"), "{}", dump(&r));
    assert_eq!(r.verdict.as_str(), "error");
}

#[test]
fn values_survive_garbage_collection() {
    // module and name strings memoized first, two million floats of garbage (collections
    // run), then the strings fetched for STACK_GLOBAL: the import is still os.system, and a
    // read-only view of a bytearray still shares its bytes
    let mut b = P::proto(4)
        .str("os")
        .memoize()
        .str("system")
        .memoize()
        .raw(b"\x96\x03\x00\x00\x00\x00\x00\x00\x00abc\x98\x94")
        .bytes();
    b.extend_from_slice(&float_list(2_000_000)[2..]);
    b.pop(); // the list's STOP
    b.extend_from_slice(b"0h\x00h\x01\x93h\x02\x85R.");
    let r = scan(&b);
    assert_eq!(r.verdict.as_str(), "dangerous", "{}", dump(&r));
    let f = must(&r, "pickle-import-dangerous");
    assert_eq!(f.evidence.as_deref(), Some("os.system(memoryview(b'abc'))"), "{}", dump(&r));
}

#[test]
fn decoder_calls_on_one_constant_decode_it_once() {
    // base64.b64decode on one memoized payload, 20,000 times: one nested scan, no budget
    // overrun (each call decoded and scanned it again, 40 s for 650 KB)
    let payload = b64(&P::proto(2).global("os", "system").str("echo pwned").tuple1().reduce().stop().bytes());
    let mut p = with_decoder("base64", "b64decode", P::new().bin(payload.as_bytes())).mark();
    for _ in 0..20_000 {
        p = p.binget(0).binget(1).tuple1().reduce();
    }
    let r = scan(&p.op(b'l').stop().bytes());
    assert_eq!(r.verdict.as_str(), "dangerous", "{}", dump(&r));
    assert!(!codes(&r).contains(&"pickle-budget-exceeded"), "{}", dump(&r));
    // the constant itself (base64 text of a pickle) and its decoding, not 20,000 of them
    assert!(r.imports.iter().filter(|i| i.name == "system").count() <= 2, "{}", dump(&r));
}

#[test]
fn fresh_wrappers_around_one_constant_decode_it_once() {
    // zlib.decompress(bytes(X)) with a new bytes() wrapper each time: the recipe is the same
    let inner = {
        let mut b = vec![0x80, 4];
        for _ in 0..200_000 {
            b.extend_from_slice(b"N0");
        }
        b.extend_from_slice(b"N.");
        b
    };
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&inner).unwrap();
    let bomb = z.finish().unwrap();
    let mut p = P::proto(2)
        .global("zlib", "decompress")
        .binput(0)
        .global("builtins", "bytes")
        .binput(1)
        .bin(&bomb)
        .binput(2)
        .mark();
    for _ in 0..2_000 {
        p = p.binget(0).binget(1).binget(2).tuple1().reduce().tuple1().reduce();
    }
    let r = scan(&p.op(b'l').stop().bytes());
    assert_eq!(count(&r, "pickle-embedded"), 1, "{}", dump(&r));
    assert!(!codes(&r).contains(&"pickle-budget-exceeded"), "{}", dump(&r));
}

#[test]
fn opcodes_are_counted_per_file_across_streams_and_nested_pickles() {
    let opts = ScanOptions { max_pickle_opcodes: 1_000, ..ScanOptions::default() };
    let stream = |n: usize| {
        let mut b = vec![0x80, 4];
        for _ in 0..n {
            b.extend_from_slice(b"N0");
        }
        b.extend_from_slice(b"N.");
        b
    };
    // three back-to-back pickles of 600 opcodes each
    let three = [stream(300), stream(300), stream(300)].concat();
    let r = scan_with(&three, &opts);
    assert!(must(&r, "pickle-budget-exceeded").message.contains("1000 opcodes in this file"), "{}", dump(&r));
    // three nested pickles of 600 opcodes each, in constants of one small pickle
    let mut p = P::proto(4).mark();
    for _ in 0..3 {
        p = p.bin(&stream(300));
    }
    let r = scan_with(&p.op(b'l').stop().bytes(), &opts);
    assert!(codes(&r).contains(&"pickle-budget-exceeded"), "{}", dump(&r));
    assert_eq!(r.verdict.as_str(), "error", "{}", dump(&r));
    // archive members share it too: three pickles in a tar
    let mut tar = Vec::new();
    for i in 0..3 {
        tar_member(&mut tar, &format!("m{i}.pkl"), &stream(300));
    }
    tar.extend_from_slice(&[0; 1024]);
    let r = scan_data("three.tar", Data::bytes(tar.clone()), Some(tar.len() as u64), &opts);
    assert!(codes(&r).contains(&"pickle-budget-exceeded"), "{}", dump(&r));
    // one stream within the budget passes
    let r = scan_with(&stream(300), &opts);
    assert_eq!(r.verdict.as_str(), "safe", "{}", dump(&r));
}

fn tar_member(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

#[test]
fn nested_pickles_are_counted_per_file() {
    // 1,200 small pickles in constants: the file's share (1,000) runs out, with an error
    let inner = P::proto(2).none().stop().bytes();
    let mut p = P::proto(4).mark();
    for _ in 0..1_200 {
        p = p.bin(&inner);
    }
    let r = scan(&p.op(b'l').stop().bytes());
    let f = r.findings.iter().find(|f| f.message.contains("budget for nested pickles")).expect("budget finding");
    assert_eq!(f.code, "pickle-budget-exceeded", "{}", dump(&r));
    assert_eq!(r.verdict.as_str(), "error", "{}", dump(&r));
}

#[test]
fn nesting_depth_is_checked_before_decoding() {
    // base64 in base64 ... eight levels: the seventh is not decoded, and says so
    let mut data = P::proto(2).global("os", "system").str("x").tuple1().reduce().stop().bytes();
    for _ in 0..8 {
        data = P::proto(2).str(&b64(&data)).stop().bytes();
    }
    let r = scan(&data);
    assert!(r.findings.iter().any(|f| f.message.contains("nested more than 6 levels")), "{}", dump(&r));
    assert_ne!(r.verdict.as_str(), "safe", "{}", dump(&r));
}

#[test]
fn dangerous_outranks_a_budget() {
    let opts = ScanOptions { max_pickle_opcodes: 1_000, ..ScanOptions::default() };
    let mut b = P::proto(4).call1_sg("os", "system", "echo pwned").op(b'0').bytes();
    for _ in 0..2_000 {
        b.extend_from_slice(b"N0");
    }
    b.extend_from_slice(b"N.");
    let r = scan_with(&b, &opts);
    assert!(codes(&r).contains(&"pickle-budget-exceeded"), "{}", dump(&r));
    assert_eq!(r.verdict.as_str(), "dangerous", "{}", dump(&r));
}

#[test]
fn inputs_built_to_expand_end_quickly() {
    // a tuple of memoized tuples eight levels deep: 40**8 leaves if expanded
    let mut b = P::proto(4).int(1).memoize().bytes();
    for level in 0..8u8 {
        b.push(b'(');
        for _ in 0..40 {
            b.extend_from_slice(&[b'h', level]);
        }
        b.extend_from_slice(b"t\x94");
    }
    b.push(b'.');
    let r = scan(&b);
    assert_eq!(r.verdict.as_str(), "safe", "{}", dump(&r));
    // calls on a call result whose arguments fan out 40 x 40 x 40, 50,000 times
    let mut b = P::proto(4).none().memoize().bytes();
    for level in 0..3u8 {
        b.push(b'(');
        for _ in 0..40 {
            b.extend_from_slice(&[b'h', level]);
        }
        b.extend_from_slice(b"t\x94");
    }
    b.extend_from_slice(b"cx\ny\nh\x03\x85R\x94");
    for _ in 0..50_000 {
        b.extend_from_slice(b"h\x04h\x03\x85R0");
    }
    b.extend_from_slice(b"N.");
    let r = scan(&b);
    assert_eq!(r.verdict.as_str(), "suspicious", "{}", dump(&r));
    // a memo list squared forty times
    let mut b = b"\x80\x02]q\x00".to_vec();
    for _ in 0..40 {
        b.extend_from_slice(b"(h\x00h\x00h\x00h\x00h\x00h\x00h\x00h\x00l\x94");
    }
    b.push(b'.');
    assert_eq!(scan(&b).verdict.as_str(), "safe");
    // a million MARKs and a million nested lists
    let mut b = vec![0x80, 2];
    b.extend(std::iter::repeat_n(b'(', 1_000_000));
    b.extend_from_slice(b"N.");
    assert_eq!(scan(&b).verdict.as_str(), "safe");
    let mut b = vec![0x80, 2];
    b.extend(std::iter::repeat_n(b']', 1_000_000));
    b.extend(std::iter::repeat_n(b'a', 999_999));
    b.push(b'.');
    assert_eq!(scan(&b).verdict.as_str(), "safe");
}
