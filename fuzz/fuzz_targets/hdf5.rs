//! The HDF5 reader with its superblock at 0, and found after a user block.
#![no_main]
#[path = "common/mod.rs"]
mod common;

use modelgate::detect::Format;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::scan_file_as(Format::Hdf5, data);
    common::scan_file_as(Format::Unknown, data);
});
