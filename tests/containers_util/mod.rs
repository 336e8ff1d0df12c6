//! Fixture builders for the container tests: zips and tars assembled byte by byte (so that they
//! can be tampered with), compressed wrappers and `.npy` files.
#![allow(dead_code)]

use modelgate::engine::{scan_data, scan_source, FileReport, ScanOptions};
use modelgate::finding::{Finding, Severity};
use modelgate::source::{BytesSource, Data};
use std::io::{Read, Write};
use std::sync::Arc;

/// Protocol 2: `os.system('echo pwned')`.
pub const EVIL_PICKLE: &[u8] = b"\x80\x02cos\nsystem\nq\x00X\x0a\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03.";
/// Protocol 0 (no header): `os.system('echo pwned')`.
pub const EVIL_PICKLE_P0: &[u8] = b"cos\nsystem\n(S'echo pwned'\ntR.";

pub fn scan(bytes: Vec<u8>) -> FileReport {
    scan_with(bytes, &ScanOptions::default())
}

pub fn scan_with(bytes: Vec<u8>, opts: &ScanOptions) -> FileReport {
    scan_source("fixture", Arc::new(BytesSource(bytes)), opts)
}

/// Scan the bytes as a forward-only stream (as a decompressor would deliver them).
pub fn scan_stream(bytes: Vec<u8>) -> FileReport {
    scan_data("fixture", Data::Stream(Box::new(std::io::Cursor::new(bytes)), None), None, &ScanOptions::default())
}

pub fn find<'a>(r: &'a FileReport, code: &str) -> Vec<&'a Finding> {
    r.findings.iter().filter(|f| f.code == code).collect()
}

/// The one finding with `code`; panics with the report when there is none.
pub fn one<'a>(r: &'a FileReport, code: &str) -> &'a Finding {
    let found = find(r, code);
    assert!(!found.is_empty(), "no `{code}` finding in {:#?}", r.findings);
    found[0]
}

pub fn codes(r: &FileReport) -> Vec<&'static str> {
    r.findings.iter().map(|f| f.code).collect()
}

pub fn no_internal_error(r: &FileReport) {
    assert!(!r.findings.iter().any(|f| f.code == "internal-error"), "{:#?}", r.findings);
}

/// True when a Dangerous finding sits at `member`.
pub fn dangerous_at(r: &FileReport, member: &str) -> bool {
    r.findings.iter().any(|f| f.severity == Severity::Dangerous && f.member.as_deref() == Some(member))
}

// ---------------------------------------------------------------- npy

/// An `.npy` file with `header` (a dict literal) and `data` after it.
pub fn npy_with(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.as_bytes().to_vec();
    let pre = if version == 1 { 10 } else { 12 };
    while (pre + h.len() + 1) % 64 != 0 {
        h.push(b' ');
    }
    h.push(b'\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(h.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

/// A valid little-endian float32 array of `n` elements.
pub fn npy_f4(n: usize) -> Vec<u8> {
    npy_with(1, &format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n},), }}"), &vec![0u8; n * 4])
}

/// An object array: the payload after the header is a pickle.
pub fn npy_object(pickle: &[u8]) -> Vec<u8> {
    npy_with(1, "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", pickle)
}

/// An `.npy` whose header is malformed: scanning it yields `npy-bad-header`, which makes it a
/// probe that shows where (at which member path) a container handed its bytes back.
pub fn npy_probe() -> Vec<u8> {
    npy_with(1, "{'descr': '<f4', 'fortran_order': False}", b"")
}

// ---------------------------------------------------------------- zip

/// One member of a hand-built zip.
#[derive(Clone)]
pub struct Z {
    pub name: String,
    /// Name written in the local header (`None`: the central-directory name).
    pub local_name: Option<String>,
    /// Bytes as stored in the archive (compressed for method != 0).
    pub raw: Vec<u8>,
    pub method: u16,
    pub flags: u16,
    pub crc: u32,
    pub usize: u64,
    /// Override of the recorded local-header offset.
    pub offset: Option<u64>,
}

impl Z {
    pub fn stored(name: &str, data: &[u8]) -> Z {
        Z {
            name: name.into(),
            local_name: None,
            raw: data.to_vec(),
            method: 0,
            flags: 0,
            crc: crc(data),
            usize: data.len() as u64,
            offset: None,
        }
    }

    pub fn deflated(name: &str, data: &[u8]) -> Z {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        Z { raw: e.finish().unwrap(), method: 8, ..Z::stored(name, data) }
    }

    /// Compressed with zstd (method 93, read by Python 3.14's `zipfile`).
    pub fn zstd(name: &str, data: &[u8]) -> Z {
        Z { raw: zstd(data), method: 93, ..Z::stored(name, data) }
    }

    pub fn flags(mut self, f: u16) -> Z {
        self.flags = f;
        self
    }
}

pub fn crc(data: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(data);
    c.sum()
}

fn le16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn le32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn le64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_le_bytes());
}

/// Options for [`zip_opts`].
#[derive(Default, Clone)]
pub struct ZipOpts {
    /// Bytes before the archive; recorded offsets do not count them (as `cat stub a.zip` gives).
    pub prepend: Vec<u8>,
    /// Write zip64 records (end record, locator, extra fields) for every member.
    pub zip64: bool,
    /// Override of the entry count in the end record.
    pub count: Option<u16>,
    pub comment: Vec<u8>,
}

pub fn zip(members: &[Z]) -> Vec<u8> {
    zip_opts(members, &ZipOpts::default())
}

pub fn zip_opts(members: &[Z], o: &ZipOpts) -> Vec<u8> {
    let mut out = o.prepend.clone();
    let base = out.len() as u64;
    let mut offsets = Vec::new();
    for m in members {
        let at = out.len() as u64 - base;
        offsets.push(m.offset.unwrap_or(at));
        let local_name = m.local_name.clone().unwrap_or_else(|| m.name.clone());
        out.extend_from_slice(b"PK\x03\x04");
        le16(&mut out, 20);
        le16(&mut out, m.flags);
        le16(&mut out, m.method);
        le32(&mut out, 0);
        le32(&mut out, m.crc);
        le32(&mut out, m.raw.len() as u32);
        le32(&mut out, m.usize as u32);
        le16(&mut out, local_name.len() as u16);
        le16(&mut out, 0);
        out.extend_from_slice(local_name.as_bytes());
        out.extend_from_slice(&m.raw);
    }
    let cd_start = out.len() as u64 - base;
    for (m, off) in members.iter().zip(&offsets) {
        let mut extra = Vec::new();
        if o.zip64 {
            le16(&mut extra, 1);
            le16(&mut extra, 24);
            le64(&mut extra, m.usize);
            le64(&mut extra, m.raw.len() as u64);
            le64(&mut extra, *off);
        }
        let big = |x: u64| if o.zip64 { 0xFFFF_FFFF } else { x as u32 };
        out.extend_from_slice(b"PK\x01\x02");
        le16(&mut out, 20);
        le16(&mut out, 20);
        le16(&mut out, m.flags);
        le16(&mut out, m.method);
        le32(&mut out, 0);
        le32(&mut out, m.crc);
        le32(&mut out, big(m.raw.len() as u64));
        le32(&mut out, big(m.usize));
        le16(&mut out, m.name.len() as u16);
        le16(&mut out, extra.len() as u16);
        le16(&mut out, 0);
        le16(&mut out, 0);
        le16(&mut out, 0);
        le32(&mut out, 0);
        le32(&mut out, big(*off));
        out.extend_from_slice(m.name.as_bytes());
        out.extend_from_slice(&extra);
    }
    let cd_size = out.len() as u64 - base - cd_start;
    let count = o.count.unwrap_or(members.len() as u16);
    if o.zip64 {
        let z64 = out.len() as u64 - base;
        out.extend_from_slice(b"PK\x06\x06");
        le64(&mut out, 44);
        le16(&mut out, 45);
        le16(&mut out, 45);
        le32(&mut out, 0);
        le32(&mut out, 0);
        le64(&mut out, u64::from(count));
        le64(&mut out, u64::from(count));
        le64(&mut out, cd_size);
        le64(&mut out, cd_start);
        out.extend_from_slice(b"PK\x06\x07");
        le32(&mut out, 0);
        le64(&mut out, z64);
        le32(&mut out, 1);
    }
    out.extend_from_slice(b"PK\x05\x06");
    le16(&mut out, 0);
    le16(&mut out, 0);
    let (c16, size32, off32) =
        if o.zip64 { (0xFFFF, 0xFFFF_FFFF, 0xFFFF_FFFF) } else { (count, cd_size as u32, cd_start as u32) };
    le16(&mut out, c16);
    le16(&mut out, c16);
    le32(&mut out, size32);
    le32(&mut out, off32);
    le16(&mut out, o.comment.len() as u16);
    out.extend_from_slice(&o.comment);
    out
}

/// A minimal PyTorch zip checkpoint whose `archive/data.pkl` is `pickle`.
pub fn torch_zip(pickle: &[u8]) -> Vec<u8> {
    zip(&[
        Z::stored("archive/data.pkl", pickle),
        Z::stored("archive/byteorder", b"little"),
        Z::stored("archive/data/0", &[0u8; 64]),
        Z::stored("archive/version", b"3\n"),
    ])
}

// ---------------------------------------------------------------- tar

/// A 512-byte tar header (ustar unless `magic` says otherwise) with a correct checksum.
pub fn tar_header(name: &str, size: u64, kind: u8, magic: &[u8]) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name.as_bytes()[..n]);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = kind;
    h[257..257 + magic.len()].copy_from_slice(magic);
    if magic == b"ustar\0" {
        h[263..265].copy_from_slice(b"00");
    }
    fix_checksum(&mut h);
    h
}

pub fn fix_checksum(h: &mut [u8; 512]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// Append a header and its padded data.
pub fn tar_push(out: &mut Vec<u8>, header: [u8; 512], data: &[u8]) {
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
}

pub fn tar_end(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0u8; 1024]);
}

/// A tar of regular files.
pub fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        tar_push(&mut out, tar_header(name, data.len() as u64, b'0', b"ustar\0"), data);
    }
    tar_end(&mut out);
    out
}

// ---------------------------------------------------------------- compression

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn bzip2(data: &[u8]) -> Vec<u8> {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn xz(data: &[u8]) -> Vec<u8> {
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The "lzma alone" format joblib writes for `.lzma` dumps.
pub fn lzma_alone(data: &[u8]) -> Vec<u8> {
    let opts = liblzma::stream::LzmaOptions::new_preset(6).unwrap();
    let stream = liblzma::stream::Stream::new_lzma_encoder(&opts).unwrap();
    let mut e = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn lz4(data: &[u8]) -> Vec<u8> {
    let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A zstd frame (Python 3.14's `compression.zstd`, zip method 93, `.zst` files).
pub fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

/// joblib < 0.10's `ZF` + hex length padded to 19 bytes + zlib.
pub fn joblib_zf(data: &[u8]) -> Vec<u8> {
    let mut out = format!("ZF{:<19}", format!("0x{:x}", data.len())).into_bytes();
    out.extend_from_slice(&zlib(data));
    out
}

/// Decompress a whole gzip (to check fixtures).
pub fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data).read_to_end(&mut out).unwrap();
    out
}

// ---------------------------------------------------------------- 7z

/// A 7z archive (LZMA2), each member in its own block unless `solid`.
pub fn sevenz(files: &[(&str, &[u8])], solid: bool) -> Vec<u8> {
    use sevenz_rust2::{ArchiveEntry, ArchiveWriter};
    let mut w = ArchiveWriter::new(std::io::Cursor::new(Vec::new())).unwrap();
    if solid {
        let entries = files.iter().map(|(n, _)| ArchiveEntry::new_file(n)).collect();
        let readers =
            files.iter().map(|(_, d)| sevenz_rust2::SourceReader::new(std::io::Cursor::new(d.to_vec()))).collect();
        w.push_archive_entries(entries, readers).unwrap();
    } else {
        for (name, data) in files {
            w.push_archive_entry(ArchiveEntry::new_file(name), Some(std::io::Cursor::new(data.to_vec()))).unwrap();
        }
    }
    w.finish().unwrap().into_inner()
}

// ---------------------------------------------------------------- real loaders

/// `python3` for generating fixtures with the standard library (`tarfile`, `zipfile`). Without
/// it the caller skips, unless CI=true, where it must be there.
pub fn python() -> Option<&'static str> {
    let found = ["python3", "python"].into_iter().find(|p| {
        std::process::Command::new(p)
            .arg("-c")
            .arg("import tarfile, zipfile")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "python3 is required for this test when CI=true");
        eprintln!("skipping: python3 not found");
    }
    found
}

/// A Python with torch (Debian's `python3-torch` for `/usr/bin/python3`), the oracle that
/// proves a crafted file really runs its payload in `torch.load`. Without it the caller skips,
/// unless CI=true (`.ci/run` installs it there).
pub fn torch_python() -> Option<&'static str> {
    let found = ["/usr/bin/python3", "python3"].into_iter().find(|p| {
        std::process::Command::new(p).arg("-c").arg("import torch").output().is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "torch (python3-torch) is required when CI=true");
        eprintln!("skipping the torch oracle: no python3 with torch");
    }
    found
}

/// Run `code` with `python`, the arguments after it; panics with stderr on failure.
pub fn run_python(python: &str, code: &str, args: &[&std::ffi::OsStr]) -> Vec<u8> {
    let out = std::process::Command::new(python).arg("-c").arg(code).args(args).output().expect("run python");
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Which of `files` run the marker payload `os.system('touch "$MG_MARKER"')` when `load`
/// (Python code reading the path `path`) loads them? One Python process loads them all (torch
/// takes seconds to import); exceptions after the payload do not matter.
pub fn payloads_fire(python: &str, load: &str, files: &[&std::path::Path]) -> Vec<bool> {
    let dir = tempfile::tempdir().unwrap();
    let code = format!(
        "import os, sys\n\
         for i, path in enumerate(sys.argv[2:]):\n\
         \x20   os.environ['MG_MARKER'] = os.path.join(sys.argv[1], str(i))\n\
         \x20   try:\n\
         \x20       {load}\n\
         \x20   except Exception:\n\
         \x20       pass\n"
    );
    let out = std::process::Command::new(python).arg("-c").arg(code).arg(dir.path()).args(files).output().unwrap();
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    (0..files.len()).map(|i| dir.path().join(i.to_string()).exists()).collect()
}
