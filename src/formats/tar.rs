//! Tar archives (v7, ustar, GNU long names, pax), read the way Python's `tarfile` reads them,
//! since that is what torch's legacy loader uses. Members are handed back to the dispatcher as
//! zero-copy windows (random sources) or as bounded windows of the shared stream (streams).
//!
//! The torch 0.1 layout (`sys_info`, `pickle`, `storages`, `tensors`) is walked as torch's
//! `legacy_load` walks it: `storages` and `tensors` interleave pickles with raw bytes.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use crate::detect::Format;
use crate::engine::{Hint, Scan};
use crate::finding::{CodeInfo, Finding, Severity};
use crate::formats::pickle::{self, Simple};
use crate::formats::zip::{unsafe_path, Notes};
use crate::source::{read_up_to, Data, Input, SliceSource, Source};
use std::collections::HashSet;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};

pub const CODES: &[CodeInfo] = &[
    CodeInfo {
        code: "tar-bad-checksum",
        severity: Severity::Suspicious,
        summary: "a tar header's checksum is wrong (Python's tarfile stops reading there; the rest was scanned anyway)",
        fix: "re-create the archive with a standard tar tool",
    },
    CodeInfo {
        code: "tar-malformed",
        severity: Severity::Error,
        summary: "a tar archive holds something that is not a valid header, so the rest was not scanned",
        fix: "re-create the archive with a standard tar tool",
    },
    CodeInfo {
        code: "tar-truncated",
        severity: Severity::Error,
        summary: "a tar archive ends inside a header or a member",
        fix: "the archive is truncated; re-create it",
    },
    CodeInfo {
        code: "tar-too-many-members",
        severity: Severity::Error,
        summary: "the tar holds more members than the scan budget allows; the rest were not scanned",
        fix: "split the archive, or raise max_members in the policy if the file is trusted",
    },
    CodeInfo {
        code: "tar-path-traversal",
        severity: Severity::Dangerous,
        summary: "a tar member name or link target escapes the extraction folder (`..` or absolute path)",
        fix: "do not extract this archive; rename the members to relative paths",
    },
    CodeInfo {
        code: "torch-tar-layout",
        severity: Severity::Error,
        summary: "a torch legacy tar member does not follow torch's layout, so the rest of it was not scanned",
        fix: "re-save the model with a current torch.save",
    },
];

const BLOCK: u64 = 512;
/// GNU long names and pax records are held in memory; real ones are tiny.
const MAX_META: u64 = 1 << 20;
/// Tensors in torch's legacy layout never have this many dimensions.
const MAX_NDIM: i32 = 1024;

/// Where the archive's bytes come from.
#[derive(Clone)]
enum Tape {
    Random(Arc<dyn Source>),
    /// A forward stream, shared with the member being scanned.
    Stream(Arc<Mutex<Input>>),
}

fn poisoned() -> io::Error {
    io::Error::other("tar stream unavailable after an earlier failure")
}

impl Tape {
    /// Read up to `n` bytes at `pos` (a stream is first advanced to `pos`).
    fn read_at(&self, pos: u64, n: usize) -> io::Result<Vec<u8>> {
        match self {
            Tape::Random(src) => read_up_to(src.as_ref(), pos, n),
            Tape::Stream(input) => {
                let mut input = input.lock().map_err(|_| poisoned())?;
                let here = input.pos();
                if here < pos {
                    input.skip(pos - here)?;
                }
                if input.pos() != pos {
                    return Ok(Vec::new());
                }
                let mut out = Vec::with_capacity(n.min(BLOCK as usize * 4));
                input.by_ref().take(n as u64).read_to_end(&mut out)?;
                Ok(out)
            }
        }
    }

    /// The member's bytes as data for the dispatcher.
    fn member(&self, start: u64, size: u64) -> Data {
        match self {
            Tape::Random(src) => Data::Random(Arc::new(SliceSource::new(src.clone(), start, size))),
            Tape::Stream(input) => {
                Data::Stream(Box::new(Window { input: input.clone(), start, left: size }), Some(size))
            }
        }
    }
}

/// A member's bytes inside the shared stream.
struct Window {
    input: Arc<Mutex<Input>>,
    start: u64,
    left: u64,
}

impl Read for Window {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let mut input = self.input.lock().map_err(|_| poisoned())?;
        let here = input.pos();
        if here < self.start {
            input.skip(self.start - here)?;
            if input.pos() != self.start {
                return Ok(0);
            }
        }
        let want = (buf.len() as u64).min(self.left) as usize;
        let n = input.read(buf.get_mut(..want).unwrap_or(&mut []))?;
        self.left -= n as u64;
        self.start += n as u64;
        Ok(n)
    }
}

/// A member with data: a regular file, or a type `tarfile` does not know (which it reads as one).
struct Member {
    name: String,
    start: u64,
    size: u64,
}

/// Walks headers in order, applying GNU long names and pax records to the header they precede.
struct Walker {
    tape: Tape,
    next: u64,
    count: u64,
    long_name: Option<String>,
    long_link: Option<String>,
    pax_path: Option<String>,
    pax_link: Option<String>,
    pax_size: Option<u64>,
}

fn nts(field: &[u8]) -> &[u8] {
    field.split(|&b| b == 0).next().unwrap_or(&[])
}

/// A numeric header field: octal text, or GNU base-256 when the first byte has its high bit set.
fn number(field: &[u8]) -> Option<u64> {
    match field.first() {
        Some(0x80) => {
            field
                .get(1..)?
                .iter()
                .try_fold(0u64, |acc, &b| if acc >> 56 != 0 { None } else { Some(acc << 8 | u64::from(b)) })
        }
        Some(0xff) => None,
        _ => {
            let text = std::str::from_utf8(nts(field)).ok()?.trim();
            if text.is_empty() {
                Some(0)
            } else {
                u64::from_str_radix(text, 8).ok()
            }
        }
    }
}

/// A first block that Python's `tarfile` (and so torch's legacy loader, which tries a tar
/// before a pickle) accepts as a header: not all zeros, with a right checksum. Pre-POSIX (v7)
/// tars have no magic, so the checksum is what tells them apart.
pub fn is_header(block: &[u8]) -> bool {
    let Some(block) = block.get(..BLOCK as usize) else { return false };
    if block.iter().all(|&b| b == 0) {
        return false;
    }
    let (unsigned, signed) = checksums(block);
    let stored = number(block.get(148..156).unwrap_or(&[]));
    stored == Some(unsigned) || stored.and_then(|s| i64::try_from(s).ok()) == Some(signed)
}

/// Header checksums as `tarfile` accepts them: the unsigned and the signed byte sum.
fn checksums(block: &[u8]) -> (u64, i64) {
    let mut unsigned = 0u64;
    let mut signed = 0i64;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    (unsigned, signed)
}

/// `path`, `linkpath` and `size` from a pax extended header.
fn pax_records(data: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let Some(sp) = rest.iter().position(|&b| b == b' ') else { break };
        let Some(len) = std::str::from_utf8(rest.get(..sp).unwrap_or(&[])).ok().and_then(|s| s.parse::<usize>().ok())
        else {
            break;
        };
        let Some(record) = rest.get(..len) else { break };
        let body = record.get(sp + 1..).unwrap_or(&[]);
        let body = body.strip_suffix(b"\n").unwrap_or(body);
        if let Some(eq) = body.iter().position(|&b| b == b'=') {
            let key = String::from_utf8_lossy(body.get(..eq).unwrap_or(&[])).into_owned();
            let value = String::from_utf8_lossy(body.get(eq + 1..).unwrap_or(&[])).into_owned();
            out.push((key, value));
        }
        if len == 0 {
            break;
        }
        rest = rest.get(len..).unwrap_or(&[]);
    }
    out
}

impl Walker {
    fn new(tape: Tape) -> Walker {
        Walker {
            tape,
            next: 0,
            count: 0,
            long_name: None,
            long_link: None,
            pax_path: None,
            pax_link: None,
            pax_size: None,
        }
    }

    fn fail(&self, scan: &mut Scan<'_>, code: &'static str, msg: String) -> Option<Member> {
        scan.finding(Finding::new(code, Severity::Error, msg).at(self.next));
        None
    }

    /// The next member with data; `None` at the end of the archive (or where it breaks).
    fn next(&mut self, scan: &mut Scan<'_>, notes: &mut Notes) -> Option<Member> {
        loop {
            let pos = self.next;
            let block = match self.tape.read_at(pos, BLOCK as usize) {
                Ok(b) => b,
                Err(e) => return self.fail(scan, "read-error", format!("cannot read the tar header: {e}")),
            };
            if block.is_empty() {
                return None;
            }
            if (block.len() as u64) < BLOCK {
                return self.fail(scan, "tar-truncated", "the archive ends inside a header".into());
            }
            if block.iter().all(|&b| b == 0) {
                return None;
            }
            let field = |a: usize, b: usize| block.get(a..b).unwrap_or(&[]);
            let magic = field(257, 263);
            let ustar = magic.starts_with(b"ustar");
            let (unsigned, signed) = checksums(&block);
            let stored = number(field(148, 156));
            if stored != Some(unsigned) && stored.and_then(|s| i64::try_from(s).ok()) != Some(signed) {
                if !ustar {
                    return self.fail(scan, "tar-malformed", format!("no valid tar header at offset {pos}"));
                }
                notes.add(
                    scan,
                    Finding::new(
                        "tar-bad-checksum",
                        Severity::Suspicious,
                        format!("header checksum is {}, the header says {}", unsigned, stored.unwrap_or(0)),
                    )
                    .member(String::from_utf8_lossy(nts(field(0, 100))).into_owned())
                    .at(pos),
                );
            }
            self.count += 1;
            if self.count > scan.opts.max_members {
                return self.fail(
                    scan,
                    "tar-too-many-members",
                    format!("more than {} members; the rest were not scanned", scan.opts.max_members),
                );
            }
            let Some(mut size) = number(field(124, 136)) else {
                return self.fail(scan, "tar-malformed", format!("the header at offset {pos} has an invalid size"));
            };
            let kind = block.get(156).copied().unwrap_or(0);
            if !matches!(kind, b'x' | b'X' | b'g' | b'L' | b'K') {
                if let Some(s) = self.pax_size.take() {
                    size = s;
                }
            }
            let start = pos + BLOCK;
            // tarfile skips data only for regular files and types it does not know.
            let has_data = !matches!(kind, b'1' | b'2' | b'3' | b'4' | b'5' | b'6');
            let padded = if has_data { size.checked_add(BLOCK - 1).map(|s| s / BLOCK * BLOCK) } else { Some(0) };
            let Some(next) = padded.and_then(|p| start.checked_add(p)) else {
                return self.fail(
                    scan,
                    "tar-malformed",
                    format!("the header at offset {pos} declares an impossible size"),
                );
            };
            self.next = next;
            match kind {
                b'L' | b'K' | b'x' | b'X' | b'g' => {
                    if size > MAX_META {
                        return self.fail(
                            scan,
                            "tar-malformed",
                            format!("a {size}-byte extended header at offset {pos}"),
                        );
                    }
                    let data = match self.tape.read_at(start, size as usize) {
                        Ok(d) if d.len() as u64 == size => d,
                        Ok(_) => return self.fail(scan, "tar-truncated", "the archive ends inside a header".into()),
                        Err(e) => return self.fail(scan, "read-error", format!("cannot read the tar header: {e}")),
                    };
                    match kind {
                        b'L' => self.long_name = Some(String::from_utf8_lossy(nts(&data)).into_owned()),
                        b'K' => self.long_link = Some(String::from_utf8_lossy(nts(&data)).into_owned()),
                        b'g' => {}
                        _ => {
                            for (k, v) in pax_records(&data) {
                                match k.as_str() {
                                    "path" => self.pax_path = Some(v),
                                    "linkpath" => self.pax_link = Some(v),
                                    "size" => self.pax_size = v.parse().ok(),
                                    _ => {}
                                }
                            }
                        }
                    }
                    continue;
                }
                _ => {}
            }
            let mut name = String::from_utf8_lossy(nts(field(0, 100))).into_owned();
            let prefix = nts(field(345, 500));
            if magic == b"ustar\0" && !prefix.is_empty() {
                name = format!("{}/{name}", String::from_utf8_lossy(prefix));
            }
            let name = self.pax_path.take().or(self.long_name.take()).unwrap_or(name);
            let link = self
                .pax_link
                .take()
                .or(self.long_link.take())
                .unwrap_or_else(|| String::from_utf8_lossy(nts(field(157, 257))).into_owned());
            self.long_name = None;
            self.long_link = None;
            if let Some(why) = unsafe_path(&name) {
                notes.add(
                    scan,
                    Finding::new(
                        "tar-path-traversal",
                        Severity::Dangerous,
                        format!("member name has {why}: extracting it writes outside the target folder"),
                    )
                    .member(name.clone())
                    .at(pos),
                );
            }
            if matches!(kind, b'1' | b'2') {
                if let Some(why) = unsafe_path(&link) {
                    notes.add(
                        scan,
                        Finding::new(
                            "tar-path-traversal",
                            Severity::Dangerous,
                            format!("link target has {why}: extracting it reaches outside the target folder"),
                        )
                        .member(name.clone())
                        .at(pos)
                        .evidence(format!("link to {link}")),
                    );
                }
            }
            if has_data {
                return Some(Member { name, start, size });
            }
        }
    }
}

/// What torch's legacy loader does with a member of its tar layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Role {
    Pickle,
    Storages,
    Tensors,
}

fn torch_role(name: &str) -> Option<Role> {
    match name.strip_prefix("./").unwrap_or(name) {
        "pickle" => Some(Role::Pickle),
        "storages" => Some(Role::Storages),
        "tensors" => Some(Role::Tensors),
        _ => None,
    }
}

/// Scan a tar archive; returns `TorchTar` for torch 0.1's layout.
pub fn scan(scan: &mut Scan<'_>, data: Data) -> Format {
    scan.mark_model();
    let mut notes = Notes::default();
    let mut roles = HashSet::new();
    match data {
        Data::Random(src) => {
            // Headers are cheap to read: look at the whole layout before choosing how to read members.
            let tape = Tape::Random(src.clone());
            let mut walker = Walker::new(tape.clone());
            let mut members = Vec::new();
            while let Some(m) = walker.next(scan, &mut notes) {
                members.push(m);
            }
            roles.extend(members.iter().filter_map(|m| torch_role(&m.name)));
            let torch = roles.len() == 3;
            for m in &members {
                if m.start.saturating_add(m.size) > src.len() {
                    scan.finding(
                        Finding::new("tar-truncated", Severity::Error, "the archive ends inside this member")
                            .member(m.name.clone())
                            .at(m.start),
                    );
                }
                scan_member(scan, &tape, m, torch);
            }
        }
        Data::Stream(r, _) => {
            // A stream cannot be looked ahead in: members named like torch's are read torch's way.
            let tape = Tape::Stream(Arc::new(Mutex::new(Input::stream(r))));
            let mut walker = Walker::new(tape.clone());
            while let Some(m) = walker.next(scan, &mut notes) {
                roles.extend(torch_role(&m.name));
                scan_member(scan, &tape, &m, true);
            }
        }
    }
    notes.flush(scan);
    if roles.len() == 3 {
        Format::TorchTar
    } else {
        Format::Tar
    }
}

fn scan_member(scan: &mut Scan<'_>, tape: &Tape, m: &Member, torch: bool) {
    let data = tape.member(m.start, m.size);
    match torch.then(|| torch_role(&m.name)).flatten() {
        Some(Role::Pickle) => {
            scan.member(&m.name, data, Hint::Pickle);
        }
        Some(role) => {
            let mut input = data.into_input();
            scan.within(&m.name, |s| {
                if let Err(why) = legacy_walk(s, &mut input, role) {
                    s.finding(Finding::new(
                        "torch-tar-layout",
                        Severity::Error,
                        format!("cannot follow torch's layout: {why}; the rest of the member was not scanned"),
                    ));
                }
            });
        }
        None => {
            scan.member(&m.name, data, Hint::Sniff);
        }
    }
}

/// Bytes per element of a legacy storage type (`torch.FloatStorage`, ...).
fn element_size(v: &Simple) -> Option<u64> {
    let Simple::Global(_, name) = v else { return None };
    Some(match name.rsplit('.').next()? {
        "DoubleStorage" | "LongStorage" | "ComplexFloatStorage" => 8,
        "FloatStorage" | "IntStorage" | "QInt32Storage" => 4,
        "HalfStorage" | "BFloat16Storage" | "ShortStorage" => 2,
        "CharStorage" | "ByteStorage" | "BoolStorage" | "QUInt8Storage" | "QInt8Storage" | "QUInt4x2Storage"
        | "QUInt2x4Storage" => 1,
        "ComplexDoubleStorage" => 16,
        _ => return None,
    })
}

fn skip_exact(input: &mut Input, n: u64) -> Result<(), String> {
    match input.skip(n) {
        Ok(done) if done == n => Ok(()),
        Ok(_) => Err("the member ends inside raw data".into()),
        Err(e) => Err(format!("cannot read: {e}")),
    }
}

/// Walk `storages` or `tensors` as torch's `legacy_load` reads them: a count pickle, then per
/// record a pickle followed by raw bytes whose length the pickle and a small header give.
fn legacy_walk(scan: &mut Scan<'_>, input: &mut Input, role: Role) -> Result<(), String> {
    scan.mark_model();
    let (_, count) = pickle::scan_one(scan, input, pickle::Mode::Confident);
    let n = match count {
        Some(Simple::Int(n)) => u64::try_from(n).map_err(|_| format!("negative record count {n}"))?,
        other => return Err(format!("expected a record count pickle, found {other:?}")),
    };
    if n > scan.opts.max_members {
        return Err(format!("{n} records exceed the member budget"));
    }
    for i in 0..n {
        let at = input.pos();
        let (_, record) = pickle::scan_one(scan, input, pickle::Mode::Confident);
        match role {
            Role::Storages => {
                // (key, location, storage_type), then an int64 element count and the elements.
                let elsize = match &record {
                    Some(Simple::Tuple(parts)) => parts.get(2).and_then(element_size),
                    _ => None,
                }
                .ok_or_else(|| format!("record {i} at offset {at} is not (key, location, storage type)"))?;
                let mut b = [0u8; 8];
                input.read_exact(&mut b).map_err(|e| format!("cannot read the size of storage {i}: {e}"))?;
                let numel =
                    u64::try_from(i64::from_le_bytes(b)).map_err(|_| format!("storage {i} has a negative size"))?;
                let bytes = numel.checked_mul(elsize).ok_or_else(|| format!("storage {i} is impossibly large"))?;
                skip_exact(input, bytes)?;
            }
            Role::Tensors => {
                if !matches!(&record, Some(Simple::Tuple(parts)) if parts.len() == 3) {
                    return Err(format!("record {i} at offset {at} is not (key, storage id, tensor type)"));
                }
                let mut b = [0u8; 4];
                input.read_exact(&mut b).map_err(|e| format!("cannot read tensor {i}: {e}"))?;
                let ndim = i32::from_le_bytes(b);
                if !(0..=MAX_NDIM).contains(&ndim) {
                    return Err(format!("tensor {i} declares {ndim} dimensions"));
                }
                // 4 unused bytes, sizes and strides (int64 each), the storage offset.
                skip_exact(input, 4 + 16 * u64::from(ndim.unsigned_abs()) + 8)?;
            }
            Role::Pickle => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(number(b"0000644\0"), Some(0o644));
        assert_eq!(number(b"   17 \0\0"), Some(0o17));
        assert_eq!(number(b"\0\0\0"), Some(0));
        assert_eq!(number(b"\x80\0\0\0\0\0\0\0\0\0\x01\0"), Some(256));
        assert_eq!(number(b"\xff\xff"), None);
        assert_eq!(number(b"\x80\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"), None);
        assert_eq!(number(b"9"), None);
    }

    #[test]
    fn pax() {
        let r = pax_records(b"18 path=long/name\n11 size=99\n");
        assert_eq!(r, vec![("path".into(), "long/name".into()), ("size".into(), "99".into())]);
        assert!(pax_records(b"999 path=x\n").is_empty());
    }

    #[test]
    fn walker_reads_members() {
        let mut h = [0u8; 512];
        h[..5].copy_from_slice(b"a.txt");
        h[124..135].copy_from_slice(b"00000000003");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        let (sum, _) = checksums(&h);
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let mut tar = h.to_vec();
        tar.extend_from_slice(b"abc");
        tar.resize(512 * 4, 0);
        let src: Arc<dyn Source> = Arc::new(crate::source::BytesSource(tar));
        let opts = crate::engine::ScanOptions::default();
        let report = crate::engine::scan_source("t", src, &opts);
        assert_eq!(report.format, "tar");
        assert!(report.findings.is_empty(), "{:?}", report.findings);
    }
}
