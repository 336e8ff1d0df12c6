//! Parsers of untrusted bytes. They report facts (findings, imports) into a [`Scan`] and
//! hand container members back to the dispatcher; they never see policy, git or output.

pub mod compress;
pub mod eicar;
pub mod gguf;
pub mod hdf5;
pub mod jinja;
pub(crate) mod jinja_lex;
pub mod keras;
pub mod numpy;
pub mod onnx;
pub mod pickle;
pub mod protobuf;
pub mod pyjson;
pub mod safetensors;
pub mod sevenz;
pub mod tar;
pub mod tensorflow;
pub mod torchscript;
pub mod zip;
pub mod zstd;

use crate::detect::Format;
use crate::engine::{Hint, Scan};
use crate::finding::{Finding, Severity};
use crate::source::{Data, Source};
use std::sync::Arc;

/// Model formats with unmistakable magic bytes (checked before the pickle heuristics).
pub fn sniff_model_magic(head: &[u8]) -> Option<Format> {
    safetensors::sniff(head)
        .or_else(|| gguf::sniff(head))
        .or_else(|| hdf5::sniff(head))
        .or_else(|| tensorflow::sniff_tflite(head))
}

/// Formats without magic (protobuf, JSON) whose head looks plausible; the parser decides.
pub fn sniff_model_probe(head: &[u8]) -> Option<Format> {
    protobuf::sniff_probe(head)
        .or_else(|| keras::sniff_json(head))
        .or_else(|| tensorflow::looks_like_text(head).then_some(Format::ProtobufProbe))
        .or_else(|| jinja::sniff(head))
}

/// Route detected data to its parser; returns the format as finally understood
/// (a zip may turn out to be a PyTorch checkpoint, a pickle a joblib dump).
///
/// Loaders that read the same bytes differently are all followed ("polyglots"): random-access
/// data is also looked at the way `h5py` (first superblock at 0, 512, 1024, ...), `zipfile`
/// (end record at the tail) and `tarfile` (a header at 0) read it, whatever its head matched.
/// A name that claims a model format (`*.safetensors`, a `.pt` member) makes unrecognised
/// content an `error` instead of `unsupported`.
pub fn scan(scan: &mut Scan<'_>, format: Format, data: Data, hint: Hint) -> Format {
    // Taken here, before anything nested can scan (and set it for) another source.
    let no_end_record = scan.no_end_record.take();
    let data = eicar::check(scan, &format, data, hint);
    // A stream (a decompressed member) may hide an HDF5 superblock after a user block: when its
    // first MiB holds one, the stream is buffered so that every reader below sees it. Past the
    // first MiB the stream is watched as the parser reads it (and read to its end after).
    let mut watch = None;
    let (data, mut first) = match data {
        Data::Stream(r, size) if hint != Hint::RawData && !matches!(format, Format::Hdf5 | Format::KerasH5) => {
            let (found, head, data) = peek_hdf5_stream(r, size);
            match found {
                Some(_) => match scan.random(data, "data holding an hdf5 file") {
                    Some(src) => (Data::Random(src), head),
                    None => return Format::Hdf5,
                },
                None => {
                    let (data, found) = SigWatch::wrap(data);
                    watch = Some(found);
                    (data, head)
                }
            }
        }
        data => (data, None),
    };
    let polyglot_src = match &data {
        Data::Random(src) if hint != Hint::RawData => {
            first = crate::source::read_up_to(src.as_ref(), 0, 1).ok().and_then(|b| b.first().copied());
            Some(src.clone())
        }
        _ => None,
    };
    let polyglot_ref = polyglot_src.clone();
    let mut found = route(scan, format.clone(), data, hint);
    if let Some(src) = polyglot_src {
        let searched = no_end_record == Some(crate::engine::source_address(&src));
        found = polyglots(scan, src, &format, found, hint, searched);
    }
    // The stream was dropped (and read to its end) by now.
    if let Some(at) = watch.and_then(|w| w.lock().ok().and_then(|g| *g)) {
        scan.finding(
            Finding::new(
                "hdf5-superblock-unread",
                Severity::Error,
                format!(
                    "decompressed data holds an hdf5 superblock at offset {at}, past the first {HDF5_STREAM_PEEK} bytes held to look for one: the hdf5 file was not read"
                ),
            )
            .at(at),
        );
    }
    if hint != Hint::RawData && unrecognised(&found) && !lfs_pointer(polyglot_ref.as_deref()) {
        claimed_but_unknown(scan, first);
    }
    found
}

/// A git-lfs pointer (what a client without git-lfs checks out under the model's name) is text
/// that git-lfs reads, no model loader: its name claims nothing about it.
fn lfs_pointer(src: Option<&dyn Source>) -> bool {
    src.and_then(|s| crate::source::read_up_to(s, 0, crate::lfs::MAX_POINTER_SIZE as usize).ok())
        .is_some_and(|head| crate::lfs::decode_pointer(&head).is_some())
}

/// True for results that recognised no format of any loader (generic JSON or protobuf included).
fn unrecognised(f: &Format) -> bool {
    matches!(f, Format::Unknown | Format::PickleProbe | Format::JsonProbe | Format::ProtobufProbe)
}

/// Random-access data read the other ways loaders read it: `zipfile` from the end record,
/// `h5py` from the first superblock at 0, 512, 1024, ... (`H5FD_locate_signature`), `tarfile`
/// from a header at 0. `detected` is what the head matched, `found` what its parser made of it.
/// `searched`: sniff found no zip end record in `src` already.
fn polyglots(
    scan: &mut Scan<'_>,
    src: Arc<dyn Source>,
    detected: &Format,
    found: Format,
    hint: Hint,
    searched: bool,
) -> Format {
    let mut found = found;
    let is = |f: &Format, list: &[Format]| list.contains(f);
    // Members a loader reads as pickles (torch's data.pkl) are not opened as zips: a pickled
    // bytes object at the end of one may hold a whole archive, which torch never reads as one.
    let zips = [Format::Zip, Format::TorchZip, Format::Npz];
    if !searched && (scan.depth() == 0 || hint == Hint::Sniff) && !is(detected, &zips) && !is(&found, &zips) {
        if let Ok(true) = zip::has_end_record(src.as_ref()) {
            let z = zip::scan_appended(scan, src.clone(), detected);
            if unrecognised(&found) {
                found = z;
            }
        }
    }
    let h5 = [Format::Hdf5, Format::KerasH5];
    if !is(detected, &h5) && !is(&found, &h5) {
        if let Some(at) = hdf5::find_superblock(src.as_ref()) {
            also_pickle_at_hdf5(scan, &src, detected, &found);
            let h = hdf5::scan_at(scan, src.as_ref(), at);
            if unrecognised(&found) {
                found = h;
            }
        }
    }
    let tars = [Format::Tar, Format::TorchTar];
    if !is(detected, &tars) && !is(&found, &tars) {
        let head = crate::source::read_up_to(src.as_ref(), 0, tar::BLOCK as usize).unwrap_or_default();
        if tar::is_header(&head) {
            let t = tar::scan(scan, Data::Random(src));
            if unrecognised(&found) {
                found = t;
            }
        }
    }
    found
}

/// An HDF5 file found behind another head is probed as a pickle too when nothing read its head
/// as one already (a loader may ignore the magic).
fn also_pickle_at_hdf5(scan: &mut Scan<'_>, src: &Arc<dyn Source>, detected: &Format, found: &Format) {
    let pickled = [Format::Pickle, Format::PickleProbe, Format::TorchLegacy, Format::Joblib];
    if !pickled.contains(detected) && !pickled.contains(found) {
        also_pickle(scan, &Data::Random(src.clone()));
    }
}

/// File extensions that claim a model format: what `torch.load`, `pickle`, `joblib`, `numpy`,
/// `safetensors`, llama.cpp, ONNX Runtime, Keras/h5py, TensorFlow and TFLite load, as model
/// hubs list them. Content still decides the format; the name only decides that content no
/// loader format matched is an `error` rather than `unsupported`. `.bin` is not one of them:
/// fastText, word2vec, GGML and firmware use it too, and torch's `.bin` files are pickles,
/// zips or tars, which are told by content whatever the name. `.msgpack` (Flax) and `.model`
/// (sentencepiece) are formats modelgate does not read, and no loader of theirs runs code.
/// `.pb` is any protobuf (a SavedModel's `fingerprint.pb` is one): only the names TensorFlow
/// loads a model from count ([`MODEL_FILE_NAMES`]).
const MODEL_EXTENSIONS: &[&str] = &[
    "pkl",
    "pickle",
    "joblib",
    "dill",
    "pt",
    "pth",
    "ckpt",
    "ptl",
    "npy",
    "npz",
    "pdparams",
    "safetensors",
    "gguf",
    "onnx",
    "h5",
    "hdf5",
    "keras",
    "tflite",
    "mar",
];

/// File names a loader opens as a model whatever other files share their extension:
/// `tf.saved_model.load` reads `saved_model.pb` (or the text form `saved_model.pbtxt`), Keras
/// `keras_metadata.pb`.
const MODEL_FILE_NAMES: &[&str] = &["saved_model.pb", "saved_model.pbtxt", "keras_metadata.pb"];

/// Compression suffixes joblib and users put after a model extension (`model.pkl.gz`).
const COMPRESSION_EXTENSIONS: &[&str] = &["gz", "bz2", "xz", "lzma", "z", "zst", "lz4"];

/// The model format `name` claims (the extension `.pt`, or a name such as `saved_model.pb`), if
/// any. Python's `zipfile` cuts member names at the first NUL (`ZipInfo.__init__`), so that
/// reading counts too.
pub fn claimed_model(name: &str) -> Option<String> {
    match name.split_once('\0') {
        Some((cut, _)) => claimed_name(cut).or_else(|| claimed_name(name)),
        None => claimed_name(name),
    }
}

fn claimed_name(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    if MODEL_FILE_NAMES.iter().any(|n| base.eq_ignore_ascii_case(n)) {
        return Some(format!("`{base}`"));
    }
    let mut stem = base;
    for _ in 0..2 {
        match stem.rsplit_once('.') {
            Some((s, ext)) if COMPRESSION_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()) => stem = s,
            _ => break,
        }
    }
    let (_, ext) = stem.rsplit_once('.')?;
    let ext = ext.to_ascii_lowercase();
    MODEL_EXTENSIONS.contains(&ext.as_str()).then(|| format!("`.{ext}`"))
}

/// A name that claims a model format on content nothing recognised: fail closed.
fn claimed_but_unknown(scan: &mut Scan<'_>, first: Option<u8>) {
    // An empty file holds nothing any loader could run.
    if first.is_none() {
        return;
    }
    // joblib < 0.10 kept each array of a compressed dump in a sibling `<dump>_NN.npy.z`: a `ZF`
    // stream of the array's raw bytes, which `ZNDArrayWrapper.read` hands to
    // `ndarray.__setstate__` (numpy_pickle_compat.read_zfile). What no format matches inside
    // one (the pickle probe, which joblib.load would apply, found nothing) is that array data.
    if scan.in_joblib_zfile {
        return;
    }
    let claimed = scan.current_names().into_iter().find_map(claimed_model);
    if let Some(ext) = claimed {
        scan.finding(Finding::new(
            "model-content-unrecognised",
            Severity::Error,
            format!(
                "the name ({ext}) says model file, but the content matches no format a model loader reads: it cannot be judged"
            ),
        ));
    }
}

/// Random access to `data` for parsers that jump around (buffers a stream within the file's budget).
fn random(scan: &mut Scan<'_>, data: Data, what: &str) -> Option<Arc<dyn Source>> {
    scan.random(data, what)
}

/// Protobuf models are told apart by their structure; anything else is unknown bytes.
fn probe_protobuf(scan: &mut Scan<'_>, src: &dyn Source) -> Format {
    if !protobuf::plausible_fields(&crate::source::read_up_to(src, 0, crate::detect::HEAD).unwrap_or_default()) {
        // Text-format graphs (`saved_model.pbtxt`) are read by the same loaders.
        return tensorflow::scan_saved_model_text(scan, src).unwrap_or(Format::Unknown);
    }
    tensorflow::scan_saved_model(scan, src)
        .or_else(|| onnx::scan(scan, src))
        .or_else(|| tensorflow::scan_keras_metadata(scan, src))
        .unwrap_or(Format::Unknown)
}

/// A file with a model format's magic can still be a pickle to a loader that ignores the
/// magic (`torch.load` of a legacy file): when its first byte is a pickle opcode, probe it as
/// a pickle too, so that a polyglot cannot hide a payload behind the magic.
fn also_pickle(scan: &mut Scan<'_>, data: &Data) {
    if let Data::Random(src) = data {
        let first = crate::source::read_up_to(src.as_ref(), 0, 1).unwrap_or_default();
        if first.first().is_some_and(|&b| pickle::is_opcode(b)) {
            let mut input = crate::source::Input::random(src.clone());
            pickle::scan_stream(scan, &mut input, pickle::Mode::Probe);
        }
    }
}

fn route(scan: &mut Scan<'_>, format: Format, data: Data, hint: Hint) -> Format {
    match format {
        Format::Pickle | Format::TorchLegacy => {
            scan.mark_model();
            let mut input = data.into_input();
            // members a loader reads as pickles (torch's data.pkl, numpy object arrays) go
            // through the C unpickler; a pickle file may be opened with either one
            let loader = if hint == Hint::Pickle { pickle::Loader::C } else { pickle::Loader::Any };
            let out = pickle::scan_stream_as(scan, &mut input, pickle::Mode::Confident, loader);
            if out.joblib {
                Format::Joblib
            } else {
                format
            }
        }
        Format::PickleProbe => {
            // Protobuf has no magic and may start with a byte that is also a pickle opcode.
            let retry = match &data {
                Data::Random(src) if hint == Hint::Sniff => Some(src.clone()),
                _ => None,
            };
            let mut input = data.into_input();
            let out = pickle::scan_stream(scan, &mut input, pickle::Mode::Probe);
            if !out.is_pickle {
                retry.map_or(Format::Unknown, |src| match probe_protobuf(scan, src.as_ref()) {
                    // Text that starts like a pickle opcode may be a chat template.
                    Format::Unknown => jinja::scan_source(scan, src.as_ref()),
                    found => found,
                })
            } else if out.joblib {
                scan.mark_model();
                Format::Joblib
            } else {
                scan.mark_model();
                Format::Pickle
            }
        }
        Format::Zip | Format::TorchZip | Format::Npz => match random(scan, data, "zip archive") {
            Some(src) => zip::scan(scan, src),
            None => Format::Zip,
        },
        Format::Tar | Format::TorchTar => {
            // A header is 512 bytes of free text: it can also be a pickle that `pickle.load`
            // reads while torch and tarfile see a tar.
            also_pickle(scan, &data);
            tar::scan(scan, data)
        }
        Format::Npy => {
            scan.mark_model();
            numpy::scan_npy(scan, data);
            Format::Npy
        }
        Format::Wrapped(c, _) => {
            let outer = scan.in_joblib_zfile;
            scan.in_joblib_zfile |= c == crate::detect::Compression::JoblibZf;
            let inner = compress::scan(scan, c, data, hint);
            scan.in_joblib_zfile = outer;
            Format::Wrapped(c, Box::new(inner))
        }
        Format::SevenZip => match random(scan, data, "7z archive") {
            Some(src) => sevenz::scan(scan, src),
            None => Format::SevenZip,
        },
        Format::Safetensors => {
            also_pickle(scan, &data);
            safetensors::scan(scan, data);
            Format::Safetensors
        }
        Format::Gguf => {
            also_pickle(scan, &data);
            gguf::scan(scan, data);
            Format::Gguf
        }
        Format::Hdf5 | Format::KerasH5 => match random(scan, data, "hdf5 file") {
            Some(src) => {
                also_pickle(scan, &Data::Random(src.clone()));
                hdf5::scan_at(scan, src.as_ref(), 0)
            }
            None => Format::Hdf5,
        },
        Format::TfLite => match random(scan, data, "tflite model") {
            Some(src) => {
                also_pickle(scan, &Data::Random(src.clone()));
                tensorflow::scan_tflite(scan, src.as_ref())
            }
            None => Format::TfLite,
        },
        Format::ProtobufProbe | Format::SavedModel | Format::KerasMetadata | Format::Onnx => {
            match random(scan, data, "protobuf data") {
                Some(src) => probe_protobuf(scan, src.as_ref()),
                None => format,
            }
        }
        Format::KerasConfig | Format::JsonProbe => keras::scan_json(scan, data),
        Format::ChatTemplate => match jinja::scan_data(scan, data) {
            (Format::Unknown, Some(data)) => route(scan, Format::Unknown, data, hint),
            (found, _) => found,
        },
        Format::Joblib | Format::Unknown => Format::Unknown,
    }
}

/// How far into a stream (a decompressed member) an HDF5 superblock is looked for before the
/// stream is parsed: user blocks up to 512 KiB.
const HDF5_STREAM_PEEK: u64 = 1 << 20;

/// The rest of a stream after its peeked head, watched for an HDF5 signature at the offsets
/// h5py looks at (powers of two from [`HDF5_STREAM_PEEK`] on), and read to its end when dropped
/// (bounded like every decoder by the expansion budget), so that no superblock goes unseen.
struct SigWatch {
    inner: Box<dyn std::io::Read + Send>,
    pos: u64,
    /// The next offset to check.
    next: u64,
    /// Bytes of a signature candidate that started in an earlier read.
    partial: Vec<u8>,
    found: Arc<std::sync::Mutex<Option<u64>>>,
}

impl SigWatch {
    fn wrap(data: Data) -> (Data, Arc<std::sync::Mutex<Option<u64>>>) {
        let found = Arc::new(std::sync::Mutex::new(None));
        match data {
            Data::Stream(r, size) => {
                let w =
                    SigWatch { inner: r, pos: 0, next: HDF5_STREAM_PEEK, partial: Vec::new(), found: found.clone() };
                (Data::Stream(Box::new(w), size), found)
            }
            data => (data, found),
        }
    }

    fn check(&mut self, chunk: &[u8]) {
        let start = self.pos;
        let end = start + chunk.len() as u64;
        let mut at = start;
        while at < end {
            let candidate = self.next;
            if !self.partial.is_empty() || candidate < end {
                let from = usize::try_from(candidate.max(at) - start).unwrap_or(usize::MAX);
                let want = 8 - self.partial.len();
                let take = chunk.get(from..).unwrap_or(&[]);
                let take = take.get(..want.min(take.len())).unwrap_or(&[]);
                self.partial.extend_from_slice(take);
                at = start + (from + take.len()) as u64;
                if self.partial.len() == 8 {
                    if self.partial == hdf5::SIGNATURE {
                        if let Ok(mut g) = self.found.lock() {
                            g.get_or_insert(candidate);
                        }
                    }
                    self.partial.clear();
                    self.next = candidate.saturating_mul(2);
                }
            } else {
                break;
            }
        }
        self.pos = end;
    }
}

impl std::io::Read for SigWatch {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.check(buf.get(..n).unwrap_or(&[]));
        Ok(n)
    }
}

impl Drop for SigWatch {
    fn drop(&mut self) {
        // What the parser left unread is watched too (a read error ends it: the decoder
        // reports its own damage).
        let mut chunk = vec![0u8; 64 << 10];
        while let Ok(n) = std::io::Read::read(self, &mut chunk) {
            if n == 0 {
                break;
            }
        }
    }
}

/// Look for an HDF5 superblock in the first [`HDF5_STREAM_PEEK`] bytes of a stream; the stream
/// comes back whole either way, with its first byte.
fn peek_hdf5_stream(r: Box<dyn std::io::Read + Send>, size: Option<u64>) -> (Option<u64>, Option<u8>, Data) {
    use std::io::Read;
    let mut head = Vec::new();
    let mut r = r;
    let read = r.by_ref().take(HDF5_STREAM_PEEK).read_to_end(&mut head);
    let first = head.first().copied();
    let prefix = crate::source::BytesSource(head);
    // On a read error the wrapper reports its own decoding error; what was read is kept.
    let at = read.ok().and_then(|_| hdf5::find_superblock(&prefix));
    (at, first, Data::Stream(Box::new(std::io::Cursor::new(prefix.0).chain(r)), size))
}
