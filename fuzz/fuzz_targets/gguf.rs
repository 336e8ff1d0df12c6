//! GGUF: metadata, arrays, chat templates.
#![no_main]
#[path = "common/mod.rs"]
mod common;

use modelgate::detect::Format;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::scan_file_as(Format::Gguf, data);
    common::scan_stream_as(Format::Gguf, data);
});
