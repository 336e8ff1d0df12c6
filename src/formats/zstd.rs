//! Zstandard streams (zip method 93, which Python 3.14's `zipfile` reads, and `.zst` wrappers):
//! every frame in turn, skippable frames skipped, the window a frame asks for capped before
//! the decoder allocates it.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use ruzstd::decoding::{FrameDecoder, StreamingDecoder};
use std::io::{self, BufRead, Read};

/// The largest window a frame may ask for (zstd's own decoder refuses more than 128 MiB
/// unless told otherwise; `--long` archives use up to that).
pub const MAX_WINDOW: u64 = 128 << 20;

const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// A decoder over all frames of `input`.
pub fn decoder<R: BufRead + Send + 'static>(input: R) -> Box<dyn Read + Send> {
    Box::new(Frames { current: None, source: Some(input), frames: 0 })
}

struct Frames<R: BufRead> {
    current: Option<StreamingDecoder<R, FrameDecoder>>,
    source: Option<R>,
    frames: u64,
}

impl<R: BufRead> Read for Frames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(dec) = self.current.as_mut() {
                let n = dec.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                if let Some(dec) = self.current.take() {
                    self.source = Some(dec.into_inner());
                }
            }
            let Some(src) = self.source.as_mut() else { return Ok(0) };
            let head = src.fill_buf()?;
            if head.is_empty() {
                return Ok(0);
            }
            let head = head.get(..head.len().min(18)).unwrap_or_default().to_vec();
            if let Some(len) = skippable(&head) {
                src.consume(8);
                let skipped = io::copy(&mut src.by_ref().take(u64::from(len)), &mut io::sink())?;
                if skipped < u64::from(len) {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "zstd skippable frame is truncated"));
                }
                continue;
            }
            if !head.starts_with(&MAGIC) {
                let what = if self.frames == 0 { "not a zstd frame" } else { "data after the last zstd frame" };
                return Err(io::Error::new(io::ErrorKind::InvalidData, what));
            }
            match window(&head) {
                Some(w) if w <= MAX_WINDOW => {}
                Some(w) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("zstd frame asks for a {w}-byte window (more than {MAX_WINDOW})"),
                    ))
                }
                None => return Err(io::Error::new(io::ErrorKind::InvalidData, "zstd frame header is truncated")),
            }
            let Some(src) = self.source.take() else { return Ok(0) };
            let dec =
                StreamingDecoder::new(src).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            self.current = Some(dec);
            self.frames += 1;
        }
    }
}

/// The length of a skippable frame (magic 0x184D2A50..=0x184D2A5F) starting `head`.
fn skippable(head: &[u8]) -> Option<u32> {
    let magic = u32::from_le_bytes(head.get(..4)?.try_into().ok()?);
    if magic & 0xffff_fff0 != 0x184d_2a50 {
        return None;
    }
    Some(u32::from_le_bytes(head.get(4..8)?.try_into().ok()?))
}

/// The window a frame header asks for (RFC 8878, 3.1.1.1): from the window descriptor, or,
/// for a single-segment frame, its content size.
fn window(head: &[u8]) -> Option<u64> {
    let fhd = *head.get(4)?;
    let single = fhd & 0x20 != 0;
    if !single {
        let wd = *head.get(5)?;
        let log = 10 + u32::from(wd >> 3);
        let base = 1u64 << log;
        return Some(base + (base / 8) * u64::from(wd & 7));
    }
    let dict_len = match fhd & 3 {
        0 => 0,
        1 => 1,
        2 => 2,
        _ => 4,
    };
    let at = 5 + dict_len;
    let fcs = |n: usize| -> Option<u64> {
        let b = head.get(at..at + n)?;
        Some(b.iter().rev().fold(0u64, |acc, &x| acc << 8 | u64::from(x)))
    };
    match fhd >> 6 {
        0 => fcs(1),
        1 => fcs(2).map(|v| v + 256),
        2 => fcs(4),
        _ => fcs(8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compress(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    fn decode(bytes: Vec<u8>) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        decoder(io::Cursor::new(bytes)).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn frames_in_turn_and_skippable_frames() {
        let mut z = compress(b"first ");
        z.extend_from_slice(&[0x5a, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);
        z.extend(compress(b"second"));
        assert_eq!(decode(z.clone()).unwrap(), b"first second");
        z.extend_from_slice(b"junk");
        assert!(decode(z).is_err());
        assert!(decode(b"not zstd".to_vec()).is_err());
    }

    #[test]
    fn huge_windows_are_refused_before_allocating() {
        // Window descriptor 0xf8: 2^(10+31) bytes.
        let z = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xf8, 0, 0, 0, 0];
        let e = decode(z).unwrap_err();
        assert!(e.to_string().contains("window"), "{e}");
        // Single segment: the content size is the window.
        assert_eq!(window(&[0x28, 0xb5, 0x2f, 0xfd, 0xa0, 0, 0, 0, 0x40]), Some(1 << 30));
        assert_eq!(window(&[0x28, 0xb5, 0x2f, 0xfd, 0x20, 7]), Some(7));
        assert_eq!(window(&[0x28, 0xb5, 0x2f, 0xfd, 0x60, 0, 1]), Some(512));
    }

    #[test]
    fn every_truncation_is_an_error_or_a_prefix() {
        let data: Vec<u8> = (0..3000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let z = compress(&data);
        for n in 0..z.len() {
            if let Ok(out) = decode(z[..n].to_vec()) {
                assert!(data.starts_with(&out));
            }
        }
    }
}
