//! The zip reader (torch's and zipfile's views), members scanned through the engine.
#![no_main]
#[path = "common/mod.rs"]
mod common;

use modelgate::detect::Format;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::scan_file_as(Format::Zip, data);
});
