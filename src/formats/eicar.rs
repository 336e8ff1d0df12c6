//! The EICAR antivirus test signature. It runs nothing, but antivirus products quarantine any
//! file that holds it, and model hubs use it to test their scanners; a repository should not
//! carry it unnoticed.
//!
//! Bounded search: a file up to [`WHOLE`] bytes is searched entirely, a larger one in its first
//! and last [`EDGE`] bytes (the signature is defined at the start of a file; appended copies
//! sit at the end). A stream is searched in its first [`WHOLE`] bytes.
//! Containers are not searched as raw bytes (their members are, one by one), nor are raw tensor
//! bytes (multi-GB storages no loader interprets): of both only the start is checked, where the
//! signature is defined to sit (a tar's first header begins with a free-text name).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use crate::detect::Format;
use crate::engine::{Hint, Scan};
use crate::finding::{CodeInfo, Finding, Severity};
use crate::source::{read_up_to, Data, Source};
use std::io::{self, Read};

pub const CODES: &[CodeInfo] = &[CodeInfo {
    code: "eicar-test-signature",
    severity: Severity::Dangerous,
    summary: "the file holds the eicar antivirus test signature",
    fix: "remove the test string; antivirus products quarantine files that carry it",
}];

/// The 68-byte EICAR test string.
pub const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
/// Files up to this size are searched entirely.
pub const WHOLE: u64 = 1 << 20;
/// Bytes searched at each end of larger files.
pub const EDGE: u64 = 64 << 10;

/// Where the signature is in `hay`.
pub fn find(hay: &[u8]) -> Option<usize> {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(EICAR));
    FINDER.find(hay)
}

/// Search a random-access source (whole when small, head and tail when large).
pub fn search(src: &dyn Source) -> io::Result<Option<u64>> {
    let len = src.len();
    if len <= WHOLE {
        return Ok(find(&read_up_to(src, 0, WHOLE as usize)?).map(|i| i as u64));
    }
    if let Some(i) = find(&read_up_to(src, 0, EDGE as usize)?) {
        return Ok(Some(i as u64));
    }
    let tail = len - EDGE;
    Ok(find(&read_up_to(src, tail, EDGE as usize)?).map(|i| tail + i as u64))
}

fn container(format: &Format) -> bool {
    matches!(
        format,
        Format::Zip
            | Format::TorchZip
            | Format::Npz
            | Format::Tar
            | Format::TorchTar
            | Format::Wrapped(..)
            | Format::SevenZip
    )
}

fn finding(at: u64) -> Finding {
    Finding::new("eicar-test-signature", Severity::Dangerous, "the eicar antivirus test signature is present")
        .at(at)
        .evidence(String::from_utf8_lossy(EICAR).into_owned())
}

/// Search `data` before its parser runs. A stream's first [`WHOLE`] bytes are read, searched
/// and put back in front of the rest, so the parser sees every byte. Containers and raw tensor
/// bytes are checked at their start only.
pub fn check(scan: &mut Scan<'_>, format: &Format, data: Data, hint: Hint) -> Data {
    if container(format) || hint == Hint::RawData {
        return check_start(scan, data);
    }
    match data {
        Data::Random(src) => {
            // An unreadable file is reported by its parser; the search only adds facts.
            if let Ok(Some(at)) = search(src.as_ref()) {
                scan.finding(finding(at));
            }
            Data::Random(src)
        }
        Data::Stream(mut r, size) => {
            let mut head = Vec::new();
            let res = r.by_ref().take(WHOLE).read_to_end(&mut head);
            if let Some(at) = find(&head) {
                scan.finding(finding(at as u64));
            }
            let rest: Box<dyn Read + Send> = match res {
                Ok(_) => r,
                // Hand the error to the parser, after the bytes that did arrive.
                Err(e) => Box::new(Failing(Some(e))),
            };
            Data::Stream(Box::new(io::Cursor::new(head).chain(rest)), size)
        }
    }
}

/// Check whether `data` starts with the signature (a stream gets its first bytes put back).
fn check_start(scan: &mut Scan<'_>, data: Data) -> Data {
    let len = EICAR.len();
    match data {
        Data::Random(src) => {
            if read_up_to(src.as_ref(), 0, len).is_ok_and(|head| head == EICAR) {
                scan.finding(finding(0));
            }
            Data::Random(src)
        }
        Data::Stream(mut r, size) => {
            let mut head = Vec::new();
            let res = r.by_ref().take(len as u64).read_to_end(&mut head);
            if head == EICAR {
                scan.finding(finding(0));
            }
            let rest: Box<dyn Read + Send> = match res {
                Ok(_) => r,
                Err(e) => Box::new(Failing(Some(e))),
            };
            Data::Stream(Box::new(io::Cursor::new(head).chain(rest)), size)
        }
    }
}

/// A reader that fails once with a stored error, then reports the end.
struct Failing(Option<io::Error>);

impl Read for Failing {
    fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        match self.0.take() {
            Some(e) => Err(e),
            None => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_signature() {
        assert_eq!(find(EICAR), Some(0));
        let mut v = b"XX5O!".to_vec();
        v.extend_from_slice(EICAR);
        assert_eq!(find(&v), Some(5));
        assert_eq!(find(&EICAR[..67]), None);
        assert_eq!(find(b""), None);
    }
}
