//! Jinja2 lexing and parsing for [`crate::formats::jinja`], following jinja2 3.1's
//! `lexer.py` (`Lexer.tokeniter`: tags end only when brackets are balanced, string literals
//! are decoded with Python's `unicode-escape`, integers take `0b`/`0o`/`0x` prefixes and
//! `_` separators, whitespace control with `-`, `trim_blocks` and `lstrip_blocks` as
//! transformers' `_compile_jinja_template` sets them) and `parser.py` (expression grammar).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

/// Deepest expression nesting parsed.
pub const MAX_DEPTH: u32 = 200;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Name(String),
    /// A string literal's value; `false` when an escape could not be decoded exactly
    /// (an unknown `\N{...}` name): the value then holds U+FFFD there.
    Str(String, bool),
    Int(i64),
    Float(f64),
    Op(&'static str),
}

const OPS: &[&str] = &[
    "//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=", ".", ",", ":", "|", "(", ")", "[",
    "]", "{", "}",
];

/// A piece of a template: text, or one `{{ }}` / `{% %}` tag.
#[derive(Debug, Clone)]
pub enum Node {
    Data(String),
    Tag(Tag),
}

#[derive(Debug, Clone)]
pub struct Tag {
    pub statement: bool,
    pub toks: Vec<Tok>,
    pub start: usize,
    pub end: usize,
}

/// Split a template into text and tags, with whitespace control applied to the text (as
/// rendered with `trim_blocks=True, lstrip_blocks=True`). Errors carry the byte offset.
pub fn lex(src: &str) -> Result<Vec<Node>, usize> {
    let b = src.as_bytes();
    let mut nodes = Vec::new();
    let mut i = 0;
    let mut text_start = 0;
    // Strip whitespace at the start of the next text (`-%}`), or its first newline (trim_blocks).
    let mut strip_next = Strip::None;
    // jinja2's `line_starting`: the previous token ended a line (or nothing came before).
    let mut line_starting = true;
    while let Some(rel) = src.get(i..).and_then(|s| s.find('{')) {
        let start = i + rel;
        let kind = b.get(start + 1).copied();
        if !matches!(kind, Some(b'#' | b'{' | b'%')) {
            i = start + 1;
            continue;
        }
        let sign = b.get(start + 2).copied();
        let raw = src.get(text_start..start).unwrap_or("").to_string();
        let mut text = apply_strip(raw.clone(), strip_next);
        if text.len() < raw.len() {
            line_starting = raw.get(..raw.len() - text.len()).is_some_and(|cut| cut.ends_with('\n'));
        }
        if sign == Some(b'-') {
            text = text.trim_end().to_string();
        } else if kind != Some(b'{') && sign != Some(b'+') {
            // lstrip_blocks: whitespace between a line start and a block or comment tag.
            let line = text.rfind('\n').map_or(0, |p| p + 1);
            let at_line_start = line > 0 || line_starting;
            if at_line_start && text.get(line..).is_some_and(|t| t.chars().all(|c| c == ' ' || c == '\t')) {
                text.truncate(line);
            }
        }
        if !text.is_empty() {
            nodes.push(Node::Data(text));
        }
        line_starting = false;
        match kind {
            Some(b'#') => {
                let end = src.get(start + 2..).and_then(|s| s.find("#}")).ok_or(start)?;
                let close = start + 2 + end;
                let minus = close > start + 2 && b.get(close - 1) == Some(&b'-');
                i = close + 2;
                strip_next = if minus { Strip::All } else { Strip::Newline };
            }
            _ => {
                let statement = kind == Some(b'%');
                let (toks, end, minus) = lex_tag(src, start + 2, statement)?;
                strip_next = if minus {
                    Strip::All
                } else if statement {
                    Strip::Newline
                } else {
                    Strip::None
                };
                if statement && toks.first() == Some(&Tok::Name("raw".into())) {
                    let (body_end, close, minus) = find_endraw(src, end).ok_or(start)?;
                    nodes.push(Node::Tag(Tag { statement, toks, start, end }));
                    let mut body = apply_strip(src.get(end..body_end).unwrap_or("").to_string(), strip_next);
                    if minus {
                        body = body.trim_end().to_string();
                    }
                    if !body.is_empty() {
                        nodes.push(Node::Data(body));
                    }
                    i = close;
                    text_start = close;
                    strip_next = Strip::Newline;
                    continue;
                }
                nodes.push(Node::Tag(Tag { statement, toks, start, end }));
                i = end;
            }
        }
        text_start = i;
    }
    let text = apply_strip(src.get(text_start..).unwrap_or("").to_string(), strip_next);
    if !text.is_empty() {
        nodes.push(Node::Data(text));
    }
    Ok(nodes)
}

#[derive(Clone, Copy)]
enum Strip {
    None,
    Newline,
    All,
}

fn apply_strip(text: String, s: Strip) -> String {
    match s {
        Strip::None => text,
        Strip::All => text.trim_start().to_string(),
        Strip::Newline => text.strip_prefix('\n').map(str::to_string).unwrap_or(text),
    }
}

/// `(body end, offset past the tag, '-' before %})` of the `{% endraw %}` after `from`.
fn find_endraw(src: &str, from: usize) -> Option<(usize, usize, bool)> {
    let mut i = from;
    while let Some(rel) = src.get(i..)?.find("{%") {
        let at = i + rel;
        let after = src.get(at + 2..)?;
        let minus = after.starts_with('-');
        let inner = after.trim_start_matches(['-', '+']).trim_start();
        if let Some(rest) = inner.strip_prefix("endraw") {
            let rest = rest.trim_start();
            if rest.starts_with("%}") || rest.starts_with("-%}") {
                let close = src.get(at..)?.find("%}")?;
                return Some((at, at + close + 2, minus));
            }
        }
        i = at + 2;
    }
    None
}

/// Tokens of one tag from `pos` (just after `{{`/`{%`) to its closing delimiter; returns the
/// tokens, the offset past the delimiter, and whether it closed with `-`.
fn lex_tag(src: &str, pos: usize, statement: bool) -> Result<(Vec<Tok>, usize, bool), usize> {
    let b = src.as_bytes();
    let close: &[u8] = if statement { b"%}" } else { b"}}" };
    let mut i = pos;
    if matches!(b.get(i), Some(b'-' | b'+')) {
        i += 1;
    }
    let mut toks = Vec::new();
    let mut brackets: Vec<u8> = Vec::new();
    loop {
        while b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
            i += 1;
        }
        let rest = b.get(i..).ok_or(pos)?;
        if rest.is_empty() {
            return Err(pos);
        }
        if brackets.is_empty() {
            if rest.starts_with(close) {
                return Ok((toks, i + 2, false));
            }
            if matches!(rest.first(), Some(b'-' | b'+')) && rest.get(1..3) == Some(close) {
                return Ok((toks, i + 3, rest.first() == Some(&b'-')));
            }
        }
        let c = *rest.first().ok_or(pos)?;
        if c == b'"' || c == b'\'' {
            let (s, exact, n) = lex_string(rest).ok_or(i)?;
            toks.push(Tok::Str(s, exact));
            i += n;
        } else if c.is_ascii_digit() {
            let (t, n) = lex_number(rest).ok_or(i)?;
            toks.push(t);
            i += n;
        } else if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            let word: String =
                src.get(i..).unwrap_or("").chars().take_while(|ch| ch.is_alphanumeric() || *ch == '_').collect();
            if word.is_empty() {
                return Err(i);
            }
            i += word.len();
            toks.push(Tok::Name(word));
        } else if let Some(op) = OPS.iter().find(|op| rest.starts_with(op.as_bytes())) {
            match *op {
                "(" | "[" | "{" => brackets.push(c),
                ")" | "]" | "}" => {
                    let open = match c {
                        b')' => b'(',
                        b']' => b'[',
                        _ => b'{',
                    };
                    if brackets.pop() != Some(open) {
                        return Err(i);
                    }
                }
                _ => {}
            }
            toks.push(Tok::Op(op));
            i += op.len();
        } else {
            return Err(i);
        }
    }
}

/// jinja2's `integer_re` and `float_re`.
fn lex_number(b: &[u8]) -> Option<(Tok, usize)> {
    let digits = |b: &[u8], ok: &dyn Fn(u8) -> bool| -> usize {
        // (_?d)+ : digits with single underscores between them.
        let mut n = 0;
        loop {
            match (b.get(n), b.get(n + 1)) {
                (Some(&d), _) if ok(d) => n += 1,
                (Some(b'_'), Some(&d)) if n > 0 && ok(d) => n += 2,
                _ => return n,
            }
        }
    };
    let dec = |d: u8| d.is_ascii_digit();
    if b.first() == Some(&b'0') {
        let base = match b.get(1) {
            Some(b'b' | b'B') => Some((2, &(|d: u8| d == b'0' || d == b'1') as &dyn Fn(u8) -> bool)),
            Some(b'o' | b'O') => Some((8, &(|d: u8| (b'0'..=b'7').contains(&d)) as &dyn Fn(u8) -> bool)),
            Some(b'x' | b'X') => Some((16, &(|d: u8| d.is_ascii_hexdigit()) as &dyn Fn(u8) -> bool)),
            _ => None,
        };
        if let Some((radix, ok)) = base {
            let rest = b.get(2..)?;
            // `0x_1f` is allowed: an underscore may lead.
            let lead = usize::from(rest.first() == Some(&b'_'));
            let n = digits(rest.get(lead..)?, ok);
            if n == 0 {
                return None;
            }
            let text: String = rest.get(lead..lead + n)?.iter().filter(|c| **c != b'_').map(|c| *c as char).collect();
            let v = i64::from_str_radix(&text, radix).map_or_else(|_| Tok::Float(f64::INFINITY), Tok::Int);
            return Some((v, 2 + lead + n));
        }
    }
    let int_len = digits(b, &dec);
    let mut n = int_len;
    let mut float = false;
    if b.get(n) == Some(&b'.') && b.get(n + 1).is_some_and(u8::is_ascii_digit) {
        n += 1 + digits(b.get(n + 1..)?, &dec);
        float = true;
    }
    if matches!(b.get(n), Some(b'e' | b'E')) {
        let mut m = n + 1;
        if matches!(b.get(m), Some(b'+' | b'-')) {
            m += 1;
        }
        let e = digits(b.get(m..).unwrap_or_default(), &dec);
        if e > 0 {
            n = m + e;
            float = true;
        }
    }
    let text: String = b.get(..n)?.iter().filter(|c| **c != b'_').map(|c| *c as char).collect();
    if float {
        return Some((Tok::Float(text.parse().ok()?), n));
    }
    // A decimal integer other than zero has no leading zero (`0(_?0)*` is zero).
    if text.len() > 1 && text.starts_with('0') && !text.bytes().all(|c| c == b'0') {
        return Some((Tok::Int(0), 1));
    }
    Some((text.parse::<i64>().map_or_else(|_| Tok::Float(text.parse().unwrap_or(f64::INFINITY)), Tok::Int), n))
}

/// A quoted string decoded as jinja2 does (`unicode-escape`); returns the value, whether it
/// is exact, and the bytes consumed.
fn lex_string(b: &[u8]) -> Option<(String, bool, usize)> {
    let q = *b.first()?;
    let mut i = 1;
    // The raw body: up to the closing quote, backslash pairs skipped.
    loop {
        match *b.get(i)? {
            c if c == q => break,
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    let raw = std::str::from_utf8(b.get(1..i)?).ok()?.replace("\r\n", "\n").replace('\r', "\n");
    let (s, exact) = unicode_escape(&raw)?;
    Some((s, exact, i + 1))
}

/// Python's `unicode-escape` codec (after jinja2's `backslashreplace` of non-ASCII text).
/// `None` where Python raises (a truncated `\x`, `\u`, `\U`, a code point past U+10FFFF).
pub fn unicode_escape(raw: &str) -> Option<(String, bool)> {
    let mut out = String::new();
    let mut exact = true;
    let mut it = raw.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(e) = it.next() else {
            // A lone trailing backslash: "\\ at end of string".
            return None;
        };
        let hex = |it: &mut std::iter::Peekable<std::str::Chars<'_>>, n: usize| -> Option<u32> {
            let mut v = 0u32;
            for _ in 0..n {
                v = v.checked_mul(16)? + it.next()?.to_digit(16)?;
            }
            Some(v)
        };
        match e {
            '\n' => {}
            '\\' => out.push('\\'),
            '\'' => out.push('\''),
            '"' => out.push('"'),
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\x0b'),
            '0'..='7' => {
                let mut v = e.to_digit(8)?;
                for _ in 0..2 {
                    match it.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            v = v * 8 + d;
                            it.next();
                        }
                        None => break,
                    }
                }
                out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
            }
            'x' => out.push(char::from_u32(hex(&mut it, 2)?).unwrap_or('\u{fffd}')),
            'u' => out.push(char::from_u32(hex(&mut it, 4)?).unwrap_or('\u{fffd}')),
            'U' => {
                let v = hex(&mut it, 8)?;
                if v > 0x10ffff {
                    return None;
                }
                out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
            }
            'N' => {
                if it.next()? != '{' {
                    return None;
                }
                let name: String = it.by_ref().take_while(|c| *c != '}').collect();
                match char_by_name(&name) {
                    Some(ch) => out.push(ch),
                    None => {
                        out.push('\u{fffd}');
                        exact = false;
                    }
                }
            }
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    Some((out, exact))
}

/// Unicode names of the printable ASCII characters (what `\N{...}` needs to spell a Python
/// attribute name); lookups are case-insensitive as in `unicodedata.lookup`.
fn char_by_name(name: &str) -> Option<char> {
    let n = name.trim().to_ascii_uppercase();
    if let Some(l) = n.strip_prefix("LATIN SMALL LETTER ") {
        let mut c = l.chars();
        return match (c.next(), c.next()) {
            (Some(ch), None) if ch.is_ascii_uppercase() => Some(ch.to_ascii_lowercase()),
            _ => None,
        };
    }
    if let Some(l) = n.strip_prefix("LATIN CAPITAL LETTER ") {
        let mut c = l.chars();
        return match (c.next(), c.next()) {
            (Some(ch), None) if ch.is_ascii_uppercase() => Some(ch),
            _ => None,
        };
    }
    const DIGITS: [&str; 10] = ["ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE"];
    if let Some(d) = n.strip_prefix("DIGIT ") {
        return DIGITS.iter().position(|x| *x == d).and_then(|p| char::from_digit(p as u32, 10));
    }
    const PUNCT: &[(&str, char)] = &[
        ("SPACE", ' '),
        ("EXCLAMATION MARK", '!'),
        ("QUOTATION MARK", '"'),
        ("NUMBER SIGN", '#'),
        ("DOLLAR SIGN", '$'),
        ("PERCENT SIGN", '%'),
        ("AMPERSAND", '&'),
        ("APOSTROPHE", '\''),
        ("LEFT PARENTHESIS", '('),
        ("RIGHT PARENTHESIS", ')'),
        ("ASTERISK", '*'),
        ("PLUS SIGN", '+'),
        ("COMMA", ','),
        ("HYPHEN-MINUS", '-'),
        ("FULL STOP", '.'),
        ("SOLIDUS", '/'),
        ("COLON", ':'),
        ("SEMICOLON", ';'),
        ("LESS-THAN SIGN", '<'),
        ("EQUALS SIGN", '='),
        ("GREATER-THAN SIGN", '>'),
        ("QUESTION MARK", '?'),
        ("COMMERCIAL AT", '@'),
        ("LEFT SQUARE BRACKET", '['),
        ("REVERSE SOLIDUS", '\\'),
        ("RIGHT SQUARE BRACKET", ']'),
        ("CIRCUMFLEX ACCENT", '^'),
        ("LOW LINE", '_'),
        ("GRAVE ACCENT", '`'),
        ("LEFT CURLY BRACKET", '{'),
        ("VERTICAL LINE", '|'),
        ("RIGHT CURLY BRACKET", '}'),
        ("TILDE", '~'),
        ("LINE FEED", '\n'),
        ("CHARACTER TABULATION", '\t'),
        ("CARRIAGE RETURN", '\r'),
        ("NULL", '\0'),
    ];
    PUNCT.iter().find(|(k, _)| *k == n).map(|(_, c)| *c)
}

/// The parts of an expression the checks and the constant folding look at.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Name(String),
    Str(String, bool),
    Int(i64),
    Float(f64),
    /// `true`, `false`, `none`, comparisons, tests and `not`: a value that is never text the
    /// template builds (its parts are still checked).
    Opaque(Vec<Expr>),
    List(Vec<Expr>),
    Dict(Vec<(Expr, Expr)>),
    /// `a op b` for `~ + - * / // % **`.
    Bin(&'static str, Box<Expr>, Box<Expr>),
    /// `a if c else b`, `a or b`, `a and b`: evaluates to one of the branches.
    Either(Vec<Expr>, Vec<Expr>),
    Attr(Box<Expr>, String),
    Item(Box<Expr>, Box<Expr>),
    Slice(Box<Expr>, [Option<Box<Expr>>; 3]),
    Call(Box<Expr>, Vec<Expr>, Vec<(String, Expr)>),
    Filter(Box<Expr>, String, Vec<Expr>, Vec<(String, Expr)>),
}

pub struct Parser<'t> {
    toks: &'t [Tok],
    i: usize,
    depth: u32,
}

pub type PResult<T> = Result<T, ()>;
/// Positional and keyword arguments of a call or filter.
pub type Args = (Vec<Expr>, Vec<(String, Expr)>);

impl<'t> Parser<'t> {
    pub fn new(toks: &'t [Tok]) -> Parser<'t> {
        Parser { toks, i: 0, depth: 0 }
    }

    fn peek(&self) -> Option<&'t Tok> {
        self.toks.get(self.i)
    }

    fn peek_at(&self, n: usize) -> Option<&'t Tok> {
        self.toks.get(self.i + n)
    }

    pub fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Some(Tok::Op(o)) if *o == op)
    }

    pub fn is_name(&self, n: &str) -> bool {
        matches!(self.peek(), Some(Tok::Name(x)) if x == n)
    }

    pub fn eat_op(&mut self, op: &str) -> bool {
        let yes = self.is_op(op);
        if yes {
            self.i += 1;
        }
        yes
    }

    pub fn eat_name(&mut self, n: &str) -> bool {
        let yes = self.is_name(n);
        if yes {
            self.i += 1;
        }
        yes
    }

    pub fn expect_op(&mut self, op: &str) -> PResult<()> {
        if self.eat_op(op) {
            Ok(())
        } else {
            Err(())
        }
    }

    pub fn name(&mut self) -> PResult<String> {
        match self.peek() {
            Some(Tok::Name(n)) => {
                self.i += 1;
                Ok(n.clone())
            }
            _ => Err(()),
        }
    }

    pub fn done(&self) -> bool {
        self.i >= self.toks.len()
    }

    pub fn skip_rest(&mut self) {
        self.i = self.toks.len();
    }

    pub fn end(&self) -> PResult<()> {
        if self.done() {
            Ok(())
        } else {
            Err(())
        }
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(());
        }
        Ok(())
    }

    /// `expr (, expr)* [,]` — a tuple without parentheses.
    pub fn tuple(&mut self) -> PResult<Expr> {
        let first = self.expr()?;
        if !self.is_op(",") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.eat_op(",") {
            if self.done() || self.is_name("if") || self.is_op("=") || self.is_op(")") || self.is_op("]") {
                break;
            }
            items.push(self.expr()?);
        }
        Ok(Expr::List(items))
    }

    pub fn expr(&mut self) -> PResult<Expr> {
        self.enter()?;
        let e = self.condition();
        self.depth -= 1;
        e
    }

    fn condition(&mut self) -> PResult<Expr> {
        let e = self.or()?;
        if self.eat_name("if") {
            let cond = self.or()?;
            let other = if self.eat_name("else") { vec![self.expr()?] } else { Vec::new() };
            let mut yes = vec![e];
            yes.extend(other);
            return Ok(Expr::Either(yes, vec![cond]));
        }
        Ok(e)
    }

    fn or(&mut self) -> PResult<Expr> {
        let mut parts = vec![self.and()?];
        while self.eat_name("or") {
            parts.push(self.and()?);
        }
        Ok(either(parts))
    }

    fn and(&mut self) -> PResult<Expr> {
        let mut parts = vec![self.not()?];
        while self.eat_name("and") {
            parts.push(self.not()?);
        }
        Ok(either(parts))
    }

    fn not(&mut self) -> PResult<Expr> {
        if self.eat_name("not") {
            self.enter()?;
            let e = self.not();
            self.depth -= 1;
            return Ok(Expr::Opaque(vec![e?]));
        }
        self.compare()
    }

    fn compare(&mut self) -> PResult<Expr> {
        let first = self.concat()?;
        let mut parts = vec![];
        loop {
            if ["==", "!=", "<", ">", "<=", ">="].iter().any(|o| self.is_op(o)) || self.is_name("in") {
                self.i += 1;
            } else if self.is_name("not") && matches!(self.peek_at(1), Some(Tok::Name(n)) if n == "in") {
                self.i += 2;
            } else {
                break;
            }
            parts.push(self.concat()?);
        }
        if parts.is_empty() {
            return Ok(first);
        }
        parts.insert(0, first);
        Ok(Expr::Opaque(parts))
    }

    fn concat(&mut self) -> PResult<Expr> {
        let saved = self.depth;
        let mut e = self.sum()?;
        while self.eat_op("~") {
            // Each operator nests the tree one deeper.
            self.enter()?;
            e = Expr::Bin("~", Box::new(e), Box::new(self.sum()?));
        }
        self.depth = saved;
        Ok(e)
    }

    fn sum(&mut self) -> PResult<Expr> {
        let saved = self.depth;
        let mut e = self.product()?;
        loop {
            let op = if self.eat_op("+") {
                "+"
            } else if self.eat_op("-") {
                "-"
            } else {
                self.depth = saved;
                return Ok(e);
            };
            self.enter()?;
            e = Expr::Bin(op, Box::new(e), Box::new(self.product()?));
        }
    }

    fn product(&mut self) -> PResult<Expr> {
        let saved = self.depth;
        let mut e = self.power()?;
        loop {
            let op = ["//", "*", "/", "%"].into_iter().find(|o| self.is_op(o));
            let Some(op) = op else {
                self.depth = saved;
                return Ok(e);
            };
            self.i += 1;
            self.enter()?;
            e = Expr::Bin(op, Box::new(e), Box::new(self.power()?));
        }
    }

    fn power(&mut self) -> PResult<Expr> {
        let saved = self.depth;
        let mut e = self.unary()?;
        while self.eat_op("**") {
            self.enter()?;
            e = Expr::Bin("**", Box::new(e), Box::new(self.unary()?));
        }
        self.depth = saved;
        Ok(e)
    }

    fn unary(&mut self) -> PResult<Expr> {
        if self.is_op("-") || self.is_op("+") {
            let neg = self.is_op("-");
            self.i += 1;
            self.enter()?;
            let e = self.unary();
            self.depth -= 1;
            let e = e?;
            return Ok(match e {
                Expr::Int(n) if neg => Expr::Int(n.wrapping_neg()),
                Expr::Float(f) if neg => Expr::Float(-f),
                e if neg => Expr::Bin("-", Box::new(Expr::Int(0)), Box::new(e)),
                e => e,
            });
        }
        let p = self.primary()?;
        let p = self.postfix(p)?;
        self.filters(p)
    }

    pub fn primary(&mut self) -> PResult<Expr> {
        self.enter()?;
        let e = match self.peek().cloned() {
            Some(Tok::Name(n)) => {
                self.i += 1;
                match n.as_str() {
                    "true" | "false" | "none" | "True" | "False" | "None" => Expr::Opaque(Vec::new()),
                    _ => Expr::Name(n),
                }
            }
            Some(Tok::Str(s, exact)) => {
                self.i += 1;
                let (mut s, mut exact) = (s, exact);
                while let Some(Tok::Str(more, e2)) = self.peek() {
                    s.push_str(more);
                    exact &= *e2;
                    self.i += 1;
                }
                Expr::Str(s, exact)
            }
            Some(Tok::Int(n)) => {
                self.i += 1;
                Expr::Int(n)
            }
            Some(Tok::Float(f)) => {
                self.i += 1;
                Expr::Float(f)
            }
            Some(Tok::Op("(")) => {
                self.i += 1;
                if self.eat_op(")") {
                    Expr::List(Vec::new())
                } else {
                    let e = self.tuple()?;
                    self.expect_op(")")?;
                    e
                }
            }
            Some(Tok::Op("[")) => {
                self.i += 1;
                let mut items = Vec::new();
                while !self.eat_op("]") {
                    items.push(self.expr()?);
                    if !self.eat_op(",") {
                        self.expect_op("]")?;
                        break;
                    }
                }
                Expr::List(items)
            }
            Some(Tok::Op("{")) => {
                self.i += 1;
                let mut items = Vec::new();
                while !self.eat_op("}") {
                    let k = self.expr()?;
                    self.expect_op(":")?;
                    items.push((k, self.expr()?));
                    if !self.eat_op(",") {
                        self.expect_op("}")?;
                        break;
                    }
                }
                Expr::Dict(items)
            }
            _ => return Err(()),
        };
        self.depth -= 1;
        Ok(e)
    }

    /// Each step of a postfix or filter chain counts as nesting: the tree it builds is as deep.
    fn postfix(&mut self, e: Expr) -> PResult<Expr> {
        let saved = self.depth;
        let r = self.postfix_chain(e);
        self.depth = saved;
        r
    }

    fn postfix_chain(&mut self, mut e: Expr) -> PResult<Expr> {
        loop {
            self.enter()?;
            if self.eat_op(".") {
                match self.peek().cloned() {
                    Some(Tok::Name(n)) => {
                        self.i += 1;
                        e = Expr::Attr(Box::new(e), n);
                    }
                    Some(Tok::Int(n)) => {
                        self.i += 1;
                        e = Expr::Item(Box::new(e), Box::new(Expr::Int(n)));
                    }
                    _ => return Err(()),
                }
            } else if self.eat_op("[") {
                e = self.subscript(e)?;
                self.expect_op("]")?;
            } else if self.is_op("(") {
                let (args, kwargs) = self.call_args()?;
                e = Expr::Call(Box::new(e), args, kwargs);
            } else {
                return Ok(e);
            }
        }
    }

    /// `a`, `a:b`, `a:b:c`, `:`, and tuples of those.
    fn subscript(&mut self, obj: Expr) -> PResult<Expr> {
        let mut parts: [Option<Box<Expr>>; 3] = [None, None, None];
        let mut slot = 0;
        let mut slice = false;
        let mut tuple = Vec::new();
        loop {
            if self.is_op("]") {
                break;
            }
            if self.eat_op(":") {
                slice = true;
                slot += 1;
                if slot > 2 {
                    return Err(());
                }
                continue;
            }
            if self.eat_op(",") {
                tuple.push(Expr::Opaque(parts.iter_mut().filter_map(|p| p.take().map(|b| *b)).collect()));
                slot = 0;
                slice = false;
                continue;
            }
            let e = self.expr()?;
            if let Some(p) = parts.get_mut(slot) {
                if p.is_some() {
                    return Err(());
                }
                *p = Some(Box::new(e));
            }
        }
        if !tuple.is_empty() {
            tuple.push(Expr::Opaque(parts.into_iter().flatten().map(|b| *b).collect()));
            return Ok(Expr::Item(Box::new(obj), Box::new(Expr::List(tuple))));
        }
        if slice {
            return Ok(Expr::Slice(Box::new(obj), parts));
        }
        let [key, ..] = parts;
        Ok(Expr::Item(Box::new(obj), key.ok_or(())?))
    }

    pub fn call_args(&mut self) -> PResult<Args> {
        self.expect_op("(")?;
        let mut args = Vec::new();
        let mut kwargs = Vec::new();
        while !self.eat_op(")") {
            if self.eat_op("**") || self.eat_op("*") {
                args.push(self.expr()?);
            } else if matches!((self.peek(), self.peek_at(1)), (Some(Tok::Name(_)), Some(Tok::Op("=")))) {
                let k = self.name()?;
                self.i += 1;
                kwargs.push((k, self.expr()?));
            } else {
                args.push(self.expr()?);
            }
            if !self.eat_op(",") {
                self.expect_op(")")?;
                break;
            }
        }
        Ok((args, kwargs))
    }

    pub fn filters(&mut self, e: Expr) -> PResult<Expr> {
        let saved = self.depth;
        let r = self.filter_chain(e);
        self.depth = saved;
        r
    }

    fn filter_chain(&mut self, mut e: Expr) -> PResult<Expr> {
        loop {
            self.enter()?;
            if self.eat_op("|") {
                let mut name = self.name()?;
                while self.eat_op(".") {
                    name.push('.');
                    name.push_str(&self.name()?);
                }
                let (args, kwargs) = if self.is_op("(") { self.call_args()? } else { (Vec::new(), Vec::new()) };
                e = Expr::Filter(Box::new(e), name, args, kwargs);
                e = self.postfix(e)?;
            } else if self.eat_name("is") {
                self.eat_name("not");
                self.name()?;
                while self.eat_op(".") {
                    self.name()?;
                }
                let mut parts = vec![e];
                if self.is_op("(") {
                    let (args, kwargs) = self.call_args()?;
                    parts.extend(args);
                    parts.extend(kwargs.into_iter().map(|k| k.1));
                } else if matches!(self.peek(), Some(Tok::Str(..) | Tok::Int(_) | Tok::Float(_)))
                    || matches!(self.peek(), Some(Tok::Name(n)) if !matches!(n.as_str(), "and" | "or" | "if" | "else" | "in" | "is" | "not" | "recursive"))
                {
                    let p = self.primary()?;
                    parts.push(self.postfix(p)?);
                }
                e = Expr::Opaque(parts);
            } else {
                return Ok(e);
            }
        }
    }

    /// Assignment targets: names, `ns.attr`, tuples of those.
    pub fn target(&mut self) -> PResult<Expr> {
        let mut items = Vec::new();
        loop {
            let e = if self.eat_op("(") {
                let t = self.target()?;
                self.expect_op(")")?;
                t
            } else {
                let n = self.name()?;
                let mut e = Expr::Name(n);
                while self.eat_op(".") {
                    e = Expr::Attr(Box::new(e), self.name()?);
                }
                e
            };
            items.push(e);
            if !self.eat_op(",") || self.is_name("in") || self.is_op("=") {
                break;
            }
        }
        Ok(if items.len() == 1 { items.pop().unwrap_or(Expr::Opaque(Vec::new())) } else { Expr::List(items) })
    }

    /// `(name [= default], ...)` of a macro or call block: names and defaults.
    pub fn params(&mut self) -> PResult<Vec<(String, Option<Expr>)>> {
        let mut out = Vec::new();
        if !self.eat_op("(") {
            return Ok(out);
        }
        while !self.eat_op(")") {
            let n = self.name()?;
            let d = if self.eat_op("=") { Some(self.expr()?) } else { None };
            out.push((n, d));
            if !self.eat_op(",") {
                self.expect_op(")")?;
                break;
            }
        }
        Ok(out)
    }

    /// The iterable of a `for`: an expression that stops at a trailing `if` filter.
    pub fn tuple_until_if(&mut self) -> PResult<Expr> {
        let e = self.or()?;
        if !self.is_op(",") {
            return Ok(e);
        }
        let mut items = vec![e];
        while self.eat_op(",") {
            items.push(self.or()?);
        }
        Ok(Expr::List(items))
    }

    /// `{% filter name(args) | other %}`
    pub fn filters_from_name(&mut self) -> PResult<Expr> {
        let name = self.name()?;
        let (args, kwargs) = if self.is_op("(") { self.call_args()? } else { (Vec::new(), Vec::new()) };
        let e = Expr::Filter(Box::new(Expr::Opaque(Vec::new())), name, args, kwargs);
        self.filters(e)
    }
}

fn either(mut parts: Vec<Expr>) -> Expr {
    if parts.len() == 1 {
        parts.pop().unwrap_or(Expr::Opaque(Vec::new()))
    } else {
        Expr::Either(parts, Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_escapes_as_python_decodes_them() {
        let s = |t: &str| lex_string(t.as_bytes()).map(|x| x.0);
        assert_eq!(s(r"'\x5f\x5fclass\x5f\x5f'").as_deref(), Some("__class__"));
        assert_eq!(s(r"'\137\137class\137\137'").as_deref(), Some("__class__"));
        assert_eq!(s(r"'\u005f\U0000005f'").as_deref(), Some("__"));
        assert_eq!(s(r"'\N{LOW LINE}\N{low line}'").as_deref(), Some("__"));
        assert_eq!(s(r#""a\"b""#).as_deref(), Some("a\"b"));
        assert_eq!(s(r"'\q'").as_deref(), Some("\\q"));
        assert_eq!(s(r"'\x5'"), None);
    }

    #[test]
    fn numbers_as_jinja_reads_them() {
        let n = |t: &str| lex_number(t.as_bytes()).map(|x| x.0);
        assert_eq!(n("0x5f"), Some(Tok::Int(95)));
        assert_eq!(n("0o137"), Some(Tok::Int(95)));
        assert_eq!(n("0b1011111"), Some(Tok::Int(95)));
        assert_eq!(n("9_5"), Some(Tok::Int(95)));
        assert_eq!(n("1.5e1"), Some(Tok::Float(15.0)));
    }

    #[test]
    fn whitespace_control() {
        let nodes = lex("a  \n  {%- set x %}\n  __class__  {% endset -%}  \n b").unwrap();
        let data: Vec<String> =
            nodes.iter().filter_map(|n| if let Node::Data(d) = n { Some(d.clone()) } else { None }).collect();
        assert_eq!(data, ["a", "  __class__  ", "b"]);
        let nodes = lex("{% if x %}\n  {% if y %}z{% endif %}").unwrap();
        assert!(nodes.iter().all(|n| !matches!(n, Node::Data(d) if d.trim().is_empty())), "{nodes:?}");
        // Brackets keep a tag open across `}}`.
        assert!(lex("{{ ({'a': '}}'}) }}").is_ok());
        assert!(lex("{{ {'a': 1}['a'] }}").is_ok());
    }
}
