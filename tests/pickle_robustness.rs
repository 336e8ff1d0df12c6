//! Never panic: every fixture truncated at every length and with bytes flipped, read from
//! memory and from a forward-only stream, always yields a report without an internal error.

mod common;

use common::{fixtures, opts, scan};
use modelgate::engine::scan_data;
use modelgate::source::Data;

fn check(name: &str, bytes: &[u8]) {
    let r = scan(bytes);
    assert!(r.findings.iter().all(|f| f.code != "internal-error"), "{name}: the scanner panicked on {:02x?}", bytes);
}

#[test]
fn truncated_at_every_length() {
    for (name, bytes, _) in fixtures::all() {
        for n in 0..=bytes.len() {
            check(&name, &bytes[..n]);
        }
    }
}

#[test]
fn bytes_flipped() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for (name, bytes, _) in fixtures::all() {
        for i in 0..bytes.len() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut b = bytes.clone();
            b[i] ^= 1 << (state % 8);
            check(&name, &b);
            b[i] = (state >> 8) as u8;
            check(&name, &b);
        }
    }
}

#[test]
fn streams_behave_like_memory() {
    for (name, bytes, _) in fixtures::all() {
        let mem = scan(&bytes);
        let stream =
            scan_data("fixture", Data::Stream(Box::new(std::io::Cursor::new(bytes.clone())), None), None, &opts());
        assert_eq!(mem.verdict, stream.verdict, "{name}");
        let names = |r: &modelgate::engine::FileReport| r.imports.iter().map(|i| i.full_name()).collect::<Vec<_>>();
        // a stream cannot tell whether a huge FRAME's bytes exist; it reads on (a superset)
        if name != "huge-frame" {
            assert_eq!(names(&mem), names(&stream), "{name}");
        }
    }
}
