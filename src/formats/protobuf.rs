use crate::detect::Format;
pub fn sniff_probe(_h: &[u8]) -> Option<Format> {
    None
}
