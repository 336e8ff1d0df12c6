//! Shared by the fuzz targets: default scan options (the budgets a user gets), the two ways
//! bytes reach the engine (a random-access file, a forward-only stream such as a decompressed
//! member), and the invariants every scan keeps.
#![allow(dead_code)]

use modelgate::detect::Format;
use modelgate::engine::{self, FileReport, ScanOptions};
use modelgate::source::{BytesSource, Data};
use std::io::Cursor;
use std::sync::{Arc, OnceLock};

pub fn opts() -> &'static ScanOptions {
    static OPTS: OnceLock<ScanOptions> = OnceLock::new();
    OPTS.get_or_init(ScanOptions::default)
}

/// The whole engine on a file: detection, every parser, containers and budgets.
pub fn scan_file(data: &[u8]) -> FileReport {
    let r = engine::scan_source("fuzz", Arc::new(BytesSource(data.to_vec())), opts());
    check(&r);
    r
}

/// The whole engine on a stream of known length (how archive members arrive).
pub fn scan_stream(data: &[u8]) -> FileReport {
    let len = data.len() as u64;
    let r = engine::scan_data("fuzz", Data::Stream(Box::new(Cursor::new(data.to_vec())), Some(len)), Some(len), opts());
    check(&r);
    r
}

/// One parser on a file, without detection (the rest of the scan as usual).
pub fn scan_file_as(format: Format, data: &[u8]) -> FileReport {
    let r = engine::scan_as("fuzz", format, Data::Random(Arc::new(BytesSource(data.to_vec()))), opts());
    check(&r);
    r
}

/// One parser on a stream, without detection.
pub fn scan_stream_as(format: Format, data: &[u8]) -> FileReport {
    let len = data.len() as u64;
    let r = engine::scan_as("fuzz", format, Data::Stream(Box::new(Cursor::new(data.to_vec())), Some(len)), opts());
    check(&r);
    r
}

/// A panic inside the engine is caught and reported as `internal-error` (libFuzzer's panic
/// hook aborts first, so this is a second net); a report is always complete.
pub fn check(r: &FileReport) {
    assert!(!r.findings.iter().any(|f| f.code == "internal-error"), "internal error: {:?}", r.findings);
    assert!(!r.format.is_empty());
}
