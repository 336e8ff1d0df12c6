use crate::detect::Format;
pub const CODES: &[crate::finding::CodeInfo] = &[];
pub fn scan(_s: &mut crate::engine::Scan<'_>, _d: &dyn crate::source::Source) -> Option<Format> {
    None
}
