//! A symbolic CPython 3.11 unpickler: every opcode of protocols 0-5 with the stack, mark
//! and memo rules and the errors of the C `_pickle.c` Unpickler, of the pure-Python
//! `pickle._Unpickler` (Lib/pickle.py), or of either ([`Loader`]), executing nothing.
//!
//! Where the two differ (each listed at its opcode, from reading both sources): `INT`,
//! `LONG`, `FLOAT` and memo keys (C `strtol`/`PyOS_string_to_double` on a C string against
//! `int()`/`float()` on the bytes); a protocol-0 line at the end of the data without its
//! newline (C fails, Python drops its last byte); empty `GLOBAL`/`INST` lines and `INST`
//! without a MARK (Python calls `find_class` first); `BINSTRING` lengths (signed in Python);
//! `FRAME`s (Python: shorter than declared is fine, a read across a frame's end or a new frame
//! before the end of the current one is an error; C: the frame must be there, a read across
//! its end drops the rest of the frame when reading a file); `REDUCE`/`NEWOBJ` arguments
//! (Python: any iterable); `APPENDS`/`ADDITEMS` with no items on objects without
//! `extend`/`append`/`add` (C: nothing to do, Python: error); `SETITEMS` with an odd count
//! (Python sets the pairs before failing); `BUILD` on built-in values (Python: any falsy
//! state); memo keys beyond `Py_ssize_t` (Python's memo is a dict).
//!
//! Objects that only exist at load time (what `find_class`, a call or `persistent_load`
//! returns) are opaque. They behave like a permissive stand-in class: callable, a type for
//! NEWOBJ, with `__setstate__`, `extend`, `add` and item assignment; but never a tuple,
//! dict or str where CPython type-checks for one. Where CPython's outcome would depend on
//! what such an object really is, the run stops with a `Dynamic` halt and a finding.

use super::nested::{self, Encoding};
use super::text::{self, Num, PyKey};
use super::value::{self, Arena, BytesKind, Call, CallKind, Id, Text, Value, KEEP, NIL};
use super::{Env, Loader, LookupKind, Mode, Simple, Sink};
use crate::engine::{Import, ScanOptions};
use crate::finding::{Finding, Severity};
use crate::source::{Data, Input};
use std::collections::{HashMap, HashSet};
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
const TINY: u64 = 256;
/// Values (and container slots) allocated before the first garbage collection.
const GC_MIN: usize = 1 << 20;
/// Constant bytes allocated before the first garbage collection.
const GC_MIN_HEAP: usize = 16 << 20;
/// Nodes visited when collecting the imports a call uses (evidence is best effort).
const EVIDENCE_NODES: usize = 256;
/// Nodes of the small view [`Machine::simple`] builds.
const SIMPLE_NODES: usize = 4096;
/// How deep pickles nested in constants are followed.
const NESTED_DEPTH_MAX: u32 = 6;
/// Stream bytes a FRAME may declare before availability is checked by position only.
const FRAME_PEEK_MAX: u64 = 16 << 20;
/// Import records kept per pickle; past this a repeated name is not recorded again.
const IMPORT_RECORDS_MAX: usize = 1 << 16;
/// Distinct imported names per pickle.
const IMPORT_NAMES_MAX: usize = 1 << 18;
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
    env: Env<'o>,
    loader: Loader,
    depth: u32,
    suffix: Option<String>,
    pub a: Arena,
    stack: Vec<Id>,
    marks: Vec<usize>,
    fence: usize,
    memo: Vec<Id>,
    memo_big: HashMap<u64, Id>,
    /// Keys beyond `u64` (the pure-Python unpickler's memo is a dict), by decimal digits.
    memo_huge: HashMap<Vec<u8>, Id>,
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
    /// Opcodes run; `flushed` of them are charged to the file's budget, which allows up to `op_limit`.
    opcodes: u64,
    flushed: u64,
    op_limit: u64,
    op_at: u64,
    /// End of the current frame: CPython's read buffer (C) or `_Unframer.current_frame` (Python).
    buf_end: u64,
    straddled: bool,
    /// A `pickle-loader-divergence` finding was made.
    diverged: bool,
    heap_budget: u64,
    /// Constant bytes after the last garbage collection.
    heap_live: usize,
    /// Sizes at which the arena is collected next.
    gc_vals: usize,
    gc_items: usize,
    gc_heap: usize,
    /// Decoder and loader calls already followed: (recipe, constant) -> nested index or NIL.
    decoded: HashMap<(String, Id), u32>,
    /// `functools.partial` imports (index) and how their uses were resolved.
    binders: HashMap<u32, Binder>,
    /// Attribute-lookup imports (`getattr`, `attrgetter`) and how their uses were resolved.
    lookups: HashMap<u32, Lookup>,
    /// Imports a constant lookup made, with the lookup as written (`builtins.getattr(X, 'a')`).
    lookup_texts: Vec<(u32, String)>,
    /// The file's nested-pickle budget ran out here (set where only `&self` is at hand).
    spent: std::cell::Cell<bool>,
    spent_reported: bool,
    mutated: Vec<(u32, u8)>,
    /// Imports without evidence yet (skip evidence work when zero).
    bare: usize,
    /// Reused buffer for elements popped off the stack.
    scratch: Vec<Id>,
    /// (module, name) as written -> first import record, once records are many.
    names: HashMap<(String, String), u32>,
}

/// The uses of one `functools.partial` import: every stack entry holding it must be the
/// callable of a construction whose wrapped callable is known, or it is judged as a name.
#[derive(Debug, Default, Clone, Copy)]
struct Binder {
    /// Stack entries that held the class.
    pushes: u32,
    /// Constructions with a known wrapped callable.
    resolved: u32,
    /// A construction or `__setstate__` the emulation could not resolve.
    unresolved: bool,
}

/// The uses of one attribute-lookup import (`builtins.getattr`, `operator.attrgetter`): every
/// stack entry holding it (and, for `attrgetter`, every getter it made) must be a lookup with
/// a constant object and a constant name, whose result is then judged as that global is;
/// otherwise the import is judged as a name (dangerous).
#[derive(Debug, Clone, Copy)]
struct Lookup {
    kind: LookupKind,
    /// Stack entries that held the import, and calls of it that were resolved.
    pushes: u32,
    resolved: u32,
    /// `attrgetter(path)` results: stack entries that held one, and calls of them resolved.
    getter_pushes: u32,
    getter_resolved: u32,
    /// A use the emulation could not resolve.
    unresolved: bool,
}

impl Lookup {
    fn new(kind: LookupKind) -> Lookup {
        Lookup { kind, pushes: 0, resolved: 0, getter_pushes: 0, getter_resolved: 0, unresolved: false }
    }

    fn settled(&self) -> bool {
        !self.unresolved && self.pushes <= self.resolved && self.getter_pushes <= self.getter_resolved
    }
}

type R<T> = Result<T, Halt>;

impl<'o> Machine<'o> {
    pub fn new(env: Env<'o>, depth: u32, suffix: Option<String>) -> Machine<'o> {
        let opts = env.opts;
        Machine {
            opts,
            env,
            loader: env.loader,
            depth,
            suffix,
            a: Arena::default(),
            stack: Vec::new(),
            marks: Vec::new(),
            fence: 0,
            memo: Vec::new(),
            memo_big: HashMap::new(),
            memo_huge: HashMap::new(),
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
            flushed: 0,
            op_limit: 0,
            op_at: 0,
            buf_end: 0,
            straddled: false,
            diverged: false,
            heap_budget: opts.max_nested_pickle_bytes.max(1 << 20).saturating_mul(2).min(u64::from(u32::MAX / 2)),
            heap_live: 0,
            gc_vals: GC_MIN,
            gc_items: GC_MIN,
            gc_heap: GC_MIN_HEAP,
            decoded: HashMap::new(),
            binders: HashMap::new(),
            lookups: HashMap::new(),
            lookup_texts: Vec::new(),
            spent: std::cell::Cell::new(false),
            spent_reported: false,
            mutated: Vec::new(),
            bare: 0,
            scratch: Vec::new(),
            names: HashMap::new(),
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

    /// Does the emulated loader read on, given what the C unpickler (`c_ok`) and the
    /// pure-Python one (`py_ok`) do here? With [`Loader::Any`] the one that reads on is
    /// followed, and a stream only one of them accepts is reported once.
    fn accepts(&mut self, c_ok: bool, py_ok: bool, what: &str) -> bool {
        match self.loader {
            Loader::C => c_ok,
            Loader::Python => py_ok,
            Loader::Any => {
                if c_ok != py_ok {
                    self.divergence(c_ok, what);
                }
                c_ok || py_ok
            }
        }
    }

    /// The value the emulated loader computes where both may (`c`, `py`).
    fn pick<T>(&self, c: Option<T>, py: Option<T>) -> Option<T> {
        match self.loader {
            Loader::C => c,
            Loader::Python => py,
            Loader::Any => c.or(py),
        }
    }

    fn divergence(&mut self, c_ok: bool, what: &str) {
        if self.diverged {
            return;
        }
        self.diverged = true;
        let (reads, fails) = if c_ok {
            ("C unpickler (pickle.load, torch.load, numpy.load) reads on", "pure-Python one (joblib.load, dill) fails")
        } else {
            ("pure-Python unpickler (joblib.load, dill) reads on", "C one (pickle.load, torch.load, numpy.load) fails")
        };
        let f = Finding::new(
            "pickle-loader-divergence",
            Severity::Dangerous,
            format!("{what}: CPython's {reads} where its {fails}; picklers never write such streams"),
        )
        .at(self.op_at)
        .evidence(format!("{what} at offset {}", self.op_at));
        self.finding(f);
    }

    // ----- reading -----

    /// CPython reads a framed pickle from a file through a buffer holding the frame; a read
    /// that needs more than the buffer has drops the buffer's rest and continues after it
    /// (`_Unpickler_ReadImpl`); `pickle._Unframer.read` fails there ("pickle exhausted before
    /// end of frame"). Picklers never write such streams, and loaders disagree on them:
    /// report and follow what the C `pickle.load` on a file does.
    fn pre_read(&mut self, inp: &mut Input, n: u64) -> R<()> {
        let pos = inp.pos();
        if pos < self.buf_end && pos.saturating_add(n) > self.buf_end {
            if self.loader == Loader::Python {
                return Err(self.bad("pickle exhausted before end of frame"));
            }
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

    /// A protocol-0 argument line without its newline; `.1` is false when the data ended
    /// before a newline. The C unpickler fails there ("pickle data was truncated"); a
    /// Python file's `readline` returns what is left (outside a frame).
    fn line_raw(&mut self, inp: &mut Input, max: usize) -> R<(Vec<u8>, bool)> {
        let pos = inp.pos();
        let mut line = Vec::new();
        let mut newline = false;
        loop {
            let avail = inp.fill_buf().map_err(|e| self.io(e))?;
            if avail.is_empty() {
                break;
            }
            let (take, found) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (avail.len(), false),
            };
            if line.len() + take > max {
                return Err(Halt::Budget {
                    at: self.op_at,
                    msg: format!("a protocol-0 line is longer than {max} bytes"),
                });
            }
            line.extend_from_slice(avail.get(..take).unwrap_or(&[]));
            inp.consume(take + usize::from(found));
            if found {
                newline = true;
                break;
            }
        }
        if pos < self.buf_end && inp.pos() > self.buf_end {
            if self.loader == Loader::Python {
                return Err(self.bad("pickle exhausted before end of frame"));
            }
            // no newline in the frame's rest: CPython drops it and reads the line after the frame
            self.straddle();
            let cut = (self.buf_end - pos) as usize;
            self.buf_end = 0;
            line = line.get(cut..).unwrap_or(&[]).to_vec();
        }
        if !newline {
            // in a frame, `_Unframer.readline` fails too; a frame shorter than declared that
            // is used up falls back to the file's `readline`
            let in_frame = pos < self.buf_end && !line.is_empty();
            if !self.accepts(false, !in_frame, "a protocol-0 line runs to the end of the data without a newline") {
                return Err(if in_frame && self.loader == Loader::Python {
                    self.bad("pickle exhausted before end of frame")
                } else {
                    self.truncated()
                });
            }
        }
        Ok((line, newline))
    }

    /// A line as `readline()[:-1]` gives it: without its newline, or without its last byte
    /// when the data ended first (Python; C fails in `line_raw`).
    fn read_line(&mut self, inp: &mut Input, max: usize) -> R<Vec<u8>> {
        let (mut line, newline) = self.line_raw(inp, max)?;
        if !newline {
            line.pop();
        }
        Ok(line)
    }

    /// A line that the C unpickler requires to be non-empty (`len < 2` counts the newline);
    /// the pure-Python one passes an empty name on to `find_class`.
    fn read_arg_line(&mut self, inp: &mut Input, max: usize) -> R<Vec<u8>> {
        let l = self.read_line(inp, max)?;
        if l.is_empty() && self.loader == Loader::C {
            return Err(self.truncated());
        }
        Ok(l)
    }

    // ----- values and stack -----

    /// What the stack, marks and memo hold (the memo's hashed entries weigh more).
    fn roots_held(&self) -> u64 {
        self.stack.len() as u64
            + 2 * self.marks.len() as u64
            + self.memo_len
            + 8 * self.memo_big.len() as u64
            + 16 * self.memo_huge.len() as u64
    }

    /// At each opcode: what is held at once stays within the budget; the arena is collected
    /// when it has grown since the last collection.
    fn maybe_gc(&mut self) -> R<()> {
        let max = self.opts.max_pickle_values as u64;
        if self.roots_held() > max {
            return Err(self.held_budget());
        }
        if self.a.vals.len() < self.gc_vals && self.a.items.len() < self.gc_items && self.a.heap.len() < self.gc_heap {
            return Ok(());
        }
        self.gc();
        let live = self.a.vals.len() as u64;
        if live > max || self.a.items.len() as u64 > max.saturating_mul(2) {
            return Err(self.held_budget());
        }
        if self.a.heap.len() as u64 > self.heap_budget.saturating_add(self.heap_budget / 2) {
            return Err(Halt::Budget {
                at: self.op_at,
                msg: format!("more than {} bytes of string constants are held at once", self.heap_budget),
            });
        }
        Ok(())
    }

    fn held_budget(&self) -> Halt {
        Halt::Budget {
            at: self.op_at,
            msg: format!("more than {} values are held at once", self.opts.max_pickle_values),
        }
    }

    /// Collect everything no longer reachable from the stack, the memo and the bookkeeping.
    /// Only between opcodes (or before an opcode has taken any value off the stack).
    fn gc(&mut self) {
        let roots = self
            .stack
            .iter()
            .chain(self.memo.iter())
            .chain(self.memo_big.values())
            .chain(self.memo_huge.values())
            .chain(self.ev_src.iter())
            .chain(self.derived_nested.keys())
            .chain(self.decoded.keys().map(|(_, leaf)| leaf))
            .copied()
            .filter(|&i| i != NIL);
        let map = self.a.collect(roots);
        let m = |id: Id| if value::is_immediate(id) { id } else { map.get(id as usize).copied().unwrap_or(NIL) };
        for x in self.stack.iter_mut().chain(self.memo.iter_mut()).chain(self.ev_src.iter_mut()) {
            *x = m(*x);
        }
        for x in self.memo_big.values_mut().chain(self.memo_huge.values_mut()) {
            *x = m(*x);
        }
        self.derived_nested = std::mem::take(&mut self.derived_nested)
            .into_iter()
            .map(|(k, v)| (m(k), v))
            .filter(|(k, _)| *k != NIL)
            .collect();
        self.decoded = std::mem::take(&mut self.decoded)
            .into_iter()
            .map(|((r, leaf), v)| ((r, m(leaf)), v))
            .filter(|((_, leaf), _)| *leaf != NIL)
            .collect();
        self.gc_vals = self.a.vals.len() + (self.a.vals.len() / 2).max(GC_MIN);
        self.gc_items = self.a.items.len() + (self.a.items.len() / 2).max(GC_MIN);
        self.gc_heap = self.a.heap.len() + (self.a.heap.len() / 2).max(GC_MIN_HEAP);
        self.heap_live = self.a.heap.len();
    }

    fn alloc(&mut self, v: Value) -> R<Id> {
        if let Some(id) = value::immediate(&v) {
            return Ok(id);
        }
        if self.a.vals.len() >= (u32::MAX / 2) as usize || self.a.items.len() >= (u32::MAX / 2) as usize {
            return Err(self.held_budget());
        }
        let id = self.a.vals.len() as Id;
        self.a.vals.push(v);
        Ok(id)
    }

    fn push(&mut self, id: Id) -> R<()> {
        self.note_push(id);
        self.stack.push(id);
        Ok(())
    }

    fn push_new(&mut self, v: Value) -> R<Id> {
        let id = self.alloc(v)?;
        self.push(id)?;
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

    fn memo_get(&self, key: &PyKey) -> Option<Id> {
        match key {
            PyKey::Small(idx) => match usize::try_from(*idx).ok().and_then(|i| self.memo.get(i)) {
                Some(&id) if id != NIL => Some(id),
                // set while the dense part was shorter
                _ => self.memo_big.get(idx).copied(),
            },
            PyKey::Huge(digits) => self.memo_huge.get(digits).copied(),
            PyKey::Negative => None,
        }
    }

    fn memo_put(&mut self, key: PyKey, id: Id) -> R<()> {
        let fresh = match key {
            PyKey::Negative => return Err(self.bad("negative PUT argument")),
            PyKey::Huge(digits) => {
                // `PyLong_AsSsize_t` overflows in C; Python's memo is a dict
                if !self.accepts(false, true, "a memo key beyond the C unpickler's range") {
                    return Err(self.bad("memo key too large (OverflowError)"));
                }
                self.memo_huge.insert(digits, id).is_none()
            }
            // dense while the indexes stay near the number of entries (MEMOIZE counts up)
            PyKey::Small(idx) if idx < (1u64 << 20).max(self.memo_len.saturating_mul(2)) => {
                let i = idx as usize;
                if self.memo.len() <= i {
                    self.memo.resize(i + 1, NIL);
                }
                let was_big = !self.memo_big.is_empty() && self.memo_big.remove(&idx).is_some();
                match self.memo.get_mut(i) {
                    Some(slot) => {
                        let fresh = *slot == NIL && !was_big;
                        *slot = id;
                        fresh
                    }
                    None => false,
                }
            }
            PyKey::Small(idx) => {
                // the C memo is an array of twice the index (MemoryError); Python's is a dict
                if idx >= 1 << 59
                    && !self.accepts(false, true, "a memo index too large for the C unpickler's memo array")
                {
                    return Err(self.bad("memo index too large (MemoryError)"));
                }
                self.memo_big.insert(idx, id).is_none()
            }
        };
        if fresh {
            self.memo_len += 1;
        }
        Ok(())
    }

    fn new_str(&mut self, bytes: &[u8]) -> Text {
        let at = self.a.heap.len() as u32;
        self.a.heap.extend_from_slice(bytes);
        Text::new(at, bytes.len() as u32, bytes.len() as u64, true)
    }

    /// Room for `n` more constant bytes within the heap budget, collecting garbage first when
    /// that can make the difference (callers hold no value ids of their own yet).
    fn heap_room(&mut self, n: u64) -> bool {
        let fits = |m: &Self| (m.a.heap.len() as u64).saturating_add(n) <= m.heap_budget;
        if !fits(self) && self.a.heap.len() > self.heap_live {
            self.gc();
        }
        fits(self)
    }

    /// Remember the nested-pickle result found in the constant `id`.
    fn set_nested(&mut self, id: Id, idx: u32) {
        if idx != NIL {
            self.derived_nested.insert(id, idx);
        }
    }

    /// Read a counted payload of `n` bytes: small or pickle-looking constants are held whole,
    /// others keep a prefix and the rest is skipped. A pickle inside is scanned right away
    /// (the index of its result is returned with the text).
    fn payload(&mut self, inp: &mut Input, n: u64, latin1: bool, readinto: bool) -> R<(Text, u32)> {
        // bytes payloads go through `_Unpickler_ReadInto` in C, which reads across the end
        // of the buffered frame without dropping anything; Python's `_Unframer` fails there
        let pos = inp.pos();
        if !readinto || self.loader == Loader::Python {
            self.pre_read(inp, n)?;
        } else if pos < self.buf_end && pos.saturating_add(n) > self.buf_end {
            self.accepts(true, false, "a bytes payload runs past the end of its frame");
        }
        let mut head = [0u8; nested::SNIFF_LEN];
        let head_len = {
            let h = inp.peek(n.min(nested::SNIFF_LEN as u64) as usize).map_err(|e| self.io(e))?;
            let k = h.len().min(head.len());
            head.get_mut(..k).unwrap_or(&mut []).copy_from_slice(h.get(..k).unwrap_or(&[]));
            k
        };
        let mut candidate = nested::sniff(head.get(..head_len).unwrap_or(&[]));
        let max_nested = self.opts.max_nested_pickle_bytes;
        if candidate.is_some() && !self.nested_gate(self.op_at, n.min(max_nested)) {
            candidate = None;
        }
        let room = self.heap_room(n);
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
            nested_idx = self.scan_nested(&data, enc, offset, false, truncated, Loader::Any);
        }
        if latin1 {
            let raw = self.a.heap.split_off(at);
            self.a.heap.extend_from_slice(&text::latin1_to_utf8(&raw));
        }
        let held = (self.a.heap.len() - at) as u32;
        Ok((Text::new(at as u32, held, n, full), nested_idx))
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
        let key = (module, name);
        if let Some(i) = self.shared_record(&key)? {
            return Ok(i);
        }
        let (module, name) = key;
        let (m, n) = if self.proto < 3 { super::compat_map(&module, &name) } else { (module.clone(), name.clone()) };
        let raw = if m != module || n != name { Some((module, name)) } else { None };
        if super::is_binder(&m, &n) {
            self.binders.entry(self.imports.len() as u32).or_default();
        }
        if let Some(k) = super::lookup_kind(&m, &n) {
            self.lookups.entry(self.imports.len() as u32).or_insert_with(|| Lookup::new(k));
        }
        self.push_record(m, n, raw, opcode)
    }

    /// Many imports: repeated names (`key` as written) share one record, so memory stays bounded.
    fn shared_record(&mut self, key: &(String, String)) -> R<Option<u32>> {
        if self.imports.len() < IMPORT_RECORDS_MAX {
            return Ok(None);
        }
        if self.names.is_empty() {
            for (i, imp) in self.imports.iter().enumerate() {
                let k = imp.raw.clone().unwrap_or_else(|| (imp.module.clone(), imp.name.clone()));
                self.names.entry(k).or_insert(i as u32);
            }
        }
        if let Some(&i) = self.names.get(key) {
            return Ok(Some(i));
        }
        if self.names.len() >= IMPORT_NAMES_MAX {
            return Err(Halt::Budget {
                at: self.op_at,
                msg: format!("more than {IMPORT_NAMES_MAX} distinct imported names"),
            });
        }
        self.names.insert(key.clone(), self.imports.len() as u32);
        Ok(None)
    }

    fn push_record(&mut self, m: String, n: String, raw: Option<(String, String)>, opcode: &'static str) -> R<u32> {
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

    /// Imports referenced by `id` (itself, or inside it up to `depth` levels) without evidence
    /// yet, visiting at most `nodes` values.
    fn collect_bare(&self, id: Id, depth: u32, out: &mut Vec<u32>, nodes: &mut usize) {
        if *nodes == 0 {
            return;
        }
        *nodes -= 1;
        match self.a.get(id) {
            Value::Global(n)
                if self.imports.get(n as usize).is_some_and(|i| i.evidence.is_none()) && !out.contains(&n) =>
            {
                out.push(n);
            }
            Value::Tuple(c, _) | Value::List(c) | Value::Dict(c) | Value::Set(c) | Value::FrozenSet(c) if depth > 0 => {
                for &i in self.a.items(&c) {
                    self.collect_bare(i, depth - 1, out, nodes);
                }
            }
            Value::Call(c) if depth > 0 => {
                self.collect_bare(c.func, depth - 1, out, nodes);
                self.collect_bare(c.args, depth - 1, out, nodes);
            }
            _ => {}
        }
    }

    /// Every import referenced by `id`, following calls and containers `depth` levels down,
    /// visiting at most `nodes` values.
    fn collect_imports(&self, id: Id, depth: u32, out: &mut Vec<u32>, nodes: &mut usize) {
        if *nodes == 0 {
            return;
        }
        *nodes -= 1;
        match self.a.get(id) {
            Value::Global(n) if !out.contains(&n) => out.push(n),
            Value::Tuple(c, _) | Value::List(c) | Value::Dict(c) | Value::Set(c) | Value::FrozenSet(c) if depth > 0 => {
                for &i in self.a.items(&c) {
                    self.collect_imports(i, depth - 1, out, nodes);
                }
            }
            Value::Call(c) if depth > 0 => {
                self.collect_imports(c.func, depth - 1, out, nodes);
                self.collect_imports(c.args, depth - 1, out, nodes);
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
        let mut nodes = EVIDENCE_NODES;
        for (i, &p) in parts.iter().enumerate() {
            if p != NIL {
                self.collect_bare(p, if i == 0 { 0 } else { 2 }, &mut bare, &mut nodes);
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
        self.sync_budget();
        let res = self.run_ops(inp);
        self.sync_budget();
        res
    }

    /// Charge the opcodes run so far to the file's budget; false when it is spent.
    fn sync_budget(&mut self) -> bool {
        let ok = self.env.budget.spend_opcodes(self.opcodes - self.flushed);
        self.flushed = self.opcodes;
        self.op_limit = self.opcodes.saturating_add(self.env.budget.opcodes_left());
        ok
    }

    fn run_ops(&mut self, inp: &mut Input) -> R<Id> {
        loop {
            self.op_at = inp.pos();
            self.opcodes += 1;
            if self.opcodes > self.op_limit && !self.sync_budget() {
                return Err(Halt::Budget {
                    at: self.op_at,
                    msg: format!("more than {} opcodes in this file", self.opts.max_pickle_opcodes),
                });
            }
            self.maybe_gc()?;
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
                // C: strtol, then PyLong_FromString (`load_int`); Python: int(data, 0)
                let (l, newline) = self.line_raw(inp, NAME_LINE_MAX)?;
                let c = if newline && !l.is_empty() { text::parse_int_line(&l) } else { None };
                let py = text::parse_int_line_py(&l, newline);
                if !self.accepts(c.is_some(), py.is_some(), "an INT line") {
                    return Err(self.bad("could not convert string to int"));
                }
                let v = self.pick(c, py).ok_or_else(|| self.bad("could not convert string to int"))?;
                self.push_num(v)?;
            }
            b'L' => {
                let (l, newline) = self.line_raw(inp, NAME_LINE_MAX)?;
                let c = if newline && !l.is_empty() { text::parse_long_line(&l) } else { None };
                let py = text::parse_long_line_py(line_py(&l, newline));
                if !self.accepts(c.is_some(), py.is_some(), "a LONG line") {
                    return Err(self.bad("invalid literal for int()"));
                }
                let v = self.pick(c, py).ok_or_else(|| self.bad("invalid literal for int()"))?;
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
                // C: PyOS_string_to_double (`load_float`); Python: float(data)
                let (l, newline) = self.line_raw(inp, NAME_LINE_MAX)?;
                let c = if newline && !l.is_empty() { text::parse_float_line(&l) } else { None };
                let py = text::parse_float_line_py(line_py(&l, newline));
                if !self.accepts(c.is_some(), py.is_some(), "a FLOAT line") {
                    return Err(self.bad("could not convert string to float"));
                }
                let v = self.pick(c, py).ok_or_else(|| self.bad("could not convert string to float"))?;
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
                // a signed length to `pickle._Unpickler.load_binstring`, unsigned to C
                let n = u32::from_le_bytes(self.read_array::<4>(inp)?);
                if n > i32::MAX as u32 && !self.accepts(true, false, "a BINSTRING length of 2**31 or more") {
                    return Err(self.bad("BINSTRING pickle has negative byte count"));
                }
                let (t, nested_idx) = self.payload(inp, u64::from(n), true, false)?;
                let id = self.push_new(Value::Str(t))?;
                self.set_nested(id, nested_idx);
            }
            b'U' => {
                let n = self.read_u8(inp)?;
                let (t, nested_idx) = self.payload(inp, u64::from(n), true, false)?;
                let id = self.push_new(Value::Str(t))?;
                self.set_nested(id, nested_idx);
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
                let key = self.memo_key_line(inp)?;
                self.get(&key)?;
            }
            b'h' => {
                let i = self.read_u8(inp)?;
                self.get(&PyKey::Small(u64::from(i)))?;
            }
            b'j' => {
                let i = u32::from_le_bytes(self.read_array::<4>(inp)?);
                self.get(&PyKey::Small(u64::from(i)))?;
            }
            b'p' => {
                // C checks the stack before parsing the key, Python after: both fail either way
                let key = self.memo_key_line(inp)?;
                let v = self.top()?;
                self.memo_put(key, v)?;
            }
            b'q' => {
                let i = self.read_u8(inp)?;
                let v = self.top()?;
                self.memo_put(PyKey::Small(u64::from(i)), v)?;
            }
            b'r' => {
                let i = u32::from_le_bytes(self.read_array::<4>(inp)?);
                let v = self.top()?;
                self.memo_put(PyKey::Small(u64::from(i)), v)?;
            }
            b'\x94' => {
                let v = self.top()?;
                self.memo_put(PyKey::Small(self.memo_len), v)?;
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
                // C takes the MARK first (`load_inst`); Python after `find_class` (`_instantiate(klass, self.pop_mark())`)
                let c_mark = if self.loader == Loader::C { Some(self.marker()?) } else { None };
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
                let mark = match c_mark {
                    Some(m) => m,
                    None => self.marker()?,
                };
                let gid = self.alloc(Value::Global(g))?;
                self.note_push(gid);
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
                self.require_args(args, "argument list must be a tuple")?;
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
                self.require_args(args, &format!("{what} args argument must be a tuple"))?;
                if ex {
                    match self.a.get(kwargs) {
                        Value::Dict(c) => {
                            // keys that are not str fail in a Python-level `__new__` ("keywords
                            // must be strings") but not in every C `tp_new`: it depends on the class
                            let keys = self.a.items(&c).iter().step_by(2).copied().collect::<Vec<_>>();
                            if keys.iter().any(|&k| !matches!(self.a.get(k), Value::Str(_))) {
                                let ev = self.render(kwargs);
                                return Err(self.dynamic(
                                    "pickle-dynamic-operand",
                                    "NEWOBJ_EX keyword arguments have keys that are not str: whether the call runs depends on the class",
                                    ev,
                                ));
                            }
                        }
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
                let pos = inp.pos();
                // `_Unframer.load_frame`: a new frame before the end of the current one fails,
                // and the frame is whatever `read(n)` returns (shorter at the end of the data)
                if self.loader == Loader::Python {
                    if pos < self.buf_end {
                        return Err(self.bad("beginning of a new frame before end of current frame"));
                    }
                    self.buf_end = pos.saturating_add(n);
                    return Ok(());
                }
                if pos < self.buf_end {
                    self.accepts(true, false, "a FRAME begins before the end of the current frame");
                }
                if pos.saturating_add(n) <= self.buf_end {
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
                if !available && !self.accepts(false, true, "a FRAME is longer than the data left") {
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

    /// A `GET`/`PUT` key line: C `PyLong_FromString(s, 10)` then `PyLong_AsSsize_t`;
    /// Python `int(line)` (any integer: its memo is a dict).
    fn memo_key_line(&mut self, inp: &mut Input) -> R<PyKey> {
        let (l, newline) = self.line_raw(inp, NAME_LINE_MAX)?;
        let c = if newline && !l.is_empty() {
            text::parse_memo_key(&l).map(|i| u64::try_from(i).map_or(PyKey::Negative, PyKey::Small))
        } else {
            None
        };
        let py = text::parse_memo_key_py(line_py(&l, newline));
        if !self.accepts(c.is_some(), py.is_some(), "a memo key line") {
            return Err(self.bad("invalid memo key"));
        }
        self.pick(c, py).ok_or_else(|| self.bad("invalid memo key"))
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
            if self.nested_gate(self.op_at, bytes.len() as u64) {
                nested_idx = self.scan_nested(bytes, enc, self.op_at, false, false, Loader::Any);
            }
        }
        let room = self.heap_room(bytes.len() as u64);
        let kept = if room || bytes.len() as u64 <= TINY { bytes } else { bytes.get(..TINY as usize).unwrap_or(bytes) };
        let t = if latin1 { self.new_str(&text::latin1_to_utf8(kept)) } else { self.new_str(kept) };
        let t = Text::new(t.at, t.held, bytes.len() as u64, kept.len() == bytes.len());
        let id = self.push_new(Value::Str(t))?;
        self.set_nested(id, nested_idx);
        Ok(())
    }

    fn unicode(&mut self, inp: &mut Input, n: u64) -> R<()> {
        let (t, nested_idx) = self.payload(inp, n, false, false)?;
        if t.full() && !text::valid_utf8_surrogatepass(self.a.text(&t)) {
            return Err(self.bad("invalid utf-8 in BINUNICODE"));
        }
        let id = self.push_new(Value::Str(t))?;
        self.set_nested(id, nested_idx);
        Ok(())
    }

    fn bytes(&mut self, inp: &mut Input, n: u64, kind: BytesKind) -> R<()> {
        let (t, nested_idx) = self.payload(inp, n, false, true)?;
        let id = self.push_new(Value::Bytes(t, kind))?;
        self.set_nested(id, nested_idx);
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

    /// The `*args` of REDUCE and NEWOBJ: C requires a tuple (`PyObject_CallObject`,
    /// `load_newobj`); Python's `func(*args)` takes any iterable.
    fn require_args(&mut self, id: Id, msg: &str) -> R<()> {
        match self.a.get(id) {
            Value::Tuple(..) => Ok(()),
            v if v.opaque() => {
                let ev = self.render(id);
                Err(self.dynamic("pickle-dynamic-operand", format!("{msg}: it comes from a load-time call"), ev))
            }
            v @ (Value::List(_)
            | Value::Dict(_)
            | Value::Set(_)
            | Value::FrozenSet(_)
            | Value::Str(_)
            | Value::Bytes(..)) => {
                let what = format!("call arguments that are a {}, not a tuple", v.type_name());
                if self.accepts(false, true, &what) {
                    Ok(())
                } else {
                    Err(self.bad(msg.to_string()))
                }
            }
            _ => Err(self.bad(msg.to_string())),
        }
    }

    fn get(&mut self, key: &PyKey) -> R<()> {
        match self.memo_get(key) {
            Some(id) => self.push(id),
            None => {
                let shown = match key {
                    PyKey::Small(i) => i.to_string(),
                    PyKey::Huge(d) => String::from_utf8_lossy(d).into_owned(),
                    PyKey::Negative => "a negative index".to_string(),
                };
                Err(self.bad(format!("memo value not found at index {shown}")))
            }
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
        let target = self.stack.get(x - 1).copied().unwrap_or(NIL);
        if len == x {
            // C: nothing to do; Python's `load_appends` looks up `extend`, then `append`, first
            let py_ok = matches!(
                self.a.get(target),
                Value::List(_) | Value::Bytes(_, BytesKind::ByteArray) | Value::Global(_) | Value::Call(_)
            );
            if !self.accepts(true, py_ok, "APPENDS with no items on a value without extend or append") {
                return Err(self.bad(format!("'{}' object has no attribute 'append'", self.a.get(target).type_name())));
            }
            return Ok(());
        }
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
                t.set_len(t.len() + items.len() as u64);
                t.set_full(false);
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
        let target = self.stack.get(x - 1).copied().unwrap_or(NIL);
        if (len - x) % 2 != 0 {
            // Python's `load_setitems` assigns the pairs before the last item, then fails
            if self.loader != Loader::C && len - x >= 3 && self.a.get(target).opaque() {
                let (k, v) = (self.stack.get(x).copied().unwrap_or(NIL), self.stack.get(x + 1).copied().unwrap_or(NIL));
                self.check_mutation(target, b's', |m| {
                    format!("{}[{}] = {}", m.render(target), m.render(k), m.render(v))
                });
            }
            return Err(self.bad("odd number of items for SETITEMS"));
        }
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
                let n = i64::try_from(t.len()).unwrap_or(i64::MAX);
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
        let target = self.stack.get(mark - 1).copied().unwrap_or(NIL);
        if len == mark {
            // C: nothing to do; Python's `load_additems` looks up `add` on anything but a set
            let py_ok = matches!(self.a.get(target), Value::Set(_) | Value::Global(_) | Value::Call(_));
            if !self.accepts(true, py_ok, "ADDITEMS with no items on a value without add") {
                return Err(self.bad(format!("'{}' object has no attribute 'add'", self.a.get(target).type_name())));
            }
            return Ok(());
        }
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
            (Value::Str(m), Value::Str(n)) if m.full() && n.full() => {
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
        if !self.lookups.is_empty() && self.lookup_call(kind, func, args, kwargs)? {
            return Ok(());
        }
        if let Some(n) = self.binder_of(func) {
            if kind != CallKind::PersId {
                // functools.partial(f, ...) / partial.__new__(partial, f, ...): judged by f
                let f = self.a.first_arg(args);
                let ok = f.is_some_and(|f| self.wraps_known(f));
                if let Some(b) = self.binders.get_mut(&n) {
                    if ok {
                        b.resolved += 1;
                    } else {
                        b.unresolved = true;
                    }
                }
            }
        }
        let id = self.push_new(Value::Call(Call { kind, func, args, kwargs, state: NIL }))?;
        self.attach_evidence(&[func, args, kwargs], id, |m| m.render(id));
        if matches!(self.a.get(func), Value::Call(_)) {
            // calling what a call returned: the whole chain is the evidence of its imports
            let mut chain = Vec::new();
            let mut nodes = EVIDENCE_NODES;
            self.collect_imports(func, 3, &mut chain, &mut nodes);
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
                if let Some(n) = self.binder_of(c.func) {
                    // `partial.__setstate__((func, args, kwds, dict))` replaces the wrapped callable
                    let parts = self.a.tuple_items(state).filter(|it| it.len() == 4).map(<[Id]>::to_vec);
                    let f = parts.as_ref().and_then(|it| it.first().copied());
                    match f {
                        Some(f) if self.wraps_known(f) => {
                            // the wrapped import's evidence: the partial as it will be called
                            if let (Value::Global(w), Some(p)) = (self.a.get(f), &parts) {
                                let text = self.render_partial(c.func, p);
                                if let Some(imp) = self.imports.get_mut(w as usize) {
                                    if imp.evidence.is_none() {
                                        self.bare = self.bare.saturating_sub(1);
                                    }
                                    imp.evidence = Some(text);
                                }
                            }
                        }
                        _ => {
                            if let Some(b) = self.binders.get_mut(&n) {
                                b.unresolved = true;
                            }
                        }
                    }
                }
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
                let c_ok = self.default_setstate_ok(state);
                let py_ok = self.py_setstate_ok(state);
                if !self.accepts(c_ok, py_ok, "BUILD sets the state of a built-in value") {
                    return Err(
                        self.bad(format!("cannot set the state of a '{}' object", self.a.get(inst).type_name()))
                    );
                }
            }
        }
        Ok(())
    }

    /// `pickle._Unpickler.load_build` on a value without `__setstate__` or `__dict__`: it
    /// does nothing when the state (and the slot state of a 2-tuple) is falsy, and fails
    /// otherwise. A load-time object's truth is unknown: a stand-in class is truthy; with
    /// [`Loader::Any`] the emulation reads on.
    fn py_setstate_ok(&self, state: Id) -> bool {
        let (st, slot) = match self.a.get(state) {
            Value::Tuple(c, _) if c.count == 2 => {
                let it = self.a.items(&c);
                (it.first().copied().unwrap_or(NIL), it.get(1).copied().unwrap_or(NIL))
            }
            _ => (state, NIL),
        };
        let falsy = |id: Id| match self.truthy(id) {
            Some(t) => !t,
            None => self.loader == Loader::Any,
        };
        falsy(st) && (slot == NIL || falsy(slot))
    }

    /// Python truth of a value, when it is known.
    fn truthy(&self, id: Id) -> Option<bool> {
        match self.a.get(id) {
            Value::None => Some(false),
            Value::Bool(b) => Some(b),
            Value::Int(i) => Some(i != 0),
            Value::BigInt { .. } => Some(true),
            Value::Float(f) => Some(f != 0.0),
            Value::Str(t) | Value::Bytes(t, _) => Some(t.len() != 0),
            Value::List(c) | Value::Tuple(c, _) | Value::Dict(c) | Value::Set(c) | Value::FrozenSet(c) => {
                Some(c.count != 0)
            }
            Value::Global(_) | Value::Call(_) => None,
        }
    }

    // ----- attribute lookups with constants -----

    /// A stack entry now holds `id`: count the uses of `functools.partial` and of the lookups.
    fn note_push(&mut self, id: Id) {
        if !self.binders.is_empty() {
            self.note_binder_push(id);
        }
        if self.lookups.is_empty() {
            return;
        }
        match self.a.get(id) {
            Value::Global(n) => {
                if let Some(l) = self.lookups.get_mut(&n) {
                    l.pushes = l.pushes.saturating_add(1);
                }
            }
            Value::Call(c) => {
                if let Value::Global(n) = self.a.get(c.func) {
                    if let Some(l) = self.lookups.get_mut(&n) {
                        if l.kind == LookupKind::Attrgetter {
                            l.getter_pushes = l.getter_pushes.saturating_add(1);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn lookup_unresolved(&mut self, n: u32) {
        if let Some(l) = self.lookups.get_mut(&n) {
            l.unresolved = true;
        }
    }

    /// A call of `builtins.getattr`, of `operator.attrgetter` or of a getter it made. With a
    /// constant object (a global) and a constant name, the result is the attribute, pushed as
    /// the global `object.name` (true: the call is done); anything else leaves the lookup
    /// unresolved, so its import is judged as a name. `getattr` and a getter are called by
    /// REDUCE, OBJ and INST (neither is a class: `instantiate` calls them); `attrgetter` is a
    /// class, so NEWOBJ builds one too.
    fn lookup_call(&mut self, kind: CallKind, func: Id, args: Id, kwargs: Id) -> R<bool> {
        let calls = matches!(kind, CallKind::Reduce | CallKind::Obj | CallKind::Inst);
        match self.a.get(func) {
            Value::Global(n) => {
                let Some(l) = self.lookups.get(&n).copied() else { return Ok(false) };
                match l.kind {
                    LookupKind::Getattr => {
                        let items = self.a.tuple_items(args).filter(|_| calls && kwargs == NIL).map(<[Id]>::to_vec);
                        let (obj, name) = match items.as_deref() {
                            Some(&[obj, name]) => (obj, name),
                            _ => (NIL, NIL),
                        };
                        // getattr takes the name literally: "a.b" is one attribute, not a walk
                        let attr = self.a.as_str(name).filter(|a| identifier(a));
                        match attr {
                            Some(a) if self.global_path(obj).is_some() => {
                                let t = format!("{}({}, {})", self.render(func), self.render(obj), self.render(name));
                                if self.derive(obj, &a, t, args)? {
                                    if let Some(l) = self.lookups.get_mut(&n) {
                                        l.resolved = l.resolved.saturating_add(1);
                                    }
                                    return Ok(true);
                                }
                                self.lookup_unresolved(n);
                            }
                            _ => self.lookup_unresolved(n),
                        }
                    }
                    LookupKind::Attrgetter => {
                        let builds = calls || kind == CallKind::NewObj;
                        let path = self.getter_path(args).filter(|_| builds && kwargs == NIL);
                        match path {
                            Some(_) => {
                                if let Some(l) = self.lookups.get_mut(&n) {
                                    l.resolved = l.resolved.saturating_add(1);
                                }
                            }
                            None => self.lookup_unresolved(n),
                        }
                    }
                }
                Ok(false)
            }
            Value::Call(getter) => {
                let Value::Global(n) = self.a.get(getter.func) else { return Ok(false) };
                if !self.lookups.get(&n).is_some_and(|l| l.kind == LookupKind::Attrgetter) {
                    return Ok(false);
                }
                let path = self.getter_path(getter.args).filter(|_| getter.state == NIL);
                let obj = match self.a.tuple_items(args) {
                    Some(&[obj]) if calls && kwargs == NIL => Some(obj),
                    _ => None,
                };
                if let (Some(p), Some(obj)) = (path, obj) {
                    if self.global_path(obj).is_some() {
                        let t = format!("{}({})", self.render(func), self.render(obj));
                        if self.derive(obj, &p, t, args)? {
                            if let Some(l) = self.lookups.get_mut(&n) {
                                l.getter_resolved = l.getter_resolved.saturating_add(1);
                            }
                            return Ok(true);
                        }
                    }
                }
                self.lookup_unresolved(n);
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// The one constant dotted path of `attrgetter(path)` (several paths make a tuple getter).
    fn getter_path(&self, args: Id) -> Option<String> {
        match self.a.tuple_items(args) {
            Some(&[p]) => self.a.as_str(p).filter(|p| p.split('.').all(identifier)),
            _ => None,
        }
    }

    /// Push the attribute `path` of the global `obj` as the global `obj.path`, judged like any
    /// import; `text` (the lookup as written) becomes part of its evidence.
    fn derive(&mut self, obj: Id, path: &str, text: String, args: Id) -> R<bool> {
        let Value::Global(b) = self.a.get(obj) else { return Ok(false) };
        let Some(base) = self.imports.get(b as usize) else { return Ok(false) };
        let module = base.module.clone();
        let name = format!("{}.{path}", base.name);
        let raw = base.raw.as_ref().map(|(m, n)| (m.clone(), format!("{n}.{path}")));
        let key = raw.clone().unwrap_or_else(|| (module.clone(), name.clone()));
        let before = self.imports.len();
        let idx = match self.shared_record(&key)? {
            Some(i) => i,
            None => {
                if super::is_binder(&module, &name) {
                    self.binders.entry(self.imports.len() as u32).or_default();
                }
                self.push_record(module, name, raw, "getattr")?
            }
        };
        self.attach_evidence(&[NIL, args], NIL, |_| text.clone());
        if self.imports.len() > before && self.lookup_texts.len() < IMPORT_RECORDS_MAX {
            self.lookup_texts.push((idx, text));
        }
        self.push_new(Value::Global(idx))?;
        Ok(true)
    }

    /// At the end: imports a lookup made carry the lookup in their evidence, and lookups whose
    /// every use was resolved are no imports of their own (their results are).
    fn settle_lookups(&mut self) {
        for (idx, text) in std::mem::take(&mut self.lookup_texts) {
            let Some(imp) = self.imports.get_mut(idx as usize) else { continue };
            let name = imp.full_name();
            let ev = match imp.evidence.take() {
                Some(e) if e.contains(&name) => e.replacen(&name, &text, 1),
                Some(e) => format!("{e} ({name} is {text})"),
                None => text,
            };
            imp.evidence = Some(clip(ev));
        }
        let done: HashSet<u32> = self.lookups.iter().filter(|(_, l)| l.settled()).map(|(&n, _)| n).collect();
        if !done.is_empty() {
            let mut i = 0u32;
            self.imports.retain(|_| {
                let keep = !done.contains(&i);
                i += 1;
                keep
            });
        }
    }

    // ----- functools.partial -----

    /// The import index when `id` is `functools.partial` (the class, not an instance).
    fn binder_of(&self, id: Id) -> Option<u32> {
        if self.binders.is_empty() {
            return None;
        }
        match self.a.get(id) {
            Value::Global(n) if self.binders.contains_key(&n) => Some(n),
            _ => None,
        }
    }

    /// A stack entry now holds `id`: count it when it is `functools.partial`.
    fn note_binder_push(&mut self, id: Id) {
        if let Some(n) = self.binder_of(id) {
            if let Some(b) = self.binders.get_mut(&n) {
                b.pushes = b.pushes.saturating_add(1);
            }
        }
    }

    /// `functools.partial(f, *args, **kwds)` from the class and a `__setstate__` state.
    fn render_partial(&self, cls: Id, state: &[Id]) -> String {
        let mut out = format!("{}(", self.render(cls));
        out.push_str(&self.render(state.first().copied().unwrap_or(NIL)));
        if let Some(Value::Tuple(c, _)) = state.get(1).map(|&a| self.a.get(a)) {
            for &a in self.a.items(&c) {
                out.push_str(", ");
                out.push_str(&self.render(a));
            }
        }
        if let Some(Value::Dict(c)) = state.get(2).map(|&k| self.a.get(k)) {
            for kv in self.a.items(&c).chunks_exact(2) {
                if let [k, v] = kv {
                    out.push_str(", ");
                    out.push_str(&self.a.as_str(*k).unwrap_or_else(|| self.render(*k)));
                    out.push('=');
                    out.push_str(&self.render(*v));
                }
            }
        }
        out.push(')');
        if out.len() > value::EVIDENCE_MAX {
            let mut cut = value::EVIDENCE_MAX;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push_str("...)");
        }
        out
    }

    /// A callable a partial may wrap and still be judged: an import (classified on its own)
    /// or another partial (resolved on its own).
    fn wraps_known(&self, f: Id) -> bool {
        match self.a.get(f) {
            Value::Global(n) => !self.binders.contains_key(&n),
            Value::Call(c) => {
                matches!(
                    c.kind,
                    CallKind::Reduce | CallKind::NewObj | CallKind::NewObjEx | CallKind::Obj | CallKind::Inst
                ) && self.binder_of(c.func).is_some()
            }
            _ => false,
        }
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
        // (an object array is itself a pickle that joblib reads with pickle.load: scanned below)
        if self.loader == Loader::Any && !layout.object {
            self.array_as_opcodes(inp)?;
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
            // the array is a whole pickle of its own, loaded with `pickle.load` (C) in
            // `NumpyArrayWrapper.read_array`
            let mut sink = Sink::default();
            let env = Env { loader: Loader::C, ..self.env };
            self.sync_budget();
            let info =
                super::run_stream(env, self.depth + 1, self.suffix.clone(), inp, Mode::Confident, true, &mut sink);
            self.sync_budget();
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

    /// `pickle.load` of a joblib dump reads on where `joblib.load` reads array data: after
    /// the wrapper's BUILD, the C unpickler takes the pad byte and the array bytes as opcodes.
    /// Array data never runs anything there (a pad length below 0x20 is no opcode, floats
    /// fail within a few bytes), but bytes chosen for it can: run a C unpickler over them (a
    /// window, widened while it keeps reading) and report what it imports.
    fn array_as_opcodes(&mut self, inp: &mut Input) -> R<()> {
        let at = inp.pos();
        let first = inp.peek(1).map_err(|e| self.io(e))?.first().copied();
        if !first.is_some_and(super::is_opcode) || self.depth + 1 > NESTED_DEPTH_MAX {
            return Ok(());
        }
        let max = usize::try_from(self.opts.max_nested_pickle_bytes).unwrap_or(usize::MAX);
        let mut window = 64 << 10;
        loop {
            let data = inp.peek(window.min(max)).map_err(|e| self.io(e))?.to_vec();
            let whole = data.len() < window.min(max) || window >= max;
            let len = data.len() as u64;
            let mut sink = Sink::default();
            let mut input = Data::bytes(data).into_input();
            let env = Env { loader: Loader::C, ..self.env };
            let suffix = match &self.suffix {
                Some(s) => format!("{s}!joblib-array@{at}"),
                None => format!("joblib-array@{at}"),
            };
            self.sync_budget();
            let info = super::run_stream(env, self.depth + 1, Some(suffix), &mut input, Mode::Probe, true, &mut sink);
            self.sync_budget();
            // it read to the end of the window: the stream may go on past it
            if !whole && info.halted && input.pos() + 16 >= len {
                window = window.saturating_mul(16);
                continue;
            }
            if !sink.imports.is_empty() {
                let names: Vec<String> = sink.imports.iter().take(4).map(Import::full_name).collect();
                let f = Finding::new(
                    "pickle-loader-divergence",
                    Severity::Dangerous,
                    format!(
                        "pickle.load reads the bytes after a joblib array wrapper as pickle opcodes (joblib.load reads them as array data), and they import {}",
                        names.join(", ")
                    ),
                )
                .at(at)
                .evidence(sink.imports.iter().find_map(|i| i.evidence.clone()).unwrap_or_else(|| names.join(", ")));
                self.finding(f);
                self.engaged = true;
                self.bare += sink.imports.iter().filter(|i| i.evidence.is_none()).count();
                self.imports.extend(sink.imports);
                self.ev_src.resize(self.imports.len(), NIL);
                self.findings.extend(sink.findings);
            }
            return Ok(());
        }
    }

    // ----- nested pickles -----

    /// Calls whose arguments are pickles (trampolines) or decode to bytes that may be one.
    /// What they compute is followed once per recipe (the calls down to a constant): a
    /// constant handed to a decoder a thousand times, through fresh wrappers or not, costs
    /// one decoding.
    fn special_call(&mut self, call: Id, func: Id, args: Id) {
        let Some((module, name)) = self.global_path(func) else { return };
        let kind = super::trampoline_kind(module, name);
        if kind.is_none() && !super::is_decoder(module, name) {
            return;
        }
        match kind {
            Some((file_like, loader)) => {
                let Some(arg) = self.a.first_arg(args) else { return };
                let target = if file_like { self.unwrap_file(arg) } else { Some(arg) };
                let Some(t) = target else { return };
                let mut r = format!("{loader:?} ");
                let key = self.recipe(t, 0, &mut r).map(|leaf| (r, leaf));
                if let Some(&idx) = key.as_ref().and_then(|k| self.decoded.get(k)) {
                    if let Some(n) = self.nested.get_mut(idx as usize) {
                        n.trampoline = true;
                    }
                    return;
                }
                let idx = self.trampoline(t, loader);
                if let Some(k) = key {
                    self.remember(k, idx);
                }
            }
            None => {
                let mut r = String::new();
                let Some(leaf) = self.recipe(call, 0, &mut r) else { return };
                let key = (r, leaf);
                if let Some(&idx) = self.decoded.get(&key) {
                    self.set_nested(call, idx);
                    return;
                }
                let idx = self.decoded_pickle(call);
                self.remember(key, idx);
                self.set_nested(call, idx);
            }
        }
    }

    /// The calls from `id` down to the constant they decode (returned), written into `out`
    /// with their codec arguments: equal for every fresh wrapper around the same constant.
    fn recipe(&self, id: Id, depth: u32, out: &mut String) -> Option<Id> {
        if depth > 4 {
            return None;
        }
        match self.a.get(id) {
            Value::Bytes(..) | Value::Str(_) => Some(id),
            Value::Call(c) if c.kind == CallKind::Reduce => {
                let (m, n) = self.global_path(c.func)?;
                let items = self.a.arg_items(c.args)?;
                let x = *items.first()?;
                let arg2 = items.get(1).and_then(|&i| self.a.as_str(i)).unwrap_or_default();
                out.push_str(m);
                out.push('.');
                out.push_str(n);
                out.push('(');
                out.push_str(&arg2);
                out.push_str(") ");
                self.recipe(x, depth + 1, out)
            }
            _ => None,
        }
    }

    /// Keep what a recipe gave when it is worth keeping (a nested pickle, or a constant
    /// large enough that decoding it again would cost).
    fn remember(&mut self, key: (String, Id), idx: u32) {
        let large = matches!(self.a.get(key.1), Value::Str(t) | Value::Bytes(t, _) if t.len() > 4096);
        if idx != NIL || large {
            self.decoded.insert(key, idx);
        }
    }

    /// A decoder call's result, scanned when it starts like a pickle; the index of the result or NIL.
    fn decoded_pickle(&mut self, call: Id) -> u32 {
        // the first bytes decide, so only a prefix is decoded first
        let Some(head) = self.const_bytes(call, 0, nested::SNIFF_LEN) else { return NIL };
        let Some(enc) = nested::sniff(&head) else { return NIL };
        if !self.nested_gate(self.op_at, 0) {
            return NIL;
        }
        let max = self.decode_max();
        let idx = match self.const_bytes(call, 0, max) {
            Some(bytes) => self.scan_nested(&bytes, enc, self.op_at, false, false, Loader::Any),
            None => NIL,
        };
        self.report_spent();
        idx
    }

    /// Output allowed for one decoding: the nested-pickle size, within the file's budget.
    fn decode_max(&self) -> usize {
        let left = self.env.budget.nested_bytes_left();
        usize::try_from(self.opts.max_nested_pickle_bytes.min(left)).unwrap_or(usize::MAX)
    }

    /// May another nested pickle (of about `bytes` bytes) be decoded and scanned? The depth
    /// is checked before anything is decoded, then the file's budget.
    fn nested_gate(&mut self, offset: u64, bytes: u64) -> bool {
        if self.depth + 1 > NESTED_DEPTH_MAX {
            let f = Finding::new(
                "pickle-budget-exceeded",
                Severity::Error,
                format!("pickles nested more than {NESTED_DEPTH_MAX} levels deep were not scanned"),
            )
            .at(offset);
            self.finding(f);
            return false;
        }
        if !self.env.budget.take_nested(bytes) {
            self.spent.set(true);
            self.report_spent();
            return false;
        }
        true
    }

    /// Report once that the file's nested-pickle budget ran out.
    fn report_spent(&mut self) {
        if self.spent.get() && !self.spent_reported {
            self.spent_reported = true;
            let f = Finding::new(
                "pickle-budget-exceeded",
                Severity::Error,
                format!(
                    "the file's budget for nested pickles ({} pickles, {} bytes decoded) is spent; the rest were not scanned",
                    super::NESTED_SCANS_MAX,
                    self.opts.max_nested_pickle_bytes.saturating_mul(4)
                ),
            )
            .at(self.op_at);
            self.finding(f);
        }
    }

    /// `io.BytesIO(b)` -> `b`; a str path is not followed (the loader reads a file).
    fn unwrap_file(&self, id: Id) -> Option<Id> {
        match self.a.get(id) {
            Value::Call(c) if c.kind == CallKind::Reduce => {
                let (m, n) = self.global_path(c.func)?;
                if (m == "io" || m == "_io") && n == "BytesIO" {
                    self.a.first_arg(c.args)
                } else {
                    Some(id)
                }
            }
            Value::Str(_) => None,
            _ => Some(id),
        }
    }

    fn nested_of(&self, id: Id) -> Option<u32> {
        self.derived_nested.get(&id).copied()
    }

    /// A loader (`loader`) unpickles `arg`: scan it (once per value); the index of the result or NIL.
    fn trampoline(&mut self, arg: Id, loader: Loader) -> u32 {
        if let Some(idx) = self.nested_of(arg) {
            if let Some(n) = self.nested.get_mut(idx as usize) {
                n.trampoline = true;
            }
            return idx;
        }
        let incomplete = matches!(self.a.get(arg), Value::Str(t) | Value::Bytes(t, _) if !t.full());
        let dynamic = self.const_bytes(arg, 0, 1).is_none();
        if !incomplete && !dynamic {
            if !self.nested_gate(self.op_at, 0) {
                return NIL;
            }
            let max = self.decode_max();
            if let Some(bytes) = self.const_bytes(arg, 0, max.saturating_add(1)) {
                let truncated = bytes.len() > max;
                let data = bytes.get(..max.min(bytes.len())).unwrap_or(&[]);
                let idx = self.scan_nested(data, Encoding::Raw, self.op_at, true, truncated, loader);
                self.set_nested(arg, idx);
                return idx;
            }
        }
        self.report_spent();
        let ev = self.render(arg);
        let f = if incomplete || self.spent.get() {
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
        NIL
    }

    /// Up to `max` bytes that a value holds or a known decoding call produces (base64, hex,
    /// latin-1, zlib), in work proportional to `max`. Bytes produced past a small size are
    /// charged to the file's nested-pickle budget; `None` when it is spent (and `spent` is set).
    fn const_bytes(&self, id: Id, depth: u32, max: usize) -> Option<Vec<u8>> {
        let out = self.const_bytes_inner(id, depth, max)?;
        if out.len() > 4096 && !self.env.budget.take_bytes(out.len() as u64) {
            self.spent.set(true);
            return None;
        }
        Some(out)
    }

    fn const_bytes_inner(&self, id: Id, depth: u32, max: usize) -> Option<Vec<u8>> {
        if depth > 4 {
            return None;
        }
        // input needed for `max` bytes of output
        let b64_in = (max / 3 + 1).saturating_mul(4);
        let hex_in = max.saturating_mul(3).saturating_add(8);
        let all = usize::try_from(self.opts.max_nested_pickle_bytes).unwrap_or(usize::MAX);
        match self.a.get(id) {
            Value::Bytes(t, _) if t.full() => {
                let b = self.a.text(&t);
                Some(b.get(..max.min(b.len())).unwrap_or(&[]).to_vec())
            }
            Value::Str(t) if t.full() => Some(str_bytes(self.a.text(&t), max, None)),
            Value::Call(c) if c.kind == CallKind::Reduce => {
                let (m, n) = self.global_path(c.func)?;
                let items = self.a.arg_items(c.args)?;
                let x = items.first().copied()?;
                let arg2 = items.get(1).and_then(|&i| self.a.as_str(i)).map(|s| s.to_ascii_lowercase());
                match (m, n) {
                    ("_codecs" | "codecs", "encode") => {
                        let Value::Str(t) = self.a.get(x) else { return None };
                        if !t.full() {
                            return None;
                        }
                        let text = self.a.text(&t);
                        match arg2.as_deref() {
                            Some("latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" | "l1") => {
                                let out = str_bytes(text, max, Some(true));
                                // a character above U+00FF is an encoding error
                                (!out.is_empty() || text.is_empty()).then_some(out)
                            }
                            Some("utf-8" | "utf8") | None => {
                                Some(text.get(..max.min(text.len())).unwrap_or(&[]).to_vec())
                            }
                            _ => None,
                        }
                    }
                    ("_codecs" | "codecs", "decode") => match arg2.as_deref() {
                        Some("base64" | "base_64" | "base64_codec") => {
                            nested::decode_base64(&self.const_bytes(x, depth + 1, b64_in)?, max)
                        }
                        Some("hex" | "hex_codec") => nested::decode_hex(&self.const_bytes(x, depth + 1, hex_in)?, max),
                        Some("zlib" | "zip" | "zlib_codec") => {
                            inflate(&self.const_bytes(x, depth + 1, all)?, max, false)
                        }
                        _ => None,
                    },
                    (
                        "base64",
                        "b64decode" | "standard_b64decode" | "urlsafe_b64decode" | "decodebytes" | "decodestring",
                    )
                    | ("binascii", "a2b_base64") => {
                        nested::decode_base64(&self.const_bytes(x, depth + 1, b64_in)?, max)
                    }
                    ("binascii", "unhexlify" | "a2b_hex") | ("builtins", "bytes.fromhex" | "bytearray.fromhex") => {
                        nested::decode_hex(&self.const_bytes(x, depth + 1, hex_in)?, max)
                    }
                    ("zlib", "decompress") => inflate(&self.const_bytes(x, depth + 1, all)?, max, false),
                    ("gzip", "decompress") => inflate(&self.const_bytes(x, depth + 1, all)?, max, true),
                    ("io" | "_io", "BytesIO") | ("builtins", "bytes" | "bytearray") => {
                        self.const_bytes(x, depth + 1, max)
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Scan `data` as a pickle found at `offset` (the caller passed [`Self::nested_gate`]);
    /// returns the index of the result, or NIL.
    fn scan_nested(
        &mut self,
        data: &[u8],
        enc: Encoding,
        offset: u64,
        trampoline: bool,
        truncated: bool,
        loader: Loader,
    ) -> u32 {
        let data = if enc == Encoding::Raw {
            data.to_vec()
        } else {
            match nested::decode(enc, data, self.decode_max()) {
                Some(d) => d,
                None => return NIL,
            }
        };
        let suffix = match &self.suffix {
            Some(s) => format!("{s}!pickle@{offset}"),
            None => format!("pickle@{offset}"),
        };
        let preview: String =
            data.iter().take(24).map(|&b| if (0x20..0x7f).contains(&b) { char::from(b) } else { '.' }).collect();
        let mut sink = Sink::default();
        let data_len = data.len() as u64;
        let mut input = Data::bytes(data).into_input();
        let env = Env { loader, ..self.env };
        self.sync_budget();
        let info = super::run_stream(env, self.depth + 1, Some(suffix), &mut input, Mode::Probe, false, &mut sink);
        self.sync_budget();
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
            // bytes left in the frame (a frame longer than the data has none)
            if inp.skip(self.buf_end - pos).unwrap_or(0) > 0 {
                self.straddle();
            }
            self.buf_end = 0;
        }
    }

    /// Move imports, findings and nested results into `sink`.
    pub fn finish(mut self, sink: &mut Sink) {
        self.judge_binders();
        self.settle_lookups();
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

    /// `functools.partial` is judged by the callable it wraps, which is an import of its own
    /// (and carries the partial as evidence). A use the emulation could not follow (a wrapped
    /// value computed at load time, the class stored or passed on) is reported here.
    fn judge_binders(&mut self) {
        let mut open: Vec<u32> =
            self.binders.iter().filter(|(_, b)| b.unresolved || b.pushes > b.resolved).map(|(&n, _)| n).collect();
        open.sort_unstable();
        for n in open {
            let Some(imp) = self.imports.get(n as usize) else { continue };
            let name = imp.full_name();
            let evidence = imp.evidence.clone().unwrap_or_else(|| name.clone());
            let f = Finding::new(
                "pickle-callable-unresolved",
                Severity::Dangerous,
                format!("{name} binds arguments to a callable the scan cannot determine (computed at load time, or the class is passed on)"),
            )
            .at(imp.offset)
            .evidence(evidence);
            self.finding(f);
        }
    }

    /// A small view of a value (for `scan_one`), of at most [`SIMPLE_NODES`] nodes (a tuple
    /// of memoized tuples is exponentially large when expanded).
    pub fn simple(&self, id: Id) -> Simple {
        let mut nodes = SIMPLE_NODES;
        self.simple_in(id, 0, &mut nodes)
    }

    fn simple_in(&self, id: Id, depth: u32, nodes: &mut usize) -> Simple {
        if *nodes == 0 {
            return Simple::Other;
        }
        *nodes -= 1;
        match self.a.get(id) {
            Value::Int(i) => Simple::Int(i),
            Value::Bool(b) => Simple::Int(i64::from(b)),
            Value::Str(t) if t.full() => Simple::Str(String::from_utf8_lossy(self.a.text(&t)).into_owned()),
            Value::Global(n) => match self.imports.get(n as usize) {
                Some(i) => Simple::Global(i.module.clone(), i.name.clone()),
                None => Simple::Other,
            },
            Value::Tuple(c, _) if depth < 8 && u64::from(c.kept) == c.count => {
                Simple::Tuple(self.a.items(&c).iter().map(|&i| self.simple_in(i, depth + 1, nodes)).collect())
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

/// The line `pickle._Unpickler` parses: `readline()[:-1]` drops the last byte when the data
/// ended before a newline.
fn line_py(line: &[u8], newline: bool) -> &[u8] {
    if newline {
        line
    } else {
        line.split_last().map_or(line, |(_, rest)| rest)
    }
}

/// A dotted path of Python identifiers (what an importable module or attribute path looks like).
/// A Python identifier (ASCII only: other names are left to the name rules).
fn identifier(s: &str) -> bool {
    let mut c = s.bytes();
    c.next().is_some_and(|b| b == b'_' || b.is_ascii_alphabetic())
        && c.all(|b| b == b'_' || b.is_ascii_alphanumeric())
        && s.len() <= 255
}

/// Evidence text cut to [`value::EVIDENCE_MAX`] bytes.
fn clip(mut s: String) -> String {
    if s.len() > value::EVIDENCE_MAX {
        let mut cut = value::EVIDENCE_MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

fn plausible(path: &str) -> bool {
    !path.is_empty()
        && path.split('.').all(|c| {
            let mut chars = c.chars();
            chars.next().is_some_and(|f| f.is_alphabetic() || f == '_')
                && chars.all(|ch| ch.is_alphanumeric() || ch == '_')
        })
}

/// Up to `max` bytes of a str (WTF-8 `text`): each character as one latin-1 byte, or the
/// UTF-8 bytes when a character is above U+00FF. `latin1 = Some(true)` is `encode('latin1')`:
/// nothing comes out then for such a character (an encoding error).
fn str_bytes(text: &[u8], max: usize, latin1: Option<bool>) -> Vec<u8> {
    let s = String::from_utf8_lossy(text.get(..text.len().min(max.saturating_mul(4))).unwrap_or(&[]));
    let mut out = Vec::with_capacity(max.min(s.len()));
    for c in s.chars() {
        if out.len() >= max {
            break;
        }
        match u8::try_from(c as u32) {
            Ok(b) => out.push(b),
            Err(_) if latin1 == Some(true) => return Vec::new(),
            Err(_) => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.truncate(max);
    out
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
