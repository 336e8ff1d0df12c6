//! Helpers shared by the `formats_*` integration tests.
#![allow(dead_code)]

use modelgate::engine::{scan_data, FileReport, ScanOptions};
use modelgate::finding::Verdict;
use modelgate::source::Data;

/// Scan bytes held in memory (random access).
pub fn scan(bytes: &[u8]) -> FileReport {
    scan_data("t", Data::bytes(bytes.to_vec()), Some(bytes.len() as u64), &ScanOptions::default())
}

/// Scan bytes as a forward-only stream (as a decompressor hands them over).
pub fn scan_stream(bytes: &[u8]) -> FileReport {
    let r = std::io::Cursor::new(bytes.to_vec());
    scan_data("t", Data::Stream(Box::new(r), None), None, &ScanOptions::default())
}

pub fn codes(r: &FileReport) -> Vec<&'static str> {
    r.findings.iter().map(|f| f.code).collect()
}

pub fn has(r: &FileReport, code: &str) -> bool {
    r.findings.iter().any(|f| f.code == code)
}

/// The first finding with `code`, with its evidence.
pub fn evidence(r: &FileReport, code: &str) -> String {
    r.findings.iter().find(|f| f.code == code).and_then(|f| f.evidence.clone()).unwrap_or_default()
}

pub fn assert_safe(r: &FileReport, format: &str) {
    assert_eq!(r.format, format, "{r:#?}");
    assert_eq!(r.verdict, Verdict::Safe, "{r:#?}");
}

/// Truncate at every length (or a spread of lengths for big inputs) and flip bits: the scan
/// must never panic (the engine turns a panic into `internal-error`) whatever the bytes.
pub fn never_panics(bytes: &[u8]) {
    never_panics_at(bytes, 400);
}

/// [`never_panics`] at about `points` truncation lengths and as many bit flips.
pub fn never_panics_at(bytes: &[u8], points: usize) {
    let step = (bytes.len() / points.max(1)).max(1);
    let check = |b: &[u8], what: &str| {
        for r in [scan(b), scan_stream(b)] {
            assert!(!has(&r, "internal-error"), "panic on {what}: {r:#?}");
        }
    };
    for n in (0..=bytes.len()).step_by(step) {
        check(&bytes[..n], &format!("truncation at {n}"));
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in (0..bytes.len()).step_by(step) {
        let mut b = bytes.to_vec();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        b[i] ^= 1 << (seed % 8);
        if let Some(j) = b.len().checked_sub(1).map(|l| (seed as usize >> 8) % (l + 1)) {
            b[j] = (seed >> 32) as u8;
        }
        check(&b, &format!("bit flip at {i}"));
    }
}

/// A tiny protobuf encoder for fixtures.
pub mod pb {
    pub fn varint(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
        out
    }

    /// A length-delimited field (string, bytes or nested message).
    pub fn msg(field: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = varint(u64::from(field) << 3 | 2);
        out.extend(varint(payload.len() as u64));
        out.extend_from_slice(payload);
        out
    }

    pub fn string(field: u32, s: &str) -> Vec<u8> {
        msg(field, s.as_bytes())
    }

    pub fn int(field: u32, v: u64) -> Vec<u8> {
        let mut out = varint(u64::from(field) << 3);
        out.extend(varint(v));
        out
    }

    pub fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
        parts.concat()
    }
}
