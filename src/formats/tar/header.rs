//! Tar headers read the way CPython's `tarfile` reads them (3.11: `nti`, `nts`,
//! `TarInfo.frombuf`, `_proc_member`, `_proc_builtin`, `_proc_gnulong`, `_proc_sparse`,
//! `_proc_pax`, `_proc_gnusparse_00/01/10`, `_apply_pax_info`, `TarFile.next`), since torch's
//! legacy loader opens its tar files with `tarfile` and decides by what `tarfile` lists.
//!
//! What matters is *which* members `tarfile` lists, under *which* names, and *which* bytes each
//! yields: numeric fields go through Python's `int(s, 8)` (signs, `0o` prefixes, underscores,
//! Python's whitespace), the ustar prefix is joined for every header type outside GNU's, an
//! old-style regular file whose name ends in `/` is a directory (no data), the outermost GNU
//! long name or pax record wins, pax sizes move the next header only for local headers, global
//! pax records apply to every later member, and sparse members are virtual files with holes.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use crate::source::{read_up_to, Input, Source};
use std::io::{self, Read};
use std::sync::{Arc, Mutex};

pub const BLOCK: u64 = 512;
/// GNU long names and pax records are held in memory; real ones are tiny.
pub const MAX_META: u64 = 1 << 20;
/// Extended headers (GNU long names, pax) before one member; Python recurses once per header
/// and gives up near its recursion limit, real archives have at most a few.
const MAX_META_CHAIN: u32 = 64;
/// Sparse map entries of one member.
const MAX_SPARSE: usize = 100_000;

/// Header type flags (`tarfile.REGTYPE` and friends).
pub const REGTYPE: u8 = b'0';
pub const AREGTYPE: u8 = 0;
pub const LNKTYPE: u8 = b'1';
pub const SYMTYPE: u8 = b'2';
pub const DIRTYPE: u8 = b'5';
pub const CONTTYPE: u8 = b'7';
pub const GNUTYPE_SPARSE: u8 = b'S';

/// `tarfile.SUPPORTED_TYPES`: every other type is read as a regular file.
fn supported(kind: u8) -> bool {
    matches!(kind, b'0' | 0 | b'1' | b'2' | b'5' | b'6' | b'7' | b'3' | b'4' | b'L' | b'K' | b'S')
}

/// One member as `tarfile` lists it.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub kind: u8,
    pub linkname: String,
    /// Offset of the member's first header (`TarInfo.offset`).
    pub offset: u64,
    /// Where its data begins (`offset_data`).
    pub start: u64,
    /// Its size as `tarfile` reports it (pax and GNU sparse sizes applied).
    pub size: u64,
    /// GNU sparse map `(offset, numbytes)`: the member is then a virtual file of `size` bytes
    /// whose data blocks follow each other from `start`, with zeros in between.
    pub sparse: Option<Vec<(u64, u64)>>,
    /// The checksum of the member's header (or of an extended header before it) is wrong, but
    /// the header has ustar magic: `tarfile` stops there while GNU tar reads on (and so does
    /// this reader).
    pub bad_checksum: Option<(i128, i128)>,
}

impl Member {
    /// `TarInfo.isreg()`.
    pub fn is_reg(&self) -> bool {
        matches!(self.kind, REGTYPE | AREGTYPE | CONTTYPE | GNUTYPE_SPARSE)
    }
    /// `extractfile` yields this member's own bytes (regular files and unknown types).
    pub fn has_data(&self) -> bool {
        self.is_reg() || !supported(self.kind)
    }
    pub fn is_link(&self) -> bool {
        matches!(self.kind, LNKTYPE | SYMTYPE)
    }
}

/// Why a header could not be read (`tarfile`'s `HeaderError` family and the rest).
#[derive(Debug)]
pub enum HeaderErr {
    /// No bytes at all (`EmptyHeaderError`).
    Empty,
    /// Fewer than 512 bytes (`TruncatedHeaderError`).
    Truncated,
    /// A block of zeros (`EOFHeaderError`): the end of the archive.
    Eof,
    /// A bad checksum or number (`InvalidHeaderError`).
    Invalid(String),
    /// A header after an extended header is bad (`SubsequentHeaderError`: `tarfile` raises
    /// `ReadError` wherever it happens), or anything else that stops `tarfile` with an
    /// exception (a `ValueError` from a pax number, a recursion too deep, a read error).
    Fatal(String),
}

/// Python's `str.isspace()` for ASCII, which `str.strip()` and `int()` use.
fn py_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c' | '\x1c' | '\x1d' | '\x1e' | '\x1f') || c.is_whitespace()
}

/// Python's `int(text, base)` for ASCII digits: surrounding whitespace, a sign, for base 8 an
/// optional `0o` prefix (after which one `_` may follow), and single underscores between
/// digits. `Err` holds whether the text has non-ASCII characters (Python accepts Unicode
/// digits, which this reader does not judge).
pub fn py_int(text: &str, base: u32) -> Result<i128, bool> {
    let t = text.trim_matches(py_space);
    if !t.is_ascii() {
        return Err(true);
    }
    let (neg, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, t.get(1..).unwrap_or("")),
        Some(b'+') => (false, t.get(1..).unwrap_or("")),
        _ => (false, t),
    };
    let (digits, prefixed) = match rest.get(..2) {
        Some("0o" | "0O") if base == 8 => (rest.get(2..).unwrap_or(""), true),
        _ => (rest, false),
    };
    let digits = if prefixed { digits.strip_prefix('_').unwrap_or(digits) } else { digits };
    if digits.is_empty() || digits.starts_with('_') || digits.ends_with('_') || digits.contains("__") {
        return Err(false);
    }
    let mut n: i128 = 0;
    for c in digits.chars().filter(|&c| c != '_') {
        let d = c.to_digit(base).ok_or(false)?;
        n = n.checked_mul(i128::from(base)).and_then(|n| n.checked_add(i128::from(d))).ok_or(false)?;
    }
    Ok(if neg { -n } else { n })
}

/// `tarfile.nts`: the bytes up to the first NUL.
fn nts(field: &[u8]) -> &[u8] {
    field.split(|&b| b == 0).next().unwrap_or(&[])
}

/// `tarfile.nti`: a numeric field, GNU base-256 when its first byte is 0o200 (positive) or
/// 0o377 (negative), else octal text as `int(nts(s).strip() or "0", 8)` reads it. `None` where
/// `tarfile` raises `InvalidHeaderError`.
pub fn nti(field: &[u8]) -> Option<i128> {
    match field.first() {
        Some(&b @ (0x80 | 0xff)) => {
            let mut n: i128 = 0;
            for &d in field.get(1..)? {
                n = n.checked_mul(256)?.checked_add(i128::from(d))?;
            }
            if b == 0xff {
                let span = 256i128.checked_pow(u32::try_from(field.len().checked_sub(1)?).ok()?)?;
                n -= span;
            }
            Some(n)
        }
        _ => {
            let text = std::str::from_utf8(nts(field)).ok().filter(|t| t.is_ascii())?;
            let t = text.trim_matches(py_space);
            if t.is_empty() {
                Some(0)
            } else {
                py_int(t, 8).ok()
            }
        }
    }
}

/// `tarfile.calc_chksums`: the unsigned and the signed byte sum, the checksum field read as spaces.
fn checksums(block: &[u8]) -> (i128, i128) {
    let mut unsigned = 0i128;
    let mut signed = 0i128;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += i128::from(b);
        signed += i128::from(b as i8);
    }
    (unsigned, signed)
}

/// `TarInfo._block`: `count` rounded up to whole blocks.
fn block_up(count: u64) -> Option<u64> {
    count.checked_add(BLOCK - 1).map(|s| s / BLOCK * BLOCK)
}

/// A size field as an offset: `tarfile` lets negative sizes move backwards, which ends in an
/// exception or a loop; such headers are refused here.
fn size_of(n: i128, what: &str) -> Result<u64, HeaderErr> {
    u64::try_from(n).map_err(|_| HeaderErr::Fatal(format!("{what} of {n} bytes")))
}

/// A 512-byte block that `tarfile` accepts as a header (`TarInfo.frombuf` succeeds): not all
/// zeros, every numeric field a number, and a right checksum. Pre-POSIX (v7) tars have no
/// magic, so this is what tells them apart.
pub fn is_header(block: &[u8]) -> bool {
    block.get(..BLOCK as usize).is_some_and(|b| frombuf(b, false).is_ok())
}

/// An old GNU sparse header's map entries, whether extension blocks follow, and the real size.
type OldSparse = (Vec<(i128, i128)>, bool, i128);

/// The fields of one header block (`TarInfo.frombuf`).
struct Raw {
    name: String,
    kind: u8,
    size: i128,
    linkname: String,
    /// GNU sparse: the header's map entries, whether extension blocks follow, the real size.
    sparse: Option<OldSparse>,
    /// (stored, computed) checksums of a ustar header read in spite of them.
    bad_checksum: Option<(i128, i128)>,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `lenient`: a ustar header with a wrong checksum is read anyway (and marked).
fn frombuf(buf: &[u8], lenient: bool) -> Result<Raw, HeaderErr> {
    if buf.is_empty() {
        return Err(HeaderErr::Empty);
    }
    if buf.len() as u64 != BLOCK {
        return Err(HeaderErr::Truncated);
    }
    if buf.iter().all(|&b| b == 0) {
        return Err(HeaderErr::Eof);
    }
    let field = |a: usize, b: usize| buf.get(a..b).unwrap_or(&[]);
    let num =
        |a: usize, b: usize, what: &str| nti(field(a, b)).ok_or_else(|| HeaderErr::Invalid(format!("invalid {what}")));
    let chksum = num(148, 156, "checksum")?;
    let (unsigned, signed) = checksums(buf);
    let mut bad_checksum = None;
    if chksum != unsigned && chksum != signed {
        if !(lenient && field(257, 262) == b"ustar") {
            return Err(HeaderErr::Invalid(format!("bad checksum ({chksum}, the header sums to {unsigned})")));
        }
        bad_checksum = Some((chksum, unsigned));
    }
    num(100, 108, "mode")?;
    num(108, 116, "uid")?;
    num(116, 124, "gid")?;
    let size = num(124, 136, "size")?;
    num(136, 148, "mtime")?;
    let mut kind = buf.get(156).copied().unwrap_or(0);
    let mut name = text(nts(field(0, 100)));
    let linkname = text(nts(field(157, 257)));
    num(329, 337, "devmajor")?;
    num(337, 345, "devminor")?;
    let prefix = text(nts(field(345, 500)));
    // Old V7 tar format represents a directory as a regular file with a trailing slash.
    if kind == AREGTYPE && name.ends_with('/') {
        kind = DIRTYPE;
    }
    let mut sparse = None;
    if kind == GNUTYPE_SPARSE {
        let mut structs = Vec::new();
        for i in 0..4 {
            let pos = 386 + 24 * i;
            structs.push((num(pos, pos + 12, "sparse offset")?, num(pos + 12, pos + 24, "sparse size")?));
        }
        let extended = buf.get(482).is_some_and(|&b| b != 0);
        sparse = Some((structs, extended, num(483, 495, "sparse real size")?));
    }
    if kind == DIRTYPE {
        name = name.trim_end_matches('/').to_string();
    }
    if !prefix.is_empty() && !matches!(kind, b'L' | b'K' | GNUTYPE_SPARSE) {
        name = format!("{prefix}/{name}");
    }
    Ok(Raw { name, kind, size, linkname, sparse, bad_checksum })
}

/// An ordered string map with Python dict semantics (an updated key keeps its place).
#[derive(Debug, Clone, Default)]
struct PaxMap(Vec<(String, String)>);

impl PaxMap {
    fn set(&mut self, k: String, v: String) {
        match self.0.iter_mut().find(|(key, _)| *key == k) {
            Some(slot) => slot.1 = v,
            None => self.0.push((k, v)),
        }
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }
}

/// Records of a pax header as CPython 3.11's `_proc_pax` reads them (the regex
/// `(\d+) ([^=]+)=` matched at each record start, the value up to one byte before the record's
/// end, a zero length refused). Later versions are stricter and stop the archive where this
/// one reads on, which lists fewer members, never more.
fn pax_records(buf: &[u8]) -> Result<Vec<(String, String)>, HeaderErr> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    loop {
        let digits = buf.get(pos..).unwrap_or(&[]).iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || buf.get(pos + digits) != Some(&b' ') {
            break;
        }
        let key_start = pos + digits + 1;
        let Some(key_len) = buf.get(key_start..).and_then(|r| r.iter().position(|&b| b == b'=')) else { break };
        if key_len == 0 {
            break;
        }
        let len_text = std::str::from_utf8(buf.get(pos..pos + digits).unwrap_or(&[])).unwrap_or("");
        let Ok(length) = len_text.parse::<u128>() else { break };
        if length == 0 {
            return Err(HeaderErr::Invalid("a pax record of length 0".into()));
        }
        let value_start = key_start + key_len + 1;
        let value_end = usize::try_from(length).ok().and_then(|l| (pos + l).checked_sub(1)).unwrap_or(usize::MAX);
        let value = buf.get(value_start.min(buf.len())..value_end.min(buf.len())).unwrap_or(&[]);
        out.push((text(buf.get(key_start..key_start + key_len).unwrap_or(&[])), text(value)));
        match usize::try_from(length).ok().and_then(|l| pos.checked_add(l)) {
            Some(p) => pos = p,
            None => break,
        }
    }
    Ok(out)
}

/// `\d+ GNU.sparse.<key>=(\d+)\n` over the raw pax block (`_proc_gnusparse_00`; `.` is any
/// byte but a newline).
fn sparse_00(buf: &[u8], key: &str) -> Result<Vec<i128>, HeaderErr> {
    let mut out = Vec::new();
    let mut i = 0usize;
    while i < buf.len() {
        match match_00(buf, i, key.as_bytes()) {
            Some((value, end)) => {
                out.push(py_int(&value, 10).map_err(|_| HeaderErr::Fatal("invalid sparse number".into()))?);
                i = end;
            }
            None => i += 1,
        }
    }
    Ok(out)
}

fn match_00(buf: &[u8], at: usize, key: &[u8]) -> Option<(String, usize)> {
    let rest = buf.get(at..)?;
    let d = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if d == 0 || rest.get(d) != Some(&b' ') {
        return None;
    }
    let mut p = d + 1;
    let lit = |p: &mut usize, s: &[u8]| -> Option<()> { (rest.get(*p..*p + s.len())? == s).then(|| *p += s.len()) };
    let any = |p: &mut usize| -> Option<()> { (*rest.get(*p)? != b'\n').then(|| *p += 1) };
    lit(&mut p, b"GNU")?;
    any(&mut p)?;
    lit(&mut p, b"sparse")?;
    any(&mut p)?;
    lit(&mut p, key)?;
    lit(&mut p, b"=")?;
    let v = rest.get(p..)?.iter().take_while(|b| b.is_ascii_digit()).count();
    if v == 0 || rest.get(p + v) != Some(&b'\n') {
        return None;
    }
    let value = text(rest.get(p..p + v)?);
    Some((value, at + p + v + 1))
}

/// Where the archive's bytes come from.
#[derive(Clone)]
pub enum Tape {
    Random(Arc<dyn Source>),
    /// A forward stream, shared with the member being scanned.
    Stream(Arc<Mutex<Input>>),
}

fn poisoned() -> io::Error {
    io::Error::other("tar stream unavailable after an earlier failure")
}

impl Tape {
    /// Read up to `n` bytes at `pos` (a stream is first advanced to `pos`; it cannot go back).
    pub fn read_at(&self, pos: u64, n: usize) -> io::Result<Vec<u8>> {
        match self {
            Tape::Random(src) => read_up_to(src.as_ref(), pos, n),
            Tape::Stream(input) => {
                let mut input = input.lock().map_err(|_| poisoned())?;
                let here = input.pos();
                if here > pos {
                    return Err(io::Error::other(format!(
                        "the archive points back to offset {pos}, before bytes already read from the stream"
                    )));
                }
                input.skip(pos - here)?;
                if input.pos() != pos {
                    return Ok(Vec::new());
                }
                let mut out = Vec::with_capacity(n.min(BLOCK as usize * 4));
                input.by_ref().take(n as u64).read_to_end(&mut out)?;
                Ok(out)
            }
        }
    }

    /// The archive's length, when known (random sources).
    pub fn known_len(&self) -> Option<u64> {
        match self {
            Tape::Random(src) => Some(src.len()),
            Tape::Stream(_) => None,
        }
    }
}

/// Walks the archive as `TarFile.next` does, keeping the global pax records between members.
pub struct Walker {
    pub tape: Tape,
    /// Where the next header is (`TarFile.offset`).
    pub next: u64,
    global: PaxMap,
}

impl Walker {
    pub fn new(tape: Tape) -> Walker {
        Walker { tape, next: 0, global: PaxMap::default() }
    }

    /// The next member; `Ok(None)` at the end of the archive.
    pub fn next_member(&mut self) -> Result<Option<Member>, HeaderErr> {
        let pos = self.next;
        // `TarFile.next` seeks to one byte before the next header and fails when it is not there.
        if let Some(len) = self.tape.known_len() {
            if pos > len {
                return Err(HeaderErr::Fatal(format!("the next header at offset {pos} is past the end of the file")));
            }
        }
        match self.member_at(pos, 0) {
            Ok((m, next)) => {
                self.next = next;
                Ok(Some(m))
            }
            Err(HeaderErr::Eof | HeaderErr::Empty) if pos > 0 => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn block(&self, pos: u64, n: u64) -> Result<Vec<u8>, HeaderErr> {
        let n = usize::try_from(n).map_err(|_| HeaderErr::Fatal("impossible size".into()))?;
        self.tape.read_at(pos, n).map_err(|e| HeaderErr::Fatal(format!("cannot read the archive: {e}")))
    }

    /// `TarInfo.fromtarfile` at `pos`: the member and where the next header is.
    fn member_at(&mut self, pos: u64, chain: u32) -> Result<(Member, u64), HeaderErr> {
        if chain > MAX_META_CHAIN {
            return Err(HeaderErr::Fatal(format!("more than {MAX_META_CHAIN} extended headers before one member")));
        }
        let buf = self.block(pos, BLOCK)?;
        let raw = frombuf(&buf, true)?;
        let data = pos + BLOCK;
        // A header after an extended header that is bad stops `tarfile` with `ReadError`.
        let subsequent = |e: HeaderErr| match e {
            HeaderErr::Fatal(m) => HeaderErr::Fatal(m),
            HeaderErr::Eof | HeaderErr::Empty => HeaderErr::Fatal("an extended header is the last header".into()),
            HeaderErr::Truncated => HeaderErr::Fatal("the archive ends inside a header".into()),
            HeaderErr::Invalid(m) => HeaderErr::Fatal(format!("the header after an extended header is invalid: {m}")),
        };
        match raw.kind {
            b'L' | b'K' => {
                let size = size_of(raw.size, "a GNU long name")?;
                let padded = block_up(size).ok_or_else(|| HeaderErr::Fatal("impossible size".into()))?;
                if padded > MAX_META {
                    return Err(HeaderErr::Fatal(format!("a {size}-byte GNU long name")));
                }
                let long = self.block(data, padded)?;
                let (mut m, next) = self.member_at(data + padded, chain + 1).map_err(subsequent)?;
                m.offset = pos;
                m.bad_checksum = m.bad_checksum.or(raw.bad_checksum);
                if raw.kind == b'L' {
                    m.name = text(nts(&long));
                } else {
                    m.linkname = text(nts(&long));
                }
                if m.kind == DIRTYPE {
                    if let Some(n) = m.name.strip_suffix('/') {
                        m.name = n.to_string();
                    }
                }
                Ok((m, next))
            }
            GNUTYPE_SPARSE => {
                let (mut structs, mut extended, real) = raw.sparse.unwrap_or_default();
                let mut at = data;
                while extended {
                    let ext = self.block(at, BLOCK)?;
                    if (ext.len() as u64) < BLOCK {
                        return Err(HeaderErr::Fatal("the archive ends inside a sparse header".into()));
                    }
                    for i in 0..21 {
                        let p = 24 * i;
                        let off = nti(ext.get(p..p + 12).unwrap_or(&[]));
                        let len = nti(ext.get(p + 12..p + 24).unwrap_or(&[]));
                        let (Some(off), Some(len)) = (off, len) else {
                            return Err(HeaderErr::Invalid("invalid sparse entry".into()));
                        };
                        if off != 0 && len != 0 {
                            structs.push((off, len));
                        }
                    }
                    if structs.len() > MAX_SPARSE {
                        return Err(HeaderErr::Fatal("too many sparse map entries".into()));
                    }
                    extended = ext.get(504).is_some_and(|&b| b != 0);
                    at += BLOCK;
                }
                let stored = size_of(raw.size, "a sparse member")?;
                let next = block_up(stored)
                    .and_then(|p| at.checked_add(p))
                    .ok_or_else(|| HeaderErr::Fatal("impossible size".into()))?;
                let m = Member {
                    name: raw.name,
                    kind: raw.kind,
                    linkname: raw.linkname,
                    offset: pos,
                    start: at,
                    size: size_of(real, "a sparse member")?,
                    sparse: Some(sparse_map(&structs)?),
                    bad_checksum: raw.bad_checksum,
                };
                Ok((m, next))
            }
            b'x' | b'g' | b'X' => {
                let size = size_of(raw.size, "a pax header")?;
                let padded = block_up(size).ok_or_else(|| HeaderErr::Fatal("impossible size".into()))?;
                if padded > MAX_META {
                    return Err(HeaderErr::Fatal(format!("a {size}-byte pax header")));
                }
                let buf = self.block(data, padded)?;
                let records = pax_records(&buf)?;
                let mut local = if raw.kind == b'g' { PaxMap::default() } else { self.global.clone() };
                for (k, v) in records {
                    if raw.kind == b'g' {
                        self.global.set(k, v);
                    } else {
                        local.set(k, v);
                    }
                }
                let pax = if raw.kind == b'g' { self.global.clone() } else { local };
                let (mut m, mut next) = self.member_at(data + padded, chain + 1).map_err(subsequent)?;
                m.bad_checksum = m.bad_checksum.or(raw.bad_checksum);
                // GNU sparse formats 0.1, 0.0 and 1.0 (`_proc_gnusparse_01/00/10`).
                if let Some(map) = pax.get("GNU.sparse.map") {
                    let nums = map
                        .split(',')
                        .map(|x| py_int(x, 10).map_err(|_| HeaderErr::Fatal("invalid GNU.sparse.map".into())))
                        .collect::<Result<Vec<_>, _>>()?;
                    m.sparse = Some(sparse_map(&pairs(&nums))?);
                } else if pax.get("GNU.sparse.size").is_some() {
                    let offsets = sparse_00(&buf, "offset")?;
                    let sizes = sparse_00(&buf, "numbytes")?;
                    let structs: Vec<(i128, i128)> = offsets.into_iter().zip(sizes).collect();
                    m.sparse = Some(sparse_map(&structs)?);
                } else if pax.get("GNU.sparse.major") == Some("1") && pax.get("GNU.sparse.minor") == Some("0") {
                    let (structs, after) = self.sparse_10(m.start)?;
                    m.sparse = Some(sparse_map(&structs)?);
                    m.start = after;
                }
                if raw.kind != b'g' {
                    apply_pax(&mut m, &pax)?;
                    m.offset = pos;
                    if pax.get("size").is_some() {
                        let skip = if m.has_data() { block_up(m.size) } else { Some(0) };
                        next = skip
                            .and_then(|s| m.start.checked_add(s))
                            .ok_or_else(|| HeaderErr::Fatal("impossible size".into()))?;
                    }
                }
                Ok((m, next))
            }
            _ => {
                let size = size_of(raw.size, "a member")?;
                let mut m = Member {
                    name: raw.name,
                    kind: raw.kind,
                    linkname: raw.linkname,
                    offset: pos,
                    start: data,
                    size,
                    sparse: None,
                    bad_checksum: raw.bad_checksum,
                };
                // The next header follows the data of regular files and unknown types only;
                // a pax size applied below does not move it.
                let skip = if m.has_data() { block_up(size) } else { Some(0) };
                let next =
                    skip.and_then(|s| data.checked_add(s)).ok_or_else(|| HeaderErr::Fatal("impossible size".into()))?;
                let global = self.global.clone();
                apply_pax(&mut m, &global)?;
                if m.kind == DIRTYPE {
                    m.name = m.name.trim_end_matches('/').to_string();
                }
                Ok((m, next))
            }
        }
    }

    /// GNU sparse 1.0: the map as decimal lines at the start of the data blocks.
    fn sparse_10(&self, start: u64) -> Result<(Vec<(i128, i128)>, u64), HeaderErr> {
        let mut at = start;
        let mut buf = self.block(at, BLOCK)?;
        at += BLOCK;
        let line = |buf: &mut Vec<u8>, at: &mut u64| -> Result<i128, HeaderErr> {
            loop {
                if let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                    let n = py_int(&text(buf.get(..nl).unwrap_or(&[])), 10)
                        .map_err(|_| HeaderErr::Fatal("invalid GNU sparse 1.0 map".into()))?;
                    buf.drain(..=nl);
                    return Ok(n);
                }
                if buf.len() as u64 > MAX_META {
                    return Err(HeaderErr::Fatal("GNU sparse 1.0 map too long".into()));
                }
                let more = self.block(*at, BLOCK)?;
                if more.is_empty() {
                    return Err(HeaderErr::Fatal("the archive ends inside a sparse map".into()));
                }
                *at += more.len() as u64;
                buf.extend_from_slice(&more);
            }
        };
        let fields = line(&mut buf, &mut at)?;
        let count = usize::try_from(fields.max(0)).unwrap_or(usize::MAX);
        if count > MAX_SPARSE {
            return Err(HeaderErr::Fatal("too many sparse map entries".into()));
        }
        let mut nums = Vec::with_capacity(count * 2);
        while nums.len() < count * 2 {
            nums.push(line(&mut buf, &mut at)?);
        }
        Ok((pairs(&nums), at))
    }
}

/// `list(zip(x[::2], x[1::2]))`.
fn pairs(nums: &[i128]) -> Vec<(i128, i128)> {
    nums.chunks_exact(2).filter_map(|c| Some((*c.first()?, *c.get(1)?))).collect()
}

/// A sparse map as `_FileInFile` builds it. Empty blocks (the unused `(0, 0)` slots of an old
/// GNU header) cover nothing, and reading forward never reaches the holes they leave behind.
/// Only maps whose other blocks follow each other are read: `_FileInFile` finds a position's
/// block by cycling through the map from where it last was, so overlapping or unordered blocks
/// read differently depending on the order of reads.
fn sparse_map(structs: &[(i128, i128)]) -> Result<Vec<(u64, u64)>, HeaderErr> {
    let mut last = 0u64;
    let mut out = Vec::with_capacity(structs.len());
    for &(off, len) in structs {
        let (Ok(off), Ok(len)) = (u64::try_from(off), u64::try_from(len)) else {
            return Err(HeaderErr::Fatal("a negative sparse map entry".into()));
        };
        if len == 0 {
            continue;
        }
        if off < last {
            return Err(HeaderErr::Fatal("sparse map blocks out of order".into()));
        }
        last = off.checked_add(len).ok_or_else(|| HeaderErr::Fatal("impossible sparse map".into()))?;
        out.push((off, len));
    }
    Ok(out)
}

/// `TarInfo._apply_pax_info`, in the records' order.
fn apply_pax(m: &mut Member, pax: &PaxMap) -> Result<(), HeaderErr> {
    for (k, v) in &pax.0 {
        match k.as_str() {
            "GNU.sparse.name" => m.name = v.clone(),
            "GNU.sparse.size" | "GNU.sparse.realsize" => {
                let n = py_int(v, 10).map_err(|_| HeaderErr::Fatal(format!("invalid {k}")))?;
                m.size = size_of(n, k)?;
            }
            "path" => m.name = v.trim_end_matches('/').to_string(),
            "linkpath" => m.linkname = v.clone(),
            "size" => {
                m.size = match py_int(v, 10) {
                    Ok(n) => size_of(n, "a pax size")?,
                    // Python reads Unicode digits this reader does not judge.
                    Err(true) => return Err(HeaderErr::Fatal(format!("pax size {v:?} has non-ASCII characters"))),
                    // `int()` fails: tarfile takes 0.
                    Err(false) => 0,
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// `posixpath.normpath`.
pub fn normpath(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let initial = if path.starts_with("//") && !path.starts_with("///") {
        "//"
    } else if path.starts_with('/') {
        "/"
    } else {
        ""
    };
    let mut comps: Vec<&str> = Vec::new();
    for c in path.split('/') {
        if c.is_empty() || c == "." {
            continue;
        }
        if c != ".." || (initial.is_empty() && comps.is_empty()) || comps.last() == Some(&"..") {
            comps.push(c);
        } else if !comps.is_empty() {
            comps.pop();
        }
    }
    let joined = format!("{initial}{}", comps.join("/"));
    if joined.is_empty() {
        ".".into()
    } else {
        joined
    }
}

/// `os.path.dirname` (POSIX).
pub fn dirname(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => {
            let head = path.get(..=i).unwrap_or("");
            let trimmed = head.trim_end_matches('/');
            if trimmed.is_empty() {
                head
            } else {
                trimmed
            }
        }
        None => "",
    }
}

/// A sparse member as `_FileInFile` reads it: data blocks from `start` one after the other,
/// zeros in the holes, `size` bytes in all.
pub struct SparseSource {
    base: Arc<dyn Source>,
    /// (virtual start, virtual end, real offset of the data or `None` for a hole), in order.
    map: Vec<(u64, u64, Option<u64>)>,
    size: u64,
}

impl SparseSource {
    pub fn new(base: Arc<dyn Source>, start: u64, size: u64, blocks: &[(u64, u64)]) -> SparseSource {
        let mut map = Vec::with_capacity(blocks.len() * 2 + 1);
        let (mut last, mut real) = (0u64, start);
        for &(off, len) in blocks {
            if off > last {
                map.push((last, off, None));
            }
            map.push((off, off.saturating_add(len), Some(real)));
            real = real.saturating_add(len);
            last = off.saturating_add(len);
        }
        if last < size {
            map.push((last, size, None));
        }
        SparseSource { base, map, size }
    }
}

impl Source for SparseSource {
    fn len(&self) -> u64 {
        self.size
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let i = self.map.partition_point(|&(_, end, _)| end <= offset);
        let Some(&(start, end, real)) = self.map.get(i) else { return Ok(0) };
        if offset < start {
            return Ok(0);
        }
        let want = (end.min(self.size) - offset).min(buf.len() as u64) as usize;
        let out = buf.get_mut(..want).unwrap_or(&mut []);
        match real {
            None => {
                out.fill(0);
                Ok(want)
            }
            Some(real) => {
                crate::source::read_exact_at(self.base.as_ref(), real + (offset - start), out)?;
                Ok(want)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_python_reads_them() {
        assert_eq!(nti(b"0000644\0"), Some(0o644));
        assert_eq!(nti(b"   17 \0\0"), Some(0o17));
        assert_eq!(nti(b"\0\0\0"), Some(0));
        assert_eq!(nti(b"\x80\0\0\0\0\0\0\0\0\0\x01\0"), Some(256));
        assert_eq!(nti(b"\xff\xff"), Some(-1));
        assert_eq!(nti(b"0o_17\0"), Some(15));
        assert_eq!(nti(b"+1_7\0"), Some(15));
        assert_eq!(nti(b"-17\0"), Some(-15));
        assert_eq!(nti(b"\x1c17\x1d\0"), Some(15));
        assert_eq!(nti(b"9"), None);
        assert_eq!(nti(b"1__7"), None);
        assert_eq!(nti(b"_17"), None);
        assert_eq!(nti(b"0o"), None);
        assert_eq!(nti(b"\xc3\xa9"), None);
    }

    #[test]
    fn pax() {
        let r = pax_records(b"18 path=long/name\n11 size=99\n").unwrap();
        assert_eq!(r, vec![("path".into(), "long/name".into()), ("size".into(), "99".into())]);
        assert!(pax_records(b"999 path=x\n").unwrap().len() == 1);
        assert!(pax_records(b"0 path=x\n").is_err());
    }

    #[test]
    fn normpaths() {
        for (a, b) in [
            ("", "."),
            ("a/./b", "a/b"),
            ("a//b/", "a/b"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("/../a", "/a"),
            ("//a", "//a"),
            ("///a", "/a"),
            ("a/..", "."),
        ] {
            assert_eq!(normpath(a), b, "{a}");
        }
        assert_eq!(dirname("a/b"), "a");
        assert_eq!(dirname("b"), "");
        assert_eq!(dirname("/b"), "/");
    }

    #[test]
    fn sparse_reads_holes_as_zeros() {
        let base: Arc<dyn Source> = Arc::new(crate::source::BytesSource(b"..ABCDEF".to_vec()));
        let s = SparseSource::new(base, 2, 10, &[(1, 2), (5, 4)]);
        assert_eq!(read_up_to(&s, 0, 100).unwrap(), b"\0AB\0\0CDEF\0");
        assert!(sparse_map(&[(5, 1), (0, 1)]).is_err());
    }
}
