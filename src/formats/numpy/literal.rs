//! The Python literals `ast.literal_eval` accepts, parsed as CPython 3.11's tokenizer and
//! `ast.literal_eval` read them (the `.npy` header is such a literal). Matched behaviour:
//! - newlines: `\r\n` and `\r` are newlines (the tokenizer translates them); inside brackets
//!   they and comments are insignificant; a backslash-newline joins lines outside strings.
//! - strings: prefixes `r u b br rb` in any case (`f` strings are not literals), `'` `"` and
//!   triple quotes, implicit concatenation (str and bytes cannot mix), every escape of
//!   `Objects/unicodeobject.c:_PyUnicode_DecodeUnicodeEscapeInternal` and
//!   `Objects/bytesobject.c:_PyBytes_DecodeEscape` (octal up to three digits, `\x` exactly two,
//!   `\u`, `\U` up to U+10FFFF, `\N{NAME}`, unknown escapes kept with their backslash);
//!   `\N{...}` needs Unicode's name table, which is not carried: such a literal is refused.
//! - numbers: decimal, `0x` `0o` `0b` with `_` separators (leading zeros only for zero),
//!   floats, imaginary numbers; `ast.literal_eval` also takes a unary `+`/`-` on a number and
//!   `real +/- imaginary`.
//! - names: `True`, `False`, `None`, `...`, and the call `set()`.
//! - `numpy.lib.format._filter_header`: for version 1 and 2 headers that do not parse, an
//!   `L` name right after a number (Python 2's long suffix) is dropped and the text parsed again.
//!
//! Anything else is refused: a header numpy would refuse too, or one whose meaning this
//! parser cannot be sure of (non-ASCII names, which Python NFKC-normalises).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

/// CPython's tokenizer allows 200 nested brackets (MAXLEVEL).
const MAX_DEPTH: usize = 200;
const MAX_ITEMS: usize = 1 << 20;
const MAX_SET: usize = 1000;

/// A Python value `ast.literal_eval` can return.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Str(String),
    Bytes(Vec<u8>),
    /// An `int`; `BigInt` when it does not fit (only its sign is kept).
    Int(i128),
    BigInt(bool),
    Float(f64),
    Complex(f64, f64),
    Bool(bool),
    None,
    Ellipsis,
    Tuple(Vec<Lit>),
    List(Vec<Lit>),
    Set(Vec<Lit>),
    Dict(Vec<(Lit, Lit)>),
}

impl Lit {
    pub fn type_name(&self) -> &'static str {
        match self {
            Lit::Str(_) => "str",
            Lit::Bytes(_) => "bytes",
            Lit::Int(_) | Lit::BigInt(_) => "int",
            Lit::Float(_) => "float",
            Lit::Complex(..) => "complex",
            Lit::Bool(_) => "bool",
            Lit::None => "NoneType",
            Lit::Ellipsis => "ellipsis",
            Lit::Tuple(_) => "tuple",
            Lit::List(_) => "list",
            Lit::Set(_) => "set",
            Lit::Dict(_) => "dict",
        }
    }

    /// `isinstance(x, int)` (a bool is an int) with its value.
    pub fn as_int(&self) -> Option<i128> {
        match self {
            Lit::Int(i) => Some(*i),
            Lit::Bool(b) => Some(i128::from(*b)),
            _ => None,
        }
    }

    /// Python's `hash()` works on it (a dict key or set element must be hashable).
    fn hashable(&self) -> bool {
        match self {
            Lit::List(_) | Lit::Set(_) | Lit::Dict(_) => false,
            Lit::Tuple(items) => items.iter().all(Lit::hashable),
            _ => true,
        }
    }

    /// Python's `==` for the values a dict key can be (numbers compare across types).
    pub fn py_eq(&self, other: &Lit) -> bool {
        fn num(l: &Lit) -> Option<(f64, f64, Option<i128>)> {
            match l {
                Lit::Int(i) => Some((*i as f64, 0.0, Some(*i))),
                Lit::Bool(b) => Some((f64::from(u8::from(*b)), 0.0, Some(i128::from(*b)))),
                Lit::Float(f) => Some((*f, 0.0, None)),
                Lit::Complex(r, i) => Some((*r, *i, None)),
                _ => None,
            }
        }
        match (self, other) {
            (Lit::Str(a), Lit::Str(b)) => a == b,
            (Lit::Bytes(a), Lit::Bytes(b)) => a == b,
            (Lit::None, Lit::None) | (Lit::Ellipsis, Lit::Ellipsis) => true,
            (Lit::Tuple(a), Lit::Tuple(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.py_eq(y)),
            (Lit::BigInt(_), _) | (_, Lit::BigInt(_)) => false,
            _ => match (num(self), num(other)) {
                (Some((_, _, Some(x))), Some((_, _, Some(y)))) => x == y,
                (Some((ar, ai, _)), Some((br, bi, _))) => ar == br && ai == bi,
                _ => false,
            },
        }
    }
}

/// Parse `text` as `ast.literal_eval(text)` does. `filter_longs` applies numpy's
/// `_filter_header` (drop an `L` name that follows a number).
pub fn literal_eval(text: &str, filter_longs: bool) -> Result<Lit, String> {
    if text.contains('\0') {
        return Err("the header contains a NUL character".into());
    }
    // ast.literal_eval strips leading spaces and tabs; the tokenizer turns \r\n and \r into \n.
    let text = text.trim_start_matches([' ', '\t']).replace("\r\n", "\n").replace('\r', "\n");
    let tokens = tokenize(&text, filter_longs)?;
    let mut p = Parser { t: &tokens, i: 0, items: 0 };
    let v = p.expr(0)?;
    match p.t.get(p.i) {
        None => Ok(v),
        Some(t) => Err(format!("unexpected {} after the literal", t.describe())),
    }
}

/// numpy's header reading: `ast.literal_eval`, and for versions 1 and 2 a second try through
/// `_filter_header` when the first one fails.
pub fn parse_header_literal(text: &str, version: u8) -> Result<Lit, String> {
    match literal_eval(text, false) {
        Ok(v) => Ok(v),
        Err(e) if version <= 2 => literal_eval(text, true).map_err(|_| e),
        Err(e) => Err(e),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Str(String),
    Bytes(Vec<u8>),
    Int(i128),
    BigInt,
    Float(f64),
    Imag(f64),
    Name(String),
    Op(char),
    Ellipsis,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Str(_) | Tok::Bytes(_) => "string".into(),
            Tok::Int(_) | Tok::BigInt | Tok::Float(_) | Tok::Imag(_) => "number".into(),
            Tok::Name(n) => format!("name '{n}'"),
            Tok::Op(c) => format!("'{c}'"),
            Tok::Ellipsis => "'...'".into(),
        }
    }
}

/// Python's whitespace between tokens (space, tab, form feed).
fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\x0c'
}

fn tokenize(text: &str, filter_longs: bool) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<Tok> = Vec::new();
    let mut i = 0;
    let mut depth = 0usize;
    let mut after_number = false;
    while let Some(&c) = chars.get(i) {
        if is_blank(c) {
            i += 1;
            continue;
        }
        if c == '#' {
            while chars.get(i).is_some_and(|&c| c != '\n') {
                i += 1;
            }
            continue;
        }
        if c == '\n' {
            // Inside brackets a newline is insignificant; outside, the literal must be complete
            // (only blank lines and comments may follow).
            if depth == 0 && !out.is_empty() {
                let rest: String = chars.get(i..).unwrap_or(&[]).iter().collect();
                if rest.lines().all(|l| {
                    let l = l.trim_start_matches(is_blank);
                    l.is_empty() || l.starts_with('#')
                }) {
                    break;
                }
                return Err("text after the end of the literal's line".into());
            }
            i += 1;
            continue;
        }
        if c == '\\' {
            if chars.get(i + 1) == Some(&'\n') {
                i += 2;
                if chars.get(i..).unwrap_or(&[]).iter().all(|&c| is_blank(c)) {
                    return Err("the header ends in a line continuation".into());
                }
                continue;
            }
            return Err("a backslash outside a string".into());
        }
        if out.len() > MAX_ITEMS {
            return Err("the header has too many tokens".into());
        }
        let was_number = after_number;
        after_number = false;
        // strings, with their prefix
        if let Some((prefix_len, raw, bytes)) = string_prefix(&chars, i) {
            let (tok, next) = string(&chars, i + prefix_len, raw, bytes)?;
            i = next;
            // implicit concatenation
            match (out.last_mut(), tok) {
                (Some(Tok::Str(prev)), Tok::Str(s)) => prev.push_str(&s),
                (Some(Tok::Bytes(prev)), Tok::Bytes(b)) => prev.extend_from_slice(&b),
                (Some(Tok::Str(_)), Tok::Bytes(_)) | (Some(Tok::Bytes(_)), Tok::Str(_)) => {
                    return Err("bytes and str literals cannot be concatenated".into())
                }
                (_, tok) => out.push(tok),
            }
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let (tok, next) = number(&chars, i, filter_longs)?;
            i = next;
            out.push(tok);
            after_number = true;
            continue;
        }
        if c.is_alphabetic() || c == '_' || !c.is_ascii() {
            let start = i;
            while chars.get(i).is_some_and(|&c| c.is_alphanumeric() || c == '_' || !c.is_ascii()) {
                i += 1;
            }
            let name: String = chars.get(start..i).unwrap_or(&[]).iter().collect();
            if !name.is_ascii() {
                return Err(format!("the non-ASCII name {name:?} (Python would NFKC-normalise it)"));
            }
            if filter_longs && was_number && name == "L" {
                // numpy.lib.format._filter_header
                after_number = false;
                continue;
            }
            out.push(Tok::Name(name));
            continue;
        }
        if c == '.' && chars.get(i + 1) == Some(&'.') && chars.get(i + 2) == Some(&'.') {
            out.push(Tok::Ellipsis);
            i += 3;
            continue;
        }
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.checked_sub(1).ok_or("unbalanced closing bracket")?,
            ',' | ':' | '+' | '-' => {}
            other => return Err(format!("unexpected character {other:?} in the header")),
        }
        if depth > MAX_DEPTH {
            return Err("brackets nested too deeply".into());
        }
        out.push(Tok::Op(c));
        i += 1;
    }
    if depth != 0 {
        return Err("unclosed bracket".into());
    }
    Ok(out)
}

/// A string prefix (`r`, `b`, `u`, `br`, `rb` in any case) followed by a quote at `i`:
/// returns the prefix length and whether the string is raw and bytes.
fn string_prefix(chars: &[char], i: usize) -> Option<(usize, bool, bool)> {
    let mut raw = false;
    let mut bytes = false;
    let mut unicode = false;
    let mut n = 0;
    while let Some(&c) = chars.get(i + n) {
        match c.to_ascii_lowercase() {
            'r' if !raw && !unicode => raw = true,
            'b' if !bytes && !unicode => bytes = true,
            'u' if n == 0 => unicode = true,
            '\'' | '"' => return Some((n, raw, bytes)),
            _ => return None,
        }
        n += 1;
        if n > 2 {
            return None;
        }
    }
    None
}

/// One string literal whose opening quote is at `i`; returns its value and the index after it.
fn string(chars: &[char], i: usize, raw: bool, bytes: bool) -> Result<(Tok, usize), String> {
    let q = *chars.get(i).ok_or("unterminated string")?;
    let triple = chars.get(i + 1) == Some(&q) && chars.get(i + 2) == Some(&q);
    let mut j = if triple { i + 3 } else { i + 1 };
    let body_start = j;
    // find the end: a backslash always takes the next character with it (raw strings too)
    loop {
        let c = *chars.get(j).ok_or("unterminated string")?;
        if c == '\\' {
            if chars.get(j + 1).is_none() {
                return Err("unterminated string".into());
            }
            j += 2;
            continue;
        }
        if c == '\n' && !triple {
            return Err("unterminated string (a newline in a one-line string)".into());
        }
        if c == q && (!triple || (chars.get(j + 1) == Some(&q) && chars.get(j + 2) == Some(&q))) {
            break;
        }
        j += 1;
    }
    let body = chars.get(body_start..j).unwrap_or(&[]);
    let end = if triple { j + 3 } else { j + 1 };
    if bytes {
        if body.iter().any(|c| !c.is_ascii()) {
            return Err("a bytes literal with non-ASCII characters".into());
        }
        let v = if raw { body.iter().map(|&c| c as u8).collect() } else { unescape_bytes(body)? };
        Ok((Tok::Bytes(v), end))
    } else {
        let v = if raw { body.iter().collect() } else { unescape_str(body)? };
        Ok((Tok::Str(v), end))
    }
}

fn hex_digits(body: &[char], at: usize, n: usize) -> Option<u32> {
    let digits = body.get(at..at + n)?;
    digits.iter().try_fold(0u32, |acc, c| Some(acc * 16 + c.to_digit(16)?))
}

/// `_PyUnicode_DecodeUnicodeEscapeInternal`.
fn unescape_str(body: &[char]) -> Result<String, String> {
    let mut out = String::new();
    let mut i = 0;
    while let Some(&c) = body.get(i) {
        i += 1;
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = body.get(i) else { return Err("a string ends in a backslash".into()) };
        i += 1;
        match e {
            '\n' => {}
            '\\' | '\'' | '"' => out.push(e),
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\x0b'),
            '0'..='7' => {
                let mut v = e.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match body.get(i).and_then(|c| c.to_digit(8)) {
                        Some(d) => {
                            v = v * 8 + d;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push(char::from_u32(v).ok_or("bad octal escape")?);
            }
            'x' | 'u' | 'U' => {
                let n = match e {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let v = hex_digits(body, i, n).ok_or_else(|| format!("truncated \\{e} escape"))?;
                i += n;
                if v > 0x10ffff {
                    return Err(format!("\\{e} escape beyond U+10FFFF"));
                }
                out.push(char::from_u32(v).ok_or("a lone surrogate in a string (the header cannot be judged)")?);
            }
            'N' => return Err("a \\N{...} escape (Unicode character names are not supported)".into()),
            other => {
                // unknown escapes keep their backslash
                out.push('\\');
                out.push(other);
            }
        }
    }
    Ok(out)
}

/// `_PyBytes_DecodeEscape`.
fn unescape_bytes(body: &[char]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = body.get(i) {
        i += 1;
        if c != '\\' {
            out.push(c as u8);
            continue;
        }
        let Some(&e) = body.get(i) else { return Err("a bytes literal ends in a backslash".into()) };
        i += 1;
        match e {
            '\n' => {}
            '\\' | '\'' | '"' => out.push(e as u8),
            'a' => out.push(7),
            'b' => out.push(8),
            'f' => out.push(12),
            'n' => out.push(b'\n'),
            'r' => out.push(b'\r'),
            't' => out.push(b'\t'),
            'v' => out.push(11),
            '0'..='7' => {
                let mut v = e.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match body.get(i).and_then(|c| c.to_digit(8)) {
                        Some(d) => {
                            v = v * 8 + d;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            'x' => {
                let v = hex_digits(body, i, 2).ok_or("truncated \\x escape")?;
                i += 2;
                out.push(v as u8);
            }
            other => {
                out.push(b'\\');
                out.push(other as u8);
            }
        }
    }
    Ok(out)
}

/// Digits with single `_` separators between them (`digit (_? digit)*`).
fn digits(chars: &[char], mut i: usize, ok: impl Fn(char) -> bool, allow_lead_underscore: bool) -> (String, usize) {
    let mut s = String::new();
    loop {
        match chars.get(i) {
            Some(&c) if ok(c) => {
                s.push(c);
                i += 1;
            }
            Some('_') if (!s.is_empty() || allow_lead_underscore) && chars.get(i + 1).is_some_and(|&c| ok(c)) => {
                i += 1;
            }
            _ => return (s, i),
        }
    }
}

/// One number token. CPython's tokenizer refuses a name right after a number (`3L`); the
/// `tokenize` module that `_filter_header` uses splits it into a number and a name.
fn number(chars: &[char], start: usize, split_names: bool) -> Result<(Tok, usize), String> {
    let lower = |i: usize| chars.get(i).map(|c| c.to_ascii_lowercase());
    let bad_follow = |i: usize| !split_names && chars.get(i).is_some_and(|&c| c.is_alphanumeric() || c == '_');
    if chars.get(start) == Some(&'0') && matches!(lower(start + 1), Some('x' | 'o' | 'b')) {
        let radix = match lower(start + 1) {
            Some('x') => 16,
            Some('o') => 8,
            _ => 2,
        };
        let (ds, end) = digits(chars, start + 2, |c| c.is_digit(radix), true);
        if ds.is_empty() || bad_follow(end) {
            return Err("an invalid integer literal".into());
        }
        return Ok((int_tok(&ds, radix), end));
    }
    let (int_part, mut i) = digits(chars, start, |c| c.is_ascii_digit(), false);
    let mut is_float = false;
    let mut text = int_part.clone();
    if chars.get(i) == Some(&'.') {
        is_float = true;
        let (frac, next) = digits(chars, i + 1, |c| c.is_ascii_digit(), false);
        text.push('.');
        text.push_str(&frac);
        i = next;
    }
    if lower(i) == Some('e') {
        let mut j = i + 1;
        let mut exp = String::from("e");
        if let Some(&s @ ('+' | '-')) = chars.get(j) {
            exp.push(s);
            j += 1;
        }
        let (ed, next) = digits(chars, j, |c| c.is_ascii_digit(), false);
        if !ed.is_empty() {
            is_float = true;
            text.push_str(&exp);
            text.push_str(&ed);
            i = next;
        }
    }
    if lower(i) == Some('j') {
        let v: f64 = text.parse().map_err(|_| "an invalid number")?;
        if bad_follow(i + 1) {
            return Err("an invalid imaginary literal".into());
        }
        return Ok((Tok::Imag(v), i + 1));
    }
    if bad_follow(i) {
        return Err("an invalid decimal literal (a name right after a number)".into());
    }
    if is_float {
        let v: f64 = text.parse().map_err(|_| "an invalid float literal")?;
        return Ok((Tok::Float(v), i));
    }
    if int_part.len() > 1 && int_part.starts_with('0') && int_part.chars().any(|c| c != '0') {
        return Err("leading zeros in a decimal integer literal".into());
    }
    Ok((int_tok(&int_part, 10), i))
}

fn int_tok(digits: &str, radix: u32) -> Tok {
    match i128::from_str_radix(digits, radix) {
        Ok(v) => Tok::Int(v),
        Err(_) => Tok::BigInt,
    }
}

struct Parser<'a> {
    t: &'a [Tok],
    i: usize,
    items: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.t.get(self.i)
    }

    fn op(&self, c: char) -> bool {
        self.peek() == Some(&Tok::Op(c))
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.op(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected '{c}'"))
        }
    }

    /// An expression as `eval` mode reads it: a tuple display without brackets is allowed.
    fn expr(&mut self, depth: usize) -> Result<Lit, String> {
        let first = self.value(depth)?;
        if !self.op(',') {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.op(',') {
            self.i += 1;
            if self.peek().is_none() || self.op(')') || self.op(']') || self.op('}') || self.op(':') {
                break;
            }
            items.push(self.value(depth)?);
        }
        Ok(Lit::Tuple(items))
    }

    /// A number with an optional sign, as `_convert_signed_num` takes it.
    fn signed_num(&mut self) -> Result<Option<Lit>, String> {
        let neg = match self.peek() {
            Some(Tok::Op('-')) => Some(true),
            Some(Tok::Op('+')) => Some(false),
            _ => None,
        };
        let at = self.i;
        if neg.is_some() {
            self.i += 1;
        }
        let v = match self.peek() {
            Some(Tok::Int(v)) => Lit::Int(*v),
            Some(Tok::BigInt) => Lit::BigInt(false),
            Some(Tok::Float(f)) => Lit::Float(*f),
            Some(Tok::Imag(f)) => Lit::Complex(0.0, *f),
            _ => {
                if neg.is_some() {
                    return Err("a sign before something other than a number".into());
                }
                self.i = at;
                return Ok(None);
            }
        };
        self.i += 1;
        Ok(Some(if neg == Some(true) {
            match v {
                Lit::Int(i) => Lit::Int(-i),
                Lit::BigInt(_) => Lit::BigInt(true),
                Lit::Float(f) => Lit::Float(-f),
                Lit::Complex(r, i) => Lit::Complex(-r, -i),
                other => other,
            }
        } else {
            v
        }))
    }

    fn value(&mut self, depth: usize) -> Result<Lit, String> {
        if depth > MAX_DEPTH {
            return Err("the literal is nested too deeply".into());
        }
        self.items += 1;
        if self.items > MAX_ITEMS {
            return Err("the literal has too many values".into());
        }
        if let Some(left) = self.signed_num()? {
            // ast.literal_eval's BinOp case: a real number plus or minus an imaginary one
            if let Some(Tok::Op(op @ ('+' | '-'))) = self.peek().cloned() {
                let Some(Tok::Imag(im)) = self.t.get(self.i + 1).cloned() else {
                    return Err("arithmetic in a literal (only real +/- imaginary is allowed)".into());
                };
                let re = match left {
                    Lit::Int(i) => i as f64,
                    Lit::Float(f) => f,
                    _ => return Err("arithmetic in a literal (only real +/- imaginary is allowed)".into()),
                };
                self.i += 2;
                let im = if op == '-' { -im } else { im };
                return Ok(Lit::Complex(re, im));
            }
            return Ok(left);
        }
        let Some(tok) = self.peek().cloned() else { return Err("the header ends early".into()) };
        self.i += 1;
        match tok {
            Tok::Str(s) => Ok(Lit::Str(s)),
            Tok::Bytes(b) => Ok(Lit::Bytes(b)),
            Tok::Ellipsis => Ok(Lit::Ellipsis),
            Tok::Name(n) => match n.as_str() {
                "True" => Ok(Lit::Bool(true)),
                "False" => Ok(Lit::Bool(false)),
                "None" => Ok(Lit::None),
                "set" if self.op('(') && self.t.get(self.i + 1) == Some(&Tok::Op(')')) => {
                    self.i += 2;
                    Ok(Lit::Set(Vec::new()))
                }
                _ => Err(format!("the name '{n}' is not a literal")),
            },
            Tok::Op('(') => {
                if self.op(')') {
                    self.i += 1;
                    return Ok(Lit::Tuple(Vec::new()));
                }
                let first = self.value(depth + 1)?;
                if self.op(')') {
                    self.i += 1;
                    return Ok(first);
                }
                let mut items = vec![first];
                while self.op(',') {
                    self.i += 1;
                    if self.op(')') {
                        break;
                    }
                    items.push(self.value(depth + 1)?);
                }
                self.expect(')')?;
                Ok(Lit::Tuple(items))
            }
            Tok::Op('[') => {
                let items = self.seq(']', depth)?;
                Ok(Lit::List(items))
            }
            Tok::Op('{') => {
                if self.op('}') {
                    self.i += 1;
                    return Ok(Lit::Dict(Vec::new()));
                }
                let first = self.value(depth + 1)?;
                if self.op(':') {
                    self.i += 1;
                    let v = self.value(depth + 1)?;
                    let mut pairs = vec![(first, v)];
                    while self.op(',') {
                        self.i += 1;
                        if self.op('}') {
                            break;
                        }
                        let k = self.value(depth + 1)?;
                        self.expect(':')?;
                        let v = self.value(depth + 1)?;
                        pairs.push((k, v));
                    }
                    self.expect('}')?;
                    if pairs.iter().any(|(k, _)| !k.hashable()) {
                        return Err("an unhashable dict key".into());
                    }
                    return Ok(Lit::Dict(pairs));
                }
                let mut items = vec![first];
                while self.op(',') {
                    self.i += 1;
                    if self.op('}') {
                        break;
                    }
                    items.push(self.value(depth + 1)?);
                }
                self.expect('}')?;
                if items.iter().any(|k| !k.hashable()) {
                    return Err("an unhashable set element".into());
                }
                // duplicates collapse (pairwise: sets this large are refused)
                if items.len() > MAX_SET {
                    return Err(format!("a set of more than {MAX_SET} elements"));
                }
                let mut set: Vec<Lit> = Vec::new();
                for it in items {
                    if !set.iter().any(|s| s.py_eq(&it)) {
                        set.push(it);
                    }
                }
                Ok(Lit::Set(set))
            }
            other => Err(format!("unexpected {}", other.describe())),
        }
    }

    fn seq(&mut self, close: char, depth: usize) -> Result<Vec<Lit>, String> {
        let mut items = Vec::new();
        loop {
            if self.op(close) {
                self.i += 1;
                return Ok(items);
            }
            items.push(self.value(depth + 1)?);
            if self.op(',') {
                self.i += 1;
            } else if !self.op(close) {
                return Err(format!("expected ',' or '{close}'"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(s: &str) -> Result<Lit, String> {
        literal_eval(s, false)
    }

    fn s(v: &str) -> Lit {
        Lit::Str(v.into())
    }

    #[test]
    fn strings() {
        assert_eq!(ev("'a' \"b\" '''c''' \"\"\"d\"\"\""), Ok(s("abcd")));
        assert_eq!(ev(r"'\x4f' '\117' '\u004f' '\U0000004F'"), Ok(s("OOOO")));
        assert_eq!(ev(r"'\777'"), Ok(s("\u{1ff}")));
        assert_eq!(ev(r"b'\777\400'"), Ok(Lit::Bytes(vec![0xff, 0])));
        assert_eq!(ev(r"'\8\q'"), Ok(s("\\8\\q")));
        assert_eq!(ev(r"b'\u0041'"), Ok(Lit::Bytes(b"\\u0041".to_vec())));
        assert_eq!(ev(r"r'\x4f' R'\'' "), Ok(s("\\x4f\\'")));
        assert_eq!(ev("rB'\\x' Br'y'"), Ok(Lit::Bytes(b"\\xy".to_vec())));
        assert_eq!(ev("U'O' u'8'"), Ok(s("O8")));
        assert_eq!(ev("('a'\n # c\n 'b')"), Ok(s("ab")));
        assert_eq!(ev("'a' \\\n 'b'"), Ok(s("ab")));
        assert_eq!(ev("'x\\\ny'"), Ok(s("xy")));
        assert_eq!(ev("'''a\r\nb\rc'''"), Ok(s("a\nb\nc")));
        for bad in [
            "ur'a'",
            "bu'a'",
            "f'a'",
            "'a' b'b'",
            r"'\x4'",
            r"'\U00110000'",
            r"'\N{LATIN SMALL LETTER O}'",
            "'a\nb'",
            "r'\\'",
            "'\u{e9}' b'\u{e9}'",
            "'\\ud800'",
        ] {
            assert!(ev(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers_and_names() {
        assert_eq!(ev("0x_1F"), Ok(Lit::Int(31)));
        assert_eq!(ev("0o17"), Ok(Lit::Int(15)));
        assert_eq!(ev("0B1_0"), Ok(Lit::Int(2)));
        assert_eq!(ev("1_000"), Ok(Lit::Int(1000)));
        assert_eq!(ev("00"), Ok(Lit::Int(0)));
        assert_eq!(ev("-5"), Ok(Lit::Int(-5)));
        assert_eq!(ev("+5"), Ok(Lit::Int(5)));
        assert_eq!(ev("1.5e1"), Ok(Lit::Float(15.0)));
        assert_eq!(ev("-1-2j"), Ok(Lit::Complex(-1.0, -2.0)));
        assert_eq!(ev("99999999999999999999999999999999999999999"), Ok(Lit::BigInt(false)));
        assert_eq!(ev("..."), Ok(Lit::Ellipsis));
        assert_eq!(ev("set()"), Ok(Lit::Set(vec![])));
        assert_eq!(ev("{1, 1, True}"), Ok(Lit::Set(vec![Lit::Int(1)])));
        for bad in ["01", "1__0", "1_", "0x", "--1", "1+2", "+True", "Ellipsis", "x", "1L", "0xfor", "{[]: 1}", "{[1]}"]
        {
            assert!(ev(bad).is_err(), "{bad}");
        }
        assert_eq!(literal_eval("(3L, 0x1fL,)", true), Ok(Lit::Tuple(vec![Lit::Int(3), Lit::Int(31)])));
        assert!(literal_eval("(3l,)", true).is_err());
        assert!(parse_header_literal("(3L,)", 3).is_err());
        assert_eq!(parse_header_literal("(3 L,)", 1), Ok(Lit::Tuple(vec![Lit::Int(3)])));
    }

    #[test]
    fn layout() {
        assert_eq!(ev("\n\t{}\n\n# end\n"), Ok(Lit::Dict(vec![])));
        assert_eq!(ev("  {}  # c"), Ok(Lit::Dict(vec![])));
        assert_eq!(ev("1, 2,"), Ok(Lit::Tuple(vec![Lit::Int(1), Lit::Int(2)])));
        assert_eq!(ev("((1,))"), Ok(Lit::Tuple(vec![Lit::Int(1)])));
        assert_eq!(ev("(1)"), Ok(Lit::Int(1)));
        assert!(ev("{}\n{}").is_err());
        assert!(ev("{} \\\n").is_err());
        assert!(ev("{,}").is_err());
        assert!(ev("(,)").is_err());
        assert!(ev("\u{a0}{}").is_err());
        assert!(ev(&"[".repeat(200)).is_err());
    }
}
