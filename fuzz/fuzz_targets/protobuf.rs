//! Protobuf models: SavedModel, ONNX, keras_metadata.pb, told apart by structure.
#![no_main]
#[path = "common/mod.rs"]
mod common;

use modelgate::detect::Format;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::scan_file_as(Format::ProtobufProbe, data);
});
