//! A zip reader as lenient as the loaders attackers target: PyTorch's (miniz, which ignores
//! CRCs, flag bits and local-header names) and Python's `zipfile` (which finds archives behind
//! prepended bytes). Every quirk either loader tolerates is tolerated here too, and reported.
//!
//! Only the end record, the central directory and the local headers are read; member bytes are
//! handed back to the dispatcher as zero-copy windows (stored) or bounded decoders (compressed),
//! so a multi-GB checkpoint costs only the bytes a parser asks for.
//!
//! Which member and which bytes, as the loaders decide: torch finds its records with miniz's
//! `mz_zip_reader_locate_file`, which compares names without case (`archive/DATA.PKL` is its
//! `data.pkl`), and with duplicate names finds any one of them (all are scanned); neither
//! `zipfile` (`ZipExtFile`) nor miniz yields more than a member's recorded uncompressed size,
//! and for a stored member whose sizes differ `zipfile` yields the smaller, miniz the
//! uncompressed one (both readings are scanned). Entries that share a local header and are read
//! the same way are scanned once; the file's member, window and buffer budgets bound the rest.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use crate::detect::Format;
use crate::engine::{Hint, Scan};
use crate::finding::{CodeInfo, Finding, Severity};
use crate::source::{read_exact_at, read_up_to, Data, Input, SliceSource, Source};
use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::sync::Arc;

pub const CODES: &[CodeInfo] = &[
    CodeInfo {
        code: "zip-no-end-record",
        severity: Severity::Error,
        summary: "a zip archive without a usable end-of-central-directory record",
        fix: "the archive is truncated or damaged; re-create it",
    },
    CodeInfo {
        code: "zip-entry-cut",
        severity: Severity::Suspicious,
        summary: "a central-directory entry's fields run past the directory's end; Python's zipfile reads it cut there, PyTorch refuses the archive",
        fix: "re-create the archive with a standard zip tool or torch.save",
    },
    CodeInfo {
        code: "zip-bad-central-directory",
        severity: Severity::Error,
        summary: "the zip central directory is malformed, so some members may be missing from the scan",
        fix: "re-create the archive with a standard zip tool or torch.save",
    },
    CodeInfo {
        code: "zip-ambiguous-directory",
        severity: Severity::Suspicious,
        summary: "two readers of this zip would find different central directories",
        fix: "re-create the archive; a zip that loaders read differently is built to evade scanners",
    },
    CodeInfo {
        code: "zip-entry-count-mismatch",
        severity: Severity::Suspicious,
        summary: "the zip end record declares a different number of members than the central directory holds",
        fix: "re-create the archive with a standard zip tool",
    },
    CodeInfo {
        code: "zip-too-many-members",
        severity: Severity::Error,
        summary: "the zip holds more members than the scan budget allows; the rest were not scanned",
        fix: "split the archive, or raise max_members in the policy if the file is trusted",
    },
    CodeInfo {
        code: "zip-bad-local-header",
        severity: Severity::Error,
        summary: "a zip member's local header is missing or unreadable, so the member was not scanned",
        fix: "re-create the archive with a standard zip tool",
    },
    CodeInfo {
        code: "zip-member-truncated",
        severity: Severity::Error,
        summary: "a zip member's data runs past the end of the file",
        fix: "the archive is truncated; re-create it",
    },
    CodeInfo {
        code: "zip-member-corrupt",
        severity: Severity::Error,
        summary: "a compressed zip member could not be decompressed completely",
        fix: "re-create the archive; only the part before the damage was scanned",
    },
    CodeInfo {
        code: "zip-unsupported-method",
        severity: Severity::Error,
        summary: "a zip member uses a compression method modelgate cannot decode, so it was not scanned",
        fix: "store or deflate the member (torch.save and numpy write stored or deflated members)",
    },
    CodeInfo {
        code: "zip-crc-mismatch",
        severity: Severity::Suspicious,
        summary: "a zip member's CRC-32 does not match its content (PyTorch loads it anyway, CVE-2025-10156)",
        fix: "re-create the archive; a wrong CRC makes Python-based scanners skip the member",
    },
    CodeInfo {
        code: "zip-flag-encrypted",
        severity: Severity::Suspicious,
        summary: "a zip member claims to be encrypted but holds plaintext that loaders read (CVE-2025-1945)",
        fix: "re-create the archive; the flag only makes Python-based scanners skip the member",
    },
    CodeInfo {
        code: "zip-encrypted-member",
        severity: Severity::Error,
        summary: "a zip member is encrypted, so its content could not be judged",
        fix: "push the model unencrypted; an archive whose content cannot be read cannot be judged",
    },
    CodeInfo {
        code: "zip-flag-patched",
        severity: Severity::Suspicious,
        summary: "a zip member sets general-purpose flag 0x20 (patched data), which PyTorch ignores (CVE-2025-1945)",
        fix: "re-create the archive; the flag only makes Python-based scanners skip the member",
    },
    CodeInfo {
        code: "zip-flag-strong-encryption",
        severity: Severity::Suspicious,
        summary:
            "a zip member sets general-purpose flag 0x40 (strong encryption), which PyTorch ignores (CVE-2025-1945)",
        fix: "re-create the archive; the flag only makes Python-based scanners skip the member",
    },
    CodeInfo {
        code: "zip-local-name-mismatch",
        severity: Severity::Suspicious,
        summary: "a zip member's local header names a different file than the central directory (CVE-2025-1944)",
        fix: "re-create the archive; loaders and scanners disagree on what this member is",
    },
    CodeInfo {
        code: "zip-prepended-data",
        severity: Severity::Suspicious,
        summary: "bytes precede the first zip member (a polyglot: some loaders read them instead of the zip)",
        fix: "remove the leading bytes; PyTorch and NumPy load such a file as a pickle, not as a zip",
    },
    CodeInfo {
        code: "tflite-associated-files",
        severity: Severity::Info,
        summary: "a TFLite model carries a zip of associated files after its flatbuffer (TFLite Support's metadata writer packs labels and vocabularies so); its members were scanned",
        fix: "nothing to fix",
    },
    CodeInfo {
        code: "zip-duplicate-name",
        severity: Severity::Suspicious,
        summary: "two zip members have the same name, so loaders and scanners may read different ones",
        fix: "re-create the archive with unique member names",
    },
    CodeInfo {
        code: "zip-overlapping-members",
        severity: Severity::Suspicious,
        summary: "zip members share bytes (a zip-bomb technique, or a member hidden inside another)",
        fix: "re-create the archive with a standard zip tool",
    },
    CodeInfo {
        code: "zip-size-mismatch",
        severity: Severity::Suspicious,
        summary: "a zip member's data is longer or shorter than its recorded size, so loaders read different bytes",
        fix: "re-create the archive; every reading of the member was scanned",
    },
    CodeInfo {
        code: "zip-path-traversal",
        severity: Severity::Dangerous,
        summary: "a zip member name escapes the extraction folder (`..`, absolute path or drive letter)",
        fix: "do not extract this archive; rename the members to relative paths",
    },
    CodeInfo {
        code: "zip-compression-ratio",
        severity: Severity::Suspicious,
        summary: "a zip member declares a size or compression ratio typical of a decompression bomb",
        fix: "store the model uncompressed; real tensors do not compress a thousandfold",
    },
];

const SIG_LOCAL: &[u8; 4] = b"PK\x03\x04";
const SIG_CENTRAL: &[u8; 4] = b"PK\x01\x02";
const SIG_END: &[u8; 4] = b"PK\x05\x06";
const SIG_END64: &[u8; 4] = b"PK\x06\x06";
const SIG_LOCATOR64: &[u8; 4] = b"PK\x06\x07";
const END_LEN: u64 = 22;
const END64_LEN: u64 = 56;
const LOCATOR64_LEN: u64 = 20;
const CENTRAL_LEN: usize = 46;
const LOCAL_LEN: usize = 30;
/// The end record sits within the last 64 KiB (its comment) plus its own size.
const TAIL: u64 = 0xFFFF + END_LEN;
/// End-record signatures tried from the end of the file backwards.
const MAX_END_CANDIDATES: usize = 16;
/// Members at most this big (uncompressed) get their CRC checked; so do pickles.
const CRC_SMALL: u64 = 1 << 20;
/// Deflate cannot exceed ~1032:1; a declared ratio above this is a bomb or a lie.
const BOMB_RATIO: u64 = 1000;
/// Name of the pseudo-member holding bytes found before the first zip member.
pub const PREPENDED: &str = "[prepended data]";

const FLAG_ENCRYPTED: u16 = 0x1;
const FLAG_EOS_MARKER: u16 = 0x2;
const FLAG_PATCHED: u16 = 0x20;
const FLAG_STRONG: u16 = 0x40;

/// Little-endian fields of a fixed-size record (out-of-range reads give 0; records are read whole).
struct Le<'a>(&'a [u8]);

impl Le<'_> {
    fn u16(&self, at: usize) -> u16 {
        self.0.get(at..at + 2).and_then(|s| s.try_into().ok()).map_or(0, u16::from_le_bytes)
    }
    fn u32(&self, at: usize) -> u32 {
        self.0.get(at..at + 4).and_then(|s| s.try_into().ok()).map_or(0, u32::from_le_bytes)
    }
    fn u64(&self, at: usize) -> u64 {
        self.0.get(at..at + 8).and_then(|s| s.try_into().ok()).map_or(0, u64::from_le_bytes)
    }
    fn sig(&self, at: usize, sig: &[u8; 4]) -> bool {
        self.0.get(at..at + 4) == Some(sig.as_slice())
    }
}

/// Caps findings of one code so that an archive of 200,000 tampered members stays readable.
#[derive(Default)]
pub(crate) struct Notes {
    counts: HashMap<&'static str, (Severity, u64)>,
}

impl Notes {
    const PER_CODE: u64 = 20;

    pub(crate) fn add(&mut self, scan: &mut Scan<'_>, f: Finding) {
        let entry = self.counts.entry(f.code).or_insert((f.severity, 0));
        entry.0 = entry.0.max(f.severity);
        entry.1 += 1;
        if entry.1 <= Self::PER_CODE {
            scan.finding(f);
        }
    }

    pub(crate) fn flush(self, scan: &mut Scan<'_>) {
        let mut rest: Vec<_> = self.counts.into_iter().filter(|(_, (_, n))| *n > Self::PER_CODE).collect();
        rest.sort_by_key(|(code, _)| *code);
        for (code, (sev, n)) in rest {
            scan.finding(Finding::new(
                code,
                sev,
                format!("{} more findings of this kind not listed", n - Self::PER_CODE),
            ));
        }
    }
}

/// Why a member name would escape an extraction folder, if it would.
pub(crate) fn unsafe_path(name: &str) -> Option<&'static str> {
    let b = name.as_bytes();
    if b.first().is_some_and(|&c| c == b'/' || c == b'\\') {
        return Some("an absolute path");
    }
    if b.len() >= 2 && b.first().is_some_and(u8::is_ascii_alphabetic) && b.get(1) == Some(&b':') {
        return Some("a drive letter");
    }
    if name.split(['/', '\\']).any(|c| c == "..") {
        return Some("a `..` component");
    }
    None
}

/// A parsed end-of-central-directory record (zip64 values folded in).
#[derive(Debug, Clone, Copy)]
struct End {
    pos: u64,
    entries: u64,
    cd_size: u64,
    cd_offset: u64,
    /// Where the central directory must end: the zip64 end record, else the end record.
    cd_end: u64,
}

/// A central directory the archive may be read through: where it starts and how far the
/// recorded offsets are shifted by prepended bytes (or by bytes removed: Python's `concat` in
/// `_RealGetContents` may be negative).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Directory {
    start: u64,
    shift: i64,
}

fn sig_at(src: &dyn Source, pos: u64, sig: &[u8; 4]) -> io::Result<bool> {
    if pos.checked_add(4).is_none_or(|e| e > src.len()) {
        return Ok(false);
    }
    let mut b = [0u8; 4];
    read_exact_at(src, pos, &mut b)?;
    Ok(&b == sig)
}

/// End records from the end of the file backwards (the last one is what Python and miniz use).
fn end_records(src: &dyn Source) -> io::Result<Vec<End>> {
    let len = src.len();
    if len < END_LEN {
        return Ok(Vec::new());
    }
    let tail_start = len.saturating_sub(TAIL);
    let tail = read_up_to(src, tail_start, TAIL as usize)?;
    let mut out = Vec::new();
    // Candidates from the last place a whole record fits, backwards (a byte-wise scan of the
    // 64 KiB tail of every file was a visible part of judging many files).
    let last = tail.len().saturating_sub(END_LEN as usize);
    static FINDER: std::sync::LazyLock<memchr::memmem::FinderRev<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::FinderRev::new(SIG_END));
    for i in FINDER.rfind_iter(&tail).filter(|i| *i <= last) {
        let rec = Le(tail.get(i..).unwrap_or(&[]));
        let pos = tail_start + i as u64;
        out.push(parse_end(src, pos, &rec)?);
        if out.len() >= MAX_END_CANDIDATES {
            break;
        }
    }
    Ok(out)
}

fn parse_end(src: &dyn Source, pos: u64, rec: &Le<'_>) -> io::Result<End> {
    let mut end = End {
        pos,
        entries: u64::from(rec.u16(10)),
        cd_size: u64::from(rec.u32(12)),
        cd_offset: u64::from(rec.u32(16)),
        cd_end: pos,
    };
    if let Some(loc) = pos.checked_sub(LOCATOR64_LEN) {
        let mut l = [0u8; LOCATOR64_LEN as usize];
        read_exact_at(src, loc, &mut l)?;
        let l = Le(&l);
        if l.sig(0, SIG_LOCATOR64) {
            // Python reads the zip64 record right before the locator; miniz trusts the locator's offset.
            let candidates = [loc.checked_sub(END64_LEN), Some(l.u64(8))];
            for at in candidates.into_iter().flatten() {
                if at.checked_add(END64_LEN).is_some_and(|e| e <= src.len()) {
                    let mut z = [0u8; END64_LEN as usize];
                    read_exact_at(src, at, &mut z)?;
                    let z = Le(&z);
                    if z.sig(0, SIG_END64) {
                        end.entries = z.u64(32);
                        end.cd_size = z.u64(40);
                        end.cd_offset = z.u64(48);
                        end.cd_end = at;
                        break;
                    }
                }
            }
        }
    }
    Ok(end)
}

/// Central directories this end record can be read through: Python's (offsets shifted by the
/// bytes between the recorded and the actual directory start) first, then miniz's (as recorded).
fn directories(src: &dyn Source, end: &End) -> io::Result<Vec<Directory>> {
    let empty = end.entries == 0 && end.cd_size == 0;
    let mut out = Vec::new();
    if let Some(start) = end.cd_end.checked_sub(end.cd_size) {
        let shift = i128::from(start) - i128::from(end.cd_offset);
        if let Ok(shift) = i64::try_from(shift) {
            if empty || sig_at(src, start, SIG_CENTRAL)? {
                out.push(Directory { start, shift });
            }
        }
    }
    if !out.iter().any(|d| d.start == end.cd_offset) && !empty && sig_at(src, end.cd_offset, SIG_CENTRAL)? {
        out.push(Directory { start: end.cd_offset, shift: 0 });
    }
    Ok(out)
}

/// The end record and central directories a lenient reader would use.
fn locate(src: &dyn Source) -> io::Result<Option<(End, Vec<Directory>)>> {
    for end in end_records(src)? {
        let dirs = directories(src, &end)?;
        if !dirs.is_empty() {
            return Ok(Some((end, dirs)));
        }
    }
    Ok(None)
}

/// True when `src` ends like a zip archive (an end record pointing at a central directory),
/// whatever bytes precede it.
pub fn has_end_record(src: &dyn Source) -> io::Result<bool> {
    Ok(locate(src)?.is_some())
}

/// One central-directory entry.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    flags: u16,
    method: u16,
    crc: u32,
    csize: u64,
    usize: u64,
    /// Absolute offset of the local header (shift applied).
    local: u64,
    /// Offset of the central-directory entry, for findings.
    cd_pos: u64,
}

impl Entry {
    fn is_dir(&self) -> bool {
        (self.name.ends_with('/') || self.name.ends_with('\\')) && self.usize == 0
    }
}

/// Outcome of reading one central directory.
struct DirRead {
    entries: Vec<Entry>,
    /// The walk stopped at something that is not an entry.
    malformed: Option<String>,
    /// Entries beyond the member budget were dropped.
    capped: bool,
    /// The entry at this offset has fields that run past the directory's end (cut there).
    cut: Option<u64>,
}

fn read_directory(src: &Arc<dyn Source>, dir: Directory, cd_size: u64, max: u64) -> DirRead {
    let region_end = dir.start.saturating_add(cd_size).min(src.len());
    let mut input = Input::random_at(src.clone(), dir.start);
    let mut out = DirRead { entries: Vec::new(), malformed: None, capped: false, cut: None };
    while input.pos().saturating_add(CENTRAL_LEN as u64) <= region_end {
        let cd_pos = input.pos();
        let mut h = [0u8; CENTRAL_LEN];
        if let Err(e) = input.read_exact(&mut h) {
            out.malformed = Some(format!("cannot read the entry at offset {cd_pos}: {e}"));
            break;
        }
        let r = Le(&h);
        if !r.sig(0, SIG_CENTRAL) {
            // A digital signature or the end records may follow the entries inside a generous size.
            let tail = [b"PK\x05\x05", SIG_END64, SIG_END].iter().any(|sig| r.sig(0, sig));
            if !tail {
                out.malformed = Some(format!("no central-directory entry at offset {cd_pos}"));
            }
            break;
        }
        if out.entries.len() as u64 >= max {
            out.capped = true;
            break;
        }
        // Python's zipfile reads the name, extra field and comment from the directory's bytes
        // (`_RealGetContents` reads `size_cd` bytes into a BytesIO), so a length past the
        // directory's end yields what is left: the fields are cut there, and the entry stands.
        let (name_len, extra_len, comment_len) = (r.u16(28), r.u16(30), r.u16(32));
        let mut field = |input: &mut Input, len: u16| {
            let left = region_end.saturating_sub(input.pos());
            if u64::from(len) > left && out.cut.is_none() {
                out.cut = Some(cd_pos);
            }
            input.read_vec(usize::try_from(u64::from(len).min(left)).unwrap_or(0))
        };
        let name = field(&mut input, name_len);
        let extra = field(&mut input, extra_len);
        let comment = field(&mut input, comment_len);
        let (Ok(name), Ok(extra), Ok(_)) = (name, extra, comment) else {
            out.malformed = Some(format!("the entry at offset {cd_pos} runs past the end of the file"));
            break;
        };
        let mut e = Entry {
            name: String::from_utf8_lossy(&name).into_owned(),
            flags: r.u16(8),
            method: r.u16(10),
            crc: r.u32(16),
            csize: u64::from(r.u32(20)),
            usize: u64::from(r.u32(24)),
            local: u64::from(r.u32(42)),
            cd_pos,
        };
        apply_zip64_extra(&mut e, &extra);
        // An offset shifted below 0 is one Python cannot seek to (the member fails to read).
        e.local = e.local.checked_add_signed(dir.shift).unwrap_or(u64::MAX);
        out.entries.push(e);
    }
    out
}

/// Replace saturated 32-bit fields by the zip64 extra field's values (in the order the spec fixes).
fn apply_zip64_extra(e: &mut Entry, extra: &[u8]) {
    let mut i = 0usize;
    while i + 4 <= extra.len() {
        let h = Le(extra.get(i..).unwrap_or(&[]));
        let (id, size) = (h.u16(0), usize::from(h.u16(2)));
        let body = Le(extra.get(i + 4..(i + 4 + size).min(extra.len())).unwrap_or(&[]));
        if id == 1 {
            let mut at = 0usize;
            let mut take = |field: &mut u64| {
                if *field == 0xFFFF_FFFF && at + 8 <= body.0.len() {
                    *field = body.u64(at);
                    at += 8;
                }
            };
            take(&mut e.usize);
            take(&mut e.csize);
            take(&mut e.local);
            return;
        }
        i += 4 + size;
    }
}

/// Where a member's data lives, from its local header.
struct Local {
    data: u64,
    name: Vec<u8>,
    flags: u16,
}

fn read_local(src: &dyn Source, at: u64) -> Result<Local, String> {
    let mut h = [0u8; LOCAL_LEN];
    if at.checked_add(LOCAL_LEN as u64).is_none_or(|e| e > src.len()) {
        return Err(format!("the local header offset {at} is past the end of the file"));
    }
    read_exact_at(src, at, &mut h).map_err(|e| format!("cannot read the local header at offset {at}: {e}"))?;
    let r = Le(&h);
    if !r.sig(0, SIG_LOCAL) {
        return Err(format!("no local header at offset {at}"));
    }
    let (name_len, extra_len) = (u64::from(r.u16(26)), u64::from(r.u16(28)));
    let name = read_up_to(src, at + LOCAL_LEN as u64, name_len as usize)
        .map_err(|e| format!("cannot read the local header at offset {at}: {e}"))?;
    Ok(Local { data: at + LOCAL_LEN as u64 + name_len + extra_len, name, flags: r.u16(6) })
}

/// Is this member the pickle of a PyTorch zip checkpoint? torch's reader finds records with
/// miniz's `mz_zip_reader_locate_file` without `MZ_ZIP_FLAG_CASE_SENSITIVE`, which compares
/// names case-insensitively (`mz_zip_filename_compare`): `archive/DATA.PKL` is `data.pkl`.
fn is_torch_pickle(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "data.pkl" || name.ends_with("/data.pkl")
}

/// How the loader of an archive of this kind treats the member. Every `.pkl` of a torch
/// archive, in any case, is a pickle to torch (`data.pkl`, TorchScript's `constants.pkl`,
/// `*.debug_pkl`, `torch.package` resources); only members under the exact `data/` folder are
/// raw storages (a mismatched case is sniffed, which reads more, never less).
fn hint_for(format: &Format, name: &str) -> Hint {
    if *format != Format::TorchZip {
        return Hint::Sniff;
    }
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".pkl") || lower.ends_with(".debug_pkl") {
        return Hint::Pickle;
    }
    let mut parts = name.rsplit('/');
    let _file = parts.next();
    if parts.next() == Some("data") {
        Hint::RawData
    } else {
        Hint::Sniff
    }
}

/// Records the first error a decoder returns, so the container can report damage in its own terms
/// after the dispatcher has consumed (part of) the stream.
#[derive(Clone, Default)]
pub(crate) struct ErrTap(Arc<std::sync::Mutex<Option<String>>>);

impl ErrTap {
    pub(crate) fn wrap(&self, r: Box<dyn Read + Send>) -> Box<dyn Read + Send> {
        Box::new(Tapped { inner: r, tap: self.clone() })
    }
    pub(crate) fn error(&self) -> Option<String> {
        self.0.lock().ok().and_then(|g| g.clone())
    }
}

struct Tapped {
    inner: Box<dyn Read + Send>,
    tap: ErrTap,
}

impl Read for Tapped {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            if e.kind() != io::ErrorKind::Interrupted {
                if let Ok(mut g) = self.tap.0.lock() {
                    g.get_or_insert_with(|| e.to_string());
                }
            }
        })
    }
}

/// A decoder for a supported compression method, reading the member's compressed bytes.
fn decoder(method: u16, flags: u16, usize: u64, raw: Input) -> Option<Box<dyn Read + Send>> {
    match method {
        8 => Some(Box::new(flate2::bufread::DeflateDecoder::new(raw))),
        12 => Some(Box::new(bzip2::bufread::MultiBzDecoder::new(raw))),
        14 => Some(Box::new(ZipLzma::new(raw, flags, usize))),
        93 => Some(super::zstd::decoder(raw)),
        _ => None,
    }
}

/// Zip's LZMA (method 14): a 4-byte version/size prefix and the 5 property bytes, then a raw
/// LZMA stream. Rewritten on the fly as an "lzma alone" stream for liblzma.
enum ZipLzma {
    Start(Option<(Input, u16, u64)>),
    Running(Box<liblzma::bufread::XzDecoder<io::Chain<io::Cursor<Vec<u8>>, Input>>>),
}

impl ZipLzma {
    fn new(raw: Input, flags: u16, usize: u64) -> ZipLzma {
        ZipLzma::Start(Some((raw, flags, usize)))
    }
}

impl Read for ZipLzma {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let ZipLzma::Start(state) = self {
            let Some((mut raw, flags, usize)) = state.take() else {
                return Err(io::Error::other("lzma member already failed"));
            };
            let mut head = [0u8; 9];
            raw.read_exact(&mut head)?;
            let h = Le(&head);
            if h.u16(2) != 5 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "unexpected lzma properties size"));
            }
            let mut alone = head.get(4..9).unwrap_or(&[]).to_vec();
            let size = if flags & FLAG_EOS_MARKER != 0 { u64::MAX } else { usize };
            alone.extend_from_slice(&size.to_le_bytes());
            let stream = liblzma::stream::Stream::new_lzma_decoder(512 << 20).map_err(io::Error::other)?;
            let dec = liblzma::bufread::XzDecoder::new_stream(io::Cursor::new(alone).chain(raw), stream);
            *self = ZipLzma::Running(Box::new(dec));
        }
        match self {
            ZipLzma::Running(d) => d.read(buf),
            ZipLzma::Start(_) => Ok(0),
        }
    }
}

fn method_name(method: u16) -> String {
    match method {
        1 => "shrink".into(),
        6 => "implode".into(),
        9 => "deflate64".into(),
        93 => "zstandard".into(),
        95 => "xz".into(),
        98 => "ppmd".into(),
        99 => "aes-encrypted".into(),
        m => format!("method {m}"),
    }
}

/// CRC-32 of a window of `src`, read in chunks.
fn crc_of(src: &dyn Source, start: u64, len: u64) -> io::Result<u32> {
    let mut crc = flate2::Crc::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(buf.len() as u64) as usize;
        let chunk = buf.get_mut(..want).unwrap_or(&mut []);
        read_exact_at(src, start + done, chunk)?;
        crc.update(chunk);
        done += want as u64;
    }
    Ok(crc.sum())
}

/// Scan a zip archive: check its structure, then hand every member back to the dispatcher
/// (bytes found before the first member too, as [`PREPENDED`]).
pub fn scan(scan: &mut Scan<'_>, src: Arc<dyn Source>) -> Format {
    scan_archive(scan, src, true, false)
}

/// Scan the zip at the end of a file whose head was already scanned as another format (a
/// polyglot: torch and numpy read the head, `zipfile` the archive).
pub fn scan_appended(scan: &mut Scan<'_>, src: Arc<dyn Source>, head: &Format) -> Format {
    scan_archive(scan, src, false, head == &Format::TfLite)
}

/// `tflite_tail`: the bytes before the zip are a TFLite model, which is how TFLite models with
/// associated files are laid out (`tflite_support.metadata.MetadataPopulator` appends them as
/// a zip); both parts are scanned either way.
fn scan_archive(scan: &mut Scan<'_>, src: Arc<dyn Source>, with_head: bool, tflite_tail: bool) -> Format {
    scan.mark_model();
    let mut notes = Notes::default();
    let (end, dirs) = match locate(src.as_ref()) {
        Ok(Some(found)) => found,
        Ok(None) => {
            scan.finding(Finding::new(
                "zip-no-end-record",
                Severity::Error,
                "no end-of-central-directory record that points at a central directory: the archive is truncated or damaged",
            ));
            return Format::Zip;
        }
        Err(e) => {
            scan.finding(Finding::new("read-error", Severity::Error, format!("cannot read zip archive: {e}")));
            return Format::Zip;
        }
    };
    if let [first, second, ..] = dirs.as_slice() {
        notes.add(
            scan,
            Finding::new(
                "zip-ambiguous-directory",
                Severity::Suspicious,
                format!(
                    "Python's zipfile reads the central directory at offset {}, PyTorch's miniz at offset {}; both were scanned",
                    first.start, second.start
                ),
            )
            .at(end.pos),
        );
    }

    // Gather the entries of every directory a loader may read, each (name, local header) once.
    // The member budget is the file's: every archive of every nesting level draws on it.
    let mut entries: Vec<Entry> = Vec::new();
    let mut seen_entries = HashSet::new();
    let mut budget = scan.opts.max_members;
    for dir in &dirs {
        let read = read_directory(&src, *dir, end.cd_size, budget.min(scan.members_left()));
        let listed = read.entries.len() as u64;
        let granted = scan.take_members(listed);
        if let Some(why) = read.malformed {
            notes.add(scan, Finding::new("zip-bad-central-directory", Severity::Error, why));
        }
        if let Some(at) = read.cut {
            notes.add(
                scan,
                Finding::new(
                    "zip-entry-cut",
                    Severity::Suspicious,
                    "a central-directory entry's name, extra field or comment runs past the directory's end; read as Python's zipfile does (cut there)",
                )
                .at(at),
            );
        }
        if read.capped || granted < listed {
            notes.add(
                scan,
                Finding::new(
                    "zip-too-many-members",
                    Severity::Error,
                    format!(
                        "more than {} members in this file (all archives together); the rest were not scanned",
                        scan.opts.max_members
                    ),
                ),
            );
        }
        if listed != end.entries && !read.capped {
            notes.add(
                scan,
                Finding::new(
                    "zip-entry-count-mismatch",
                    Severity::Suspicious,
                    format!(
                        "the end record declares {} members, the central directory at offset {} holds {}",
                        end.entries, dir.start, listed
                    ),
                )
                .at(end.pos),
            );
        }
        for e in read.entries.into_iter().take(usize::try_from(granted).unwrap_or(usize::MAX)) {
            if seen_entries.insert((e.name.clone(), e.local)) {
                budget = budget.saturating_sub(1);
                entries.push(e);
            }
        }
    }

    let format = if entries.iter().any(|e| is_torch_pickle(&e.name)) {
        Format::TorchZip
    } else if entries.iter().any(|e| !e.is_dir())
        && entries.iter().filter(|e| !e.is_dir()).all(|e| e.name.ends_with(".npy"))
    {
        Format::Npz
    } else {
        Format::Zip
    };

    // Structure checks that need no member bytes.
    let mut names = HashSet::new();
    for e in &entries {
        if let Some(why) = unsafe_path(&e.name) {
            notes.add(
                scan,
                Finding::new(
                    "zip-path-traversal",
                    Severity::Dangerous,
                    format!("member name has {why}: extracting it writes outside the target folder"),
                )
                .member(e.name.clone())
                .at(e.cd_pos),
            );
        }
        if !names.insert(e.name.as_str()) {
            notes.add(
                scan,
                Finding::new("zip-duplicate-name", Severity::Suspicious, "another member has the same name")
                    .member(e.name.clone())
                    .at(e.cd_pos),
            );
        }
    }

    // Local headers: where each member's data is.
    let mut located: Vec<(usize, Local)> = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        match read_local(src.as_ref(), e.local) {
            Ok(l) => located.push((i, l)),
            Err(why) => notes.add(
                scan,
                Finding::new("zip-bad-local-header", Severity::Error, format!("member not scanned: {why}"))
                    .member(e.name.clone())
                    .at(e.cd_pos),
            ),
        }
    }

    // Overlapping member data, and bytes before the first member.
    let mut spans: Vec<(u64, u64, usize)> = located
        .iter()
        .filter_map(|(i, l)| entries.get(*i).map(|e| (e.local, l.data.saturating_add(e.csize), *i)))
        .collect();
    spans.sort_unstable();
    let mut reach: Option<(u64, usize)> = None;
    for &(start, stop, i) in &spans {
        if let Some((end_so_far, j)) = reach {
            if start < end_so_far {
                let other = entries.get(j).map_or("", |e| e.name.as_str());
                notes.add(
                    scan,
                    Finding::new(
                        "zip-overlapping-members",
                        Severity::Suspicious,
                        format!("member data overlaps that of `{other}`"),
                    )
                    .member(entries.get(i).map_or(String::new(), |e| e.name.clone()))
                    .at(start),
                );
            }
        }
        if reach.is_none_or(|(r, _)| stop > r) {
            reach = Some((stop, i));
        }
    }
    let first_byte = spans.first().map_or(dirs.first().map_or(0, |d| d.start), |s| s.0);
    let mut spent = false;
    if first_byte > 0 && tflite_tail {
        scan.finding(
            Finding::new(
                "tflite-associated-files",
                Severity::Info,
                format!(
                    "a zip of associated files follows the TFLite model's first {first_byte} bytes; both were scanned"
                ),
            )
            .at(first_byte),
        );
    } else if first_byte > 0 {
        scan.finding(
            Finding::new(
                "zip-prepended-data",
                Severity::Suspicious,
                if with_head {
                    format!("{first_byte} bytes precede the first zip member; they were scanned as `{PREPENDED}`")
                } else {
                    format!("the file is also a zip archive behind its first {first_byte} bytes; both were scanned")
                },
            )
            .at(0),
        );
        if with_head {
            if scan.take_window(first_byte) {
                let head: Arc<dyn Source> = Arc::new(SliceSource::new(src.clone(), 0, first_byte));
                scan.member(PREPENDED, Data::Random(head), Hint::Sniff);
            } else {
                spent = true;
            }
        }
    }

    // Members that share their local header and are read the same way are scanned once: names
    // that differ change nothing a loader reads (central-directory entries sharing one header,
    // nested, would otherwise multiply the work level by level). TorchScript code files are
    // kept under each name (a module's name is its path), within the archive's code budget.
    // A TorchScript archive's code/ is judged by the torchscript module once every member is
    // scanned (it sees the pickles' imports and keeps the code files it is handed here).
    let mut script = super::torchscript::Archive::detect(entries.iter().map(|e| e.name.as_str()));
    let mark = scan.import_mark();
    let mut scanned: HashSet<(u64, u64, u64, u16, u16, u8)> = HashSet::new();
    for (i, local) in located {
        let Some(e) = entries.get(i) else { continue };
        let hint = hint_for(&format, &e.name);
        let claims = crate::formats::claimed_model(&e.name).is_some();
        let key = (e.local, e.csize, e.usize, e.method, e.flags | local.flags, hint_code(hint, claims));
        let code = script.as_ref().is_some_and(|s| s.wants(&e.name));
        let first = scanned.insert(key) || code;
        if spent {
            continue;
        }
        if !scan_member(scan, &mut notes, &src, e, &local, &format, first, script.as_mut()) {
            spent = true;
        }
    }
    if spent {
        scan.overlap_exceeded();
    }
    if let Some(script) = script {
        script.finish(scan, mark);
    }
    notes.flush(scan);
    format
}

/// A small code for how a member is read, for telling scans of the same bytes apart.
fn hint_code(hint: Hint, claims: bool) -> u8 {
    let h = match hint {
        Hint::Sniff => 0,
        Hint::Pickle => 1,
        Hint::RawData => 2,
    };
    h | if claims { 4 } else { 0 }
}

/// Check one member and hand its bytes back to the dispatcher (`scan_bytes` false: another
/// entry already had the same bytes scanned the same way). False when the file's window
/// budget is spent.
#[allow(clippy::too_many_arguments)] // the archive's context, passed down once per member
fn scan_member(
    scan: &mut Scan<'_>,
    notes: &mut Notes,
    src: &Arc<dyn Source>,
    e: &Entry,
    local: &Local,
    format: &Format,
    scan_bytes: bool,
    mut script: Option<&mut super::torchscript::Archive>,
) -> bool {
    let name = e.name.as_str();
    let at = |f: Finding| f.member(name.to_string()).at(e.local);
    if local.name != e.name.as_bytes() {
        notes.add(
            scan,
            at(Finding::new(
                "zip-local-name-mismatch",
                Severity::Suspicious,
                "the local header names another file; PyTorch reads the member by its central-directory name",
            )
            .evidence(format!("local header name: {}", String::from_utf8_lossy(&local.name)))),
        );
    }
    let flags = e.flags | local.flags;
    if flags & FLAG_PATCHED != 0 {
        notes.add(
            scan,
            at(Finding::new(
                "zip-flag-patched",
                Severity::Suspicious,
                "general-purpose flag 0x20 (patched data) is set",
            )),
        );
    }
    if flags & FLAG_STRONG != 0 {
        notes.add(
            scan,
            at(Finding::new(
                "zip-flag-strong-encryption",
                Severity::Suspicious,
                "general-purpose flag 0x40 (strong encryption) is set",
            )),
        );
    }
    if e.is_dir() || !scan_bytes {
        return true;
    }
    if local.data.saturating_add(e.csize) > src.len() {
        notes.add(
            scan,
            at(Finding::new(
                "zip-member-truncated",
                Severity::Error,
                format!("member data ({} bytes at offset {}) runs past the end of the file", e.csize, local.data),
            )),
        );
    }
    if e.method != 0 && (e.usize > scan.opts.max_expanded_bytes || e.usize / e.csize.max(1) > BOMB_RATIO) {
        notes.add(
            scan,
            at(Finding::new(
                "zip-compression-ratio",
                Severity::Suspicious,
                format!("{} compressed bytes declare {} uncompressed bytes", e.csize, e.usize),
            )),
        );
    }
    let hint = hint_for(format, name);
    let want_crc = e.usize <= CRC_SMALL || (hint == Hint::Pickle && e.usize <= scan.opts.max_buffered_bytes);
    let tap = ErrTap::default();
    let mut actual_crc = None;
    let mut found = Format::Unknown;
    if e.method == 0 {
        // Python's zipfile yields min(compressed, uncompressed size) bytes of a stored member
        // (`ZipExtFile`); miniz yields the uncompressed size (`mz_zip_reader_extract_to_mem`,
        // which refuses differing sizes unless they come from a zip64 extra field). When the
        // sizes differ, each reading is scanned.
        let mut windows = vec![e.csize];
        if e.usize != e.csize {
            notes.add(
                scan,
                at(Finding::new(
                    "zip-size-mismatch",
                    Severity::Suspicious,
                    format!(
                        "stored member records {} bytes compressed and {} uncompressed; both readings were scanned",
                        e.csize, e.usize
                    ),
                )),
            );
            windows.push(e.usize);
        }
        for (k, len) in windows.into_iter().enumerate() {
            if !scan.take_window(len.min(src.len())) {
                return false;
            }
            let raw = Arc::new(SliceSource::new(src.clone(), local.data, len));
            if k == 0 && want_crc {
                match crc_of(raw.as_ref(), 0, raw.len()) {
                    Ok(crc) => actual_crc = Some(crc),
                    Err(err) => {
                        notes.add(
                            scan,
                            at(Finding::new("read-error", Severity::Error, format!("cannot read member: {err}"))),
                        );
                        return true;
                    }
                }
            }
            let mut data = Data::Random(raw);
            if k == 0 {
                if let Some(s) = script.as_mut().filter(|s| s.wants(name)) {
                    data = s.keep(scan, name, data);
                }
            }
            let f = scan.member(name, data, hint);
            if k == 0 {
                found = f;
            }
        }
    } else {
        let raw = Arc::new(SliceSource::new(src.clone(), local.data, e.csize));
        let Some(dec) = decoder(e.method, flags, e.usize, Input::random(raw)) else {
            notes.add(
                scan,
                at(Finding::new(
                    "zip-unsupported-method",
                    Severity::Error,
                    format!(
                        "member compressed with {}, which modelgate cannot decode: not scanned",
                        method_name(e.method)
                    ),
                )),
            );
            return true;
        };
        // Neither loader yields more than the recorded uncompressed size: Python's
        // `ZipExtFile` stops there, miniz fails past it. Bytes beyond are not the member.
        let over = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let capped = Capped { inner: dec, left: e.usize, over: over.clone() };
        let reader = scan.limit(tap.wrap(Box::new(capped)));
        let data = if want_crc {
            // Buffer small members and pickles once, to check their CRC as the loader reads them.
            match scan.buffer(reader, Some(e.usize)) {
                crate::engine::Buffered::Whole(buf) => {
                    let mut crc = flate2::Crc::new();
                    let mut chunk = vec![0u8; 64 << 10];
                    let mut pos = 0u64;
                    while pos < buf.len() {
                        let n = buf.read_at(pos, &mut chunk).unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        crc.update(chunk.get(..n).unwrap_or(&[]));
                        pos += n as u64;
                    }
                    actual_crc = Some(crc.sum());
                    Data::Random(buf)
                }
                // Too much to hold with everything else held for this file: read on as a stream.
                crate::engine::Buffered::Over(head, reader) => {
                    Data::Stream(Box::new(io::Cursor::new(head).chain(reader)), Some(e.usize))
                }
                // The damage (or a spent budget) is reported below; what decoded before it is
                // scanned, since a loader reading the member as it decodes runs it.
                crate::engine::Buffered::Failed(partial, _) => Data::Random(partial),
            }
        } else {
            Data::Stream(reader, Some(e.usize))
        };
        let data = match script {
            Some(s) if s.wants(name) => s.keep(scan, name, data),
            _ => data,
        };
        found = scan.member(name, data, hint);
        if over.load(std::sync::atomic::Ordering::Relaxed) {
            notes.add(
                scan,
                at(Finding::new(
                    "zip-size-mismatch",
                    Severity::Suspicious,
                    format!(
                        "the member decompresses past its recorded size of {} bytes; loaders stop there, and so did the scan",
                        e.usize
                    ),
                )),
            );
        }
    }
    if let Some(err) = tap.error() {
        notes.add(
            scan,
            at(Finding::new(
                "zip-member-corrupt",
                Severity::Error,
                format!("cannot decompress member ({err}); only the bytes before the damage were scanned"),
            )),
        );
    }
    // Both loaders take the encryption flag from the central directory (`zipfile.ZipFile.open`
    // reads `zinfo.flag_bits`, miniz `mz_zip_reader_file_stat`); a local header's flag is not read.
    let encrypted = e.flags & FLAG_ENCRYPTED != 0;
    // The CRC of an encrypted member is that of its plaintext: only a plaintext member can be checked.
    if let Some(crc) = actual_crc.filter(|_| !encrypted || found != Format::Unknown) {
        check_crc(scan, notes, e, crc);
    }
    if encrypted {
        if found == Format::Unknown {
            notes.add(
                scan,
                at(Finding::new(
                    "zip-encrypted-member",
                    Severity::Error,
                    "member is encrypted (general-purpose flag 0x1) and its bytes are no known format: it cannot be judged",
                )),
            );
        } else {
            notes.add(
                scan,
                at(Finding::new(
                    "zip-flag-encrypted",
                    Severity::Suspicious,
                    format!("member claims encryption (flag 0x1) but is a plaintext {}", found.label()),
                )),
            );
        }
    }
    true
}

/// A decoder cut at the member's recorded uncompressed size; notes whether more followed.
struct Capped {
    inner: Box<dyn Read + Send>,
    left: u64,
    over: Arc<std::sync::atomic::AtomicBool>,
}

impl Read for Capped {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // Whether more follows is a fact for the report; an error there is no loader's concern.
            let mut probe = [0u8; 1];
            if !self.over.load(std::sync::atomic::Ordering::Relaxed)
                && matches!(self.inner.read(&mut probe), Ok(n) if n > 0)
            {
                self.over.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.left) as usize;
        let n = self.inner.read(buf.get_mut(..want).unwrap_or(&mut []))?;
        self.left -= n as u64;
        Ok(n)
    }
}

fn check_crc(scan: &mut Scan<'_>, notes: &mut Notes, e: &Entry, actual: u32) {
    if actual != e.crc {
        notes.add(
            scan,
            Finding::new(
                "zip-crc-mismatch",
                Severity::Suspicious,
                format!("CRC-32 is {actual:08x}, the central directory says {:08x}", e.crc),
            )
            .member(e.name.clone())
            .at(e.local),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_paths() {
        assert!(unsafe_path("../x").is_some());
        assert!(unsafe_path("a/../../x").is_some());
        assert!(unsafe_path("a\\..\\x").is_some());
        assert!(unsafe_path("/etc/passwd").is_some());
        assert!(unsafe_path("C:/x").is_some());
        assert!(unsafe_path("archive/data.pkl").is_none());
        assert!(unsafe_path("a/..b/c..").is_none());
    }

    #[test]
    fn torch_hints() {
        let t = Format::TorchZip;
        assert_eq!(hint_for(&t, "archive/data.pkl"), Hint::Pickle);
        assert_eq!(hint_for(&t, "archive/constants.pkl"), Hint::Pickle);
        assert_eq!(hint_for(&t, "archive/data/0"), Hint::RawData);
        assert_eq!(hint_for(&t, "archive/version"), Hint::Sniff);
        assert_eq!(hint_for(&Format::Zip, "archive/data/0"), Hint::Sniff);
    }
}
