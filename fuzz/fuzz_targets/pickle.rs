//! The pickle emulator: a file read as a pickle (Confident mode, as torch's data.pkl), a stream probed as one, and the find_class calls alone.
#![no_main]
#[path = "common/mod.rs"]
mod common;

use modelgate::detect::Format;
use modelgate::formats::pickle::Loader;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::scan_file_as(Format::Pickle, data);
    common::scan_stream_as(Format::PickleProbe, data);
    for loader in [Loader::C, Loader::Python, Loader::Any] {
        let _ = modelgate::formats::pickle::find_class_calls(data, loader);
    }
});
