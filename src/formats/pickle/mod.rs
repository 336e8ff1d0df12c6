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

/// A small, bounded view of the value a pickle produced (for formats that interleave
/// pickles with raw data, such as the torch 0.1 tar layout).
#[derive(Debug, Clone, PartialEq)]
pub enum Simple {
    Int(i64),
    Str(String),
    Global(String, String),
    Tuple(Vec<Simple>),
    Other,
}

/// Scan exactly one pickle (up to its STOP) from `input`, leaving `input` just after it.
pub fn scan_one(_scan: &mut Scan<'_>, _input: &mut Input, _mode: Mode) -> (Outcome, Option<Simple>) {
    (Outcome::default(), None)
}
