//! Format detection by content. The file name is never consulted.

use crate::finding::Hint;
use crate::formats::compress::Trial;
use crate::source::{read_up_to, Data};
use std::io::{self, Read};

/// Single-stream compression wrappers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zlib,
    Bzip2,
    Xz,
    Lzma,
    Lzip,
    Lz4,
    Zstd,
    /// joblib's old `ZF0x<len>` header followed by a zlib stream.
    JoblibZf,
}

impl Compression {
    pub fn label(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zlib => "zlib",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
            Compression::Lzma => "lzma",
            Compression::Lzip => "lzip",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
            Compression::JoblibZf => "joblib-zlib",
        }
    }
}

/// What a piece of data is, decided by its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// A pickle stream with a PROTO header (protocol 2..=5), or one the loader reads as pickle.
    Pickle,
    /// Bytes that may be a headerless (protocol 0/1) pickle; the pickle parser decides.
    PickleProbe,
    /// Legacy (non-zip) PyTorch: the magic-number pickle followed by more pickles.
    TorchLegacy,
    /// A pickle stream that turned out to be a joblib dump (NumpyArrayWrapper).
    Joblib,
    /// A zip archive (possibly with bytes prepended).
    Zip,
    /// A zip that holds a PyTorch checkpoint (`*/data.pkl`).
    TorchZip,
    /// A zip of `.npy` members.
    Npz,
    /// A tar archive; `TorchTar` when it is the torch 0.1 layout.
    Tar,
    TorchTar,
    /// A NumPy `.npy` array.
    Npy,
    /// A 7z archive.
    SevenZip,
    /// A compressed single stream and what it held.
    Wrapped(Compression, Box<Format>),
    /// A safetensors file (u64 header length, JSON header, raw tensors).
    Safetensors,
    /// A GGUF (llama.cpp) model.
    Gguf,
    /// An HDF5 file; `KerasH5` once a Keras `model_config` was found in it.
    Hdf5,
    KerasH5,
    /// A Keras model config (`config.json` of a `.keras` zip, or `model.to_json()` output).
    KerasConfig,
    /// A TensorFlow SavedModel `saved_model.pb`.
    SavedModel,
    /// A TensorFlow/Keras `keras_metadata.pb`.
    KerasMetadata,
    /// A TensorFlow Lite flatbuffer.
    TfLite,
    /// An ONNX model.
    Onnx,
    /// Bytes that may be a protobuf model (SavedModel, ONNX, Keras metadata); the structure decides.
    ProtobufProbe,
    /// Bytes that may be a JSON document (a Keras config); the content decides.
    JsonProbe,
    /// A Jinja chat template (`chat_template.jinja`), or text that may be one.
    ChatTemplate,
    /// Not a format modelgate knows.
    Unknown,
}

impl Format {
    pub fn label(&self) -> String {
        match self {
            Format::Pickle | Format::PickleProbe => "pickle".into(),
            Format::TorchLegacy => "pytorch-legacy".into(),
            Format::Joblib => "joblib".into(),
            Format::Zip => "zip".into(),
            Format::TorchZip => "pytorch".into(),
            Format::Npz => "numpy-npz".into(),
            Format::Tar => "tar".into(),
            Format::TorchTar => "pytorch-tar".into(),
            Format::Npy => "numpy".into(),
            Format::SevenZip => "7z".into(),
            Format::Wrapped(c, inner) => format!("{}:{}", c.label(), inner.label()),
            Format::Safetensors => "safetensors".into(),
            Format::Gguf => "gguf".into(),
            Format::Hdf5 => "hdf5".into(),
            Format::KerasH5 => "keras-h5".into(),
            Format::KerasConfig => "keras-config".into(),
            Format::SavedModel => "tensorflow-savedmodel".into(),
            Format::KerasMetadata => "keras-metadata".into(),
            Format::TfLite => "tflite".into(),
            Format::Onnx => "onnx".into(),
            Format::ProtobufProbe => "protobuf".into(),
            Format::JsonProbe => "json".into(),
            Format::ChatTemplate => "chat-template".into(),
            Format::Unknown => "unknown".into(),
        }
    }

    /// True for formats that are models (or may carry model code) rather than unknown bytes.
    pub fn is_model(&self) -> bool {
        !matches!(self, Format::Unknown)
    }
}

/// How many leading bytes detection looks at.
pub const HEAD: usize = 512;

/// The pickled torch legacy magic number 0x1950a86a20f9469cfc6c, protocol 2, as torch writes it.
const TORCH_LEGACY_MAGIC: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";

/// Sniff `data`'s format from its first bytes (and, for random sources, its zip end
/// record). A stream is re-assembled so that no byte is lost.
pub fn sniff(data: &mut Data, hint: Hint) -> io::Result<Format> {
    let (head, _) = peek(data, HEAD)?;
    let mut fmt = {
        let mut fetch = || peek(data, crate::formats::compress::TRIAL_IN).ok();
        sniff_in(&head, hint, &mut Probe::new(&mut fetch))
    };
    // Raw tensor bytes are never opened as an archive: skip the tail read for each storage.
    if (fmt == Format::Unknown || fmt == Format::PickleProbe) && hint != Hint::RawData {
        if let Data::Random(src) = data {
            if crate::formats::zip::has_end_record(src.as_ref())? {
                fmt = Format::Zip;
            }
        }
    }
    Ok(fmt)
}

/// The first `n` bytes of `data`, and whether that is all of it. A stream is re-assembled
/// so that no byte is lost; one that fails within them (a decompressor meeting trailing
/// junk) still delivers what came before, and its reader sees the same error where it
/// happened.
fn peek(data: &mut Data, n: usize) -> io::Result<(Vec<u8>, bool)> {
    match data {
        Data::Random(src) => {
            let head = read_up_to(src.as_ref(), 0, n)?;
            let complete = head.len() as u64 >= src.len();
            Ok((head, complete))
        }
        Data::Stream(r, size) => {
            let mut head = Vec::with_capacity(n);
            let failed = match r.by_ref().take(n as u64).read_to_end(&mut head) {
                Ok(_) => None,
                Err(e) if head.is_empty() => return Err(e),
                Err(e) => Some(e),
            };
            let complete = failed.is_none() && head.len() < n;
            let rest = match failed {
                Some(e) => Box::new(Replay(Some(e))) as Box<dyn Read + Send>,
                None => std::mem::replace(r, Box::new(io::empty())),
            };
            *data = Data::Stream(Box::new(io::Cursor::new(head.clone()).chain(rest)), *size);
            Ok((head, complete))
        }
    }
}

/// A reader that fails as the stream it replaces did (once with the error, then again with
/// its kind and message).
struct Replay(Option<io::Error>);

impl Read for Replay {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(match self.0.take() {
            Some(e) => {
                let again = io::Error::new(e.kind(), e.to_string());
                self.0 = Some(again);
                e
            }
            None => io::Error::other("read error"),
        })
    }
}

/// The first bytes of the data for a trial decode, and whether they are all of it.
type Fetch<'f> = dyn FnMut() -> Option<(Vec<u8>, bool)> + 'f;

/// A compression header that arbitrary bytes match often (zlib's two bytes, an lzma-alone
/// header, joblib's `ZF` length field) is only half the evidence: which reader would get
/// anything out of the bytes? Python's readers hand out nothing of a `decompress` call that
/// raises (see [`crate::formats::compress::trial`]), so data whose stream fails at its start
/// is no compressed file, and is sniffed on as what else it may be (a MATLAB v4 file, raw array
/// bytes such as joblib's `*.npy.z` siblings hold). A stream that decodes is one, damaged or not.
struct Probe<'p, 'f> {
    fetch: Option<&'p mut Fetch<'f>>,
    got: Option<Option<(Vec<u8>, bool)>>,
}

impl<'p, 'f> Probe<'p, 'f> {
    fn new(fetch: &'p mut Fetch<'f>) -> Self {
        Probe { fetch: Some(fetch), got: None }
    }

    /// No trial: a weak header counts as a stream.
    fn none() -> Self {
        Probe { fetch: None, got: None }
    }

    /// Whether the data, from `skip` on, holds a `c` stream that a reader gets bytes from.
    fn holds(&mut self, c: Compression, skip: usize, hint: Hint) -> bool {
        let Some(fetch) = self.fetch.as_mut() else { return true };
        let got = self.got.get_or_insert_with(fetch);
        let Some((bytes, complete)) = got.as_ref() else { return true };
        match crate::formats::compress::trial(c, bytes.get(skip..).unwrap_or(&[])) {
            Trial::Decodes => true,
            Trial::Fails => false,
            // Cut short with no error: a reader gets what it decoded (joblib's zlib reader
            // even takes the cut for the end); nothing there, or nothing any loader reads
            // (not even another weak header), and the data is not a compressed file.
            Trial::Exhausted(out) => {
                !*complete || (!out.is_empty() && sniff_in(&out, hint, &mut Probe::none()) != Format::Unknown)
            }
        }
    }
}

/// Detection from the leading bytes alone (a weak compression header is tried on them).
pub fn sniff_head(head: &[u8], hint: Hint) -> Format {
    let mut fetch = || Some((head.to_vec(), false));
    sniff_in(head, hint, &mut Probe::new(&mut fetch))
}

fn sniff_in(head: &[u8], hint: Hint, probe: &mut Probe<'_, '_>) -> Format {
    let starts = |m: &[u8]| head.starts_with(m);
    if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") || starts(b"PK\x07\x08") {
        return Format::Zip;
    }
    if starts(b"\x93NUMPY") {
        return Format::Npy;
    }
    if starts(b"7z\xbc\xaf\x27\x1c") {
        return Format::SevenZip;
    }
    if starts(b"\x1f\x8b") {
        return Format::Wrapped(Compression::Gzip, Box::new(Format::Unknown));
    }
    // bz2: a block or, for an empty first stream, the end-of-stream marker (Python's bz2
    // reads the streams that follow it; joblib picks bz2 by the `BZ` prefix)
    if head.len() >= 10
        && starts(b"BZh")
        && (b'1'..=b'9').contains(&head[3])
        && (&head[4..10] == b"\x31\x41\x59\x26\x53\x59" || &head[4..10] == b"\x17\x72\x45\x38\x50\x90")
    {
        return Format::Wrapped(Compression::Bzip2, Box::new(Format::Unknown));
    }
    if starts(b"\xfd7zXZ\x00") {
        return Format::Wrapped(Compression::Xz, Box::new(Format::Unknown));
    }
    if starts(b"\x04\x22\x4d\x18") {
        return Format::Wrapped(Compression::Lz4, Box::new(Format::Unknown));
    }
    if starts(b"\x28\xb5\x2f\xfd") {
        return Format::Wrapped(Compression::Zstd, Box::new(Format::Unknown));
    }
    // joblib.numpy_pickle_compat.read_zfile: any length field `int(x, 16)` accepts
    if starts(b"ZF")
        && crate::formats::compress::zf_length(head).is_some()
        && probe.holds(Compression::JoblibZf, 0, hint)
    {
        return Format::Wrapped(Compression::JoblibZf, Box::new(Format::Unknown));
    }
    // lzip, which lzma.open (FORMAT_AUTO) reads too
    if starts(b"LZIP") && head.get(4) == Some(&1) {
        return Format::Wrapped(Compression::Lzip, Box::new(Format::Unknown));
    }
    if head.len() >= 262 && &head[257..262] == b"ustar" {
        return Format::Tar;
    }
    if hint != Hint::RawData && crate::formats::tar::is_header(head) {
        return Format::Tar;
    }
    if hint == Hint::RawData {
        // Raw tensor bytes: only unmistakable magic above counts; a pickle header is probed.
        return if head.first() == Some(&0x80) { Format::PickleProbe } else { Format::Unknown };
    }
    // A member the loader unpickles is a pickle whatever magic it starts with.
    if hint == Hint::Sniff {
        if let Some(f) = crate::formats::sniff_model_magic(head) {
            return f;
        }
    }
    if starts(TORCH_LEGACY_MAGIC) {
        return Format::TorchLegacy;
    }
    if head.len() >= 2 && head[0] == 0x80 && head[1] <= 5 {
        return Format::Pickle;
    }
    if head.len() >= 2
        && head[0] == 0x78
        && (u16::from(head[0]) << 8 | u16::from(head[1])) % 31 == 0
        && probe.holds(Compression::Zlib, 0, hint)
    {
        return Format::Wrapped(Compression::Zlib, Box::new(Format::Unknown));
    }
    match lzma_alone_start(head) {
        Some(Alone::Strong) => return Format::Wrapped(Compression::Lzma, Box::new(Format::Unknown)),
        Some(Alone::Weak(at)) if probe.holds(Compression::Lzma, at, hint) => {
            return Format::Wrapped(Compression::Lzma, Box::new(Format::Unknown))
        }
        _ => {}
    }
    if hint == Hint::Pickle {
        return Format::Pickle;
    }
    if let Some(f) = crate::formats::sniff_model_probe(head) {
        return f;
    }
    if head.first().is_some_and(|&b| crate::formats::pickle::is_opcode(b)) {
        return Format::PickleProbe;
    }
    Format::Unknown
}

/// An lzma-alone header as liblzma's `lzma_auto_decoder` (Python's `FORMAT_AUTO`, which
/// joblib uses for `]\x00` files) accepts it: lc/lp/pb in range with lc + lp <= 4, a dictionary
/// size of 2^n, 2^n + 2^(n-1) or 2^32 - 1, an unknown or plausible uncompressed size
/// (`alone_decoder.c`, picky mode).
fn alone_header(h: &[u8]) -> bool {
    let Some(h) = h.get(..13) else { return false };
    let props = h[0];
    if props > (4 * 5 + 4) * 9 + 8 || props % 9 + (props / 9) % 5 > 4 {
        return false;
    }
    let dict = u32::from_le_bytes([h[1], h[2], h[3], h[4]]);
    let mut d = dict.wrapping_sub(1);
    d |= d >> 2;
    d |= d >> 3;
    d |= d >> 4;
    d |= d >> 8;
    d |= d >> 16;
    if dict != u32::MAX && d.wrapping_add(1) != dict {
        return false;
    }
    let size = u64::from_le_bytes([h[5], h[6], h[7], h[8], h[9], h[10], h[11], h[12]]);
    size == u64::MAX || size < 1 << 38
}

/// How an lzma-alone stream was recognised.
#[derive(Debug, PartialEq, Eq)]
enum Alone {
    /// By empty streams leading to xz or lzip magic.
    Strong,
    /// By a header alone, at this offset (after empty streams): `lzma.open` reads it, but
    /// arbitrary bytes pass the header rules often. joblib's `]\x00` prefix
    /// (`joblib.compressor._LZMA_PREFIX`, which `numpy_pickle_utils._detect_compressor` opens
    /// as lzma whatever follows) is no stronger: where the decoder fails at once, joblib.load
    /// raises before reading a byte.
    Weak(usize),
}

/// The start of an lzma-alone stream. Thirteen zero bytes are one too (an empty stream: 18
/// zero bytes in all), which `lzma.open` reads past to the next stream; zeros count only when
/// such empty streams lead, within the head, to a real stream header.
fn lzma_alone_start(head: &[u8]) -> Option<Alone> {
    let mut at = 0;
    while head.get(at..at + 18).is_some_and(|b| b.iter().all(|&x| x == 0)) {
        at += 18;
    }
    let rest = head.get(at..).unwrap_or(&[]);
    if at > 0 && (rest.starts_with(b"\xfd7zXZ\x00") || rest.starts_with(b"LZIP")) {
        return Some(Alone::Strong);
    }
    if !(alone_header(rest) && rest.get(..13).is_some_and(|h| h.iter().any(|&x| x != 0))) {
        return None;
    }
    Some(Alone::Weak(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_numbers() {
        assert_eq!(sniff_head(b"\x80\x04\x95", Hint::Sniff), Format::Pickle);
        assert_eq!(sniff_head(TORCH_LEGACY_MAGIC, Hint::Sniff), Format::TorchLegacy);
        assert_eq!(sniff_head(b"PK\x03\x04rest", Hint::Sniff), Format::Zip);
        assert_eq!(sniff_head(b"\x93NUMPY\x01\x00", Hint::Sniff), Format::Npy);
        // 0x89 (a PNG's first byte) is the NEWFALSE opcode: such data is probed, so use JPEG here.
        assert_eq!(sniff_head(b"\xff\xd8\xff\xe0", Hint::Sniff), Format::Unknown);
        assert_eq!(sniff_head(b"(lp0\n.", Hint::Sniff), Format::PickleProbe);
        assert_eq!(sniff_head(b"\x78\x9c", Hint::Sniff), Format::Wrapped(Compression::Zlib, Box::new(Format::Unknown)));
        assert_eq!(sniff_head(b"cos\nsystem\n", Hint::RawData), Format::Unknown);
    }
}
