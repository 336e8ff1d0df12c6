//! The .npy header (a Python literal as numpy reads it) and the array after it.
#![no_main]
#[path = "common/mod.rs"]
mod common;

use modelgate::detect::Format;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The header text alone: after the magic, version and length when present.
    let text = String::from_utf8_lossy(if data.starts_with(b"\x93NUMPY") { data.get(10..).unwrap_or_default() } else { data });
    let _ = modelgate::formats::numpy::parse_header(&text);
    common::scan_file_as(Format::Npy, data);
    common::scan_stream_as(Format::Npy, data);
});
