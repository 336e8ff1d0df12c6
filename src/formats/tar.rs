//! PLACEHOLDER (being written): tar reader.
use crate::detect::Format;
use crate::engine::Scan;
use crate::source::Data;

pub const CODES: &[crate::finding::CodeInfo] = &[];

pub fn scan(_scan: &mut Scan<'_>, _data: Data) -> Format {
    Format::Tar
}
