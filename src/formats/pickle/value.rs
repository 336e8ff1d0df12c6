//! The symbolic values an emulated unpickler holds: constants are kept (big payloads only
//! as a prefix), containers keep their first few elements plus a count, and everything a
//! load-time call would produce is an opaque [`Call`] that records how it was made.

use crate::engine::Import;

pub(super) type Id = u32;
/// "No value" in id fields.
pub(super) const NIL: Id = u32::MAX;
/// Ids from here up (but [`NIL`]) are values without an arena slot: `None`, `False`, `True`
/// and small non-negative ints, which are most of what big lists and tuples hold.
const IMM: Id = 0xC000_0000;
const IMM_INT: Id = IMM + 3;

/// The id of a value that needs no arena slot.
pub(super) fn immediate(v: &Value) -> Option<Id> {
    match *v {
        Value::None => Some(IMM),
        Value::Bool(b) => Some(IMM + 1 + Id::from(b)),
        Value::Int(i) if (0..i64::from(NIL - IMM_INT)).contains(&i) => Some(IMM_INT + i as Id),
        _ => None,
    }
}

/// Ids of immediate values (and [`NIL`]) stay what they are when the arena is collected.
pub(super) fn is_immediate(id: Id) -> bool {
    id >= IMM
}

/// Elements kept per list/set (dicts keep twice as many slots: key and value).
pub(super) const KEEP: u16 = 8;
/// Elements kept per tuple (a joblib shape or dtype state needs them all).
pub(super) const KEEP_TUPLE: u16 = 40;

/// Bytes of a string or bytes constant: `held` of its `len()` bytes live in the heap.
#[derive(Debug, Clone, Copy)]
pub(super) struct Text {
    pub at: u32,
    pub held: u32,
    /// The length, and in the top bit whether the whole constant is held.
    meta: u64,
}

const FULL: u64 = 1 << 63;

impl Text {
    pub fn new(at: u32, held: u32, len: u64, full: bool) -> Text {
        Text { at, held, meta: (len & !FULL) | if full { FULL } else { 0 } }
    }

    /// Length of the constant (bytes, or UTF-8 bytes of a str).
    pub fn len(&self) -> u64 {
        self.meta & !FULL
    }

    /// The whole constant is held, not just a prefix.
    pub fn full(&self) -> bool {
        self.meta & FULL != 0
    }

    pub fn set_len(&mut self, len: u64) {
        self.meta = (len & !FULL) | (self.meta & FULL);
    }

    pub fn set_full(&mut self, full: bool) {
        self.meta = self.len() | if full { FULL } else { 0 };
    }
}

/// A container: `kept` of `count` elements are stored at `items[at..at + kept]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cont {
    pub at: u32,
    pub kept: u16,
    pub cap: u16,
    pub count: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BytesKind {
    Bytes,
    ByteArray,
    /// A read-only `memoryview` (READONLY_BUFFER applied to a bytearray).
    View,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CallKind {
    Reduce,
    NewObj,
    NewObjEx,
    Obj,
    Inst,
    PersId,
    /// The array joblib's unpickler reads after a `NumpyArrayWrapper` (func = the wrapper).
    JoblibArray,
}

/// Something a load-time call produced. `state` is the last state BUILD applied to it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Call {
    pub kind: CallKind,
    pub func: Id,
    pub args: Id,
    pub kwargs: Id,
    pub state: Id,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Value {
    None,
    Bool(bool),
    Int(i64),
    BigInt {
        neg: bool,
        digits: u32,
    },
    Float(f64),
    /// A `str`, stored as WTF-8.
    Str(Text),
    Bytes(Text, BytesKind),
    List(Cont),
    /// The flag says whether the tuple holds an unhashable element.
    Tuple(Cont, bool),
    Dict(Cont),
    Set(Cont),
    FrozenSet(Cont),
    /// What `find_class` returned for import number `n`.
    Global(u32),
    Call(Call),
}

impl Value {
    /// Values whose type is known and is not callable (a call on them is a TypeError).
    pub fn known_not_callable(&self) -> bool {
        !matches!(self, Value::Global(_) | Value::Call(_))
    }

    /// Objects whose behaviour is only known at load time (the stand-in of the model).
    pub fn opaque(&self) -> bool {
        matches!(self, Value::Global(_) | Value::Call(_))
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt { .. } => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_, BytesKind::Bytes) => "bytes",
            Value::Bytes(_, BytesKind::ByteArray) => "bytearray",
            Value::Bytes(_, BytesKind::View) => "memoryview",
            Value::List(_) => "list",
            Value::Tuple(..) => "tuple",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::FrozenSet(_) => "frozenset",
            Value::Global(_) | Value::Call(_) => "object",
        }
    }
}

/// Values, container slots and constant bytes of one unpickler run.
#[derive(Default)]
pub(super) struct Arena {
    pub vals: Vec<Value>,
    pub items: Vec<Id>,
    pub heap: Vec<u8>,
}

impl Arena {
    pub fn get(&self, id: Id) -> Value {
        match id {
            NIL => Value::None,
            IMM => Value::None,
            _ if id == IMM + 1 => Value::Bool(false),
            _ if id == IMM + 2 => Value::Bool(true),
            _ if id >= IMM_INT => Value::Int(i64::from(id - IMM_INT)),
            _ => self.vals.get(id as usize).copied().unwrap_or(Value::None),
        }
    }

    pub fn set(&mut self, id: Id, v: Value) {
        if let Some(slot) = self.vals.get_mut(id as usize) {
            *slot = v;
        }
    }

    pub fn text(&self, t: &Text) -> &[u8] {
        let start = t.at as usize;
        self.heap.get(start..start + t.held as usize).unwrap_or(&[])
    }

    pub fn items(&self, c: &Cont) -> &[Id] {
        if c.at == NIL {
            return &[];
        }
        let start = c.at as usize;
        self.items.get(start..start + usize::from(c.kept)).unwrap_or(&[])
    }

    /// A new container holding the first elements of `src` (all of them counted).
    /// Empty containers get their slots on first use.
    pub fn cont(&mut self, cap: u16, src: &[Id]) -> Cont {
        if src.is_empty() {
            return Cont { at: NIL, kept: 0, cap, count: 0 };
        }
        let at = self.items.len() as u32;
        let kept = src.len().min(usize::from(cap));
        self.items.extend_from_slice(src.get(..kept).unwrap_or(&[]));
        self.items.resize(at as usize + usize::from(cap), NIL);
        Cont { at, kept: kept as u16, cap, count: src.len() as u64 }
    }

    /// Exact-size container (tuples never grow).
    pub fn tuple_cont(&mut self, src: &[Id]) -> Cont {
        let kept = src.len().min(usize::from(KEEP_TUPLE));
        let at = self.items.len() as u32;
        self.items.extend_from_slice(src.get(..kept).unwrap_or(&[]));
        Cont { at, kept: kept as u16, cap: kept as u16, count: src.len() as u64 }
    }

    /// Append elements to a growable container (only the first `cap` are kept).
    pub fn extend(&mut self, c: &mut Cont, src: &[Id]) {
        if c.at == NIL && !src.is_empty() {
            c.at = self.items.len() as u32;
            self.items.resize(self.items.len() + usize::from(c.cap), NIL);
        }
        for &id in src {
            if c.kept < c.cap {
                if let Some(slot) = self.items.get_mut(c.at as usize + usize::from(c.kept)) {
                    *slot = id;
                    c.kept += 1;
                }
            }
        }
        c.count = c.count.saturating_add(src.len() as u64);
    }

    pub fn hashable(&self, id: Id) -> bool {
        match self.get(id) {
            // a read-only memoryview of a bytearray is unhashable too ("unhashable type: 'bytearray'")
            Value::List(_)
            | Value::Dict(_)
            | Value::Set(_)
            | Value::Bytes(_, BytesKind::ByteArray | BytesKind::View) => false,
            Value::Tuple(_, unhashable) => !unhashable,
            _ => true,
        }
    }

    pub fn as_str(&self, id: Id) -> Option<String> {
        match self.get(id) {
            Value::Str(t) if t.full() => Some(String::from_utf8_lossy(self.text(&t)).into_owned()),
            _ => None,
        }
    }

    pub fn as_int(&self, id: Id) -> Option<i64> {
        match self.get(id) {
            Value::Int(i) => Some(i),
            Value::Bool(b) => Some(i64::from(b)),
            _ => None,
        }
    }

    /// Look `key` up in a dict whose elements were all kept (last assignment wins).
    pub fn dict_get(&self, dict: Id, key: &str) -> Option<Id> {
        let Value::Dict(c) = self.get(dict) else { return None };
        let items = self.items(&c);
        if u64::from(c.kept) < c.count {
            // an element not kept could override the ones we have
            return None;
        }
        items.chunks_exact(2).rev().find_map(|kv| match kv {
            [k, v] if self.as_str(*k).as_deref() == Some(key) => Some(*v),
            _ => None,
        })
    }

    /// All elements of a tuple, when every one was kept.
    pub fn tuple_items(&self, id: Id) -> Option<&[Id]> {
        match self.get(id) {
            Value::Tuple(c, _) if u64::from(c.kept) == c.count => Some(self.items(&c)),
            _ => None,
        }
    }

    /// The values a call would receive from `*args` when every one is known: the items of a
    /// tuple or list, the keys of a dict (the pure-Python unpickler accepts any iterable).
    pub fn arg_items(&self, id: Id) -> Option<Vec<Id>> {
        match self.get(id) {
            Value::Tuple(c, _) | Value::List(c) if u64::from(c.kept) == c.count => Some(self.items(&c).to_vec()),
            Value::Dict(c) if u64::from(c.kept) == c.count => Some(self.items(&c).iter().step_by(2).copied().collect()),
            Value::Set(c) | Value::FrozenSet(c) if c.count <= 1 => Some(self.items(&c).to_vec()),
            _ => None,
        }
    }

    /// The first value `*args` passes, when it is known.
    pub fn first_arg(&self, id: Id) -> Option<Id> {
        match self.get(id) {
            Value::Tuple(c, _) | Value::List(c) | Value::Dict(c) if c.kept > 0 => self.items(&c).first().copied(),
            Value::Set(c) | Value::FrozenSet(c) if c.count == 1 => self.items(&c).first().copied(),
            _ => None,
        }
    }

    /// Garbage collection: keep only the values reachable from `roots`, their container slots
    /// and constant bytes, compacted in place in their order. Returns the map from old to new
    /// ids ([`NIL`] for collected values).
    pub fn collect(&mut self, roots: impl Iterator<Item = Id>) -> Vec<Id> {
        let n = self.vals.len();
        // mark: MARKED in the map (iteratively, chains can be a million deep)
        const MARKED: Id = 0;
        let mut map = vec![NIL; n];
        let mut work: Vec<Id> = roots.filter(|&r| (r as usize) < n).collect();
        while let Some(id) = work.pop() {
            match map.get_mut(id as usize) {
                Some(slot) if *slot == NIL => *slot = MARKED,
                _ => continue,
            }
            match self.get(id) {
                Value::List(c) | Value::Tuple(c, _) | Value::Dict(c) | Value::Set(c) | Value::FrozenSet(c) => {
                    work.extend(self.items(&c).iter().copied().filter(|&i| (i as usize) < n));
                }
                Value::Call(c) => {
                    work.extend([c.func, c.args, c.kwargs, c.state].into_iter().filter(|&i| (i as usize) < n));
                }
                _ => {}
            }
        }
        let mut next: Id = 0;
        for slot in map.iter_mut() {
            if *slot == MARKED {
                *slot = next;
                next += 1;
            }
        }
        let remap =
            |map: &[Id], id: Id| if is_immediate(id) { id } else { map.get(id as usize).copied().unwrap_or(NIL) };
        // constant bytes: live ranges in address order (allocation order already, but for
        // views sharing a bytearray's bytes), moved down in place
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        for (old, &new) in map.iter().enumerate() {
            if new == NIL {
                continue;
            }
            if let Some(Value::Str(t) | Value::Bytes(t, _)) = self.vals.get(old) {
                if t.held > 0 {
                    ranges.push((t.at, t.held));
                }
            }
        }
        if !ranges.windows(2).all(|w| matches!(w, [a, b] if a <= b)) {
            ranges.sort_unstable();
        }
        ranges.dedup();
        let mut dsts: Vec<u32> = Vec::with_capacity(ranges.len());
        let mut top = 0usize;
        // the previous range: old start, old end, new start
        let mut prev: Option<(usize, usize, usize)> = None;
        for &(at, held) in &ranges {
            let (start, end) = (at as usize, at as usize + held as usize);
            if end > self.heap.len() {
                dsts.push(0);
                continue;
            }
            let dst = match prev {
                // overlapping the previous range (same bytes seen twice): the same shift
                Some((ps, pe, pd)) if start < pe => {
                    let dst = pd + (start - ps);
                    if end > pe {
                        self.heap.copy_within(pe..end, pd + (pe - ps));
                        prev = Some((ps, end, pd));
                    }
                    dst
                }
                _ => {
                    if top < start {
                        self.heap.copy_within(start..end, top);
                    }
                    prev = Some((start, end, top));
                    top
                }
            };
            dsts.push(dst as u32);
            top = top.max(dst + (end - start));
        }
        self.heap.truncate(top);
        // where a range went: the next one in order, else a search
        let mut cursor = 0usize;
        let mut moved = |at: u32, held: u32| -> u32 {
            if ranges.get(cursor) == Some(&(at, held)) {
                cursor += 1;
                return dsts.get(cursor - 1).copied().unwrap_or(0);
            }
            match ranges.binary_search(&(at, held)) {
                Ok(i) => {
                    cursor = i + 1;
                    dsts.get(i).copied().unwrap_or(0)
                }
                Err(_) => 0,
            }
        };
        // values and container slots (slots go to a fresh vector: their order is not the ids')
        let mut items: Vec<Id> = Vec::new();
        let mut w = 0usize;
        for old in 0..n {
            if map.get(old).copied().unwrap_or(NIL) == NIL {
                continue;
            }
            let mut v = self.vals.get(old).copied().unwrap_or(Value::None);
            match &mut v {
                Value::Str(t) | Value::Bytes(t, _) => {
                    t.at = if t.held == 0 { 0 } else { moved(t.at, t.held) };
                }
                Value::List(c) | Value::Tuple(c, _) | Value::Dict(c) | Value::Set(c) | Value::FrozenSet(c)
                    if c.at != NIL =>
                {
                    let at = items.len() as u32;
                    let start = c.at as usize;
                    for k in 0..usize::from(c.cap) {
                        let id = self.items.get(start + k).copied().unwrap_or(NIL);
                        items.push(if k < usize::from(c.kept) { remap(&map, id) } else { NIL });
                    }
                    c.at = at;
                }
                Value::Call(c) => {
                    for f in [&mut c.func, &mut c.args, &mut c.kwargs, &mut c.state] {
                        if *f != NIL {
                            *f = remap(&map, *f);
                        }
                    }
                }
                _ => {}
            }
            if let Some(slot) = self.vals.get_mut(w) {
                *slot = v;
            }
            w += 1;
        }
        self.vals.truncate(w);
        self.vals.shrink_to(w.saturating_mul(2));
        self.items = items;
        map
    }
}

/// Longest evidence string rendered.
pub(super) const EVIDENCE_MAX: usize = 400;
const STR_MAX: usize = 100;
const DEPTH_MAX: u32 = 6;

/// Render a value as Python-like source text, e.g. `os.system('echo pwned')`.
pub(super) fn render(a: &Arena, imports: &[Import], id: Id) -> String {
    let mut out = String::new();
    render_into(a, imports, id, &mut out, 0);
    if out.len() > EVIDENCE_MAX {
        let mut cut = EVIDENCE_MAX;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

pub(super) fn global_name(imports: &[Import], n: u32) -> String {
    imports.get(n as usize).map(Import::full_name).unwrap_or_else(|| "?".into())
}

fn render_into(a: &Arena, imports: &[Import], id: Id, out: &mut String, depth: u32) {
    use std::fmt::Write;
    if out.len() > EVIDENCE_MAX {
        return;
    }
    if depth > DEPTH_MAX {
        out.push_str("...");
        return;
    }
    let v = a.get(id);
    match v {
        Value::None => out.push_str("None"),
        Value::Bool(b) => out.push_str(if b { "True" } else { "False" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::BigInt { neg, digits } => {
            let _ = write!(out, "<{}int of {digits} digits>", if neg { "negative " } else { "" });
        }
        Value::Float(f) => out.push_str(&py_float(f)),
        Value::Str(t) => repr_text(a.text(&t), t, false, out),
        Value::Bytes(t, kind) => {
            let wrap = match kind {
                BytesKind::Bytes => "",
                BytesKind::ByteArray => "bytearray(",
                BytesKind::View => "memoryview(",
            };
            out.push_str(wrap);
            repr_text(a.text(&t), t, true, out);
            if !wrap.is_empty() {
                out.push(')');
            }
        }
        Value::List(c) => seq(a, imports, &c, "[", "]", out, depth),
        Value::Tuple(c, _) => {
            seq(a, imports, &c, "(", "", out, depth);
            if c.count == 1 {
                out.push(',');
            }
            out.push(')');
        }
        Value::Set(c) if c.count == 0 => out.push_str("set()"),
        Value::Set(c) => seq(a, imports, &c, "{", "}", out, depth),
        Value::FrozenSet(c) => {
            out.push_str("frozenset(");
            if c.count > 0 {
                seq(a, imports, &c, "{", "}", out, depth);
            }
            out.push(')');
        }
        Value::Dict(c) => {
            out.push('{');
            for (i, kv) in a.items(&c).chunks_exact(2).enumerate() {
                if let [k, v] = kv {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    render_into(a, imports, *k, out, depth + 1);
                    out.push_str(": ");
                    render_into(a, imports, *v, out, depth + 1);
                }
            }
            let shown = u64::from(c.kept / 2);
            if c.count / 2 > shown {
                let _ = write!(out, ", ...{} more", c.count / 2 - shown);
            }
            out.push('}');
        }
        Value::Global(n) => out.push_str(&global_name(imports, n)),
        Value::Call(call) => render_call(a, imports, &call, out, depth),
    }
}

fn seq(a: &Arena, imports: &[Import], c: &Cont, open: &str, close: &str, out: &mut String, depth: u32) {
    use std::fmt::Write;
    out.push_str(open);
    for (i, &id) in a.items(c).iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        render_into(a, imports, id, out, depth + 1);
    }
    if c.count > u64::from(c.kept) {
        let _ = write!(out, ", ...{} more", c.count - u64::from(c.kept));
    }
    out.push_str(close);
}

/// Render the items of an argument tuple without the parentheses.
fn args(a: &Arena, imports: &[Import], id: Id, out: &mut String, depth: u32) {
    match a.get(id) {
        Value::Tuple(c, _) => seq(a, imports, &c, "", "", out, depth),
        Value::None if id == NIL => {}
        _ => {
            out.push('*');
            render_into(a, imports, id, out, depth + 1);
        }
    }
}

pub(super) fn render_call(a: &Arena, imports: &[Import], call: &Call, out: &mut String, depth: u32) {
    match call.kind {
        CallKind::Reduce | CallKind::Obj | CallKind::Inst => {
            render_into(a, imports, call.func, out, depth + 1);
            out.push('(');
            args(a, imports, call.args, out, depth);
            out.push(')');
        }
        CallKind::NewObj | CallKind::NewObjEx => {
            render_into(a, imports, call.func, out, depth + 1);
            out.push_str(".__new__(");
            render_into(a, imports, call.func, out, depth + 1);
            if !matches!(a.get(call.args), Value::Tuple(c, _) if c.count == 0) {
                out.push_str(", ");
                args(a, imports, call.args, out, depth);
            }
            if call.kind == CallKind::NewObjEx {
                out.push_str(", **");
                render_into(a, imports, call.kwargs, out, depth + 1);
            }
            out.push(')');
        }
        CallKind::PersId => {
            out.push_str("persistent_load(");
            render_into(a, imports, call.args, out, depth + 1);
            out.push(')');
        }
        CallKind::JoblibArray => {
            out.push_str("<array read by ");
            render_into(a, imports, call.func, out, depth + 1);
            out.push('>');
        }
    }
}

/// Python `repr` of a str (`bytes = false`) or bytes constant, truncated when long.
fn repr_text(b: &[u8], t: Text, bytes: bool, out: &mut String) {
    use std::fmt::Write;
    let s = String::from_utf8_lossy(b);
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    if bytes {
        out.push('b');
    }
    out.push(quote);
    let mut shown = 0usize;
    let mut cut = false;
    if bytes {
        for &c in b {
            if shown >= STR_MAX {
                cut = true;
                break;
            }
            match c {
                b'\\' => out.push_str("\\\\"),
                b'\n' => out.push_str("\\n"),
                b'\r' => out.push_str("\\r"),
                b'\t' => out.push_str("\\t"),
                c if char::from(c) == quote => {
                    out.push('\\');
                    out.push(quote);
                }
                0x20..=0x7e => out.push(char::from(c)),
                _ => {
                    let _ = write!(out, "\\x{c:02x}");
                }
            }
            shown += 1;
        }
    } else {
        for ch in s.chars() {
            if shown >= STR_MAX {
                cut = true;
                break;
            }
            match ch {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c == quote => {
                    out.push('\\');
                    out.push(quote);
                }
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c => out.push(c),
            }
            shown += 1;
        }
    }
    if cut || !t.full() {
        out.push_str("...");
    }
    out.push(quote);
    if cut || !t.full() {
        let _ = write!(out, " ({} bytes)", t.len());
    }
}

/// Python's `repr(float)`.
pub(super) fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    let exp = f.abs().log10().floor() as i32;
    if (-4..16).contains(&exp) {
        let s = format!("{f}");
        if s.contains('.') {
            s
        } else {
            s + ".0"
        }
    } else {
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((m, e)) => {
                let (sign, digits) = match e.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', e),
                };
                format!("{m}e{sign}{digits:0>2}")
            }
            None => s,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn collection_keeps_what_is_reachable() {
        use super::*;
        let mut a = Arena::default();
        let push = |a: &mut Arena, v: Value| {
            a.vals.push(v);
            (a.vals.len() - 1) as Id
        };
        let text = |a: &mut Arena, s: &[u8]| {
            let at = a.heap.len() as u32;
            a.heap.extend_from_slice(s);
            Text::new(at, s.len() as u32, s.len() as u64, true)
        };
        let t0 = text(&mut a, b"garbage");
        push(&mut a, Value::Str(t0));
        let t1 = text(&mut a, b"kept");
        let s1 = push(&mut a, Value::Str(t1));
        let t2 = text(&mut a, b"shared");
        let b2 = push(&mut a, Value::Bytes(t2, BytesKind::ByteArray));
        let v2 = push(&mut a, Value::Bytes(t2, BytesKind::View));
        push(&mut a, Value::Float(1.0));
        let c = a.cont(KEEP, &[s1, immediate(&Value::Int(7)).unwrap_or(NIL), v2]);
        let list = push(&mut a, Value::List(c));
        let map = a.collect([list, b2].into_iter());
        assert_eq!(a.vals.len(), 4);
        assert_eq!(a.heap, b"keptshared");
        let list = map[list as usize];
        let Value::List(c) = a.get(list) else { panic!("not a list") };
        let items = a.items(&c).to_vec();
        assert_eq!(a.as_str(items[0]).as_deref(), Some("kept"));
        assert_eq!(a.as_int(items[1]), Some(7));
        let (Value::Bytes(tb, _), Value::Bytes(tv, _)) = (a.get(map[b2 as usize]), a.get(items[2])) else {
            panic!("not bytes")
        };
        assert_eq!((a.text(&tb), a.text(&tv)), (&b"shared"[..], &b"shared"[..]));
        assert_eq!(map[0], NIL);
    }

    #[test]
    fn values_are_small() {
        // what the value budget weighs: a value is three words at most
        assert!(std::mem::size_of::<super::Value>() <= 24);
    }

    use super::*;

    #[test]
    fn floats_look_like_python() {
        assert_eq!(py_float(1.0), "1.0");
        assert_eq!(py_float(1e16), "1e+16");
        assert_eq!(py_float(1.5e-5), "1.5e-05");
        assert_eq!(py_float(0.0001), "0.0001");
        assert_eq!(py_float(123.25), "123.25");
    }
}
