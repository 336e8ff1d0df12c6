//! The container parsers never panic: every fixture truncated at every length, and with every
//! byte flipped, is scanned without an `internal-error` (the engine turns a panic into one).
mod containers_util;

use containers_util::*;
use modelgate::engine::ScanOptions;

fn fixtures() -> Vec<(&'static str, Vec<u8>)> {
    let probe = npy_probe();
    let torch = torch_zip(EVIL_PICKLE);
    let mut lz = Z::stored("l.npy", &probe);
    lz.method = 14;
    lz.flags = 2;
    let alone = lzma_alone(&probe);
    lz.raw = [&[9u8, 20, 5, 0][..], &alone[..5], &alone[13..]].concat();
    let mut bz = Z::stored("b.npy", &probe);
    bz.method = 12;
    bz.raw = bzip2(&probe);
    let mut pax = Vec::new();
    tar_push(&mut pax, tar_header("PaxHeader", 20, b'x', b"ustar\0"), b"20 path=pax/a.npy\n\n\n");
    tar_push(&mut pax, tar_header("a", probe.len() as u64, b'0', b"ustar\0"), &probe);
    tar_push(&mut pax, tar_header("././@LongLink", 6, b'L', b"ustar  \0"), b"long1\0");
    tar_push(&mut pax, tar_header("b", 3, b'0', b"ustar  \0"), b"abc");
    tar_end(&mut pax);
    vec![
        ("torch zip", torch.clone()),
        ("deflated zip", zip(&[Z::deflated("archive/data.pkl", EVIL_PICKLE), Z::deflated("a.npy", &probe)])),
        (
            "zip64",
            zip_opts(
                &[Z::stored("a.npy", &probe), Z::deflated("b", b"bbbb")],
                &ZipOpts { zip64: true, ..Default::default() },
            ),
        ),
        (
            "prepended zip",
            zip_opts(
                &[Z::stored("a", b"a")],
                &ZipOpts { prepend: b"\xee\xee\xee".to_vec(), comment: b"c".to_vec(), ..Default::default() },
            ),
        ),
        ("bz/lzma zip", zip(&[bz, lz])),
        ("tar", tar(&[("pickle", EVIL_PICKLE), ("storages", b"\x80\x02K\x00."), ("tensors", b"\x80\x02K\x00.")])),
        ("pax tar", pax),
        (
            "npy",
            npy_with(
                1,
                "{'descr': [('a', '<i4'), ('b', '|O', (2,))], 'fortran_order': False, 'shape': (1,), }",
                EVIL_PICKLE,
            ),
        ),
        ("npy v2", npy_with(2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", &[0u8; 8])),
        ("gzip", gzip(&torch)),
        ("bzip2", bzip2(&npy_f4(8))),
        ("xz", xz(&npy_f4(8))),
        ("lzma", lzma_alone(&npy_f4(8))),
        ("lz4", lz4(&npy_f4(8))),
        ("zstd", zstd(&torch)),
        ("zstd zip member", zip(&[Z::zstd("archive/data.pkl", EVIL_PICKLE), Z::stored("a.npy", &probe)])),
        ("zf", joblib_zf(&npy_f4(8))),
        ("tgz", gzip(&tar(&[("a.npy", &probe)]))),
        ("7z", sevenz(&[("archive/data.pkl", EVIL_PICKLE), ("a.npy", &probe)], false)),
        ("solid 7z", sevenz(&[("archive/data.pkl", EVIL_PICKLE), ("a.npy", &probe)], true)),
    ]
}

fn check(name: &str, bytes: Vec<u8>, opts: &ScanOptions) {
    let r = scan_with(bytes.clone(), opts);
    assert!(!r.findings.iter().any(|f| f.code == "internal-error"), "{name}: panicked on {bytes:?}");
}

#[test]
fn truncation_at_every_length() {
    let opts = ScanOptions { max_expanded_bytes: 1 << 20, ..Default::default() };
    for (name, f) in fixtures() {
        for n in 0..f.len() {
            check(name, f[..n].to_vec(), &opts);
        }
    }
}

#[test]
fn every_byte_flipped() {
    let opts = ScanOptions { max_expanded_bytes: 1 << 20, ..Default::default() };
    for (name, f) in fixtures() {
        for i in 0..f.len() {
            for x in [0xff, 0x80, 0x01] {
                let mut g = f.clone();
                g[i] ^= x;
                check(name, g, &opts);
            }
        }
    }
}

#[test]
fn streams_too() {
    // Containers read from a stream (a tar inside gzip) take another code path.
    for (name, f) in fixtures() {
        let t = tar(&[("inner", &f)]);
        for n in (0..t.len()).step_by(7) {
            let r = scan_stream(t[..n].to_vec());
            assert!(!r.findings.iter().any(|f| f.code == "internal-error"), "{name} cut at {n}");
        }
    }
}
