//! Single-stream compression wrappers (gzip, zlib, bzip2, xz, lzma, lzip, lz4, zstd, joblib's
//! `ZF` zlib): decoded as a stream under the per-file expansion budget and handed back to the
//! dispatcher, so a compressed joblib dump or pickle ends up in the pickle parser.
//!
//! Each is read as leniently as the Python reader that loads it:
//! - gzip as `gzip._GzipReader` (Lib/gzip.py): every member in turn, zero bytes after a
//!   member skipped, the header CRC read but not checked, each member's CRC and length checked;
//!   anything else after a member is an error (`BadGzipFile`). joblib's own gzip reader stops
//!   after the first member; reading on scans more, never less.
//! - bzip2 and xz/lzma as `bz2.BZ2File` and `lzma.LZMAFile` (`_compression.DecompressReader`):
//!   a new decoder for every stream, each xz/lzma stream detected anew (`FORMAT_AUTO`: xz,
//!   lzma-alone or lzip, liblzma's `lzma_auto_decoder`), so empty first streams and an
//!   lzma-alone stream followed by others are read whole; data after a stream that does not
//!   start a valid one is ignored, as Python does.
//! - zlib as joblib's `BinaryZlibFile` and `zlib.decompress`: one stream, trailing data ignored.
//! - joblib's old `ZF` files as `joblib.numpy_pickle_compat.read_zfile`: the 19 characters
//!   after `ZF` are a length in `int(x, 16)` syntax; joblib <= 0.8.4 wrote the field one
//!   character wider, so one space after it is skipped.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use crate::detect::{Compression, Format};
use crate::engine::{Hint, Scan};
use crate::finding::{CodeInfo, Finding, Severity};
use crate::formats::zip::ErrTap;
use crate::source::{Data, Input};
use std::io::{self, BufRead, Read};

pub const CODES: &[CodeInfo] = &[
    CodeInfo {
        code: "compressed-data-corrupt",
        severity: Severity::Error,
        summary: "compressed data is corrupt or truncated; only the part before the damage was scanned",
        fix: "re-create the file; a loader fails on it too, but may run code it read before the damage",
    },
    CodeInfo {
        code: "compressed-trailing-data",
        severity: Severity::Info,
        summary: "bytes after the last complete compressed stream start no valid stream; a reader that gets there fails, nothing in them can be decoded",
        fix: "remove the trailing bytes",
    },
    CodeInfo {
        code: "joblib-zfile-header",
        severity: Severity::Error,
        summary: "the length header of an old joblib zlib file is malformed",
        fix: "re-create the dump with a current joblib version",
    },
];

/// Dictionary memory an lzma/xz decoder may use (a crafted header can ask for gigabytes).
fn memlimit(scan: &Scan<'_>) -> u64 {
    scan.opts.max_buffered_bytes.max(64 << 20)
}

/// Python reads any number of concatenated streams; each costs a decoder (a bzip2 one
/// allocates megabytes). Past this many, streams must yield at least [`MIN_STREAM_YIELD`]
/// bytes each on average, or the file ends in an error (a crafted file of empty streams).
const FREE_STREAMS: u64 = 1000;
const MIN_STREAM_YIELD: u64 = 16 << 10;

fn too_many_streams(streams: u64, out: u64) -> io::Result<()> {
    if streams > FREE_STREAMS && out / streams < MIN_STREAM_YIELD {
        return Err(bad(format!(
            "{streams} compressed streams yielding {out} bytes in all: too many streams for their content"
        )));
    }
    Ok(())
}

/// joblib < 0.10: `ZF`, then `hex(len)` left-justified to 19 bytes (`_MAX_LEN`), then zlib.
pub const ZF_HEADER: usize = 2 + 19;

/// Decode `data` and scan what it holds; returns the inner format.
pub fn scan(scan: &mut Scan<'_>, c: Compression, data: Data, hint: Hint) -> Format {
    let mut input = data.into_input();
    if c == Compression::JoblibZf {
        let header = match input.read_vec(ZF_HEADER) {
            Ok(h) => h,
            Err(e) => {
                scan.finding(Finding::new(
                    "joblib-zfile-header",
                    Severity::Error,
                    format!("cannot read the header: {e}"),
                ));
                return Format::Unknown;
            }
        };
        if zf_length(&header).is_none() {
            scan.finding(
                Finding::new("joblib-zfile-header", Severity::Error, "the length after `ZF` is not a hex number")
                    .at(2)
                    .evidence(String::from_utf8_lossy(header.get(2..).unwrap_or(&[])).trim().to_string()),
            );
        }
        // read_zfile: joblib <= 0.8.4 wrote one more padding space (zlib data never starts with one)
        if input.fill_buf().ok().and_then(|b| b.first().copied()) == Some(b' ') {
            input.consume(1);
        }
    }
    let trailing: Note = Note::default();
    let decoder = match decoder(scan, c, input, trailing.clone()) {
        Ok(d) => d,
        Err(e) => {
            scan.finding(Finding::new(
                "compressed-data-corrupt",
                Severity::Error,
                format!("cannot start the {} decoder: {e}", c.label()),
            ));
            return Format::Unknown;
        }
    };
    let tap = ErrTap::default();
    let reader = scan.limit(tap.wrap(decoder));
    let inner = scan.inner(Data::Stream(reader, None), hint);
    if let Some(rest) = trailing.lock().ok().and_then(|g| g.clone()) {
        // Everything decodable was decoded and scanned; Python raises only once a reader
        // asks for more (pickle.load stops at STOP and never does).
        scan.finding(Finding::new("compressed-trailing-data", Severity::Info, format!("{}: {rest}", c.label())));
    }
    if let Some(e) = tap.error() {
        scan.finding(Finding::new(
            "compressed-data-corrupt",
            Severity::Error,
            format!("{} data is corrupt ({e}); only the part before the damage was scanned", c.label()),
        ));
    }
    inner
}

fn decoder(
    scan: &Scan<'_>,
    c: Compression,
    input: Input,
    trailing: Note,
) -> Result<Box<dyn Read + Send>, liblzma::stream::Error> {
    Ok(match c {
        Compression::Gzip => Box::new(GzipMembers::new(input, trailing)),
        Compression::Zlib | Compression::JoblibZf => Box::new(flate2::bufread::ZlibDecoder::new(input)),
        Compression::Bzip2 => Box::new(Streams::new(input, Codec::Bzip2, trailing)),
        Compression::Xz | Compression::Lzma | Compression::Lzip => {
            Box::new(Streams::new(input, Codec::Lzma { memlimit: memlimit(scan) }, trailing))
        }
        Compression::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(input)),
        Compression::Zstd => super::zstd::decoder(input),
    })
}

/// What decoding the start of data whose header is weak evidence found (see [`trial`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trial {
    /// The stream ended cleanly, or yielded [`TRIAL_OUT`] bytes, or took all the input given
    /// without an error: it is a stream, and damage further on is an error.
    Decodes,
    /// The decoder failed before yielding [`TRIAL_OUT`] bytes: Python's first `decompress`
    /// call raises, so no reader gets a byte out of it.
    Fails,
    /// The input ended first, with no error, after yielding these bytes (what a reader gets
    /// from a stream cut there).
    Exhausted(Vec<u8>),
}

/// Output a trial decode looks at. Python's readers hand out nothing of a `decompress` call
/// that raises, and their first call takes 8 KiB of input and may yield 8 KiB
/// (`_compression.DecompressReader.read` with `BUFFER_SIZE` under an 8 KiB `BufferedReader`,
/// joblib's `BinaryZlibFile._fill_buffer`, `zlib.decompress` all at once): a failure within
/// half of that is a failure of the first call.
pub const TRIAL_OUT: usize = 4096;
/// Input a trial decode is given (the same margin).
pub const TRIAL_IN: usize = 4096;

/// Decode the start of `input` (at most [`TRIAL_IN`] bytes are looked at) as one stream of
/// `c`, for headers that arbitrary bytes match often: zlib's two bytes (which joblib's `x`
/// prefix opens), an lzma-alone header (13 bytes of fields without magic; `lzma.open`
/// accepts a large share of arbitrary byte strings), the body of a joblib `ZF` file.
/// Formats with a real magic are not tried: they decode (and fail) in [`scan`].
pub fn trial(c: Compression, input: &[u8]) -> Trial {
    let input = input.get(..input.len().min(TRIAL_IN)).unwrap_or(input);
    match c {
        Compression::Zlib => trial_zlib(input),
        Compression::JoblibZf => {
            // read_zfile: the header, one optional space, then `zlib.decompress` of the rest
            let mut body = input.get(ZF_HEADER..).unwrap_or(&[]);
            if body.first() == Some(&b' ') {
                body = body.get(1..).unwrap_or(&[]);
            }
            trial_zlib(body)
        }
        Compression::Lzma => trial_alone(input),
        _ => Trial::Decodes,
    }
}

/// zlib as `zlib.decompressobj(15)` (joblib's `BinaryZlibFile`) and `zlib.decompress` read it.
fn trial_zlib(input: &[u8]) -> Trial {
    let mut d = flate2::Decompress::new(true);
    let mut out = vec![0u8; TRIAL_OUT];
    loop {
        let (i0, o0) = (d.total_in(), d.total_out());
        let (ri, ro) = (i0 as usize, o0 as usize);
        let r = d.decompress(
            input.get(ri..).unwrap_or(&[]),
            out.get_mut(ro..).unwrap_or(&mut []),
            flate2::FlushDecompress::None,
        );
        let produced = d.total_out() as usize;
        match r {
            Err(_) => return Trial::Fails,
            Ok(flate2::Status::StreamEnd) => return Trial::Decodes,
            Ok(_) if produced >= TRIAL_OUT => return Trial::Decodes,
            Ok(_) if d.total_in() == i0 && d.total_out() == o0 => {
                out.truncate(produced);
                return Trial::Exhausted(out);
            }
            Ok(_) => {}
        }
    }
}

/// lzma-alone as liblzma's `lzma_alone_decoder` reads it (`lzma.open`, `FORMAT_AUTO`). The
/// caller has checked the header as the picky decoder does; the dictionary is capped for the
/// trial, which decodes the same while the output is smaller than the dictionary.
fn trial_alone(input: &[u8]) -> Trial {
    let Some(h) = input.get(..13) else { return Trial::Exhausted(Vec::new()) };
    let dict = h.get(1..5).and_then(|b| <[u8; 4]>::try_from(b).ok()).map_or(0, u32::from_le_bytes).min(1 << 16);
    let mut header = h.to_vec();
    header.splice(1..5, dict.to_le_bytes());
    let body = input.get(13..).unwrap_or(&[]);
    let Ok(mut d) = liblzma::stream::Stream::new_lzma_decoder(4 << 20) else { return Trial::Decodes };
    let mut out = vec![0u8; TRIAL_OUT];
    let mut produced = 0usize;
    for part in [header.as_slice(), body] {
        let mut at = 0usize;
        loop {
            let (i0, o0) = (d.total_in(), d.total_out());
            let r = d.process(
                part.get(at..).unwrap_or(&[]),
                out.get_mut(produced..).unwrap_or(&mut []),
                liblzma::stream::Action::Run,
            );
            at += (d.total_in() - i0) as usize;
            produced += (d.total_out() - o0) as usize;
            match r {
                Err(_) => return Trial::Fails,
                Ok(liblzma::stream::Status::StreamEnd) => return Trial::Decodes,
                Ok(_) if produced >= TRIAL_OUT => return Trial::Decodes,
                Ok(_) if d.total_in() == i0 && d.total_out() == o0 => break,
                Ok(_) => {}
            }
        }
    }
    out.truncate(produced);
    Trial::Exhausted(out)
}

/// The length after `ZF` as `int(field, 16)` reads it (`None` where Python raises).
pub fn zf_length(header: &[u8]) -> Option<i128> {
    py_int16(header.get(2..ZF_HEADER.min(header.len()))?)
}

/// Python's `int(b, 16)` (`PyLong_FromString`): ASCII whitespace around, a sign, an optional
/// `0x`, hex digits with single underscores between them (one may follow the prefix).
pub fn py_int16(b: &[u8]) -> Option<i128> {
    let space = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let start = b.iter().position(|c| !space(c))?;
    let end = b.iter().rposition(|c| !space(c))? + 1;
    let mut s = b.get(start..end)?;
    let mut neg = false;
    if let Some((&sign @ (b'+' | b'-'), rest)) = s.split_first() {
        neg = sign == b'-';
        s = rest;
    }
    let mut after_prefix = false;
    if s.len() >= 2 && s.first() == Some(&b'0') && matches!(s.get(1), Some(b'x' | b'X')) {
        s = s.get(2..)?;
        after_prefix = true;
    }
    let mut v: i128 = 0;
    let mut digits = 0;
    let mut prev_underscore = false;
    for (i, &c) in s.iter().enumerate() {
        if c == b'_' {
            if prev_underscore || (i == 0 && !after_prefix) {
                return None;
            }
            prev_underscore = true;
            continue;
        }
        let d = char::from(c).to_digit(16)?;
        v = v.checked_mul(16)?.checked_add(i128::from(d))?;
        digits += 1;
        prev_underscore = false;
    }
    if digits == 0 || prev_underscore {
        return None;
    }
    Some(if neg { -v } else { v })
}

/// gzip members one after the other, as `gzip._GzipReader` reads them.
struct GzipMembers<R: BufRead> {
    src: Option<R>,
    body: Option<flate2::bufread::DeflateDecoder<R>>,
    crc: flate2::Crc,
    members: u64,
    out: u64,
    /// Output of the current member.
    member_out: u64,
    /// A member ended cleanly and the next has yielded nothing yet.
    boundary: bool,
    trailing: Note,
    done: bool,
}

impl<R: BufRead> GzipMembers<R> {
    fn new(src: R, trailing: Note) -> Self {
        GzipMembers {
            src: Some(src),
            body: None,
            crc: flate2::Crc::new(),
            members: 0,
            out: 0,
            member_out: 0,
            boundary: false,
            trailing,
            done: false,
        }
    }

    fn read_members(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(body) = self.body.as_mut() {
                let n = body.read(buf)?;
                if n > 0 {
                    self.crc.update(buf.get(..n).unwrap_or(&[]));
                    self.out = self.out.saturating_add(n as u64);
                    self.member_out = self.member_out.saturating_add(n as u64);
                    self.boundary = false;
                    return Ok(n);
                }
                // _read_eof: CRC and size, then zero padding
                let Some(body) = self.body.take() else { return Ok(0) };
                let mut r = body.into_inner();
                let t = read_exact_n(&mut r, 8)?;
                let word = |i: usize| u32::from_le_bytes([0, 1, 2, 3].map(|k| t.get(i + k).copied().unwrap_or(0)));
                if word(0) != self.crc.sum() {
                    return Err(bad("gzip CRC check failed"));
                }
                if word(4) != self.crc.amount() {
                    return Err(bad("incorrect length of gzip data produced"));
                }
                loop {
                    let b = r.fill_buf()?;
                    let zeros = b.iter().take_while(|&&x| x == 0).count();
                    let all = zeros == b.len();
                    r.consume(zeros);
                    if !all || zeros == 0 {
                        break;
                    }
                }
                self.src = Some(r);
                self.boundary = true;
                continue;
            }
            let Some(mut r) = self.src.take() else { return Ok(0) };
            if !gzip_header(&mut r)? {
                return Ok(0);
            }
            self.members += 1;
            self.member_out = 0;
            too_many_streams(self.members, self.out)?;
            self.crc.reset();
            self.body = Some(flate2::bufread::DeflateDecoder::new(r));
        }
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Where a decoder notes bytes after the last complete stream that start no valid one: it
/// ends there cleanly (everything decodable was decoded) and the note becomes an info finding.
type Note = std::sync::Arc<std::sync::Mutex<Option<String>>>;

fn note(n: &Note, e: &io::Error) {
    if let Ok(mut g) = n.lock() {
        g.get_or_insert_with(|| e.to_string());
    }
}

fn read_exact_n<R: BufRead>(r: &mut R, n: usize) -> io::Result<Vec<u8>> {
    let mut v = vec![0u8; n];
    r.read_exact(&mut v)
        .map_err(|_| io::Error::new(io::ErrorKind::UnexpectedEof, "gzip header or trailer is truncated"))?;
    Ok(v)
}

/// Skip a zero-terminated field (or to the end of the data, as Python does).
fn skip_cstr<R: BufRead>(r: &mut R) -> io::Result<()> {
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == 0) {
            Some(i) => {
                r.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                r.consume(n);
            }
        }
    }
}

/// `gzip._read_gzip_header`: false at the end of the data.
fn gzip_header<R: BufRead>(r: &mut R) -> io::Result<bool> {
    if r.fill_buf()?.is_empty() {
        return Ok(false);
    }
    let magic = read_exact_n(r, 2).map_err(|_| bad("not a gzipped file"))?;
    if magic != [0x1f, 0x8b] {
        return Err(bad("not a gzipped file (data after the last gzip member)"));
    }
    let h = read_exact_n(r, 8)?;
    if h.first() != Some(&8) {
        return Err(bad("unknown gzip compression method"));
    }
    let flags = h.get(1).copied().unwrap_or(0);
    if flags & 4 != 0 {
        let n = read_exact_n(r, 2)?;
        let n = u16::from_le_bytes([n.first().copied().unwrap_or(0), n.get(1).copied().unwrap_or(0)]);
        let skipped = io::copy(&mut r.by_ref().take(u64::from(n)), &mut io::sink())?;
        if skipped < u64::from(n) {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "gzip extra field is truncated"));
        }
    }
    if flags & 8 != 0 {
        skip_cstr(r)?;
    }
    if flags & 16 != 0 {
        skip_cstr(r)?;
    }
    if flags & 2 != 0 {
        read_exact_n(r, 2)?;
    }
    Ok(true)
}

impl<R: BufRead> Read for GzipMembers<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.done {
            return Ok(0);
        }
        match self.read_members(buf) {
            Ok(n) => Ok(n),
            Err(e) => {
                // after a complete member, a next one that fails before yielding anything
                if self.boundary && !e.to_string().contains("too many streams") {
                    note(&self.trailing, &e);
                    self.done = true;
                    Ok(0)
                } else {
                    Err(e)
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Codec {
    Bzip2,
    Lzma { memlimit: u64 },
}

enum Dec {
    Bz(bzip2::Decompress),
    Lz(Box<liblzma::stream::Stream>),
    /// An lzip member (liblzma's `lzma_lzip_decoder`, which `lzma_auto_decoder` picks for the
    /// `LZIP` magic): a raw LZMA1 stream with an end marker, then CRC32, data and member size.
    Lzip {
        raw: Box<liblzma::stream::Stream>,
        crc: flate2::Crc,
    },
}

/// Concatenated bzip2 or xz/lzma/lzip streams, read as `_compression.DecompressReader` does.
struct Streams<R: BufRead> {
    src: R,
    /// Bytes read ahead to tell an lzip member from other streams; decoded first.
    pending: Vec<u8>,
    codec: Codec,
    dec: Option<Dec>,
    streams: u64,
    produced: bool,
    done: bool,
    out: u64,
    memlimit: u64,
    trailing: Note,
    /// An error met after yielding output in the same call: reported on the next read, so
    /// that everything decoded before the damage is scanned.
    failed: Option<io::Error>,
}

/// The lzip header's coded dictionary size (lzip manual, "File format").
fn lzip_dict(b: u8) -> Option<u32> {
    let log = u32::from(b & 0x1f);
    if !(12..=29).contains(&log) {
        return None;
    }
    let base = 1u32 << log;
    Some(base - (base / 16) * u32::from(b >> 5))
}

impl<R: BufRead> Streams<R> {
    fn new(src: R, codec: Codec, trailing: Note) -> Self {
        let memlimit = match codec {
            Codec::Lzma { memlimit } => memlimit,
            Codec::Bzip2 => 0,
        };
        Streams {
            src,
            pending: Vec::new(),
            codec,
            dec: None,
            streams: 0,
            produced: false,
            done: false,
            out: 0,
            memlimit,
            trailing,
            failed: None,
        }
    }

    /// Read ahead until `pending` holds `n` bytes or the data ends.
    fn fill_pending(&mut self, n: usize) -> io::Result<()> {
        while self.pending.len() < n {
            let buf = self.src.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            let take = buf.len().min(n - self.pending.len());
            self.pending.extend_from_slice(buf.get(..take).unwrap_or(&[]));
            self.src.consume(take);
        }
        Ok(())
    }

    fn start(&mut self) -> io::Result<Dec> {
        let memlimit = match self.codec {
            Codec::Bzip2 => return Ok(Dec::Bz(bzip2::Decompress::new(false))),
            Codec::Lzma { memlimit } => memlimit,
        };
        self.fill_pending(6)?;
        if self.pending.starts_with(b"LZIP") {
            let version = self.pending.get(4).copied();
            let dict = self.pending.get(5).and_then(|&b| lzip_dict(b));
            let (Some(1), Some(dict)) = (version, dict) else {
                return Err(bad("unsupported lzip version or dictionary size"));
            };
            if u64::from(dict) > self.memlimit {
                return Err(bad(format!("an lzip member asks for a {dict}-byte dictionary")));
            }
            self.pending.clear();
            let mut opts = liblzma::stream::LzmaOptions::new_preset(6).map_err(|e| bad(e.to_string()))?;
            opts.dict_size(dict).literal_context_bits(3).literal_position_bits(0).position_bits(2);
            let mut filters = liblzma::stream::Filters::new();
            filters.lzma1(&opts);
            let raw = liblzma::stream::Stream::new_raw_decoder(&filters).map_err(|e| bad(e.to_string()))?;
            return Ok(Dec::Lzip { raw: Box::new(raw), crc: flate2::Crc::new() });
        }
        Ok(Dec::Lz(Box::new(liblzma::stream::Stream::new_auto_decoder(memlimit, 0).map_err(|e| bad(e.to_string()))?)))
    }

    /// The 20-byte lzip trailer after the member's LZMA data.
    fn lzip_trailer(&mut self, crc: &flate2::Crc) -> io::Result<()> {
        self.fill_pending(20)?;
        let t: Vec<u8> = self.pending.drain(..self.pending.len().min(20)).collect();
        if t.len() < 20 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "lzip trailer is truncated"));
        }
        let word = |i: usize| u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7].map(|k| t.get(i + k).copied().unwrap_or(0)));
        // flate2's Crc counts the size modulo 2^32
        if word(0) as u32 != crc.sum() || word(4) & 0xffff_ffff != u64::from(crc.amount()) {
            return Err(bad("lzip CRC or size check failed"));
        }
        Ok(())
    }
}

impl<R: BufRead> Read for Streams<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if let Some(e) = self.failed.take() {
            self.failed = Some(io::Error::new(e.kind(), e.to_string()));
            return Err(e);
        }
        loop {
            if self.done {
                return Ok(0);
            }
            if self.dec.is_none() {
                if self.pending.is_empty() && self.src.fill_buf()?.is_empty() {
                    self.done = true;
                    return Ok(0);
                }
                self.streams += 1;
                self.produced = false;
                too_many_streams(self.streams, self.out)?;
                match self.start() {
                    Ok(d) => self.dec = Some(d),
                    Err(_) if self.streams > 1 => {
                        // trailing data that is no stream: ignored, as Python does
                        self.done = true;
                        return Ok(0);
                    }
                    Err(e) => return Err(e),
                }
            }
            let from_pending = !self.pending.is_empty();
            let input: &[u8] = if from_pending { &self.pending } else { self.src.fill_buf()? };
            let eof = input.is_empty();
            let action = if eof { liblzma::stream::Action::Finish } else { liblzma::stream::Action::Run };
            let lz = |d: &mut liblzma::stream::Stream, buf: &mut [u8]| {
                let (i0, o0) = (d.total_in(), d.total_out());
                let r = d
                    .process(input, buf, action)
                    .map(|s| matches!(s, liblzma::stream::Status::StreamEnd))
                    .map_err(|e| e.to_string());
                ((d.total_in() - i0) as usize, (d.total_out() - o0) as usize, r)
            };
            let (consumed, written, result) = match self.dec.as_mut() {
                Some(Dec::Bz(d)) => {
                    let (i0, o0) = (d.total_in(), d.total_out());
                    let r = d
                        .decompress(input, buf)
                        .map(|s| matches!(s, bzip2::Status::StreamEnd))
                        .map_err(|e| e.to_string());
                    ((d.total_in() - i0) as usize, (d.total_out() - o0) as usize, r)
                }
                Some(Dec::Lz(d)) => lz(d, buf),
                Some(Dec::Lzip { raw, crc }) => {
                    let out = lz(raw, buf);
                    crc.update(buf.get(..out.1).unwrap_or(&[]));
                    out
                }
                None => (0, 0, Ok(false)),
            };
            if from_pending {
                self.pending.drain(..consumed.min(self.pending.len()));
            } else {
                self.src.consume(consumed);
            }
            self.produced |= written > 0;
            self.out = self.out.saturating_add(written as u64);
            match result {
                Err(e) => {
                    // A later stream that fails before producing anything is trailing data,
                    // which DecompressReader ignores (`except self._trailing_error: break`).
                    if self.streams > 1 && !self.produced {
                        self.done = true;
                        return Ok(0);
                    }
                    if written > 0 {
                        self.failed = Some(bad(e));
                        return Ok(written);
                    }
                    return Err(bad(e));
                }
                Ok(true) => {
                    if let Some(Dec::Lzip { crc, .. }) = self.dec.take() {
                        self.lzip_trailer(&crc)?;
                    }
                    if written > 0 {
                        return Ok(written);
                    }
                }
                Ok(false) => {
                    if written > 0 {
                        return Ok(written);
                    }
                    if eof {
                        let e = io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "compressed file ended before the end-of-stream marker was reached",
                        );
                        if self.streams > 1 && !self.produced {
                            note(&self.trailing, &e);
                            self.done = true;
                            return Ok(0);
                        }
                        return Err(e);
                    }
                    if consumed == 0 {
                        return Err(bad("the decoder makes no progress"));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn zf_length_is_python_int_base_16() {
        for (h, v) in [
            (&b"ZF0x1f4                "[..], 500),
            (b"ZF 0X1F4\t\n           ", 500),
            (b"ZF0x_1f4               ", 500),
            (b"ZF+1f4                 ", 500),
            (b"ZF1_f4                 ", 500),
            (b"ZF-0x1                 ", -1),
        ] {
            assert_eq!(zf_length(h), Some(v), "{:?}", String::from_utf8_lossy(h));
        }
        for h in [
            &b"ZF0xzz                 "[..],
            b"ZF0x1f4L               ",
            b"ZF0x                   ",
            b"ZF_1f4                 ",
            b"ZF1__f4                ",
            b"ZF1f4_                 ",
            b"ZF- 1f4                ",
            b"ZF1f\x004              ",
            b"ZF                     ",
        ] {
            assert_eq!(zf_length(h), None, "{:?}", String::from_utf8_lossy(h));
        }
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn read_all(r: impl Read) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut r = r;
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn gzip_members_padding_and_trailers() {
        let mut z = gz(b"one ");
        z.extend_from_slice(&[0; 7]);
        z.extend(gz(b"two"));
        z.extend_from_slice(&[0; 3]);
        assert_eq!(read_all(GzipMembers::new(io::Cursor::new(z.clone()), Note::default())).unwrap(), b"one two");
        z.extend_from_slice(b"junk");
        let n = Note::default();
        assert_eq!(read_all(GzipMembers::new(io::Cursor::new(z), n.clone())).unwrap(), b"one two");
        assert!(n.lock().unwrap().as_deref().is_some_and(|e| e.contains("not a gzipped file")));
        // a wrong header CRC is not checked (FHCRC), a wrong data CRC is
        let mut h = gz(b"x");
        h[3] |= 2;
        h.splice(10..10, [0xde, 0xad]);
        assert_eq!(read_all(GzipMembers::new(io::Cursor::new(h), Note::default())).unwrap(), b"x");
        let mut c = gz(b"x");
        let n = c.len();
        c[n - 8] ^= 1;
        assert!(read_all(GzipMembers::new(io::Cursor::new(c), Note::default())).is_err());
    }
}
