use crate::detect::Format;
pub const CODES: &[crate::finding::CodeInfo] = &[];
pub fn sniff_json(_h: &[u8]) -> Option<Format> {
    None
}
pub fn scan_json(_s: &mut crate::engine::Scan<'_>, _d: crate::source::Data) -> Format {
    Format::Unknown
}
