//! What numpy makes of a dtype description: whether it holds Python objects (`hasobject`,
//! which decides that an array's data is a pickle) and its item size. Modelled on numpy 2.x:
//! - `numpy.lib.format.descr_to_dtype` (`.npy` headers): [`descr_to_dtype`];
//! - `numpy/_core/src/multiarray/descriptor.c`: `_convert_from_any` ([`from_any`]),
//!   `_convert_from_str` with `_check_for_commastring` and the typecode tables of
//!   `PyArray_DescrFromType`, `PyArray_TypestrConvert` and `numpy.sctypeDict`,
//!   `_convert_from_tuple` with `_try_convert_from_inherit_tuple`, `_convert_from_array_descr`,
//!   `_convert_from_list`; `numpy._core._internal._commastring` for `'i4,(2,)O'` strings.
//!
//! Where numpy would raise, the answer is [`DtError::Invalid`] (the loader fails, nothing
//! runs); where this model cannot follow numpy, [`DtError::Unknown`] (the caller fails closed).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use super::literal::{literal_eval, Lit};

/// `NPY_ITEM_HASOBJECT`: the bit `dtype.hasobject` reads.
pub const HASOBJECT: u64 = 0x01;
const NEEDS_PYAPI: u64 = 0x10;
/// `NPY_FROM_FIELDS`: the flags a structured dtype takes from its fields.
const FROM_FIELDS: u64 = 0x1b;
/// `NPY_OBJECT_DTYPE_FLAGS`.
pub const OBJECT_FLAGS: u64 = 0x3f;
/// `StringDType().flags`.
const STRING_DTYPE_FLAGS: u64 = 0x6b;
/// `'U'` dtypes carry `NPY_NEEDS_INIT`.
const UNICODE_FLAGS: u64 = 0x08;
const INT_MAX: u64 = i32::MAX as u64;
const MAX_DEPTH: usize = 512;

/// The parts of a numpy dtype that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dt {
    /// `dtype.kind` (`b'V'` for void, structured and subarray dtypes, `b'T'` for StringDType).
    pub kind: u8,
    /// `dtype.itemsize`; `None` where this model does not know it.
    pub itemsize: Option<u64>,
    /// `dtype.flags` (`NPY_ITEM_HASOBJECT` and friends).
    pub flags: u64,
    /// Has named fields (`dtype.names is not None`).
    pub fields: bool,
    pub subarray: bool,
    /// A legacy dtype (everything but StringDType).
    pub legacy: bool,
}

impl Dt {
    fn simple(kind: u8, itemsize: u64) -> Dt {
        let flags = match kind {
            b'O' => OBJECT_FLAGS,
            b'U' => UNICODE_FLAGS,
            _ => 0,
        };
        Dt { kind, itemsize: Some(itemsize), flags, fields: false, subarray: false, legacy: true }
    }

    fn string_dtype() -> Dt {
        Dt { kind: b'T', itemsize: Some(16), flags: STRING_DTYPE_FLAGS, fields: false, subarray: false, legacy: false }
    }

    /// `dtype.hasobject`: the array's data is pickled.
    pub fn has_object(&self) -> bool {
        self.flags & HASOBJECT != 0
    }

    /// `PyDataType_ISUNSIZED`.
    fn is_unsized(&self) -> bool {
        self.itemsize == Some(0) && !self.fields
    }

    /// numpy's `PyTypeNum_ISEXTENDED` (flexible types take their size from a pickled state).
    pub fn extended(&self) -> bool {
        matches!(self.kind, b'S' | b'U' | b'V')
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtError {
    /// numpy raises: the array does not load.
    Invalid(String),
    /// Beyond this model.
    Unknown(String),
}

impl DtError {
    pub fn message(&self) -> &str {
        match self {
            DtError::Invalid(m) | DtError::Unknown(m) => m,
        }
    }
}

type R = Result<Dt, DtError>;

fn invalid<T>(msg: impl Into<String>) -> Result<T, DtError> {
    Err(DtError::Invalid(msg.into()))
}

fn unknown<T>(msg: impl Into<String>) -> Result<T, DtError> {
    Err(DtError::Unknown(msg.into()))
}

/// `numpy.lib.format.descr_to_dtype(descr)`.
pub fn descr_to_dtype(descr: &Lit) -> R {
    descr_to_dtype_at(descr, 0)
}

fn descr_to_dtype_at(descr: &Lit, depth: usize) -> R {
    if depth > MAX_DEPTH {
        return unknown("the dtype description is nested too deeply");
    }
    match descr {
        Lit::Str(s) => from_str(s, depth + 1),
        Lit::Tuple(t) => {
            let first = t.first().ok_or_else(|| DtError::Invalid("an empty tuple as a dtype".into()))?;
            let dt = descr_to_dtype_at(first, depth + 1)?;
            let second = t.get(1).ok_or_else(|| DtError::Invalid("a one-element tuple as a dtype".into()))?;
            from_tuple(dt, second, depth + 1)
        }
        // anything else is iterated as a list of fields
        _ => {
            let fields: Vec<&Lit> = match descr {
                Lit::List(v) | Lit::Set(v) => v.iter().collect(),
                Lit::Dict(pairs) => pairs.iter().map(|(k, _)| k).collect(),
                Lit::Bytes(b) if b.is_empty() => Vec::new(),
                other => return invalid(format!("a {} is not a dtype description", other.type_name())),
            };
            let mut flags = NEEDS_PYAPI;
            let mut offset: Option<u64> = Some(0);
            let mut names: std::collections::HashSet<String> = std::collections::HashSet::new();
            for field in fields {
                let parts = unpack(field)?;
                let (name, dt) = match parts.as_slice() {
                    [name, d] => (name.clone(), descr_to_dtype_at(d, depth + 1)?),
                    [name, d, shape] => {
                        let base = descr_to_dtype_at(d, depth + 1)?;
                        (name.clone(), from_tuple(base, shape, depth + 1)?)
                    }
                    _ => return invalid("a field is not a (name, dtype[, shape]) sequence"),
                };
                offset = offset.zip(dt.itemsize).and_then(|(a, b)| a.checked_add(b));
                // padding bytes: a nameless plain void field is dropped
                let is_pad = name == Lit::Str(String::new()) && dt.kind == b'V' && !dt.fields;
                if is_pad {
                    continue;
                }
                let name = match name {
                    Lit::Tuple(t) if t.len() == 2 => t.get(1).cloned().unwrap_or(Lit::None),
                    Lit::Tuple(_) => return invalid("a field title tuple does not have two elements"),
                    other => other,
                };
                let Lit::Str(name) = name else { return invalid("field names must be strings") };
                if !names.insert(name.clone()) {
                    return invalid(format!("the field name {name:?} is used twice"));
                }
                flags |= dt.flags & FROM_FIELDS;
            }
            Ok(Dt { kind: b'V', itemsize: offset, flags, fields: true, subarray: false, legacy: true })
        }
    }
}

/// `name, descr_str[, shape] = field`: what unpacking a field yields.
fn unpack(field: &Lit) -> Result<Vec<Lit>, DtError> {
    Ok(match field {
        Lit::Tuple(v) | Lit::List(v) => v.clone(),
        Lit::Str(s) => s.chars().map(|c| Lit::Str(c.to_string())).collect(),
        Lit::Bytes(b) => b.iter().map(|&x| Lit::Int(i128::from(x))).collect(),
        Lit::Dict(pairs) => pairs.iter().map(|(k, _)| k.clone()).collect(),
        Lit::Set(v) if v.len() < 2 => v.clone(),
        // a set's order follows string hashes, which differ from one process to the next
        Lit::Set(_) => return unknown("a field given as a set (its order is random)"),
        other => return invalid(format!("a {} is not a field", other.type_name())),
    })
}

/// `numpy.dtype(obj)` (`_convert_from_any`) for the values a literal can hold.
pub fn from_any(obj: &Lit, depth: usize) -> R {
    if depth > MAX_DEPTH {
        return unknown("the dtype description is nested too deeply");
    }
    match obj {
        Lit::None => Ok(Dt::simple(b'f', 8)),
        Lit::Str(s) => from_str(s, depth + 1),
        Lit::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) => from_str(s, depth + 1),
            Err(_) => invalid("data type not understood"),
        },
        Lit::Tuple(t) => match t.as_slice() {
            [first, second] => {
                let dt = from_any(first, depth + 1)?;
                from_tuple(dt, second, depth + 1)
            }
            _ => invalid(format!("a dtype tuple must have 2 elements, not {}", t.len())),
        },
        Lit::List(items) => from_array_descr(items, depth + 1),
        Lit::Dict(_) => unknown("a dtype given as a dict"),
        other => invalid(format!("cannot interpret a {} as a data type", other.type_name())),
    }
}

/// `_convert_from_array_descr`: `numpy.dtype([(name, dtype[, shape]), ...])`.
fn from_array_descr(items: &[Lit], depth: usize) -> R {
    let mut flags = NEEDS_PYAPI;
    let mut size: Option<u64> = Some(0);
    for item in items {
        let Lit::Tuple(t) = item else { return invalid("field elements must be 2- or 3-tuples") };
        match t.first() {
            Some(Lit::Str(_)) => {}
            Some(Lit::Tuple(nt)) if nt.len() == 2 && matches!(nt.get(1), Some(Lit::Str(_))) => {}
            _ => return invalid("a field name is neither a str nor a (title, name) tuple"),
        }
        let conv = match t.as_slice() {
            [_, d] => from_any(d, depth + 1)?,
            [_, d, shape] => from_any(&Lit::Tuple(vec![d.clone(), shape.clone()]), depth + 1)?,
            _ => return invalid("field elements must be 2- or 3-tuples"),
        };
        if !conv.legacy {
            return invalid("StringDType is not supported for structured dtype fields");
        }
        flags |= conv.flags & FROM_FIELDS;
        size = size.zip(conv.itemsize).and_then(|(a, b)| a.checked_add(b));
    }
    Ok(Dt { kind: b'V', itemsize: size, flags, fields: true, subarray: false, legacy: true })
}

/// `_convert_from_tuple` once the first element is a dtype: `numpy.dtype((dt, val))`.
fn from_tuple(dt: Dt, val: &Lit, depth: usize) -> R {
    // _try_convert_from_inherit_tuple: (base_dtype, new_dtype) unless val is a tuple of ints
    let int_tuple =
        matches!(val, Lit::Tuple(t) if t.iter().all(|x| matches!(x, Lit::Int(_) | Lit::Bool(_) | Lit::BigInt(_))));
    if !int_tuple {
        match from_any(val, depth + 1) {
            Ok(conv) if dt.legacy && conv.legacy => {
                let mut new = dt.clone();
                if new.is_unsized() {
                    new.itemsize = conv.itemsize;
                } else if new.itemsize.is_none() || conv.itemsize.is_none() {
                    return unknown("the size of an inherited dtype is unknown");
                } else if new.itemsize != conv.itemsize {
                    return invalid("mismatch in size of old and new data-descriptor");
                } else if (new.has_object() || conv.has_object()) && !(new.kind == b'O' && !new.fields && conv.fields) {
                    // _validate_union_object_dtype
                    return invalid(
                        "dtypes of the form (old_dtype, new_dtype) containing the object dtype are not supported",
                    );
                }
                if conv.fields {
                    new.fields = true;
                }
                if new.kind == b'V' {
                    new.flags = conv.flags;
                }
                return Ok(new);
            }
            Ok(_) | Err(DtError::Invalid(_)) => {}
            Err(e @ DtError::Unknown(_)) => return Err(e),
        }
    }
    if dt.is_unsized() {
        // (flexible type, itemsize)
        let n = match val {
            Lit::Int(i) => *i,
            Lit::Bool(b) => i128::from(*b),
            _ => return invalid("invalid itemsize in generic type tuple"),
        };
        let n = u64::try_from(n)
            .ok()
            .filter(|&n| n <= INT_MAX)
            .ok_or_else(|| DtError::Invalid("invalid itemsize in generic type tuple".into()))?;
        let n = if dt.kind == b'U' {
            if n > INT_MAX / 4 {
                return invalid("invalid itemsize in generic type tuple");
            }
            n * 4
        } else {
            n
        };
        return Ok(Dt { itemsize: Some(n), ..dt });
    }
    // (fixed type, shape): a subarray
    let dims: Vec<i128> = match val {
        Lit::Int(i) => vec![*i],
        Lit::Bool(b) => vec![i128::from(*b)],
        Lit::Tuple(v) | Lit::List(v) => {
            let mut d = Vec::new();
            for x in v {
                d.push(x.as_int().ok_or_else(|| DtError::Invalid("invalid shape in fixed-type tuple".into()))?);
            }
            d
        }
        _ => return invalid("invalid shape in fixed-type tuple"),
    };
    if dims.len() > 64 {
        return invalid("invalid shape in fixed-type tuple");
    }
    if dims.is_empty() && matches!(val, Lit::Tuple(_)) {
        return Ok(dt);
    }
    let mut items: u64 = 1;
    for d in dims {
        let d = u64::try_from(d)
            .ok()
            .filter(|&d| d <= INT_MAX)
            .ok_or_else(|| DtError::Invalid("invalid shape in fixed-type tuple".into()))?;
        items = items
            .checked_mul(d)
            .filter(|&n| n <= INT_MAX)
            .ok_or_else(|| DtError::Invalid("subarray too large".into()))?;
    }
    let itemsize = match dt.itemsize {
        Some(s) => Some(
            s.checked_mul(items)
                .filter(|&n| n <= INT_MAX)
                .ok_or_else(|| DtError::Invalid("subarray too large".into()))?,
        ),
        None => None,
    };
    Ok(Dt { kind: b'V', itemsize, flags: dt.flags, fields: false, subarray: true, legacy: true })
}

/// `_check_for_commastring` (on the UTF-8 bytes, as numpy does).
fn is_commastring(b: &[u8]) -> bool {
    let order = |c: Option<&u8>| matches!(c, Some(b'<' | b'>' | b'|' | b'='));
    let digit = |c: Option<&u8>| c.is_some_and(u8::is_ascii_digit);
    if digit(b.first()) || (b.len() > 1 && order(b.first()) && digit(b.get(1))) {
        return true;
    }
    if (b.len() > 1 && b.first() == Some(&b'(') && b.get(1) == Some(&b')'))
        || (b.len() > 3 && order(b.first()) && b.get(1) == Some(&b'(') && b.get(2) == Some(&b')'))
    {
        return true;
    }
    let mut sq = 0i64;
    for &c in b {
        match c {
            b',' if sq == 0 => return true,
            b'[' => sq += 1,
            b']' => sq -= 1,
            _ => {}
        }
    }
    false
}

/// C `strtol(s, &end, 10)`: (value, end index, overflowed).
fn strtol(s: &[u8]) -> (i128, usize, bool) {
    let mut i = 0;
    while s.get(i).is_some_and(|&c| matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')) {
        i += 1;
    }
    let mut neg = false;
    if let Some(&c @ (b'+' | b'-')) = s.get(i) {
        neg = c == b'-';
        i += 1;
    }
    let start = i;
    let mut v: i128 = 0;
    let mut over = false;
    while let Some(&c) = s.get(i) {
        if !c.is_ascii_digit() {
            break;
        }
        v = v * 10 + i128::from(c - b'0');
        if v > i128::from(i64::MAX) + 1 {
            over = true;
            v = i128::from(i64::MAX) + 1;
        }
        i += 1;
    }
    if i == start {
        return (0, 0, false);
    }
    (if neg { -v } else { v }, i, over)
}

/// `PyArray_DescrFromType` for a one-character typecode (its byte is the type number or char).
fn typecode(c: u8) -> Option<Dt> {
    Some(match c {
        0 | b'?' => Dt::simple(b'b', 1),
        1 | b'b' => Dt::simple(b'i', 1),
        2 | b'B' => Dt::simple(b'u', 1),
        3 | b'h' => Dt::simple(b'i', 2),
        4 | b'H' => Dt::simple(b'u', 2),
        5 | b'i' => Dt::simple(b'i', 4),
        6 | b'I' => Dt::simple(b'u', 4),
        7 | 9 | b'l' | b'q' | b'n' | b'p' => Dt::simple(b'i', 8),
        8 | 10 | b'L' | b'Q' | b'N' | b'P' => Dt::simple(b'u', 8),
        11 | b'f' => Dt::simple(b'f', 4),
        12 | b'd' => Dt::simple(b'f', 8),
        13 | b'g' => Dt::simple(b'f', 16),
        14 | b'F' => Dt::simple(b'c', 8),
        15 | b'D' => Dt::simple(b'c', 16),
        16 | b'G' => Dt::simple(b'c', 32),
        17 | b'O' => Dt::simple(b'O', 8),
        18 | b'S' | b'a' => Dt::simple(b'S', 0),
        19 | b'U' => Dt::simple(b'U', 0),
        20 | b'V' => Dt::simple(b'V', 0),
        21 | b'M' => Dt::simple(b'M', 8),
        22 | b'm' => Dt::simple(b'm', 8),
        23 | b'e' => Dt::simple(b'f', 2),
        b'c' => Dt::simple(b'S', 1),
        b'T' => Dt::string_dtype(),
        _ => return None,
    })
}

/// `PyArray_TypestrConvert(itemsize, kind)` for kinds other than S, U, V.
fn typestr(kind: u8, n: u64) -> Option<Dt> {
    let ok = match kind {
        b'b' => n == 1,
        b'i' | b'u' => matches!(n, 1 | 2 | 4 | 8),
        b'f' => matches!(n, 2 | 4 | 8 | 16),
        b'c' => matches!(n, 8 | 16 | 32),
        b'M' | b'm' => n == 8,
        b'O' => return matches!(n, 4 | 8).then(|| Dt::simple(b'O', 8)),
        _ => false,
    };
    ok.then(|| Dt::simple(if kind == b'b' { b'b' } else { kind }, n))
}

/// `numpy.sctypeDict` (numpy 2.x on a 64-bit Linux): the names `dtype()` looks up last.
fn type_name(s: &str) -> Option<Dt> {
    Some(match s {
        "bool" | "bool_" => Dt::simple(b'b', 1),
        "byte" | "int8" => Dt::simple(b'i', 1),
        "ubyte" | "uint8" => Dt::simple(b'u', 1),
        "short" | "int16" => Dt::simple(b'i', 2),
        "ushort" | "uint16" => Dt::simple(b'u', 2),
        "intc" | "int32" => Dt::simple(b'i', 4),
        "uintc" | "uint32" => Dt::simple(b'u', 4),
        "int" | "int_" | "intp" | "long" | "longlong" | "int64" => Dt::simple(b'i', 8),
        "uint" | "uintp" | "ulong" | "ulonglong" | "uint64" => Dt::simple(b'u', 8),
        "half" | "float16" => Dt::simple(b'f', 2),
        "single" | "float32" => Dt::simple(b'f', 4),
        "double" | "float" | "float64" => Dt::simple(b'f', 8),
        "longdouble" | "float128" => Dt::simple(b'f', 16),
        "csingle" | "complex64" => Dt::simple(b'c', 8),
        "cdouble" | "complex" | "complex128" => Dt::simple(b'c', 16),
        "clongdouble" | "complex256" => Dt::simple(b'c', 32),
        "object" | "object_" => Dt::simple(b'O', 8),
        "a" | "bytes" | "bytes_" => Dt::simple(b'S', 0),
        "str" | "str_" | "unicode" => Dt::simple(b'U', 0),
        "void" => Dt::simple(b'V', 0),
        "datetime64" => Dt::simple(b'M', 8),
        "timedelta64" => Dt::simple(b'm', 8),
        _ => return None,
    })
}

/// `is_datetime_typestr` and `parse_dtype_from_datetime_typestr` (units are not checked:
/// a datetime never holds objects).
fn datetime(rest: &[u8]) -> Option<Result<Dt, DtError>> {
    let (kind, tail) = if rest.len() >= 2 && rest.get(1) == Some(&b'8') && matches!(rest.first(), Some(b'M' | b'm')) {
        (rest.first().copied().unwrap_or(b'M'), rest.get(2..).unwrap_or(&[]))
    } else if let Some(t) = rest.strip_prefix(b"datetime64") {
        (b'M', t)
    } else if let Some(t) = rest.strip_prefix(b"timedelta64") {
        (b'm', t)
    } else {
        return None;
    };
    let ok = tail.is_empty()
        || (tail.len() > 2
            && tail.first() == Some(&b'[')
            && tail.last() == Some(&b']')
            && tail.get(1..tail.len() - 1).unwrap_or(&[]).iter().all(|c| c.is_ascii_alphanumeric() || *c == b'/'));
    Some(if ok { Ok(Dt::simple(kind, 8)) } else { invalid("invalid datetime unit") })
}

/// `_convert_from_str`: `numpy.dtype('...')`.
pub fn from_str(s: &str, depth: usize) -> R {
    if depth > MAX_DEPTH {
        return unknown("the dtype string is nested too deeply");
    }
    let not_understood = || DtError::Invalid(format!("data type {s:?} not understood"));
    let b = s.as_bytes();
    if b.is_empty() {
        return Err(not_understood());
    }
    if is_commastring(b) {
        return commastring(s, depth + 1);
    }
    let rest = match b.first() {
        Some(b'<' | b'>' | b'=' | b'|') => b.get(1..).unwrap_or(&[]),
        _ => b,
    };
    if rest.is_empty() {
        return Err(not_understood());
    }
    if let Some(dt) = datetime(rest) {
        return dt;
    }
    let found = if rest.len() == 1 {
        rest.first().and_then(|&c| typecode(c))
    } else {
        let tail = rest.get(1..).unwrap_or(&[]);
        let (n, end, over) = strtol(tail);
        if over || !(0..=i128::from(i32::MAX)).contains(&n) {
            return Err(not_understood());
        }
        // strtol stops at a NUL byte as at the end of the string
        let consumed = end == tail.len() || tail.get(end) == Some(&0) || (end == 0 && tail.first() == Some(&0));
        if consumed {
            if end != tail.len() {
                return Err(not_understood());
            }
            let n = n as u64;
            match rest.first() {
                // 'a' is numpy's old alias of 'S'
                Some(b'S' | b'a') => Some(Dt::simple(b'S', n)),
                Some(b'U') if n > INT_MAX / 4 => return Err(not_understood()),
                Some(b'U') => Some(Dt::simple(b'U', n * 4)),
                Some(b'V') => Some(Dt::simple(b'V', n)),
                Some(_) if n == 0 => None,
                Some(&k) => typestr(k, n),
                None => None,
            }
        } else {
            None
        }
    };
    match found {
        Some(dt) => Ok(dt),
        // the whole string, byte-order character included
        None => type_name(s).ok_or_else(not_understood),
    }
}

/// Python's `str.isspace` (what `\s` matches in a `re` str pattern).
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// `numpy._core._internal._commastring` and then `_convert_from_commastring`.
fn commastring(s: &str, depth: usize) -> R {
    let c: Vec<char> = s.chars().collect();
    let at = |i: usize| c.get(i).copied();
    let is_order = |x: Option<char>| matches!(x, Some('<' | '>' | '|' | '='));
    let mut i = 0;
    let mut items: Vec<Lit> = Vec::new();
    let mut islist = false;
    while i < c.len() {
        // format_re
        let order1 = if is_order(at(i)) {
            i += 1;
            at(i - 1)
        } else {
            None
        };
        let rep_start = i;
        while at(i) == Some(' ') {
            i += 1;
        }
        if at(i) == Some('(') {
            i += 1;
        }
        while matches!(at(i), Some(' ' | ',' | '0'..='9')) {
            i += 1;
        }
        if at(i) == Some(')') {
            i += 1;
        }
        while at(i) == Some(' ') {
            i += 1;
        }
        let repeats: String = c.get(rep_start..i).unwrap_or(&[]).iter().collect();
        let order2 = if is_order(at(i)) {
            i += 1;
            at(i - 1)
        } else {
            None
        };
        let dt_start = i;
        while at(i).is_some_and(|x| x.is_ascii_alphanumeric() || x == '.' || x == '?') {
            i += 1;
        }
        if at(i) == Some('[') {
            let mut j = i + 1;
            while at(j).is_some_and(|x| x.is_ascii_alphanumeric() || x == ',' || x == '.') {
                j += 1;
            }
            if j > i + 1 && at(j) == Some(']') {
                i = j + 1;
            }
        }
        let name: String = c.get(dt_start..i).unwrap_or(&[]).iter().collect();
        if i < c.len() {
            if c.get(i..).unwrap_or(&[]).iter().all(|&x| py_space(x)) {
                i = c.len();
            } else {
                while at(i).is_some_and(py_space) {
                    i += 1;
                }
                if at(i) != Some(',') {
                    return invalid(format!("format number {} of {s:?} is not recognized", items.len() + 1));
                }
                i += 1;
                while at(i).is_some_and(py_space) {
                    i += 1;
                }
                islist = true;
            }
        }
        let order = match (order1, order2) {
            (o, None) | (None, o) => o,
            (Some(a), Some(b)) => {
                let norm = |x: char| if x == '=' { '<' } else { x };
                if norm(a) != norm(b) {
                    return invalid("inconsistent byte-order specification");
                }
                Some(norm(a))
            }
        };
        let name = match order {
            Some('>') => format!(">{name}"),
            _ => name,
        };
        if repeats.is_empty() {
            items.push(Lit::Str(name));
        } else {
            let shape =
                literal_eval(&repeats, false).map_err(|e| DtError::Invalid(format!("bad repeat count: {e}")))?;
            items.push(Lit::Tuple(vec![Lit::Str(name), shape]));
        }
    }
    if !islist {
        return match items.into_iter().next() {
            Some(t @ Lit::Tuple(_)) => from_any(&t, depth + 1),
            _ => invalid("_commastring should return a tuple with len == 2, or a list with len >= 1"),
        };
    }
    // _convert_from_list: a trailing empty string is dropped
    if items.last() == Some(&Lit::Str(String::new())) {
        items.pop();
    }
    if items.is_empty() {
        return invalid("Expected at least one field name");
    }
    let mut flags = NEEDS_PYAPI;
    let mut size: Option<u64> = Some(0);
    for it in &items {
        let conv = from_any(it, depth + 1)?;
        if !conv.legacy {
            return invalid("StringDType is not supported for structured dtype fields");
        }
        flags |= conv.flags & FROM_FIELDS;
        size = size.zip(conv.itemsize).and_then(|(a, b)| a.checked_add(b));
    }
    Ok(Dt { kind: b'V', itemsize: size, flags, fields: true, subarray: false, legacy: true })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(s: &str) -> Result<bool, DtError> {
        from_str(s, 0).map(|d| d.has_object())
    }

    fn desc(s: &str) -> R {
        descr_to_dtype(&literal_eval(s, false).unwrap())
    }

    #[test]
    fn strings() {
        for s in [
            "O",
            "|O",
            "<O",
            "O8",
            "O4",
            "O 8",
            "O+8",
            "O\t8",
            "object",
            "object_",
            "\x11",
            "2,O",
            "i4,O",
            "(2,)O8",
            "i4, O ",
            "<()O",
            "()O",
            "T",
            "M8[s],O",
            "O,\u{a0}i4",
            "i4\x1c,O",
        ] {
            assert_eq!(obj(s), Ok(true), "{s:?}");
        }
        for s in [
            "<f4", "|b1", "<U3", "|S5", "|V16", "<M8[ns]", "?", "\0", "i4,i4", "2S", "a5", "c", "bool", "float64",
            "<()f4",
        ] {
            assert_eq!(obj(s), Ok(false), "{s:?}");
        }
        for s in [
            "", "|", "Object", "|object", "O16", "O0", "O-8", "O\x008", "(2)O", "i4, ,O", ",i4", "<>i4,O", "O\n", "x",
            "O\u{a0}",
        ] {
            assert!(matches!(obj(s), Err(DtError::Invalid(_))), "{s:?}: {:?}", obj(s));
        }
        assert_eq!(from_str("<U3", 0).unwrap().itemsize, Some(12));
        assert_eq!(from_str("i4,(2,)O", 0).unwrap().itemsize, Some(20));
        assert_eq!(from_str("2S", 0).unwrap().itemsize, Some(2));
    }

    #[test]
    fn descriptions() {
        let yes = |s: &str| assert!(desc(s).unwrap().has_object(), "{s}");
        let no = |s: &str| assert!(!desc(s).unwrap().has_object(), "{s}");
        for s in [
            "('V', 'O')",
            "['aO']",
            "[('', 'O')]",
            "{('a', 'O'): 1}",
            "{'aO'}",
            "[('a', 'O', ())]",
            "[(('t', 'n'), 'O')]",
            "[['a', 'O']]",
            "[{'a': 1, 'O': 2}]",
            "[('a', ('V', 'O'))]",
            "[('a', 'i4'), ('b', 'T')]",
            "[((1, 'n'), 'O')]",
            "('O', (2,))",
            "[('a', [('b', '|O')], (2,))]",
        ] {
            yes(s);
        }
        for s in [
            "[('', 'O', (2,))]",
            "[('', 'V8')]",
            "b''",
            "set()",
            "('S', 'O')",
            "[('a', '<i4'), ('b', '<f8', (2,))]",
            "'<f4'",
            "('<i4', 2)",
        ] {
            no(s);
        }
        for s in [
            "('V8', 'O')",
            "[('a', 'O', [])]",
            "[('a', 'i4'), ('a', 'O')]",
            "('O',)",
            "['aO2']",
            "[('a', '<i4', 'O')]",
            "[(1, 'O')]",
            "[(b'a', 'O')]",
            "[(('t', 'n', 'x'), 'O')]",
            "5",
            "None",
        ] {
            assert!(matches!(desc(s), Err(DtError::Invalid(_))), "{s}: {:?}", desc(s));
        }
        assert!(matches!(desc("[{'a', 'O'}]"), Err(DtError::Unknown(_))));
        assert_eq!(desc("[('a', '<i4'), ('', '|V4'), ('b', '<f8', (2,))]").unwrap().itemsize, Some(24));
    }
}
