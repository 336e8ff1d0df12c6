//! NumPy `.npy`: the header is a Python dict literal (`descr`, `fortran_order`, `shape`) that
//! `numpy.lib.format._read_array_header` reads with `ast.literal_eval` (versions 1.0 and 2.0
//! latin-1 with `_filter_header` as the fallback, 3.0 UTF-8); it is parsed here the same way
//! ([`literal`]). `descr` goes through `numpy.lib.format.descr_to_dtype` ([`dtype`]); a dtype
//! that holds objects anywhere (`dtype.hasobject`) means the data after the header is a pickle,
//! which `np.load(allow_pickle=True)` runs (`numpy.lib.format.read_array`); it is handed back to
//! the dispatcher as a pickle. The data of other arrays is never read: only its declared size
//! is checked against the file length (`read_array` ignores bytes after the array).
//! `np.load` opens any `.npz` member that starts with the magic as an array, whatever its
//! name (`NpzFile.__getitem__`); members are routed by content, so that holds here too.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod dtype;
pub mod literal;

use crate::engine::{Hint, Scan};
use crate::finding::{CodeInfo, Finding, Severity};
use crate::source::{Data, Input, SliceSource};
use dtype::{Dt, DtError};
pub use literal::Lit;
use std::io::Read;
use std::sync::Arc;

pub const CODES: &[CodeInfo] = &[
    CodeInfo {
        code: "npy-bad-header",
        severity: Severity::Error,
        summary:
            "a NumPy .npy header is malformed or beyond what modelgate can judge, so the array could not be judged",
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

/// What an `.npy` header declares.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub version: u8,
    pub descr: Lit,
    pub fortran_order: bool,
    /// Any Python ints (numpy checks only `isinstance(x, int)`; a bool is one).
    pub shape: Vec<i128>,
    /// What `descr_to_dtype(descr)` makes of the description.
    pub dtype: Result<Dt, DtError>,
}

impl Header {
    /// True when the dtype holds Python objects (the data is then a pickle).
    pub fn has_object(&self) -> bool {
        matches!(&self.dtype, Ok(dt) if dt.has_object())
    }

    /// Bytes of array data the header declares, when the dtype's size is known (saturating:
    /// no file holds `u64::MAX` bytes); `None` also for negative dimensions.
    pub fn data_len(&self) -> Option<u64> {
        let dt = self.dtype.as_ref().ok()?;
        let mut n = 1u64;
        for &d in &self.shape {
            n = n.saturating_mul(u64::try_from(d).ok()?);
        }
        Some(n.saturating_mul(dt.itemsize?))
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
    let pickled = match &header.dtype {
        Ok(dt) => dt.has_object(),
        Err(DtError::Invalid(why)) => {
            scan.finding(Finding::new(
                "npy-bad-header",
                Severity::Error,
                format!("numpy refuses the dtype description: {why}"),
            ));
            return;
        }
        Err(DtError::Unknown(why)) => {
            // Fail closed, but still look for a pickle where numpy might find one.
            scan.finding(Finding::new(
                "npy-bad-header",
                Severity::Error,
                format!("the dtype description cannot be judged ({why}); its data is scanned as a pickle"),
            ));
            true
        }
    };
    if pickled {
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
    if header.shape.iter().any(|&d| d < 0) {
        scan.finding(Finding::new("npy-bad-header", Severity::Error, "the shape has a negative dimension"));
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
    parse_header(&text, version.0)
}

/// Parse the header text the way `numpy.lib.format._read_array_header` does: a literal dict
/// whose keys are exactly `descr`, `fortran_order` and `shape` (duplicates: the last wins),
/// `shape` a tuple of ints, `fortran_order` a bool.
pub fn parse_header(text: &str, version: u8) -> Result<Header, String> {
    let lit =
        literal::parse_header_literal(text, version).map_err(|e| format!("the header is not a Python literal: {e}"))?;
    let Lit::Dict(items) = lit else {
        return Err(format!("the header is a {}, not a dict", lit.type_name()));
    };
    let mut descr = None;
    let mut fortran = None;
    let mut shape = None;
    for (k, v) in items {
        match &k {
            Lit::Str(name) if name == "descr" => descr = Some(v),
            Lit::Str(name) if name == "fortran_order" => fortran = Some(v),
            Lit::Str(name) if name == "shape" => shape = Some(v),
            other => return Err(format!("unexpected header key {other:?}")),
        }
    }
    let (Some(descr), Some(fortran), Some(shape)) = (descr, fortran, shape) else {
        return Err("the header lacks 'descr', 'fortran_order' or 'shape'".into());
    };
    let Lit::Bool(fortran_order) = fortran else {
        return Err(format!("fortran_order is a {}, not a bool", fortran.type_name()));
    };
    let Lit::Tuple(dims) = shape else {
        return Err(format!("the shape is a {}, not a tuple", shape.type_name()));
    };
    let mut shape = Vec::with_capacity(dims.len());
    for d in &dims {
        match d {
            Lit::BigInt(_) => return Err("a shape dimension does not fit in 64 bits".into()),
            d => shape.push(d.as_int().ok_or("the shape holds something other than integers")?),
        }
    }
    let dtype = dtype::descr_to_dtype(&descr);
    Ok(Header { version, descr, fortran_order, shape, dtype })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(text: &str) -> Result<Header, String> {
        parse_header(text, 1)
    }

    #[test]
    fn headers() {
        let x = h("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }          \n").unwrap();
        assert_eq!(x.shape, vec![3, 4]);
        assert!(!x.has_object());
        assert_eq!(x.data_len(), Some(48));
        assert!(h("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }").unwrap().has_object());
        let x = h("{'descr': [('a', '<i4'), ('b', [('c', '|O')], (2,))], 'fortran_order': True, 'shape': ()}").unwrap();
        assert!(x.has_object());
        let x = h("{'descr': [('a', '<i4'), ('b', '<U3', (2, 2))], 'fortran_order': False, 'shape': (5L,)}").unwrap();
        assert!(!x.has_object());
        assert_eq!(x.data_len(), Some(5 * (4 + 12 * 4)));
        assert!(parse_header("{'descr': '<f4', 'fortran_order': False, 'shape': (5L,)}", 3).is_err());
        assert!(h("{'descr': 'object', 'fortran_order': False, 'shape': (1,)}").unwrap().has_object());
        // spelled with escapes, prefixes, concatenation, comments, other number forms
        let x =
            h("{u'de' 'scr': '\\x4f', # c\n 'fortran_order': False, 'shape': (0x_2, True,), 'shape': (3,)}").unwrap();
        assert!(x.has_object());
        assert_eq!(x.shape, vec![3]);
        assert!(h("{'descr': '\\117', 'fortran_order': False, 'shape': (-1,)}").unwrap().has_object());
        assert!(h("{'descr': r'\\x4f', 'fortran_order': False, 'shape': (1,)}").is_ok_and(|x| x.dtype.is_err()));
        assert!(h("{'descr': '<f4', 'fortran_order': False}").is_err());
        assert!(h("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}").is_err());
        assert!(h("{'descr': '<f4', 'fortran_order': False, 'shape': [1]}").is_err());
        assert!(h("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}").is_err());
        assert!(h("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), b'descr': 1}").is_err());
        assert!(h("__import__('os')").is_err());
        assert!(h(&"[".repeat(100)).is_err());
    }
}
