//! Single-stream compression wrappers (gzip, zlib, bzip2, xz, lzma, lz4, joblib's `ZF` zlib):
//! decoded as a stream under the per-file expansion budget and handed back to the dispatcher,
//! so a compressed joblib dump or pickle ends up in the pickle parser.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use crate::detect::{Compression, Format};
use crate::engine::{Hint, Scan};
use crate::finding::{CodeInfo, Finding, Severity};
use crate::formats::zip::ErrTap;
use crate::source::{Data, Input};
use std::io::Read;

pub const CODES: &[CodeInfo] = &[
    CodeInfo {
        code: "compressed-data-corrupt",
        severity: Severity::Error,
        summary: "compressed data is corrupt or truncated; only the part before the damage was scanned",
        fix: "re-create the file; a loader fails on it too, but may run code it read before the damage",
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

/// joblib < 0.10: `ZF` then `hex(len)` left-justified to 19 bytes, then a zlib stream.
const ZF_HEADER: usize = 2 + 19;

/// Decode `data` and scan what it holds; returns the inner format.
pub fn scan(scan: &mut Scan<'_>, c: Compression, data: Data, hint: Hint) -> Format {
    let mut input = data.into_input();
    let mut size_hint = None;
    if c == Compression::JoblibZf {
        match input.read_vec(ZF_HEADER) {
            Ok(h) => match parse_zf_len(&h) {
                Some(n) => size_hint = Some(n),
                None => scan.finding(
                    Finding::new("joblib-zfile-header", Severity::Error, "the length after `ZF` is not a hex number")
                        .at(2)
                        .evidence(String::from_utf8_lossy(h.get(2..).unwrap_or(&[])).trim().to_string()),
                ),
            },
            Err(e) => {
                scan.finding(Finding::new(
                    "joblib-zfile-header",
                    Severity::Error,
                    format!("cannot read the header: {e}"),
                ));
                return Format::Unknown;
            }
        }
    }
    let decoder = match decoder(scan, c, input) {
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
    let inner = scan.inner(Data::Stream(reader, size_hint), hint);
    if let Some(e) = tap.error() {
        scan.finding(Finding::new(
            "compressed-data-corrupt",
            Severity::Error,
            format!("{} data is corrupt ({e}); only the part before the damage was scanned", c.label()),
        ));
    }
    inner
}

fn decoder(scan: &Scan<'_>, c: Compression, input: Input) -> Result<Box<dyn Read + Send>, liblzma::stream::Error> {
    Ok(match c {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Zlib | Compression::JoblibZf => Box::new(flate2::bufread::ZlibDecoder::new(input)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
        Compression::Xz => {
            let s = liblzma::stream::Stream::new_stream_decoder(memlimit(scan), liblzma::stream::CONCATENATED)?;
            Box::new(liblzma::bufread::XzDecoder::new_stream(input, s))
        }
        Compression::Lzma => {
            let s = liblzma::stream::Stream::new_lzma_decoder(memlimit(scan))?;
            Box::new(liblzma::bufread::XzDecoder::new_stream(input, s))
        }
        Compression::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(input)),
        Compression::Zstd => super::zstd::decoder(input),
    })
}

/// The decompressed length joblib wrote after `ZF` (`0x1f4`, padded with spaces, maybe a Python 2 `L`).
fn parse_zf_len(h: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(h.get(2..)?).ok()?.trim_matches(|c: char| c == ' ' || c == '\0');
    let hex = text.strip_prefix("0x")?.trim_end_matches('L');
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zf_length() {
        assert_eq!(parse_zf_len(b"ZF0x1f4                "), Some(500));
        assert_eq!(parse_zf_len(b"ZF0x1f4L               "), Some(500));
        assert_eq!(parse_zf_len(b"ZF0xzz                 "), None);
    }
}
