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
use crate::source::Data;

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
pub fn scan(scan: &mut Scan<'_>, format: Format, data: Data, hint: Hint) -> Format {
    // A file that starts like a pickle or an array and ends like a zip is read as either by
    // different loaders (torch.load and np.load go by the head, zipfile by the end record).
    // Members a loader reads as pickles (torch's data.pkl) are never opened as zips.
    let polyglot = match (&format, &data) {
        (Format::Pickle | Format::TorchLegacy | Format::Npy, Data::Random(src))
            if scan.depth() == 0 || hint == Hint::Sniff =>
        {
            zip::has_end_record(src.as_ref()).unwrap_or(false).then(|| src.clone())
        }
        _ => None,
    };
    // Raw tensor bytes are never interpreted by a loader and are not read (multi-GB checkpoints).
    let data = if hint == Hint::RawData { data } else { eicar::check(scan, &format, data) };
    let format = route(scan, format, data, hint);
    if let Some(src) = polyglot {
        zip::scan_appended(scan, src);
    }
    format
}

/// Random access to `data` for parsers that jump around (buffers a stream up to the budget).
fn random(scan: &mut Scan<'_>, data: Data, what: &str) -> Option<std::sync::Arc<dyn crate::source::Source>> {
    match data.into_random(scan.opts.max_buffered_bytes) {
        Ok(src) => Some(src),
        Err(e) => {
            scan.finding(Finding::new("read-error", Severity::Error, format!("cannot read {what}: {e}")));
            None
        }
    }
}

/// Protobuf models are told apart by their structure; anything else is unknown bytes.
fn probe_protobuf(scan: &mut Scan<'_>, src: &dyn crate::source::Source) -> Format {
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

/// Formats told apart by content alone can hide a zip behind them (bytes prepended to an
/// archive): when a zip end record is there, the archive is scanned too.
fn also_zip(scan: &mut Scan<'_>, src: std::sync::Arc<dyn crate::source::Source>, found: Format) -> Format {
    match zip::has_end_record(src.as_ref()) {
        Ok(true) => {
            let z = zip::scan(scan, src);
            if found == Format::Unknown {
                z
            } else {
                found
            }
        }
        _ => found,
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
            // An HDF5 file after a user block that starts with a pickle opcode; random
            // sources are looked at after the probe (`find_hdf5`), streams cannot rewind.
            let data = match data {
                Data::Stream(r, size) if hint == Hint::Sniff => match peek_hdf5_stream(r, size) {
                    (Some(at), data) => return hdf5_at(scan, data, at),
                    (None, data) => data,
                },
                data => data,
            };
            // Protobuf has no magic and may start with a byte that is also a pickle opcode.
            let retry = match &data {
                Data::Random(src) if hint == Hint::Sniff => Some(src.clone()),
                _ => None,
            };
            let mut input = data.into_input();
            let out = pickle::scan_stream(scan, &mut input, pickle::Mode::Probe);
            if !out.is_pickle {
                retry.map_or(Format::Unknown, |src| match probe_protobuf(scan, src.as_ref()) {
                    Format::Unknown => match find_hdf5(scan, src.as_ref()) {
                        // Text that starts like a pickle opcode may be a chat template.
                        Format::Unknown => jinja::scan_source(scan, src.as_ref()),
                        found => found,
                    },
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
        Format::Zip | Format::TorchZip | Format::Npz => match data.into_random(scan.opts.max_buffered_bytes) {
            Ok(src) => zip::scan(scan, src),
            Err(e) => {
                scan.finding(Finding::new("read-error", Severity::Error, format!("cannot read zip archive: {e}")));
                Format::Zip
            }
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
            let inner = compress::scan(scan, c, data, hint);
            Format::Wrapped(c, Box::new(inner))
        }
        Format::SevenZip => match data.into_random(scan.opts.max_buffered_bytes) {
            Ok(src) => sevenz::scan(scan, src),
            Err(e) => {
                scan.finding(Finding::new("read-error", Severity::Error, format!("cannot read 7z archive: {e}")));
                Format::SevenZip
            }
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
        Format::Hdf5 | Format::KerasH5 => hdf5_at(scan, data, 0),
        Format::TfLite => match random(scan, data, "tflite model") {
            Some(src) => {
                also_pickle(scan, &Data::Random(src.clone()));
                tensorflow::scan_tflite(scan, src.as_ref())
            }
            None => Format::TfLite,
        },
        Format::ProtobufProbe | Format::SavedModel | Format::KerasMetadata | Format::Onnx => {
            match random(scan, data, "protobuf data") {
                Some(src) => {
                    let found = probe_protobuf(scan, src.as_ref());
                    also_zip(scan, src, found)
                }
                None => format,
            }
        }
        Format::KerasConfig | Format::JsonProbe => {
            let retry = match &data {
                Data::Random(src) => Some(src.clone()),
                Data::Stream(..) => None,
            };
            let found = keras::scan_json(scan, data);
            retry.map_or(found.clone(), |src| also_zip(scan, src, found))
        }
        Format::ChatTemplate => match jinja::scan_data(scan, data) {
            (Format::Unknown, Some(data)) => route(scan, Format::Unknown, data, hint),
            (found, _) => found,
        },
        Format::Joblib | Format::Unknown => match data {
            Data::Random(src) if hint == Hint::Sniff => find_hdf5(scan, src.as_ref()),
            Data::Stream(r, size) if hint == Hint::Sniff && format == Format::Unknown => {
                match peek_hdf5_stream(r, size) {
                    (Some(at), data) => hdf5_at(scan, data, at),
                    (None, _) => Format::Unknown,
                }
            }
            _ => Format::Unknown,
        },
    }
}

/// How far into an unrecognised stream (a decompressed member) an HDF5 superblock is looked
/// for: user blocks up to 512 KiB. Past that the stream stays unknown unread, as a file
/// nobody loads without unpacking it first.
const HDF5_STREAM_PEEK: u64 = 1 << 20;

/// Look for an HDF5 superblock in the first [`HDF5_STREAM_PEEK`] bytes of a stream; the
/// stream comes back whole either way.
fn peek_hdf5_stream(r: Box<dyn std::io::Read + Send>, size: Option<u64>) -> (Option<u64>, Data) {
    use std::io::Read;
    let mut head = Vec::new();
    let mut r = r;
    let read = r.by_ref().take(HDF5_STREAM_PEEK).read_to_end(&mut head);
    let prefix = crate::source::BytesSource(head);
    // On a read error the wrapper reports its own decoding error; what was read is kept.
    let at = read.ok().and_then(|_| hdf5::find_superblock(&prefix));
    (at, Data::Stream(Box::new(std::io::Cursor::new(prefix.0).chain(r)), size))
}

/// HDF5 data with its superblock at `at`: made random-access (a stream is buffered within the
/// budget), read as HDF5, and probed as a pickle too (a loader may ignore the magic).
fn hdf5_at(scan: &mut Scan<'_>, data: Data, at: u64) -> Format {
    match random(scan, data, "hdf5 file") {
        Some(src) => {
            also_pickle(scan, &Data::Random(src.clone()));
            hdf5::scan_at(scan, src.as_ref(), at)
        }
        None => Format::Hdf5,
    }
}

/// HDF5 allows a user block before the superblock (h5py's `userblock_size`), so a file
/// that matched nothing else may still be one.
fn find_hdf5(scan: &mut Scan<'_>, src: &dyn crate::source::Source) -> Format {
    match hdf5::find_superblock(src) {
        Some(at) => hdf5::scan_at(scan, src, at),
        None => Format::Unknown,
    }
}
