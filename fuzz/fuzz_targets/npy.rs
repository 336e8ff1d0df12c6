//! The .npy header (a Python literal as numpy reads it) and the array after it.
#![no_main]
#[path = "common/mod.rs"]
mod common;

use modelgate::detect::Format;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The header text alone (after the magic, version and length when present), read as the
    // version says (1.0/2.0 latin-1 with Python 2's `L` suffixes, 3.0 UTF-8).
    let (version, text) = match data.strip_prefix(b"\x93NUMPY") {
        Some(rest) => (rest.first().copied().unwrap_or(1), rest.get(4..).unwrap_or_default()),
        None => (data.first().map_or(1, |b| b % 3 + 1), data.get(1..).unwrap_or_default()),
    };
    let _ = modelgate::formats::numpy::parse_header(&String::from_utf8_lossy(text), version);
    common::scan_file_as(Format::Npy, data);
    common::scan_stream_as(Format::Npy, data);
});
