//! Parsers of untrusted bytes. They report facts (findings, imports) into a [`Scan`] and
//! hand container members back to the dispatcher; they never see policy, git or output.

pub mod compress;
pub mod numpy;
pub mod pickle;
pub mod sevenz;
pub mod tar;
pub mod zip;

use crate::detect::Format;
use crate::engine::{Hint, Scan};
use crate::finding::{Finding, Severity};
use crate::source::Data;

pub const CODES: &[crate::finding::CodeInfo] = &[crate::finding::CodeInfo {
    code: "unsupported-archive",
    severity: Severity::Error,
    summary: "an archive format modelgate cannot open yet holds data that may be a model",
    fix: "unpack the archive and push the model files themselves",
}];

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
    let format = scan_as(scan, format, data, hint);
    if let Some(src) = polyglot {
        zip::scan_appended(scan, src);
    }
    format
}

fn scan_as(scan: &mut Scan<'_>, format: Format, data: Data, hint: Hint) -> Format {
    match format {
        Format::Pickle | Format::TorchLegacy => {
            scan.mark_model();
            let mut input = data.into_input();
            let out = pickle::scan_stream(scan, &mut input, pickle::Mode::Confident);
            if out.joblib {
                Format::Joblib
            } else {
                format
            }
        }
        Format::PickleProbe => {
            let mut input = data.into_input();
            let out = pickle::scan_stream(scan, &mut input, pickle::Mode::Probe);
            if !out.is_pickle {
                Format::Unknown
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
        Format::Tar | Format::TorchTar => tar::scan(scan, data),
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
        Format::Joblib | Format::Unknown => Format::Unknown,
    }
}
