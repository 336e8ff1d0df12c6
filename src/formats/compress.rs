//! PLACEHOLDER (being written): single-stream decompressors.
use crate::detect::{Compression, Format};
use crate::engine::{Hint, Scan};
use crate::source::Data;

pub const CODES: &[crate::finding::CodeInfo] = &[];

pub fn scan(_scan: &mut Scan<'_>, _c: Compression, _data: Data, _hint: Hint) -> Format {
    Format::Unknown
}
