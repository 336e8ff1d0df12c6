//! JSON as Python reads it (pyjson) and Keras configs through the engine.
#![no_main]
#[path = "common/mod.rs"]
mod common;

use modelgate::detect::Format;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = modelgate::formats::pyjson::loads_bytes(data);
    common::scan_file_as(Format::JsonProbe, data);
    common::scan_stream_as(Format::KerasConfig, data);
});
