//! Amplification: inputs of a few KB that would take minutes or gigabytes if each archive
//! level or parser instance had budgets of its own. Budgets are per file and end in an
//! `error` finding. Times are measured in bench/amplification.py, not asserted here.
mod containers_util;

use containers_util::*;
use modelgate::engine::ScanOptions;
use modelgate::finding::{Severity, Verdict};

/// A zip whose central directory lists `k` names that all point at one local header holding
/// `inner`.
fn shared_header_zip(inner: &[u8], k: usize) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00");
    out.extend_from_slice(&crc(inner).to_le_bytes());
    out.extend_from_slice(&(inner.len() as u32).to_le_bytes());
    out.extend_from_slice(&(inner.len() as u32).to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.push(b'm');
    out.extend_from_slice(inner);
    let cd_at = out.len() as u32;
    for i in 0..k {
        let name = format!("copy{i:05}.zip");
        out.extend_from_slice(b"PK\x01\x02\x14\x00\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00");
        out.extend_from_slice(&crc(inner).to_le_bytes());
        out.extend_from_slice(&(inner.len() as u32).to_le_bytes());
        out.extend_from_slice(&(inner.len() as u32).to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0; 12]);
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
    }
    let cd_len = out.len() as u32 - cd_at;
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    out.extend_from_slice(&(k as u16).to_le_bytes());
    out.extend_from_slice(&(k as u16).to_le_bytes());
    out.extend_from_slice(&cd_len.to_le_bytes());
    out.extend_from_slice(&cd_at.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

#[test]
fn names_sharing_one_local_header_are_scanned_once_at_every_level() {
    // 100 names per level, 5 levels: 10^10 member scans if each name were scanned.
    let mut z = zip(&[Z::stored("archive/data.pkl", EVIL_PICKLE)]);
    for _ in 0..5 {
        z = shared_header_zip(&z, 100);
    }
    assert!(z.len() < 64 << 10, "{}", z.len());
    let r = scan(z);
    assert_eq!(r.verdict, Verdict::Dangerous, "{:#?}", &r.findings[..r.findings.len().min(5)]);
    let hits = r.findings.iter().filter(|f| f.code == "pickle-import-dangerous").count();
    assert_eq!(hits, 1, "the payload is scanned once");
    assert!(r.findings.iter().any(|f| f.code == "zip-overlapping-members"));
}

/// `n` stored members whose data all run to the end of the member region: every window
/// overlaps the next, and together they read the region `n / 2` times over.
fn overlapping_zip(n: usize, tail: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut locals = Vec::new();
    for i in 0..n {
        locals.push(out.len());
        let name = format!("m{i:05}");
        out.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00");
        out.extend_from_slice(&[0; 12]);
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
    }
    out.extend(std::iter::repeat_n(b'a', tail));
    let end = out.len();
    let cd_at = out.len() as u32;
    for (i, &at) in locals.iter().enumerate() {
        let name = format!("m{i:05}");
        let data = at + 30 + name.len();
        let size = (end - data) as u32;
        out.extend_from_slice(b"PK\x01\x02\x14\x00\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00");
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0; 12]);
        out.extend_from_slice(&(at as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
    }
    let cd_len = out.len() as u32 - cd_at;
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    out.extend_from_slice(&(n as u16).to_le_bytes());
    out.extend_from_slice(&(n as u16).to_le_bytes());
    out.extend_from_slice(&cd_len.to_le_bytes());
    out.extend_from_slice(&cd_at.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

#[test]
fn overlapping_members_are_bounded_by_the_files_size() {
    // 3,000 members over 1 MiB: 1.5 GB of member bytes from a 1.2 MB file.
    let z = overlapping_zip(3000, 1 << 20);
    let r = scan(z);
    let f = one(&r, "overlap-budget-exceeded");
    assert_eq!(f.severity, Severity::Error);
    assert_eq!(r.verdict, Verdict::Error);
    // Members that do not overlap are all scanned, however many.
    let members: Vec<Z> = (0..2000).map(|i| Z::stored(&format!("f{i}.npy"), &npy_f4(64))).collect();
    let r = scan(zip(&members));
    assert!(r.findings.is_empty(), "{:#?}", &r.findings[..r.findings.len().min(3)]);
}

#[test]
fn the_member_budget_is_the_files() {
    // Three nested archives of 100 members each: 300 members in the file, against a budget
    // of 250 for the file (not per archive).
    let inner = |tag: &str| zip(&(0..100).map(|i| Z::stored(&format!("{tag}{i}.npy"), &npy_f4(1))).collect::<Vec<_>>());
    let z = zip(&[Z::stored("a.zip", &inner("a")), Z::stored("b.zip", &inner("b")), Z::stored("c.zip", &inner("c"))]);
    let opts = ScanOptions { max_members: 250, ..Default::default() };
    let r = scan_with(z, &opts);
    assert_eq!(one(&r, "zip-too-many-members").severity, Severity::Error);
    assert!(one(&r, "zip-too-many-members").message.contains("all archives together"));
    // Tars and 7z draw on the same budget.
    let t = tar(&(0..200)
        .map(|i| (format!("t{i}"), npy_f4(1)))
        .collect::<Vec<_>>()
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect::<Vec<_>>());
    let z = zip(&[Z::stored("a.zip", &inner("a")), Z::stored("t.tar", &t)]);
    let r = scan_with(z, &opts);
    assert_eq!(one(&r, "tar-too-many-members").severity, Severity::Error);
    let s = sevenz(
        &(0..100)
            .map(|i| (format!("s{i}"), npy_f4(1)))
            .collect::<Vec<_>>()
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect::<Vec<_>>(),
        false,
    );
    let z = zip(&[Z::stored("a.zip", &inner("a")), Z::stored("b.zip", &inner("b")), Z::stored("s.7z", &s)]);
    let r = scan_with(z, &opts);
    assert_eq!(one(&r, "sevenz-too-many-members").severity, Severity::Error);
}

#[test]
fn buffers_held_at_once_are_the_files() {
    // A compressed archive inside a compressed archive inside ...: each level must be held in
    // memory to be opened, and all levels are alive at once. Each level holds 600 KiB of zeros
    // (stored) and the next level (deflated, so a few KB from outside): against 1 MiB for the
    // file, the second level does not fit next to the first.
    let filler = vec![0u8; 600 << 10];
    let mut z = zip(&[Z::stored("archive/data.pkl", EVIL_PICKLE)]);
    for i in 0..3 {
        z = zip(&[Z::stored(&format!("pad{i}.bin"), &filler), Z::deflated(&format!("level{i}.zip"), &z)]);
    }
    assert!(z.len() < 700 << 10);
    let opts = ScanOptions { max_buffered_bytes: 1 << 20, ..Default::default() };
    let r = scan_with(z.clone(), &opts);
    assert_eq!(one(&r, "buffer-budget-exceeded").severity, Severity::Error);
    assert_eq!(r.verdict, Verdict::Error);
    // With room for every level, the payload at the bottom is found.
    let r = scan_with(z, &ScanOptions { max_buffered_bytes: 8 << 20, ..Default::default() });
    assert_eq!(r.verdict, Verdict::Dangerous, "{:#?}", r.findings);
}

#[test]
fn tar_header_chains_are_bounded() {
    // Thousands of pax headers before one member: tarfile recurses once per header.
    let mut t = Vec::new();
    for _ in 0..5000 {
        tar_push(&mut t, tar_header("PaxHeader", 12, b'x', b"ustar\0"), b"12 path=aa\n\n");
    }
    tar_push(&mut t, tar_header("pickle", EVIL_PICKLE.len() as u64, b'0', b"ustar\0"), EVIL_PICKLE);
    tar_end(&mut t);
    let r = scan(t.clone());
    let f = one(&r, "tar-malformed");
    assert!(f.message.contains("extended headers"), "{}", f.message);
    assert_eq!(r.verdict, Verdict::Error);
    let r = scan_stream(t);
    assert!(r.findings.iter().any(|f| f.code == "tar-malformed"));
}
