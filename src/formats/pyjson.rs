//! JSON as CPython's `json` module reads it, for configs whose loader is Python.
//!
//! Keras (`keras.src.saving.saving_lib._model_from_config`: `json.loads` of the bytes of a
//! `.keras` zip's `config.json`; `legacy_h5_format` and `keras_metadata.pb`:
//! `json_utils.decode`, i.e. `json.loads` of a str) and transformers (`tokenizer_config.json`,
//! `chat_template.json`: `json.load` of a text file) decide with Python's parser, which
//! accepts more than RFC 8259 and serde_json (`serde_json` stays the reference where the
//! loader is Rust, as for safetensors headers). Matched here, from CPython 3.11's
//! `Lib/json/__init__.py` (`loads`, `detect_encoding`), `Lib/json/decoder.py`
//! (`JSONDecoder.decode`: whitespace is only ` \t\n\r`, "Extra data" after the value) and
//! `Modules/_json.c` (`scan_once_unicode`, `scanstring_unicode`, `_match_number_unicode`,
//! `_parse_object_unicode`, `_parse_array_unicode`):
//! - `NaN`, `Infinity` and `-Infinity` are numbers (kept here as `null`: no check reads them);
//! - integers have any length (kept as the nearest `f64`, `null` past its range), floats
//!   overflow to infinity (`null`);
//! - `\uXXXX` escapes may leave lone surrogates (a high surrogate followed by a `\u` low
//!   surrogate is combined, as `scanstring_unicode` does); lone surrogates become U+FFFD;
//! - control characters below 0x20 inside strings are refused (`strict=True`), 0x7f is not;
//! - duplicate keys: the last value wins (a `dict`), which is what `serde_json::Map` does;
//! - `json.loads(bytes)` picks UTF-8, UTF-8 with BOM, UTF-16 or UTF-32 by
//!   `detect_encoding` and decodes with `surrogatepass` (UTF-8-encoded surrogates pass);
//!   a str that still starts with U+FEFF is refused;
//! - nesting is bounded by Python's recursion limit (CPython 3.11: a little under 1000 with
//!   the default limit); here by [`MAX_DEPTH`], with an error past it, never a stack overflow.
//!
//! Deliberate supersets (a file modelgate reads that Python refuses is only judged, never
//! allowed because of it): integers longer than `sys.int_info.default_max_str_digits`
//! (4300 digits, Python 3.11+) and nesting between Python's effective limit and
//! [`MAX_DEPTH`].
//!
//! Documents are read in two steps: [`skeleton`] validates the whole text without building
//! anything and records where each top-level value is, then [`Doc::value`] builds only the
//! values a check needs, under a node budget (a 100 MB `tokenizer.json` costs no tree).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use serde_json::{Map, Number, Value};
use std::borrow::Cow;

/// Deepest nesting of arrays and objects accepted (Python 3.11 stops a little below 1000).
pub const MAX_DEPTH: usize = 1000;
/// Most values built for one document (arrays, objects, strings, numbers each count one).
pub const MAX_NODES: usize = 4_000_000;

/// Why a document was refused, with the offset (in the decoded text, bytes) where it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub offset: usize,
    pub kind: ErrorKind,
    pub msg: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Python refuses it too.
    Invalid,
    /// Nesting deeper than [`MAX_DEPTH`] or more values than [`MAX_NODES`]: modelgate cannot
    /// judge it (Python may still read it).
    Budget,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.msg, self.offset)
    }
}

fn invalid(offset: usize, msg: impl Into<String>) -> Error {
    Error { offset, kind: ErrorKind::Invalid, msg: msg.into() }
}

/// A document decoded to text as Python would: generalized UTF-8, where lone surrogates
/// are kept as their 3-byte encodings (`ED A0 80`..`ED BF BF`).
pub struct Doc<'a> {
    text: Cow<'a, [u8]>,
}

/// Where one top-level member's value is in a [`Doc`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub key: String,
    pub start: usize,
    pub end: usize,
    /// The value is a string (`"..."`).
    pub is_string: bool,
}

/// What [`skeleton`] found: the top-level object's members (duplicates kept, in order), or
/// `None` when the document is valid JSON but not an object.
pub struct Skeleton {
    pub members: Option<Vec<Member>>,
}

impl Skeleton {
    /// The member Python's `dict` keeps for `key` (the last one).
    pub fn get(&self, key: &str) -> Option<&Member> {
        self.members.as_ref()?.iter().rev().find(|m| m.key == key)
    }
}

/// `json.loads(bytes)`: pick the encoding as `json.detect_encoding` does and decode with
/// `surrogatepass`.
pub fn decode_bytes(b: &[u8]) -> Result<Doc<'_>, Error> {
    let enc = detect_encoding(b);
    let text: Cow<'_, [u8]> = match enc {
        Encoding::Utf8 => {
            check_utf8_surrogatepass(b)?;
            Cow::Borrowed(b)
        }
        Encoding::Utf8Sig => {
            let rest = b.get(3..).unwrap_or_default();
            check_utf8_surrogatepass(rest)?;
            Cow::Borrowed(rest)
        }
        Encoding::Utf16 { be, bom } => Cow::Owned(utf16(b.get(if bom { 2 } else { 0 }..).unwrap_or_default(), be)?),
        Encoding::Utf32 { be, bom } => Cow::Owned(utf32(b.get(if bom { 4 } else { 0 }..).unwrap_or_default(), be)?),
    };
    str_doc(text)
}

/// `json.loads(str)` of a Rust string (no lone surrogates possible).
pub fn decode_str(s: &str) -> Result<Doc<'_>, Error> {
    str_doc(Cow::Borrowed(s.as_bytes()))
}

fn str_doc(text: Cow<'_, [u8]>) -> Result<Doc<'_>, Error> {
    // `json.loads`: "Unexpected UTF-8 BOM (decode using utf-8-sig)".
    if text.starts_with("\u{feff}".as_bytes()) {
        return Err(invalid(0, "unexpected byte order mark"));
    }
    Ok(Doc { text })
}

/// `json.loads(bytes)` whole: the document's value, built under the node budget.
pub fn loads_bytes(b: &[u8]) -> Result<Value, Error> {
    let doc = decode_bytes(b)?;
    doc.parse_all()
}

/// `json.loads(str)` whole.
pub fn loads_str(s: &str) -> Result<Value, Error> {
    decode_str(s)?.parse_all()
}

impl Doc<'_> {
    /// The decoded text (generalized UTF-8).
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// Validate the whole document; record the top-level members without building values.
    pub fn skeleton(&self) -> Result<Skeleton, Error> {
        let mut p = Parser { b: &self.text, i: 0, nodes: 0 };
        p.ws();
        let mut members = Vec::new();
        let object = p.peek() == Some(b'{');
        p.value(0, false, Some(&mut members))?;
        let members = object.then_some(members);
        p.ws();
        if p.i != p.b.len() {
            return Err(invalid(p.i, "extra data after the document"));
        }
        Ok(Skeleton { members })
    }

    /// Build the value of a top-level member found by [`Doc::skeleton`].
    pub fn value(&self, m: &Member) -> Result<Value, Error> {
        let b = self.text.get(..m.end).unwrap_or_default();
        let mut p = Parser { b, i: m.start, nodes: 0 };
        Ok(p.value(1, true, None)?.unwrap_or(Value::Null))
    }

    /// Build the whole document (after validating it as [`Doc::skeleton`] does).
    pub fn parse_all(&self) -> Result<Value, Error> {
        let mut p = Parser { b: &self.text, i: 0, nodes: 0 };
        p.ws();
        let v = p.value(0, true, None)?.unwrap_or(Value::Null);
        p.ws();
        if p.i != p.b.len() {
            return Err(invalid(p.i, "extra data after the document"));
        }
        Ok(v)
    }
}

/// The start of a document as text, decoded as `json.loads(bytes)` would (lossy, a cut
/// character at the end dropped): for sniffing.
pub fn head_text(head: &[u8]) -> String {
    let even = |b: &[u8], unit: usize| b.get(..b.len() - b.len() % unit).unwrap_or_default().to_vec();
    let decoded = match detect_encoding(head) {
        Encoding::Utf8 => head.to_vec(),
        Encoding::Utf8Sig => head.get(3..).unwrap_or_default().to_vec(),
        Encoding::Utf16 { be, bom } => {
            utf16(&even(head.get(if bom { 2 } else { 0 }..).unwrap_or_default(), 2), be).unwrap_or_default()
        }
        Encoding::Utf32 { be, bom } => {
            utf32(&even(head.get(if bom { 4 } else { 0 }..).unwrap_or_default(), 4), be).unwrap_or_default()
        }
    };
    lossy_surrogates(&decoded)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Utf8,
    Utf8Sig,
    Utf16 { be: bool, bom: bool },
    Utf32 { be: bool, bom: bool },
}

/// `json.detect_encoding`.
fn detect_encoding(b: &[u8]) -> Encoding {
    if b.starts_with(b"\x00\x00\xfe\xff") {
        return Encoding::Utf32 { be: true, bom: true };
    }
    if b.starts_with(b"\xff\xfe\x00\x00") {
        return Encoding::Utf32 { be: false, bom: true };
    }
    if b.starts_with(b"\xfe\xff") {
        return Encoding::Utf16 { be: true, bom: true };
    }
    if b.starts_with(b"\xff\xfe") {
        return Encoding::Utf16 { be: false, bom: true };
    }
    if b.starts_with(b"\xef\xbb\xbf") {
        return Encoding::Utf8Sig;
    }
    match b {
        [0, 0, _, _, ..] => Encoding::Utf32 { be: true, bom: false },
        [0, _, _, _, ..] => Encoding::Utf16 { be: true, bom: false },
        [_, 0, 0, 0, ..] => Encoding::Utf32 { be: false, bom: false },
        [_, 0, _, _, ..] => Encoding::Utf16 { be: false, bom: false },
        [0, _] => Encoding::Utf16 { be: true, bom: false },
        [_, 0] => Encoding::Utf16 { be: false, bom: false },
        _ => Encoding::Utf8,
    }
}

/// True when `b` starts with a UTF-8 encoded surrogate (what `surrogatepass` lets through).
fn encoded_surrogate(b: &[u8]) -> bool {
    matches!(b, [0xed, 0xa0..=0xbf, 0x80..=0xbf, ..])
}

/// UTF-8 as Python's decoder with `surrogatepass` reads it.
fn check_utf8_surrogatepass(b: &[u8]) -> Result<(), Error> {
    let mut at = 0;
    loop {
        let rest = b.get(at..).unwrap_or_default();
        match std::str::from_utf8(rest) {
            Ok(_) => return Ok(()),
            Err(e) => {
                let bad = at + e.valid_up_to();
                if encoded_surrogate(b.get(bad..).unwrap_or_default()) {
                    at = bad + 3;
                } else {
                    return Err(invalid(bad, "invalid utf-8"));
                }
            }
        }
    }
}

/// Append code point `c` (surrogates included) in generalized UTF-8.
fn push_cp(out: &mut Vec<u8>, c: u32) {
    match c {
        0..=0x7f => out.push(c as u8),
        0x80..=0x7ff => out.extend([0xc0 | (c >> 6) as u8, 0x80 | (c & 0x3f) as u8]),
        0x800..=0xffff => out.extend([0xe0 | (c >> 12) as u8, 0x80 | ((c >> 6) & 0x3f) as u8, 0x80 | (c & 0x3f) as u8]),
        _ => out.extend([
            0xf0 | (c >> 18) as u8,
            0x80 | ((c >> 12) & 0x3f) as u8,
            0x80 | ((c >> 6) & 0x3f) as u8,
            0x80 | (c & 0x3f) as u8,
        ]),
    }
}

/// UTF-16 with `surrogatepass`: pairs combine, lone surrogates are kept.
fn utf16(b: &[u8], be: bool) -> Result<Vec<u8>, Error> {
    if b.len() % 2 != 0 {
        return Err(invalid(b.len(), "truncated utf-16 data"));
    }
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| {
            let pair = [c.first().copied().unwrap_or(0), c.get(1).copied().unwrap_or(0)];
            if be {
                u16::from_be_bytes(pair)
            } else {
                u16::from_le_bytes(pair)
            }
        })
        .collect();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&u) = units.get(i) {
        let next = units.get(i + 1).copied();
        match (u, next) {
            (0xd800..=0xdbff, Some(l @ 0xdc00..=0xdfff)) => {
                push_cp(&mut out, 0x10000 + ((u32::from(u) - 0xd800) << 10) + (u32::from(l) - 0xdc00));
                i += 2;
            }
            _ => {
                push_cp(&mut out, u32::from(u));
                i += 1;
            }
        }
    }
    Ok(out)
}

/// UTF-32 with `surrogatepass`.
fn utf32(b: &[u8], be: bool) -> Result<Vec<u8>, Error> {
    if b.len() % 4 != 0 {
        return Err(invalid(b.len(), "truncated utf-32 data"));
    }
    let mut out = Vec::with_capacity(b.len());
    for (n, c) in b.chunks_exact(4).enumerate() {
        let a: [u8; 4] = c.try_into().unwrap_or_default();
        let v = if be { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) };
        if v > 0x10ffff {
            return Err(invalid(n * 4, "code point out of range in utf-32 data"));
        }
        push_cp(&mut out, v);
    }
    Ok(out)
}

/// An open container: its items so far (an object also holds the pending key and whether
/// it is the top-level object whose members are recorded).
enum Frame {
    Array(Vec<Value>),
    Object(Map<String, Value>, String, bool),
}

struct Parser<'b> {
    b: &'b [u8],
    i: usize,
    nodes: usize,
}

type Res<T> = Result<T, Error>;

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// `decoder.WHITESPACE`: `[ \t\n\r]*`.
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn count(&mut self, build: bool) -> Res<()> {
        if build {
            self.nodes += 1;
            if self.nodes > MAX_NODES {
                return Err(Error {
                    offset: self.i,
                    kind: ErrorKind::Budget,
                    msg: format!("more than {MAX_NODES} values"),
                });
            }
        }
        Ok(())
    }

    fn starts(&self, lit: &[u8]) -> bool {
        self.b.get(self.i..).is_some_and(|r| r.starts_with(lit))
    }

    /// `scan_once_unicode`, `_parse_object_unicode` and `_parse_array_unicode`, with an
    /// explicit stack instead of recursion. `members` records a top-level object's members.
    fn value(&mut self, depth0: usize, build: bool, mut members: Option<&mut Vec<Member>>) -> Res<Option<Value>> {
        let mut stack: Vec<Frame> = Vec::new();
        'value: loop {
            self.count(build)?;
            let at = self.i;
            let Some(c) = self.peek() else { return Err(invalid(at, "expecting value")) };
            let mut v = match c {
                b'"' => self.string(build)?.map(Value::String),
                b'{' | b'[' => {
                    if depth0 + stack.len() >= MAX_DEPTH {
                        return Err(Error {
                            offset: at,
                            kind: ErrorKind::Budget,
                            msg: format!("arrays and objects nested deeper than {MAX_DEPTH}"),
                        });
                    }
                    self.i += 1;
                    self.ws();
                    if c == b'[' {
                        if self.peek() == Some(b']') {
                            self.i += 1;
                            Some(Value::Array(Vec::new()))
                        } else {
                            stack.push(Frame::Array(Vec::new()));
                            continue 'value;
                        }
                    } else if self.peek() == Some(b'}') {
                        self.i += 1;
                        Some(Value::Object(Map::new()))
                    } else {
                        let top = stack.is_empty() && members.is_some();
                        let key = self.key(build || top)?;
                        if let (true, Some(m)) = (top, members.as_deref_mut()) {
                            m.push(Member {
                                key: key.clone(),
                                start: self.i,
                                end: self.i,
                                is_string: self.peek() == Some(b'"'),
                            });
                        }
                        stack.push(Frame::Object(Map::new(), key, top));
                        continue 'value;
                    }
                }
                b'n' if self.starts(b"null") => {
                    self.i += 4;
                    Some(Value::Null)
                }
                b't' if self.starts(b"true") => {
                    self.i += 4;
                    Some(Value::Bool(true))
                }
                b'f' if self.starts(b"false") => {
                    self.i += 5;
                    Some(Value::Bool(false))
                }
                b'N' if self.starts(b"NaN") => {
                    self.i += 3;
                    Some(Value::Null)
                }
                b'I' if self.starts(b"Infinity") => {
                    self.i += 8;
                    Some(Value::Null)
                }
                b'-' if self.starts(b"-Infinity") => {
                    self.i += 9;
                    Some(Value::Null)
                }
                b'-' | b'0'..=b'9' => self.number()?,
                _ => return Err(invalid(at, "expecting value")),
            };
            // A value is complete: hand it to the containers it closes.
            loop {
                if !build {
                    v = None;
                }
                match stack.last_mut() {
                    None => return Ok(v),
                    Some(Frame::Array(items)) => {
                        items.extend(v.take());
                        self.ws();
                        match self.peek() {
                            Some(b',') => {
                                self.i += 1;
                                self.ws();
                                continue 'value;
                            }
                            Some(b']') => {
                                self.i += 1;
                                if let Some(Frame::Array(items)) = stack.pop() {
                                    v = Some(Value::Array(items));
                                }
                            }
                            _ => return Err(invalid(self.i, "expecting ',' delimiter")),
                        }
                    }
                    Some(Frame::Object(map, key, top)) => {
                        if *top {
                            if let Some(m) = members.as_deref_mut().and_then(|m| m.last_mut()) {
                                m.end = self.i;
                            }
                        }
                        if let Some(v) = v.take() {
                            map.insert(std::mem::take(key), v);
                        }
                        self.ws();
                        match self.peek() {
                            Some(b',') => {
                                self.i += 1;
                                self.ws();
                                let record = *top;
                                *key = self.key(build || record)?;
                                if let (true, Some(m)) = (record, members.as_deref_mut()) {
                                    m.push(Member {
                                        key: key.clone(),
                                        start: self.i,
                                        end: self.i,
                                        is_string: self.peek() == Some(b'"'),
                                    });
                                }
                                continue 'value;
                            }
                            Some(b'}') => {
                                self.i += 1;
                                if let Some(Frame::Object(map, ..)) = stack.pop() {
                                    v = Some(Value::Object(map));
                                }
                            }
                            _ => return Err(invalid(self.i, "expecting ',' delimiter")),
                        }
                    }
                }
            }
        }
    }

    /// A member's key, the `:` and the whitespace after it.
    fn key(&mut self, build: bool) -> Res<String> {
        if self.peek() != Some(b'"') {
            return Err(invalid(self.i, "expecting property name enclosed in double quotes"));
        }
        let key = self.string(build)?.unwrap_or_default();
        self.ws();
        if self.peek() != Some(b':') {
            return Err(invalid(self.i, "expecting ':' delimiter"));
        }
        self.i += 1;
        self.ws();
        Ok(key)
    }

    /// `_match_number_unicode`: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?`.
    fn number(&mut self) -> Res<Option<Value>> {
        let start = self.i;
        let digit = |p: &Self, at: usize| p.b.get(at).is_some_and(u8::is_ascii_digit);
        let mut i = start;
        if self.b.get(i) == Some(&b'-') {
            i += 1;
        }
        match self.b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while digit(self, i) {
                    i += 1;
                }
            }
            _ => return Err(invalid(start, "expecting value")),
        }
        let mut float = false;
        if self.b.get(i) == Some(&b'.') && digit(self, i + 1) {
            float = true;
            i += 1;
            while digit(self, i) {
                i += 1;
            }
        }
        if matches!(self.b.get(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(self.b.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if digit(self, j) {
                float = true;
                while digit(self, j) {
                    j += 1;
                }
                i = j;
            }
        }
        self.i = i;
        let text = std::str::from_utf8(self.b.get(start..i).unwrap_or_default()).unwrap_or("0");
        if !float {
            if let Ok(n) = text.parse::<i64>() {
                return Ok(Some(Value::Number(n.into())));
            }
            if let Ok(n) = text.parse::<u64>() {
                return Ok(Some(Value::Number(n.into())));
            }
        }
        // Python: an exact int or a float that may overflow to inf; here the nearest f64.
        let f = text.parse::<f64>().unwrap_or(f64::NAN);
        Ok(Some(Number::from_f64(f).map_or(Value::Null, Value::Number)))
    }

    /// `scanstring_unicode` with `strict=True`, from the opening quote.
    fn string(&mut self, build: bool) -> Res<Option<String>> {
        let open = self.i;
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            // Copy a run without quotes, backslashes or control characters.
            let run_start = self.i;
            while let Some(&c) = self.b.get(self.i) {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            if build {
                out.extend_from_slice(self.b.get(run_start..self.i).unwrap_or_default());
            }
            match self.peek() {
                None => return Err(invalid(open, "unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(build.then(|| lossy_surrogates(&out)));
                }
                Some(b'\\') => {}
                Some(_) => return Err(invalid(self.i, "invalid control character")),
            }
            let esc_at = self.i;
            let Some(e) = self.b.get(self.i + 1).copied() else {
                return Err(invalid(open, "unterminated string"));
            };
            self.i += 2;
            let simple = match e {
                b'"' => Some(b'"'),
                b'\\' => Some(b'\\'),
                b'/' => Some(b'/'),
                b'b' => Some(8),
                b'f' => Some(12),
                b'n' => Some(b'\n'),
                b'r' => Some(b'\r'),
                b't' => Some(b'\t'),
                b'u' => None,
                _ => return Err(invalid(esc_at, "invalid \\escape")),
            };
            if let Some(c) = simple {
                out.push(c);
                continue;
            }
            let mut c = self.hex4(esc_at)?;
            if (0xd800..=0xdbff).contains(&c)
                && self.b.get(self.i) == Some(&b'\\')
                && self.b.get(self.i + 1) == Some(&b'u')
            {
                let save = self.i;
                self.i += 2;
                let c2 = self.hex4(save)?;
                if (0xdc00..=0xdfff).contains(&c2) {
                    c = 0x10000 + ((c - 0xd800) << 10) + (c2 - 0xdc00);
                } else {
                    self.i = save;
                }
            }
            push_cp(&mut out, c);
        }
    }

    /// Four hex digits after `\u` (the escape starts at `esc_at`).
    fn hex4(&mut self, esc_at: usize) -> Res<u32> {
        let digits = self.b.get(self.i..self.i + 4).ok_or_else(|| invalid(esc_at, "invalid \\uXXXX escape"))?;
        let mut v = 0u32;
        for d in digits {
            let x = (*d as char).to_digit(16).ok_or_else(|| invalid(esc_at, "invalid \\uXXXX escape"))?;
            v = v << 4 | x;
        }
        // A string must still be closed after the escape (`scanstring_unicode`: `end >= len`).
        if self.i + 4 >= self.b.len() {
            return Err(invalid(esc_at, "invalid \\uXXXX escape"));
        }
        self.i += 4;
        Ok(v)
    }
}

/// Generalized UTF-8 to a Rust string: each lone surrogate becomes U+FFFD.
fn lossy_surrogates(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(_) => {
            let mut out = String::with_capacity(b.len());
            let mut rest = b;
            while !rest.is_empty() {
                match std::str::from_utf8(rest) {
                    Ok(s) => {
                        out.push_str(s);
                        break;
                    }
                    Err(e) => {
                        let (ok, bad) = rest.split_at(e.valid_up_to());
                        out.push_str(std::str::from_utf8(ok).unwrap_or_default());
                        out.push('\u{fffd}');
                        let skip = if encoded_surrogate(bad) { 3 } else { e.error_len().unwrap_or(bad.len()).max(1) };
                        rest = bad.get(skip..).unwrap_or_default();
                    }
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(s: &str) -> Value {
        loads_bytes(s.as_bytes()).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn bad(s: &[u8]) -> ErrorKind {
        loads_bytes(s).err().unwrap_or_else(|| panic!("{s:?} was accepted")).kind
    }

    #[test]
    fn python_extensions() {
        assert_eq!(ok("[NaN, Infinity, -Infinity]"), json!([null, null, null]));
        assert_eq!(ok("1e400"), Value::Null);
        assert_eq!(ok("123456789012345678901234567890"), json!(1.2345678901234568e29));
        assert_eq!(ok("18446744073709551615"), json!(18446744073709551615u64));
        assert_eq!(ok(r#""\ud800x""#), json!("\u{fffd}x"));
        assert_eq!(ok(r#""\ud83d\ude00""#), json!("\u{1f600}"));
        assert_eq!(ok(r#""\ud800\u0041""#), json!("\u{fffd}A"));
        assert_eq!(ok(r#"{"a": 1, "a": 2}"#), json!({"a": 2}));
        assert_eq!(ok(" \t\r\n{}\n "), json!({}));
        assert_eq!(ok("\"\x7f\""), json!("\x7f"));
    }

    #[test]
    fn python_refusals() {
        for s in [
            &b"[1,]"[..],
            b"{\"a\":1,}",
            b"nan",
            b"+1",
            b"01",
            b".5",
            b"1.",
            b"\"\x01\"",
            b"\"\\x41\"",
            b"\"\\u12\"",
            b"\"\\ud800\\uzzzz\"",
            b"'a'",
            b"\x0c1",
            b"1 2",
            b"",
            b"\xef\xbb\xbf\xef\xbb\xbf{}",
            b"\"\xff\"",
        ] {
            assert_eq!(bad(s), ErrorKind::Invalid, "{s:?}");
        }
    }

    #[test]
    fn encodings() {
        let doc = "{\"class_name\": \"Lambda\"}";
        let want = json!({"class_name": "Lambda"});
        let le: Vec<u8> = doc.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let be: Vec<u8> = doc.encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert_eq!(loads_bytes(&le).unwrap(), want);
        assert_eq!(loads_bytes(&be).unwrap(), want);
        assert_eq!(loads_bytes(&[&b"\xff\xfe"[..], &le].concat()).unwrap(), want);
        let u32le: Vec<u8> = doc.chars().flat_map(|c| (c as u32).to_le_bytes()).collect();
        assert_eq!(loads_bytes(&u32le).unwrap(), want);
        assert_eq!(loads_bytes(&[&b"\xef\xbb\xbf"[..], doc.as_bytes()].concat()).unwrap(), want);
        // surrogatepass: an encoded lone surrogate in UTF-8 bytes is accepted.
        assert_eq!(loads_bytes(b"\"a\xed\xa0\x80\"").unwrap(), json!("a\u{fffd}"));
        // A str starting with a BOM is refused.
        assert!(loads_str("\u{feff}{}").is_err());
    }

    #[test]
    fn depth_is_bounded() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(loads_bytes(deep(MAX_DEPTH).as_bytes()).is_ok());
        assert_eq!(bad(deep(MAX_DEPTH + 1).as_bytes()), ErrorKind::Budget);
        assert_eq!(bad("[".repeat(1_000_000).as_bytes()), ErrorKind::Budget);
        let deep_obj = format!("{}1{}", "{\"a\":".repeat(5000), "}".repeat(5000));
        assert_eq!(bad(deep_obj.as_bytes()), ErrorKind::Budget);
    }

    #[test]
    fn skeleton_records_members() {
        let d = decode_bytes(br#"{"a": [1, {"b": 2}], "c": "x", "a": "last"}"#).unwrap();
        let s = d.skeleton().unwrap();
        let a = s.get("a").unwrap();
        assert!(a.is_string);
        assert_eq!(d.value(a).unwrap(), json!("last"));
        assert_eq!(d.value(s.get("c").unwrap()).unwrap(), json!("x"));
        assert!(decode_bytes(b"[1]").unwrap().skeleton().unwrap().members.is_none());
        assert!(decode_bytes(b"{\"a\": 1} x").unwrap().skeleton().is_err());
    }
}
