//! The TorchScript lexer, token for token as `torch/csrc/jit/frontend/lexer.h` (`Lexer`,
//! `SharedParserData::match`) splits a `code/` file: C-locale blanks (`\r`, `\t`, `\v`, `\f`
//! and space), `#` comments except `# type:` (a token), backslash-newline joins, no newline
//! tokens inside brackets, indentation measured in bytes of leading blanks, numbers as C's
//! `strtod` reads them, strings in one or three single or double quotes with backslash
//! escapes, and the longest of an ASCII identifier and a fixed token (keywords included, a
//! token winning a tie). Anything else is an error, as it is for torch.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

/// One token; its text is `src[start..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Token {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Ident,
    Number,
    /// A string literal, quotes included.
    Str,
    /// A fixed token: punctuation, operators and keywords (`def`, `not in`, `# type:` ...).
    Op(&'static str),
    Newline,
    Indent,
    Dedent,
    Eof,
}

/// The multi-character tokens of `TC_FORALL_TOKEN_KINDS` and the single characters of
/// `valid_single_char_tokens` (`parser_constants.h`).
const TOKENS: &[&str] = &[
    "def", "<=>", "if", "else", "elif", "while", "return", "is", "is not", "!=", "==", "<=", ">=", "//", "True",
    "False", "None", "and", "or", "not", "<<", ">>", "+=", "-=", "*=", "/=", "%=", "|=", "&=", "^=", "<<=", ">>=",
    "**=", "global", "**", "->", "# type:", "raise", "assert", "...", "break", "continue", "del", "pass", "class",
    "import", "with", "as", "Ellipsis", "NoneType", "for", "in", "not in", "+", "-", "*", "/", "%", "@", "(", ")", "[",
    "]", ":", ",", "=", "{", "}", ">", "<", ".", "?", "!", "&", "^", "|", "~",
];

/// A token as kept in memory (12 bytes): files are at most a few MiB, so offsets fit `u32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Packed {
    /// 0 identifier, 1 number, 2 string, 3 newline, 4 indent, 5 dedent, 6 end of file,
    /// 7 + i: `TOKENS[i]`.
    tag: u8,
    start: u32,
    end: u32,
}

impl Packed {
    fn pack(t: Token) -> Packed {
        let tag = match t.kind {
            Kind::Ident => 0,
            Kind::Number => 1,
            Kind::Str => 2,
            Kind::Newline => 3,
            Kind::Indent => 4,
            Kind::Dedent => 5,
            Kind::Eof => 6,
            // the lexer hands out the table's own strings: compare addresses first
            Kind::Op(o) => TOKENS
                .iter()
                .position(|t| std::ptr::eq(t.as_ptr(), o.as_ptr()) && t.len() == o.len())
                .or_else(|| TOKENS.iter().position(|t| *t == o))
                .map_or(6, |i| i as u8 + 7),
        };
        let off = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Packed { tag, start: off(t.start), end: off(t.end) }
    }

    pub fn unpack(self) -> Token {
        let kind = match self.tag {
            0 => Kind::Ident,
            1 => Kind::Number,
            2 => Kind::Str,
            3 => Kind::Newline,
            4 => Kind::Indent,
            5 => Kind::Dedent,
            n => TOKENS.get(usize::from(n).wrapping_sub(7)).map_or(Kind::Eof, |o| Kind::Op(o)),
        };
        Token { kind, start: self.start as usize, end: self.end as usize }
    }
}

/// Why a file could not be lexed, and where (byte offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LexError {
    pub at: usize,
    pub msg: String,
}

/// `isspace(c) && c != '\n'` in the C locale.
fn is_blank(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | 0x0b | 0x0c)
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// What `SharedParserData::match` found.
enum Raw {
    /// Leading blanks of a line (`TK_WHITESPACE`), or the final ones (`TK_WHITESPACE_EOF`).
    Whitespace {
        len: usize,
        eof: bool,
    },
    Token(Token),
}

struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    /// Bracket depth; torch keeps it in a `size_t`, so a stray `)` wraps to "inside brackets".
    nesting: usize,
    indents: Vec<usize>,
    out: Vec<Packed>,
}

/// Tokens of `src`, at most `max_tokens` of them.
pub(super) fn lex(src: &[u8], max_tokens: usize) -> Result<Vec<Packed>, LexError> {
    if u32::try_from(src.len()).is_err() {
        return Err(LexError { at: 0, msg: "file larger than 4 GiB".into() });
    }
    let mut l = Lexer { src, pos: 0, nesting: 0, indents: Vec::new(), out: Vec::new() };
    // `Lexer::Lexer`: the first whitespace token sets the base indentation.
    let first = match l.raw(true)? {
        Raw::Whitespace { len, .. } => len,
        Raw::Token(_) => 0,
    };
    l.indents.push(first);
    loop {
        if l.out.len() > max_tokens {
            return Err(LexError { at: l.pos, msg: format!("more than {max_tokens} tokens") });
        }
        if l.step()? {
            return Ok(l.out);
        }
    }
}

impl Lexer<'_> {
    fn at(&self, i: usize) -> Option<u8> {
        self.src.get(i).copied()
    }

    /// `Lexer::lex`: one raw token, turned into indentation tokens where it is whitespace.
    /// True once the end-of-file token is out.
    fn step(&mut self) -> Result<bool, LexError> {
        match self.raw(false)? {
            Raw::Token(t) => {
                match t.kind {
                    Kind::Op("(" | "[" | "{") => self.nesting = self.nesting.wrapping_add(1),
                    Kind::Op(")" | "]" | "}") => self.nesting = self.nesting.wrapping_sub(1),
                    _ => {}
                }
                self.out.push(Packed::pack(t));
                Ok(t.kind == Kind::Eof)
            }
            Raw::Whitespace { len, eof } => {
                let at = self.pos;
                let depth = if eof { self.indents.first().copied().unwrap_or(0) } else { len };
                let top = self.indents.last().copied().unwrap_or(0);
                let tok = |kind| Packed::pack(Token { kind, start: at, end: at });
                if depth > top {
                    self.indents.push(depth);
                    self.out.push(tok(Kind::Indent));
                } else if depth == top {
                    self.out.push(tok(Kind::Newline));
                } else {
                    self.out.push(tok(Kind::Newline));
                    while self.indents.last() != Some(&depth) {
                        self.indents.pop();
                        self.out.push(tok(Kind::Dedent));
                        if self.indents.is_empty() {
                            return Err(LexError { at, msg: format!("invalid indent level {depth}") });
                        }
                    }
                }
                Ok(false)
            }
        }
    }

    /// `SharedParserData::match` (its tail calls as a loop).
    fn raw(&mut self, mut whitespace: bool) -> Result<Raw, LexError> {
        let continuation = self.nesting != 0;
        loop {
            let start = self.pos;
            while self.at(self.pos).is_some_and(is_blank) {
                self.pos += 1;
            }
            match self.at(self.pos) {
                Some(b'#') if !self.src.get(self.pos..).is_some_and(|r| r.starts_with(b"# type:")) => {
                    while self.at(self.pos).is_some_and(|c| c != b'\n') {
                        self.pos += 1;
                    }
                    continue;
                }
                Some(b'\\') if !whitespace && self.at(self.pos + 1) == Some(b'\n') => {
                    self.pos += 2;
                    whitespace = false;
                    continue;
                }
                Some(b'\n') => {
                    self.pos += 1;
                    whitespace = !continuation;
                    continue;
                }
                _ => {}
            }
            if whitespace {
                return Ok(Raw::Whitespace { len: self.pos - start, eof: self.pos >= self.src.len() });
            }
            let start = self.pos;
            let Some(c) = self.at(start) else {
                return Ok(Raw::Token(Token { kind: Kind::Eof, start, end: start }));
            };
            let kind_len = if let Some(n) = self.number(start) {
                Some((Kind::Number, n))
            } else if c == b'"' || c == b'\'' {
                let n = self.string(start).ok_or_else(|| LexError { at: start, msg: "unterminated string".into() })?;
                Some((Kind::Str, n))
            } else {
                self.word(start)
            };
            let Some((kind, n)) = kind_len else {
                return Err(LexError { at: start, msg: format!("unexpected character {:?}", char::from(c)) });
            };
            self.pos = start + n;
            return Ok(Raw::Token(Token { kind, start, end: start + n }));
        }
    }

    /// Length of the number at `i` as C's `strtod` reads it (decimal or hexadecimal, optional
    /// exponent), plus a `j` suffix (complex). The first byte is a digit or a dot.
    fn number(&self, i: usize) -> Option<usize> {
        let digits = |mut j: usize, hex: bool| {
            while self.at(j).is_some_and(|c| if hex { c.is_ascii_hexdigit() } else { c.is_ascii_digit() }) {
                j += 1;
            }
            j
        };
        let exponent = |j: usize, marker: [u8; 2]| {
            if !self.at(j).is_some_and(|c| marker.contains(&c)) {
                return j;
            }
            let k = if matches!(self.at(j + 1), Some(b'+' | b'-')) { j + 2 } else { j + 1 };
            let e = digits(k, false);
            if e > k {
                e
            } else {
                j
            }
        };
        let first = self.at(i)?;
        if !(first.is_ascii_digit() || first == b'.') {
            return None;
        }
        let hex_start = first == b'0' && matches!(self.at(i + 1), Some(b'x' | b'X'));
        let mut end = None;
        if hex_start {
            let int_end = digits(i + 2, true);
            let (frac_end, any) = if self.at(int_end) == Some(b'.') {
                let f = digits(int_end + 1, true);
                (f, int_end > i + 2 || f > int_end + 1)
            } else {
                (int_end, int_end > i + 2)
            };
            if any {
                end = Some(exponent(frac_end, [b'p', b'P']));
            }
        }
        let end = match end {
            Some(e) => e,
            None => {
                let int_end = digits(i, false);
                let (frac_end, any) = if self.at(int_end) == Some(b'.') {
                    let f = digits(int_end + 1, false);
                    (f, int_end > i || f > int_end + 1)
                } else {
                    (int_end, int_end > i)
                };
                if !any {
                    return None;
                }
                exponent(frac_end, [b'e', b'E'])
            }
        };
        let end = if self.at(end) == Some(b'j') { end + 1 } else { end };
        Some(end - i)
    }

    /// `SharedParserData::isString`: the length of the literal at `i`, quotes included.
    fn string(&self, i: usize) -> Option<usize> {
        let quote = self.at(i)?;
        let run = |j: usize, n: usize| (j..j + n).all(|k| self.at(k) == Some(quote));
        let qlen = if run(i, 3) { 3 } else { 1 };
        let mut end = i + qlen;
        while end < self.src.len() && !run(end, qlen) {
            if self.at(end) == Some(b'\n') && qlen != 3 {
                return None;
            }
            if self.at(end) == Some(b'\\') {
                end += 1;
            }
            end += 1;
        }
        (end < self.src.len()).then_some(end - i + qlen)
    }

    /// The longer of an identifier and a fixed token at `i`; a token wins a tie.
    fn word(&self, i: usize) -> Option<(Kind, usize)> {
        let rest = self.src.get(i..)?;
        let ident = if rest.first().is_some_and(|&c| is_ident_start(c)) {
            rest.iter().take_while(|&&c| is_ident_char(c)).count()
        } else {
            0
        };
        let first = rest.first().copied();
        let tok = TOKENS
            .iter()
            .filter(|t| t.as_bytes().first().copied() == first && rest.starts_with(t.as_bytes()))
            .max_by_key(|t| t.len());
        match tok {
            Some(t) if t.len() >= ident => Some((Kind::Op(t), t.len())),
            _ if ident > 0 => Some((Kind::Ident, ident)),
            _ => None,
        }
    }
}

/// The value of a string literal (`parseStringLiteral`): the quotes removed and the escapes
/// `\\ \' \" \<newline> \a \b \f \n \v \t \NNN` (octal) replaced. `\x`, `\u`, `\U` and other
/// escapes are errors, as they are for torch. Bytes, not text: a literal may hold any byte.
pub(super) fn string_value(lit: &[u8]) -> Result<Vec<u8>, String> {
    let q = lit.first().copied().unwrap_or(b'"');
    let qlen = if lit.len() >= 6 && lit.iter().take(3).all(|&c| c == q) { 3 } else { 1 };
    let body = lit.get(qlen..lit.len().saturating_sub(qlen)).unwrap_or(&[]);
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while let Some(&c) = body.get(i) {
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let e = body.get(i + 1).copied().unwrap_or(0);
        let (v, used) = match e {
            b'\\' | b'\'' | b'"' | b'\n' => (e, 2),
            b'a' => (0x07, 2),
            b'b' => (0x08, 2),
            b'f' => (0x0c, 2),
            b'n' => (b'\n', 2),
            b'v' => (0x0b, 2),
            b't' => (b'\t', 2),
            b'x' => return Err("unsupported hex specifier".into()),
            b'u' | b'U' => return Err("unsupported unicode specifier".into()),
            _ => {
                // `parseOctal`: exactly three octal digits
                let ds = body.get(i + 1..i + 4).filter(|_| i + 3 < body.len());
                match ds {
                    Some(d) if d.iter().all(|c| (b'0'..=b'7').contains(c)) => {
                        let v = d.iter().fold(0u32, |a, c| a * 8 + u32::from(c - b'0'));
                        if v >= 256 {
                            return Err("ill formed octal specifier".into());
                        }
                        (v as u8, 4)
                    }
                    _ => return Err("ill formed octal specifier".into()),
                }
            }
        };
        out.push(v);
        i += used;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<String> {
        lex(src.as_bytes(), 1 << 20)
            .unwrap()
            .iter()
            .map(|p| p.unpack())
            .map(|t| match t.kind {
                Kind::Ident | Kind::Number | Kind::Str => src[t.start..t.end].to_string(),
                Kind::Op(o) => o.to_string(),
                k => format!("{k:?}"),
            })
            .collect()
    }

    #[test]
    fn indentation_and_blocks() {
        let k = kinds("class A(Module):\n  def f(self):\n    return 1\n\n  # c\n  x : int\nclass B:\n  pass\n");
        assert_eq!(
            k.join(" "),
            "class A ( Module ) : Indent def f ( self ) : Indent return 1 Newline Dedent x : int Newline Dedent \
             class B : Indent pass Newline Dedent Eof"
        );
    }

    #[test]
    fn brackets_join_lines_and_stray_close_wraps() {
        assert_eq!(kinds("f(a,\n  b)\n").join(" "), "f ( a , b ) Newline Eof");
        // a stray `)` makes torch's size_t depth wrap: newlines stop counting
        assert_eq!(kinds(")\nx\n").join(" "), ") x Eof");
    }

    #[test]
    fn longest_match_token_wins_ties() {
        assert_eq!(kinds("define is_x not in input").join(" "), "define is_x not in input Eof");
        // torch reads `not input` as `not in` + `put`
        assert_eq!(kinds("not input").join(" "), "not in put Eof");
        assert_eq!(kinds("a**=b<<=c").join(" "), "a **= b <<= c Eof");
    }

    #[test]
    fn strings_comments_numbers() {
        assert_eq!(kinds("x = 'a#b' # c\n").join(" "), "x = 'a#b' Newline Eof");
        assert_eq!(kinds("s = \"a\\\"b\"\n").join(" "), "s = \"a\\\"b\" Newline Eof");
        assert_eq!(kinds("s = '''a\nb'''\n").join(" "), "s = '''a\nb''' Newline Eof");
        assert!(lex(b"s = 'a\nb'\n", 100).is_err());
        assert_eq!(kinds("1.5e-3 0x1fp2 .5 1. 3j 1e").join(" "), "1.5e-3 0x1fp2 .5 1. 3j 1 e Eof");
        assert_eq!(kinds("# type: (int) -> int\n").join(" "), "# type: ( int ) -> int Newline Eof");
        assert_eq!(kinds("a \\\n b\n").join(" "), "a b Newline Eof");
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(lex(b"x = $\n", 100).is_err());
        assert!(lex("x = \u{e9}\n".as_bytes(), 100).is_err());
        assert!(lex(b"if x:\n    a\n  b\n", 100).is_err());
        assert!(lex(b"'abc", 100).is_err());
        assert!(lex(b"a b c d", 2).is_err());
    }

    #[test]
    fn string_values() {
        assert_eq!(string_value(b"'a\\nb'").unwrap(), b"a\nb");
        assert_eq!(string_value(b"\"\\163ave\"").unwrap(), b"save");
        assert_eq!(string_value(b"'''x'''").unwrap(), b"x");
        assert!(string_value(b"'\\x41'").is_err());
        assert!(string_value(b"'\\9'").is_err());
    }
}
