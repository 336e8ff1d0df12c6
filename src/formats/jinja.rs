//! Jinja2 chat templates (GGUF `tokenizer.chat_template`, Hugging Face `tokenizer_config.json`).
//!
//! Templates are rendered by llama.cpp-based servers, `llama-cpp-python` and `transformers`;
//! an unsandboxed renderer (CVE-2024-34359) lets a template reach Python through attribute
//! chains such as `cycler.__init__.__globals__.os.popen('id').read()`. The template is
//! lexed and its expressions parsed (attribute access, subscripts, calls, filters, tests) so
//! that the checks see what is accessed, not just text:
//! - attribute names starting with `_` (dunders, name-mangled privates), by `.name`,
//!   `['name']`, `|attr('name')` or `attribute=` arguments: dangerous (every known escape goes
//!   through them, and the Jinja sandbox forbids them for that reason);
//! - access to `os`, `popen`, `system`, `eval`, `exec`, `__import__`, `subprocess`, ... : dangerous;
//! - attribute names computed at run time (`|attr(x ~ y)`, `obj[a ~ b]`): suspicious;
//! - `import`/`include`/`extends`: suspicious (chat templates never load other templates).
//!
//! Ordinary chat templates (Llama 3, ChatML, Mistral, Gemma, tool-calling variants using
//! `namespace()`) use none of these and come out clean.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use crate::engine::Scan;
use crate::finding::{CodeInfo, Finding, Severity};

pub const CODES: &[CodeInfo] = &[
    CodeInfo {
        code: "chat-template-sandbox-escape",
        severity: Severity::Dangerous,
        summary: "a jinja chat template reaches python internals (dunder attributes, os, eval)",
        fix: "do not serve the model with this template; replace it with a known-good chat template",
    },
    CodeInfo {
        code: "chat-template-computed-attribute",
        severity: Severity::Suspicious,
        summary: "a jinja chat template builds attribute names at run time",
        fix: "check the template by hand; ordinary chat templates only use literal attribute names",
    },
    CodeInfo {
        code: "chat-template-include",
        severity: Severity::Suspicious,
        summary: "a jinja chat template imports or includes other templates",
        fix: "check the template; chat templates are self-contained",
    },
    CodeInfo {
        code: "chat-template-unparsed",
        severity: Severity::Info,
        summary: "a jinja chat template could not be fully parsed; it was checked token by token",
        fix: "nothing to do unless other findings appear; report the template if it is valid jinja",
    },
];

/// Longest template parsed.
pub const MAX_TEMPLATE: usize = 4 << 20;
/// Most findings per template.
const MAX_FINDINGS: usize = 50;
/// Deepest expression nesting.
const MAX_DEPTH: u32 = 200;

/// A printable excerpt of `s`: control characters escaped, at most `max` characters.
pub fn excerpt(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n >= max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Names that reach the operating system or the interpreter when reachable at all.
const DANGEROUS_NAMES: &[&str] = &[
    "os",
    "popen",
    "eval",
    "exec",
    "execfile",
    "compile",
    "subprocess",
    "import_module",
    "builtins",
    "globals",
    "getattr",
    "setattr",
    "func_globals",
    "f_globals",
    "f_locals",
    "f_back",
    "gi_frame",
    "gi_code",
    "tb_frame",
    "co_code",
    "mro",
    "check_output",
    "spawn",
];

/// Callables that only a sandbox escape would find in a template context.
const DANGEROUS_CALLS: &[&str] =
    &["eval", "exec", "compile", "open", "getattr", "setattr", "__import__", "import_module"];

/// Filters whose string arguments name attributes.
const ATTRIBUTE_FILTERS: &[&str] =
    &["attr", "map", "selectattr", "rejectattr", "sort", "groupby", "sum", "unique", "min", "max"];

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Str(String),
    Num,
    Op(&'static str),
}

const OPS: &[&str] = &[
    "//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=", ".", ",", ":", "|", "(", ")", "[",
    "]", "{", "}",
];

/// One `{{ }}` or `{% %}` tag: its tokens and where it is in the template.
struct Tag {
    statement: bool,
    toks: Vec<Tok>,
    start: usize,
    end: usize,
}

/// Split a template into tags. Errors carry the byte offset.
fn lex(src: &str) -> Result<Vec<Tag>, usize> {
    let b = src.as_bytes();
    let mut tags = Vec::new();
    let mut i = 0;
    while let Some(rel) = src.get(i..).and_then(|s| s.find('{')) {
        let start = i + rel;
        let kind = b.get(start + 1).copied();
        i = start + 1;
        match kind {
            Some(b'#') => {
                let end = src.get(start + 2..).and_then(|s| s.find("#}")).ok_or(start)?;
                i = start + 2 + end + 2;
            }
            Some(b'{') | Some(b'%') => {
                let statement = kind == Some(b'%');
                let (toks, end) = lex_tag(src, start + 2, statement)?;
                if statement && toks.first() == Some(&Tok::Name("raw".into())) {
                    let close = find_endraw(src, end).ok_or(start)?;
                    tags.push(Tag { statement, toks, start, end });
                    i = close;
                    continue;
                }
                tags.push(Tag { statement, toks, start, end });
                i = end;
            }
            _ => {}
        }
    }
    Ok(tags)
}

/// Byte offset just past the `{% endraw %}` that closes a raw block starting at `from`.
fn find_endraw(src: &str, from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(rel) = src.get(i..)?.find("{%") {
        let at = i + rel;
        let inner = src.get(at + 2..)?.trim_start_matches(['-', '+']).trim_start();
        if inner.starts_with("endraw") {
            let close = src.get(at..)?.find("%}")?;
            return Some(at + close + 2);
        }
        i = at + 2;
    }
    None
}

/// Tokens of one tag from `pos` (just after `{{`/`{%`) to its closing delimiter.
fn lex_tag(src: &str, pos: usize, statement: bool) -> Result<(Vec<Tok>, usize), usize> {
    let b = src.as_bytes();
    let close: &[u8] = if statement { b"%}" } else { b"}}" };
    let mut i = pos;
    if matches!(b.get(i), Some(b'-' | b'+')) {
        i += 1;
    }
    let mut toks = Vec::new();
    let mut braces = 0usize;
    loop {
        while b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
            i += 1;
        }
        let rest = b.get(i..).ok_or(pos)?;
        if rest.is_empty() {
            return Err(pos);
        }
        if braces == 0 {
            for skip in [0usize, 1] {
                if (skip == 0 || matches!(rest.first(), Some(b'-' | b'+'))) && rest.get(skip..skip + 2) == Some(close) {
                    return Ok((toks, i + skip + 2));
                }
            }
        }
        let c = *rest.first().ok_or(pos)?;
        if c == b'"' || c == b'\'' {
            let (s, n) = lex_string(rest).ok_or(i)?;
            toks.push(Tok::Str(s));
            i += n;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let n = rest.iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_').count();
            toks.push(Tok::Name(String::from_utf8_lossy(rest.get(..n).unwrap_or(&[])).into_owned()));
            i += n;
        } else if c.is_ascii_digit() {
            let n = rest.iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_' || **c == b'.').count();
            // `1.` followed by a name is an attribute of a number; keep it simple and stop at the dot.
            let n = match rest.get(..n).and_then(|d| d.iter().position(|&x| x == b'.')) {
                Some(d) if !rest.get(d + 1).is_some_and(u8::is_ascii_digit) => d,
                _ => n,
            };
            toks.push(Tok::Num);
            i += n.max(1);
        } else if let Some(op) = OPS.iter().find(|op| rest.starts_with(op.as_bytes())) {
            match *op {
                "{" => braces += 1,
                "}" => braces = braces.saturating_sub(1),
                _ => {}
            }
            toks.push(Tok::Op(op));
            i += op.len();
        } else {
            return Err(i);
        }
    }
}

/// A quoted string with Python escapes; returns the value and the bytes consumed.
fn lex_string(b: &[u8]) -> Option<(String, usize)> {
    let q = *b.first()?;
    let mut out = Vec::new();
    let mut i = 1;
    loop {
        let c = *b.get(i)?;
        if c == q {
            return Some((String::from_utf8_lossy(&out).into_owned(), i + 1));
        }
        if c == b'\\' {
            let e = *b.get(i + 1)?;
            i += 2;
            match e {
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'r' => out.push(b'\r'),
                b'x' => {
                    let h = std::str::from_utf8(b.get(i..i + 2)?).ok()?;
                    out.push(u8::from_str_radix(h, 16).ok()?);
                    i += 2;
                }
                b'u' => {
                    let h = std::str::from_utf8(b.get(i..i + 4)?).ok()?;
                    let ch = char::from_u32(u32::from_str_radix(h, 16).ok()?)?;
                    out.extend_from_slice(ch.to_string().as_bytes());
                    i += 4;
                }
                other => out.push(other),
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
}

/// The parts of an expression the checks look at.
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Name(String),
    Str(String),
    Other,
    /// Literal containers, tuples, operators and conditionals: only their parts matter.
    Group(Vec<Expr>),
    /// String building (`~`, `+`, `%`): a computed key when used as an attribute name.
    Concat(Vec<Expr>),
    Attr(Box<Expr>, String),
    Item(Box<Expr>, Box<Expr>),
    Call(Box<Expr>, Vec<Expr>, Vec<(String, Expr)>),
    Filter(Box<Expr>, String, Vec<Expr>, Vec<(String, Expr)>),
}

struct Parser<'t> {
    toks: &'t [Tok],
    i: usize,
    depth: u32,
}

type PResult<T> = Result<T, ()>;
/// Positional and keyword arguments of a call or filter.
type Args = (Vec<Expr>, Vec<(String, Expr)>);

impl<'t> Parser<'t> {
    fn peek(&self) -> Option<&'t Tok> {
        self.toks.get(self.i)
    }

    fn peek_at(&self, n: usize) -> Option<&'t Tok> {
        self.toks.get(self.i + n)
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Some(Tok::Op(o)) if *o == op)
    }

    fn is_name(&self, n: &str) -> bool {
        matches!(self.peek(), Some(Tok::Name(x)) if x == n)
    }

    fn eat_op(&mut self, op: &str) -> bool {
        let yes = self.is_op(op);
        if yes {
            self.i += 1;
        }
        yes
    }

    fn eat_name(&mut self, n: &str) -> bool {
        let yes = self.is_name(n);
        if yes {
            self.i += 1;
        }
        yes
    }

    fn expect_op(&mut self, op: &str) -> PResult<()> {
        if self.eat_op(op) {
            Ok(())
        } else {
            Err(())
        }
    }

    fn name(&mut self) -> PResult<String> {
        match self.peek() {
            Some(Tok::Name(n)) => {
                self.i += 1;
                Ok(n.clone())
            }
            _ => Err(()),
        }
    }

    fn done(&self) -> bool {
        self.i >= self.toks.len()
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(());
        }
        Ok(())
    }

    /// `expr (, expr)* [,]` — a tuple without parentheses.
    fn tuple(&mut self) -> PResult<Expr> {
        let mut items = vec![self.expr()?];
        while self.eat_op(",") {
            if self.done() || self.is_name("if") || self.is_op("=") || self.is_op(")") {
                break;
            }
            items.push(self.expr()?);
        }
        Ok(if items.len() == 1 { items.pop().unwrap_or(Expr::Other) } else { Expr::Group(items) })
    }

    fn expr(&mut self) -> PResult<Expr> {
        self.enter()?;
        let e = self.condition();
        self.depth -= 1;
        e
    }

    fn condition(&mut self) -> PResult<Expr> {
        let e = self.or()?;
        if self.eat_name("if") {
            let cond = self.or()?;
            let mut parts = vec![e, cond];
            if self.eat_name("else") {
                parts.push(self.expr()?);
            }
            return Ok(Expr::Group(parts));
        }
        Ok(e)
    }

    fn or(&mut self) -> PResult<Expr> {
        let mut parts = vec![self.and()?];
        while self.eat_name("or") {
            parts.push(self.and()?);
        }
        Ok(group(parts))
    }

    fn and(&mut self) -> PResult<Expr> {
        let mut parts = vec![self.not()?];
        while self.eat_name("and") {
            parts.push(self.not()?);
        }
        Ok(group(parts))
    }

    fn not(&mut self) -> PResult<Expr> {
        if self.eat_name("not") {
            self.enter()?;
            let e = self.not();
            self.depth -= 1;
            return e;
        }
        self.compare()
    }

    fn compare(&mut self) -> PResult<Expr> {
        let mut parts = vec![self.concat()?];
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
        Ok(group(parts))
    }

    fn concat(&mut self) -> PResult<Expr> {
        let mut parts = vec![self.sum()?];
        while self.eat_op("~") {
            parts.push(self.sum()?);
        }
        Ok(if parts.len() == 1 { parts.pop().unwrap_or(Expr::Other) } else { Expr::Concat(parts) })
    }

    fn sum(&mut self) -> PResult<Expr> {
        let mut parts = vec![self.product()?];
        let mut strings = false;
        while self.is_op("+") || self.is_op("-") {
            strings |= self.is_op("+");
            self.i += 1;
            parts.push(self.product()?);
        }
        Ok(match parts.len() {
            1 => parts.pop().unwrap_or(Expr::Other),
            _ if strings => Expr::Concat(parts),
            _ => Expr::Group(parts),
        })
    }

    fn product(&mut self) -> PResult<Expr> {
        let mut parts = vec![self.power()?];
        let mut format = false;
        while ["*", "/", "//", "%"].iter().any(|o| self.is_op(o)) {
            format |= self.is_op("%") || self.is_op("*");
            self.i += 1;
            parts.push(self.power()?);
        }
        Ok(match parts.len() {
            1 => parts.pop().unwrap_or(Expr::Other),
            _ if format => Expr::Concat(parts),
            _ => Expr::Group(parts),
        })
    }

    fn power(&mut self) -> PResult<Expr> {
        let mut parts = vec![self.unary()?];
        while self.eat_op("**") {
            parts.push(self.unary()?);
        }
        Ok(group(parts))
    }

    fn unary(&mut self) -> PResult<Expr> {
        if self.eat_op("-") || self.eat_op("+") {
            self.enter()?;
            let e = self.unary();
            self.depth -= 1;
            return e;
        }
        let p = self.primary()?;
        let p = self.postfix(p)?;
        self.filters(p)
    }

    fn primary(&mut self) -> PResult<Expr> {
        self.enter()?;
        let e = match self.peek().cloned() {
            Some(Tok::Name(n)) => {
                self.i += 1;
                match n.as_str() {
                    "true" | "false" | "none" | "True" | "False" | "None" => Expr::Other,
                    _ => Expr::Name(n),
                }
            }
            Some(Tok::Str(s)) => {
                self.i += 1;
                let mut s = s;
                while let Some(Tok::Str(more)) = self.peek() {
                    s.push_str(more);
                    self.i += 1;
                }
                Expr::Str(s)
            }
            Some(Tok::Num) => {
                self.i += 1;
                Expr::Other
            }
            Some(Tok::Op("(")) => {
                self.i += 1;
                if self.eat_op(")") {
                    Expr::Other
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
                Expr::Group(items)
            }
            Some(Tok::Op("{")) => {
                self.i += 1;
                let mut items = Vec::new();
                while !self.eat_op("}") {
                    items.push(self.expr()?);
                    self.expect_op(":")?;
                    items.push(self.expr()?);
                    if !self.eat_op(",") {
                        self.expect_op("}")?;
                        break;
                    }
                }
                Expr::Group(items)
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
                    Some(Tok::Num) => {
                        self.i += 1;
                        e = Expr::Item(Box::new(e), Box::new(Expr::Other));
                    }
                    _ => return Err(()),
                }
            } else if self.eat_op("[") {
                let key = self.subscript()?;
                self.expect_op("]")?;
                e = Expr::Item(Box::new(e), Box::new(key));
            } else if self.is_op("(") {
                let (args, kwargs) = self.call_args()?;
                e = Expr::Call(Box::new(e), args, kwargs);
            } else {
                return Ok(e);
            }
        }
    }

    /// `a`, `a:b`, `a:b:c`, `:`, and tuples of those.
    fn subscript(&mut self) -> PResult<Expr> {
        let mut parts = Vec::new();
        let mut slice = false;
        loop {
            if self.is_op("]") {
                break;
            }
            if self.eat_op(":") || self.eat_op(",") {
                slice = true;
                continue;
            }
            parts.push(self.expr()?);
        }
        Ok(if !slice && parts.len() == 1 { parts.pop().unwrap_or(Expr::Other) } else { Expr::Group(parts) })
    }

    fn call_args(&mut self) -> PResult<Args> {
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

    fn filters(&mut self, e: Expr) -> PResult<Expr> {
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
                let mut parts = vec![e];
                if self.is_op("(") {
                    let (args, kwargs) = self.call_args()?;
                    parts.extend(args);
                    parts.extend(kwargs.into_iter().map(|k| k.1));
                } else if matches!(self.peek(), Some(Tok::Str(_) | Tok::Num))
                    || matches!(self.peek(), Some(Tok::Name(n)) if !matches!(n.as_str(), "and" | "or" | "if" | "else" | "in" | "is" | "not" | "recursive"))
                {
                    parts.push(self.primary()?);
                }
                e = Expr::Group(parts);
            } else {
                return Ok(e);
            }
        }
    }

    /// Assignment targets: names, `ns.attr`, tuples of those.
    fn target(&mut self) -> PResult<Expr> {
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
        Ok(group(items))
    }

    /// `name [= default], ...)` of a macro or call block.
    fn params(&mut self) -> PResult<Vec<Expr>> {
        let mut out = Vec::new();
        if !self.eat_op("(") {
            return Ok(out);
        }
        while !self.eat_op(")") {
            out.push(Expr::Name(self.name()?));
            if self.eat_op("=") {
                out.push(self.expr()?);
            }
            if !self.eat_op(",") {
                self.expect_op(")")?;
                break;
            }
        }
        Ok(out)
    }

    fn end(&self) -> PResult<()> {
        if self.done() {
            Ok(())
        } else {
            Err(())
        }
    }
}

fn group(mut parts: Vec<Expr>) -> Expr {
    if parts.len() == 1 {
        parts.pop().unwrap_or(Expr::Other)
    } else {
        Expr::Group(parts)
    }
}

/// What a tag does that the checks care about.
struct Parsed {
    exprs: Vec<Expr>,
    loads_templates: bool,
}

fn parse_tag(tag: &Tag) -> PResult<Parsed> {
    let mut p = Parser { toks: &tag.toks, i: 0, depth: 0 };
    let mut exprs = Vec::new();
    let mut loads_templates = false;
    if !tag.statement {
        exprs.push(p.tuple()?);
        p.end()?;
        return Ok(Parsed { exprs, loads_templates });
    }
    let kw = p.name()?;
    match kw.as_str() {
        "if" | "elif" | "do" | "autoescape" => exprs.push(p.tuple()?),
        "for" => {
            exprs.push(p.target()?);
            if !p.eat_name("in") {
                return Err(());
            }
            exprs.push(p.tuple_until_if()?);
            if p.eat_name("if") {
                exprs.push(p.expr()?);
            }
            p.eat_name("recursive");
        }
        "set" => {
            exprs.push(p.target()?);
            if p.eat_op("=") {
                exprs.push(p.tuple()?);
            } else {
                exprs.push(p.filters(Expr::Other)?);
            }
        }
        "macro" => {
            exprs.push(Expr::Name(p.name()?));
            exprs.extend(p.params()?);
        }
        "call" => {
            exprs.extend(p.params()?);
            exprs.push(p.expr()?);
        }
        "filter" => exprs.push(p.filters_from_name()?),
        "with" => {
            while !p.done() {
                exprs.push(p.target()?);
                p.expect_op("=")?;
                exprs.push(p.expr()?);
                p.eat_op(",");
            }
        }
        "block" => {
            p.name()?;
            p.eat_name("scoped");
            p.eat_name("required");
        }
        "include" | "extends" | "import" | "from" => {
            loads_templates = true;
            exprs.push(p.expr()?);
            // The rest (`as name`, `import a, b`, `ignore missing`, `with context`) names no attributes.
            p.i = p.toks.len();
        }
        "else" | "endif" | "endfor" | "endset" | "endmacro" | "endcall" | "endfilter" | "endwith" | "endblock"
        | "endautoescape" | "break" | "continue" | "raw" | "generation" | "endgeneration" => {}
        _ => return Err(()),
    }
    p.end()?;
    Ok(Parsed { exprs, loads_templates })
}

impl Parser<'_> {
    /// The iterable of a `for`: an expression that stops at a trailing `if` filter.
    fn tuple_until_if(&mut self) -> PResult<Expr> {
        let e = self.or()?;
        let mut items = vec![e];
        while self.eat_op(",") {
            items.push(self.or()?);
        }
        Ok(group(items))
    }

    /// `{% filter name(args) | other %}`
    fn filters_from_name(&mut self) -> PResult<Expr> {
        let name = self.name()?;
        let (args, kwargs) = if self.is_op("(") { self.call_args()? } else { (Vec::new(), Vec::new()) };
        let e = Expr::Filter(Box::new(Expr::Other), name, args, kwargs);
        self.filters(e)
    }
}

/// One problem found in a template.
struct Issue {
    code: &'static str,
    severity: Severity,
    what: String,
}

fn string_builder(e: &Expr) -> bool {
    match e {
        Expr::Concat(_) => true,
        Expr::Filter(_, f, _, _) => matches!(
            f.as_str(),
            "format" | "join" | "replace" | "reverse" | "lower" | "upper" | "string" | "trim" | "first" | "last"
        ),
        Expr::Group(parts) => parts.iter().any(string_builder),
        _ => false,
    }
}

/// The value of an expression made only of string literals joined with `~` or `+`.
fn const_str(e: &Expr) -> Option<String> {
    match e {
        Expr::Str(s) => Some(s.clone()),
        Expr::Concat(parts) => parts.iter().map(const_str).collect(),
        _ => None,
    }
}

fn attribute_issue(name: &str, how: &str) -> Option<Issue> {
    let bad = name.starts_with('_') || DANGEROUS_NAMES.contains(&name);
    bad.then(|| Issue {
        code: "chat-template-sandbox-escape",
        severity: Severity::Dangerous,
        what: format!("accesses attribute {name:?} ({how})"),
    })
}

fn check_expr(e: &Expr, out: &mut Vec<Issue>, depth: u32) {
    if depth > MAX_DEPTH || out.len() >= MAX_FINDINGS {
        return;
    }
    let d = depth + 1;
    match e {
        Expr::Name(n) => {
            if n.starts_with("__") || matches!(n.as_str(), "os" | "subprocess" | "builtins" | "sys" | "importlib") {
                out.push(Issue {
                    code: "chat-template-sandbox-escape",
                    severity: Severity::Dangerous,
                    what: format!("uses the name {n:?}"),
                });
            }
        }
        Expr::Str(_) | Expr::Other => {}
        Expr::Group(parts) | Expr::Concat(parts) => parts.iter().for_each(|p| check_expr(p, out, d)),
        Expr::Attr(obj, name) => {
            out.extend(attribute_issue(name, "attribute"));
            check_expr(obj, out, d);
        }
        Expr::Item(obj, key) => {
            match key.as_ref() {
                k if const_str(k).is_some() => out.extend(const_str(k).and_then(|s| attribute_issue(&s, "subscript"))),
                k if string_builder(k) => out.push(Issue {
                    code: "chat-template-computed-attribute",
                    severity: Severity::Suspicious,
                    what: "subscripts with a key built from strings at run time".into(),
                }),
                _ => {}
            }
            check_expr(obj, out, d);
            check_expr(key, out, d);
        }
        Expr::Call(f, args, kwargs) => {
            let callee = match f.as_ref() {
                Expr::Name(n) => Some(n.as_str()),
                Expr::Attr(_, n) if matches!(n.as_str(), "system" | "spawnv" | "spawnl") => Some(n.as_str()),
                _ => None,
            };
            if let Some(n) = callee {
                if DANGEROUS_CALLS.contains(&n) || matches!(n, "system" | "spawnv" | "spawnl") {
                    out.push(Issue {
                        code: "chat-template-sandbox-escape",
                        severity: Severity::Dangerous,
                        what: format!("calls {n}()"),
                    });
                }
            }
            check_expr(f, out, d);
            args.iter().for_each(|a| check_expr(a, out, d));
            kwargs.iter().for_each(|(_, a)| check_expr(a, out, d));
        }
        Expr::Filter(obj, name, args, kwargs) => {
            if ATTRIBUTE_FILTERS.contains(&name.as_str()) {
                let named = args.iter().chain(kwargs.iter().filter(|(k, _)| k == "attribute").map(|(_, v)| v));
                for a in named {
                    match a {
                        // `attribute=` takes dotted paths (`a.__class__`).
                        e if const_str(e).is_some() => {
                            let s = const_str(e).unwrap_or_default();
                            for part in s.split('.') {
                                out.extend(attribute_issue(part, &format!("|{name} filter")));
                            }
                        }
                        other if name == "attr" => {
                            if !matches!(other, Expr::Name(_) | Expr::Attr(..)) || string_builder(other) {
                                out.push(Issue {
                                    code: "chat-template-computed-attribute",
                                    severity: Severity::Suspicious,
                                    what: "|attr filter with an attribute name built at run time".into(),
                                });
                            } else {
                                out.push(Issue {
                                    code: "chat-template-computed-attribute",
                                    severity: Severity::Suspicious,
                                    what: "|attr filter with an attribute name from a variable".into(),
                                });
                            }
                        }
                        _ => {}
                    }
                }
            }
            check_expr(obj, out, d);
            args.iter().for_each(|a| check_expr(a, out, d));
            kwargs.iter().for_each(|(_, a)| check_expr(a, out, d));
        }
    }
}

/// Check a template; `origin` (e.g. `tokenizer.chat_template`) prefixes evidence.
pub fn check_template(src: &str, origin: &str) -> Vec<Finding> {
    let mut end = src.len().min(MAX_TEMPLATE);
    while !src.is_char_boundary(end) {
        end -= 1;
    }
    let src = src.get(..end).unwrap_or("");
    let mut out = Vec::new();
    let tags = match lex(src) {
        Ok(t) => t,
        Err(at) => {
            out.push(unparsed(origin, src, at));
            return token_scan(src, origin, out);
        }
    };
    let mut unparsed_at = None;
    for tag in &tags {
        if out.len() >= MAX_FINDINGS {
            break;
        }
        let text = src.get(tag.start..tag.end).unwrap_or("");
        let parsed = match parse_tag(tag) {
            Ok(p) => p,
            Err(()) => {
                unparsed_at.get_or_insert(tag.start);
                let mut issues = Vec::new();
                token_issues(&tag.toks, &mut issues);
                push_issues(&mut out, issues, origin, text);
                continue;
            }
        };
        let mut issues = Vec::new();
        if parsed.loads_templates {
            issues.push(Issue {
                code: "chat-template-include",
                severity: Severity::Suspicious,
                what: "loads another template".into(),
            });
        }
        for e in &parsed.exprs {
            check_expr(e, &mut issues, 0);
        }
        push_issues(&mut out, issues, origin, text);
    }
    if let Some(at) = unparsed_at {
        out.push(unparsed(origin, src, at));
    }
    out
}

fn unparsed(origin: &str, src: &str, at: usize) -> Finding {
    let near = src.get(at..).unwrap_or("");
    Finding::new(
        "chat-template-unparsed",
        Severity::Info,
        format!("{origin}: template not fully parsed near byte {at}"),
    )
    .evidence(excerpt(near, 120))
}

fn push_issues(out: &mut Vec<Finding>, issues: Vec<Issue>, origin: &str, text: &str) {
    let mut seen = std::collections::HashSet::new();
    for i in issues {
        if seen.insert((i.code, i.what.clone())) && out.len() < MAX_FINDINGS {
            out.push(
                Finding::new(i.code, i.severity, format!("chat template {}", i.what))
                    .evidence(format!("{origin}: {}", excerpt(text, 240))),
            );
        }
    }
}

/// Fallback when a tag does not parse: look at tokens (names after `.`, string subscripts).
fn token_issues(toks: &[Tok], out: &mut Vec<Issue>) {
    let mut prev: Option<&Tok> = None;
    for t in toks {
        match (prev, t) {
            (Some(Tok::Op(".")), Tok::Name(n)) => out.extend(attribute_issue(n, "attribute")),
            (_, Tok::Str(s)) if s.starts_with("__") => out.extend(attribute_issue(s, "string")),
            (_, Tok::Name(n)) if n.starts_with("__") => out.extend(attribute_issue(n, "name")),
            _ => {}
        }
        prev = Some(t);
    }
}

/// Fallback when the template does not even lex: dunder words anywhere inside tags.
fn token_scan(src: &str, origin: &str, mut out: Vec<Finding>) -> Vec<Finding> {
    let words = src.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
    let mut issues = Vec::new();
    for w in words {
        if w.len() > 4 && w.starts_with("__") && w.ends_with("__") {
            issues.extend(attribute_issue(w, "text"));
        }
    }
    push_issues(&mut out, issues, origin, src);
    out
}

/// Check the chat template(s) of a Hugging Face `tokenizer_config.json`; false when it has none.
pub fn scan_tokenizer_config(scan: &mut Scan<'_>, v: &serde_json::Value) -> bool {
    let Some(t) = v.get("chat_template") else { return false };
    let templates: Vec<(String, &str)> = match t {
        serde_json::Value::String(s) => vec![("chat_template".into(), s.as_str())],
        serde_json::Value::Array(list) => list
            .iter()
            .filter_map(|e| {
                let name = e.get("name").and_then(|n| n.as_str()).unwrap_or("?");
                Some((format!("chat_template[{name}]"), e.get("template")?.as_str()?))
            })
            .collect(),
        _ => return false,
    };
    for (origin, src) in templates {
        for f in check_template(src, &origin) {
            scan.finding(f);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(t: &str) -> Vec<&'static str> {
        check_template(t, "t").iter().map(|f| f.code).collect()
    }

    const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    const MISTRAL: &str = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";
    const GEMMA: &str = "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}";
    const TOOLS: &str = "{%- set ns = namespace(found=false, idx=0) -%}{%- for m in messages[::-1] if m.role != 'tool' -%}{%- set ns.idx = loop.index -%}{%- endfor -%}{%- if tools is defined and tools is not none %}{{- tools | tojson(indent=4) }}{%- for t in tools %}{{ t.function.name ~ ': ' ~ (t.function.description | default('', true)) }}{% endfor %}{%- endif %}{%- macro render(x, y=none) -%}{{ x|string }}{%- endmacro -%}{{ render(messages | length) }}{# comment with {{ __class__ }} #}{% generation %}x{% endgeneration %}{{ messages|selectattr('role', 'equalto', 'user')|list|last }}{{ {'a': 1, 'b': [1, 2.5, -3]}['a'] }}{{ 'x' if ns.found else \"y\" }}{% raw %}{{ __globals__ }}{% endraw %}";

    #[test]
    fn ordinary_templates_are_clean() {
        for t in [LLAMA3, CHATML, MISTRAL, GEMMA, TOOLS] {
            assert_eq!(check_template(t, "t"), Vec::new(), "{t}");
        }
    }

    #[test]
    fn sandbox_escapes() {
        for t in [
            "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
            "{{ joiner['__init__']['__globals__'] }}",
            "{{ lipsum|attr('__globals__') }}",
            "{% for c in ''.__class__.__mro__[1].__subclasses__() %}{% endfor %}",
            "{{ namespace.__init__.__globals__['__builtins__']['eval']('1+1') }}",
            "{{ self._TemplateReference__context }}",
            "{{ messages|map(attribute='__class__')|list }}",
            "{% set x = range.__class__ %}",
            "{{ x.os.system('echo') }}",
            "{{ eval('1') }}",
        ] {
            let c = codes(t);
            assert!(c.contains(&"chat-template-sandbox-escape"), "{t}: {c:?}");
        }
        let f = check_template("{{ cycler.__init__.__globals__.os.popen('id').read() }}", "tokenizer.chat_template");
        assert!(f[0].evidence.as_deref().unwrap().contains("tokenizer.chat_template: {{ cycler.__init__"), "{f:?}");
    }

    #[test]
    fn computed_attributes_and_includes() {
        assert_eq!(codes("{{ x|attr('_'*2 ~ 'class' ~ '_'*2) }}"), ["chat-template-computed-attribute"]);
        assert_eq!(codes("{{ x[('%c%c'|format(95,95)) ~ 'class'] }}"), ["chat-template-computed-attribute"]);
        assert_eq!(codes("{% include 'other.j2' %}"), ["chat-template-include"]);
        assert_eq!(codes("{{ x['__cla' ~ 'ss__'] }}"), ["chat-template-sandbox-escape"]);
        assert_eq!(codes("{{ x|attr('__glo' + 'bals__') }}"), ["chat-template-sandbox-escape"]);
        assert_eq!(codes("{{ x['role'] ~ x[loop.index0] }}"), Vec::<&str>::new());
    }

    #[test]
    fn unparsable_templates_fall_back_to_tokens() {
        let c = codes("{{ x.__class__ @@ }}");
        assert!(c.contains(&"chat-template-sandbox-escape") && c.contains(&"chat-template-unparsed"), "{c:?}");
        let c = codes("{{ unterminated ");
        assert_eq!(c, ["chat-template-unparsed"]);
        let c = codes("{{ '__globals__ ");
        assert!(c.contains(&"chat-template-sandbox-escape"), "{c:?}");
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let t = format!("{{{{ {}x{} }}}}", "(".repeat(5000), ")".repeat(5000));
        let _ = check_template(&t, "t");
        let t = format!("{{{{ {}x }}}}", "not ".repeat(5000));
        let _ = check_template(&t, "t");
        let t = format!("{{{{ x{} }}}}", ".__class__".repeat(400_000));
        assert!(check_template(&t, "t").len() <= MAX_FINDINGS);
        let t = format!("{{{{ x{} }}}}", "|e".repeat(400_000));
        let _ = check_template(&t, "t");
    }
}
