use crate::detect::Format;
use crate::source::Data;
pub const CODES: &[crate::finding::CodeInfo] = &[];
pub struct Watch;
pub fn watch(_s: &mut crate::engine::Scan<'_>, _f: &Format, d: Data) -> (Data, Watch) {
    (d, Watch)
}
pub fn finish(_s: &mut crate::engine::Scan<'_>, _w: Watch) {}
