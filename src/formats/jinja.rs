//! Jinja2 chat templates: GGUF `tokenizer.chat_template*`, Hugging Face
//! `tokenizer_config.json` / `chat_template.json` `chat_template` (a string, a list of
//! `{name, template}` or a `{name: template}` map) and standalone `chat_template.jinja` files.
//!
//! transformers renders them in `ImmutableSandboxedEnvironment(trim_blocks=True,
//! lstrip_blocks=True, extensions=[AssistantTracker, loopcontrols])`
//! (`transformers.utils.chat_template_utils._compile_jinja_template`) and accepts jinja2 >=
//! 3.1.0; llama-cpp-python renders with the same sandbox (before 0.2.72 without one,
//! CVE-2024-34359). The sandbox of those versions lets some escapes through: a `str.format`
//! call walks attribute chains in its format string (`'{0.__init__.__globals__}'.format(x)`)
//! with the sandbox bypassed when the `format` method is reached indirectly
//! (CVE-2024-56326, fixed in 3.1.5: a stored reference passed to something that calls it)
//! or through `|attr('format')` (CVE-2025-27516, fixed in 3.1.6). Unsandboxed renderers
//! reach Python through any `_`-prefixed attribute.
//!
//! The template is lexed and parsed as jinja2 does (see [`crate::formats::jinja_lex`]), and
//! every string that can become an attribute name or a format string is folded to its
//! constant values where the template determines them: string operators (`~ + * %`),
//! filters (`format join replace reverse lower upper list first last ...`), string and dict
//! methods, subscripts and slices, `dict(__class__=1)` keys, variables (`set`, `for`,
//! `with`, macro parameters, block `set` bodies and macro output, flow-insensitively, to a
//! fixpoint). Then:
//! - an attribute name (`.x`, `['x']`, `|attr`, `attribute=`, `map('attr', ...)`,
//!   `selectattr` ...) that starts with `_` or names `os`, `popen`, `eval`, ...: dangerous;
//! - a format string reached by `format`/`format_map` (by any of those routes) whose fields
//!   walk `_`-prefixed or dangerous names: dangerous; such a format string anywhere in a
//!   template that can reach `format` or builds attribute names: dangerous;
//! - an attribute name built at run time from values the template cannot know: suspicious,
//!   dangerous when its known parts spell a dunder stem or it is cut out of a stringified
//!   object (`(lipsum|string)[18]`, the usual way to get `_` without writing it);
//! - `import`/`include`/`extends`: suspicious;
//! - a template modelgate cannot parse, or larger than [`MAX_TEMPLATE`]: error (fail closed).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use crate::detect::Format;
use crate::engine::Scan;
use crate::finding::{CodeInfo, Finding, Severity};
use crate::formats::jinja_lex::{lex, Expr, Node, PResult, Parser, Tag};
use std::collections::HashMap;

pub const CODES: &[CodeInfo] = &[
    CodeInfo {
        code: "chat-template-sandbox-escape",
        severity: Severity::Dangerous,
        summary: "a jinja chat template reaches python internals (dunder attributes, format strings, os, eval)",
        fix: "do not serve the model with this template; replace it with a known-good chat template",
    },
    CodeInfo {
        code: "chat-template-computed-attribute",
        severity: Severity::Suspicious,
        summary: "a jinja chat template builds attribute names or format strings at run time",
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
        severity: Severity::Error,
        summary: "a jinja chat template could not be parsed or is too large to check completely",
        fix: "check the template by hand; a template that cannot be parsed cannot be judged",
    },
];

/// Longest template checked; a longer one is an error (its first part is still checked).
pub const MAX_TEMPLATE: usize = 4 << 20;
/// Most findings of each severity per template (the worst are kept first).
const MAX_FINDINGS: usize = 50;
/// Most alternatives tracked for one value, and the longest string tracked exactly.
const MAX_ALTS: usize = 16;
const MAX_STR: usize = 4096;
/// Most constant fragments remembered for a value the template cannot know.
const MAX_FRAGS: usize = 64;
/// Fixpoint rounds over the template's assignments.
const ROUNDS: usize = 6;
/// Deepest evaluation (macro bodies calling macros).
const MAX_EVAL_DEPTH: u32 = 320;

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

/// Attribute names that reach the operating system or the interpreter when reachable at all.
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
    "cr_frame",
    "ag_frame",
    "tb_frame",
    "co_code",
    "mro",
    "check_output",
    "spawn",
    "system",
];

/// Callables that only a sandbox escape would find in a template context.
const DANGEROUS_CALLS: &[&str] =
    &["eval", "exec", "compile", "open", "getattr", "setattr", "__import__", "import_module", "system", "popen"];

/// Stems of Python's special attributes used by escapes: an attribute name built at run time
/// whose known parts contain one is dangerous.
const DUNDER_STEMS: &[&str] = &[
    "class",
    "globals",
    "init",
    "subclasses",
    "mro",
    "base",
    "builtins",
    "import",
    "getattribute",
    "dict",
    "func",
    "code",
    "module",
    "loader",
    "spec",
    "reduce",
    "self",
    "closure",
    "popen",
    "system",
    "eval",
    "exec",
];

/// Filters that take attribute paths (positionally or as `attribute=`).
const ATTRIBUTE_FILTERS: &[&str] =
    &["attr", "map", "selectattr", "rejectattr", "sort", "groupby", "sum", "unique", "min", "max", "join"];

// ---------------------------------------------------------------------------------------
// Abstract values.

/// What the template can compute for a value.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    /// One of these strings.
    Strs(Vec<String>),
    Num(f64),
    List(Vec<Val>),
    Dict(Vec<(Val, Val)>),
    /// A bound method or attribute of a value: `recv.name`.
    Method(Box<Val>, String),
    /// Something the template cannot determine. `frags` are constants it was built from;
    /// `built` is set when string operations made it (not a plain context variable);
    /// `harvest` when it was cut out of a stringified object.
    Unknown {
        frags: Vec<String>,
        built: bool,
        harvest: bool,
    },
}

fn unknown() -> Val {
    Val::Unknown { frags: Vec::new(), built: false, harvest: false }
}

impl Val {
    fn str1(s: impl Into<String>) -> Val {
        Val::Strs(vec![s.into()])
    }

    /// Constant text this value was made of (for values the checks cannot pin down).
    fn frags(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_frags(&mut out, 0);
        out
    }

    fn collect_frags(&self, out: &mut Vec<String>, depth: u32) {
        if depth > 16 || out.len() >= MAX_FRAGS {
            return;
        }
        match self {
            Val::Strs(s) => out.extend(s.iter().take(MAX_FRAGS - out.len()).cloned()),
            Val::Num(_) => {}
            Val::List(items) => items.iter().for_each(|v| v.collect_frags(out, depth + 1)),
            Val::Dict(items) => items.iter().for_each(|(k, v)| {
                k.collect_frags(out, depth + 1);
                v.collect_frags(out, depth + 1);
            }),
            // The value of `r.n` is whatever `r` holds there: its text is not made of `n`
            // (`json_spec.type` is no string "type").
            Val::Method(r, _) => r.collect_frags(out, depth + 1),
            Val::Unknown { frags, .. } => out.extend(frags.iter().take(MAX_FRAGS - out.len()).cloned()),
        }
    }

    fn harvested(&self) -> bool {
        match self {
            Val::Unknown { harvest, .. } => *harvest,
            Val::Method(r, _) => r.harvested(),
            _ => false,
        }
    }

    /// Determined by the template (its constants or its globals), not by the context data
    /// (`messages`, `tools`, ...).
    fn is_built(&self) -> bool {
        match self {
            Val::Unknown { built, .. } => *built,
            Val::Method(r, _) => r.is_built(),
            _ => true,
        }
    }

    /// Plain context data: a lookup the template does not shape.
    fn is_plain(&self) -> bool {
        !self.is_built() && !self.harvested()
    }

    /// An unknown value computed from this value (and `more`): built when any input is.
    fn derived(&self, more: &[&Val]) -> Val {
        let mut frags = self.frags();
        let mut harvest = self.harvested();
        let mut built = self.is_built();
        for m in more {
            frags.extend(m.frags());
            harvest |= m.harvested();
            built |= m.is_built();
        }
        frags.truncate(MAX_FRAGS);
        Val::Unknown { frags, built, harvest }
    }

    /// `str(v)` as the template would render it, when known.
    fn to_strs(&self) -> Option<Vec<String>> {
        match self {
            Val::Strs(s) => Some(s.clone()),
            Val::Num(n) => Some(vec![num_str(*n)]),
            _ => None,
        }
    }
}

fn num_str(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e16 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// Join alternatives (a variable assigned in several places, `a if c else b`).
fn join(a: Val, b: Val) -> Val {
    if a == b {
        return a;
    }
    match (a, b) {
        // one of two lists of one length (`for a, b in [(..), (..)]`): item by item
        (Val::List(x), Val::List(y)) if x.len() == y.len() => {
            Val::List(x.into_iter().zip(y).map(|(p, q)| join(p, q)).collect())
        }
        (Val::Strs(mut x), Val::Strs(y)) => {
            for s in y {
                if !x.contains(&s) {
                    x.push(s);
                }
            }
            if x.len() > MAX_ALTS {
                Val::Strs(x).derived(&[])
            } else {
                Val::Strs(x)
            }
        }
        (a, b) => {
            // A list or dict literal is no text: joined with data (`x if x is defined else {}`),
            // iterating the result yields the data's items or the literal's, not characters
            // of a string the template made. Its constants stay in the fragments.
            let container = |v: &Val| matches!(v, Val::List(_) | Val::Dict(_));
            let built = (a.is_built() && !container(&a)) || (b.is_built() && !container(&b));
            let mut frags = a.frags();
            frags.extend(b.frags());
            frags.dedup();
            frags.truncate(MAX_FRAGS);
            Val::Unknown { frags, built, harvest: a.harvested() || b.harvested() }
        }
    }
}

/// Apply `f` to every pair of alternatives (bounded).
fn combine(a: &[String], b: &[String], f: impl Fn(&str, &str) -> Option<String>) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for x in a {
        for y in b {
            let s = f(x, y)?;
            if s.len() > MAX_STR {
                return None;
            }
            if !out.contains(&s) {
                out.push(s);
            }
            if out.len() > MAX_ALTS {
                return None;
            }
        }
    }
    Some(out)
}

fn map_strs(v: &Val, f: impl Fn(&str) -> Option<String>) -> Val {
    match v {
        Val::Strs(s) => match s.iter().map(|x| f(x)).collect::<Option<Vec<_>>>() {
            Some(out) => {
                let mut out: Vec<String> = out;
                out.dedup();
                Val::Strs(out)
            }
            None => v.derived(&[]),
        },
        other => other.derived(&[]),
    }
}

/// Python's `str % args` for the conversions templates use.
fn percent_format(fmt: &str, args: &Val) -> Option<String> {
    let items: Vec<Val> = match args {
        Val::List(items) => items.clone(),
        other => vec![other.clone()],
    };
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    let mut next = 0;
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut key = None;
        if it.peek() == Some(&'(') {
            it.next();
            key = Some(it.by_ref().take_while(|c| *c != ')').collect::<String>());
        }
        // Flags, width and precision are ignored for the characters they produce.
        while it.peek().is_some_and(|c| "#0- +".contains(*c) || c.is_ascii_digit() || *c == '.') {
            it.next();
        }
        let conv = it.next()?;
        if conv == '%' {
            out.push('%');
            continue;
        }
        let arg = match &key {
            Some(k) => match args {
                Val::Dict(d) => d.iter().rev().find(|(dk, _)| *dk == Val::str1(k.clone())).map(|(_, v)| v.clone())?,
                _ => return None,
            },
            None => {
                let a = items.get(next)?.clone();
                next += 1;
                a
            }
        };
        match (conv, arg) {
            ('s', a) => out.push_str(a.to_strs()?.first()?),
            ('c', Val::Num(n)) => out.push(char::from_u32(n as u32)?),
            ('c', Val::Strs(s)) if s.len() == 1 && s.first()?.chars().count() == 1 => out.push_str(s.first()?),
            ('d' | 'i' | 'u', Val::Num(n)) => out.push_str(&format!("{}", n as i64)),
            ('x', Val::Num(n)) => out.push_str(&format!("{:x}", n as i64)),
            ('X', Val::Num(n)) => out.push_str(&format!("{:X}", n as i64)),
            ('o', Val::Num(n)) => out.push_str(&format!("{:o}", n as i64)),
            _ => return None,
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------
// Format strings.

/// Attribute and index names walked by the replacement fields of a `str.format` string
/// (`string.Formatter.parse` and `_string.formatter_field_name_split`), nested fields in
/// format specs included.
fn format_field_names(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c == '{' {
            if chars.get(i + 1) == Some(&'{') {
                i += 2;
                continue;
            }
            // The field runs to the matching '}' (specs may nest fields).
            let mut depth = 1;
            let mut j = i + 1;
            while let Some(&d) = chars.get(j) {
                match d {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            let field: String = chars.get(i + 1..j.min(chars.len())).unwrap_or_default().iter().collect();
            let name_end = field.find(['!', ':']).unwrap_or(field.len());
            let name = field.get(..name_end).unwrap_or("");
            // arg_name ('.' attribute | '[' index ']')*
            let mut rest = name.find(['.', '[']).and_then(|p| name.get(p..)).unwrap_or("");
            while !rest.is_empty() {
                if let Some(r) = rest.strip_prefix('.') {
                    let end = r.find(['.', '[']).unwrap_or(r.len());
                    out.push(r.get(..end).unwrap_or("").to_string());
                    rest = r.get(end..).unwrap_or("");
                } else if let Some(r) = rest.strip_prefix('[') {
                    let end = r.find(']').unwrap_or(r.len());
                    out.push(r.get(..end).unwrap_or("").to_string());
                    rest = r.get(end + 1..).unwrap_or("");
                } else {
                    break;
                }
            }
            if let Some(spec) = field.get(name_end..) {
                if spec.contains('{') {
                    out.extend(format_field_names(spec.get(1..).unwrap_or("")));
                }
            }
            i = j + 1;
        } else {
            i += 1;
        }
    }
    out
}

fn bad_name(name: &str) -> bool {
    let n = name.trim();
    n.starts_with('_') || DANGEROUS_NAMES.contains(&n)
}

/// The first field name of format string `s` that reaches Python internals.
fn bad_format_field(s: &str) -> Option<String> {
    if !s.contains('{') {
        return None;
    }
    format_field_names(s).into_iter().find(|n| bad_name(n))
}

// ---------------------------------------------------------------------------------------
// The template as the checks see it.

/// Where an assignment's value comes from.
#[derive(Debug, Clone)]
enum Rhs {
    Value(Expr),
    /// Each item of an iterable (`for`).
    Item(Expr),
    /// Rendered text of a body (block `set`, macro, block).
    Body(Vec<Piece>),
}

#[derive(Debug, Clone)]
enum Piece {
    Data(String),
    Out(Expr),
    /// Control flow: the body's text is not known exactly.
    Opaque,
}

#[derive(Debug, Clone)]
struct Assign {
    target: Expr,
    rhs: Rhs,
}

/// Parameters of a macro or call block: names and default expressions.
type Params = Vec<(String, Option<Expr>)>;
/// A call of a named function: name, positional and keyword arguments.
type CallSite = (String, Vec<Expr>, Vec<(String, Expr)>);

/// One problem found in a template.
struct Issue {
    code: &'static str,
    severity: Severity,
    what: String,
    /// A dangerous name alone (`x.os`, `eval(...)`), with no `_`-prefixed hop: no renderer's
    /// context object has such an attribute, so it escapes nothing by itself. Text that is
    /// no chat template (a CI workflow's `{{ matrix.os }}`) is not judged for it.
    weak: bool,
}

fn escape(what: String) -> Issue {
    Issue { code: "chat-template-sandbox-escape", severity: Severity::Dangerous, what, weak: false }
}

/// [`escape`] for a dangerous name without an underscore (see [`Issue::weak`]).
fn named(what: String) -> Issue {
    Issue { weak: true, ..escape(what) }
}

fn computed(what: String) -> Issue {
    Issue { code: "chat-template-computed-attribute", severity: Severity::Suspicious, what, weak: false }
}

/// A parsed template: every tag's expressions, and what the fixpoint needs.
#[derive(Default)]
struct Model {
    /// (expressions, tag start, tag end) of each tag.
    tags: Vec<(Vec<Expr>, usize, usize)>,
    assigns: Vec<Assign>,
    macros: HashMap<String, Params>,
    /// Call-block parameters (fed by `caller(...)`).
    caller_params: Params,
    loads_templates: Vec<(usize, usize)>,
}

/// Parse every tag; `Err(offset)` at the first tag modelgate cannot parse.
fn build_model(src: &str, nodes: &[Node]) -> Result<Model, usize> {
    let mut m = Model::default();
    // Open bodies: (kind, name or target, pieces).
    let mut open: Vec<(String, Option<Expr>, Vec<Piece>)> = Vec::new();
    let push_piece = |open: &mut Vec<(String, Option<Expr>, Vec<Piece>)>, p: Piece| {
        let mut first = true;
        for (kind, _, pieces) in open.iter_mut().rev() {
            if pieces.len() < 10_000 {
                pieces.push(if first { p.clone() } else { Piece::Opaque });
            }
            first = false;
            if matches!(kind.as_str(), "set" | "macro" | "block" | "call") {
                // Enclosing bodies see this one as opaque text.
            }
        }
    };
    for node in nodes {
        let tag = match node {
            Node::Data(d) => {
                push_piece(&mut open, Piece::Data(d.clone()));
                continue;
            }
            Node::Tag(t) => t,
        };
        let parsed = parse_tag(tag).map_err(|()| tag.start)?;
        let _ = src;
        if parsed.loads_templates {
            m.loads_templates.push((tag.start, tag.end));
        }
        m.assigns.extend(parsed.assigns.iter().cloned());
        match &parsed.block {
            Block::Output(e) => push_piece(&mut open, Piece::Out(e.clone())),
            Block::Open(kind, name) => {
                push_piece(&mut open, Piece::Opaque);
                open.push((kind.clone(), name.clone(), Vec::new()));
            }
            Block::Close(kind) => {
                // Close the innermost body of this kind (jinja2 would reject a mismatch).
                if let Some(pos) = open.iter().rposition(|(k, _, _)| k == kind) {
                    let (k, name, pieces) = open.remove(pos);
                    open.truncate(pos);
                    match (k.as_str(), name) {
                        ("set", Some(target)) => m.assigns.push(Assign { target, rhs: Rhs::Body(pieces) }),
                        ("macro", Some(Expr::Name(n))) => {
                            m.assigns.push(Assign { target: Expr::Name(format!("macro:{n}")), rhs: Rhs::Body(pieces) })
                        }
                        ("block", Some(Expr::Name(n))) => {
                            m.assigns.push(Assign { target: Expr::Name(format!("block:{n}")), rhs: Rhs::Body(pieces) })
                        }
                        _ => {}
                    }
                }
            }
            Block::Other => push_piece(&mut open, Piece::Opaque),
        }
        if let Some((name, params)) = parsed.macro_def {
            m.macros.insert(name, params);
        }
        if let Some(params) = parsed.call_params {
            m.caller_params.extend(params);
        }
        m.tags.push((parsed.exprs, tag.start, tag.end));
    }
    Ok(m)
}

enum Block {
    Output(Expr),
    Open(String, Option<Expr>),
    Close(String),
    Other,
}

struct Parsed {
    exprs: Vec<Expr>,
    assigns: Vec<Assign>,
    block: Block,
    loads_templates: bool,
    macro_def: Option<(String, Params)>,
    call_params: Option<Params>,
}

fn parse_tag(tag: &Tag) -> PResult<Parsed> {
    let mut p = Parser::new(&tag.toks);
    let mut out = Parsed {
        exprs: Vec::new(),
        assigns: Vec::new(),
        block: Block::Other,
        loads_templates: false,
        macro_def: None,
        call_params: None,
    };
    if !tag.statement {
        let e = p.tuple()?;
        p.end()?;
        out.exprs.push(e.clone());
        out.block = Block::Output(e);
        return Ok(out);
    }
    let kw = p.name()?;
    let open = |k: &str| Block::Open(k.to_string(), None);
    match kw.as_str() {
        "if" => {
            out.exprs.push(p.tuple()?);
            out.block = open("if");
        }
        "elif" | "do" => out.exprs.push(p.tuple()?),
        "autoescape" => {
            out.exprs.push(p.tuple()?);
            out.block = open("autoescape");
        }
        "for" => {
            let target = p.target()?;
            if !p.eat_name("in") {
                return Err(());
            }
            let iter = p.tuple_until_if()?;
            out.exprs.push(iter.clone());
            if p.eat_name("if") {
                out.exprs.push(p.expr()?);
            }
            p.eat_name("recursive");
            out.assigns.push(Assign { target, rhs: Rhs::Item(iter) });
            out.block = open("for");
        }
        "set" => {
            let target = p.target()?;
            if p.eat_op("=") {
                let e = p.tuple()?;
                out.exprs.push(e.clone());
                out.assigns.push(Assign { target, rhs: Rhs::Value(e) });
            } else {
                if !p.done() {
                    out.exprs.push(p.filters(Expr::Opaque(Vec::new()))?);
                }
                out.block = Block::Open("set".into(), Some(target));
            }
        }
        "macro" => {
            let name = p.name()?;
            let params = p.params()?;
            for (n, d) in &params {
                if let Some(d) = d {
                    out.exprs.push(d.clone());
                    out.assigns.push(Assign { target: Expr::Name(n.clone()), rhs: Rhs::Value(d.clone()) });
                }
            }
            out.macro_def = Some((name.clone(), params));
            out.block = Block::Open("macro".into(), Some(Expr::Name(name)));
        }
        "call" => {
            let params = p.params()?;
            for (n, d) in &params {
                if let Some(d) = d {
                    out.exprs.push(d.clone());
                    out.assigns.push(Assign { target: Expr::Name(n.clone()), rhs: Rhs::Value(d.clone()) });
                }
            }
            out.call_params = Some(params);
            out.exprs.push(p.expr()?);
            out.block = open("call");
        }
        "filter" => {
            out.exprs.push(p.filters_from_name()?);
            out.block = open("filter");
        }
        "with" => {
            while !p.done() {
                let target = p.target()?;
                p.expect_op("=")?;
                let e = p.expr()?;
                out.exprs.push(e.clone());
                out.assigns.push(Assign { target, rhs: Rhs::Value(e) });
                p.eat_op(",");
            }
            out.block = open("with");
        }
        "block" => {
            let name = p.name()?;
            p.eat_name("scoped");
            p.eat_name("required");
            out.block = Block::Open("block".into(), Some(Expr::Name(name)));
        }
        "include" | "extends" | "import" | "from" => {
            out.loads_templates = true;
            out.exprs.push(p.expr()?);
            // The rest (`as name`, `import a, b`, `ignore missing`, `with context`) names no attributes.
            p.skip_rest();
        }
        "generation" => out.block = open("generation"),
        "raw" => {}
        k if k.starts_with("end") => {
            out.block = Block::Close(k.trim_start_matches("end").to_string());
        }
        "else" | "break" | "continue" => {}
        _ => return Err(()),
    }
    p.end()?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Evaluation.

struct Eval<'m> {
    env: HashMap<String, Val>,
    model: &'m Model,
}

impl Eval<'_> {
    fn var(&self, name: &str) -> Val {
        self.env.get(name).cloned().unwrap_or_else(unknown)
    }

    fn eval(&self, e: &Expr, depth: u32) -> Val {
        if depth > MAX_EVAL_DEPTH {
            return Val::Unknown { frags: Vec::new(), built: true, harvest: false };
        }
        let d = depth + 1;
        match e {
            Expr::Name(n) => match n.as_str() {
                // Objects the environment provides: their text is the template's to cut up.
                "lipsum" | "cycler" | "joiner" | "namespace" | "range" | "dict" | "self" | "caller" | "varargs"
                | "kwargs" | "raise_exception" | "strftime_now" | "super"
                    if !self.env.contains_key(n) =>
                {
                    Val::Unknown { frags: Vec::new(), built: true, harvest: false }
                }
                _ => self.var(n),
            },
            Expr::Str(s, true) => Val::str1(s.clone()),
            Expr::Str(s, false) => Val::Unknown {
                frags: s.split('\u{fffd}').filter(|f| !f.is_empty()).map(str::to_string).collect(),
                built: true,
                harvest: false,
            },
            Expr::Int(n) => Val::Num(*n as f64),
            Expr::Float(f) => Val::Num(*f),
            Expr::Opaque(_) => unknown(),
            Expr::List(items) => Val::List(items.iter().map(|x| self.eval(x, d)).collect()),
            Expr::Dict(items) => Val::Dict(items.iter().map(|(k, v)| (self.eval(k, d), self.eval(v, d))).collect()),
            Expr::Either(parts, _) => parts.iter().map(|x| self.eval(x, d)).reduce(join).unwrap_or_else(unknown),
            Expr::Bin(op, a, b) => binop(op, self.eval(a, d), self.eval(b, d)),
            Expr::Attr(obj, name) => {
                if let Expr::Name(n) = obj.as_ref() {
                    if let Some(v) = self.env.get(&format!("{n}.{name}")) {
                        return v.clone();
                    }
                    if n == "self" {
                        return Val::Method(Box::new(unknown()), format!("block:{name}"));
                    }
                    // `loop.index0`, `loop.previtem`, ...: context-driven values.
                    if n == "loop" && name != "cycle" {
                        return unknown();
                    }
                }
                Val::Method(Box::new(self.eval(obj, d)), name.clone())
            }
            Expr::Item(obj, key) => item(self.eval(obj, d), self.eval(key, d)),
            Expr::Slice(obj, parts) => {
                let o = self.eval(obj, d);
                let idx: Vec<Option<Val>> = parts.iter().map(|p| p.as_ref().map(|x| self.eval(x, d))).collect();
                slice(o, &idx)
            }
            Expr::Call(f, args, kwargs) => self.call(f, args, kwargs, d),
            Expr::Filter(obj, name, args, kwargs) => {
                let o = self.eval(obj, d);
                let a: Vec<Val> = args.iter().map(|x| self.eval(x, d)).collect();
                let kw: Vec<(String, Val)> = kwargs.iter().map(|(k, x)| (k.clone(), self.eval(x, d))).collect();
                filter(name, o, &a, &kw)
            }
        }
    }

    fn call(&self, f: &Expr, args: &[Expr], kwargs: &[(String, Expr)], d: u32) -> Val {
        let a: Vec<Val> = args.iter().map(|x| self.eval(x, d)).collect();
        let kw: Vec<(String, Val)> = kwargs.iter().map(|(k, x)| (k.clone(), self.eval(x, d))).collect();
        if let Expr::Name(n) = f {
            match n.as_str() {
                "dict" | "namespace" => {
                    let mut items: Vec<(Val, Val)> = Vec::new();
                    for v in &a {
                        if let Val::Dict(d) = v {
                            items.extend(d.iter().cloned());
                        }
                    }
                    items.extend(kw.iter().map(|(k, v)| (Val::str1(k.clone()), v.clone())));
                    return Val::Dict(items);
                }
                "range" => {
                    let nums: Vec<f64> =
                        a.iter().filter_map(|v| if let Val::Num(n) = v { Some(*n) } else { None }).collect();
                    let (start, stop, step) = match nums.as_slice() {
                        [stop] => (0.0, *stop, 1.0),
                        [start, stop] => (*start, *stop, 1.0),
                        [start, stop, step] => (*start, *stop, *step),
                        _ => return unknown(),
                    };
                    if step == 0.0 || ((stop - start) / step) > 256.0 {
                        return unknown();
                    }
                    let mut out = Vec::new();
                    let mut x = start;
                    while (step > 0.0 && x < stop) || (step < 0.0 && x > stop) {
                        out.push(Val::Num(x));
                        x += step;
                    }
                    return Val::List(out);
                }
                "caller" | "lipsum" | "cycler" | "joiner" | "strftime_now" | "raise_exception" => {
                    return Val::Unknown { frags: Vec::new(), built: true, harvest: false };
                }
                m if self.model.macros.contains_key(m) => return self.var(&format!("macro:{m}")),
                _ => {}
            }
        }
        if let Expr::Attr(obj, m) = f {
            if m == "cycle" && matches!(obj.as_ref(), Expr::Name(n) if n == "loop") {
                return a.into_iter().reduce(join).unwrap_or_else(unknown);
            }
        }
        match self.eval(f, d) {
            Val::Method(recv, name) if name.starts_with("block:") => {
                let _ = recv;
                self.var(&name)
            }
            Val::Method(recv, name) => method(&recv, &name, &a, &kw),
            other => other.derived(&a.iter().collect::<Vec<_>>()),
        }
    }

    /// The rendered text of a body.
    fn body(&self, pieces: &[Piece], d: u32) -> Val {
        let mut acc = Val::str1("");
        for p in pieces {
            let v = match p {
                Piece::Data(t) => Val::str1(t.clone()),
                Piece::Out(e) => self.eval(e, d),
                Piece::Opaque => Val::Unknown { frags: Vec::new(), built: true, harvest: false },
            };
            acc = binop("~", acc, v);
        }
        acc
    }

    fn rhs(&self, rhs: &Rhs) -> Val {
        match rhs {
            Rhs::Value(e) => self.eval(e, 0),
            Rhs::Item(e) => items_of(&self.eval(e, 0)),
            Rhs::Body(p) => self.body(p, 0),
        }
    }
}

/// Any one item of an iterable.
fn items_of(v: &Val) -> Val {
    match v {
        Val::List(items) => items.iter().cloned().reduce(join).unwrap_or_else(unknown),
        Val::Dict(items) => items.iter().map(|(k, _)| k.clone()).reduce(join).unwrap_or_else(unknown),
        Val::Strs(s) => {
            let mut chars: Vec<String> = Vec::new();
            for c in s.iter().flat_map(|x| x.chars()) {
                let c = c.to_string();
                if !chars.contains(&c) {
                    chars.push(c);
                }
            }
            if chars.len() > MAX_ALTS {
                v.derived(&[])
            } else if chars.is_empty() {
                unknown()
            } else {
                Val::Strs(chars)
            }
        }
        other => match other {
            Val::Unknown { frags, harvest, built } => {
                Val::Unknown { frags: frags.clone(), built: *built, harvest: *harvest || *built }
            }
            _ => other.derived(&[]),
        },
    }
}

fn binop(op: &str, a: Val, b: Val) -> Val {
    match (op, &a, &b) {
        ("+", Val::Num(x), Val::Num(y)) => Val::Num(x + y),
        ("-", Val::Num(x), Val::Num(y)) => Val::Num(x - y),
        ("*", Val::Num(x), Val::Num(y)) => Val::Num(x * y),
        ("/", Val::Num(x), Val::Num(y)) if *y != 0.0 => Val::Num(x / y),
        ("//", Val::Num(x), Val::Num(y)) if *y != 0.0 => Val::Num((x / y).floor()),
        ("%", Val::Num(x), Val::Num(y)) if *y != 0.0 => Val::Num(x.rem_euclid(*y)),
        ("**", Val::Num(x), Val::Num(y)) => Val::Num(x.powf(*y)),
        ("+", Val::List(x), Val::List(y)) => Val::List(x.iter().chain(y).cloned().collect()),
        ("+", Val::Strs(x), Val::Strs(y)) => {
            combine(x, y, |p, q| Some(format!("{p}{q}"))).map_or_else(|| a.derived(&[&b]), Val::Strs)
        }
        ("~", _, _) => match (a.to_strs(), b.to_strs()) {
            (Some(x), Some(y)) => {
                combine(&x, &y, |p, q| Some(format!("{p}{q}"))).map_or_else(|| a.derived(&[&b]), Val::Strs)
            }
            _ => a.derived(&[&b]),
        },
        ("*", Val::Strs(s), Val::Num(n)) | ("*", Val::Num(n), Val::Strs(s)) => {
            let n = n.max(0.0) as usize;
            if n <= 512 {
                map_strs(&Val::Strs(s.clone()), |x| (x.len() * n <= MAX_STR).then(|| x.repeat(n)))
            } else {
                a.derived(&[&b])
            }
        }
        ("*", Val::List(items), Val::Num(n)) | ("*", Val::Num(n), Val::List(items)) if *n <= 64.0 => {
            Val::List(items.iter().cloned().cycle().take(items.len() * n.max(0.0) as usize).collect())
        }
        ("%", Val::Strs(f), _) => {
            let out: Option<Vec<String>> = f.iter().map(|x| percent_format(x, &b)).collect();
            out.map_or_else(|| a.derived(&[&b]), Val::Strs)
        }
        _ => a.derived(&[&b]),
    }
}

fn index(len: usize, n: f64) -> Option<usize> {
    let i = n as i64;
    let len = i64::try_from(len).ok()?;
    let i = if i < 0 { i + len } else { i };
    (0..len).contains(&i).then_some(i as usize)
}

fn item(obj: Val, key: Val) -> Val {
    match (&obj, &key) {
        (Val::Strs(_), Val::Num(n)) => map_strs(&obj, |x| {
            let chars: Vec<char> = x.chars().collect();
            index(chars.len(), *n).and_then(|i| chars.get(i)).map(|c| c.to_string())
        }),
        (Val::List(items), Val::Num(n)) => {
            index(items.len(), *n).and_then(|i| items.get(i).cloned()).unwrap_or_else(|| obj.derived(&[]))
        }
        (Val::Dict(items), k) => items
            .iter()
            .rev()
            .find(|(dk, _)| dk == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| Val::Method(Box::new(obj.clone()), key_name(k))),
        (Val::Unknown { .. } | Val::Method(..), Val::Num(_)) => {
            let mut v = obj.derived(&[]);
            if let Val::Unknown { harvest, .. } = &mut v {
                // A character cut out of text the template made (`(lipsum|string)[18]`).
                *harvest |= obj.is_built();
            }
            v
        }
        (_, Val::Strs(s)) if s.len() == 1 => Val::Method(Box::new(obj.clone()), s.first().cloned().unwrap_or_default()),
        _ => obj.derived(&[&key]),
    }
}

fn key_name(k: &Val) -> String {
    match k {
        Val::Strs(s) => s.first().cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

fn slice(obj: Val, idx: &[Option<Val>]) -> Val {
    let num = |i: usize| match idx.get(i) {
        Some(Some(Val::Num(n))) => Some(Some(*n as i64)),
        Some(None) | None => Some(None),
        _ => None,
    };
    let (Some(start), Some(stop), Some(step)) = (num(0), num(1), num(2)) else { return obj.derived(&[]) };
    let step = step.unwrap_or(1);
    if step == 0 {
        return obj.derived(&[]);
    }
    let pick = |len: usize| -> Vec<usize> {
        let len = len as i64;
        let norm = |x: i64| if x < 0 { (x + len).max(if step < 0 { -1 } else { 0 }) } else { x.min(len) };
        let mut out = Vec::new();
        if step > 0 {
            let (mut i, end) = (start.map_or(0, norm), stop.map_or(len, norm));
            while i < end {
                out.push(i as usize);
                i += step;
            }
        } else {
            let (mut i, end) = (start.map_or(len - 1, |x| norm(x).min(len - 1)), stop.map_or(-1, norm));
            while i > end {
                if i >= 0 {
                    out.push(i as usize);
                }
                i += step;
            }
        }
        out
    };
    match &obj {
        Val::Strs(_) => map_strs(&obj, |x| {
            let chars: Vec<char> = x.chars().collect();
            Some(pick(chars.len()).into_iter().filter_map(|i| chars.get(i)).collect())
        }),
        Val::List(items) => Val::List(pick(items.len()).into_iter().filter_map(|i| items.get(i).cloned()).collect()),
        Val::Unknown { .. } => item(obj, Val::Num(0.0)),
        _ => obj.derived(&[]),
    }
}

fn str_arg(a: &[Val], i: usize) -> Option<String> {
    match a.get(i)? {
        Val::Strs(s) if s.len() == 1 => s.first().cloned(),
        Val::Num(n) => Some(num_str(*n)),
        _ => None,
    }
}

/// A string's or a container's method called with `a`.
fn method(recv: &Val, name: &str, a: &[Val], kw: &[(String, Val)]) -> Val {
    let all: Vec<&Val> = a.iter().chain(kw.iter().map(|(_, v)| v)).collect();
    match (recv, name) {
        (Val::Strs(_), "upper") => map_strs(recv, |x| Some(x.to_uppercase())),
        (Val::Strs(_), "lower" | "casefold") => map_strs(recv, |x| Some(x.to_lowercase())),
        (Val::Strs(_), "strip") if a.is_empty() => map_strs(recv, |x| Some(x.trim().to_string())),
        (Val::Strs(_), "lstrip") if a.is_empty() => map_strs(recv, |x| Some(x.trim_start().to_string())),
        (Val::Strs(_), "rstrip") if a.is_empty() => map_strs(recv, |x| Some(x.trim_end().to_string())),
        (Val::Strs(_), "strip" | "lstrip" | "rstrip") => match str_arg(a, 0) {
            Some(chars) => map_strs(recv, |x| {
                let set = |c: char| chars.contains(c);
                Some(
                    match name {
                        "strip" => x.trim_matches(set),
                        "lstrip" => x.trim_start_matches(set),
                        _ => x.trim_end_matches(set),
                    }
                    .to_string(),
                )
            }),
            None => recv.derived(&all),
        },
        (Val::Strs(_), "title" | "capitalize" | "swapcase") => recv.derived(&all),
        (Val::Strs(_), "replace") => match (str_arg(a, 0), str_arg(a, 1)) {
            (Some(old), Some(new)) if !old.is_empty() => map_strs(recv, |x| Some(x.replace(&old, &new))),
            _ => recv.derived(&all),
        },
        (Val::Strs(_), "join") => match a.first() {
            Some(Val::List(items)) => {
                let parts: Option<Vec<Vec<String>>> = items.iter().map(Val::to_strs).collect();
                match parts {
                    Some(parts) => {
                        let sep = recv.to_strs().unwrap_or_default();
                        let mut acc: Vec<String> = vec![String::new()];
                        for (i, p) in parts.iter().enumerate() {
                            let with_sep = if i == 0 {
                                p.clone()
                            } else {
                                combine(&sep, p, |s, x| Some(format!("{s}{x}"))).unwrap_or_default()
                            };
                            match combine(&acc, &with_sep, |x, y| Some(format!("{x}{y}"))) {
                                Some(v) => acc = v,
                                None => return recv.derived(&all),
                            }
                        }
                        Val::Strs(acc)
                    }
                    None => recv.derived(&all),
                }
            }
            Some(Val::Strs(s)) => {
                let sep = str_arg(std::slice::from_ref(recv), 0).unwrap_or_default();
                Val::Strs(s.iter().map(|x| x.chars().map(String::from).collect::<Vec<_>>().join(&sep)).collect())
            }
            _ => recv.derived(&all),
        },
        (Val::Strs(_), "format" | "format_map") => recv.derived(&all),
        (Val::Strs(s), "split") => match (s.as_slice(), str_arg(a, 0)) {
            ([x], Some(sep)) if !sep.is_empty() => Val::List(x.split(sep.as_str()).map(Val::str1).collect()),
            ([x], None) if a.is_empty() => Val::List(x.split_whitespace().map(Val::str1).collect()),
            _ => recv.derived(&all),
        },
        (Val::Dict(items), "get" | "pop" | "setdefault") => {
            let hit = a.first().and_then(|k| items.iter().rev().find(|(dk, _)| dk == k).map(|(_, v)| v.clone()));
            match (hit, a.get(1)) {
                (Some(v), _) => v,
                (None, Some(default)) => default.clone(),
                (None, None) => unknown(),
            }
        }
        (Val::Dict(items), "values") => Val::List(items.iter().map(|(_, v)| v.clone()).collect()),
        (Val::Dict(items), "keys") => Val::List(items.iter().map(|(k, _)| k.clone()).collect()),
        (Val::Dict(items), "items") => {
            Val::List(items.iter().map(|(k, v)| Val::List(vec![k.clone(), v.clone()])).collect())
        }
        (Val::List(items), "pop") => match a.first() {
            Some(Val::Num(n)) => index(items.len(), *n).and_then(|i| items.get(i).cloned()).unwrap_or_else(unknown),
            None => items.last().cloned().unwrap_or_else(unknown),
            _ => items_of(recv),
        },
        (Val::List(_), "copy") => recv.clone(),
        _ => recv.derived(&all),
    }
}

/// HTML escaping as markupsafe does (`|e`, `|escape`, `|forceescape`).
fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&#34;").replace('\'', "&#39;")
}

fn filter(name: &str, obj: Val, a: &[Val], kw: &[(String, Val)]) -> Val {
    let all: Vec<&Val> = a.iter().chain(kw.iter().map(|(_, v)| v)).collect();
    let kwarg = |k: &str| kw.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    match name {
        "string" | "safe" | "trim" | "e" | "escape" | "forceescape" | "lower" | "upper" => match obj.to_strs() {
            Some(s) => {
                let v = Val::Strs(s);
                match name {
                    "trim" if a.is_empty() => map_strs(&v, |x| Some(x.trim().to_string())),
                    "trim" => method(&v, "strip", a, kw),
                    "e" | "escape" | "forceescape" => map_strs(&v, |x| Some(html_escape(x))),
                    "lower" => map_strs(&v, |x| Some(x.to_lowercase())),
                    "upper" => map_strs(&v, |x| Some(x.to_uppercase())),
                    _ => v,
                }
            }
            // `|string` of an object is its repr: text to cut characters from.
            None => obj.derived(&all),
        },
        "reverse" => match &obj {
            Val::Strs(_) => map_strs(&obj, |x| Some(x.chars().rev().collect())),
            Val::List(items) => Val::List(items.iter().rev().cloned().collect()),
            _ => obj.derived(&all),
        },
        "replace" => method(&obj, "replace", a, kw),
        "format" => match &obj {
            Val::Strs(f) => {
                let args = if kw.is_empty() {
                    Val::List(a.to_vec())
                } else {
                    Val::Dict(kw.iter().map(|(k, v)| (Val::str1(k.clone()), v.clone())).collect())
                };
                let out: Option<Vec<String>> = f.iter().map(|x| percent_format(x, &args)).collect();
                out.map_or_else(|| obj.derived(&all), Val::Strs)
            }
            _ => obj.derived(&all),
        },
        "join" => {
            if kwarg("attribute").is_some() || a.len() > 1 {
                return obj.derived(&all);
            }
            let sep = a.first().cloned().or_else(|| kwarg("d")).unwrap_or_else(|| Val::str1(""));
            method(&sep, "join", std::slice::from_ref(&obj), &[])
        }
        "first" | "last" => match &obj {
            Val::Strs(_) => item(obj.clone(), Val::Num(if name == "first" { 0.0 } else { -1.0 })),
            Val::List(items) => {
                let it = if name == "first" { items.first() } else { items.last() };
                it.cloned().unwrap_or_else(unknown)
            }
            Val::Dict(items) => {
                let it = if name == "first" { items.first() } else { items.last() };
                it.map(|(k, _)| k.clone()).unwrap_or_else(unknown)
            }
            _ => item(obj.clone(), Val::Num(0.0)),
        },
        "list" => match &obj {
            Val::Strs(s) if s.len() == 1 => {
                Val::List(s.first().map(|x| x.chars().map(|c| Val::str1(c.to_string())).collect()).unwrap_or_default())
            }
            Val::Dict(items) => Val::List(items.iter().map(|(k, _)| k.clone()).collect()),
            Val::List(_) => obj,
            _ => obj.derived(&all),
        },
        "items" | "dictsort" => method(&obj, "items", &[], &[]),
        "default" | "d" => a.first().cloned().map_or(obj.clone(), |d| join(obj.clone(), d)),
        "map" => match (a.first().and_then(|f| str_arg(std::slice::from_ref(f), 0)), &obj) {
            (Some(f), Val::List(items)) if kwarg("attribute").is_none() => {
                let rest = a.get(1..).unwrap_or_default();
                Val::List(items.iter().map(|x| filter(&f, x.clone(), rest, kw)).collect())
            }
            _ => obj.derived(&all),
        },
        "select" | "reject" | "unique" | "sort" | "batch" | "slice" => match &obj {
            Val::List(items) if name == "sort" || name == "unique" => Val::List(items.clone()),
            _ => obj.derived(&all),
        },
        "min" | "max" | "random" => items_of(&obj),
        "int" => match &obj {
            Val::Strs(s) if s.len() == 1 => {
                s.first().and_then(|x| x.trim().parse::<i64>().ok()).map_or_else(unknown, |n| Val::Num(n as f64))
            }
            Val::Num(n) => Val::Num(n.trunc()),
            _ => unknown(),
        },
        "length" | "count" | "abs" | "round" | "float" | "sum" | "wordcount" => match (&obj, name) {
            (Val::Num(n), "abs") => Val::Num(n.abs()),
            (Val::Num(n), "round" | "float") => Val::Num(*n),
            (Val::Strs(s), "length" | "count") if s.len() == 1 => {
                Val::Num(s.first().map_or(0, |x| x.chars().count()) as f64)
            }
            (Val::List(items), "length" | "count") => Val::Num(items.len() as f64),
            _ => unknown(),
        },
        _ => obj.derived(&all),
    }
}

/// One round over every assignment; true when a value changed.
fn round(ev: &mut Eval<'_>, calls: &[CallSite]) -> bool {
    let mut changed = false;
    let mut updates: Vec<(String, Val)> = Vec::new();
    for a in &ev.model.assigns {
        let v = ev.rhs(&a.rhs);
        bind(&a.target, v, &mut updates);
    }
    // Macro parameters from call sites; call-block parameters from `caller(...)`.
    for (name, args, kwargs) in calls {
        let params = if name == "caller" { Some(&ev.model.caller_params) } else { ev.model.macros.get(name) };
        let Some(params) = params else { continue };
        for (i, (p, _)) in params.iter().enumerate() {
            if let Some(x) = args.get(i) {
                updates.push((p.clone(), ev.eval(x, 0)));
            }
            if let Some((_, x)) = kwargs.iter().find(|(k, _)| k == p) {
                updates.push((p.clone(), ev.eval(x, 0)));
            }
        }
        // `varargs` and `kwargs` of a macro.
        for x in args.iter().skip(params.len()) {
            updates.push(("varargs".into(), items_wrap(ev.eval(x, 0))));
        }
        for (k, x) in kwargs.iter().filter(|(k, _)| !params.iter().any(|(p, _)| p == k)) {
            updates.push(("kwargs".into(), Val::Dict(vec![(Val::str1(k.clone()), ev.eval(x, 0))])));
        }
    }
    for (name, v) in updates {
        let next = match ev.env.get(&name) {
            Some(old) => join(old.clone(), v),
            None => v,
        };
        if ev.env.get(&name) != Some(&next) {
            changed = true;
            ev.env.insert(name, next);
        }
    }
    changed
}

fn items_wrap(v: Val) -> Val {
    Val::List(vec![v])
}

/// Bind a value to an assignment target (`a`, `ns.x`, `a, b`).
fn bind(target: &Expr, v: Val, out: &mut Vec<(String, Val)>) {
    match target {
        Expr::Name(n) => {
            // `{% set ns = namespace(x=...) %}`: its attributes are variables `ns.x`.
            if let Val::Dict(items) = &v {
                for (k, x) in items {
                    if let Val::Strs(s) = k {
                        for key in s {
                            out.push((format!("{n}.{key}"), x.clone()));
                        }
                    }
                }
            }
            out.push((n.clone(), v));
        }
        Expr::Attr(obj, attr) => {
            if let Expr::Name(n) = obj.as_ref() {
                out.push((format!("{n}.{attr}"), v));
            }
        }
        Expr::List(targets) => {
            for (i, t) in targets.iter().enumerate() {
                let part = match &v {
                    Val::List(items) if items.len() == targets.len() => items.get(i).cloned().unwrap_or_else(unknown),
                    other => items_of(other),
                };
                bind(t, part, out);
            }
        }
        _ => {}
    }
}

/// Every call of a named function in the template (macro calls and `caller(...)`).
fn collect_calls(e: &Expr, out: &mut Vec<CallSite>, depth: u32) {
    if depth > MAX_EVAL_DEPTH * 8 || out.len() > 10_000 {
        return;
    }
    let d = depth + 1;
    match e {
        Expr::Call(f, args, kwargs) => {
            if let Expr::Name(n) = f.as_ref() {
                out.push((n.clone(), args.clone(), kwargs.clone()));
            }
            collect_calls(f, out, d);
            args.iter().for_each(|x| collect_calls(x, out, d));
            kwargs.iter().for_each(|(_, x)| collect_calls(x, out, d));
        }
        _ => children(e).into_iter().for_each(|x| collect_calls(x, out, d)),
    }
}

fn children(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::Name(_) | Expr::Str(..) | Expr::Int(_) | Expr::Float(_) => Vec::new(),
        Expr::Opaque(p) | Expr::List(p) => p.iter().collect(),
        Expr::Either(a, b) => a.iter().chain(b).collect(),
        Expr::Dict(items) => items.iter().flat_map(|(k, v)| [k, v]).collect(),
        Expr::Bin(_, a, b) | Expr::Item(a, b) => vec![a, b],
        Expr::Attr(a, _) => vec![a],
        Expr::Slice(a, parts) => {
            std::iter::once(a.as_ref()).chain(parts.iter().flatten().map(|b| b.as_ref())).collect()
        }
        Expr::Call(f, args, kwargs) | Expr::Filter(f, _, args, kwargs) => {
            std::iter::once(f.as_ref()).chain(args).chain(kwargs.iter().map(|(_, v)| v)).collect()
        }
    }
}

// ---------------------------------------------------------------------------------------
// Checks.

struct Checker<'e, 'm> {
    ev: &'e Eval<'m>,
    issues: Vec<Issue>,
    /// The template reaches a `format`/`format_map` method, or builds attribute names.
    reaches_format: bool,
    /// Format strings with fields that walk into Python internals.
    bad_formats: Vec<(String, String)>,
    too_deep: bool,
}

impl Checker<'_, '_> {
    /// An attribute `name` looked up on a value (`how` says by what syntax).
    fn attr_name(&mut self, name: &Val, recv: Option<&Val>, how: &str) {
        match name {
            Val::Strs(names) => {
                for n in names {
                    for part in [n.as_str(), n.trim()] {
                        if bad_name(part) {
                            let what = format!("accesses attribute {part:?} ({how})");
                            self.issues.push(if part.starts_with('_') { escape(what) } else { named(what) });
                            break;
                        }
                    }
                    if matches!(n.trim(), "format" | "format_map") {
                        self.format_reached(recv, how);
                    }
                }
            }
            Val::Num(_) => {}
            other => {
                let Val::Unknown { frags, harvest, .. } = other.derived(&[]) else { return };
                let joined = frags.concat().to_lowercase();
                let plain = other.is_plain();
                // Context data may hold constants of the template (`x if c else {'a': '__class__'}`):
                // a dunder or a dangerous name among them counts; stems only in text the template built.
                let escapes = harvest
                    || joined.contains("__")
                    || frags.iter().any(|f| bad_name(f))
                    || (!plain && DUNDER_STEMS.iter().any(|s| joined.contains(s)));
                if plain && !escapes {
                    if how == "|attr filter" {
                        self.issues.push(computed("|attr filter with an attribute name from a variable".into()));
                    }
                    return;
                }
                if escapes {
                    self.issues.push(escape(format!(
                        "builds an attribute name at run time ({how}) from {}",
                        if harvest {
                            "characters cut out of an object's text".to_string()
                        } else {
                            format!("{frags:?}")
                        }
                    )));
                } else {
                    self.issues.push(computed(format!("builds an attribute name at run time ({how})")));
                }
                self.reaches_format = true;
                if joined.contains("format") {
                    self.format_reached(recv, how);
                }
            }
        }
    }

    /// A string's `format` or `format_map` method is reached on `recv`.
    fn format_reached(&mut self, recv: Option<&Val>, how: &str) {
        self.reaches_format = true;
        match recv {
            Some(Val::Strs(s)) => {
                for x in s {
                    if let Some(f) = bad_format_field(x) {
                        self.issues.push(escape(format!(
                            "calls str.format on {:?}, which walks to {f:?} ({how})",
                            excerpt(x, 60)
                        )));
                    }
                }
            }
            Some(other @ Val::Unknown { .. }) => {
                let frags = other.frags();
                if let Some((x, f)) = frags.iter().find_map(|x| bad_format_field(x).map(|f| (x, f))) {
                    self.issues.push(escape(format!(
                        "calls str.format on text holding {:?}, which walks to {f:?} ({how})",
                        excerpt(x, 60)
                    )));
                } else if frags.iter().any(|x| x.contains('{')) {
                    self.issues
                        .push(computed(format!("calls str.format on a format string built at run time ({how})")));
                }
            }
            _ => {}
        }
    }

    fn check(&mut self, e: &Expr, depth: u32) {
        if depth > jinja_lex_depth() * 2 {
            self.too_deep = true;
            return;
        }
        let d = depth + 1;
        let ev = self.ev;
        match e {
            Expr::Name(n)
                if n.starts_with("__")
                    || matches!(n.as_str(), "os" | "subprocess" | "builtins" | "sys" | "importlib") =>
            {
                let what = format!("uses the name {n:?}");
                self.issues.push(if n.starts_with('_') { escape(what) } else { named(what) });
            }
            Expr::Str(s, _) => {
                if let Some(f) = bad_format_field(s) {
                    self.bad_formats.push((s.clone(), f));
                }
            }
            Expr::Attr(obj, name) => {
                let recv = ev.eval(obj, 0);
                self.attr_name(&Val::str1(name.clone()), Some(&recv), "attribute");
            }
            Expr::Item(obj, key) => {
                let k = ev.eval(key, 0);
                // A key from context data is an ordinary lookup (`message[key]`); a string key
                // falls back to an attribute when the item is missing (`Environment.getitem`).
                if !k.is_plain() {
                    let o = ev.eval(obj, 0);
                    self.attr_name(&k, Some(&o), "subscript");
                }
            }
            Expr::Call(f, args, _) => {
                let callee = match f.as_ref() {
                    Expr::Name(n) => Some(n.as_str()),
                    Expr::Attr(_, n) => Some(n.as_str()),
                    _ => None,
                };
                if let Some(n) = callee {
                    if DANGEROUS_CALLS.contains(&n) {
                        self.issues.push(named(format!("calls {n}()")));
                    }
                }
                let _ = args;
            }
            Expr::Filter(obj, name, args, kwargs) => {
                let o = ev.eval(obj, 0);
                if ATTRIBUTE_FILTERS.contains(&name.as_str()) {
                    let a: Vec<Val> = args.iter().map(|x| ev.eval(x, 0)).collect();
                    let attr_kw = kwargs.iter().find(|(k, _)| k == "attribute").map(|(_, x)| ev.eval(x, 0));
                    let mut names: Vec<Val> = Vec::new();
                    match name.as_str() {
                        "attr" => names.extend(a.first().cloned()),
                        "map" => {
                            // `map('attr', name)` applies the attr filter to each item.
                            match a.first() {
                                Some(Val::Strs(f)) if f.iter().any(|x| x == "attr") => names.extend(a.get(1).cloned()),
                                Some(Val::Strs(_)) | None => {}
                                Some(other) => names.push(other.clone()),
                            }
                        }
                        "join" => names.extend(a.get(1).cloned()),
                        "selectattr" | "rejectattr" | "groupby" | "sum" => names.extend(a.first().cloned()),
                        "sort" => names.extend(a.get(2).cloned()),
                        "unique" | "min" | "max" => names.extend(a.get(1).cloned()),
                        _ => {}
                    }
                    names.extend(attr_kw);
                    let items = if name == "attr" { o.clone() } else { items_of(&o) };
                    for n in names {
                        if name == "attr" {
                            self.attr_name(&n, Some(&items), "|attr filter");
                            continue;
                        }
                        // Dotted paths: each part is an attribute (or an index when numeric).
                        match &n {
                            Val::Strs(paths) => {
                                for p in paths {
                                    for part in p.split('.') {
                                        self.attr_name(&Val::str1(part), Some(&items), &format!("|{name} filter"));
                                    }
                                }
                            }
                            Val::Num(_) => {}
                            other => self.attr_name(other, Some(&items), &format!("|{name} filter")),
                        }
                    }
                }
                let _ = o;
            }
            _ => {}
        }
        for c in children(e) {
            self.check(c, d);
        }
    }
}

fn jinja_lex_depth() -> u32 {
    crate::formats::jinja_lex::MAX_DEPTH
}

/// Check a template; `origin` (e.g. `tokenizer.chat_template`) prefixes evidence.
pub fn check_template(src: &str, origin: &str) -> Vec<Finding> {
    check(src, origin, false).0
}

/// Check `src`; `standalone` for text no loader names as a template (see [`scan_text`]):
/// dangerous names without an `_` hop are not reported, and text that does not parse is
/// searched for escape gadgets only. Also says whether the parsed template renders a chat
/// variable ([`CHAT_WORDS`]; `None` when it did not parse).
fn check(src: &str, origin: &str, standalone: bool) -> (Vec<Finding>, Option<bool>) {
    let mut end = src.len().min(MAX_TEMPLATE);
    while !src.is_char_boundary(end) {
        end -= 1;
    }
    let cut = end < src.len();
    let src = src.get(..end).unwrap_or("");
    let mut out = Findings::default();
    if cut {
        out.push(Finding::new(
            "chat-template-unparsed",
            Severity::Error,
            format!("{origin}: template longer than {MAX_TEMPLATE} bytes; only the first part was checked"),
        ));
    }
    let nodes = match lex(src) {
        Ok(n) => n,
        Err(at) => {
            out.push(unparsed(origin, src, at));
            token_scan(src, origin, standalone, &mut out);
            return (out.finish(), None);
        }
    };
    let model = match build_model(src, &nodes) {
        Ok(m) => m,
        Err(at) => {
            out.push(unparsed(origin, src, at));
            token_scan(src, origin, standalone, &mut out);
            return (out.finish(), None);
        }
    };
    let mut calls = Vec::new();
    let mut chat = false;
    for (exprs, _, _) in &model.tags {
        for e in exprs {
            collect_calls(e, &mut calls, 0);
            chat = chat || uses_name(e, CHAT_WORDS, 0);
        }
    }
    let mut ev = Eval { env: HashMap::new(), model: &model };
    let mut settled = false;
    for _ in 0..ROUNDS {
        if !round(&mut ev, &calls) {
            settled = true;
            break;
        }
    }
    if !settled {
        // Values still growing: keep what is known of them, exactly no longer.
        let keys: Vec<String> = ev.env.keys().cloned().collect();
        for k in keys {
            if let Some(v) = ev.env.get(&k) {
                let widened = match v {
                    Val::Strs(_) | Val::List(_) | Val::Dict(_) => v.derived(&[]),
                    other => other.clone(),
                };
                ev.env.insert(k, widened);
            }
        }
        round(&mut ev, &calls);
    }
    let mut ck =
        Checker { ev: &ev, issues: Vec::new(), reaches_format: false, bad_formats: Vec::new(), too_deep: false };
    let mut per_tag: Vec<(Vec<Issue>, usize, usize)> = Vec::new();
    for (exprs, start, end) in &model.tags {
        for e in exprs {
            ck.check(e, 0);
        }
        per_tag.push((std::mem::take(&mut ck.issues), *start, *end));
    }
    for (start, end) in &model.loads_templates {
        per_tag.push((
            vec![Issue {
                code: "chat-template-include",
                severity: Severity::Suspicious,
                what: "loads another template".into(),
                weak: false,
            }],
            *start,
            *end,
        ));
    }
    // Format strings in data (block `set` bodies, macro output) count too.
    for v in ev.env.values() {
        for f in v.frags() {
            if let Some(field) = bad_format_field(&f) {
                ck.bad_formats.push((f, field));
            }
        }
    }
    for (mut issues, start, end) in per_tag {
        if standalone {
            issues.retain(|i| !i.weak);
        }
        push_issues(&mut out, issues, origin, src.get(start..end).unwrap_or(""));
    }
    if let Some((s, field)) = ck.bad_formats.first() {
        let issue = if ck.reaches_format {
            escape(format!(
                "holds the format string {:?}, which walks to {field:?}, and reaches str.format",
                excerpt(s, 80)
            ))
        } else {
            computed(format!("holds the format string {:?}, which walks to {field:?}", excerpt(s, 80)))
        };
        push_issues(&mut out, vec![issue], origin, s);
    }
    if ck.too_deep {
        out.push(Finding::new(
            "chat-template-unparsed",
            Severity::Error,
            format!("{origin}: expressions nested too deep to check"),
        ));
    }
    (out.finish(), Some(chat))
}

/// Whether `e` reads one of the variables `names`.
fn uses_name(e: &Expr, names: &[&str], depth: u32) -> bool {
    if depth > MAX_EVAL_DEPTH * 8 {
        return false;
    }
    match e {
        Expr::Name(n) => names.contains(&n.as_str()),
        _ => children(e).into_iter().any(|x| uses_name(x, names, depth + 1)),
    }
}

/// Findings kept per severity (at most [`MAX_FINDINGS`] each, worst first).
#[derive(Default)]
struct Findings {
    kept: Vec<Finding>,
    per: HashMap<Severity, usize>,
    seen: std::collections::HashSet<(&'static str, String)>,
}

impl Findings {
    fn push(&mut self, f: Finding) {
        if !self.seen.insert((f.code, f.message.clone())) {
            return;
        }
        let n = self.per.entry(f.severity).or_default();
        if *n < MAX_FINDINGS {
            *n += 1;
            self.kept.push(f);
        }
    }

    fn finish(mut self) -> Vec<Finding> {
        self.kept.sort_by_key(|f| std::cmp::Reverse(f.severity));
        self.kept
    }
}

fn unparsed(origin: &str, src: &str, at: usize) -> Finding {
    let near = src.get(at..).unwrap_or("");
    Finding::new(
        "chat-template-unparsed",
        Severity::Error,
        format!("{origin}: template cannot be parsed near byte {at}; it was checked word by word only"),
    )
    .evidence(excerpt(near, 120))
}

fn push_issues(out: &mut Findings, issues: Vec<Issue>, origin: &str, text: &str) {
    for i in issues {
        out.push(
            Finding::new(i.code, i.severity, format!("chat template {}", i.what))
                .evidence(format!("{origin}: {}", excerpt(text, 240))),
        );
    }
}

/// The dunder attributes every sandbox escape passes through to reach code: from an object to
/// its functions' globals, the builtins or every class (`__subclasses__`), or an import.
/// (Method names Python classes define, `__init__`, `__reduce__`, `__call__`, are no gadgets
/// by themselves: Cython's Tempita sources are full of them.)
const GADGET_DUNDERS: &[&str] =
    &["__globals__", "__builtins__", "__subclasses__", "__import__", "__mro__", "__base__", "__bases__"];

/// Fallback when the template does not parse: dunder words anywhere, with string escapes
/// decoded; in `standalone` text (no loader's template; Cython's Tempita sources define
/// `__init__`) only the gadgets of [`GADGET_DUNDERS`].
fn token_scan(src: &str, origin: &str, standalone: bool, out: &mut Findings) {
    let decoded = crate::formats::jinja_lex::unicode_escape(src).map_or_else(|| src.to_string(), |d| d.0);
    let mut issues = Vec::new();
    for text in [src, decoded.as_str()] {
        for w in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if w.len() > 4 && w.starts_with("__") && w.ends_with("__") && (!standalone || GADGET_DUNDERS.contains(&w)) {
                issues.push(escape(format!("names {w:?} (template not parsed)")));
            }
        }
    }
    push_issues(out, issues, origin, src.get(..src.len().min(2000)).unwrap_or(src));
}

/// Check the chat template(s) of a Hugging Face `tokenizer_config.json` or
/// `chat_template.json`; false when it has none. transformers accepts a string, a list of
/// `{"name", "template"}` objects, or a `{name: template}` map.
pub fn scan_tokenizer_config(scan: &mut Scan<'_>, v: &serde_json::Value) -> bool {
    use serde_json::Value;
    let Some(t) = v.get("chat_template") else { return false };
    let mut templates: Vec<(String, &str)> = Vec::new();
    match t {
        Value::String(s) => templates.push(("chat_template".into(), s.as_str())),
        Value::Array(list) => {
            for (i, e) in list.iter().enumerate() {
                let name = e.get("name").and_then(Value::as_str).map_or_else(|| format!("#{i}"), str::to_string);
                if let Some(s) = e.get("template").and_then(Value::as_str) {
                    templates.push((format!("chat_template[{name}]"), s));
                }
            }
        }
        Value::Object(map) => {
            for (name, e) in map {
                if let Some(s) = e.as_str() {
                    templates.push((format!("chat_template[{name}]"), s));
                }
            }
        }
        _ => return false,
    }
    for (origin, src) in templates {
        for f in check_template(src, &origin) {
            scan.finding(f);
        }
    }
    true
}

/// True when `head` looks like the start of a Jinja template: text (UTF-8, no NUL or other
/// control bytes but tab and newlines) with a `{{`, `{%` or `{#` tag opening.
pub fn sniff(head: &[u8]) -> Option<Format> {
    // Text that starts with a pickle opcode is probed as a pickle first; the engine comes back
    // to [`scan_source`] when it is none.
    if head.first().is_some_and(|&b| crate::formats::pickle::is_opcode(b)) {
        return None;
    }
    template_text(head)
}

/// Whether `head` is text with Jinja delimiters, whatever its first byte.
fn template_text(head: &[u8]) -> Option<Format> {
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        Err(e) if e.error_len().is_none() => std::str::from_utf8(head.get(..e.valid_up_to())?).ok()?,
        Err(_) => return None,
    };
    // The delimiters first: a fast search that most text fails.
    if !(text.contains("{{") || text.contains("{%")) {
        return None;
    }
    if text.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) {
        return None;
    }
    Some(Format::ChatTemplate)
}

/// Variables chat templates render with (transformers' `apply_chat_template`).
const CHAT_WORDS: &[&str] = &["messages", "add_generation_prompt", "bos_token", "eos_token", "raise_exception"];

/// Judge text that may be a standalone template (`chat_template.jinja`, a member sniffed by
/// [`sniff`]). The name of a file is never consulted, so what a loader would render is told by
/// content: a template that renders a chat variable ([`CHAT_WORDS`]: transformers'
/// `apply_chat_template` and llama.cpp pass them) is a chat template, a model file, judged in
/// full, and one that cannot be parsed is an error. Other text with `{{ }}` (a CI workflow, a
/// Tempita or Flask source) is no model file (`None`) unless it holds a sandbox escape through
/// `_`-prefixed names, the payload a template exists for whatever it renders; names such as
/// `matrix.os` alone, includes and computed names are not judged in it, nor text that does not
/// parse as Jinja (jinja2 refuses to compile it; a gadget dunder in it still counts).
pub fn scan_text(scan: &mut Scan<'_>, bytes: &[u8]) -> Option<Format> {
    let text = std::str::from_utf8(bytes.get(..bytes.len().min(MAX_TEMPLATE + 4))?).ok().or_else(|| {
        // A cut at MAX_TEMPLATE may split a character.
        std::str::from_utf8(bytes.get(..MAX_TEMPLATE)?).ok()
    })?;
    template_text(text.as_bytes().get(..text.len().min(crate::detect::HEAD * 8)).unwrap_or_default())?;
    let (findings, chat) = match check(text, "template", true) {
        // parsed: chat variables decide; a chat template is checked in full
        (_, Some(true)) => (check_template(text, "template"), true),
        (f, Some(false)) => (f, false),
        // not parsed: chat words in the text keep it a chat template that cannot be judged
        (_, None) if CHAT_WORDS.iter().any(|w| text.contains(w)) => (check_template(text, "template"), true),
        (f, None) => (f, false),
    };
    let worst = findings.iter().map(|f| f.severity).max();
    if chat || worst == Some(Severity::Dangerous) {
        scan.mark_model();
        for f in findings {
            // Text that is no chat template is judged for its escapes only.
            if !chat && f.severity != Severity::Dangerous {
                continue;
            }
            scan.finding(f);
        }
        return Some(Format::ChatTemplate);
    }
    None
}

/// Judge random-access data that may be a template; `Unknown` when it is none.
pub fn scan_source(scan: &mut Scan<'_>, src: &dyn crate::source::Source) -> Format {
    match crate::source::read_up_to(src, 0, MAX_TEMPLATE + 1) {
        Ok(text) => scan_text(scan, &text).unwrap_or(Format::Unknown),
        Err(_) => Format::Unknown,
    }
}

/// Judge data sniffed as a template (see [`sniff`]); when it is none, the data comes back
/// whole for the other probes.
pub fn scan_data(scan: &mut Scan<'_>, data: crate::source::Data) -> (Format, Option<crate::source::Data>) {
    use crate::source::Data;
    use std::io::Read;
    match data {
        Data::Random(src) => match scan_source(scan, src.as_ref()) {
            Format::Unknown => (Format::Unknown, Some(Data::Random(src))),
            f => (f, None),
        },
        Data::Stream(mut r, size) => {
            let mut text = Vec::new();
            if let Err(e) = r.by_ref().take(MAX_TEMPLATE as u64 + 1).read_to_end(&mut text) {
                scan.finding(Finding::new("read-error", Severity::Error, format!("cannot read template: {e}")));
                return (Format::ChatTemplate, None);
            }
            match scan_text(scan, &text) {
                Some(f) => (f, None),
                None => (Format::Unknown, Some(Data::Stream(Box::new(std::io::Cursor::new(text).chain(r)), size))),
            }
        }
    }
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
        assert_eq!(codes("{{ x|attr('_'*2 ~ 'class' ~ '_'*2) }}"), ["chat-template-sandbox-escape"]);
        assert_eq!(codes("{{ x[('%c%c'|format(95,95)) ~ 'class'] }}"), ["chat-template-sandbox-escape"]);
        assert_eq!(codes("{{ x|attr(messages[0].content ~ 'x') }}"), ["chat-template-computed-attribute"]);
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
