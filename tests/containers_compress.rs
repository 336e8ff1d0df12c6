//! Single-stream compression wrappers.
mod containers_util;

use containers_util::*;
use modelgate::engine::ScanOptions;
use modelgate::finding::{Severity, Verdict};

const EVIL_PICKLE: &[u8] = containers_util::EVIL_PICKLE;

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
    // Padding that does not compress: the damage lies past the first reads, where a reader of
    // a weak header (lzma-alone, zlib) has handed out bytes. Damage within the first read of
    // such a stream is no stream at all (tests/containers_weak_headers.rs).
    let mut x = 12345u32;
    let pad: Vec<u8> = (0..100_000)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    for (label, wrap) in WRAPPERS {
        let z = zip(&[Z::stored("a.npy", &npy_probe()), Z::stored("pad.bin", &pad)]);
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
fn joblib_zf_length_fields_as_int_base_16_reads_them() {
    // read_zfile: `int(field, 16)` over the 19 characters after ZF; joblib <= 0.8.4 wrote 20
    let evil = EVIL_PICKLE;
    let n = evil.len();
    for field in [
        format!("0x{n:x}"),
        format!("  0x{n:x}"),
        format!("0X{n:X}"),
        format!("0x_{n:x}"),
        format!("+0x{n:x}"),
        format!("{n:x}"),
        format!("\t{n:x}\n"),
        format!("0x{n:x}\x0b"),
    ] {
        for width in [19, 20] {
            let mut c = format!("ZF{field:<width$}").into_bytes();
            c.extend_from_slice(&zlib(evil));
            let r = scan(c);
            assert_eq!(r.format, "joblib-zlib:pickle", "{field:?} {width}: {:#?}", r.findings);
            assert_eq!(r.verdict, Verdict::Dangerous, "{field:?} {width}");
            assert!(find(&r, "compressed-data-corrupt").is_empty(), "{field:?} {width}: {:#?}", r.findings);
        }
    }
    // int() refuses these, so joblib cannot load them: not a joblib file
    for field in ["0xzz", "0x", "_1f", "1__f", "1f_", "0x1fL", "- 1f", ""] {
        let mut c = format!("ZF{field:<19}").into_bytes();
        c.extend_from_slice(&zlib(&npy_f4(2)));
        assert_eq!(scan(c).format, "unknown", "{field:?}");
    }
    // the benign 0.8.x layout is no longer a corrupt stream
    let mut old = format!("ZF{:<20}", format!("0x{:x}", 48)).into_bytes();
    old.extend_from_slice(&zlib(&npy_f4(2)));
    let r = scan(old);
    assert_eq!(r.format, "joblib-zlib:numpy");
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
}

/// A payload split over two streams of one wrapper (a pickle read by Python across them).
fn split_payload(wrap: Wrap, first_empty: bool) -> Vec<u8> {
    let (a, b) = EVIL_PICKLE.split_at(EVIL_PICKLE.len() / 2);
    if first_empty {
        [wrap(b""), wrap(EVIL_PICKLE)].concat()
    } else {
        [wrap(a), wrap(b)].concat()
    }
}

#[test]
fn every_stream_python_reads_is_scanned() {
    for (label, wrap) in [("gzip", gzip as Wrap), ("bzip2", bzip2), ("xz", xz), ("lzma", lzma_alone)] {
        for first_empty in [false, true] {
            let r = scan(split_payload(wrap, first_empty));
            assert_eq!(r.format, format!("{label}:pickle"), "{label} {first_empty}: {:#?}", r.findings);
            assert_eq!(r.verdict, Verdict::Dangerous, "{label} {first_empty}: {:#?}", r.findings);
        }
    }
    // lzma.open (FORMAT_AUTO) reads xz and lzma-alone streams in any order
    let (a, b) = EVIL_PICKLE.split_at(10);
    for c in [[lzma_alone(a), xz(b)].concat(), [xz(a), lzma_alone(b)].concat()] {
        let r = scan(c);
        assert_eq!(r.verdict, Verdict::Dangerous, "{:#?}", r.findings);
    }
}

#[test]
fn gzip_zero_padding_and_trailing_data() {
    let npy = npy_f4(8);
    let (a, b) = npy.split_at(20);
    // gzip._GzipReader skips zero bytes after a member, before the next one and at the end
    let padded = [gzip(a), vec![0; 11], gzip(b), vec![0; 5]].concat();
    let r = scan(padded);
    assert_eq!(r.format, "gzip:numpy");
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    // anything else after a member is BadGzipFile once a reader gets there (pickle.load never
    // does): everything before it is scanned, the rest noted
    let r = scan([gzip(EVIL_PICKLE), b"trailing".to_vec()].concat());
    assert_eq!(r.verdict, Verdict::Dangerous);
    let r = scan([gzip(&npy), b"trailing".to_vec(), gzip(EVIL_PICKLE)].concat());
    assert_eq!(r.verdict, Verdict::Safe, "{:#?}", r.findings);
    assert_eq!(one(&r, "compressed-trailing-data").severity, Severity::Info);
    // damage inside a member stays an error
    let mut c = gzip(&npy);
    let n = c.len();
    c[n - 6] ^= 1;
    assert_eq!(one(&scan(c), "compressed-data-corrupt").severity, Severity::Error);
    // a header CRC is skipped unchecked, as Python does
    let mut h = gzip(EVIL_PICKLE);
    h[3] |= 2;
    h.splice(10..10, [0xde, 0xad]);
    assert_eq!(scan(h).verdict, Verdict::Dangerous);
}

#[test]
fn data_after_bz2_and_xz_streams_is_ignored_as_python_does() {
    for wrap in [bzip2 as Wrap, xz, lzma_alone] {
        let r = scan([wrap(&npy_f4(4)), b"not a stream at all".to_vec()].concat());
        assert!(r.findings.is_empty(), "{:#?}", r.findings);
        let r = scan([wrap(EVIL_PICKLE), b"\0\0\0\0 junk".to_vec()].concat());
        assert_eq!(r.verdict, Verdict::Dangerous);
    }
    // a continuation that starts like a stream but ends early: Python raises once a reader
    // gets there; nothing in it decodes
    let r = scan([bzip2(&npy_f4(4)), b"BZh9".to_vec()].concat());
    assert_eq!(one(&r, "compressed-trailing-data").severity, Severity::Info);
    assert_eq!(r.verdict, Verdict::Safe);
    // damage inside a stream stays an error
    let mut c = bzip2(&npy_f4(400));
    let n = c.len();
    c[n / 2] ^= 0x10;
    assert_eq!(one(&scan(c), "compressed-data-corrupt").severity, Severity::Error);
}

#[test]
fn lzma_alone_headers_lzma_open_accepts() {
    // any lc/lp/pb and dictionary size liblzma's picky alone decoder takes, not only joblib's ]\x00
    for (lc, lp, pb, dict) in [(0, 0, 0, 1u32 << 20), (3, 0, 2, 4096), (1, 3, 4, 3 << 20), (3, 0, 2, 256)] {
        let mut opts = liblzma::stream::LzmaOptions::new_preset(1).unwrap();
        opts.literal_context_bits(lc).literal_position_bits(lp).position_bits(pb).dict_size(dict.max(4096));
        let stream = liblzma::stream::Stream::new_lzma_encoder(&opts).unwrap();
        let mut e = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
        std::io::Write::write_all(&mut e, EVIL_PICKLE).unwrap();
        let mut c = e.finish().unwrap();
        c[1..5].copy_from_slice(&dict.to_le_bytes());
        let r = scan(c);
        assert_eq!(r.verdict, Verdict::Dangerous, "{lc} {lp} {pb} {dict}: {} {:#?}", r.format, r.findings);
    }
    // empty lzma-alone streams of zero bytes before a real one
    let c = [vec![0u8; 36], xz(EVIL_PICKLE)].concat();
    assert_eq!(scan(c).verdict, Verdict::Dangerous);
    // zero bytes alone are no lzma stream
    assert_eq!(scan(vec![0u8; 4000]).format, "unknown");
}

#[test]
fn thousands_of_empty_streams_end_in_an_error() {
    // each stream costs a decoder (bzip2 allocates megabytes per stream): past a thousand
    // that yield next to nothing, the file is an error instead of minutes of work
    for (label, wrap) in [("gzip", gzip as Wrap), ("bzip2", bzip2), ("xz", xz), ("lzma", lzma_alone)] {
        let empty = wrap(b"");
        let mut c = empty.repeat(1500);
        c.extend(wrap(EVIL_PICKLE));
        let r = scan(c);
        assert_eq!(r.verdict, Verdict::Error, "{label}: {:#?}", r.findings);
        assert!(r.findings.iter().any(|f| f.message.contains("too many streams")), "{label}: {:#?}", r.findings);
        // a few hundred are read through
        let mut c = empty.repeat(300);
        c.extend(wrap(EVIL_PICKLE));
        assert_eq!(scan(c).verdict, Verdict::Dangerous, "{label}");
    }
}

#[test]
fn lz4_frames_in_turn() {
    let (a, b) = EVIL_PICKLE.split_at(12);
    let r = scan([lz4(a), lz4(b)].concat());
    assert_eq!(r.verdict, Verdict::Dangerous, "{} {:#?}", r.format, r.findings);
}
