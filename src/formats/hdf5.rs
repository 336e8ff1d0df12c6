//! HDF5, as far as legacy Keras `.h5` models need it: the superblock (versions 0 to 3), the
//! root group's object header (versions 1 and 2, with continuation blocks) and its attribute
//! messages, compact or in dense storage (fractal heap, with managed objects in direct blocks
//! under any depth of indirect blocks, tiny and huge objects, indexed by a version 2 B-tree of
//! any depth). An attribute's datatype may be a committed (named) datatype. The root
//! attributes `model_config` and `training_config` hold the Keras JSON that `load_model`
//! deserializes; they are checked like a `.keras` config. Dataset contents are never read.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use crate::detect::Format;
use crate::engine::Scan;
use crate::finding::{CodeInfo, Finding, Severity};
use crate::source::{read_exact_at, Source};

pub const CODES: &[CodeInfo] = &[
    CodeInfo {
        code: "hdf5-malformed",
        severity: Severity::Error,
        summary: "an hdf5 file is truncated or malformed where modelgate must read it",
        fix: "re-save the file; a model whose config cannot be read cannot be judged",
    },
    CodeInfo {
        code: "hdf5-budget-exceeded",
        severity: Severity::Error,
        summary: "an hdf5 file's structures point at each other so often that reading them exceeds the per-file budget",
        fix: "re-save the file with h5py; real files never need this much structure read",
    },
    CodeInfo {
        code: "hdf5-superblock-unread",
        severity: Severity::Error,
        summary: "decompressed data holds an hdf5 superblock further in than modelgate holds data to read it",
        fix: "store the hdf5 file uncompressed (or with a user block under 512 KiB) so that it can be judged",
    },
    CodeInfo {
        code: "hdf5-unsupported",
        severity: Severity::Error,
        summary: "an hdf5 file stores its root attributes in a layout modelgate cannot read yet",
        fix: "re-save the model with h5py defaults (libver='earliest') or as a .keras file",
    },
];

pub const SIGNATURE: &[u8] = b"\x89HDF\r\n\x1a\n";
/// Root attributes that hold Keras JSON.
const CONFIG_ATTRS: &[&str] = &["model_config", "training_config"];
/// Largest attribute value read.
const MAX_VALUE: usize = 64 << 20;
/// Largest object header chunk read.
const MAX_CHUNK: usize = 16 << 20;
/// Object header messages and continuation blocks followed.
const MAX_MESSAGES: usize = 100_000;
const MAX_CONTINUATIONS: usize = 10_000;
/// Records read from one version 2 B-tree (attributes of the root group, huge heap objects).
const MAX_RECORDS: u64 = 100_000;
/// Nodes visited in one version 2 B-tree: crafted trees can point many times at one node.
const MAX_NODES: usize = 200_000;
/// Deepest version 2 B-tree read; HDF5's 512-byte attribute nodes hold millions at depth 5.
const MAX_BTREE_DEPTH: u16 = 12;
/// Deepest nesting of fractal heap indirect blocks followed (each level at least halves).
const MAX_HEAP_DEPTH: usize = 64;

pub fn sniff(head: &[u8]) -> Option<Format> {
    head.starts_with(SIGNATURE).then_some(Format::Hdf5)
}

/// Why a structure could not be read: the file is malformed, or it uses a layout this reader
/// does not read (both are error findings; the codes differ).
#[derive(Debug)]
enum Fail {
    Malformed(String),
    Unsupported(String),
    /// The file's structure budget ran out.
    Budget(String),
}

impl Fail {
    /// The same failure, with what was being read in front.
    fn context(self, what: &str) -> Fail {
        match self {
            Fail::Malformed(m) => Fail::Malformed(format!("{what}: {m}")),
            Fail::Unsupported(m) => Fail::Unsupported(format!("{what}: {m}")),
            Fail::Budget(m) => Fail::Budget(format!("{what}: {m}")),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Fail::Malformed(_) => "hdf5-malformed",
            Fail::Unsupported(_) => "hdf5-unsupported",
            Fail::Budget(_) => "hdf5-budget-exceeded",
        }
    }
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Malformed(m) | Fail::Unsupported(m) | Fail::Budget(m) => f.write_str(m),
        }
    }
}

impl From<String> for Fail {
    fn from(m: String) -> Fail {
        Fail::Malformed(m)
    }
}

impl From<&str> for Fail {
    fn from(m: &str) -> Fail {
        Fail::Malformed(m.to_owned())
    }
}

fn unsupported<T>(what: &str) -> Res<T> {
    Err(Fail::Unsupported(format!("unsupported: {what}")))
}

type Res<T> = Result<T, Fail>;

/// Little-endian reads from a byte slice, failing instead of panicking.
struct Cur<'b> {
    b: &'b [u8],
    p: usize,
}

impl<'b> Cur<'b> {
    fn new(b: &'b [u8]) -> Cur<'b> {
        Cur { b, p: 0 }
    }

    fn bytes(&mut self, n: usize) -> Res<&'b [u8]> {
        let s = self.p.checked_add(n).and_then(|e| self.b.get(self.p..e)).ok_or("structure runs past its block")?;
        self.p += n;
        Ok(s)
    }

    fn uint(&mut self, n: usize) -> Res<u64> {
        if n > 8 {
            return Err(format!("integer field of {n} bytes").into());
        }
        Ok(self.bytes(n)?.iter().rev().fold(0u64, |v, &b| v << 8 | u64::from(b)))
    }

    fn u8(&mut self) -> Res<u8> {
        Ok(self.uint(1)? as u8)
    }

    fn u16(&mut self) -> Res<u16> {
        Ok(self.uint(2)? as u16)
    }

    fn u32(&mut self) -> Res<u32> {
        Ok(self.uint(4)? as u32)
    }

    fn skip(&mut self, n: usize) -> Res<()> {
        self.bytes(n).map(|_| ())
    }

    fn rest(&self) -> &'b [u8] {
        self.b.get(self.p..).unwrap_or(&[])
    }
}

/// Every read is charged at least this much against the file's structure budget
/// ([`crate::engine::MAX_STRUCTURE_BYTES`], shared by every HDF5 parse of one file), so that
/// crafted headers pointing many times at tiny structures cannot turn into millions of reads.
const MIN_READ_CHARGE: u64 = 4096;

/// The file: sizes of offsets and lengths from the superblock, and the base address.
struct H5<'a> {
    src: &'a dyn Source,
    o: usize,
    l: usize,
    base: u64,
    budget: std::sync::Arc<crate::engine::FileBudget>,
}

impl H5<'_> {
    /// `n` bytes at file address `addr` (relative to the base address).
    fn read(&self, addr: u64, n: usize) -> Res<Vec<u8>> {
        if !self.budget.take_structure((n as u64).max(MIN_READ_CHARGE)) {
            return Err(Fail::Budget(format!(
                "more than {} bytes of structure read for this file",
                crate::engine::MAX_STRUCTURE_BYTES
            )));
        }
        let at = addr.checked_add(self.base).ok_or("address overflows")?;
        if at.checked_add(n as u64).is_none_or(|end| end > self.src.len()) {
            return Err(format!("{n} bytes at address {addr} run past the end of the file").into());
        }
        let mut v = vec![0u8; n];
        read_exact_at(self.src, at, &mut v).map_err(|e| format!("read error: {e}"))?;
        Ok(v)
    }

    /// Bytes from `addr` up to `max`, fewer at the end of the file.
    fn read_up_to(&self, addr: u64, max: usize) -> Res<Vec<u8>> {
        let at = addr.checked_add(self.base).ok_or("address overflows")?;
        let n = self.src.len().saturating_sub(at).min(max as u64) as usize;
        self.read(addr, n)
    }

    fn undefined(&self, addr: u64) -> bool {
        self.o >= 8 && addr == u64::MAX || self.o < 8 && addr == (1u64 << (8 * self.o)) - 1
    }
}

/// What the root group's attributes gave.
#[derive(Default)]
struct RootAttrs {
    /// (name, JSON text) of the Keras config attributes.
    configs: Vec<(String, String)>,
    /// Problems that stop a config attribute from being read.
    problems: Vec<Fail>,
}

/// Where h5py finds the superblock: the first signature at offset 0, 512, 1024, 2048, ...
/// within the file (`H5FD_locate_signature`; the bytes before it are the user block).
pub fn find_superblock(src: &dyn Source) -> Option<u64> {
    let mut at = 0u64;
    while at.checked_add(8)? <= src.len() {
        let mut sig = [0u8; 8];
        if read_exact_at(src, at, &mut sig).is_ok() && sig == SIGNATURE {
            return Some(at);
        }
        at = if at == 0 { 512 } else { at.checked_mul(2)? };
    }
    None
}

/// Scan an HDF5 file's root attributes for Keras configs.
pub fn scan(scan: &mut Scan<'_>, src: &dyn Source) -> Format {
    scan_at(scan, src, 0)
}

/// Scan an HDF5 file whose superblock is at `at` (after a user block).
pub fn scan_at(scan: &mut Scan<'_>, src: &dyn Source, at: u64) -> Format {
    scan.mark_model();
    let attrs = match superblock(src, at, scan.file_budget()).and_then(|(h5, root)| root_attributes(&h5, root)) {
        Ok(a) => a,
        Err(e) => {
            let e = e.context("cannot read the root group");
            scan.finding(Finding::new(e.code(), Severity::Error, e.to_string()));
            return Format::Hdf5;
        }
    };
    for p in &attrs.problems {
        scan.finding(Finding::new(p.code(), Severity::Error, p.to_string()));
    }
    if attrs.configs.is_empty() {
        return Format::Hdf5;
    }
    for (name, json) in &attrs.configs {
        crate::formats::keras::check_json_text(scan, json, name);
    }
    Format::KerasH5
}

/// Parse the superblock; returns the file view and the root group's object header address.
/// Addresses are relative to where the superblock was found, whatever base address it stores:
/// HDF5 replaces a stored base that differs from the superblock's position
/// (`H5F__super_read`: "superblock address is different from base address").
fn superblock(src: &dyn Source, at: u64, budget: std::sync::Arc<crate::engine::FileBudget>) -> Res<(H5<'_>, u64)> {
    let head = crate::source::read_up_to(src, at, 256).map_err(|e| format!("read error: {e}"))?;
    let mut c = Cur::new(&head);
    if c.bytes(8)? != SIGNATURE {
        return Err("no hdf5 signature".into());
    }
    let version = c.u8()?;
    let (o, l, base, root) = match version {
        0 | 1 => {
            c.skip(4)?;
            let o = usize::from(c.u8()?);
            let l = usize::from(c.u8()?);
            c.skip(1 + 2 + 2 + 4)?;
            if version == 1 {
                c.skip(4)?;
            }
            check_sizes(o, l)?;
            c.skip(o)?; // base address (replaced by the superblock's position)
            c.skip(3 * o)?; // free-space, end-of-file and driver addresses
            c.skip(o)?; // root symbol table entry: link name offset
            (o, l, at, c.uint(o)?)
        }
        2 | 3 => {
            let o = usize::from(c.u8()?);
            let l = usize::from(c.u8()?);
            c.skip(1)?;
            check_sizes(o, l)?;
            c.skip(o)?; // base address (replaced by the superblock's position)
            c.skip(2 * o)?; // superblock extension and end-of-file addresses
            (o, l, at, c.uint(o)?)
        }
        v => return Err(format!("unknown superblock version {v}").into()),
    };
    Ok((H5 { src, o, l, base, budget }, root))
}

fn check_sizes(o: usize, l: usize) -> Res<()> {
    if [2, 4, 8].contains(&o) && [2, 4, 8].contains(&l) {
        Ok(())
    } else {
        Err(format!("invalid sizes of offsets ({o}) or lengths ({l})").into())
    }
}

/// One object header message.
struct Msg {
    kind: u16,
    /// Message flags; bit 1: the message lives in the file's shared message heap.
    flags: u8,
    data: Vec<u8>,
}

const MSG_DATATYPE: u16 = 0x03;
const MSG_ATTRIBUTE: u16 = 0x0c;
const MSG_CONTINUATION: u16 = 0x10;
const MSG_ATTRIBUTE_INFO: u16 = 0x15;
/// Message flag: the message is stored in the shared object header message heap.
const MSG_FLAG_SHARED: u8 = 0x02;

/// The messages of kinds `keep` in the object header at `addr`, following continuation blocks.
fn object_messages(h5: &H5<'_>, addr: u64, keep: &[u16]) -> Res<Vec<Msg>> {
    let first = h5.read_up_to(addr, 16)?;
    let mut out = Vec::new();
    let mut pending: Vec<(u64, u64)> = Vec::new();
    let v2 = first.starts_with(b"OHDR");
    let mut creation_order = false;
    let keep = Keep { kinds: keep, ol: (h5.o, h5.l), kept: std::cell::Cell::new(0) };
    if v2 {
        let mut c = Cur::new(&first);
        c.skip(4)?;
        let version = c.u8()?;
        if version != 2 {
            return Err(format!("unknown object header version {version}").into());
        }
        let flags = c.u8()?;
        creation_order = flags & 0x04 != 0;
        let mut skip = 6;
        if flags & 0x20 != 0 {
            skip += 16;
        }
        if flags & 0x10 != 0 {
            skip += 4;
        }
        let size_len = 1usize << (flags & 3);
        let size_bytes = h5.read(addr.saturating_add(skip), size_len)?;
        let size = Cur::new(&size_bytes).uint(size_len)?;
        let start = addr.saturating_add(skip + size_len as u64);
        let chunk =
            h5.read(start, usize::try_from(size).ok().filter(|&s| s <= MAX_CHUNK).ok_or("object header too large")?)?;
        v2_messages(&chunk, creation_order, &keep, &mut out, &mut pending)?;
    } else {
        let mut c = Cur::new(&first);
        let version = c.u8()?;
        if version != 1 {
            return Err(format!("unknown object header version {version}").into());
        }
        c.skip(1)?;
        let _count = c.u16()?;
        c.skip(4)?;
        let size = c.u32()? as usize;
        if size > MAX_CHUNK {
            return Err("object header too large".into());
        }
        let chunk = h5.read(addr.saturating_add(16), size)?;
        v1_messages(&chunk, &keep, &mut out, &mut pending)?;
    }
    let mut followed = 0;
    // A continuation pointing back at a block already read (itself, or the header) loops.
    let mut seen = std::collections::HashSet::from([addr]);
    while let Some((at, len)) = pending.pop() {
        followed += 1;
        if followed > MAX_CONTINUATIONS || out.len() > MAX_MESSAGES {
            return Err("too many object header messages".into());
        }
        if !seen.insert(at) {
            return Err(format!("object header continuation at address {at} is read twice (a loop)").into());
        }
        let len = usize::try_from(len).ok().filter(|&s| s <= MAX_CHUNK).ok_or("continuation block too large")?;
        let block = h5.read(at, len)?;
        if v2 {
            if !block.starts_with(b"OCHK") {
                return Err(format!("continuation block at {at} has no OCHK signature").into());
            }
            let body = block.get(4..len.saturating_sub(4)).unwrap_or(&[]);
            v2_messages(body, creation_order, &keep, &mut out, &mut pending)?;
        } else {
            v1_messages(&block, &keep, &mut out, &mut pending)?;
        }
    }
    Ok(out)
}

/// Which messages [`object_messages`] keeps, and the sizes of offsets and lengths.
struct Keep<'k> {
    kinds: &'k [u16],
    ol: (usize, usize),
    /// Bytes of the messages kept so far (bounded by [`MAX_KEPT`]).
    kept: std::cell::Cell<usize>,
}

/// Bytes of wanted messages one object header may hold: header blocks can be read at many
/// overlapping addresses, each a copy of the same attributes.
const MAX_KEPT: usize = 64 << 20;

fn v1_messages(chunk: &[u8], keep: &Keep<'_>, out: &mut Vec<Msg>, pending: &mut Vec<(u64, u64)>) -> Res<()> {
    let mut c = Cur::new(chunk);
    while c.rest().len() >= 8 {
        let kind = c.u16()?;
        let size = usize::from(c.u16()?);
        let flags = c.u8()?;
        c.skip(3)?;
        let data = c.bytes(size)?;
        keep_message(kind, flags, data, keep, out, pending)?;
    }
    Ok(())
}

/// Follow a continuation message or keep a wanted message; bounded in count.
fn keep_message(
    kind: u16,
    flags: u8,
    data: &[u8],
    keep: &Keep<'_>,
    out: &mut Vec<Msg>,
    pending: &mut Vec<(u64, u64)>,
) -> Res<()> {
    if kind == MSG_CONTINUATION {
        let mut c = Cur::new(data);
        pending.push((c.uint(keep.ol.0)?, c.uint(keep.ol.1)?));
    } else if keep.kinds.contains(&kind) {
        let kept = keep.kept.get().saturating_add(data.len());
        if kept > MAX_KEPT {
            return Err(format!("more than {MAX_KEPT} bytes of messages in one object header").into());
        }
        keep.kept.set(kept);
        out.push(Msg { kind, flags, data: data.to_vec() });
    }
    if out.len() > MAX_MESSAGES || pending.len() > MAX_CONTINUATIONS {
        return Err("too many object header messages".into());
    }
    Ok(())
}

fn v2_messages(
    chunk: &[u8],
    creation_order: bool,
    keep: &Keep<'_>,
    out: &mut Vec<Msg>,
    pending: &mut Vec<(u64, u64)>,
) -> Res<()> {
    let mut c = Cur::new(chunk);
    let head = if creation_order { 6 } else { 4 };
    while c.rest().len() >= head {
        let kind = u16::from(c.u8()?);
        let size = usize::from(c.u16()?);
        let flags = c.u8()?;
        c.skip(head - 4)?;
        let data = c.bytes(size)?;
        keep_message(kind, flags, data, keep, out, pending)?;
    }
    Ok(())
}

fn root_attributes(h5: &H5<'_>, root: u64) -> Res<RootAttrs> {
    let msgs = object_messages(h5, root, &[MSG_ATTRIBUTE, MSG_ATTRIBUTE_INFO])?;
    let mut attrs = RootAttrs::default();
    for m in &msgs {
        if m.flags & MSG_FLAG_SHARED != 0 {
            // The message body is only a pointer into the shared message heap, so even the
            // attribute's name is unknown: it may be a config.
            let what = if m.kind == MSG_ATTRIBUTE { "root attribute" } else { "root attribute info" };
            attrs.problems.push(Fail::Unsupported(format!(
                "unsupported: {what} stored in the shared object header message heap"
            )));
            continue;
        }
        match m.kind {
            MSG_ATTRIBUTE => attribute(h5, &m.data, &mut attrs),
            _ => match dense_attributes(h5, &m.data) {
                Ok(list) => {
                    for a in list {
                        match a {
                            Ok(a) => attribute(h5, &a, &mut attrs),
                            Err(e) => attrs.problems.push(e.context("cannot read a root attribute")),
                        }
                    }
                }
                Err(e) => attrs.problems.push(e.context("cannot read dense attribute storage of the root group")),
            },
        }
    }
    Ok(attrs)
}

/// Decode one attribute message; Keras config attributes are kept as text.
fn attribute(h5: &H5<'_>, data: &[u8], attrs: &mut RootAttrs) {
    match parse_attribute(h5, data) {
        Ok((_, None)) => {}
        Ok((name, Some(text))) => attrs.configs.push((name, text)),
        Err((name, e)) => attrs.problems.push(match name {
            Some(n) => e.context(&format!("cannot read root attribute {n:?}")),
            None => e.context("cannot read a root attribute"),
        }),
    }
}

type AttrResult = Result<(String, Option<String>), (Option<String>, Fail)>;

/// Attribute message flags (versions 2 and 3): the datatype, the dataspace is shared.
const ATTR_TYPE_SHARED: u8 = 0x01;
const ATTR_SPACE_SHARED: u8 = 0x02;

fn parse_attribute(h5: &H5<'_>, data: &[u8]) -> AttrResult {
    let mut c = Cur::new(data);
    let head = (|| -> Res<(u8, u8, usize, usize, usize)> {
        let version = c.u8()?;
        let flags = c.u8()?;
        let name_len = usize::from(c.u16()?);
        let dt_len = usize::from(c.u16()?);
        let ds_len = usize::from(c.u16()?);
        if version == 3 {
            c.skip(1)?;
        }
        Ok((version, flags, name_len, dt_len, ds_len))
    })();
    let (version, flags, name_len, dt_len, ds_len) = head.map_err(|e| (None, e))?;
    let pad = |n: usize| if version == 1 { n.div_ceil(8) * 8 } else { n };
    let name_raw = c.bytes(pad(name_len)).map_err(|e| (None, e))?;
    let name_raw = name_raw.get(..name_len).unwrap_or(name_raw);
    let name = String::from_utf8_lossy(name_raw.split(|&b| b == 0).next().unwrap_or(name_raw)).into_owned();
    if !CONFIG_ATTRS.contains(&name.as_str()) {
        return Ok((name, None));
    }
    let named = |e: Fail| (Some(name.clone()), e);
    if !(1..=3).contains(&version) {
        return Err(named(format!("unknown attribute message version {version}").into()));
    }
    // Version 1 has a reserved byte where later versions have flags; HDF5 ignores it.
    let flags = if version == 1 { 0 } else { flags };
    if flags & !(ATTR_TYPE_SHARED | ATTR_SPACE_SHARED) != 0 {
        return Err(named(format!("unknown attribute flags {flags:#x}").into()));
    }
    if flags & ATTR_SPACE_SHARED != 0 {
        // Only the shared object header message heap shares dataspaces.
        return Err(named(Fail::Unsupported(
            "unsupported: dataspace stored in the shared object header message heap".into(),
        )));
    }
    let dt = c.bytes(pad(dt_len)).map_err(named)?;
    let ds = c.bytes(pad(ds_len)).map_err(named)?;
    let committed;
    let dt = if flags & ATTR_TYPE_SHARED != 0 {
        committed = committed_datatype(h5, dt).map_err(named)?;
        &committed[..]
    } else {
        dt
    };
    let value = string_value(h5, dt, ds, c.rest()).map_err(named)?;
    Ok((name, Some(value)))
}

/// The datatype message of a committed datatype that a shared message `sh` points at.
fn committed_datatype(h5: &H5<'_>, sh: &[u8]) -> Res<Vec<u8>> {
    let mut c = Cur::new(sh);
    let version = c.u8()?;
    let kind = c.u8()?;
    let addr = match version {
        1 => {
            c.skip(6 + h5.l)?;
            c.uint(h5.o)?
        }
        2 => c.uint(h5.o)?,
        3 if kind == 2 => c.uint(h5.o)?,
        3 if kind == 1 => return unsupported("datatype stored in the shared object header message heap"),
        v => return Err(format!("unknown shared message version {v} of type {kind}").into()),
    };
    let msgs = object_messages(h5, addr, &[MSG_DATATYPE]).map_err(|e| e.context("committed datatype"))?;
    match msgs.into_iter().next() {
        Some(m) if m.flags & MSG_FLAG_SHARED == 0 => Ok(m.data),
        Some(_) => unsupported("committed datatype stored in the shared object header message heap"),
        None => Err(format!("no datatype message in the committed datatype at address {addr}").into()),
    }
}

/// Element count of a dataspace message.
fn elements(ds: &[u8], l: usize) -> Res<u64> {
    let mut c = Cur::new(ds);
    let version = c.u8()?;
    let rank = usize::from(c.u8()?);
    match version {
        1 => c.skip(6)?,
        2 => {
            let _flags = c.u8()?;
            match c.u8()? {
                0 => return Ok(1),
                2 => return Ok(0),
                _ => {}
            }
        }
        v => return Err(format!("unknown dataspace version {v}").into()),
    }
    let mut n: u64 = 1;
    for _ in 0..rank {
        n = n.checked_mul(c.uint(l)?).ok_or("dataspace overflows")?;
    }
    Ok(n)
}

/// The attribute's value as text: a fixed-length or variable-length string (the first element
/// when it is an array), in either character set (ASCII or UTF-8; bytes that are not UTF-8
/// become U+FFFD, and `load_model` fails on them anyway).
fn string_value(h5: &H5<'_>, dt: &[u8], ds: &[u8], data: &[u8]) -> Res<String> {
    let mut c = Cur::new(dt);
    let class = c.u8()? & 0x0f;
    let bits = c.bytes(3)?;
    let size = c.u32()? as usize;
    if elements(ds, h5.l)? == 0 {
        return Ok(String::new());
    }
    match class {
        3 => {
            if size > MAX_VALUE {
                return Err(format!("string of {size} bytes").into());
            }
            let raw = data.get(..size).ok_or("string value runs past the attribute")?;
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            Ok(String::from_utf8_lossy(raw.get(..end).unwrap_or(raw)).into_owned())
        }
        9 if bits.first().is_some_and(|b| b & 0x0f == 1) => {
            let mut d = Cur::new(data);
            let len = d.u32()? as usize;
            let coll = d.uint(h5.o)?;
            let index = d.u32()?;
            if len == 0 {
                return Ok(String::new());
            }
            let bytes = global_heap_object(h5, coll, index)?;
            let raw = bytes.get(..len).ok_or("string runs past its global heap object")?;
            Ok(String::from_utf8_lossy(raw).into_owned())
        }
        // `load_model` passes the value to `json.loads`, which takes only str and bytes: any
        // other class (a sequence of bytes, a number, an opaque blob) fails there.
        k => unsupported(&format!("attribute of datatype class {k} is not a string")),
    }
}

/// One object of a global heap collection.
fn global_heap_object(h5: &H5<'_>, addr: u64, index: u32) -> Res<Vec<u8>> {
    let head = h5.read(addr, 8 + h5.l)?;
    let mut c = Cur::new(&head);
    if c.bytes(4)? != b"GCOL" {
        return Err(format!("no global heap at address {addr}").into());
    }
    c.skip(4)?;
    let size = usize::try_from(c.uint(h5.l)?).ok().filter(|&s| s <= MAX_VALUE + 4096).ok_or("global heap too large")?;
    let heap = h5.read_up_to(addr, size)?;
    let mut c = Cur::new(&heap);
    c.skip(8 + h5.l)?;
    while c.rest().len() >= 8 + h5.l {
        let i = c.u16()?;
        c.skip(6)?;
        let n = usize::try_from(c.uint(h5.l)?).map_err(|_| "object too large")?;
        if i == 0 {
            break;
        }
        let obj = c.bytes(n)?;
        if u32::from(i) == index {
            return Ok(obj.to_vec());
        }
        c.skip((n.div_ceil(8) * 8 - n).min(c.rest().len()))?;
    }
    Err(format!("global heap object {index} not found at address {addr}").into())
}

/// Length of the heap ID in an attribute name or creation order record (`H5O_FHEAP_ID_LEN`).
const ATTR_HEAP_ID: usize = 8;

/// Attribute messages held in dense storage (attribute info message `data`), one result each.
fn dense_attributes(h5: &H5<'_>, info: &[u8]) -> Res<Vec<Res<Vec<u8>>>> {
    let mut c = Cur::new(info);
    let _version = c.u8()?;
    let flags = c.u8()?;
    if flags & 1 != 0 {
        c.skip(2)?;
    }
    let heap_addr = c.uint(h5.o)?;
    let btree_addr = c.uint(h5.o)?;
    if h5.undefined(heap_addr) || h5.undefined(btree_addr) {
        return Ok(Vec::new());
    }
    let mut heap = FractalHeap::open(h5, heap_addr)?;
    if heap.id_len > ATTR_HEAP_ID {
        return Err(format!("attribute heap ids of {} bytes", heap.id_len).into());
    }
    let (_, records) = btree_records(h5, btree_addr, &[8, 9]).map_err(|e| e.context("attribute name index"))?;
    let mut out = Vec::with_capacity(records.len());
    for rec in &records {
        let mut c = Cur::new(rec);
        let id = c.bytes(ATTR_HEAP_ID)?;
        let flags = c.u8()?;
        out.push(if flags & MSG_FLAG_SHARED != 0 {
            unsupported("attribute stored in the shared object header message heap")
        } else {
            heap.object(h5, id.get(..heap.id_len).unwrap_or(id))
        });
    }
    Ok(out)
}

/// Floor of the base 2 logarithm (0 for 0).
fn log2(v: u64) -> u32 {
    63u32.saturating_sub(v.leading_zeros())
}

/// Bytes HDF5 uses to encode a count up to `n` (`H5VM_limit_enc_size`).
fn limit_enc_size(n: u64) -> usize {
    (log2(n) / 8 + 1) as usize
}

/// A fractal heap: enough of its header to find managed, tiny and huge objects.
struct FractalHeap {
    /// Address of the heap header, which every block names.
    addr: u64,
    id_len: usize,
    width: u64,
    start_block: u64,
    max_direct: u64,
    /// Rows of an indirect block that hold direct blocks (the others hold indirect blocks).
    max_direct_rows: u64,
    /// Bytes of a block offset (from the maximum heap size in bits).
    offset_bytes: usize,
    /// Bytes of an object length inside a heap ID.
    length_bytes: usize,
    root: u64,
    rows: u64,
    checksummed_direct: bool,
    filtered: bool,
    /// Whether huge object IDs hold the object's address and length (else a key into
    /// `huge_btree`).
    huge_direct: bool,
    huge_btree: u64,
    /// Huge object (address, length) by ID, read from `huge_btree` when first needed.
    huge: Option<std::collections::BTreeMap<u64, (u64, u64)>>,
}

impl FractalHeap {
    fn open(h5: &H5<'_>, addr: u64) -> Res<FractalHeap> {
        let head = h5.read(addr, 4 + 1 + 2 + 2 + 1 + 4 + 12 * 8 + 2 + 3 * 8 + 2 + 2 + 8 + 2)?;
        let mut c = Cur::new(&head);
        if c.bytes(4)? != b"FRHP" {
            return Err(format!("no fractal heap at address {addr}").into());
        }
        c.skip(1)?;
        let id_len = usize::from(c.u16()?);
        let filter_len = c.u16()?;
        let flags = c.u8()?;
        let max_managed = u64::from(c.u32()?);
        c.skip(h5.l)?; // next huge object ID
        let huge_btree = c.uint(h5.o)?;
        c.skip(h5.l + h5.o + 8 * h5.l)?;
        let width = u64::from(c.u16()?);
        let start_block = c.uint(h5.l)?;
        let max_direct = c.uint(h5.l)?;
        let max_heap_bits = u32::from(c.u16()?);
        let _start_rows = c.u16()?;
        let root = c.uint(h5.o)?;
        let rows = u64::from(c.u16()?);
        if !width.is_power_of_two()
            || !start_block.is_power_of_two()
            || !max_direct.is_power_of_two()
            || max_direct < start_block
            || max_heap_bits == 0
            || max_heap_bits > 64
            || rows > u64::from(max_heap_bits)
            || id_len < 2
        {
            return Err("fractal heap header is inconsistent".into());
        }
        let bits = |v: u64| 64 - v.saturating_sub(1).leading_zeros();
        Ok(FractalHeap {
            addr,
            id_len,
            width,
            start_block,
            max_direct,
            max_direct_rows: u64::from(log2(max_direct) - log2(start_block)) + 2,
            offset_bytes: max_heap_bits.div_ceil(8) as usize,
            length_bytes: bits(max_direct.min(max_managed).saturating_add(1)).div_ceil(8).max(1) as usize,
            root,
            rows,
            checksummed_direct: flags & 0x02 != 0,
            filtered: filter_len != 0,
            huge_direct: filter_len == 0 && h5.o + h5.l < id_len,
            huge_btree,
            huge: None,
        })
    }

    /// The object a heap ID names.
    fn object(&mut self, h5: &H5<'_>, id: &[u8]) -> Res<Vec<u8>> {
        let mut c = Cur::new(id);
        let flag = c.u8()?;
        if flag >> 6 != 0 {
            return Err(format!("unknown heap id version {}", flag >> 6).into());
        }
        match (flag >> 4) & 3 {
            0 => {
                let off = c.uint(self.offset_bytes)?;
                let len = c.uint(self.length_bytes)?;
                self.managed(h5, off, value_len(len)?)
            }
            1 => self.huge_object(h5, &mut c),
            2 => {
                // Tiny objects live in the ID itself; IDs longer than 18 bytes use 12 bits for
                // the length.
                let len = if self.id_len <= 18 {
                    usize::from(flag & 0x0f) + 1
                } else {
                    (usize::from(flag & 0x0f) << 8 | usize::from(c.u8()?)) + 1
                };
                Ok(c.bytes(len)?.to_vec())
            }
            t => Err(format!("unknown heap id type {t}").into()),
        }
    }

    /// A huge object: stored by itself in the file, found from its ID directly or through the
    /// heap's huge object B-tree.
    fn huge_object(&mut self, h5: &H5<'_>, c: &mut Cur<'_>) -> Res<Vec<u8>> {
        if self.filtered {
            return unsupported("huge object in a filtered fractal heap");
        }
        let (addr, len) = if self.huge_direct {
            (c.uint(h5.o)?, c.uint(h5.l)?)
        } else {
            let key = c.uint((self.id_len - 1).min(8))?;
            if self.huge.is_none() {
                self.huge = Some(self.huge_records(h5)?);
            }
            let found = self.huge.as_ref().and_then(|h| h.get(&key)).copied();
            found.ok_or_else(|| format!("huge heap object {key} not found"))?
        };
        h5.read(addr, value_len(len)?)
    }

    /// The huge object B-tree's records: (address, length) by ID.
    fn huge_records(&self, h5: &H5<'_>) -> Res<std::collections::BTreeMap<u64, (u64, u64)>> {
        if h5.undefined(self.huge_btree) {
            return Err("huge heap object without a huge object b-tree".into());
        }
        let (kind, records) =
            btree_records(h5, self.huge_btree, &[1, 2]).map_err(|e| e.context("huge object b-tree"))?;
        if kind == 2 {
            return unsupported("filtered huge heap object");
        }
        records
            .iter()
            .map(|r| {
                let mut c = Cur::new(r);
                let (addr, len) = (c.uint(h5.o)?, c.uint(h5.l)?);
                Ok((c.uint(h5.l)?, (addr, len)))
            })
            .collect()
    }

    /// Size of the blocks in row `r` of the doubling table (`None` past 2^64).
    fn row_size(&self, r: u64) -> Option<u64> {
        if r < 2 {
            Some(self.start_block)
        } else {
            1u64.checked_shl(u32::try_from(r - 1).ok()?)
                .filter(|&m| m != 0)
                .and_then(|m| self.start_block.checked_mul(m))
        }
    }

    /// The direct block holding heap offset `off`: its address, heap offset and size. Walks
    /// down from the root through indirect blocks.
    fn direct_block(&self, h5: &H5<'_>, off: u64) -> Res<(u64, u64, u64)> {
        if self.rows == 0 {
            return Ok((self.root, 0, self.max_direct));
        }
        let (mut block, mut rows, mut block_off) = (self.root, self.rows, 0u64);
        for _ in 0..MAX_HEAP_DEPTH {
            self.block_header(h5, block, b"FHIB", block_off)?;
            let rel = off.checked_sub(block_off).ok_or("heap offset before its block")?;
            // Find the row and column of the block holding `rel`.
            let mut row_start = 0u64;
            let mut found = None;
            for r in 0..rows {
                let size = self.row_size(r).ok_or("heap row too large")?;
                let row_end = size.checked_mul(self.width).and_then(|n| n.checked_add(row_start));
                let Some(row_end) = row_end else { break };
                if rel < row_end {
                    let col = (rel - row_start) / size;
                    found = Some((r, col, size, row_start + col * size));
                    break;
                }
                row_start = row_end;
            }
            let (r, col, size, start) = found.ok_or("heap offset past its indirect block")?;
            let direct_rows = rows.min(self.max_direct_rows);
            let entry = if size <= self.max_direct {
                r * self.width + col
            } else {
                direct_rows * self.width + (r - self.max_direct_rows) * self.width + col
            };
            let head = (5 + h5.o + self.offset_bytes) as u64;
            let at =
                entry.checked_mul(h5.o as u64).and_then(|e| e.checked_add(head)).and_then(|e| e.checked_add(block));
            let raw = h5.read(at.ok_or("heap block entry overflows")?, h5.o)?;
            let child = Cur::new(&raw).uint(h5.o)?;
            if h5.undefined(child) {
                return Err("object in an unallocated heap block".into());
            }
            let child_off = block_off.checked_add(start).ok_or("heap offset overflows")?;
            if size <= self.max_direct {
                return Ok((child, child_off, size));
            }
            // A child indirect block spanning `size` bytes has as many rows as fit.
            let first_rows = self.start_block.saturating_mul(self.width);
            rows = u64::from(log2(size).saturating_sub(log2(first_rows))) + 1;
            block = child;
            block_off = child_off;
        }
        Err("fractal heap indirect blocks nest too deep".into())
    }

    /// Check the header of the heap block at `addr`: its signature, heap and heap offset (a
    /// pointer to the wrong block, or back up the tree, fails here).
    fn block_header(&self, h5: &H5<'_>, addr: u64, sig: &[u8], block_off: u64) -> Res<()> {
        let head = h5.read(addr, 5 + h5.o + self.offset_bytes)?;
        let mut c = Cur::new(&head);
        let what = if sig == b"FHIB" { "indirect" } else { "direct" };
        if c.bytes(4)? != sig {
            return Err(format!("no {what} heap block at address {addr}").into());
        }
        c.skip(1)?;
        if c.uint(h5.o)? != self.addr || c.uint(self.offset_bytes)? != block_off {
            return Err(format!("{what} heap block at address {addr} belongs elsewhere").into());
        }
        Ok(())
    }

    fn managed(&self, h5: &H5<'_>, off: u64, len: usize) -> Res<Vec<u8>> {
        if self.filtered {
            return unsupported("filtered fractal heap");
        }
        let (block, block_off, block_size) = self.direct_block(h5, off)?;
        self.block_header(h5, block, b"FHDB", block_off)?;
        let header = 5 + h5.o + self.offset_bytes + if self.checksummed_direct { 4 } else { 0 };
        let rel = off.checked_sub(block_off).ok_or("heap offset before its block")?;
        if rel < header as u64 {
            return Err("heap object overlaps its block header".into());
        }
        if rel.saturating_add(len as u64) > block_size {
            return Err("heap object runs past its block".into());
        }
        h5.read(block.checked_add(rel).ok_or("address overflows")?, len)
    }
}

/// An object length from a heap ID or B-tree record, at most [`MAX_VALUE`].
fn value_len(len: u64) -> Res<usize> {
    usize::try_from(len).ok().filter(|&n| n <= MAX_VALUE).ok_or_else(|| format!("heap object of {len} bytes").into())
}

/// The shape of a version 2 B-tree's nodes, level by level, as HDF5 derives it from the node
/// and record sizes (`H5B2__hdr_init`).
struct BTreeShape {
    rec_size: usize,
    /// Bytes of a child's record count in an internal node's child pointer.
    nrec_size: usize,
    /// Most records of a node at each depth.
    max_nrec: Vec<u64>,
    /// Bytes of a child's total record count in pointers of a node at depth `d + 1`.
    cum_size: Vec<usize>,
}

/// Prefix and checksum of every B-tree node: signature, version, type, checksum.
const BTREE_NODE_OVERHEAD: u64 = 4 + 1 + 1 + 4;

impl BTreeShape {
    fn new(node_size: u64, rec_size: usize, depth: u16, o: usize) -> Res<BTreeShape> {
        let leaf = node_size.saturating_sub(BTREE_NODE_OVERHEAD) / rec_size.max(1) as u64;
        if rec_size == 0 || leaf == 0 {
            return Err("b-tree header is inconsistent".into());
        }
        let nrec_size = limit_enc_size(leaf);
        let mut shape = BTreeShape { rec_size, nrec_size, max_nrec: vec![leaf], cum_size: vec![0] };
        let mut cum = leaf;
        for d in 1..=usize::from(depth) {
            let ptr = (o + nrec_size + shape.cum_size.get(d - 1).copied().unwrap_or(0)) as u64;
            let max = node_size.saturating_sub(BTREE_NODE_OVERHEAD + ptr) / (rec_size as u64 + ptr);
            if max == 0 {
                return Err("b-tree header is inconsistent".into());
            }
            cum = max.saturating_add(1).saturating_mul(cum).saturating_add(max);
            shape.max_nrec.push(max);
            shape.cum_size.push(limit_enc_size(cum));
        }
        Ok(shape)
    }
}

/// All records of a version 2 B-tree of one of the types `kinds`, in key order: the type and
/// each record's bytes. Bounded in depth, nodes visited and records.
fn btree_records(h5: &H5<'_>, addr: u64, kinds: &[u8]) -> Res<(u8, Vec<Vec<u8>>)> {
    let head = h5.read(addr, 4 + 1 + 1 + 4 + 2 + 2 + 1 + 1 + h5.o + 2 + h5.l)?;
    let mut c = Cur::new(&head);
    if c.bytes(4)? != b"BTHD" {
        return Err(format!("no b-tree at address {addr}").into());
    }
    c.skip(1)?;
    let kind = c.u8()?;
    let node_size = u64::from(c.u32()?);
    let rec_size = usize::from(c.u16()?);
    let depth = c.u16()?;
    c.skip(2)?;
    let root = c.uint(h5.o)?;
    let count = u64::from(c.u16()?);
    let total = c.uint(h5.l)?;
    if !kinds.contains(&kind) {
        return Err(format!("unexpected b-tree type {kind}").into());
    }
    if depth > MAX_BTREE_DEPTH {
        return Err(format!("b-tree of depth {depth}").into());
    }
    if total > MAX_RECORDS {
        return unsupported(&format!("b-tree of {total} records (at most {MAX_RECORDS} are read)"));
    }
    if node_size > MAX_CHUNK as u64 {
        return Err("b-tree header is inconsistent".into());
    }
    if h5.undefined(root) || count == 0 {
        return Ok((kind, Vec::new()));
    }
    let shape = BTreeShape::new(node_size, rec_size, depth, h5.o)?;
    let mut walk = BTreeWalk { h5, kind, shape: &shape, limit: total, nodes: 0, out: Vec::new() };
    walk.node(root, usize::from(depth), count)?;
    Ok((kind, walk.out))
}

/// An in-order walk of a version 2 B-tree.
struct BTreeWalk<'w, 'a> {
    h5: &'w H5<'a>,
    kind: u8,
    shape: &'w BTreeShape,
    /// Records the header says the tree holds: more is a malformed (or looping) tree.
    limit: u64,
    nodes: usize,
    out: Vec<Vec<u8>>,
}

impl BTreeWalk<'_, '_> {
    fn node(&mut self, addr: u64, depth: usize, nrec: u64) -> Res<()> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err("b-tree has too many nodes".into());
        }
        if nrec > self.shape.max_nrec.get(depth).copied().unwrap_or(0) {
            return Err(format!("b-tree node at address {addr} holds too many records").into());
        }
        let o = self.h5.o;
        let records = nrec as usize * self.shape.rec_size;
        let ptr = if depth == 0 {
            0
        } else {
            o + self.shape.nrec_size + self.shape.cum_size.get(depth - 1).copied().unwrap_or(0)
        };
        let pointers = if depth == 0 { 0 } else { (nrec as usize + 1) * ptr };
        let node = self.h5.read(addr, 6 + records + pointers)?;
        let mut c = Cur::new(&node);
        let sig: &[u8] = if depth == 0 { b"BTLF" } else { b"BTIN" };
        if c.bytes(4)? != sig {
            return Err(format!("no b-tree node at address {addr}").into());
        }
        c.skip(1)?;
        if c.u8()? != self.kind {
            return Err(format!("b-tree node at address {addr} has another type").into());
        }
        let mut recs = Vec::with_capacity(nrec as usize);
        for _ in 0..nrec {
            recs.push(c.bytes(self.shape.rec_size)?);
        }
        if depth == 0 {
            for r in recs {
                self.push(r)?;
            }
            return Ok(());
        }
        let mut children = Vec::with_capacity(nrec as usize + 1);
        for _ in 0..=nrec {
            let child = c.uint(o)?;
            let child_nrec = c.uint(self.shape.nrec_size)?;
            c.skip(ptr - o - self.shape.nrec_size)?;
            children.push((child, child_nrec));
        }
        for (i, (child, child_nrec)) in children.into_iter().enumerate() {
            self.node(child, depth - 1, child_nrec)?;
            if let Some(r) = recs.get(i) {
                self.push(r)?;
            }
        }
        Ok(())
    }

    fn push(&mut self, rec: &[u8]) -> Res<()> {
        if self.out.len() as u64 >= self.limit {
            return Err("b-tree holds more records than its header says".into());
        }
        self.out.push(rec.to_vec());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_never_panics() {
        let mut c = Cur::new(&[1, 2, 3]);
        assert_eq!(c.u16().unwrap(), 0x0201);
        assert!(c.u16().is_err());
        assert!(c.uint(9).is_err());
        assert!(c.bytes(usize::MAX).is_err());
    }

    #[test]
    fn btree_shape_matches_hdf5() {
        // HDF5's attribute name index: 512-byte nodes of 17-byte records, 8-byte addresses.
        let s = BTreeShape::new(512, 17, 2, 8).unwrap();
        assert_eq!(s.max_nrec, [29, 18, 17]);
        assert_eq!(s.nrec_size, 1);
        assert_eq!(s.cum_size, [0, 2, 2]);
        assert_eq!(limit_enc_size(255), 1);
        assert_eq!(limit_enc_size(256), 2);
        assert!(BTreeShape::new(10, 17, 0, 8).is_err());
        assert!(BTreeShape::new(40, 17, 1, 8).is_err());
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff(b"\x89HDF\r\n\x1a\n\x00"), Some(Format::Hdf5));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n"), None);
    }
}
