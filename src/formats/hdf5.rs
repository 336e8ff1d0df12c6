use crate::detect::Format;
pub const CODES: &[crate::finding::CodeInfo] = &[];
pub fn sniff(_h: &[u8]) -> Option<Format> {
    None
}
pub fn scan(_s: &mut crate::engine::Scan<'_>, _d: &dyn crate::source::Source) -> Format {
    Format::Hdf5
}
