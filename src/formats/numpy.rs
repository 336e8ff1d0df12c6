//! PLACEHOLDER (being written): NumPy .npy.
use crate::engine::Scan;
use crate::source::Data;

pub const CODES: &[crate::finding::CodeInfo] = &[];

pub fn scan_npy(_scan: &mut Scan<'_>, _data: Data) {}
