use crate::detect::Format;
pub const CODES: &[crate::finding::CodeInfo] = &[];
pub fn sniff_tflite(_h: &[u8]) -> Option<Format> {
    None
}
pub fn scan_tflite(_s: &mut crate::engine::Scan<'_>, _d: &dyn crate::source::Source) -> Format {
    Format::TfLite
}
pub fn scan_saved_model(_s: &mut crate::engine::Scan<'_>, _d: &dyn crate::source::Source) -> Option<Format> {
    None
}
pub fn scan_keras_metadata(_s: &mut crate::engine::Scan<'_>, _d: &dyn crate::source::Source) -> Option<Format> {
    None
}
