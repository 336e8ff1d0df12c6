//! The TorchScript parser, rule for rule as `torch/csrc/jit/frontend/parser.cpp` (`ParserImpl`)
//! and `SourceImporterImpl::parseSourceIfNeeded` (`import_source.cpp`) read a `code/` file:
//! an optional `op_version_set = N` line, `import` lines, then only `class` and `def`
//! statements. The tree keeps what the analysis needs (names, attribute selections, calls,
//! string literals, where each is) and folds everything else into [`Expr::Other`].
//!
//! Bounded: recursion depth and tree size are capped; exceeding a cap is an error, never a
//! stack overflow.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use super::lex::{self, Kind, Packed, Token};

/// Deepest nesting of expressions and statements parsed.
const MAX_DEPTH: usize = 200;

/// An expression with the byte range of its source text.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Expr {
    pub kind: ExprKind,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum ExprKind {
    Var(String),
    /// `value.name`
    Select(Box<Expr>, String),
    /// `func(args, name=value)`
    Apply(Box<Expr>, Vec<Expr>, Vec<(String, Expr)>),
    /// Adjacent string literals, concatenated and unescaped.
    Str(Vec<u8>),
    /// Anything else (numbers, operators, literals, subscripts, comprehensions): its parts.
    Other(Vec<Expr>),
}

/// A statement, reduced to what it holds.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Stmt {
    Def(Def),
    /// `lhs [: type] [= rhs]` (also chained and augmented assignments).
    Assign {
        lhs: Vec<Expr>,
        ty: Option<Expr>,
        rhs: Option<Expr>,
    },
    /// Every other statement, by the expressions and nested statements it holds.
    Other(Vec<Expr>, Vec<Stmt>),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Param {
    pub name: String,
    pub ty: Option<Expr>,
    pub default: Option<Expr>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Def {
    pub name: String,
    /// Offset of the `def` keyword.
    pub start: usize,
    pub params: Vec<Param>,
    /// Return annotation and type-comment types.
    pub types: Vec<Expr>,
    pub body: Vec<Stmt>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct ClassDef {
    pub name: String,
    pub start: usize,
    pub superclass: Option<Expr>,
    pub body: Vec<Stmt>,
}

/// One parsed `code/` file.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct File {
    pub classes: Vec<ClassDef>,
    pub functions: Vec<Def>,
}

/// Why a file does not parse, and where (byte offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ParseError {
    pub at: usize,
    pub msg: String,
}

/// Parse one `code/` file (at most `max_tokens` tokens); also says how many tokens it had.
pub(super) fn parse_file(src: &[u8], max_tokens: usize) -> Result<(File, usize), ParseError> {
    let toks = lex::lex(src, max_tokens).map_err(|e| ParseError { at: e.at, msg: e.msg })?;
    let n = toks.len();
    let mut p = Parser { src, toks, i: 0, depth: 0 };
    Ok((p.file()?, n))
}

struct Parser<'a> {
    src: &'a [u8],
    toks: Vec<Packed>,
    i: usize,
    depth: usize,
}

type R<T> = Result<T, ParseError>;

/// Binary operators and their precedence (`binary_prec` in `lexer.cpp`).
fn binary_prec(k: Kind) -> Option<usize> {
    let Kind::Op(o) = k else { return None };
    Some(match o {
        "if" | "for" => 1,
        "and" | "or" => 2,
        "in" | "not in" | "<" | ">" | "is" | "is not" | "==" | "<=" | ">=" | "!=" => 4,
        "|" => 5,
        "^" => 6,
        "&" => 7,
        "<<" | ">>" => 8,
        "+" | "-" => 9,
        "*" | "/" | "//" | "%" | "@" => 10,
        "**" => 11,
        _ => return None,
    })
}

/// Unary operators and their precedence (`unary_prec`).
fn unary_prec(k: Kind) -> Option<usize> {
    match k {
        Kind::Op("not" | "~") => Some(3),
        Kind::Op("-" | "*") => Some(10),
        _ => None,
    }
}

/// `ParserImpl::followsTuple`
fn follows_tuple(k: Kind) -> bool {
    matches!(
        k,
        Kind::Op("+=" | "-=" | "*=" | "/=" | "%=" | "|=" | "&=" | "^=" | "<<=" | ">>=" | "**=" | "=" | ")")
            | Kind::Newline
    )
}

impl Parser<'_> {
    fn cur(&self) -> Token {
        let eof = Token { kind: Kind::Eof, start: self.src.len(), end: self.src.len() };
        self.toks.get(self.i).map_or(eof, |p| p.unpack())
    }

    fn lookahead(&self) -> Kind {
        self.toks.get(self.i + 1).map_or(Kind::Eof, |p| p.unpack().kind)
    }

    fn text(&self, t: Token) -> String {
        String::from_utf8_lossy(self.src.get(t.start..t.end).unwrap_or(&[])).into_owned()
    }

    fn next(&mut self) -> Token {
        let t = self.cur();
        if self.i < self.toks.len() {
            self.i += 1;
        }
        t
    }

    fn is(&self, k: Kind) -> bool {
        self.cur().kind == k
    }

    fn next_if(&mut self, k: Kind) -> bool {
        if self.is(k) {
            self.next();
            true
        } else {
            false
        }
    }

    fn err<T>(&self, msg: impl Into<String>) -> R<T> {
        Err(ParseError { at: self.cur().start, msg: msg.into() })
    }

    fn expect(&mut self, k: Kind) -> R<Token> {
        if self.is(k) {
            Ok(self.next())
        } else {
            let found = match self.cur().kind {
                Kind::Op(o) => format!("'{o}'"),
                Kind::Ident | Kind::Number | Kind::Str => format!("'{}'", self.text(self.cur())),
                other => format!("{other:?}").to_lowercase(),
            };
            let want = match k {
                Kind::Op(o) => format!("'{o}'"),
                other => format!("{other:?}").to_lowercase(),
            };
            self.err(format!("expected {want} but found {found}"))
        }
    }

    fn ident(&mut self) -> R<String> {
        let t = self.expect(Kind::Ident)?;
        Ok(self.text(t))
    }

    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err(format!("nesting deeper than {MAX_DEPTH}"));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn end_of_prev(&self) -> usize {
        self.i.checked_sub(1).and_then(|j| self.toks.get(j)).map_or(0, |p| p.unpack().end)
    }

    fn node(&self, kind: ExprKind, start: usize) -> Expr {
        Expr { kind, start, end: self.end_of_prev().max(start) }
    }

    // ---- files (`SourceImporterImpl::parseSourceIfNeeded`) ----

    fn file(&mut self) -> R<File> {
        let mut f = File::default();
        // `parsePossibleVersionNumber`
        if self.is(Kind::Ident) && self.text(self.cur()) == "op_version_set" {
            self.next();
            self.expect(Kind::Op("="))?;
            self.expect(Kind::Number)?;
            self.expect(Kind::Newline)?;
        }
        while !self.is(Kind::Eof) {
            // `parseImports`: the rest of each `import` line is skipped
            while self.next_if(Kind::Op("import")) {
                while !self.is(Kind::Newline) {
                    if self.is(Kind::Eof) {
                        return self.err("expected newline but found eof");
                    }
                    self.next();
                }
                self.expect(Kind::Newline)?;
            }
            match self.cur().kind {
                Kind::Op("class") => f.classes.push(self.class()?),
                Kind::Op("def") => f.functions.push(self.function()?),
                _ => return self.err("unexpected token in code import (only class and def may appear here)"),
            }
        }
        Ok(f)
    }

    fn class(&mut self) -> R<ClassDef> {
        let start = self.expect(Kind::Op("class"))?.start;
        let name = self.ident()?;
        let superclass = if self.next_if(Kind::Op("(")) {
            let e = self.exp(0)?;
            self.expect(Kind::Op(")"))?;
            Some(e)
        } else {
            None
        };
        self.expect(Kind::Op(":"))?;
        let body = self.statements(true)?;
        Ok(ClassDef { name, start, superclass, body })
    }

    fn function(&mut self) -> R<Def> {
        let start = self.expect(Kind::Op("def"))?.start;
        let name = self.ident()?;
        // `parseDecl`
        let mut params = Vec::new();
        let mut kwarg_only = false;
        self.sequence(Kind::Op("("), Kind::Op(","), Kind::Op(")"), &mut |p| {
            if !kwarg_only && p.next_if(Kind::Op("*")) {
                kwarg_only = true;
                return Ok(());
            }
            let name = p.ident()?;
            let ty = if p.next_if(Kind::Op(":")) { Some(p.exp(0)?) } else { None };
            let default = if p.next_if(Kind::Op("=")) { Some(p.exp(0)?) } else { None };
            params.push(Param { name, ty, default });
            Ok(())
        })?;
        let mut types = Vec::new();
        if self.next_if(Kind::Op("->")) {
            types.push(self.exp(0)?);
        }
        self.expect(Kind::Op(":"))?;
        let body = if self.next_if(Kind::Indent) {
            if self.is(Kind::Op("# type:")) {
                types.extend(self.type_comment()?);
                self.expect(Kind::Newline)?;
            }
            self.statements(false)?
        } else {
            // one-line function: `def f(x): return x`
            if self.is(Kind::Op("# type:")) {
                types.extend(self.type_comment()?);
            }
            vec![self.stmt()?]
        };
        Ok(Def { name, start, params, types, body })
    }

    /// `parseTypeComment`: `# type: (T, ...) -> T`
    fn type_comment(&mut self) -> R<Vec<Expr>> {
        self.expect(Kind::Op("# type:"))?;
        let mut types = Vec::new();
        self.sequence(Kind::Op("("), Kind::Op(","), Kind::Op(")"), &mut |p| {
            types.push(p.exp(0)?);
            Ok(())
        })?;
        if self.next_if(Kind::Op("->")) {
            types.push(self.exp(0)?);
        }
        Ok(types)
    }

    // ---- statements ----

    /// `parseStatements`: an indented block, up to its dedent.
    fn statements(&mut self, expect_indent: bool) -> R<Vec<Stmt>> {
        if expect_indent {
            self.expect(Kind::Indent)?;
        }
        let mut out = Vec::new();
        loop {
            out.push(self.stmt()?);
            if self.next_if(Kind::Dedent) {
                return Ok(out);
            }
        }
    }

    fn stmt(&mut self) -> R<Stmt> {
        self.enter()?;
        let s = self.stmt_inner();
        self.leave();
        s
    }

    fn stmt_inner(&mut self) -> R<Stmt> {
        let simple = |p: &mut Self, exprs: Vec<Expr>| -> R<Stmt> {
            p.expect(Kind::Newline)?;
            Ok(Stmt::Other(exprs, Vec::new()))
        };
        match self.cur().kind {
            Kind::Op("if") => self.if_stmt(true),
            Kind::Op("while") => {
                self.next();
                let cond = self.exp(0)?;
                self.expect(Kind::Op(":"))?;
                let body = self.statements(true)?;
                Ok(Stmt::Other(vec![cond], body))
            }
            Kind::Op("for") => {
                self.next();
                let mut exprs = Vec::new();
                self.sequence(Kind::Eof, Kind::Op(","), Kind::Op("in"), &mut |p| {
                    exprs.push(p.exp(4)?);
                    Ok(())
                })?;
                self.sequence(Kind::Eof, Kind::Op(","), Kind::Op(":"), &mut |p| {
                    exprs.push(p.exp(0)?);
                    Ok(())
                })?;
                let body = self.statements(true)?;
                Ok(Stmt::Other(exprs, body))
            }
            Kind::Op("global") => {
                self.next();
                let mut exprs = Vec::new();
                self.sequence(Kind::Eof, Kind::Op(","), Kind::Eof, &mut |p| {
                    let start = p.cur().start;
                    let name = p.ident()?;
                    exprs.push(p.node(ExprKind::Var(name), start));
                    Ok(())
                })?;
                simple(self, exprs)
            }
            Kind::Op("return") => {
                self.next();
                let e = if self.is(Kind::Newline) { Vec::new() } else { vec![self.exp_or_tuple()?] };
                simple(self, e)
            }
            Kind::Op("raise") => {
                self.next();
                let e = self.exp(0)?;
                simple(self, vec![e])
            }
            Kind::Op("assert") => {
                self.next();
                let mut e = vec![self.exp(0)?];
                if self.next_if(Kind::Op(",")) {
                    e.push(self.exp(0)?);
                }
                simple(self, e)
            }
            Kind::Op("break" | "continue" | "pass") => {
                self.next();
                simple(self, Vec::new())
            }
            Kind::Op("def") => Ok(Stmt::Def(self.function()?)),
            Kind::Op("del") => {
                self.next();
                let mut exprs = Vec::new();
                self.sequence(Kind::Eof, Kind::Op(","), Kind::Eof, &mut |p| {
                    exprs.push(p.exp(0)?);
                    Ok(())
                })?;
                simple(self, exprs)
            }
            Kind::Op("with") => {
                self.next();
                let mut exprs = Vec::new();
                self.sequence(Kind::Eof, Kind::Op(","), Kind::Op(":"), &mut |p| {
                    exprs.push(p.exp(0)?);
                    if p.next_if(Kind::Op("as")) {
                        let start = p.cur().start;
                        let name = p.ident()?;
                        exprs.push(p.node(ExprKind::Var(name), start));
                    }
                    Ok(())
                })?;
                let body = self.statements(true)?;
                Ok(Stmt::Other(exprs, body))
            }
            _ => {
                let lhs = self.exp_or_tuple()?;
                if self.is(Kind::Newline) {
                    self.next();
                    Ok(Stmt::Other(vec![lhs], Vec::new()))
                } else {
                    self.assign(lhs)
                }
            }
        }
    }

    /// `parseAssign`, after its first expression.
    fn assign(&mut self, lhs: Expr) -> R<Stmt> {
        let ty = if self.next_if(Kind::Op(":")) { Some(self.exp(0)?) } else { None };
        let op = match self.cur().kind {
            Kind::Op("=") => Some(true),
            Kind::Op("+=" | "-=" | "*=" | "/=" | "|=" | "&=" | "^=" | "%=" | "<<=" | ">>=" | "**=") => Some(false),
            _ => None,
        };
        let Some(plain) = op else {
            if ty.is_none() {
                return self.err("expected an assignment");
            }
            self.expect(Kind::Newline)?;
            return Ok(Stmt::Assign { lhs: vec![lhs], ty, rhs: None });
        };
        self.next();
        let mut lhs = vec![lhs];
        let mut rhs = self.exp_or_tuple()?;
        if plain {
            while self.next_if(Kind::Op("=")) {
                lhs.push(rhs);
                rhs = self.exp_or_tuple()?;
            }
        }
        self.expect(Kind::Newline)?;
        Ok(Stmt::Assign { lhs, ty, rhs: Some(rhs) })
    }

    fn if_stmt(&mut self, expect_if: bool) -> R<Stmt> {
        if expect_if {
            self.expect(Kind::Op("if"))?;
        }
        let cond = self.exp(0)?;
        self.expect(Kind::Op(":"))?;
        let mut body = self.statements(true)?;
        if self.next_if(Kind::Op("else")) {
            self.expect(Kind::Op(":"))?;
            body.extend(self.statements(true)?);
        } else if self.next_if(Kind::Op("elif")) {
            self.enter()?;
            let elif = self.if_stmt(false);
            self.leave();
            body.push(elif?);
        }
        Ok(Stmt::Other(vec![cond], body))
    }

    /// `parseSequence`; `Kind::Eof` stands for torch's `TK_NOTHING` (no bracket).
    fn sequence(&mut self, begin: Kind, sep: Kind, end: Kind, f: &mut dyn FnMut(&mut Self) -> R<()>) -> R<()> {
        if begin != Kind::Eof {
            self.expect(begin)?;
        }
        while end == Kind::Eof || !self.is(end) {
            f(self)?;
            if !self.next_if(sep) {
                if end != Kind::Eof {
                    self.expect(end)?;
                }
                return Ok(());
            }
        }
        self.expect(end)?;
        Ok(())
    }

    // ---- expressions ----

    /// `parseExpOrExpTuple`
    fn exp_or_tuple(&mut self) -> R<Expr> {
        let start = self.cur().start;
        let first = self.exp(0)?;
        if !self.is(Kind::Op(",")) {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.next_if(Kind::Op(",")) {
            if follows_tuple(self.cur().kind) {
                break;
            }
            items.push(self.exp(0)?);
        }
        Ok(self.node(ExprKind::Other(items), start))
    }

    /// `parseExp(precedence)`: top-down operator precedence.
    fn exp(&mut self, prec: usize) -> R<Expr> {
        self.enter()?;
        let e = self.exp_inner(prec);
        self.leave();
        e
    }

    fn exp_inner(&mut self, prec: usize) -> R<Expr> {
        let start = self.cur().start;
        let mut prefix = if let Some(up) = unary_prec(self.cur().kind) {
            self.next();
            let sub = self.exp(up)?;
            self.node(ExprKind::Other(vec![sub]), start)
        } else {
            self.base()?
        };
        while let Some(mut bp) = binary_prec(self.cur().kind) {
            if bp <= prec {
                break;
            }
            let kind = self.next().kind;
            if matches!(kind, Kind::Op("**" | "if")) {
                bp -= 1;
            }
            let parts = match kind {
                Kind::Op("if") => {
                    let cond = self.exp(0)?;
                    self.expect(Kind::Op("else"))?;
                    vec![prefix, cond, self.exp(bp)?]
                }
                Kind::Op("for") => {
                    let target = self.exp(4)?;
                    self.expect(Kind::Op("in"))?;
                    vec![prefix, target, self.exp(0)?]
                }
                _ => vec![prefix, self.exp(bp)?],
            };
            prefix = self.node(ExprKind::Other(parts), start);
        }
        Ok(prefix)
    }

    /// `parseBaseExp`: atoms, then `.name`, calls and subscripts.
    fn base(&mut self) -> R<Expr> {
        let start = self.cur().start;
        let prefix = match self.cur().kind {
            Kind::Number | Kind::Op("True" | "False" | "None" | "NoneType" | "Ellipsis" | "...") => {
                self.next();
                self.node(ExprKind::Other(Vec::new()), start)
            }
            Kind::Op("(") => {
                self.next();
                if self.next_if(Kind::Op(")")) {
                    self.node(ExprKind::Other(Vec::new()), start)
                } else {
                    let e = self.exp_or_tuple()?;
                    self.expect(Kind::Op(")"))?;
                    // parentheses make no node: `(sub).forward` selects from `sub`
                    e
                }
            }
            Kind::Op("[") => {
                let mut items = Vec::new();
                self.sequence(Kind::Op("["), Kind::Op(","), Kind::Op("]"), &mut |p| {
                    items.push(p.exp(0)?);
                    Ok(())
                })?;
                self.node(ExprKind::Other(items), start)
            }
            Kind::Op("{") => {
                self.next();
                let mut items = Vec::new();
                if !self.is(Kind::Op("}")) {
                    loop {
                        items.push(self.exp(0)?);
                        self.expect(Kind::Op(":"))?;
                        items.push(self.exp(0)?);
                        if !self.next_if(Kind::Op(",")) {
                            break;
                        }
                    }
                }
                self.expect(Kind::Op("}"))?;
                self.node(ExprKind::Other(items), start)
            }
            Kind::Str => {
                let mut value = Vec::new();
                while self.is(Kind::Str) {
                    let t = self.next();
                    let lit = self.src.get(t.start..t.end).unwrap_or(&[]);
                    match lex::string_value(lit) {
                        Ok(v) => value.extend(v),
                        Err(msg) => return Err(ParseError { at: t.start, msg }),
                    }
                }
                self.node(ExprKind::Str(value), start)
            }
            _ => {
                let name = self.ident()?;
                self.node(ExprKind::Var(name), start)
            }
        };
        // every postfix counts as a level, so that `a.b.c...` cannot nest the tree without bound
        let outer = self.depth;
        let out = self.postfix(prefix, start);
        self.depth = outer;
        out
    }

    fn postfix(&mut self, mut prefix: Expr, start: usize) -> R<Expr> {
        loop {
            self.enter()?;
            if self.next_if(Kind::Op(".")) {
                let name = self.ident()?;
                prefix = self.node(ExprKind::Select(Box::new(prefix), name), start);
            } else if self.is(Kind::Op("(")) {
                let (mut args, mut kwargs) = (Vec::new(), Vec::new());
                self.sequence(Kind::Op("("), Kind::Op(","), Kind::Op(")"), &mut |p| {
                    if p.is(Kind::Ident) && p.lookahead() == Kind::Op("=") {
                        let name = p.ident()?;
                        p.expect(Kind::Op("="))?;
                        kwargs.push((name, p.exp(0)?));
                    } else {
                        args.push(p.exp(0)?);
                    }
                    Ok(())
                })?;
                prefix = self.node(ExprKind::Apply(Box::new(prefix), args, kwargs), start);
            } else if self.is(Kind::Op("[")) {
                let mut items = vec![prefix];
                self.sequence(Kind::Op("["), Kind::Op(","), Kind::Op("]"), &mut |p| p.subscript(&mut items))?;
                prefix = self.node(ExprKind::Other(items), start);
            } else {
                return Ok(prefix);
            }
        }
    }

    /// `parseSubscriptExp`: `a`, `a:b`, `a:b:c` and the forms with parts left out.
    fn subscript(&mut self, out: &mut Vec<Expr>) -> R<()> {
        if !self.is(Kind::Op(":")) {
            out.push(self.exp(0)?);
        }
        if self.next_if(Kind::Op(":")) {
            if !matches!(self.cur().kind, Kind::Op("," | "]" | ":")) {
                out.push(self.exp(0)?);
            }
            if self.next_if(Kind::Op(":")) && !matches!(self.cur().kind, Kind::Op("," | "]")) {
                out.push(self.exp(0)?);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> File {
        parse_file(s.as_bytes(), 1 << 20).unwrap_or_else(|e| panic!("{e:?} at {:?}", &s[e.at.min(s.len())..])).0
    }

    #[test]
    fn torch_printed_module() {
        let src = "class M(Module):\n  __parameters__ = [\"w\", ]\n  w : Tensor\n  K : Final[int] = 4\n  \
                   __annotations__[\"0\"] = __torch__.X\n  def forward(self: __torch__.M,\n    x: Tensor) -> Tensor:\n    \
                   _0 = (self.sub).forward(x, )\n    y, _3, = _0\n    def __forked_function():\n      \
                   return __torch__.f(x, 3, )\n    fut = fork(__forked_function)\n    return torch.add(x, y[0:1, ::2])\n\
                   class Color(Enum):\n  RED = 1\ndef f(x: Tensor,\n    k: int=3) -> Tensor:\n  return torch.mul(x, k)\n";
        let f = parse(src);
        assert_eq!(f.classes.len(), 2);
        assert_eq!(f.functions.len(), 1);
        let m = &f.classes[0];
        assert_eq!(m.name, "M");
        let defs: Vec<_> = m.body.iter().filter_map(|s| if let Stmt::Def(d) = s { Some(d) } else { None }).collect();
        assert_eq!(defs[0].name, "forward");
        assert!(defs[0].body.iter().any(|s| matches!(s, Stmt::Def(d) if d.name == "__forked_function")));
        assert!(f.functions[0].params[1].default.is_some());
    }

    #[test]
    fn selects_through_parentheses() {
        let f = parse("def g(self):\n  return (self.a).b(1)\n");
        let Stmt::Other(e, _) = &f.functions[0].body[0] else { panic!() };
        let ExprKind::Apply(func, args, _) = &e[0].kind else { panic!("{e:?}") };
        assert_eq!(args.len(), 1);
        let ExprKind::Select(inner, name) = &func.kind else { panic!() };
        assert_eq!(name, "b");
        assert!(matches!(&inner.kind, ExprKind::Select(_, a) if a == "a"));
    }

    #[test]
    fn every_statement_form() {
        let src = "op_version_set = 1\nimport __torch__.x\ndef f(a: int, *, b: int=1) -> int:\n  # type: (int, int) -> int\n  \
                   if a and not b:\n    pass\n  elif a is not None:\n    a += 1\n  else:\n    raise Exception(\"x\")\n  \
                   while a < 3:\n    a = b = a + 1\n    continue\n  for i, j in zip(x, y):\n    break\n  \
                   with g() as h:\n    del d[0], e\n  assert a, \"m\"\n  global q\n  x : int = [i for i in r]\n  \
                   y = {1: 2} if a else {}\n  z = -a ** 2 // 3 @ m\n  return\n";
        let f = parse(src);
        assert_eq!(f.functions[0].params.len(), 2);
        assert_eq!(f.functions[0].types.len(), 4);
    }

    #[test]
    fn errors_and_bounds() {
        assert!(parse_file(b"x = 1\n", 100).is_err());
        assert!(parse_file(b"import a\n", 100).is_err());
        assert!(parse_file(b"def f(:\n", 100).is_err());
        let deep = format!("def f():\n  return {}1{}\n", "(".repeat(5000), ")".repeat(5000));
        assert!(parse_file(deep.as_bytes(), 1 << 20).unwrap_err().msg.contains("nesting"));
        assert!(parse_file(b"", 10).unwrap().0.classes.is_empty());
        assert!(parse_file(b"def f(x): return x\n", 100).is_ok());
    }
}
