//! NumPy `.npy`: the header is a Python dict literal (`descr`, `fortran_order`, `shape`). An
//! array whose dtype holds objects anywhere stores a pickle after the header, which
//! `np.load(allow_pickle=True)` runs; it is handed back to the dispatcher as a pickle. Other
//! arrays are never read: only their declared size is checked against the file length.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use crate::engine::{Hint, Scan};
use crate::finding::{CodeInfo, Finding, Severity};
use crate::source::{Data, Input, SliceSource};
use std::io::Read;
use std::sync::Arc;

pub const CODES: &[CodeInfo] = &[
    CodeInfo {
        code: "npy-bad-header",
        severity: Severity::Error,
        summary: "a NumPy .npy header is malformed, so the array could not be judged",
        fix: "re-save the array with numpy.save",
    },
    CodeInfo {
        code: "npy-size-mismatch",
        severity: Severity::Suspicious,
        summary: "a NumPy array's declared shape and dtype do not match the bytes in the file",
        fix: "re-save the array with numpy.save; extra bytes after an array are read by nothing but can hide data",
    },
];

const MAGIC: &[u8] = b"\x93NUMPY";
/// numpy itself refuses headers over 10,000 bytes unless pickles are allowed; this only bounds memory.
const MAX_HEADER: u64 = 1 << 20;
const MAX_DEPTH: usize = 32;
const MAX_ITEMS: usize = 100_000;

/// A Python literal as it appears in an `.npy` header.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Str(String),
    Int(i128),
    Bool(bool),
    None,
    Tuple(Vec<Lit>),
    List(Vec<Lit>),
    Dict(Vec<(Lit, Lit)>),
}

/// What an `.npy` header declares.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub descr: Lit,
    pub fortran_order: bool,
    pub shape: Vec<u64>,
}

impl Header {
    /// True when any field of the dtype holds Python objects (the data is then a pickle).
    pub fn has_object(&self) -> bool {
        descr_has_object(&self.descr)
    }

    /// Bytes of array data the header declares, when the dtype's size is known (saturating:
    /// no file holds `u64::MAX` bytes).
    pub fn data_len(&self) -> Option<u64> {
        let n = self.shape.iter().fold(1u64, |a, &d| a.saturating_mul(d));
        Some(n.saturating_mul(itemsize(&self.descr)?))
    }
}

/// Scan one `.npy` array.
pub fn scan_npy(scan: &mut Scan<'_>, data: Data) {
    scan.mark_model();
    let random = match &data {
        Data::Random(src) => Some(src.clone()),
        Data::Stream(..) => None,
    };
    let mut input = data.into_input();
    let header = match read_header(&mut input) {
        Ok(h) => h,
        Err(why) => {
            scan.finding(Finding::new("npy-bad-header", Severity::Error, why));
            return;
        }
    };
    let start = input.pos();
    if header.has_object() {
        let payload = match random {
            Some(src) => {
                let len = src.len().saturating_sub(start);
                Data::Random(Arc::new(SliceSource::new(src, start, len)))
            }
            None => Data::Stream(Box::new(input), None),
        };
        scan.inner(payload, Hint::Pickle);
        return;
    }
    if let (Some(src), Some(want)) = (random, header.data_len()) {
        let have = src.len().saturating_sub(start);
        if have != want {
            let what = if have < want { "the file is truncated" } else { "extra bytes follow the array" };
            scan.finding(
                Finding::new(
                    "npy-size-mismatch",
                    Severity::Suspicious,
                    format!("the header declares {want} bytes of array data, the file holds {have}: {what}"),
                )
                .at(start),
            );
        }
    }
}

/// Read and check the magic, version and header dict; leaves `input` at the array data.
pub fn read_header(input: &mut Input) -> Result<Header, String> {
    let mut pre = [0u8; 8];
    input.read_exact(&mut pre).map_err(|e| format!("cannot read the .npy preamble: {e}"))?;
    if pre.get(..6) != Some(MAGIC) {
        return Err("missing the \\x93NUMPY magic".into());
    }
    let version = (pre.get(6).copied().unwrap_or(0), pre.get(7).copied().unwrap_or(0));
    let len = match version {
        (1, 0) => {
            let mut b = [0u8; 2];
            input.read_exact(&mut b).map_err(|e| format!("cannot read the header length: {e}"))?;
            u64::from(u16::from_le_bytes(b))
        }
        (2, 0) | (3, 0) => {
            let mut b = [0u8; 4];
            input.read_exact(&mut b).map_err(|e| format!("cannot read the header length: {e}"))?;
            u64::from(u32::from_le_bytes(b))
        }
        (major, minor) => return Err(format!("unknown .npy format version {major}.{minor}")),
    };
    if len > MAX_HEADER {
        return Err(format!("header of {len} bytes is larger than the {MAX_HEADER}-byte cap"));
    }
    let raw = input.read_vec(len as usize).map_err(|e| format!("cannot read the {len}-byte header: {e}"))?;
    // Versions 1 and 2 are latin-1, version 3 UTF-8; every char a valid header needs is ASCII.
    let text: String = if version.0 == 3 {
        String::from_utf8(raw).map_err(|_| "the version 3 header is not UTF-8".to_string())?
    } else {
        raw.iter().map(|&b| char::from(b)).collect()
    };
    parse_header(&text)
}

/// Parse the header text the way `numpy.lib.format` does (a literal dict with exactly three keys).
pub fn parse_header(text: &str) -> Result<Header, String> {
    let lit = parse_literal(text)?;
    let Lit::Dict(items) = lit else {
        return Err("the header is not a dict".into());
    };
    let mut descr = None;
    let mut fortran = None;
    let mut shape = None;
    for (k, v) in items {
        match (k, v) {
            (Lit::Str(k), v) if k == "descr" => descr = Some(v),
            (Lit::Str(k), Lit::Bool(b)) if k == "fortran_order" => fortran = Some(b),
            (Lit::Str(k), Lit::Tuple(dims)) if k == "shape" => {
                let dims: Option<Vec<u64>> =
                    dims.iter().map(|d| if let Lit::Int(i) = d { u64::try_from(*i).ok() } else { None }).collect();
                shape = Some(dims.ok_or("the shape holds something other than non-negative integers")?);
            }
            (k, _) => return Err(format!("unexpected header entry {k:?}")),
        }
    }
    let (Some(descr), Some(fortran_order), Some(shape)) = (descr, fortran, shape) else {
        return Err("the header lacks 'descr', 'fortran_order' or 'shape'".into());
    };
    if !matches!(descr, Lit::Str(_) | Lit::List(_) | Lit::Tuple(_)) {
        return Err("'descr' is neither a string nor a list of fields".into());
    }
    Ok(Header { descr, fortran_order, shape })
}

/// Does a dtype description (a string, a list of fields, or a `(dtype, shape)` tuple) hold objects?
fn descr_has_object(d: &Lit) -> bool {
    match d {
        Lit::Str(s) => s.contains('O') || s.to_ascii_lowercase().contains("object"),
        // A field is (name, dtype) or (name, dtype, shape); a subarray dtype is (dtype, shape).
        Lit::List(fields) => fields.iter().any(|f| match f {
            Lit::Tuple(parts) => parts.get(1).is_some_and(descr_has_object),
            other => descr_has_object(other),
        }),
        Lit::Tuple(parts) => parts.first().is_some_and(descr_has_object),
        // Anything numpy would not accept as a dtype: assume the worst.
        _ => true,
    }
}

/// Bytes per element of a dtype, when it is given in the array-protocol form numpy writes.
fn itemsize(d: &Lit) -> Option<u64> {
    match d {
        Lit::Str(s) => {
            let s = s.trim_start_matches(['<', '>', '|', '=']);
            let mut chars = s.chars();
            let kind = chars.next()?;
            let rest = chars.as_str();
            let digits = rest.split('[').next().unwrap_or(rest);
            let n: u64 = if digits.is_empty() && kind == '?' { 1 } else { digits.parse().ok()? };
            match kind {
                'b' | 'i' | 'u' | 'f' | 'c' | 'S' | 'V' | 'M' | 'm' | 'O' | '?' | 'a' => Some(n),
                'U' => n.checked_mul(4),
                _ => None,
            }
        }
        Lit::List(fields) => fields.iter().try_fold(0u64, |acc, f| {
            let Lit::Tuple(parts) = f else { return None };
            let base = itemsize(parts.get(1)?)?;
            let count = parts.get(2).map_or(Some(1), shape_count)?;
            acc.checked_add(base.checked_mul(count)?)
        }),
        Lit::Tuple(parts) => itemsize(parts.first()?)?.checked_mul(parts.get(1).map_or(Some(1), shape_count)?),
        _ => None,
    }
}

fn shape_count(s: &Lit) -> Option<u64> {
    match s {
        Lit::Int(i) => u64::try_from(*i).ok(),
        Lit::Tuple(dims) => dims.iter().try_fold(1u64, |a, d| a.checked_mul(shape_count(d)?)),
        _ => None,
    }
}

/// Parse one Python literal (the subset `ast.literal_eval` accepts in `.npy` headers).
pub fn parse_literal(text: &str) -> Result<Lit, String> {
    let mut p = Parser { s: text.as_bytes(), i: 0, items: 0 };
    let v = p.value(0)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("unexpected text after the header dict at byte {}", p.i));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    items: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn err(&self, what: &str) -> String {
        format!("{what} at byte {} of the header", self.i)
    }

    fn value(&mut self, depth: usize) -> Result<Lit, String> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        self.items += 1;
        if self.items > MAX_ITEMS {
            return Err(self.err("too many values"));
        }
        self.ws();
        match self.peek() {
            Some(b'{') => self.seq(b'}', depth, true).map(|(items, _)| {
                Lit::Dict(items.chunks(2).filter_map(|kv| Some((kv.first()?.clone(), kv.get(1)?.clone()))).collect())
            }),
            Some(b'[') => self.seq(b']', depth, false).map(|(items, _)| Lit::List(items)),
            Some(b'(') => self.seq(b')', depth, false).map(|(items, trailing)| {
                // `(x)` is x itself, `(x,)` a one-tuple.
                if items.len() == 1 && !trailing {
                    items.into_iter().next().unwrap_or(Lit::None)
                } else {
                    Lit::Tuple(items)
                }
            }),
            Some(q @ (b'\'' | b'"')) => self.string(q).map(Lit::Str),
            Some(c) if c == b'-' || c == b'+' || c.is_ascii_digit() => self.int(),
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.i;
                while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_') {
                    self.i += 1;
                }
                match self.s.get(start..self.i) {
                    Some(b"True") => Ok(Lit::Bool(true)),
                    Some(b"False") => Ok(Lit::Bool(false)),
                    Some(b"None") => Ok(Lit::None),
                    _ => Err(self.err("unexpected name")),
                }
            }
            _ => Err(self.err("unexpected character")),
        }
    }

    /// Items up to `close`; for dicts they alternate key, value. Also says whether a comma trailed.
    fn seq(&mut self, close: u8, depth: usize, dict: bool) -> Result<(Vec<Lit>, bool), String> {
        self.i += 1;
        let mut items = Vec::new();
        let mut trailing = false;
        loop {
            self.ws();
            if self.peek() == Some(close) {
                self.i += 1;
                return Ok((items, trailing));
            }
            items.push(self.value(depth + 1)?);
            self.ws();
            if dict {
                if self.peek() != Some(b':') {
                    return Err(self.err("expected ':'"));
                }
                self.i += 1;
                items.push(self.value(depth + 1)?);
                self.ws();
            }
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    trailing = true;
                }
                Some(c) if c == close => trailing = false,
                _ => return Err(self.err("expected ',' or a closing bracket")),
            }
        }
    }

    fn string(&mut self, quote: u8) -> Result<String, String> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\n') => return Err(self.err("unterminated string")),
                Some(c) if c == quote => {
                    self.i += 1;
                    return String::from_utf8(out).map_err(|_| self.err("string is not text"));
                }
                Some(b'\\') => {
                    self.i += 1;
                    let c = self.peek().ok_or_else(|| self.err("unterminated string"))?;
                    self.i += 1;
                    match c {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'0' => out.push(0),
                        b'x' => {
                            let hex = self.s.get(self.i..self.i + 2).ok_or_else(|| self.err("short \\x escape"))?;
                            let v = std::str::from_utf8(hex)
                                .ok()
                                .and_then(|h| u8::from_str_radix(h, 16).ok())
                                .ok_or_else(|| self.err("bad \\x escape"))?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(char::from(v).encode_utf8(&mut buf).as_bytes());
                            self.i += 2;
                        }
                        other => out.push(other),
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    fn int(&mut self) -> Result<Lit, String> {
        let start = self.i;
        if matches!(self.peek(), Some(b'-' | b'+')) {
            self.i += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        let text = std::str::from_utf8(self.s.get(start..self.i).unwrap_or(&[])).unwrap_or("");
        let v: i128 = text.parse().map_err(|_| self.err("bad integer"))?;
        // Python 2 wrote longs as `3L`; numpy strips the suffix.
        if matches!(self.peek(), Some(b'L' | b'l')) {
            self.i += 1;
        }
        Ok(Lit::Int(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        let h = parse_header("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }          \n").unwrap();
        assert_eq!(h.shape, vec![3, 4]);
        assert!(!h.has_object());
        assert_eq!(h.data_len(), Some(48));
        let h = parse_header("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }").unwrap();
        assert!(h.has_object());
        let h =
            parse_header("{'descr': [('a', '<i4'), ('b', [('c', '|O')], (2,))], 'fortran_order': True, 'shape': ()}")
                .unwrap();
        assert!(h.has_object());
        let h = parse_header("{'descr': [('a', '<i4'), ('b', '<U3', (2, 2))], 'fortran_order': False, 'shape': (5L,)}")
            .unwrap();
        assert!(!h.has_object());
        assert_eq!(h.data_len(), Some(5 * (4 + 12 * 4)));
        assert!(parse_header("{'descr': 'object', 'fortran_order': False, 'shape': (1,)}").unwrap().has_object());
        assert!(parse_header("{'descr': '<f4', 'fortran_order': False}").is_err());
        assert!(parse_header("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}").is_err());
        assert!(parse_header("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}").is_err());
        assert!(parse_header("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}").is_err());
        assert!(parse_header("__import__('os')").is_err());
        assert!(parse_literal(&"[".repeat(100)).is_err());
    }
}
