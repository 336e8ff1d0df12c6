//! gitattributes as git applies them when it writes a file to a work tree (or an archive):
//! which checkout conversions (`text`, `crlf`, `eol`, `ident`, `filter`,
//! `working-tree-encoding`) hold for a path of a commit.
//!
//! Matched against git's `attr.c` (`parse_attr_line`, `parse_attr`, `prepare_attr_stack`,
//! `fill`, `fill_one`, `determine_macros`, the built-in `[attr]binary -diff -merge -text`),
//! `dir.c` (`parse_path_pattern`, `match_basename`, `match_pathname`), `wildmatch.c`
//! (`dowild`) and `convert.c` (`convert_attrs`, `git_path_check_*`). The attribute sources of
//! a checkout are the `.gitattributes` blob of every directory from the root down to the
//! file's (read whatever the entry's mode, as `read_attr_from_index` does) and
//! `$GIT_DIR/info/attributes` on top; `[attr]` macros count only in the top-level file and
//! `info/attributes`; negative patterns are ignored. A client on a case-insensitive file
//! system (`core.ignorecase`) matches patterns without case, so callers evaluate both ways.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use std::collections::HashMap;
use std::sync::Arc;

/// Lines this long or longer are ignored (`ATTR_MAX_LINE_LENGTH`).
const MAX_LINE: usize = 2048;
/// Attribute files this large or larger are ignored (`ATTR_MAX_FILE_SIZE`).
pub const MAX_FILE: u64 = 100 << 20;

/// An attribute's state for a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    True,
    False,
    /// `!attr`: back to unspecified.
    Unset,
    Str(String),
}

#[derive(Debug, Clone)]
struct State {
    name: Arc<str>,
    value: Value,
}

#[derive(Debug, Clone)]
struct Pattern {
    text: Vec<u8>,
    nowildcardlen: usize,
    nodir: bool,
    mustbedir: bool,
    endswith: bool,
}

#[derive(Debug, Clone)]
enum Line {
    Rule(Pattern, Vec<State>),
    Macro(Arc<str>, Vec<State>),
}

/// One parsed attributes file.
#[derive(Debug, Clone, Default)]
pub struct AttrFile {
    lines: Vec<Line>,
}

impl AttrFile {
    /// Parse the contents of a `.gitattributes` blob (`read_attr_from_buf`: lines end at LF,
    /// the first NUL ends the file). `macros`: whether `[attr]` lines count (top level, info).
    pub fn parse(buf: &[u8], macros: bool) -> AttrFile {
        let mut lines = Vec::new();
        if buf.len() as u64 >= MAX_FILE {
            return AttrFile { lines };
        }
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        for line in buf.get(..end).unwrap_or_default().split(|&b| b == b'\n') {
            if let Some(l) = parse_line(line, macros) {
                lines.push(l);
            }
        }
        AttrFile { lines }
    }

    /// `read_attr_from_file` (info/attributes): a UTF-8 BOM at the start is dropped.
    pub fn parse_file(buf: &[u8]) -> AttrFile {
        AttrFile::parse(buf.strip_prefix(b"\xef\xbb\xbf").unwrap_or(buf), true)
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

const BLANK: &[u8] = b" \t\r\n";

fn is_blank(b: u8) -> bool {
    BLANK.contains(&b)
}

fn skip_blank(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| is_blank(b)).count();
    s.get(n..).unwrap_or_default()
}

fn attr_name_valid(name: &[u8]) -> bool {
    !name.is_empty()
        && name.first() != Some(&b'-')
        && name.iter().all(|&c| c == b'-' || c == b'.' || c == b'_' || c.is_ascii_alphanumeric())
}

/// `parse_attr_line`.
fn parse_line(line: &[u8], macros: bool) -> Option<Line> {
    let cp = skip_blank(line);
    if cp.is_empty() || cp.first() == Some(&b'#') {
        return None;
    }
    // strlen(line): a line is a C string, but NULs ended the file already.
    if line.len() >= MAX_LINE {
        return None;
    }
    let (name, states): (Vec<u8>, &[u8]) = match cp.first() {
        Some(b'"') => match unquote_c(cp) {
            Some((n, rest)) => (n, rest),
            None => split_blank(cp),
        },
        _ => split_blank(cp),
    };
    const MACRO: &[u8] = b"[attr]";
    let is_macro = name.len() > MACRO.len() && name.starts_with(MACRO);
    let mut macro_name = None;
    if is_macro {
        if !macros {
            return None;
        }
        // The name is re-read from the line after the prefix (spaces allowed there).
        let after = skip_blank(cp.get(MACRO.len()..)?);
        let n = after.iter().take_while(|&&b| !is_blank(b)).count();
        let mname = after.get(..n)?;
        if !attr_name_valid(mname) || mname.starts_with(b"builtin_") {
            return None;
        }
        macro_name = Some(Arc::<str>::from(std::str::from_utf8(mname).ok()?));
    }
    let states = parse_states(skip_blank(states))?;
    match macro_name {
        Some(m) => Some(Line::Macro(m, states)),
        None => {
            let p = parse_pattern(&name)?;
            Some(Line::Rule(p, states))
        }
    }
}

fn split_blank(s: &[u8]) -> (Vec<u8>, &[u8]) {
    let n = s.iter().take_while(|&&b| !is_blank(b)).count();
    (s.get(..n).unwrap_or_default().to_vec(), s.get(n..).unwrap_or_default())
}

/// Every state of a line, or `None` when one is invalid (the whole line is dropped).
fn parse_states(mut cp: &[u8]) -> Option<Vec<State>> {
    let mut out = Vec::new();
    while !cp.is_empty() {
        let ep = cp.iter().position(|&b| is_blank(b)).unwrap_or(cp.len());
        // strchr(cp, '='): the first '=' of the rest of the line, if before the blank.
        let equals = cp.iter().position(|&b| b == b'=').filter(|&e| e <= ep);
        let token = cp.get(..ep)?;
        let (mut name, value) = match equals {
            Some(e) => (cp.get(..e)?, Some(cp.get(e + 1..ep)?)),
            None => (token, None),
        };
        let value = match name.first() {
            Some(b'-') => {
                name = name.get(1..)?;
                Value::False
            }
            Some(b'!') => {
                name = name.get(1..)?;
                Value::Unset
            }
            _ => match value {
                None => Value::True,
                Some(v) => Value::Str(String::from_utf8_lossy(v).into_owned()),
            },
        };
        if !attr_name_valid(name) || name.starts_with(b"builtin_") {
            return None;
        }
        out.push(State { name: Arc::from(std::str::from_utf8(name).ok()?), value });
        cp = skip_blank(cp.get(ep..)?);
    }
    Some(out)
}

/// `parse_path_pattern`; negative patterns are refused (`None`).
fn parse_pattern(p: &[u8]) -> Option<Pattern> {
    if p.first() == Some(&b'!') {
        return None;
    }
    // A pattern is a C string.
    let p = p.get(..p.iter().position(|&b| b == 0).unwrap_or(p.len())).unwrap_or_default();
    let mut len = p.len();
    let mut mustbedir = false;
    if len > 0 && p.get(len - 1) == Some(&b'/') {
        len -= 1;
        mustbedir = true;
    }
    let text = p.get(..len)?.to_vec();
    let nodir = !text.contains(&b'/');
    let nowildcardlen = simple_length(p).min(len);
    let endswith = p.first() == Some(&b'*') && simple_length(p.get(1..)?) == p.len() - 1;
    Some(Pattern { text, nowildcardlen, nodir, mustbedir, endswith })
}

fn is_glob_special(c: u8) -> bool {
    matches!(c, b'*' | b'?' | b'[' | b'\\')
}

fn simple_length(s: &[u8]) -> usize {
    s.iter().position(|&c| is_glob_special(c)).unwrap_or(s.len())
}

/// Undo C quoting of a leading `"..."`; returns the text and what follows the quote.
fn unquote_c(s: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut out = Vec::new();
    let mut i = 1;
    loop {
        let b = *s.get(i)?;
        i += 1;
        match b {
            b'"' => return Some((out, s.get(i..)?)),
            b'\\' => {
                let e = *s.get(i)?;
                i += 1;
                out.push(match e {
                    b'a' => 7,
                    b'b' => 8,
                    b'f' => 12,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'v' => 11,
                    b'\\' | b'"' => e,
                    b'0'..=b'3' => {
                        let d1 = *s.get(i)?;
                        let d2 = *s.get(i + 1)?;
                        if !(b'0'..=b'7').contains(&d1) || !(b'0'..=b'7').contains(&d2) {
                            return None;
                        }
                        i += 2;
                        ((e - b'0') << 6) | ((d1 - b'0') << 3) | (d2 - b'0')
                    }
                    _ => return None,
                });
            }
            _ => out.push(b),
        }
    }
}

fn eq_fold(a: &[u8], b: &[u8], icase: bool) -> bool {
    if icase {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// `match_basename` / `match_pathname` for a file (never a directory) at `path`, the pattern
/// coming from the attributes file of directory `base` (`""` for the top level).
fn path_matches(path: &[u8], basename_offset: usize, p: &Pattern, base: &[u8], icase: bool) -> bool {
    if p.mustbedir {
        return false;
    }
    let pat = &p.text;
    let prefix = p.nowildcardlen;
    if p.nodir {
        let name = path.get(basename_offset..).unwrap_or_default();
        if prefix == pat.len() {
            return eq_fold(pat, name, icase);
        }
        if p.endswith {
            let tail = pat.get(1..).unwrap_or_default();
            return tail.len() <= name.len()
                && eq_fold(tail, name.get(name.len() - tail.len()..).unwrap_or_default(), icase);
        }
        return wildmatch(pat, name, false, icase);
    }
    let (mut pat, mut prefix): (&[u8], usize) = (pat, prefix);
    if pat.first() == Some(&b'/') {
        pat = pat.get(1..).unwrap_or_default();
        prefix = prefix.saturating_sub(1);
    }
    let baselen = base.len();
    if path.len() < baselen + 1
        || (baselen > 0 && path.get(baselen) != Some(&b'/'))
        || !eq_fold(path.get(..baselen).unwrap_or_default(), base, icase)
    {
        return false;
    }
    let mut name = if baselen > 0 { path.get(baselen + 1..).unwrap_or_default() } else { path };
    if prefix > 0 {
        if prefix > name.len() {
            return false;
        }
        if !eq_fold(pat.get(..prefix).unwrap_or_default(), name.get(..prefix).unwrap_or_default(), icase) {
            return false;
        }
        if pat.len() == prefix && name.len() == prefix {
            return true;
        }
        // Keep one character of the prefix for wildmatch.
        let keep = prefix - 1;
        pat = pat.get(keep..).unwrap_or_default();
        name = name.get(keep..).unwrap_or_default();
    }
    wildmatch(pat, name, true, icase)
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Wm {
    Match,
    NoMatch,
    AbortAll,
    AbortToStarStar,
}

/// git's `wildmatch` (`WM_PATHNAME` when `pathname`, `WM_CASEFOLD` when `icase`).
pub fn wildmatch(pattern: &[u8], text: &[u8], pathname: bool, icase: bool) -> bool {
    // C strings: both end at their first NUL.
    let cut = |s: &[u8]| s.iter().position(|&b| b == 0).map_or(s.len(), |n| n);
    let pattern = pattern.get(..cut(pattern)).unwrap_or_default();
    let text = text.get(..cut(text)).unwrap_or_default();
    dowild(pattern, 0, text, 0, pathname, icase) == Wm::Match
}

fn lower(c: u8, icase: bool) -> u8 {
    if icase {
        c.to_ascii_lowercase()
    } else {
        c
    }
}

fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

fn dowild(pat: &[u8], mut p: usize, text: &[u8], mut t: usize, pathname: bool, icase: bool) -> Wm {
    // `pattern` in git's dowild: where this (possibly recursive) call started.
    let start = p;
    while at(pat, p) != 0 {
        let mut p_ch = at(pat, p);
        let mut t_ch = at(text, t);
        if t_ch == 0 && p_ch != b'*' {
            return Wm::AbortAll;
        }
        t_ch = lower(t_ch, icase);
        p_ch = lower(p_ch, icase);
        match p_ch {
            b'\\' => {
                p += 1;
                // The escaped character is compared as written.
                if at(pat, p) != t_ch {
                    return Wm::NoMatch;
                }
            }
            b'?' => {
                if pathname && t_ch == b'/' {
                    return Wm::NoMatch;
                }
            }
            b'*' => {
                let match_slash;
                p += 1;
                if at(pat, p) == b'*' {
                    let prev_p = p;
                    while at(pat, p + 1) == b'*' {
                        p += 1;
                    }
                    p += 1;
                    if !pathname {
                        match_slash = true;
                    } else if (prev_p - start < 2 || at(pat, prev_p - 2) == b'/')
                        && (at(pat, p) == 0 || at(pat, p) == b'/' || (at(pat, p) == b'\\' && at(pat, p + 1) == b'/'))
                    {
                        if at(pat, p) == b'/' && dowild(pat, p + 1, text, t, pathname, icase) == Wm::Match {
                            return Wm::Match;
                        }
                        match_slash = true;
                    } else {
                        match_slash = false;
                    }
                } else {
                    match_slash = !pathname;
                }
                if at(pat, p) == 0 {
                    if !match_slash && text.get(t..).unwrap_or_default().contains(&b'/') {
                        return Wm::AbortToStarStar;
                    }
                    return Wm::Match;
                } else if !match_slash && at(pat, p) == b'/' {
                    match text.get(t..).unwrap_or_default().iter().position(|&b| b == b'/') {
                        None => return Wm::AbortAll,
                        Some(off) => {
                            // The slash is consumed by the loop below.
                            t += off;
                            p_ch_advance(&mut p);
                            t += 1;
                            continue;
                        }
                    }
                }
                loop {
                    if t_ch == 0 {
                        break;
                    }
                    if !is_glob_special(at(pat, p)) {
                        let pc = lower(at(pat, p), icase);
                        loop {
                            let c = at(text, t);
                            if c == 0 || (!match_slash && c == b'/') {
                                t_ch = c;
                                break;
                            }
                            t_ch = lower(c, icase);
                            if t_ch == pc {
                                break;
                            }
                            t += 1;
                        }
                        if t_ch != pc {
                            return if match_slash { Wm::AbortAll } else { Wm::AbortToStarStar };
                        }
                    }
                    let matched = dowild(pat, p, text, t, pathname, icase);
                    if matched != Wm::NoMatch {
                        if !match_slash || matched != Wm::AbortToStarStar {
                            return matched;
                        }
                    } else if !match_slash && t_ch == b'/' {
                        return Wm::AbortToStarStar;
                    }
                    t += 1;
                    t_ch = lower(at(text, t), icase);
                }
                return Wm::AbortAll;
            }
            b'[' => {
                p += 1;
                let mut pc = at(pat, p);
                if pc == b'^' {
                    pc = b'!';
                }
                let negated = pc == b'!';
                if negated {
                    p += 1;
                    pc = at(pat, p);
                }
                let mut prev_ch: u8 = 0;
                let mut matched = false;
                loop {
                    if pc == 0 {
                        return Wm::AbortAll;
                    }
                    if pc == b'\\' {
                        p += 1;
                        pc = at(pat, p);
                        if pc == 0 {
                            return Wm::AbortAll;
                        }
                        if t_ch == pc {
                            matched = true;
                        }
                    } else if pc == b'-' && prev_ch != 0 && at(pat, p + 1) != 0 && at(pat, p + 1) != b']' {
                        p += 1;
                        pc = at(pat, p);
                        if pc == b'\\' {
                            p += 1;
                            pc = at(pat, p);
                            if pc == 0 {
                                return Wm::AbortAll;
                            }
                        }
                        if t_ch <= pc && t_ch >= prev_ch {
                            matched = true;
                        } else if icase && t_ch.is_ascii_lowercase() {
                            let up = t_ch.to_ascii_uppercase();
                            if up <= pc && up >= prev_ch {
                                matched = true;
                            }
                        }
                        pc = 0;
                    } else if pc == b'[' && at(pat, p + 1) == b':' {
                        let s = p + 2;
                        p = s;
                        while at(pat, p) != 0 && at(pat, p) != b']' {
                            p += 1;
                        }
                        if at(pat, p) == 0 {
                            return Wm::AbortAll;
                        }
                        if p < s + 1 || at(pat, p - 1) != b':' {
                            // Not "[:class:]": a plain '['.
                            p = s - 2;
                            pc = b'[';
                            if t_ch == pc {
                                matched = true;
                            }
                            prev_ch = pc;
                            p += 1;
                            pc = at(pat, p);
                            if pc == b']' {
                                break;
                            }
                            continue;
                        }
                        let class = pat.get(s..p - 1).unwrap_or_default();
                        let hit = match class {
                            b"alnum" => t_ch.is_ascii_alphanumeric(),
                            b"alpha" => t_ch.is_ascii_alphabetic(),
                            b"blank" => t_ch == b' ' || t_ch == b'\t',
                            b"cntrl" => t_ch.is_ascii_control(),
                            b"digit" => t_ch.is_ascii_digit(),
                            b"graph" => t_ch.is_ascii_graphic(),
                            b"lower" => t_ch.is_ascii_lowercase(),
                            b"print" => t_ch.is_ascii_graphic() || t_ch == b' ',
                            b"punct" => t_ch.is_ascii_punctuation(),
                            b"space" => matches!(t_ch, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'),
                            b"upper" => t_ch.is_ascii_uppercase() || (icase && t_ch.is_ascii_lowercase()),
                            b"xdigit" => t_ch.is_ascii_hexdigit(),
                            _ => return Wm::AbortAll,
                        };
                        if hit {
                            matched = true;
                        }
                        pc = 0;
                    } else if t_ch == pc {
                        matched = true;
                    }
                    prev_ch = pc;
                    p += 1;
                    pc = at(pat, p);
                    if pc == b']' {
                        break;
                    }
                }
                if matched == negated || (pathname && t_ch == b'/') {
                    return Wm::NoMatch;
                }
            }
            _ => {
                if t_ch != p_ch {
                    return Wm::NoMatch;
                }
            }
        }
        p += 1;
        t += 1;
    }
    if at(text, t) != 0 {
        Wm::NoMatch
    } else {
        Wm::Match
    }
}

/// The `for` loop's `p++` in `dowild` when `*` jumps to the next slash (`break` out of the
/// switch then increments both).
fn p_ch_advance(p: &mut usize) {
    *p += 1;
}

/// An attributes file and the directory it sits in (`""` for the top level, `None` for
/// `info/attributes`, whose patterns are relative to the top).
#[derive(Clone)]
pub struct Frame {
    pub dir: Option<Vec<u8>>,
    pub file: Arc<AttrFile>,
}

/// The built-in frame: `[attr]binary -diff -merge -text`.
fn builtin() -> Arc<AttrFile> {
    Arc::new(AttrFile::parse(b"[attr]binary -diff -merge -text", true))
}

/// Every attribute of `path` (relative to the top, `/`-separated) given the frames that
/// apply, lowest precedence first (the top-level file, subdirectories down to the file's,
/// then `info/attributes`). `collect_some_attrs` with the built-in frame at the bottom.
pub fn attributes(frames: &[Frame], path: &[u8], icase: bool) -> HashMap<Arc<str>, Value> {
    let builtin_frame = Frame { dir: Some(Vec::new()), file: builtin() };
    let all: Vec<&Frame> = std::iter::once(&builtin_frame).chain(frames.iter()).collect();
    // determine_macros: from the top of the stack down, last line first; first definition wins.
    let mut macros: HashMap<Arc<str>, &Vec<State>> = HashMap::new();
    for f in all.iter().rev() {
        for l in f.file.lines.iter().rev() {
            if let Line::Macro(name, states) = l {
                macros.entry(name.clone()).or_insert(states);
            }
        }
    }
    let basename_offset = match path.iter().rposition(|&b| b == b'/') {
        Some(i) if i + 1 < path.len() => i + 1,
        _ => 0,
    };
    let mut values: HashMap<Arc<str>, Value> = HashMap::new();
    for f in all.iter().rev() {
        let base: &[u8] = f.dir.as_deref().unwrap_or_default();
        for l in f.file.lines.iter().rev() {
            let Line::Rule(p, states) = l else { continue };
            if !path_matches(path, basename_offset, p, base, icase) {
                continue;
            }
            // fill_one: a stack of states, the last of a line first; a macro set to true
            // pushes its own states.
            let mut todo: Vec<&State> = states.iter().collect();
            let mut guard = 0usize;
            while let Some(s) = todo.pop() {
                guard += 1;
                if guard > 100_000 {
                    break;
                }
                if values.contains_key(&s.name) {
                    continue;
                }
                values.insert(s.name.clone(), s.value.clone());
                if s.value == Value::True {
                    if let Some(m) = macros.get(&s.name) {
                        todo.extend(m.iter());
                    }
                }
            }
        }
    }
    values
}

/// The distinct checkouts of the file at `path` under `frames` (the `.gitattributes` of its
/// directories, top first): with and without `info` (`$GIT_DIR/info/attributes`, which
/// server-side checkouts and archives apply on top), each matched with and without case
/// folding (clients on case-insensitive file systems). The push gate and the audit give a
/// place these checkouts.
pub fn checkouts(frames: &[Frame], info: Option<&Arc<AttrFile>>, path: &[u8]) -> Vec<Checkout> {
    if frames.iter().all(|f| f.file.is_empty()) && info.is_none() {
        return vec![Checkout::default()];
    }
    let mut with_info: Vec<Frame> = frames.to_vec();
    if let Some(i) = info {
        with_info.push(Frame { dir: None, file: i.clone() });
    }
    let mut out: Vec<Checkout> = Vec::new();
    for f in [frames, &with_info[..]] {
        for icase in [false, true] {
            let co = Checkout::from_attributes(&attributes(f, path, icase));
            if !out.contains(&co) {
                out.push(co);
            }
        }
    }
    out
}

/// `$GIT_DIR/info/attributes` parsed, when it is a readable file below [`MAX_FILE`] with
/// any rule or macro in it.
pub fn info_attributes(git_dir: &std::path::Path) -> Option<Arc<AttrFile>> {
    let path = git_dir.join("info").join("attributes");
    let meta = std::fs::metadata(&path).ok()?;
    if !meta.is_file() || meta.len() >= MAX_FILE {
        return None;
    }
    let file = AttrFile::parse_file(&std::fs::read(path).ok()?);
    (!file.is_empty()).then(|| Arc::new(file))
}

/// How git may rewrite line endings when it writes the file (`convert_attrs` with every
/// client configuration of `core.autocrlf` and `core.eol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Crlf {
    /// Never (`-text`, `binary`, `eol=lf`, `text=input`, `text=auto eol=lf`).
    Never,
    /// When git's auto-detection takes the content for text (no `text` attribute with
    /// `core.autocrlf=true`, `text=auto` with a CRLF `core.eol`, `text=auto eol=crlf`).
    #[default]
    Auto,
    /// Always (`eol=crlf`, or `text` with a CRLF `core.eol` / `core.autocrlf=true`).
    Always,
}

/// The checkout conversions of one place, from its attributes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Checkout {
    pub crlf: Crlf,
    /// `ident`: `$Id$` is expanded to the blob id.
    pub ident: bool,
    /// `working-tree-encoding` other than UTF-8.
    pub encoding: Option<String>,
    /// A `filter` driver; `lfs` is git-lfs, anything else is a program on the client.
    pub filter: Option<String>,
    /// A symbolic link (mode 120000): written as a plain file without any conversion by a
    /// client without symlinks (`core.symlinks=false`).
    pub symlink: bool,
}

impl Checkout {
    /// A symbolic link's checkout: the target text, as stored.
    pub fn symlink() -> Checkout {
        Checkout { crlf: Crlf::Never, symlink: true, ..Checkout::default() }
    }

    /// From the attributes of a path (`convert_attrs`).
    pub fn from_attributes(a: &HashMap<Arc<str>, Value>) -> Checkout {
        #[derive(PartialEq)]
        enum Action {
            Undefined,
            Binary,
            Text,
            TextInput,
            TextCrlf,
            Auto,
            AutoInput,
            AutoCrlf,
        }
        let get = |n: &str| a.get(n).cloned().unwrap_or(Value::Unset);
        let check_crlf = |v: Value| match v {
            Value::True => Action::Text,
            Value::False => Action::Binary,
            Value::Unset => Action::Undefined,
            Value::Str(s) if s == "input" => Action::TextInput,
            Value::Str(s) if s == "auto" => Action::Auto,
            Value::Str(_) => Action::Undefined,
        };
        let mut action = check_crlf(get("text"));
        if action == Action::Undefined {
            action = check_crlf(get("crlf"));
        }
        if action != Action::Binary {
            let eol = match get("eol") {
                Value::Str(s) if s == "lf" => Some(false),
                Value::Str(s) if s == "crlf" => Some(true),
                _ => None,
            };
            action = match (action, eol) {
                (Action::Auto, Some(false)) => Action::AutoInput,
                (Action::Auto, Some(true)) => Action::AutoCrlf,
                (_, Some(false)) => Action::TextInput,
                (_, Some(true)) => Action::TextCrlf,
                (a, None) => a,
            };
        }
        let crlf = match action {
            Action::Binary | Action::TextInput | Action::AutoInput => Crlf::Never,
            Action::Text | Action::TextCrlf => Crlf::Always,
            Action::Undefined | Action::Auto | Action::AutoCrlf => Crlf::Auto,
        };
        let ident = get("ident") == Value::True;
        let filter = match get("filter") {
            Value::Str(s) => Some(s),
            _ => None,
        };
        // git_path_check_encoding: true/false make git die for the file (nothing written).
        let encoding = match get("working-tree-encoding") {
            Value::Str(s) if !s.is_empty() && !same_encoding(&s, "UTF-8") => Some(s),
            _ => None,
        };
        Checkout { crlf, ident, encoding, filter, symlink: false }
    }

    /// Nothing besides `core.autocrlf` can change the bytes: the common case.
    pub fn is_default(&self) -> bool {
        *self == Checkout::default()
    }
}

/// `utf8.c` `same_encoding`: UTF spellings with or without `-`, else case-insensitive.
pub fn same_encoding(a: &str, b: &str) -> bool {
    let utf = |s: &str| {
        let l = s.to_ascii_lowercase();
        l.strip_prefix("utf").map(|r| r.strip_prefix('-').unwrap_or(r).to_string())
    };
    match (utf(a), utf(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.eq_ignore_ascii_case(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wm(p: &str, t: &str) -> bool {
        wildmatch(p.as_bytes(), t.as_bytes(), true, false)
    }

    #[test]
    fn wildmatch_like_git() {
        // From git's t/t3070-wildmatch.sh (pathname mode).
        assert!(wm("foo", "foo"));
        assert!(!wm("foo", "bar"));
        assert!(wm("???", "foo"));
        assert!(wm("*", "foo"));
        assert!(!wm("*", "foo/bar"));
        assert!(wm("**", "foo/bar"));
        assert!(wm("foo/**/bar", "foo/bar"));
        assert!(wm("foo/**/bar", "foo/a/b/bar"));
        assert!(!wm("foo/*/bar", "foo/a/b/bar"));
        assert!(wm("**/foo", "a/b/foo"));
        assert!(wm("**/foo", "foo"));
        assert!(wm("a/**", "a/b/c"));
        assert!(!wm("a/**", "a"));
        assert!(wm("*.pkl", "x.pkl"));
        assert!(!wm("*.pkl", "d/x.pkl"));
        assert!(wm("[a-c]x", "bx"));
        assert!(!wm("[!a-c]x", "bx"));
        assert!(wm("[[:digit:]]*", "9z"));
        assert!(wm("\\*", "*"));
        assert!(!wm("a[/]b", "a/b"));
        assert!(wm("**/*.bin", "m/n/x.bin"));
        assert!(wm("*/x", "a/x"));
        assert!(!wm("*/x", "a/b/x"));
        assert!(wildmatch(b"*.PKL", b"x.pkl", true, true));
        assert!(!wildmatch(b"*.PKL", b"x.pkl", true, false));
    }

    fn frames(files: &[(&str, &str)]) -> Vec<Frame> {
        files
            .iter()
            .map(|(dir, text)| Frame {
                dir: Some(dir.as_bytes().to_vec()),
                file: Arc::new(AttrFile::parse(text.as_bytes(), dir.is_empty())),
            })
            .collect()
    }

    fn co(files: &[(&str, &str)], path: &str) -> Checkout {
        Checkout::from_attributes(&attributes(&frames(files), path.as_bytes(), false))
    }

    #[test]
    fn attributes_and_checkouts() {
        assert_eq!(co(&[], "a.pkl"), Checkout::default());
        let c = co(&[("", "*.pkl working-tree-encoding=latin1 eol=crlf ident")], "d/a.pkl");
        assert_eq!(c.encoding.as_deref(), Some("latin1"));
        assert_eq!(c.crlf, Crlf::Always);
        assert!(c.ident);
        // Later lines win; deeper files win; `binary` unsets text.
        assert_eq!(co(&[("", "*.pkl text\n*.pkl binary")], "a.pkl").crlf, Crlf::Never);
        assert_eq!(co(&[("", "*.pkl binary"), ("d", "*.pkl text")], "d/a.pkl").crlf, Crlf::Always);
        // Within a line the last state wins, macros expand in place.
        assert_eq!(co(&[("", "a.pkl text binary")], "a.pkl").crlf, Crlf::Never);
        assert_eq!(co(&[("", "a.pkl binary text")], "a.pkl").crlf, Crlf::Always);
        // Macros: defined at the top level only.
        let m = "[attr]evil working-tree-encoding=UTF-16\n*.pkl evil";
        assert_eq!(co(&[("", m)], "x/a.pkl").encoding.as_deref(), Some("UTF-16"));
        assert_eq!(co(&[("", ""), ("x", m)], "x/a.pkl").encoding, None);
        // Anchored and directory patterns; patterns with a slash are relative to their file.
        assert!(co(&[("", "/a.pkl ident")], "a.pkl").ident);
        assert!(!co(&[("", "/a.pkl ident")], "d/a.pkl").ident);
        assert!(co(&[("d", "e/*.pkl ident")], "d/e/a.pkl").ident);
        assert!(!co(&[("d", "e/*.pkl ident")], "e/a.pkl").ident);
        assert!(!co(&[("", "d/ ident")], "d/a.pkl").ident);
        assert!(co(&[("", "d/** ident")], "d/x/a.pkl").ident);
        // Negative patterns are ignored; `!attr` unsets; UTF-8 is no encoding.
        assert!(!co(&[("", "*.pkl ident\n!a.pkl -ident")], "a.pkl").ident.eq(&false));
        assert_eq!(co(&[("", "*.pkl text=auto eol=lf")], "a.pkl").crlf, Crlf::Never);
        assert_eq!(co(&[("", "*.pkl text eol=crlf\na.pkl !eol")], "a.pkl").crlf, Crlf::Always);
        assert_eq!(co(&[("", "*.pkl working-tree-encoding=utf8")], "a.pkl").encoding, None);
        assert_eq!(co(&[("", "*.pkl filter=lfs")], "a.pkl").filter.as_deref(), Some("lfs"));
        // Quoted patterns.
        assert!(co(&[("", "\"a b.pkl\" ident")], "a b.pkl").ident);
        // Case-insensitive clients.
        let f = frames(&[("", "*.PKL working-tree-encoding=latin1")]);
        assert_eq!(Checkout::from_attributes(&attributes(&f, b"a.pkl", true)).encoding.as_deref(), Some("latin1"));
        assert_eq!(Checkout::from_attributes(&attributes(&f, b"a.pkl", false)).encoding, None);
    }

    #[test]
    fn checkouts_with_and_without_info_and_case() {
        assert_eq!(checkouts(&[], None, b"a.pkl"), vec![Checkout::default()]);
        let f = frames(&[("", "*.PKL working-tree-encoding=latin1")]);
        let cs = checkouts(&f, None, b"a.pkl");
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0], Checkout::default());
        assert_eq!(cs[1].encoding.as_deref(), Some("latin1"));
        // info/attributes on top, and only the distinct checkouts.
        let info = Arc::new(AttrFile::parse_file(b"\xef\xbb\xbf*.pkl eol=crlf\n"));
        let cs = checkouts(&[], Some(&info), b"d/a.pkl");
        assert_eq!(cs, vec![Checkout::default(), Checkout { crlf: Crlf::Always, ..Checkout::default() }]);
        let dir = tempfile::tempdir().unwrap();
        assert!(info_attributes(dir.path()).is_none());
        std::fs::create_dir_all(dir.path().join("info")).unwrap();
        std::fs::write(dir.path().join("info/attributes"), "# nothing\n").unwrap();
        assert!(info_attributes(dir.path()).is_none());
        std::fs::write(dir.path().join("info/attributes"), "*.pkl ident\n").unwrap();
        let info = info_attributes(dir.path()).unwrap();
        assert!(checkouts(&[], Some(&info), b"a.pkl").iter().any(|c| c.ident));
    }
}
