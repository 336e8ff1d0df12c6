//! Tar archives, read the way CPython's `tarfile` reads them ([`header`]), since that is what
//! torch's legacy loader uses. Members are handed back to the dispatcher as zero-copy windows
//! (random sources, sparse members as virtual files with holes) or as bounded windows of the
//! shared stream (streams).
//!
//! The torch 0.1 layout is read as torch's `legacy_load` (`torch/serialization.py`) reads it:
//! `tar.extract('storages')` (a count pickle, then per storage a pickle and raw bytes, then the
//! storage views pickle), `tar.extract('tensors')` (a count pickle, then per tensor a pickle and
//! raw bytes) and `tar.extractfile('pickle')`. Each name is looked up as `TarFile.getmember`
//! does (the last member of that exact name), and a link is followed to the bytes the loader
//! gets: `extractfile` resolves symbolic and hard links to archive members
//! (`_find_link_target`), `extract` copies a hard link's target and writes a symbolic link
//! that the loader then opens (only `storages`, already extracted, can be its target).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod header;

use crate::detect::Format;
use crate::engine::{Hint, Scan};
use crate::finding::{CodeInfo, Finding, Severity};
use crate::formats::pickle::{self, Simple};
use crate::formats::zip::{unsafe_path, Notes};
use crate::source::{Data, Input, SliceSource, Source};
use header::{HeaderErr, Member, SparseSource, Tape, Walker};
use std::io::{self, Read};
use std::sync::{Arc, Mutex};

pub use header::{is_header, BLOCK};

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
        code: "tar-link-unresolved",
        severity: Severity::Error,
        summary: "a member torch's legacy loader reads is a link whose target could not be followed",
        fix: "re-save the model with torch.save; torch never writes links",
    },
    CodeInfo {
        code: "torch-tar-layout",
        severity: Severity::Error,
        summary: "a torch legacy tar member does not follow torch's layout, so the rest of it was not scanned",
        fix: "re-save the model with a current torch.save",
    },
];

/// One member as this reader lists it, for the differential test against CPython's `tarfile`.
#[doc(hidden)]
#[derive(Debug)]
pub struct Listed {
    pub name: String,
    pub kind: u8,
    pub size: u64,
    /// What `extractfile` yields for members with data of their own (`Err`: it fails).
    pub data: Option<io::Result<Vec<u8>>>,
    /// Read in spite of a bad checksum (where `tarfile` stops).
    pub bad_checksum: bool,
}

/// Every member of a tar in memory, as [`scan`] reads them, and how the walk ended (`Err`
/// with why it stopped early).
#[doc(hidden)]
pub fn list(bytes: &[u8]) -> (Vec<Listed>, Result<(), String>) {
    let src: Arc<dyn Source> = Arc::new(crate::source::BytesSource(bytes.to_vec()));
    let tape = Tape::Random(src.clone());
    let mut walker = Walker::new(tape.clone());
    let mut out = Vec::new();
    loop {
        match walker.next_member() {
            Ok(Some(m)) => {
                let data = m.has_data().then(|| match member_data(&tape, &m) {
                    Data::Random(s) => {
                        let len = usize::try_from(s.len()).unwrap_or(usize::MAX);
                        let mut v = vec![0u8; len];
                        crate::source::read_exact_at(s.as_ref(), 0, &mut v).map(|()| v)
                    }
                    Data::Stream(..) => Err(io::Error::other("stream")),
                });
                let data = data.map(|d| {
                    d.and_then(|v| {
                        // A window past the end of the file is cut by the source; tarfile fails.
                        if m.sparse.is_none() && m.start.saturating_add(m.size) > src.len() {
                            Err(io::Error::new(io::ErrorKind::UnexpectedEof, "past the end"))
                        } else {
                            Ok(v)
                        }
                    })
                });
                out.push(Listed {
                    name: m.name.clone(),
                    kind: m.kind,
                    size: m.size,
                    data,
                    bad_checksum: m.bad_checksum.is_some(),
                });
            }
            Ok(None) => return (out, Ok(())),
            Err(e) => return (out, Err(format!("{e:?}"))),
        }
    }
}

/// Tensors in torch's legacy layout never have this many dimensions.
const MAX_NDIM: i32 = 1024;

/// Links followed from one member before giving up (Python recurses until its limit).
const MAX_LINK_CHAIN: usize = 64;

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
        let mut input = self.input.lock().map_err(|_| io::Error::other("tar stream unavailable"))?;
        let here = input.pos();
        if here < self.start {
            input.skip(self.start - here)?;
        }
        if input.pos() != self.start {
            return Err(io::Error::other("the member's bytes were already read from the stream"));
        }
        let want = (buf.len() as u64).min(self.left) as usize;
        let n = input.read(buf.get_mut(..want).unwrap_or(&mut []))?;
        self.left -= n as u64;
        self.start += n as u64;
        Ok(n)
    }
}

/// The bytes `extractfile` yields for a member with data.
fn member_data(tape: &Tape, m: &Member) -> Data {
    match tape {
        Tape::Random(src) => match &m.sparse {
            Some(blocks) => Data::Random(Arc::new(SparseSource::new(src.clone(), m.start, m.size, blocks))),
            None => Data::Random(Arc::new(SliceSource::new(src.clone(), m.start, m.size))),
        },
        Tape::Stream(input) => match &m.sparse {
            Some(blocks) => Data::Stream(Box::new(SparseStream::new(input.clone(), m, blocks)), Some(m.size)),
            None => Data::Stream(Box::new(Window { input: input.clone(), start: m.start, left: m.size }), Some(m.size)),
        },
    }
}

/// A sparse member read forward from the shared stream: zeros in the holes, the data blocks one
/// after the other.
struct SparseStream {
    data: Window,
    /// (virtual start, virtual end, is data), in order.
    map: Vec<(u64, u64, bool)>,
    pos: u64,
    size: u64,
}

impl SparseStream {
    fn new(input: Arc<Mutex<Input>>, m: &Member, blocks: &[(u64, u64)]) -> SparseStream {
        let mut map = Vec::new();
        let mut last = 0u64;
        let mut stored = 0u64;
        for &(off, len) in blocks {
            if off > last {
                map.push((last, off, false));
            }
            map.push((off, off.saturating_add(len), true));
            stored = stored.saturating_add(len);
            last = off.saturating_add(len);
        }
        if last < m.size {
            map.push((last, m.size, false));
        }
        SparseStream { data: Window { input, start: m.start, left: stored }, map, pos: 0, size: m.size }
    }
}

impl Read for SparseStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let i = self.map.partition_point(|&(_, end, _)| end <= self.pos);
        let Some(&(_, end, data)) = self.map.get(i) else { return Ok(0) };
        let want = (end.min(self.size) - self.pos).min(buf.len() as u64) as usize;
        let out = buf.get_mut(..want).unwrap_or(&mut []);
        let n = if data {
            let n = self.data.read(out)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the archive ends inside a sparse member"));
            }
            n
        } else {
            out.fill(0);
            want
        };
        self.pos += n as u64;
        Ok(n)
    }
}

/// What torch's legacy loader does with a member of its tar layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Role {
    Pickle,
    Storages,
    Tensors,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Pickle => "pickle",
            Role::Storages => "storages",
            Role::Tensors => "tensors",
        }
    }
}

/// Read the archive's members as `TarFile.getmembers` lists them, reporting what stops the
/// walk. Member names and link targets that escape the extraction folder are reported here.
fn walk(scan: &mut Scan<'_>, notes: &mut Notes, walker: &mut Walker, mut each: impl FnMut(&mut Scan<'_>, &Member)) {
    loop {
        let pos = walker.next;
        if scan.take_members(1) == 0 {
            scan.finding(
                Finding::new(
                    "tar-too-many-members",
                    Severity::Error,
                    format!(
                        "more than {} members in this file (all archives together); the rest were not scanned",
                        scan.opts.max_members
                    ),
                )
                .at(pos),
            );
            return;
        }
        let m = match walker.next_member() {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => {
                let (code, msg) = match e {
                    HeaderErr::Truncated => ("tar-truncated", "the archive ends inside a header".to_string()),
                    HeaderErr::Empty | HeaderErr::Eof => ("tar-malformed", "no tar header where one should be".into()),
                    HeaderErr::Invalid(m) => ("tar-malformed", format!("no valid tar header at offset {pos}: {m}")),
                    HeaderErr::Fatal(m) => {
                        ("tar-malformed", format!("Python's tarfile cannot read on at offset {pos}: {m}"))
                    }
                };
                scan.finding(Finding::new(code, Severity::Error, msg).at(pos));
                return;
            }
        };
        if let Some((stored, sum)) = m.bad_checksum {
            notes.add(
                scan,
                Finding::new(
                    "tar-bad-checksum",
                    Severity::Suspicious,
                    format!("header checksum is {sum}, the header says {stored}"),
                )
                .member(m.name.clone())
                .at(m.offset),
            );
        }
        if let Some(why) = unsafe_path(&m.name) {
            notes.add(
                scan,
                Finding::new(
                    "tar-path-traversal",
                    Severity::Dangerous,
                    format!("member name has {why}: extracting it writes outside the target folder"),
                )
                .member(m.name.clone())
                .at(m.offset),
            );
        }
        if m.is_link() {
            if let Some(why) = unsafe_path(&m.linkname) {
                notes.add(
                    scan,
                    Finding::new(
                        "tar-path-traversal",
                        Severity::Dangerous,
                        format!("link target has {why}: extracting it reaches outside the target folder"),
                    )
                    .member(m.name.clone())
                    .at(m.offset)
                    .evidence(format!("link to {}", m.linkname)),
                );
            }
        }
        each(scan, &m);
    }
}

/// Scan a tar archive; returns `TorchTar` for torch 0.1's layout.
pub fn scan(scan: &mut Scan<'_>, data: Data) -> Format {
    scan.mark_model();
    let mut notes = Notes::default();
    let format = match data {
        Data::Random(src) => scan_random(scan, &mut notes, src),
        Data::Stream(r, _) => scan_stream(scan, &mut notes, r),
    };
    notes.flush(scan);
    format
}

fn scan_random(scan: &mut Scan<'_>, notes: &mut Notes, src: Arc<dyn Source>) -> Format {
    // Headers are cheap to read: list every member before choosing how to read them.
    let tape = Tape::Random(src.clone());
    let mut walker = Walker::new(tape.clone());
    let mut members: Vec<Member> = Vec::new();
    walk(scan, notes, &mut walker, |_, m| members.push(m.clone()));

    // `getmember`: the last member of the exact name.
    let last = |name: &str| members.iter().rposition(|m| m.name == name);
    let storages = last(Role::Storages.name());
    let tensors = storages.and(last(Role::Tensors.name()));
    let pickle = tensors.and(last(Role::Pickle.name()));
    let roles: Vec<(usize, Role)> = [(storages, Role::Storages), (tensors, Role::Tensors), (pickle, Role::Pickle)]
        .into_iter()
        .filter_map(|(i, r)| i.map(|i| (i, r)))
        .collect();

    let mut spent = false;
    for (i, m) in members.iter().enumerate() {
        if spent {
            break;
        }
        if m.has_data() && m.sparse.is_none() && m.start.saturating_add(m.size) > src.len() {
            scan.finding(
                Finding::new("tar-truncated", Severity::Error, "the archive ends inside this member")
                    .member(m.name.clone())
                    .at(m.start),
            );
        }
        let role = roles.iter().find(|(j, _)| *j == i).map(|(_, r)| *r);
        match role {
            Some(role) => {
                let storages_at = storages.and_then(|s| members.get(s));
                match resolve(&members, i, role, storages_at) {
                    Ok(Some(target)) => {
                        if !scan.take_window(target.size.min(src.len())) {
                            spent = true;
                            continue;
                        }
                        let data = member_data(&tape, target);
                        // Under the name torch asked for; a link's target is also scanned as
                        // the member it is.
                        scan_role(scan, &m.name, data, role);
                    }
                    Ok(None) => {}
                    Err(why) => scan.finding(
                        Finding::new("tar-link-unresolved", Severity::Error, why).member(m.name.clone()).at(m.offset),
                    ),
                }
            }
            None if m.has_data() => {
                if !scan.take_window(m.size.min(src.len())) {
                    spent = true;
                    continue;
                }
                scan.member(&m.name, member_data(&tape, m), Hint::Sniff);
            }
            None => {}
        }
    }
    if spent {
        scan.overlap_exceeded();
    }
    if storages.is_some() && tensors.is_some() && pickle.is_some() {
        Format::TorchTar
    } else {
        Format::Tar
    }
}

fn scan_stream(scan: &mut Scan<'_>, notes: &mut Notes, r: Box<dyn Read + Send>) -> Format {
    // A stream cannot be looked ahead in, and torch never reads a compressed tar: members
    // named like torch's are read torch's way as they come (what the last of each name is
    // cannot be known yet), links are not followed.
    let tape = Tape::Stream(Arc::new(Mutex::new(Input::stream(r))));
    let mut walker = Walker::new(tape.clone());
    let mut seen = std::collections::HashSet::new();
    walk(scan, notes, &mut walker, |scan, m| {
        if !m.has_data() {
            return;
        }
        let data = member_data(&tape, m);
        match [Role::Storages, Role::Tensors, Role::Pickle].into_iter().find(|r| r.name() == m.name) {
            Some(role) => {
                seen.insert(role);
                scan_role(scan, &m.name, data, role);
            }
            None => {
                scan.member(&m.name, data, Hint::Sniff);
            }
        }
    });
    if seen.len() == 3 {
        Format::TorchTar
    } else {
        Format::Tar
    }
}

/// The member whose bytes torch's loader gets when it asks for member `i` in `role`: the
/// member itself, or what its links lead to. `Ok(None)`: the loader gets nothing from the
/// archive (a directory, a device, a symbolic link out of it).
fn resolve<'m>(
    members: &'m [Member],
    i: usize,
    role: Role,
    storages: Option<&'m Member>,
) -> Result<Option<&'m Member>, String> {
    let mut at = i;
    for _ in 0..MAX_LINK_CHAIN {
        let Some(m) = members.get(at) else { return Ok(None) };
        if m.has_data() {
            return Ok(Some(m));
        }
        if !m.is_link() {
            return Ok(None);
        }
        let symbolic = m.kind == header::SYMTYPE;
        if role != Role::Pickle {
            // `extract` writes the link into an empty folder that holds only `storages` once
            // that was extracted: a link to it reads what was extracted there.
            let target = header::normpath(&m.linkname);
            if role == Role::Tensors && !m.linkname.starts_with('/') && target == Role::Storages.name() {
                return Ok(storages.filter(|s| !std::ptr::eq(*s, m)).and_then(|s| resolve_plain(members, s)));
            }
            if symbolic {
                // A symbolic link to anywhere else is opened on the host, not in the archive.
                return Ok(None);
            }
        }
        // `_find_link_target`: a symbolic link is looked up relative to its folder in the whole
        // archive, a hard link among the members before it; names compare normalized.
        let (target, upto) = if symbolic {
            let dir = header::dirname(&m.name);
            let joined =
                [dir, m.linkname.as_str()].iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join("/");
            (header::normpath(&joined), members.len())
        } else {
            (header::normpath(&m.linkname), at)
        };
        let found = members.get(..upto).unwrap_or(&[]).iter().rposition(|c| header::normpath(&c.name) == target);
        match found {
            Some(j) => at = j,
            None => return Err(format!("`{}` links to `{}`, which is not in the archive", m.name, m.linkname)),
        }
    }
    Err(format!(
        "links from `{}` do not end within {MAX_LINK_CHAIN} steps",
        members.get(i).map_or("", |m| m.name.as_str())
    ))
}

/// `storages` as extracted: its own bytes, or its hard link's.
fn resolve_plain<'m>(members: &'m [Member], s: &'m Member) -> Option<&'m Member> {
    let i = members.iter().position(|m| std::ptr::eq(m, s))?;
    resolve(members, i, Role::Storages, None).ok().flatten()
}

/// Scan bytes the way torch's legacy loader reads the member `name` in `role`.
fn scan_role(scan: &mut Scan<'_>, name: &str, data: Data, role: Role) {
    match role {
        Role::Pickle => {
            scan.member(name, data, Hint::Pickle);
        }
        _ => {
            scan.within(name, |s| {
                let data = crate::formats::eicar::check(s, &Format::Unknown, data, Hint::RawData);
                let mut input = data.into_input();
                if let Err(why) = legacy_walk(s, &mut input, role) {
                    s.finding(Finding::new(
                        "torch-tar-layout",
                        Severity::Error,
                        format!("cannot follow torch's layout: {why}; the rest of the member was not scanned"),
                    ));
                }
            });
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
    if role == Role::Storages {
        // Then the storage views: `for target_cdata, root_cdata, offset, numel in storage_views`.
        let (out, _) = pickle::scan_one(scan, input, pickle::Mode::Confident);
        if !out.is_pickle {
            return Err("no storage views pickle after the storages".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walker_reads_members() {
        let mut h = [0u8; 512];
        h[..5].copy_from_slice(b"a.txt");
        h[124..135].copy_from_slice(b"00000000003");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
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
