//! Chat templates: the Jinja lexer, parser and sandbox analysis, on text and through the engine.
#![no_main]
#[path = "common/mod.rs"]
mod common;

use modelgate::detect::Format;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = modelgate::formats::jinja::check_template(text, "fuzz");
    }
    common::scan_file_as(Format::ChatTemplate, data);
});
