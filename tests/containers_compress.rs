//! Single-stream compression wrappers.
mod containers_util;

use containers_util::*;
use modelgate::engine::ScanOptions;
use modelgate::finding::{Severity, Verdict};

type Wrap = fn(&[u8]) -> Vec<u8>;

const WRAPPERS: &[(&str, Wrap)] = &[
    ("gzip", gzip),
    ("zlib", zlib),
    ("bzip2", bzip2),
    ("xz", xz),
    ("lzma", lzma_alone),
    ("lz4", lz4),
    ("zstd", zstd),
    ("joblib-zlib", joblib_zf),
];

#[test]
fn every_wrapper_hands_its_content_on() {
    for (label, wrap) in WRAPPERS {
        let r = scan(wrap(&npy_f4(50)));
        assert_eq!(r.format, format!("{label}:numpy"));
        assert!(r.findings.is_empty(), "{label}: {:#?}", r.findings);
        assert_eq!(r.verdict, Verdict::Safe);

        let r = scan(wrap(&npy_probe()));
        assert_eq!(one(&r, "npy-bad-header").member, None, "{label}");

        // A wrapped torch zip: its members keep their paths.
        let r =
            scan(wrap(&zip(&[Z::stored("archive/data.pkl", b"\x80\x02}."), Z::stored("archive/x.npy", &npy_probe())])));
        assert_eq!(r.format, format!("{label}:pytorch"));
        assert_eq!(one(&r, "npy-bad-header").member.as_deref(), Some("archive/x.npy"), "{label}");
    }
}

#[test]
fn nested_wrappers() {
    let r = scan(gzip(&bzip2(&xz(&npy_f4(3)))));
    assert_eq!(r.format, "gzip:bzip2:xz:numpy");
    let opts = ScanOptions { max_depth: 2, ..Default::default() };
    let r = scan_with(gzip(&gzip(&gzip(&npy_f4(3)))), &opts);
    assert_eq!(one(&r, "container-too-deep").severity, Severity::Error);
}

#[test]
fn multi_member_streams_are_read_whole() {
    let npy = npy_f4(40);
    let (a, b) = npy.split_at(30);
    let r = scan([gzip(a), gzip(b)].concat());
    assert_eq!(r.format, "gzip:numpy");
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    let r = scan([bzip2(a), bzip2(b)].concat());
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    let r = scan([xz(a), xz(b)].concat());
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert_eq!(gunzip(&[gzip(a), gzip(b)].concat()), npy);
}

#[test]
fn corrupt_data_is_an_error_with_what_came_before_kept() {
    for (label, wrap) in WRAPPERS {
        let z = zip(&[Z::stored("a.npy", &npy_probe()), Z::stored("pad.bin", &vec![9u8; 100_000])]);
        let mut c = wrap(&z);
        // Damage the back half of the compressed stream.
        let n = c.len();
        for b in &mut c[n / 2..n - 2] {
            *b ^= 0x55;
        }
        let r = scan(c);
        assert!(
            !find(&r, "compressed-data-corrupt").is_empty() || !find(&r, "read-error").is_empty(),
            "{label}: {:#?}",
            r.findings
        );
        assert_eq!(r.verdict, Verdict::Error, "{label}");
    }
}

#[test]
fn truncated_stream_is_reported() {
    let c = xz(&vec![5u8; 100_000]);
    let r = scan(c[..c.len() / 2].to_vec());
    // The inner bytes sniff as nothing; a reader never reaches the damage: nothing to report.
    assert_eq!(r.format, "xz:unknown");
    // A zip inside must be read whole, so the damage is found.
    let z = zip(&[Z::stored("a.bin", &vec![5u8; 100_000])]);
    let c = gzip(&z);
    let r = scan(c[..c.len() / 2].to_vec());
    assert_eq!(r.verdict, Verdict::Error, "{:#?}", r.findings);
}

#[test]
fn bombs_end_in_the_budget() {
    // A zip must be buffered to be opened: 8 MiB of zeros compress to a few KiB.
    let z = zip(&[Z::stored("zeros.bin", &vec![0u8; 8 << 20])]);
    let opts = ScanOptions { max_expanded_bytes: 1 << 20, ..Default::default() };
    for (label, wrap) in WRAPPERS {
        let c = wrap(&z);
        assert!(c.len() < 64 << 10, "{label}: {}", c.len());
        let r = scan_with(c, &opts);
        assert_eq!(one(&r, "expansion-budget-exceeded").severity, Severity::Error, "{label}");
        assert!(find(&r, "compressed-data-corrupt").is_empty(), "{label}: the budget is not damage");
    }
}

#[test]
fn joblib_zf_header_is_checked() {
    let mut c = joblib_zf(&npy_f4(2));
    c[2..6].copy_from_slice(b"0xzz");
    let r = scan(c);
    assert_eq!(one(&r, "joblib-zfile-header").severity, Severity::Error);
    assert_eq!(r.format, "joblib-zlib:numpy");
}
