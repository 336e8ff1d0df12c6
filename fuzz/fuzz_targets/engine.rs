//! The whole engine on arbitrary bytes, as a file and as a stream.
#![no_main]
#[path = "common/mod.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::scan_file(data);
    common::scan_stream(data);
});
