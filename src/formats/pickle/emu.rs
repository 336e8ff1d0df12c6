//! A symbolic CPython 3.11 `_pickle.c` Unpickler: every opcode of protocols 0-5 with the
//! C implementation's stack, mark and memo rules and its errors, executing nothing.
//!
//! Objects that only exist at load time (what `find_class`, a call or `persistent_load`
//! returns) are opaque. They behave like a permissive stand-in class: callable, a type for
//! NEWOBJ, with `__setstate__`, `extend`, `add` and item assignment; but never a tuple,
//! dict or str where CPython type-checks for one. Where CPython's outcome would depend on
//! what such an object really is, the run stops with a `Dynamic` halt and a finding.

use super::nested::{self, Encoding};
use super::text::{self, Num};
use super::value::{self, Arena, BytesKind, Call, CallKind, Id, Text, Value, KEEP, NIL};
use super::{Mode, Simple, Sink};
use crate::engine::{Import, ScanOptions};
use crate::finding::{Finding, Severity};
use crate::source::{Data, Input};
use std::collections::HashMap;
use std::io::{self, BufRead, Read};

/// Why a run stopped before STOP.
#[derive(Debug)]
pub(super) enum Halt {
    /// CPython raises here (with any loader): the stream is malformed.
    Malformed { at: u64, msg: String },
    /// CPython's behaviour here depends on load-time objects, or needs state no default
    /// loader has (the extension registry); `code` is the finding to report.
    Dynamic { at: u64, code: &'static str, msg: String, evidence: String },
    /// A scan budget ran out.
    Budget { at: u64, msg: String },
    /// joblib data laid out in a way the scanner cannot follow.
    Layout { at: u64, msg: String },
    /// Reading failed.
    Io { at: u64, msg: String },
}

/// Longest protocol-0 line for numbers, names and memo keys.
const NAME_LINE_MAX: usize = 1 << 20;
/// Constants up to this size are always held whole (so a trampoline can scan them).
const HOLD_SMALL: u64 = 64 * 1024;
/// Prefix kept of constants that are not held whole.
const PREFIX: u64 = 256;
/// Constants this short (module and class names) are held whole even past the heap budget.
const TINY: u64 = 64;
/// How deep pickles nested in constants are followed.
const NESTED_DEPTH_MAX: u32 = 6;
/// Stream bytes a FRAME may declare before availability is checked by position only.
const FRAME_PEEK_MAX: u64 = 16 << 20;
/// Import records kept per pickle; past this a repeated name is not recorded again.
const IMPORT_RECORDS_MAX: usize = 1 << 16;
/// Distinct imported names per pickle.
const IMPORT_NAMES_MAX: usize = 1 << 18;
/// Constants scanned as nested pickles per pickle.
const NESTED_MAX: usize = 1000;
/// Findings of one code per pickle.
const SAME_CODE_MAX: usize = 100;

/// Result of scanning a pickle found inside a constant or passed to a loader.
pub(super) struct Nested {
    pub offset: u64,
    pub encoding: Encoding,
    pub sink: Sink,
    /// The inner bytes parse as a pickle (Probe semantics).
    pub is_pickle: bool,
    /// A failure of the first inner pickle that Probe semantics did not report.
    pub failure: Option<(u64, String)>,
    /// A loader (`pickle.loads`, `torch.load`, ...) unpickles it.
    pub trampoline: bool,
    /// Only a prefix could be scanned.
    pub truncated: bool,
    pub preview: String,
}

pub(super) struct Machine<'o> {
    pub opts: &'o ScanOptions,
    depth: u32,
    suffix: Option<String>,
    pub a: Arena,
    stack: Vec<Id>,
    marks: Vec<usize>,
    fence: usize,
    memo: Vec<Id>,
    memo_big: HashMap<u64, Id>,
    memo_len: u64,
    proto: u8,
    pub imports: Vec<Import>,
    /// For each import, the value whose construction its evidence shows (or NIL).
    ev_src: Vec<Id>,
    pub findings: Vec<Finding>,
    pub nested: Vec<Nested>,
    derived_nested: HashMap<Id, u32>,
    /// A `find_class` call happened: from here on a loader has run code chosen by the stream.
    pub engaged: bool,
    /// A load-time object was called or mutated (code ran, as far as the loader is concerned).
    pub called: bool,
    pub joblib: bool,
    pub opcodes: u64,
    opcode_limit: u64,
    op_at: u64,
    /// End of the frame CPython holds in its read buffer (reads crossing it drop the rest).
    buf_end: u64,
    straddled: bool,
    heap_budget: u64,
    mutated: Vec<(u32, u8)>,
    /// Imports without evidence yet (skip evidence work when zero).
    bare: usize,
    /// Reused buffer for elements popped off the stack.
    scratch: Vec<Id>,
    /// (module, name) as written -> first import record, once records are many.
    names: HashMap<(String, String), u32>,
    nested_scans: usize,
}

type R<T> = Result<T, Halt>;

impl<'o> Machine<'o> {
    pub fn new(opts: &'o ScanOptions, depth: u32, suffix: Option<String>, opcode_limit: u64) -> Machine<'o> {
        Machine {
            opts,
            depth,
            suffix,
            a: Arena::default(),
            stack: Vec::new(),
            marks: Vec::new(),
            fence: 0,
            memo: Vec::new(),
            memo_big: HashMap::new(),
            memo_len: 0,
            proto: 0,
            imports: Vec::new(),
            ev_src: Vec::new(),
            findings: Vec::new(),
            nested: Vec::new(),
            derived_nested: HashMap::new(),
            engaged: false,
            called: false,
            joblib: false,
            opcodes: 0,
            opcode_limit,
            op_at: 0,
            buf_end: 0,
            straddled: false,
            heap_budget: opts.max_nested_pickle_bytes.max(1 << 20).saturating_mul(2).min(u64::from(u32::MAX / 2)),
            mutated: Vec::new(),
            bare: 0,
            scratch: Vec::new(),
            names: HashMap::new(),
            nested_scans: 0,
        }
    }

    // ----- errors -----

    fn bad(&self, msg: impl Into<String>) -> Halt {
        Halt::Malformed { at: self.op_at, msg: msg.into() }
    }

    fn truncated(&self) -> Halt {
        self.bad("pickle data was truncated")
    }

    fn underflow(&self) -> Halt {
        self.bad(if self.marks.is_empty() { "unpickling stack underflow" } else { "unexpected MARK found" })
    }

    fn io(&self, e: io::Error) -> Halt {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            self.truncated()
        } else {
            Halt::Io { at: self.op_at, msg: e.to_string() }
        }
    }

    fn dynamic(&self, code: &'static str, msg: impl Into<String>, evidence: String) -> Halt {
        Halt::Dynamic { at: self.op_at, code, msg: msg.into(), evidence }
    }

    // ----- reading -----

    /// CPython reads a framed pickle from a file through a buffer holding the frame; a read
    /// that needs more than the buffer has drops the buffer's rest and continues after it.
    /// Picklers never write such streams, and loaders disagree on them: report and follow
    /// what `pickle.load` on a file does.
    fn pre_read(&mut self, inp: &mut Input, n: u64) -> R<()> {
        let pos = inp.pos();
        if pos < self.buf_end && pos.saturating_add(n) > self.buf_end {
            self.straddle();
            let drop = self.buf_end - pos;
            self.buf_end = 0;
            let got = inp.skip(drop).map_err(|e| self.io(e))?;
            if got < drop {
                return Err(self.truncated());
            }
        }
        Ok(())
    }

    fn straddle(&mut self) {
        if self.straddled {
            return;
        }
        self.straddled = true;
        let f = Finding::new(
            "pickle-frame-straddle",
            Severity::Dangerous,
            "an opcode crosses the end of a pickle frame; loaders read such a stream differently (a scanner-evasion trick)",
        )
        .at(self.op_at)
        .evidence(format!("frame ends at offset {}", self.buf_end));
        self.finding(f);
    }

    fn read_array<const N: usize>(&mut self, inp: &mut Input) -> R<[u8; N]> {
        self.pre_read(inp, N as u64)?;
        let mut out = [0u8; N];
        let buf = inp.fill_buf().map_err(|e| self.io(e))?;
        if let Some(src) = buf.get(..N) {
            out.copy_from_slice(src);
            inp.consume(N);
            return Ok(out);
        }
        inp.read_exact(&mut out).map_err(|e| self.io(e))?;
        Ok(out)
    }

    fn read_u8(&mut self, inp: &mut Input) -> R<u8> {
        Ok(self.read_array::<1>(inp)?[0])
    }

    fn read_line(&mut self, inp: &mut Input, max: usize) -> R<Vec<u8>> {
        let pos = inp.pos();
        let line = match inp.read_line_max(max) {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(Halt::Budget {
                    at: self.op_at,
                    msg: format!("a protocol-0 line is longer than {max} bytes"),
                })
            }
            Err(e) => return Err(self.io(e)),
        };
        if pos < self.buf_end && inp.pos() > self.buf_end {
            // no newline in the frame's rest: CPython drops it and reads the line after the frame
            self.straddle();
            let cut = (self.buf_end - pos) as usize;
            self.buf_end = 0;
            return Ok(line.get(cut..).unwrap_or(&[]).to_vec());
        }
        Ok(line)
    }

    /// A line that CPython requires to be non-empty (`len < 2` counts the newline).
    fn read_arg_line(&mut self, inp: &mut Input, max: usize) -> R<Vec<u8>> {
        let l = self.read_line(inp, max)?;
        if l.is_empty() {
            return Err(self.truncated());
        }
        Ok(l)
    }

    // ----- values and stack -----

    fn budget_check(&self) -> R<()> {
        let used = self.a.vals.len() as u64 + self.stack.len() as u64 + self.memo_len + self.marks.len() as u64;
        if used >= self.opts.max_pickle_values as u64 || self.a.items.len() >= (u32::MAX as usize) / 2 {
            return Err(Halt::Budget {
                at: self.op_at,
                msg: format!("more than {} values are tracked", self.opts.max_pickle_values),
            });
        }
        Ok(())
    }

    fn alloc(&mut self, v: Value) -> R<Id> {
        self.budget_check()?;
        let id = self.a.vals.len() as Id;
        self.a.vals.push(v);
        Ok(id)
    }

    fn push(&mut self, id: Id) -> R<()> {
        if self.stack.len() & 0xff == 0 {
            self.budget_check()?;
        }
        self.stack.push(id);
        Ok(())
    }

    fn push_new(&mut self, v: Value) -> R<Id> {
        let id = self.alloc(v)?;
        self.stack.push(id);
        Ok(id)
    }

    fn pop(&mut self) -> R<Id> {
        if self.stack.len() <= self.fence {
            return Err(self.underflow());
        }
        self.stack.pop().ok_or_else(|| self.underflow())
    }

    fn top(&self) -> R<Id> {
        if self.stack.len() <= self.fence {
            return Err(self.underflow());
        }
        self.stack.last().copied().ok_or_else(|| self.underflow())
    }

    /// Pop everything from `from` up (into a reused buffer; hand it back with `give_back`).
    fn take_stack(&mut self, from: usize) -> Vec<Id> {
        let mut v = std::mem::take(&mut self.scratch);
        v.clear();
        v.extend_from_slice(self.stack.get(from..).unwrap_or(&[]));
        self.stack.truncate(from);
        v
    }

    fn give_back(&mut self, v: Vec<Id>) {
        self.scratch = v;
    }

    fn marker(&mut self) -> R<usize> {
        let Some(mark) = self.marks.pop() else {
            return Err(self.bad("could not find MARK"));
        };
        self.fence = self.marks.last().copied().unwrap_or(0);
        Ok(mark)
    }

    fn memo_get(&self, idx: i64) -> Option<Id> {
        let idx = u64::try_from(idx).ok()?;
        match usize::try_from(idx).ok().and_then(|i| self.memo.get(i)) {
            Some(&id) if id != NIL => Some(id),
            Some(_) => None,
            None => self.memo_big.get(&idx).copied(),
        }
    }

    fn memo_put(&mut self, idx: u64, id: Id) -> R<()> {
        if idx >= 1 << 59 {
            return Err(self.bad("memo index too large (MemoryError)"));
        }
        let fresh = if idx < 1 << 20 {
            let i = idx as usize;
            if self.memo.len() <= i {
                self.memo.resize(i + 1, NIL);
            }
            match self.memo.get_mut(i) {
                Some(slot) => {
                    let fresh = *slot == NIL;
                    *slot = id;
                    fresh
                }
                None => false,
            }
        } else {
            self.memo_big.insert(idx, id).is_none()
        };
        if fresh {
            self.memo_len += 1;
            self.budget_check()?;
        }
        Ok(())
    }

    fn new_str(&mut self, bytes: &[u8]) -> Text {
        let at = self.a.heap.len() as u32;
        self.a.heap.extend_from_slice(bytes);
        Text { at, held: bytes.len() as u32, len: bytes.len() as u64, nested: NIL, full: true }
    }

    /// Read a counted payload of `n` bytes: small or pickle-looking constants are held whole,
    /// others keep a prefix and the rest is skipped. A pickle inside is scanned right away.
    fn payload(&mut self, inp: &mut Input, n: u64, latin1: bool, readinto: bool) -> R<Text> {
        if !readinto {
            self.pre_read(inp, n)?;
        }
        let mut head = [0u8; nested::SNIFF_LEN];
        let head_len = {
            let h = inp.peek(n.min(nested::SNIFF_LEN as u64) as usize).map_err(|e| self.io(e))?;
            let k = h.len().min(head.len());
            head.get_mut(..k).unwrap_or(&mut []).copy_from_slice(h.get(..k).unwrap_or(&[]));
            k
        };
        let candidate = nested::sniff(head.get(..head_len).unwrap_or(&[]));
        let max_nested = self.opts.max_nested_pickle_bytes;
        let room = (self.a.heap.len() as u64).saturating_add(n) <= self.heap_budget;
        let full = n <= TINY || (room && (n <= HOLD_SMALL || (candidate.is_some() && n <= max_nested)));
        let prefix = if room { PREFIX } else { TINY };
        let at = self.a.heap.len();
        let mut scanned_part: Option<(Vec<u8>, bool)> = None;
        if full {
            self.a.heap.resize(at + n as usize, 0);
            let dst = self.a.heap.get_mut(at..).unwrap_or(&mut []);
            if let Err(e) = inp.read_exact(dst) {
                self.a.heap.truncate(at);
                return Err(self.io(e));
            }
        } else {
            let keep = if candidate.is_some() { n.min(max_nested).max(prefix.min(n)) } else { prefix.min(n) };
            let mut part = vec![0u8; keep as usize];
            inp.read_exact(&mut part).map_err(|e| self.io(e))?;
            let rest = n - keep;
            let skipped = inp.skip(rest).map_err(|e| self.io(e))?;
            if skipped < rest {
                return Err(self.truncated());
            }
            self.a.heap.extend_from_slice(part.get(..prefix.min(n) as usize).unwrap_or(&[]));
            if candidate.is_some() {
                scanned_part = Some((part, keep < n));
            }
        }
        let mut nested_idx = NIL;
        if let Some(enc) = candidate {
            let offset = self.op_at;
            let (data, truncated) = match scanned_part {
                Some(p) => p,
                None => (self.a.heap.get(at..).unwrap_or(&[]).to_vec(), false),
            };
            nested_idx = self.scan_nested(&data, enc, offset, false, truncated);
        }
        if latin1 {
            let raw = self.a.heap.split_off(at);
            self.a.heap.extend_from_slice(&text::latin1_to_utf8(&raw));
        }
        let held = (self.a.heap.len() - at) as u32;
        Ok(Text { at: at as u32, held, len: n, nested: nested_idx, full })
    }

    // ----- imports, evidence -----

    fn import(&mut self, module: String, name: String, opcode: &'static str) -> R<u32> {
        // find_class("onfig = 1", ...) (a text file read as protocol 0) cannot import anything:
        // CPython fails right there, so such a call neither runs code nor makes bytes a pickle
        if !plausible(&module) || !plausible(&name) {
            self.record(module.clone(), name.clone(), opcode)?;
            let shown: String = format!("{module}.{name}").chars().take(60).collect();
            return Err(self.bad(format!("cannot import {shown:?}: not a Python module path")));
        }
        self.engaged = true;
        self.record(module, name, opcode)
    }

    fn record(&mut self, module: String, name: String, opcode: &'static str) -> R<u32> {
        // many imports: repeated names share one record, so memory stays bounded
        if self.imports.len() >= IMPORT_RECORDS_MAX {
            if self.names.is_empty() {
                for (i, imp) in self.imports.iter().enumerate() {
                    let key = imp.raw.clone().unwrap_or_else(|| (imp.module.clone(), imp.name.clone()));
                    self.names.entry(key).or_insert(i as u32);
                }
            }
            if let Some(&i) = self.names.get(&(module.clone(), name.clone())) {
                return Ok(i);
            }
            if self.names.len() >= IMPORT_NAMES_MAX {
                return Err(Halt::Budget {
                    at: self.op_at,
                    msg: format!("more than {IMPORT_NAMES_MAX} distinct imported names"),
                });
            }
            self.names.insert((module.clone(), name.clone()), self.imports.len() as u32);
        }
        let (m, n) = if self.proto < 3 { super::compat_map(&module, &name) } else { (module.clone(), name.clone()) };
        let raw = if m != module || n != name { Some((module, name)) } else { None };
        self.imports.push(Import {
            module: m,
            name: n,
            raw,
            opcode,
            offset: self.op_at,
            member: self.suffix.clone(),
            evidence: None,
        });
        self.ev_src.push(NIL);
        self.bare += 1;
        Ok((self.imports.len() - 1) as u32)
    }

    fn global_path(&self, id: Id) -> Option<(&str, &str)> {
        match self.a.get(id) {
            Value::Global(n) => self.imports.get(n as usize).map(|i| (i.module.as_str(), i.name.as_str())),
            _ => None,
        }
    }

    /// Imports referenced by `id` (itself, or inside it up to `depth` levels) without evidence yet.
    fn collect_bare(&self, id: Id, depth: u32, out: &mut Vec<u32>) {
        match self.a.get(id) {
            Value::Global(n)
                if self.imports.get(n as usize).is_some_and(|i| i.evidence.is_none()) && !out.contains(&n) =>
            {
                out.push(n);
            }
            Value::Tuple(c, _) | Value::List(c) | Value::Dict(c) | Value::Set(c) | Value::FrozenSet(c) if depth > 0 => {
                for &i in self.a.items(&c) {
                    self.collect_bare(i, depth - 1, out);
                }
            }
            Value::Call(c) if depth > 0 => {
                self.collect_bare(c.func, depth - 1, out);
                self.collect_bare(c.args, depth - 1, out);
            }
            _ => {}
        }
    }

    /// Every import referenced by `id`, following calls and containers `depth` levels down.
    fn collect_imports(&self, id: Id, depth: u32, out: &mut Vec<u32>) {
        match self.a.get(id) {
            Value::Global(n) if !out.contains(&n) => out.push(n),
            Value::Tuple(c, _) | Value::List(c) | Value::Dict(c) | Value::Set(c) | Value::FrozenSet(c) if depth > 0 => {
                for &i in self.a.items(&c) {
                    self.collect_imports(i, depth - 1, out);
                }
            }
            Value::Call(c) if depth > 0 => {
                self.collect_imports(c.func, depth - 1, out);
                self.collect_imports(c.args, depth - 1, out);
            }
            _ => {}
        }
    }

    /// Give the imports a call uses (as callable or argument) the call as evidence.
    fn attach_evidence(&mut self, parts: &[Id], src: Id, rendered: impl FnOnce(&Self) -> String) {
        if self.bare == 0 {
            return;
        }
        let mut bare = Vec::new();
        for (i, &p) in parts.iter().enumerate() {
            if p != NIL {
                self.collect_bare(p, if i == 0 { 0 } else { 2 }, &mut bare);
            }
        }
        if bare.is_empty() {
            return;
        }
        let text = rendered(self);
        for n in bare {
            if let Some(imp) = self.imports.get_mut(n as usize) {
                if imp.evidence.is_none() {
                    self.bare = self.bare.saturating_sub(1);
                }
                imp.evidence = Some(text.clone());
            }
            if let Some(s) = self.ev_src.get_mut(n as usize) {
                *s = src;
            }
        }
    }

    fn render(&self, id: Id) -> String {
        value::render(&self.a, &self.imports, id)
    }

    fn finding(&mut self, f: Finding) {
        if self.findings.iter().filter(|g| g.code == f.code).count() >= SAME_CODE_MAX {
            return;
        }
        let f = match &self.suffix {
            Some(s) => f.member(s.clone()),
            None => f,
        };
        self.findings.push(f);
    }

    /// BUILD/SETITEM/APPEND/ADDITEMS on an object `find_class` returned: monkey-patching.
    fn check_mutation(&mut self, target: Id, op: u8, evidence: impl FnOnce(&Self) -> String) {
        self.called = true;
        let Value::Global(n) = self.a.get(target) else { return };
        if self.mutated.contains(&(n, op)) {
            return;
        }
        self.mutated.push((n, op));
        let name = value::global_name(&self.imports, n);
        let ev = evidence(self);
        let f = Finding::new(
            "pickle-global-mutation",
            Severity::Dangerous,
            format!("the pickle modifies {name} in place (monkey-patching a module or class at load time)"),
        )
        .at(self.op_at)
        .evidence(ev);
        self.finding(f);
    }

    // ----- the loop -----

    /// Run one pickle up to its STOP; returns the value STOP pops.
    pub fn run(&mut self, inp: &mut Input) -> R<Id> {
        loop {
            self.op_at = inp.pos();
            self.opcodes += 1;
            if self.opcodes > self.opcode_limit {
                return Err(Halt::Budget {
                    at: self.op_at,
                    msg: format!("more than {} opcodes", self.opts.max_pickle_opcodes),
                });
            }
            let op = {
                let buf = inp.fill_buf().map_err(|e| self.io(e))?;
                match buf.first() {
                    Some(&b) => b,
                    None => return Err(self.bad("ran out of input (no STOP opcode)")),
                }
            };
            inp.consume(1);
            if op == b'.' {
                return self.pop();
            }
            self.step(inp, op)?;
        }
    }

    fn step(&mut self, inp: &mut Input, op: u8) -> R<()> {
        match op {
            b'(' => {
                self.marks.push(self.stack.len());
                self.fence = self.stack.len();
            }
            b'0' => {
                let len = self.stack.len();
                if self.marks.last() == Some(&len) {
                    self.marks.pop();
                    self.fence = self.marks.last().copied().unwrap_or(0);
                } else {
                    self.pop()?;
                }
            }
            b'1' => {
                let i = self.marker()?;
                self.stack.truncate(i);
            }
            b'2' => {
                let t = self.top()?;
                self.push(t)?;
            }
            b'N' => {
                self.push_new(Value::None)?;
            }
            b'\x88' => {
                self.push_new(Value::Bool(true))?;
            }
            b'\x89' => {
                self.push_new(Value::Bool(false))?;
            }
            b'I' => {
                let l = self.read_arg_line(inp, NAME_LINE_MAX)?;
                let v = text::parse_int_line(&l).ok_or_else(|| self.bad("could not convert string to int"))?;
                self.push_num(v)?;
            }
            b'L' => {
                let l = self.read_arg_line(inp, NAME_LINE_MAX)?;
                let v = text::parse_long_line(&l).ok_or_else(|| self.bad("invalid literal for int()"))?;
                self.push_num(v)?;
            }
            b'J' => {
                let b = self.read_array::<4>(inp)?;
                self.push_new(Value::Int(i64::from(i32::from_le_bytes(b))))?;
            }
            b'K' => {
                let b = self.read_u8(inp)?;
                self.push_new(Value::Int(i64::from(b)))?;
            }
            b'M' => {
                let b = self.read_array::<2>(inp)?;
                self.push_new(Value::Int(i64::from(u16::from_le_bytes(b))))?;
            }
            b'\x8a' => {
                let n = self.read_u8(inp)?;
                self.counted_long(inp, u64::from(n))?;
            }
            b'\x8b' => {
                let n = i32::from_le_bytes(self.read_array::<4>(inp)?);
                if n < 0 {
                    return Err(self.bad("LONG pickle has negative byte count"));
                }
                self.counted_long(inp, n as u64)?;
            }
            b'F' => {
                let l = self.read_arg_line(inp, NAME_LINE_MAX)?;
                let v = text::parse_float_line(&l).ok_or_else(|| self.bad("could not convert string to float"))?;
                self.push_new(Value::Float(v))?;
            }
            b'G' => {
                let b = self.read_array::<8>(inp)?;
                self.push_new(Value::Float(f64::from_be_bytes(b)))?;
            }
            b'S' => {
                // The argument must be quoted: decide from the first byte before reading a long line.
                let first = inp.peek(1).map_err(|e| self.io(e))?.first().copied();
                if inp.pos() >= self.buf_end && !matches!(first, Some(b'\'') | Some(b'"')) {
                    return Err(self.bad("the STRING opcode argument must be quoted"));
                }
                let l = self.read_line(inp, self.string_line_max())?;
                let raw = text::decode_string_line(&l).map_err(|m| self.bad(m))?;
                self.push_const_str(&raw, true)?;
            }
            b'T' => {
                let n = u32::from_le_bytes(self.read_array::<4>(inp)?);
                let t = self.payload(inp, u64::from(n), true, false)?;
                self.push_new(Value::Str(t))?;
            }
            b'U' => {
                let n = self.read_u8(inp)?;
                let t = self.payload(inp, u64::from(n), true, false)?;
                self.push_new(Value::Str(t))?;
            }
            b'V' => {
                let l = self.read_line(inp, self.string_line_max())?;
                let s = text::decode_raw_unicode_escape(&l).map_err(|m| self.bad(m))?;
                self.push_const_str(&s, false)?;
            }
            b'\x8c' => {
                let n = self.read_u8(inp)?;
                self.unicode(inp, u64::from(n))?;
            }
            b'X' => {
                let n = u32::from_le_bytes(self.read_array::<4>(inp)?);
                self.unicode(inp, u64::from(n))?;
            }
            b'\x8d' => {
                let n = self.size8(inp, "BINUNICODE exceeds system's maximum size")?;
                self.unicode(inp, n)?;
            }
            b'C' => {
                let n = self.read_u8(inp)?;
                self.bytes(inp, u64::from(n), BytesKind::Bytes)?;
            }
            b'B' => {
                let n = u32::from_le_bytes(self.read_array::<4>(inp)?);
                self.bytes(inp, u64::from(n), BytesKind::Bytes)?;
            }
            b'\x8e' => {
                let n = self.size8(inp, "BINBYTES exceeds system's maximum size")?;
                self.bytes(inp, n, BytesKind::Bytes)?;
            }
            b'\x96' => {
                let n = self.size8(inp, "BYTEARRAY8 exceeds system's maximum size")?;
                self.bytes(inp, n, BytesKind::ByteArray)?;
            }
            b'\x97' => {
                return Err(self.bad("pickle stream refers to out-of-band data but no *buffers* argument was given"));
            }
            b'\x98' => self.readonly_buffer()?,
            b')' => self.counted_tuple(0)?,
            b'\x85' => self.counted_tuple(1)?,
            b'\x86' => self.counted_tuple(2)?,
            b'\x87' => self.counted_tuple(3)?,
            b't' => {
                let i = self.marker()?;
                let n = self.stack.len() - i;
                self.counted_tuple(n)?;
            }
            b']' => {
                let c = self.a.cont(KEEP, &[]);
                self.push_new(Value::List(c))?;
            }
            b'}' => {
                let c = self.a.cont(KEEP * 2, &[]);
                self.push_new(Value::Dict(c))?;
            }
            b'\x8f' => {
                let c = self.a.cont(KEEP, &[]);
                self.push_new(Value::Set(c))?;
            }
            b'l' => {
                let i = self.marker()?;
                let items = self.take_stack(i);
                let c = self.a.cont(KEEP, &items);
                self.give_back(items);
                self.push_new(Value::List(c))?;
            }
            b'd' => {
                let i = self.marker()?;
                if (self.stack.len() - i) % 2 != 0 {
                    return Err(self.bad("odd number of items for DICT"));
                }
                let items = self.take_stack(i);
                self.check_keys_hashable(items.iter().step_by(2))?;
                let c = self.a.cont(KEEP * 2, &items);
                self.give_back(items);
                self.push_new(Value::Dict(c))?;
            }
            b'\x91' => {
                let i = self.marker()?;
                let items = self.take_stack(i);
                self.check_keys_hashable(items.iter())?;
                let c = self.a.cont(KEEP, &items);
                self.give_back(items);
                self.push_new(Value::FrozenSet(c))?;
            }
            b'a' => {
                if self.stack.len() <= self.fence + 1 {
                    return Err(self.underflow());
                }
                self.do_append(self.stack.len() - 1)?;
            }
            b'e' => {
                let i = self.marker()?;
                self.do_append(i)?;
            }
            b's' => {
                let x = self.stack.len().checked_sub(2).ok_or_else(|| self.underflow())?;
                self.do_setitems(x)?;
            }
            b'u' => {
                let i = self.marker()?;
                self.do_setitems(i)?;
            }
            b'\x90' => self.additems()?,
            b'g' => {
                let l = self.read_arg_line(inp, NAME_LINE_MAX)?;
                let idx = text::parse_memo_key(&l).ok_or_else(|| self.bad("invalid memo key"))?;
                self.get(idx)?;
            }
            b'h' => {
                let i = self.read_u8(inp)?;
                self.get(i64::from(i))?;
            }
            b'j' => {
                let i = u32::from_le_bytes(self.read_array::<4>(inp)?);
                self.get(i64::from(i))?;
            }
            b'p' => {
                let l = self.read_arg_line(inp, NAME_LINE_MAX)?;
                let v = self.top()?;
                let idx = text::parse_memo_key(&l).ok_or_else(|| self.bad("invalid memo key"))?;
                let idx = u64::try_from(idx).map_err(|_| self.bad("negative PUT argument"))?;
                self.memo_put(idx, v)?;
            }
            b'q' => {
                let i = self.read_u8(inp)?;
                let v = self.top()?;
                self.memo_put(u64::from(i), v)?;
            }
            b'r' => {
                let i = u32::from_le_bytes(self.read_array::<4>(inp)?);
                let v = self.top()?;
                self.memo_put(u64::from(i), v)?;
            }
            b'\x94' => {
                let v = self.top()?;
                self.memo_put(self.memo_len, v)?;
            }
            b'c' => {
                let m = self.read_arg_line(inp, NAME_LINE_MAX)?;
                let module = String::from_utf8(m).map_err(|_| self.bad("invalid utf-8 in GLOBAL module name"))?;
                let n = self.read_arg_line(inp, NAME_LINE_MAX)?;
                let name = String::from_utf8(n).map_err(|_| self.bad("invalid utf-8 in GLOBAL name"))?;
                let g = self.import(module, name, "GLOBAL")?;
                self.push_new(Value::Global(g))?;
            }
            b'\x93' => self.stack_global()?,
            b'i' => {
                let mark = self.marker()?;
                let m = self.read_arg_line(inp, NAME_LINE_MAX)?;
                if !m.is_ascii() {
                    return Err(self.bad("non-ascii module name in INST"));
                }
                let n = self.read_arg_line(inp, NAME_LINE_MAX)?;
                if !n.is_ascii() {
                    return Err(self.bad("non-ascii class name in INST"));
                }
                let module = String::from_utf8_lossy(&m).into_owned();
                let name = String::from_utf8_lossy(&n).into_owned();
                let g = self.import(module, name, "INST")?;
                let gid = self.alloc(Value::Global(g))?;
                let items = self.take_stack(mark);
                let args = self.new_tuple(&items)?;
                self.give_back(items);
                self.call(CallKind::Inst, gid, args, NIL)?;
            }
            b'o' => {
                let mark = self.marker()?;
                if self.stack.len() < mark + 1 {
                    return Err(self.underflow());
                }
                let items = self.take_stack(mark + 1);
                let args = self.new_tuple(&items)?;
                self.give_back(items);
                let cls = self.pop()?;
                if self.a.get(cls).known_not_callable() {
                    return Err(self.bad(format!("'{}' object is not callable", self.a.get(cls).type_name())));
                }
                self.call(CallKind::Obj, cls, args, NIL)?;
            }
            b'R' => {
                let args = self.pop()?;
                let func = self.pop()?;
                if self.a.get(func).known_not_callable() {
                    return Err(self.bad(format!("'{}' object is not callable", self.a.get(func).type_name())));
                }
                self.require_tuple(args, "argument list must be a tuple")?;
                self.call(CallKind::Reduce, func, args, NIL)?;
            }
            b'\x81' | b'\x92' => {
                let ex = op == b'\x92';
                let what = if ex { "NEWOBJ_EX" } else { "NEWOBJ" };
                let kwargs = if ex { self.pop()? } else { NIL };
                let args = self.pop()?;
                let cls = self.pop()?;
                let cv = self.a.get(cls);
                if !cv.opaque() {
                    return Err(self.bad(format!("{what} class argument must be a type, not {}", cv.type_name())));
                }
                self.require_tuple(args, &format!("{what} args argument must be a tuple"))?;
                if ex {
                    match self.a.get(kwargs) {
                        Value::Dict(_) => {}
                        v if v.opaque() => {
                            let ev = self.render(kwargs);
                            return Err(self.dynamic(
                                "pickle-dynamic-operand",
                                "NEWOBJ_EX keyword arguments come from a load-time call",
                                ev,
                            ));
                        }
                        v => {
                            return Err(
                                self.bad(format!("NEWOBJ_EX kwargs argument must be a dict, not {}", v.type_name()))
                            )
                        }
                    }
                }
                self.call(if ex { CallKind::NewObjEx } else { CallKind::NewObj }, cls, args, kwargs)?;
            }
            b'b' => self.build(inp)?,
            b'P' => {
                let l = self.read_line(inp, NAME_LINE_MAX)?;
                if !l.is_ascii() {
                    return Err(self.bad("persistent IDs in protocol 0 must be ASCII strings"));
                }
                let t = self.new_str(&l);
                let pid = self.alloc(Value::Str(t))?;
                self.persid(pid)?;
            }
            b'Q' => {
                let pid = self.pop()?;
                self.persid(pid)?;
            }
            b'\x82' | b'\x83' | b'\x84' => {
                let (code, opname) = match op {
                    b'\x82' => (i64::from(self.read_u8(inp)?), "EXT1"),
                    b'\x83' => (i64::from(u16::from_le_bytes(self.read_array::<2>(inp)?)), "EXT2"),
                    _ => (i64::from(i32::from_le_bytes(self.read_array::<4>(inp)?)), "EXT4"),
                };
                if code <= 0 {
                    return Err(self.bad("EXT specifies code <= 0"));
                }
                if self.engaged {
                    self.record("copyreg".into(), format!("_inverted_registry[{code}]"), opname)?;
                }
                return Err(self.dynamic(
                    "pickle-extension-code",
                    format!("{opname} loads extension code {code} from the copyreg registry, which maps it to any global; a default loader rejects it"),
                    format!("{opname} {code}"),
                ));
            }
            b'\x80' => {
                let p = self.read_u8(inp)?;
                if p > 5 {
                    return Err(self.bad(format!("unsupported pickle protocol: {p}")));
                }
                self.proto = p;
            }
            b'\x95' => {
                let n = self.size8(inp, "FRAME length exceeds system's maximum")?;
                if inp.pos().saturating_add(n) <= self.buf_end {
                    // the new frame lies inside the buffered one: CPython changes nothing
                    return Ok(());
                }
                self.pre_read(inp, n)?;
                let pos = inp.pos();
                let available = match inp.remaining() {
                    Some(r) => r >= n,
                    None if n <= FRAME_PEEK_MAX => inp.peek(n as usize).map_err(|e| self.io(e))?.len() as u64 >= n,
                    None => true,
                };
                if !available {
                    return Err(self.truncated());
                }
                self.buf_end = pos.saturating_add(n);
            }
            _ => {
                let shown = if (0x20..=0x7e).contains(&op) && op != b'\'' && op != b'\\' {
                    format!("'{}'", char::from(op))
                } else {
                    format!("'\\x{op:02x}'")
                };
                return Err(self.bad(format!("invalid load key, {shown}")));
            }
        }
        Ok(())
    }

    fn string_line_max(&self) -> usize {
        usize::try_from(self.opts.max_nested_pickle_bytes).unwrap_or(usize::MAX).max(NAME_LINE_MAX)
    }

    fn size8(&mut self, inp: &mut Input, msg: &str) -> R<u64> {
        let n = u64::from_le_bytes(self.read_array::<8>(inp)?);
        if n > i64::MAX as u64 {
            return Err(self.bad(msg));
        }
        Ok(n)
    }

    fn push_num(&mut self, n: Num) -> R<()> {
        let v = match n {
            Num::Int(i) => Value::Int(i),
            Num::Bool(b) => Value::Bool(b),
            Num::Big { neg, digits } => Value::BigInt { neg, digits },
        };
        self.push_new(v)?;
        Ok(())
    }

    fn counted_long(&mut self, inp: &mut Input, n: u64) -> R<()> {
        if n == 0 {
            self.push_new(Value::Int(0))?;
            return Ok(());
        }
        self.pre_read(inp, n)?;
        if n <= 8 {
            let mut b = [0u8; 8];
            let dst = b.get_mut(..n as usize).unwrap_or(&mut []);
            inp.read_exact(dst).map_err(|e| self.io(e))?;
            let neg = dst.last().is_some_and(|&x| x & 0x80 != 0);
            if neg {
                for x in b.iter_mut().skip(n as usize) {
                    *x = 0xff;
                }
            }
            self.push_new(Value::Int(i64::from_le_bytes(b)))?;
            return Ok(());
        }
        let skipped = inp.skip(n).map_err(|e| self.io(e))?;
        if skipped < n {
            return Err(self.truncated());
        }
        let digits = u32::try_from(n.saturating_mul(8) * 30103 / 100_000).unwrap_or(u32::MAX);
        self.push_new(Value::BigInt { neg: false, digits })?;
        Ok(())
    }

    fn push_const_str(&mut self, bytes: &[u8], latin1: bool) -> R<()> {
        let mut nested_idx = NIL;
        if let Some(enc) = nested::sniff(bytes) {
            nested_idx = self.scan_nested(bytes, enc, self.op_at, false, false);
        }
        let room = (self.a.heap.len() as u64).saturating_add(bytes.len() as u64) <= self.heap_budget;
        let kept = if room || bytes.len() as u64 <= TINY { bytes } else { bytes.get(..TINY as usize).unwrap_or(bytes) };
        let mut t = if latin1 { self.new_str(&text::latin1_to_utf8(kept)) } else { self.new_str(kept) };
        t.len = bytes.len() as u64;
        t.full = kept.len() == bytes.len();
        t.nested = nested_idx;
        self.push_new(Value::Str(t))?;
        Ok(())
    }

    fn unicode(&mut self, inp: &mut Input, n: u64) -> R<()> {
        let t = self.payload(inp, n, false, false)?;
        if t.full && !text::valid_utf8_surrogatepass(self.a.text(&t)) {
            return Err(self.bad("invalid utf-8 in BINUNICODE"));
        }
        self.push_new(Value::Str(t))?;
        Ok(())
    }

    fn bytes(&mut self, inp: &mut Input, n: u64, kind: BytesKind) -> R<()> {
        let t = self.payload(inp, n, false, true)?;
        self.push_new(Value::Bytes(t, kind))?;
        Ok(())
    }

    fn readonly_buffer(&mut self) -> R<()> {
        let top = self.top()?;
        match self.a.get(top) {
            Value::Bytes(t, BytesKind::ByteArray) => {
                let view = self.alloc(Value::Bytes(t, BytesKind::View))?;
                if let Some(slot) = self.stack.last_mut() {
                    *slot = view;
                }
                Ok(())
            }
            Value::Bytes(..) => Ok(()),
            v if v.opaque() => {
                let ev = self.render(top);
                Err(self.dynamic("pickle-dynamic-operand", "READONLY_BUFFER applied to a load-time object", ev))
            }
            v => Err(self.bad(format!("a bytes-like object is required, not '{}'", v.type_name()))),
        }
    }

    fn counted_tuple(&mut self, n: usize) -> R<()> {
        let len = self.stack.len();
        if len < n || len - n < self.fence {
            return Err(self.underflow());
        }
        let items = self.take_stack(len - n);
        let id = self.new_tuple(&items)?;
        self.give_back(items);
        self.push(id)
    }

    fn new_tuple(&mut self, items: &[Id]) -> R<Id> {
        let unhashable = items.iter().any(|&i| !self.a.hashable(i));
        let c = self.a.tuple_cont(items);
        self.alloc(Value::Tuple(c, unhashable))
    }

    fn check_keys_hashable<'i>(&self, mut keys: impl Iterator<Item = &'i Id>) -> R<()> {
        match keys.find(|&&k| !self.a.hashable(k)) {
            Some(&k) => Err(self.bad(format!("unhashable type: '{}'", self.a.get(k).type_name()))),
            None => Ok(()),
        }
    }

    fn require_tuple(&self, id: Id, msg: &str) -> R<()> {
        match self.a.get(id) {
            Value::Tuple(..) => Ok(()),
            v if v.opaque() => {
                let ev = self.render(id);
                Err(self.dynamic("pickle-dynamic-operand", format!("{msg}: it comes from a load-time call"), ev))
            }
            _ => Err(self.bad(msg.to_string())),
        }
    }

    fn get(&mut self, idx: i64) -> R<()> {
        match self.memo_get(idx) {
            Some(id) => self.push(id),
            None => Err(self.bad(format!("memo value not found at index {idx}"))),
        }
    }

    fn int_in(&self, id: Id, lo: i64, hi: i64) -> Option<i64> {
        self.a.as_int(id).filter(|&i| i >= lo && i < hi)
    }

    fn do_append(&mut self, x: usize) -> R<()> {
        let len = self.stack.len();
        if x > len || x <= self.fence {
            return Err(self.underflow());
        }
        if len == x {
            return Ok(());
        }
        let target = self.stack.get(x - 1).copied().unwrap_or(NIL);
        let items = self.take_stack(x);
        match self.a.get(target) {
            Value::List(mut c) => {
                self.a.extend(&mut c, &items);
                self.a.set(target, Value::List(c));
            }
            Value::Bytes(mut t, BytesKind::ByteArray) => {
                if items.iter().any(|&i| self.int_in(i, 0, 256).is_none()) {
                    return Err(self.bad("bytearray.extend() needs integers in range(0, 256)"));
                }
                t.len += items.len() as u64;
                t.full = false;
                self.a.set(target, Value::Bytes(t, BytesKind::ByteArray));
            }
            Value::Global(_) | Value::Call(_) => {
                self.check_mutation(target, b'a', |m| {
                    let mut s = m.render(target);
                    s.push_str(".extend([");
                    for (k, &i) in items.iter().take(4).enumerate() {
                        if k > 0 {
                            s.push_str(", ");
                        }
                        s.push_str(&m.render(i));
                    }
                    s.push_str("])");
                    s
                });
            }
            v => return Err(self.bad(format!("'{}' object has no attribute 'append'", v.type_name()))),
        }
        self.give_back(items);
        Ok(())
    }

    fn do_setitems(&mut self, x: usize) -> R<()> {
        let len = self.stack.len();
        if x > len || x <= self.fence {
            return Err(self.underflow());
        }
        if len == x {
            return Ok(());
        }
        if (len - x) % 2 != 0 {
            return Err(self.bad("odd number of items for SETITEMS"));
        }
        let target = self.stack.get(x - 1).copied().unwrap_or(NIL);
        let items = self.take_stack(x);
        match self.a.get(target) {
            Value::Dict(mut c) => {
                self.check_keys_hashable(items.iter().step_by(2))?;
                self.a.extend(&mut c, &items);
                self.a.set(target, Value::Dict(c));
            }
            Value::List(c) => {
                let n = i64::try_from(c.count).unwrap_or(i64::MAX);
                if items.iter().step_by(2).any(|&k| self.int_in(k, -n, n).is_none()) {
                    return Err(self.bad("list assignment index out of range or not an integer"));
                }
            }
            Value::Bytes(t, BytesKind::ByteArray) => {
                let n = i64::try_from(t.len).unwrap_or(i64::MAX);
                for kv in items.chunks_exact(2) {
                    let (k, v) = match kv {
                        [k, v] => (*k, *v),
                        _ => (NIL, NIL),
                    };
                    if self.int_in(k, -n, n).is_none() || self.int_in(v, 0, 256).is_none() {
                        return Err(self.bad("bytearray item assignment needs an index and a byte value"));
                    }
                }
            }
            Value::Global(_) | Value::Call(_) => {
                self.check_mutation(target, b's', |m| {
                    let k = items.first().map(|&i| m.render(i)).unwrap_or_default();
                    let v = items.get(1).map(|&i| m.render(i)).unwrap_or_default();
                    format!("{}[{k}] = {v}", m.render(target))
                });
            }
            v => return Err(self.bad(format!("'{}' object does not support item assignment", v.type_name()))),
        }
        self.give_back(items);
        Ok(())
    }

    fn additems(&mut self) -> R<()> {
        let mark = self.marker()?;
        let len = self.stack.len();
        if mark > len || mark <= self.fence {
            return Err(self.underflow());
        }
        if len == mark {
            return Ok(());
        }
        let target = self.stack.get(mark - 1).copied().unwrap_or(NIL);
        let items = self.take_stack(mark);
        match self.a.get(target) {
            Value::Set(mut c) => {
                self.check_keys_hashable(items.iter())?;
                self.a.extend(&mut c, &items);
                self.a.set(target, Value::Set(c));
            }
            Value::Global(_) | Value::Call(_) => {
                self.check_mutation(target, b'+', |m| {
                    let v = items.first().map(|&i| m.render(i)).unwrap_or_default();
                    format!("{}.add({v})", m.render(target))
                });
            }
            v => return Err(self.bad(format!("'{}' object has no attribute 'add'", v.type_name()))),
        }
        self.give_back(items);
        Ok(())
    }

    fn stack_global(&mut self) -> R<()> {
        let name = self.pop()?;
        let module = self.pop()?;
        match (self.a.get(module), self.a.get(name)) {
            (Value::Str(m), Value::Str(n)) if m.full && n.full => {
                let ms = String::from_utf8_lossy(self.a.text(&m)).into_owned();
                let ns = String::from_utf8_lossy(self.a.text(&n)).into_owned();
                let g = self.import(ms, ns, "STACK_GLOBAL")?;
                self.push_new(Value::Global(g))?;
                Ok(())
            }
            (mv, nv) => {
                let ev = format!("STACK_GLOBAL({}, {})", self.render(module), self.render(name));
                let msg = if mv.opaque() || nv.opaque() {
                    "STACK_GLOBAL takes its module or name from a load-time object, so the imported global cannot be known"
                } else if matches!((mv, nv), (Value::Str(_), Value::Str(_))) {
                    "STACK_GLOBAL takes a module or name too large to scan"
                } else {
                    "STACK_GLOBAL operands are not str constants (a type-confusion trick; a default loader rejects it)"
                };
                Err(self.dynamic("pickle-dynamic-global", msg, ev))
            }
        }
    }

    fn persid(&mut self, pid: Id) -> R<()> {
        self.call(CallKind::PersId, NIL, pid, NIL)
    }

    /// Push the result of a call and do the bookkeeping every call needs.
    fn call(&mut self, kind: CallKind, func: Id, args: Id, kwargs: Id) -> R<()> {
        if kind != CallKind::PersId {
            self.called = true;
        }
        let id = self.push_new(Value::Call(Call { kind, func, args, kwargs, state: NIL }))?;
        self.attach_evidence(&[func, args, kwargs], id, |m| m.render(id));
        if matches!(self.a.get(func), Value::Call(_)) {
            // calling what a call returned: the whole chain is the evidence of its imports
            let mut chain = Vec::new();
            self.collect_imports(func, 3, &mut chain);
            if !chain.is_empty() {
                let text = self.render(id);
                for n in chain {
                    if let Some(imp) = self.imports.get_mut(n as usize) {
                        if imp.evidence.is_none() {
                            self.bare = self.bare.saturating_sub(1);
                        }
                        imp.evidence = Some(text.clone());
                    }
                }
            }
        }
        if matches!(kind, CallKind::Reduce | CallKind::Obj | CallKind::Inst) {
            self.special_call(id, func, args);
        }
        Ok(())
    }

    fn build(&mut self, inp: &mut Input) -> R<()> {
        if self.stack.len() < self.fence + 2 {
            return Err(self.underflow());
        }
        let state = self.pop()?;
        let inst = self.top()?;
        match self.a.get(inst) {
            Value::Global(_) => {
                self.check_mutation(inst, b'b', |m| format!("{}.__setstate__({})", m.render(inst), m.render(state)));
                self.attach_evidence(&[inst, state], NIL, |m| {
                    format!("{}.__setstate__({})", m.render(inst), m.render(state))
                });
            }
            Value::Call(mut c) => {
                self.called = true;
                c.state = state;
                self.a.set(inst, Value::Call(c));
                let setstate = |m: &Self| format!("{}.__setstate__({})", m.render(inst), m.render(state));
                // the instance's class gets the fuller story: constructed, then given this state
                if let Value::Global(n) = self.a.get(c.func) {
                    if self.ev_src.get(n as usize) == Some(&inst) {
                        let text = setstate(self);
                        if let Some(imp) = self.imports.get_mut(n as usize) {
                            imp.evidence = Some(text);
                        }
                    }
                }
                self.attach_evidence(&[NIL, state], NIL, setstate);
                if super::joblib::is_wrapper(self, inst) {
                    self.joblib_array(inp, inst, state)?;
                }
                if let Some(Err(why)) = super::joblib::compat_wrapper_file(self, inst, state) {
                    let f = Finding::new(
                        "pickle-joblib-sibling",
                        Severity::Dangerous,
                        format!(
                            "an old joblib array wrapper makes joblib.load read another file: {why} (np.load with allow_pickle=True)"
                        ),
                    )
                    .at(self.op_at)
                    .evidence(setstate(self));
                    self.finding(f);
                }
            }
            _ => {
                if !self.default_setstate_ok(state) {
                    return Err(
                        self.bad(format!("cannot set the state of a '{}' object", self.a.get(inst).type_name()))
                    );
                }
            }
        }
        Ok(())
    }

    /// The default `__setstate__` on a built-in value: only `None` (or `(None, {})`) works.
    fn default_setstate_ok(&self, state: Id) -> bool {
        let (st, slot) = match self.a.get(state) {
            Value::Tuple(c, _) if c.count == 2 => {
                let it = self.a.items(&c);
                (it.first().copied().unwrap_or(NIL), it.get(1).copied())
            }
            _ => (state, None),
        };
        if !matches!(self.a.get(st), Value::None) || st == NIL {
            return false;
        }
        match slot {
            None => true,
            Some(s) => matches!(self.a.get(s), Value::Dict(c) if c.count == 0),
        }
    }

    /// joblib's NumpyUnpickler reads the array right after the BUILD of its wrapper.
    fn joblib_array(&mut self, inp: &mut Input, wrapper: Id, state: Id) -> R<()> {
        self.joblib = true;
        let layout = super::joblib::layout(self, state).map_err(|msg| Halt::Layout { at: self.op_at, msg })?;
        if let Some(msg) = &layout.uncertain {
            // fail closed, and read the data as the pickle it may be
            self.findings.push(Finding::new("pickle-joblib-layout", Severity::Error, msg.clone()).at(self.op_at));
        }
        if inp.pos() < self.buf_end {
            return Err(Halt::Layout {
                at: self.op_at,
                msg: "a joblib array wrapper inside a pickle frame: the array position cannot be followed".into(),
            });
        }
        if layout.aligned && !layout.object {
            let pad = self.read_u8(inp)?;
            let got = inp.skip(u64::from(pad)).map_err(|e| self.io(e))?;
            if got < u64::from(pad) {
                return Err(self.truncated());
            }
        }
        if layout.object {
            if self.depth + 1 > NESTED_DEPTH_MAX {
                return Err(Halt::Layout {
                    at: self.op_at,
                    msg: format!("joblib object arrays nested more than {NESTED_DEPTH_MAX} levels deep"),
                });
            }
            // the array is a whole pickle of its own, loaded with the standard unpickler
            let mut sink = Sink::default();
            let info = super::run_stream(
                self.opts,
                self.depth + 1,
                self.suffix.clone(),
                inp,
                Mode::Confident,
                true,
                &mut sink,
            );
            self.engaged |= !sink.imports.is_empty();
            self.bare += sink.imports.iter().filter(|i| i.evidence.is_none()).count();
            self.imports.extend(sink.imports);
            self.ev_src.resize(self.imports.len(), NIL);
            self.findings.extend(sink.findings);
            if info.halted {
                return Err(Halt::Layout {
                    at: inp.pos(),
                    msg: "the object array pickle of a joblib dump did not load".into(),
                });
            }
        } else {
            let got = inp.skip(layout.bytes).map_err(|e| self.io(e))?;
            if got < layout.bytes {
                return Err(
                    self.bad(format!("joblib array data truncated: {} bytes declared, {got} present", layout.bytes))
                );
            }
        }
        self.stack.pop();
        self.push_new(Value::Call(Call {
            kind: CallKind::JoblibArray,
            func: wrapper,
            args: NIL,
            kwargs: NIL,
            state: NIL,
        }))?;
        Ok(())
    }

    // ----- nested pickles -----

    /// Calls whose arguments are pickles (trampolines) or decode to bytes that may be one.
    fn special_call(&mut self, call: Id, func: Id, args: Id) {
        let Some((module, name)) = self.global_path(func) else { return };
        let kind = super::trampoline_kind(module, name);
        let decoder = super::is_decoder(module, name);
        let arg0 = self.a.tuple_items(args).and_then(|it| it.first().copied());
        match kind {
            Some(file_like) => {
                let Some(arg) = arg0 else { return };
                let target = if file_like { self.unwrap_file(arg) } else { Some(arg) };
                if let Some(t) = target {
                    self.trampoline(t);
                }
            }
            None => {
                if decoder {
                    if let Some(bytes) = self.const_bytes(call, 0) {
                        if let Some(enc) = nested::sniff(&bytes) {
                            let max = self.opts.max_nested_pickle_bytes as usize;
                            if let Some(data) = nested::decode(enc, &bytes, max) {
                                let idx = self.scan_nested(&data, enc, self.op_at, false, false);
                                if idx != NIL {
                                    self.derived_nested.insert(call, idx);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// `io.BytesIO(b)` -> `b`; a str path is not followed (the loader reads a file).
    fn unwrap_file(&self, id: Id) -> Option<Id> {
        match self.a.get(id) {
            Value::Call(c) if c.kind == CallKind::Reduce => {
                let (m, n) = self.global_path(c.func)?;
                if (m == "io" || m == "_io") && n == "BytesIO" {
                    self.a.tuple_items(c.args).and_then(|it| it.first().copied())
                } else {
                    Some(id)
                }
            }
            Value::Str(_) => None,
            _ => Some(id),
        }
    }

    fn nested_of(&self, id: Id) -> Option<u32> {
        let idx = match self.a.get(id) {
            Value::Str(t) | Value::Bytes(t, _) => t.nested,
            _ => self.derived_nested.get(&id).copied().unwrap_or(NIL),
        };
        (idx != NIL).then_some(idx)
    }

    fn trampoline(&mut self, arg: Id) {
        if let Some(idx) = self.nested_of(arg) {
            if let Some(n) = self.nested.get_mut(idx as usize) {
                n.trampoline = true;
            }
            return;
        }
        match self.const_bytes(arg, 0) {
            Some(bytes) => {
                let max = self.opts.max_nested_pickle_bytes as usize;
                let truncated = bytes.len() > max;
                let data = bytes.get(..max.min(bytes.len())).unwrap_or(&[]).to_vec();
                let idx = self.scan_nested(&data, Encoding::Raw, self.op_at, true, truncated);
                if idx != NIL {
                    self.derived_nested.insert(arg, idx);
                }
            }
            None => {
                let incomplete = matches!(self.a.get(arg), Value::Str(t) | Value::Bytes(t, _) if !t.full);
                let ev = self.render(arg);
                let f = if incomplete {
                    Finding::new(
                        "pickle-budget-exceeded",
                        Severity::Error,
                        "a pickle passed to a loader is larger than the nested-pickle budget and was not scanned",
                    )
                } else {
                    Finding::new(
                        "pickle-nested-dynamic",
                        Severity::Dangerous,
                        "a loader unpickles a value computed at load time, which cannot be scanned",
                    )
                };
                let f = f.at(self.op_at).evidence(ev);
                self.finding(f);
            }
        }
    }

    /// The bytes a value holds or a known decoding call produces (base64, hex, latin-1, zlib).
    fn const_bytes(&self, id: Id, depth: u32) -> Option<Vec<u8>> {
        if depth > 4 {
            return None;
        }
        let max = self.opts.max_nested_pickle_bytes as usize;
        match self.a.get(id) {
            Value::Bytes(t, _) if t.full => Some(self.a.text(&t).to_vec()),
            Value::Str(t) if t.full => {
                let s = String::from_utf8_lossy(self.a.text(&t)).into_owned();
                if s.chars().all(|c| (c as u32) < 256) {
                    Some(s.chars().map(|c| c as u8).collect())
                } else {
                    Some(s.into_bytes())
                }
            }
            Value::Call(c) if c.kind == CallKind::Reduce => {
                let (m, n) = self.global_path(c.func)?;
                let items = self.a.tuple_items(c.args)?;
                let x = items.first().copied()?;
                let arg2 = items.get(1).and_then(|&i| self.a.as_str(i)).map(|s| s.to_ascii_lowercase());
                match (m, n) {
                    ("_codecs" | "codecs", "encode") => {
                        let s = self.a.as_str(x)?;
                        match arg2.as_deref() {
                            Some("latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" | "l1") => {
                                s.chars().map(|c| u8::try_from(c as u32).ok()).collect()
                            }
                            Some("utf-8" | "utf8") | None => Some(s.into_bytes()),
                            _ => None,
                        }
                    }
                    ("_codecs" | "codecs", "decode") => {
                        let b = self.const_bytes(x, depth + 1)?;
                        match arg2.as_deref() {
                            Some("base64" | "base_64" | "base64_codec") => nested::decode_base64(&b, max),
                            Some("hex" | "hex_codec") => nested::decode_hex(&b, max),
                            Some("zlib" | "zip" | "zlib_codec") => inflate(&b, max, false),
                            _ => None,
                        }
                    }
                    (
                        "base64",
                        "b64decode" | "standard_b64decode" | "urlsafe_b64decode" | "decodebytes" | "decodestring",
                    )
                    | ("binascii", "a2b_base64") => nested::decode_base64(&self.const_bytes(x, depth + 1)?, max),
                    ("binascii", "unhexlify" | "a2b_hex") | ("builtins", "bytes.fromhex" | "bytearray.fromhex") => {
                        nested::decode_hex(&self.const_bytes(x, depth + 1)?, max)
                    }
                    ("zlib", "decompress") => inflate(&self.const_bytes(x, depth + 1)?, max, false),
                    ("gzip", "decompress") => inflate(&self.const_bytes(x, depth + 1)?, max, true),
                    ("io" | "_io", "BytesIO") | ("builtins", "bytes" | "bytearray") => self.const_bytes(x, depth + 1),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Scan `data` as a pickle found at `offset`; returns the index of the result, or NIL.
    fn scan_nested(&mut self, data: &[u8], enc: Encoding, offset: u64, trampoline: bool, truncated: bool) -> u32 {
        self.nested_scans += 1;
        if self.nested_scans > NESTED_MAX {
            if self.nested_scans == NESTED_MAX + 1 {
                let f = Finding::new(
                    "pickle-budget-exceeded",
                    Severity::Error,
                    format!("more than {NESTED_MAX} constants hold pickles; the rest were not scanned"),
                )
                .at(offset);
                self.finding(f);
            }
            return NIL;
        }
        let data = if enc == Encoding::Raw {
            data.to_vec()
        } else {
            match nested::decode(enc, data, self.opts.max_nested_pickle_bytes as usize) {
                Some(d) => d,
                None => return NIL,
            }
        };
        if self.depth + 1 > NESTED_DEPTH_MAX {
            let f = Finding::new(
                "pickle-budget-exceeded",
                Severity::Error,
                format!("pickles nested more than {NESTED_DEPTH_MAX} levels deep were not scanned"),
            )
            .at(offset);
            self.finding(f);
            return NIL;
        }
        let suffix = match &self.suffix {
            Some(s) => format!("{s}!pickle@{offset}"),
            None => format!("pickle@{offset}"),
        };
        let preview: String =
            data.iter().take(24).map(|&b| if (0x20..0x7f).contains(&b) { char::from(b) } else { '.' }).collect();
        let mut sink = Sink::default();
        let data_len = data.len() as u64;
        let mut input = Data::bytes(data).into_input();
        let info =
            super::run_stream(self.opts, self.depth + 1, Some(suffix), &mut input, Mode::Probe, false, &mut sink);
        // array data that happens to start like `\x80\x02N.` is a pickle by chance; a hidden
        // pickle fills its whole constant
        let is_pickle =
            info.outcome.is_pickle && (trampoline || !sink.imports.is_empty() || info.first_len == data_len);
        self.nested.push(Nested {
            offset,
            encoding: enc,
            sink,
            is_pickle,
            failure: info.failure,
            trampoline,
            truncated,
            preview,
        });
        (self.nested.len() - 1) as u32
    }

    // ----- results -----

    /// After STOP: a file loader has already read the rest of the current frame, so the next
    /// pickle starts where the frame ends. Picklers end their last frame at STOP.
    pub fn end_stream(&mut self, inp: &mut Input) {
        let pos = inp.pos();
        if pos < self.buf_end {
            self.straddle();
            let _ = inp.skip(self.buf_end - pos);
            self.buf_end = 0;
        }
    }

    /// Move imports, findings and nested results into `sink`.
    pub fn finish(mut self, sink: &mut Sink) {
        let nested = std::mem::take(&mut self.nested);
        sink.imports.append(&mut self.imports);
        sink.findings.append(&mut self.findings);
        for n in nested {
            self.emit_nested(n, sink);
        }
    }

    fn emit_nested(&self, n: Nested, sink: &mut Sink) {
        let Nested { offset, encoding, sink: inner, is_pickle, failure, trampoline, truncated, preview } = n;
        let tag = |f: Finding| match &self.suffix {
            Some(s) => f.member(s.clone()),
            None => f,
        };
        if !trampoline && !is_pickle {
            return;
        }
        if truncated {
            sink.findings.push(tag(Finding::new(
                "pickle-budget-exceeded",
                Severity::Error,
                format!(
                    "a nested pickle is larger than {} bytes; only its beginning was scanned",
                    self.opts.max_nested_pickle_bytes
                ),
            )
            .at(offset)));
        }
        if trampoline {
            if let Some((at, msg)) = &failure {
                if !is_pickle {
                    let f = Finding::new(
                        "pickle-malformed",
                        Severity::Dangerous,
                        format!("a pickle passed to a loader is malformed: {msg} (at offset {at} of it)"),
                    )
                    .at(offset)
                    .evidence(preview.clone());
                    sink.findings.push(tag(f));
                }
            }
        } else {
            let lists = &self.opts.lists;
            let risky = inner.imports.iter().find(|i| !lists.is_allowlisted(i));
            let serious = inner.findings.iter().any(|f| f.severity >= Severity::Suspicious);
            let (sev, what, evidence) = match (risky, serious) {
                (Some(i), _) => (
                    Severity::Dangerous,
                    format!("it imports {}, which is not allowlisted", i.full_name()),
                    i.evidence.clone().unwrap_or_else(|| i.full_name()),
                ),
                (None, true) => (Severity::Dangerous, "its own findings are listed with it".to_string(), preview),
                (None, false) if inner.imports.is_empty() => {
                    (Severity::Suspicious, "it holds only data".to_string(), preview)
                }
                (None, false) => (Severity::Suspicious, "it imports only allowlisted names".to_string(), preview),
            };
            let f = Finding::new(
                "pickle-embedded",
                sev,
                format!(
                    "a {} pickle is hidden in a constant at offset {offset} (code that unpickles it would run it); {what}",
                    encoding.label()
                ),
            )
            .at(offset)
            .evidence(evidence);
            sink.findings.push(tag(f));
        }
        let Sink { imports, findings } = inner;
        sink.imports.extend(imports);
        sink.findings.extend(findings);
    }

    /// A small view of a value (for `scan_one`).
    pub fn simple(&self, id: Id, depth: u32) -> Simple {
        match self.a.get(id) {
            Value::Int(i) => Simple::Int(i),
            Value::Bool(b) => Simple::Int(i64::from(b)),
            Value::Str(t) if t.full => Simple::Str(String::from_utf8_lossy(self.a.text(&t)).into_owned()),
            Value::Global(n) => match self.imports.get(n as usize) {
                Some(i) => Simple::Global(i.module.clone(), i.name.clone()),
                None => Simple::Other,
            },
            Value::Tuple(c, _) if depth < 8 && u64::from(c.kept) == c.count => {
                Simple::Tuple(self.a.items(&c).iter().map(|&i| self.simple(i, depth + 1)).collect())
            }
            _ => Simple::Other,
        }
    }

    /// Report how the run stopped; `reportable` is false when the caller decided it is not a pickle.
    pub fn report_halt(&mut self, halt: &Halt, mode_confident_first: bool) {
        let f = match halt {
            Halt::Malformed { at, msg } => {
                let why = if self.engaged || !self.imports.is_empty() {
                    "the loader has already run everything before this point"
                } else if mode_confident_first {
                    "a malformed pickle is never safe"
                } else {
                    "the loader fails here"
                };
                Finding::new("pickle-malformed", Severity::Dangerous, format!("malformed pickle: {msg}; {why}"))
                    .at(*at)
                    .evidence(format!("{msg} at offset {at}"))
            }
            Halt::Dynamic { at, code, msg, evidence } => {
                Finding::new(code, Severity::Dangerous, msg.clone()).at(*at).evidence(evidence.clone())
            }
            Halt::Budget { at, msg } => Finding::new(
                "pickle-budget-exceeded",
                Severity::Error,
                format!("pickle scan budget exhausted: {msg}; the rest was not scanned"),
            )
            .at(*at),
            Halt::Layout { at, msg } => Finding::new("pickle-joblib-layout", Severity::Error, msg.clone()).at(*at),
            Halt::Io { at, msg } => {
                Finding::new("read-error", Severity::Error, format!("cannot read the pickle: {msg}")).at(*at)
            }
        };
        self.finding(f);
    }
}

/// A dotted path of Python identifiers (what an importable module or attribute path looks like).
fn plausible(path: &str) -> bool {
    !path.is_empty()
        && path.split('.').all(|c| {
            let mut chars = c.chars();
            chars.next().is_some_and(|f| f.is_alphabetic() || f == '_')
                && chars.all(|ch| ch.is_alphanumeric() || ch == '_')
        })
}

/// Inflate zlib or gzip data, at most `max` bytes of output.
fn inflate(data: &[u8], max: usize, gzip: bool) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let limit = max as u64 + 1;
    let res = if gzip {
        flate2::read::GzDecoder::new(data).take(limit).read_to_end(&mut out)
    } else {
        flate2::read::ZlibDecoder::new(data).take(limit).read_to_end(&mut out)
    };
    res.ok()?;
    out.truncate(max);
    Some(out)
}

impl Halt {
    /// Budget, I/O and layout halts are reported even when nothing was imported yet.
    pub fn always_reported(&self) -> bool {
        matches!(self, Halt::Budget { .. } | Halt::Io { .. } | Halt::Layout { .. })
    }

    pub fn describe(&self) -> (u64, String) {
        match self {
            Halt::Malformed { at, msg }
            | Halt::Dynamic { at, msg, .. }
            | Halt::Budget { at, msg }
            | Halt::Layout { at, msg }
            | Halt::Io { at, msg } => (*at, msg.clone()),
        }
    }
}
