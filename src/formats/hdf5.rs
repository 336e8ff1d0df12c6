//! HDF5, as far as legacy Keras `.h5` models need it: the superblock (versions 0 to 3), the
//! root group's object header (versions 1 and 2, with continuation blocks) and its attribute
//! messages, compact or in dense storage (fractal heap indexed by a version 2 B-tree). The
//! root attributes `model_config` and `training_config` hold the Keras JSON that
//! `load_model` deserializes; they are checked like a `.keras` config. Dataset contents are
//! never read.
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
        code: "hdf5-unsupported",
        severity: Severity::Error,
        summary: "an hdf5 file stores its root attributes in a layout modelgate cannot read yet",
        fix: "re-save the model with h5py defaults (libver='earliest') or as a .keras file",
    },
];

const SIGNATURE: &[u8] = b"\x89HDF\r\n\x1a\n";
/// Root attributes that hold Keras JSON.
const CONFIG_ATTRS: &[&str] = &["model_config", "training_config"];
/// Largest attribute value read.
const MAX_VALUE: usize = 64 << 20;
/// Largest object header chunk read.
const MAX_CHUNK: usize = 16 << 20;
/// Object header messages and continuation blocks followed.
const MAX_MESSAGES: usize = 100_000;
const MAX_CONTINUATIONS: usize = 10_000;

pub fn sniff(head: &[u8]) -> Option<Format> {
    head.starts_with(SIGNATURE).then_some(Format::Hdf5)
}

type Res<T> = Result<T, String>;

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
            return Err(format!("integer field of {n} bytes"));
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

/// Bytes read from one file at most: crafted headers can point many times at the same data.
const MAX_READ: u64 = 512 << 20;

/// The file: sizes of offsets and lengths from the superblock, and the base address.
struct H5<'a> {
    src: &'a dyn Source,
    o: usize,
    l: usize,
    base: u64,
    spent: std::cell::Cell<u64>,
}

impl H5<'_> {
    /// `n` bytes at file address `addr` (relative to the base address).
    fn read(&self, addr: u64, n: usize) -> Res<Vec<u8>> {
        let spent = self.spent.get().saturating_add(n as u64);
        if spent > MAX_READ {
            return Err(format!("more than {MAX_READ} bytes of structure read"));
        }
        self.spent.set(spent);
        let at = addr.checked_add(self.base).ok_or("address overflows")?;
        if at.checked_add(n as u64).is_none_or(|end| end > self.src.len()) {
            return Err(format!("{n} bytes at address {addr} run past the end of the file"));
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
    problems: Vec<String>,
}

/// Where the superblock of a file with a user block is: HDF5 looks at offsets 512, 1024,
/// 2048, ... (offset 0 is found by [`sniff`]).
pub fn find_superblock(src: &dyn Source) -> Option<u64> {
    let mut at = 512u64;
    while at.checked_add(8)? <= src.len() {
        let mut sig = [0u8; 8];
        if read_exact_at(src, at, &mut sig).is_ok() && sig == SIGNATURE {
            return Some(at);
        }
        at = at.checked_mul(2)?;
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
    let attrs = match superblock(src, at).and_then(|(h5, root)| root_attributes(&h5, root)) {
        Ok(a) => a,
        Err(e) => {
            scan.finding(Finding::new("hdf5-malformed", Severity::Error, format!("cannot read the root group: {e}")));
            return Format::Hdf5;
        }
    };
    for p in &attrs.problems {
        let code = if p.starts_with("unsupported") { "hdf5-unsupported" } else { "hdf5-malformed" };
        scan.finding(Finding::new(code, Severity::Error, p.clone()));
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
fn superblock(src: &dyn Source, at: u64) -> Res<(H5<'_>, u64)> {
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
            let base = c.uint(o)?;
            c.skip(3 * o)?; // free-space, end-of-file and driver addresses
            c.skip(o)?; // root symbol table entry: link name offset
            (o, l, base, c.uint(o)?)
        }
        2 | 3 => {
            let o = usize::from(c.u8()?);
            let l = usize::from(c.u8()?);
            c.skip(1)?;
            check_sizes(o, l)?;
            let base = c.uint(o)?;
            c.skip(2 * o)?; // superblock extension and end-of-file addresses
            (o, l, base, c.uint(o)?)
        }
        v => return Err(format!("unknown superblock version {v}")),
    };
    Ok((H5 { src, o, l, base, spent: std::cell::Cell::new(0) }, root))
}

fn check_sizes(o: usize, l: usize) -> Res<()> {
    if [2, 4, 8].contains(&o) && [2, 4, 8].contains(&l) {
        Ok(())
    } else {
        Err(format!("invalid sizes of offsets ({o}) or lengths ({l})"))
    }
}

/// One object header message.
struct Msg {
    kind: u16,
    data: Vec<u8>,
}

/// Every message of the object header at `addr`, following continuation blocks.
fn object_messages(h5: &H5<'_>, addr: u64) -> Res<Vec<Msg>> {
    let first = h5.read_up_to(addr, 16)?;
    let mut out = Vec::new();
    let mut pending: Vec<(u64, u64)> = Vec::new();
    let v2 = first.starts_with(b"OHDR");
    let mut creation_order = false;
    if v2 {
        let mut c = Cur::new(&first);
        c.skip(4)?;
        let version = c.u8()?;
        if version != 2 {
            return Err(format!("unknown object header version {version}"));
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
        let size_bytes = h5.read(addr + skip as u64, size_len)?;
        let size = Cur::new(&size_bytes).uint(size_len)?;
        let start = addr + (skip + size_len) as u64;
        let chunk =
            h5.read(start, usize::try_from(size).ok().filter(|&s| s <= MAX_CHUNK).ok_or("object header too large")?)?;
        v2_messages(&chunk, creation_order, (h5.o, h5.l), &mut out, &mut pending)?;
    } else {
        let mut c = Cur::new(&first);
        let version = c.u8()?;
        if version != 1 {
            return Err(format!("unknown object header version {version}"));
        }
        c.skip(1)?;
        let _count = c.u16()?;
        c.skip(4)?;
        let size = c.u32()? as usize;
        if size > MAX_CHUNK {
            return Err("object header too large".into());
        }
        let chunk = h5.read(addr + 16, size)?;
        v1_messages(&chunk, (h5.o, h5.l), &mut out, &mut pending)?;
    }
    let mut followed = 0;
    while let Some((at, len)) = pending.pop() {
        followed += 1;
        if followed > MAX_CONTINUATIONS || out.len() > MAX_MESSAGES {
            return Err("too many object header messages".into());
        }
        let len = usize::try_from(len).ok().filter(|&s| s <= MAX_CHUNK).ok_or("continuation block too large")?;
        let block = h5.read(at, len)?;
        if v2 {
            if !block.starts_with(b"OCHK") {
                return Err(format!("continuation block at {at} has no OCHK signature"));
            }
            let body = block.get(4..len.saturating_sub(4)).unwrap_or(&[]);
            v2_messages(body, creation_order, (h5.o, h5.l), &mut out, &mut pending)?;
        } else {
            v1_messages(&block, (h5.o, h5.l), &mut out, &mut pending)?;
        }
    }
    Ok(out)
}

const MSG_ATTRIBUTE: u16 = 0x0c;
const MSG_CONTINUATION: u16 = 0x10;
const MSG_ATTRIBUTE_INFO: u16 = 0x15;

fn continuation(data: &[u8], pending: &mut Vec<(u64, u64)>, o_l: (usize, usize)) -> Res<()> {
    let mut c = Cur::new(data);
    pending.push((c.uint(o_l.0)?, c.uint(o_l.1)?));
    Ok(())
}

fn v1_messages(chunk: &[u8], ol: (usize, usize), out: &mut Vec<Msg>, pending: &mut Vec<(u64, u64)>) -> Res<()> {
    let mut c = Cur::new(chunk);
    while c.rest().len() >= 8 {
        let kind = c.u16()?;
        let size = usize::from(c.u16()?);
        c.skip(4)?;
        let data = c.bytes(size)?;
        keep_message(kind, data, ol, out, pending)?;
    }
    Ok(())
}

/// Follow a continuation message or keep an attribute message; bounded in count.
fn keep_message(
    kind: u16,
    data: &[u8],
    ol: (usize, usize),
    out: &mut Vec<Msg>,
    pending: &mut Vec<(u64, u64)>,
) -> Res<()> {
    if kind == MSG_CONTINUATION {
        continuation(data, pending, ol)?;
    } else if kind == MSG_ATTRIBUTE || kind == MSG_ATTRIBUTE_INFO {
        out.push(Msg { kind, data: data.to_vec() });
    }
    if out.len() > MAX_MESSAGES {
        return Err("too many object header messages".into());
    }
    Ok(())
}

fn v2_messages(
    chunk: &[u8],
    creation_order: bool,
    ol: (usize, usize),
    out: &mut Vec<Msg>,
    pending: &mut Vec<(u64, u64)>,
) -> Res<()> {
    let mut c = Cur::new(chunk);
    let head = if creation_order { 6 } else { 4 };
    while c.rest().len() >= head {
        let kind = u16::from(c.u8()?);
        let size = usize::from(c.u16()?);
        c.skip(head - 3)?;
        let data = c.bytes(size)?;
        keep_message(kind, data, ol, out, pending)?;
    }
    Ok(())
}

fn root_attributes(h5: &H5<'_>, root: u64) -> Res<RootAttrs> {
    let msgs = object_messages(h5, root)?;
    let mut attrs = RootAttrs::default();
    for m in &msgs {
        match m.kind {
            MSG_ATTRIBUTE => attribute(h5, &m.data, &mut attrs),
            _ => match dense_attributes(h5, &m.data) {
                Ok(list) => {
                    for a in list {
                        attribute(h5, &a, &mut attrs);
                    }
                }
                Err(e) => attrs.problems.push(format!("cannot read dense attribute storage of the root group: {e}")),
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
            Some(n) => format!("cannot read root attribute {n:?}: {e}"),
            None => format!("cannot read a root attribute: {e}"),
        }),
    }
}

type AttrResult = Result<(String, Option<String>), (Option<String>, String)>;

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
    let named = |e: String| (Some(name.clone()), e);
    if !(1..=3).contains(&version) {
        return Err(named(format!("unknown attribute message version {version}")));
    }
    if flags & 0x03 != 0 {
        return Err(named("unsupported: shared datatype or dataspace".into()));
    }
    let dt = c.bytes(pad(dt_len)).map_err(named)?;
    let ds = c.bytes(pad(ds_len)).map_err(named)?;
    let value = string_value(h5, dt, ds, c.rest()).map_err(named)?;
    Ok((name, Some(value)))
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
        v => return Err(format!("unknown dataspace version {v}")),
    }
    let mut n: u64 = 1;
    for _ in 0..rank {
        n = n.checked_mul(c.uint(l)?).ok_or("dataspace overflows")?;
    }
    Ok(n)
}

/// The attribute's value as text: a fixed-length or variable-length string (the first element
/// when it is an array).
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
            let raw = data.get(..size.min(MAX_VALUE)).ok_or("string value runs past the attribute")?;
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            Ok(String::from_utf8_lossy(raw.get(..end).unwrap_or(raw)).into_owned())
        }
        9 if bits.first().is_some_and(|b| b & 0x0f == 1) => {
            let mut d = Cur::new(data);
            let len = d.u32()? as usize;
            let coll = d.uint(h5.o)?;
            let index = d.u32()?;
            let bytes = global_heap_object(h5, coll, index)?;
            let raw = bytes.get(..len.min(bytes.len())).unwrap_or(&bytes);
            Ok(String::from_utf8_lossy(raw).into_owned())
        }
        // A sequence of bytes (h5py's vlen uint8) is not a config; Keras never writes one.
        k => Err(format!("unsupported: attribute of datatype class {k} is not a string")),
    }
}

/// One object of a global heap collection.
fn global_heap_object(h5: &H5<'_>, addr: u64, index: u32) -> Res<Vec<u8>> {
    let head = h5.read(addr, 8 + h5.l)?;
    let mut c = Cur::new(&head);
    if c.bytes(4)? != b"GCOL" {
        return Err(format!("no global heap at address {addr}"));
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
    Err(format!("global heap object {index} not found at address {addr}"))
}

/// Attribute messages held in dense storage (attribute info message `data`).
fn dense_attributes(h5: &H5<'_>, info: &[u8]) -> Res<Vec<Vec<u8>>> {
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
    let heap = FractalHeap::open(h5, heap_addr)?;
    let ids = btree_records(h5, btree_addr, heap.id_len)?;
    ids.iter().map(|id| heap.object(h5, id)).collect()
}

/// The parts of a fractal heap header needed to find managed and tiny objects.
struct FractalHeap {
    id_len: usize,
    width: u64,
    start_block: u64,
    max_direct: u64,
    /// Bytes of a block offset (from the maximum heap size in bits).
    offset_bytes: usize,
    /// Bytes of an object length inside a heap ID.
    length_bytes: usize,
    root: u64,
    rows: u64,
    checksummed_direct: bool,
    filtered: bool,
}

impl FractalHeap {
    fn open(h5: &H5<'_>, addr: u64) -> Res<FractalHeap> {
        let head = h5.read(addr, 4 + 1 + 2 + 2 + 1 + 4 + 12 * 8 + 2 + 3 * 8 + 2 + 2 + 8 + 2)?;
        let mut c = Cur::new(&head);
        if c.bytes(4)? != b"FRHP" {
            return Err(format!("no fractal heap at address {addr}"));
        }
        c.skip(1)?;
        let id_len = usize::from(c.u16()?);
        let filter_len = c.u16()?;
        let flags = c.u8()?;
        let max_managed = u64::from(c.u32()?);
        c.skip(h5.l + h5.o + h5.l + h5.o + 8 * h5.l)?;
        let width = u64::from(c.u16()?);
        let start_block = c.uint(h5.l)?;
        let max_direct = c.uint(h5.l)?;
        let max_heap_bits = u32::from(c.u16()?);
        let _start_rows = c.u16()?;
        let root = c.uint(h5.o)?;
        let rows = u64::from(c.u16()?);
        if width == 0 || start_block == 0 || max_direct < start_block || max_heap_bits == 0 || max_heap_bits > 64 {
            return Err("fractal heap header is inconsistent".into());
        }
        let bits = |v: u64| 64 - v.saturating_sub(1).leading_zeros();
        Ok(FractalHeap {
            id_len,
            width,
            start_block,
            max_direct,
            offset_bytes: max_heap_bits.div_ceil(8) as usize,
            length_bytes: bits(max_direct.min(max_managed).saturating_add(1)).div_ceil(8).max(1) as usize,
            root,
            rows,
            checksummed_direct: flags & 0x02 != 0,
            filtered: filter_len != 0,
        })
    }

    /// The object a heap ID names.
    fn object(&self, h5: &H5<'_>, id: &[u8]) -> Res<Vec<u8>> {
        let mut c = Cur::new(id);
        let kind = c.u8()?;
        match (kind >> 4) & 3 {
            0 => {
                let off = c.uint(self.offset_bytes)?;
                let len = usize::try_from(c.uint(self.length_bytes)?).map_err(|_| "object too large")?;
                if len > MAX_VALUE {
                    return Err("object too large".into());
                }
                self.managed(h5, off, len)
            }
            2 => {
                let len = usize::from(kind & 0x0f) + 1;
                Ok(c.bytes(len)?.to_vec())
            }
            _ => Err("unsupported: huge object in fractal heap (attribute larger than a heap block)".into()),
        }
    }

    /// Size of the blocks in row `r` of the doubling table.
    fn row_size(&self, r: u64) -> u64 {
        if r < 2 {
            self.start_block
        } else {
            self.start_block.checked_shl((r - 1) as u32).unwrap_or(u64::MAX)
        }
    }

    fn managed(&self, h5: &H5<'_>, off: u64, len: usize) -> Res<Vec<u8>> {
        if self.filtered {
            return Err("unsupported: filtered fractal heap".into());
        }
        let header = 5 + h5.o + self.offset_bytes + if self.checksummed_direct { 4 } else { 0 };
        let (block, block_off) = if self.rows == 0 {
            (self.root, 0)
        } else {
            // Find the row and column of the direct block holding `off` in the root indirect block.
            let mut row_start = 0u64;
            let mut found = None;
            for r in 0..self.rows {
                let size = self.row_size(r);
                if size > self.max_direct {
                    break;
                }
                let row_len = size.saturating_mul(self.width);
                if off < row_start.saturating_add(row_len) {
                    let col = (off - row_start) / size;
                    found = Some((r * self.width + col, row_start + col * size));
                    break;
                }
                row_start = row_start.saturating_add(row_len);
            }
            let (index, start) = found.ok_or("unsupported: object in a nested indirect block")?;
            let ib_head = 5 + h5.o + self.offset_bytes;
            let at = self.root + ib_head as u64 + index * h5.o as u64;
            let raw = h5.read(at, h5.o)?;
            (Cur::new(&raw).uint(h5.o)?, start)
        };
        if h5.undefined(block) {
            return Err("object in an unallocated heap block".into());
        }
        let sig = h5.read(block, 4)?;
        if sig != b"FHDB" {
            return Err(format!("no direct heap block at address {block}"));
        }
        let rel = off.checked_sub(block_off).ok_or("heap offset before its block")?;
        if rel < header as u64 {
            return Err("heap object overlaps its block header".into());
        }
        h5.read(block + rel, len)
    }
}

/// Heap IDs of a version 2 B-tree of attribute name records (type 8).
fn btree_records(h5: &H5<'_>, addr: u64, id_len: usize) -> Res<Vec<Vec<u8>>> {
    let head = h5.read(addr, 4 + 1 + 1 + 4 + 2 + 2 + 1 + 1 + h5.o + 2 + h5.l)?;
    let mut c = Cur::new(&head);
    if c.bytes(4)? != b"BTHD" {
        return Err(format!("no b-tree at address {addr}"));
    }
    c.skip(1)?;
    let kind = c.u8()?;
    let node_size = c.u32()? as usize;
    let rec_size = usize::from(c.u16()?);
    let depth = c.u16()?;
    c.skip(2)?;
    let root = c.uint(h5.o)?;
    let count = usize::from(c.u16()?);
    if kind != 8 && kind != 9 {
        return Err(format!("unexpected b-tree type {kind}"));
    }
    if depth != 0 {
        return Err("unsupported: attribute b-tree deeper than one node".into());
    }
    if rec_size < id_len || node_size > MAX_CHUNK || count.saturating_mul(rec_size) > node_size {
        return Err("b-tree header is inconsistent".into());
    }
    if h5.undefined(root) || count == 0 {
        return Ok(Vec::new());
    }
    let node = h5.read(root, 6 + count * rec_size)?;
    let mut c = Cur::new(&node);
    if c.bytes(4)? != b"BTLF" {
        return Err(format!("no b-tree leaf at address {root}"));
    }
    c.skip(2)?;
    (0..count).map(|_| Ok(c.bytes(rec_size)?.get(..id_len).unwrap_or(&[]).to_vec())).collect()
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
    fn sniffing() {
        assert_eq!(sniff(b"\x89HDF\r\n\x1a\n\x00"), Some(Format::Hdf5));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n"), None);
    }
}
