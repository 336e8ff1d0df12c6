//! Protocol-0 argument decoding, byte for byte as CPython 3.11's `_pickle.c` does it:
//! `strtol`, `PyLong_FromString`, `PyOS_string_to_double`, `PyBytes_DecodeEscape` and
//! the raw-unicode-escape codec; and as `pickle._Unpickler` (Lib/pickle.py) does it, where
//! `int()` and `float()` read the bytes (the `_py` functions). Lines arrive without their
//! trailing newline.

/// An integer as the unpickler would build it: small ones exactly, big ones only validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Num {
    Int(i64),
    Bool(bool),
    /// Valid, but outside `i64`: `neg` and the number of significant digits written.
    Big {
        neg: bool,
        digits: u32,
    },
}

/// `INT`: `strtol(s, &end, 0)` first; when that fails or overflows, `PyLong_FromString(s, 0)`.
/// A line of exactly two characters that parses to 0 or 1 is a bool (protocol-0 `I01`).
pub(super) fn parse_int_line(line: &[u8]) -> Option<Num> {
    let s = c_str(line);
    match strtol(s) {
        Some((x, end)) if end == s.len() => {
            // CPython compares the line length including the newline with 3.
            if line.len() == 2 && (x == 0 || x == 1) {
                Some(Num::Bool(x == 1))
            } else {
                Some(Num::Int(x))
            }
        }
        _ => py_long(s, 0),
    }
}

/// `LONG`: a trailing `L` (just before the newline) is dropped, then `PyLong_FromString(s, 0)`.
pub(super) fn parse_long_line(line: &[u8]) -> Option<Num> {
    let s = match line.split_last() {
        Some((b'L', rest)) => rest,
        _ => line,
    };
    py_long(c_str(s), 0)
}

/// `GET`/`PUT` keys: `PyLong_FromString(s, 10)` then `PyLong_AsSsize_t`.
pub(super) fn parse_memo_key(line: &[u8]) -> Option<i64> {
    match py_long(c_str(line), 10)? {
        Num::Int(i) => Some(i),
        Num::Bool(b) => Some(i64::from(b)),
        Num::Big { .. } => None,
    }
}

/// `INT` in `pickle._Unpickler.load_int`: the line with its newline is compared with
/// `b"00\n"` and `b"01\n"` (bools), anything else is `int(data, 0)` on the bytes. `newline`
/// is false when the data ended first (a file's `readline` then returns what is left).
pub(super) fn parse_int_line_py(line: &[u8], newline: bool) -> Option<Num> {
    match (line, newline) {
        (b"00", true) => Some(Num::Bool(false)),
        (b"01", true) => Some(Num::Bool(true)),
        // the newline is trailing whitespace to int()
        _ => py_int_bytes(line, 0),
    }
}

/// `LONG` in `pickle._Unpickler.load_long`: one trailing `L` is dropped, then `int(val, 0)`.
pub(super) fn parse_long_line_py(line: &[u8]) -> Option<Num> {
    let s = match line.split_last() {
        Some((b'L', rest)) => rest,
        _ => line,
    };
    py_int_bytes(s, 0)
}

/// A memo key of `pickle._Unpickler` (`GET`/`PUT`: `int(line)`), whose memo is a dict: any
/// integer is a key. Keys beyond `u64` are kept as their decimal digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum PyKey {
    Small(u64),
    Huge(Vec<u8>),
    Negative,
}

pub(super) fn parse_memo_key_py(line: &[u8]) -> Option<PyKey> {
    match py_int_bytes(line, 10)? {
        Num::Int(i) => Some(u64::try_from(i).map_or(PyKey::Negative, PyKey::Small)),
        Num::Bool(b) => Some(PyKey::Small(u64::from(b))),
        Num::Big { neg: true, .. } => Some(PyKey::Negative),
        Num::Big { neg: false, .. } => {
            let digits: Vec<u8> = line.iter().copied().filter(u8::is_ascii_digit).skip_while(|&d| d == b'0').collect();
            match std::str::from_utf8(&digits).ok().and_then(|d| d.parse::<u64>().ok()) {
                Some(v) => Some(PyKey::Small(v)),
                None => Some(PyKey::Huge(digits)),
            }
        }
    }
}

/// `int(b, base)` on bytes: `PyLong_FromString` over the whole bytes, so a NUL is an error.
fn py_int_bytes(s: &[u8], base: u32) -> Option<Num> {
    if s.contains(&0) {
        return None;
    }
    py_long(s, base)
}

/// `FLOAT` in `pickle._Unpickler.load_float`: `float(data)` on the bytes, as
/// `PyFloat_FromString` reads them: underscores only between digits
/// (`_Py_string_to_number_with_underscores`), surrounding whitespace, the `inf`/`nan` words,
/// overflow to infinity (no error), and no NUL byte.
pub(super) fn parse_float_line_py(line: &[u8]) -> Option<f64> {
    if line.contains(&0) {
        return None;
    }
    let mut s = Vec::with_capacity(line.len());
    if line.contains(&b'_') {
        let mut prev = 0u8;
        for &c in line {
            if c == b'_' {
                if !prev.is_ascii_digit() {
                    return None;
                }
            } else {
                if prev == b'_' && !c.is_ascii_digit() {
                    return None;
                }
                s.push(c);
            }
            prev = c;
        }
        if prev == b'_' {
            return None;
        }
    } else {
        s.extend_from_slice(line);
    }
    // float_from_string_inner: strip leading, then trailing whitespace (never the last byte)
    let start = s.iter().take_while(|&&c| is_c_space(c)).count();
    if start == s.len() {
        return None;
    }
    let mut end = s.len();
    while end > start + 1 && s.get(end - 1).is_some_and(|&c| is_c_space(c)) {
        end -= 1;
    }
    let body = s.get(start..end)?;
    let n = float_prefix(body)?;
    if n != body.len() {
        return None;
    }
    float_value(body)
}

/// The value of a string `float_prefix` accepted whole (overflow gives infinity).
fn float_value(s: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(s).ok()?;
    let lower = text.to_ascii_lowercase();
    let t = lower.trim_start_matches(['+', '-']);
    if t == "inf" || t == "infinity" || t == "nan" {
        let neg = lower.starts_with('-');
        return Some(match (t, neg) {
            ("nan", true) => -f64::NAN,
            ("nan", false) => f64::NAN,
            (_, true) => f64::NEG_INFINITY,
            (_, false) => f64::INFINITY,
        });
    }
    text.parse().ok()
}

/// The line as the C string CPython sees: it ends at the first NUL byte.
fn c_str(line: &[u8]) -> &[u8] {
    match line.iter().position(|&b| b == 0) {
        Some(i) => line.get(..i).unwrap_or(line),
        None => line,
    }
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

fn digit_value(b: u8) -> u32 {
    match b {
        b'0'..=b'9' => u32::from(b - b'0'),
        b'a'..=b'z' => u32::from(b - b'a') + 10,
        b'A'..=b'Z' => u32::from(b - b'A') + 10,
        _ => 99,
    }
}

/// glibc `strtol(s, &end, 0)`: returns the value and the end index, or `None` when the
/// value overflows (`ERANGE`). With no digits the end index is 0.
fn strtol(s: &[u8]) -> Option<(i64, usize)> {
    let mut i = 0;
    while s.get(i).is_some_and(|&b| is_c_space(b)) {
        i += 1;
    }
    let mut neg = false;
    if let Some(&c) = s.get(i) {
        if c == b'+' || c == b'-' {
            neg = c == b'-';
            i += 1;
        }
    }
    let mut base = 10u32;
    if s.get(i) == Some(&b'0') {
        if matches!(s.get(i + 1), Some(b'x') | Some(b'X')) && s.get(i + 2).is_some_and(|&b| digit_value(b) < 16) {
            base = 16;
            i += 2;
        } else {
            base = 8;
        }
    }
    let start = i;
    let mut acc: i128 = 0;
    let mut overflow = false;
    while let Some(&b) = s.get(i) {
        let d = digit_value(b);
        if d >= base {
            break;
        }
        if !overflow {
            acc = acc * i128::from(base) + i128::from(d);
            if acc > i128::from(i64::MAX) + 1 {
                overflow = true;
            }
        }
        i += 1;
    }
    if i == start {
        return Some((0, 0));
    }
    let v = if neg { -acc } else { acc };
    if overflow || v > i128::from(i64::MAX) || v < i128::from(i64::MIN) {
        return None;
    }
    Some((v as i64, i))
}

/// Python's `int(s, base)` grammar as `PyLong_FromString` implements it (base 0 or 10):
/// surrounding whitespace, a sign, `0x`/`0o`/`0b` prefixes for base 0, single underscores
/// between digits, no leading zeros in base-0 decimals, and the 4300-digit limit of 3.11.
fn py_long(s: &[u8], base: u32) -> Option<Num> {
    let at = |i: usize| s.get(i).copied().unwrap_or(0);
    let mut i = 0;
    while is_c_space(at(i)) {
        i += 1;
    }
    let mut neg = false;
    if at(i) == b'+' || at(i) == b'-' {
        neg = at(i) == b'-';
        i += 1;
    }
    let mut radix = base;
    let mut error_if_nonzero = false;
    if base == 0 {
        radix = if at(i) != b'0' {
            10
        } else {
            match at(i + 1).to_ascii_lowercase() {
                b'x' => 16,
                b'o' => 8,
                b'b' => 2,
                _ => {
                    error_if_nonzero = true;
                    10
                }
            }
        };
        if radix != 10 {
            i += 2;
            if at(i) == b'_' {
                i += 1;
            }
        }
    }
    if at(i) == b'_' {
        return None;
    }
    let mut digits = 0u32;
    let mut significant = 0u32;
    let mut value: Option<i128> = Some(0);
    let mut nonzero = false;
    let mut prev_underscore = false;
    loop {
        let b = at(i);
        if b == b'_' && i < s.len() {
            if prev_underscore {
                return None;
            }
            prev_underscore = true;
            i += 1;
            continue;
        }
        let d = digit_value(b);
        if i >= s.len() || d >= radix {
            break;
        }
        prev_underscore = false;
        digits += 1;
        if d != 0 || nonzero {
            nonzero = true;
            significant += 1;
        }
        value = value.and_then(|v| v.checked_mul(i128::from(radix))).and_then(|v| v.checked_add(i128::from(d)));
        i += 1;
    }
    if digits == 0 || prev_underscore || (error_if_nonzero && nonzero) {
        return None;
    }
    while i < s.len() && is_c_space(at(i)) {
        i += 1;
    }
    if i != s.len() {
        return None;
    }
    if radix == 10 && digits > 4300 {
        return None;
    }
    match value.map(|v| if neg { -v } else { v }).and_then(|v| i64::try_from(v).ok()) {
        Some(x) => Some(Num::Int(x)),
        None => Some(Num::Big { neg, digits: significant }),
    }
}

/// `FLOAT`: `PyOS_string_to_double` (no leading whitespace, no underscores, inf/nan words,
/// overflow is an error) followed by a check that parsing stopped at the newline or a NUL.
pub(super) fn parse_float_line(line: &[u8]) -> Option<f64> {
    let s = c_str(line);
    let end = float_prefix(s)?;
    if end != s.len() {
        return None;
    }
    let v = float_value(s.get(..end)?)?;
    let word = s.iter().any(|c| c.is_ascii_alphabetic() && !matches!(c, b'e' | b'E'));
    if v.is_infinite() && !word {
        return None; // OverflowError
    }
    Some(v)
}

/// Length of the longest prefix `_Py_dg_strtod` (then `_Py_parse_inf_or_nan`) accepts.
fn float_prefix(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    if matches!(s.first(), Some(b'+') | Some(b'-')) {
        i = 1;
    }
    let mut digits = 0;
    while s.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
        digits += 1;
    }
    if s.get(i) == Some(&b'.') {
        let mut j = i + 1;
        let mut frac = 0;
        while s.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
            frac += 1;
        }
        if digits + frac > 0 {
            i = j;
            digits += frac;
        }
    }
    if digits == 0 {
        // inf / infinity / nan, case-insensitive, with an optional sign
        let sign = usize::from(matches!(s.first(), Some(b'+') | Some(b'-')));
        let rest = s.get(sign..)?;
        let low: Vec<u8> = rest.iter().take(8).map(u8::to_ascii_lowercase).collect();
        if low.starts_with(b"infinity") {
            return Some(sign + 8);
        }
        if low.starts_with(b"inf") || low.starts_with(b"nan") {
            return Some(sign + 3);
        }
        return None;
    }
    if matches!(s.get(i), Some(b'e') | Some(b'E')) {
        let mut j = i + 1;
        if matches!(s.get(j), Some(b'+') | Some(b'-')) {
            j += 1;
        }
        let start = j;
        while s.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        if j > start {
            i = j;
        }
    }
    Some(i)
}

/// `STRING`: the argument must be quoted with matching `'` or `"`; the inside is decoded
/// with `PyBytes_DecodeEscape`. Returns the bytes (the caller decodes them as latin-1).
pub(super) fn decode_string_line(line: &[u8]) -> Result<Vec<u8>, &'static str> {
    let n = line.len();
    let (first, last) = match (line.first(), line.last()) {
        (Some(&f), Some(&l)) => (f, l),
        _ => return Err("the STRING opcode argument must be quoted"),
    };
    if n < 2 || first != last || !(first == b'\'' || first == b'"') {
        return Err("the STRING opcode argument must be quoted");
    }
    decode_escape(line.get(1..n - 1).unwrap_or(&[]))
}

fn decode_escape(s: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = s.get(i) else {
            return Err("trailing \\ in string");
        };
        i += 1;
        match e {
            b'\n' => {}
            b'\\' => out.push(b'\\'),
            b'\'' => out.push(b'\''),
            b'"' => out.push(b'"'),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b't' => out.push(b'\t'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b'v' => out.push(11),
            b'a' => out.push(7),
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match s.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            b'x' => {
                let h = s.get(i).map(|&b| digit_value(b)).filter(|&d| d < 16);
                let l = s.get(i + 1).map(|&b| digit_value(b)).filter(|&d| d < 16);
                match (h, l) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => return Err("invalid \\x escape"),
                }
            }
            _ => {
                out.push(b'\\');
                i -= 1;
            }
        }
    }
    Ok(out)
}

/// `UNICODE`: the raw-unicode-escape codec. Returns WTF-8 (UTF-8 that may encode lone
/// surrogates, as `surrogatepass` would), since `\ud800` is legal here.
pub(super) fn decode_raw_unicode_escape(s: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        i += 1;
        if c != b'\\' || i >= s.len() {
            push_wtf8(&mut out, u32::from(c));
            continue;
        }
        let e = s.get(i).copied().unwrap_or(0);
        i += 1;
        let count = match e {
            b'u' => 4,
            b'U' => 8,
            _ => {
                out.push(b'\\');
                push_wtf8(&mut out, u32::from(e));
                continue;
            }
        };
        let mut ch: u32 = 0;
        for _ in 0..count {
            let d = s.get(i).map(|&b| digit_value(b)).filter(|&d| d < 16).ok_or("truncated \\uXXXX escape")?;
            ch = (ch << 4) | d;
            i += 1;
        }
        if ch > 0x10ffff {
            return Err("\\Uxxxxxxxx out of range");
        }
        push_wtf8(&mut out, ch);
    }
    Ok(out)
}

/// Append a code point as (generalised) UTF-8; surrogates get their 3-byte form.
pub(super) fn push_wtf8(out: &mut Vec<u8>, cp: u32) {
    if cp < 0x80 {
        out.push(cp as u8);
    } else if cp < 0x800 {
        out.push(0xc0 | (cp >> 6) as u8);
        out.push(0x80 | (cp & 0x3f) as u8);
    } else if cp < 0x10000 {
        out.push(0xe0 | (cp >> 12) as u8);
        out.push(0x80 | ((cp >> 6) & 0x3f) as u8);
        out.push(0x80 | (cp & 0x3f) as u8);
    } else {
        out.push(0xf0 | (cp >> 18) as u8);
        out.push(0x80 | ((cp >> 12) & 0x3f) as u8);
        out.push(0x80 | ((cp >> 6) & 0x3f) as u8);
        out.push(0x80 | (cp & 0x3f) as u8);
    }
}

/// Latin-1 bytes as WTF-8 (how `STRING`/`BINSTRING` become `str` with encoding latin-1).
pub(super) fn latin1_to_utf8(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    for &c in b {
        push_wtf8(&mut out, u32::from(c));
    }
    out
}

/// UTF-8 validation with `surrogatepass` (BINUNICODE): like strict UTF-8 but encoded
/// surrogates (ED A0..BF xx) are accepted.
pub(super) fn valid_utf8_surrogatepass(b: &[u8]) -> bool {
    let mut i = 0;
    while i < b.len() {
        let Some(rest) = b.get(i..) else { return false };
        match std::str::from_utf8(rest) {
            Ok(_) => return true,
            Err(e) => {
                let bad = i + e.valid_up_to();
                // a surrogate: ED followed by A0..BF and a continuation byte
                match (b.get(bad), b.get(bad + 1), b.get(bad + 2)) {
                    (Some(0xed), Some(&x), Some(&y)) if (0xa0..=0xbf).contains(&x) && (0x80..=0xbf).contains(&y) => {
                        i = bad + 3;
                    }
                    _ => return false,
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_lines_follow_strtol_then_python() {
        assert_eq!(parse_int_line(b"01"), Some(Num::Bool(true)));
        assert_eq!(parse_int_line(b"00"), Some(Num::Bool(false)));
        assert_eq!(parse_int_line(b"1"), Some(Num::Int(1)));
        assert_eq!(parse_int_line(b"010"), Some(Num::Int(8)));
        assert_eq!(parse_int_line(b"0x1f"), Some(Num::Int(31)));
        assert_eq!(parse_int_line(b"1_000"), Some(Num::Int(1000)));
        assert_eq!(parse_int_line(b"0b101"), Some(Num::Int(5)));
        assert_eq!(parse_int_line(b"08"), None);
        assert_eq!(parse_int_line(b" 5"), Some(Num::Int(5)));
        assert_eq!(parse_int_line(b"5 "), Some(Num::Int(5)));
        assert_eq!(parse_int_line(b"12\x00zz"), Some(Num::Int(12)));
        assert_eq!(parse_int_line(b"\x00"), Some(Num::Int(0)));
        assert_eq!(parse_int_line(b"abc"), None);
        assert_eq!(parse_int_line(b"1__0"), None);
        assert_eq!(parse_int_line(b"_1"), None);
        assert_eq!(parse_int_line(b"1_"), None);
        assert_eq!(parse_int_line(b"0x_1f"), Some(Num::Int(31)));
        assert!(matches!(parse_int_line(b"99999999999999999999999"), Some(Num::Big { neg: false, .. })));
        assert_eq!(parse_long_line(b"12L"), Some(Num::Int(12)));
        assert_eq!(parse_long_line(b"-7"), Some(Num::Int(-7)));
        assert_eq!(parse_memo_key(b"010"), Some(10));
        assert_eq!(parse_memo_key(b"0x1"), None);
        assert_eq!(parse_long_line(&[b'1'; 4301]), None);
        assert!(parse_long_line(&[b'1'; 4300]).is_some());
    }

    #[test]
    fn python_unpickler_numbers() {
        // int(data, 0): no octal, no NUL, bools only for the exact lines 00 and 01
        assert_eq!(parse_int_line_py(b"01", true), Some(Num::Bool(true)));
        assert_eq!(parse_int_line_py(b"01", false), None);
        assert_eq!(parse_int_line_py(b" 1", true), Some(Num::Int(1)));
        assert_eq!(parse_int_line(b" 1"), Some(Num::Bool(true)));
        assert_eq!(parse_int_line_py(b"010", true), None);
        assert_eq!(parse_int_line(b"010"), Some(Num::Int(8)));
        assert_eq!(parse_int_line_py(b"12\x00zz", true), None);
        assert_eq!(parse_int_line_py(b"0x_1f", true), Some(Num::Int(31)));
        assert_eq!(parse_int_line_py(b"5", false), Some(Num::Int(5)));
        assert_eq!(parse_long_line_py(b"12L"), Some(Num::Int(12)));
        assert_eq!(parse_long_line_py(b"1\x002"), None);
        assert_eq!(parse_long_line(b"1\x002"), Some(Num::Int(1)));
        // float(data): spaces, underscores, overflow to inf
        assert_eq!(parse_float_line_py(b" 1.5 "), Some(1.5));
        assert_eq!(parse_float_line(b" 1.5"), None);
        assert_eq!(parse_float_line_py(b"1_0.2_5"), Some(10.25));
        assert_eq!(parse_float_line(b"1_0.25"), None);
        assert_eq!(parse_float_line_py(b"1__0"), None);
        assert_eq!(parse_float_line_py(b"1_"), None);
        assert_eq!(parse_float_line_py(b"_1"), None);
        assert_eq!(parse_float_line_py(b"1_e5"), None);
        assert_eq!(parse_float_line_py(b"1e1_0"), Some(1e10));
        assert_eq!(parse_float_line_py(b"1e999"), Some(f64::INFINITY));
        assert_eq!(parse_float_line_py(b"-InFiNiTy\r"), Some(f64::NEG_INFINITY));
        assert!(parse_float_line_py(b"nan").is_some_and(f64::is_nan));
        assert_eq!(parse_float_line_py(b"2\x00"), None);
        assert_eq!(parse_float_line_py(b""), None);
        assert_eq!(parse_float_line_py(b"  "), None);
        assert_eq!(parse_float_line(b"inf"), Some(f64::INFINITY));
        // memo keys: any integer
        assert_eq!(parse_memo_key_py(b"+1_0"), Some(PyKey::Small(10)));
        assert_eq!(parse_memo_key_py(b"-3"), Some(PyKey::Negative));
        assert_eq!(parse_memo_key_py(b"0099999999999999999999"), Some(PyKey::Huge(b"99999999999999999999".to_vec())));
        assert_eq!(parse_memo_key_py(b"0x1"), None);
    }

    #[test]
    fn floats_and_strings() {
        assert_eq!(parse_float_line(b"1.5"), Some(1.5));
        assert_eq!(parse_float_line(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_float_line(b"1e999"), None);
        assert_eq!(parse_float_line(b" 1"), None);
        assert_eq!(parse_float_line(b"1."), Some(1.0));
        assert_eq!(parse_float_line(b"1e"), None);
        assert_eq!(parse_float_line(b"2\x00x"), Some(2.0));
        assert_eq!(decode_string_line(b"'a\\x41\\n\\q'").unwrap(), b"aA\n\\q");
        assert!(decode_string_line(b"'a\\x4'").is_err());
        assert!(decode_string_line(b"'a").is_err());
        assert_eq!(decode_string_line(b"\"\\101\\0\"").unwrap(), b"A\0");
        assert_eq!(decode_raw_unicode_escape(b"a\\u0041\\\\u0041").unwrap(), b"aA\\\\u0041");
        assert!(decode_raw_unicode_escape(b"\\u12").is_err());
        assert_eq!(decode_raw_unicode_escape(b"\xe9").unwrap(), "\u{e9}".as_bytes());
        assert!(valid_utf8_surrogatepass(b"a\xed\xa0\x80b"));
        assert!(!valid_utf8_surrogatepass(b"a\xffb"));
    }
}
