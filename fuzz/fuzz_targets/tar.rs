//! The tar reader (tarfile's view, torch's legacy tar), on a file and on a stream.
#![no_main]
#[path = "common/mod.rs"]
mod common;

use modelgate::detect::Format;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::scan_file_as(Format::Tar, data);
    common::scan_stream_as(Format::Tar, data);
});
