//! PLACEHOLDER (being written): symbolic emulation of CPython's Unpickler.
use crate::engine::Scan;
use crate::source::Input;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The bytes are a pickle (header seen, or the loader reads them as one): failure is malformed.
    Confident,
    /// Maybe a headerless pickle: failing before any import means "not a pickle".
    Probe,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    pub is_pickle: bool,
    pub joblib: bool,
    pub streams: usize,
}

pub const CODES: &[crate::finding::CodeInfo] = &[];

pub fn is_opcode(b: u8) -> bool {
    b == b'('
}

pub fn scan_stream(_scan: &mut Scan<'_>, _input: &mut Input, _mode: Mode) -> Outcome {
    Outcome::default()
}
