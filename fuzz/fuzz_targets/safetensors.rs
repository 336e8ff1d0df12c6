//! safetensors: the header length, the JSON header and the tensor table.
#![no_main]
#[path = "common/mod.rs"]
mod common;

use modelgate::detect::Format;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::scan_file_as(Format::Safetensors, data);
    let _ = modelgate::formats::safetensors::check_header(data, data.len() as u64);
});
