//! Where scanned bytes come from: random-access sources (files, memory, slices of either)
//! and forward-only streams (decompressors). Parsers read through [`Input`] so that a
//! multi-GB file costs only the bytes a parser asks for.

use std::io::{self, BufRead, Read};
use std::sync::Arc;

/// Random-access bytes of known length.
pub trait Source: Send + Sync {
    fn len(&self) -> u64;
    /// Read up to `buf.len()` bytes at `offset`; returns 0 only at or past the end.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Fill `buf` completely from `offset`, or fail with `UnexpectedEof`.
pub fn read_exact_at(src: &dyn Source, mut offset: u64, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = src.read_at(offset, buf)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "unexpected end of data"));
        }
        offset += n as u64;
        buf = &mut buf[n..];
    }
    Ok(())
}

/// Read at most `max` bytes starting at `offset` (fewer at the end of the source).
pub fn read_up_to(src: &dyn Source, offset: u64, max: usize) -> io::Result<Vec<u8>> {
    let avail = src.len().saturating_sub(offset).min(max as u64) as usize;
    let mut buf = vec![0u8; avail];
    read_exact_at(src, offset, &mut buf)?;
    Ok(buf)
}

/// A file on disk.
pub struct FileSource {
    file: std::fs::File,
    len: u64,
}

impl FileSource {
    pub fn open(path: &std::path::Path) -> io::Result<FileSource> {
        FileSource::from_file(std::fs::File::open(path)?)
    }

    /// A source over an open file (which need not have a name).
    pub fn from_file(file: std::fs::File) -> io::Result<FileSource> {
        let len = file.metadata()?.len();
        Ok(FileSource { file, len })
    }
}

impl Source for FileSource {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        if offset >= self.len {
            return Ok(0);
        }
        let want = (self.len - offset).min(buf.len() as u64) as usize;
        self.file.read_at(&mut buf[..want], offset)
    }
}

/// Bytes held in memory.
pub struct BytesSource(pub Vec<u8>);

impl Source for BytesSource {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let data = usize::try_from(offset).ok().and_then(|o| self.0.get(o..)).unwrap_or(&[]);
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        Ok(n)
    }
}

/// A window `[start, start + len)` of another source (a stored archive member).
pub struct SliceSource {
    inner: Arc<dyn Source>,
    start: u64,
    len: u64,
}

impl SliceSource {
    /// The window is clamped to the inner source's length.
    pub fn new(inner: Arc<dyn Source>, start: u64, len: u64) -> SliceSource {
        let start = start.min(inner.len());
        let len = len.min(inner.len() - start);
        SliceSource { inner, start, len }
    }
}

impl Source for SliceSource {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        let want = (self.len - offset).min(buf.len() as u64) as usize;
        self.inner.read_at(self.start + offset, &mut buf[..want])
    }
}

/// Something to scan: random access when the bytes allow it, a forward stream otherwise.
pub enum Data {
    Random(Arc<dyn Source>),
    /// A forward-only stream (a decompressor); `size_hint` is the declared size, untrusted.
    Stream(Box<dyn Read + Send>, Option<u64>),
}

impl Data {
    pub fn bytes(v: Vec<u8>) -> Data {
        Data::Random(Arc::new(BytesSource(v)))
    }

    /// Turn into a forward reader with skip support.
    pub fn into_input(self) -> Input {
        match self {
            Data::Random(src) => Input::random(src),
            Data::Stream(r, _) => Input::stream(r),
        }
    }

    /// Get random access, buffering a stream into memory; fails when the stream is longer than `max`.
    pub fn into_random(self, max: u64) -> io::Result<Arc<dyn Source>> {
        match self {
            Data::Random(src) => Ok(src),
            Data::Stream(r, _) => {
                let mut buf = Vec::new();
                r.take(max.saturating_add(1)).read_to_end(&mut buf)?;
                if buf.len() as u64 > max {
                    return Err(io::Error::other(format!("decompressed data exceeds the {max}-byte budget")));
                }
                Ok(Arc::new(BytesSource(buf)))
            }
        }
    }
}

const BUF: usize = 64 * 1024;

/// A buffered forward reader over [`Data`] that knows its position and can skip
/// without reading (random sources) or by discarding (streams).
pub struct Input {
    src: InputSrc,
    buf: Vec<u8>,
    pos_in_buf: usize,
    /// Absolute offset of `buf[0]`.
    buf_start: u64,
}

enum InputSrc {
    Random(Arc<dyn Source>),
    Stream(Box<dyn Read + Send>),
}

impl Input {
    pub fn random(src: Arc<dyn Source>) -> Input {
        Input { src: InputSrc::Random(src), buf: Vec::new(), pos_in_buf: 0, buf_start: 0 }
    }

    /// Start reading a random source at `offset`.
    pub fn random_at(src: Arc<dyn Source>, offset: u64) -> Input {
        Input { src: InputSrc::Random(src), buf: Vec::new(), pos_in_buf: 0, buf_start: offset }
    }

    pub fn stream(r: Box<dyn Read + Send>) -> Input {
        Input { src: InputSrc::Stream(r), buf: Vec::new(), pos_in_buf: 0, buf_start: 0 }
    }

    /// Absolute offset of the next byte.
    pub fn pos(&self) -> u64 {
        self.buf_start + self.pos_in_buf as u64
    }

    /// Total length when known (random sources).
    pub fn total_len(&self) -> Option<u64> {
        match &self.src {
            InputSrc::Random(s) => Some(s.len()),
            InputSrc::Stream(_) => None,
        }
    }

    /// Bytes left when known.
    pub fn remaining(&self) -> Option<u64> {
        self.total_len().map(|l| l.saturating_sub(self.pos()))
    }

    /// Skip `n` bytes; returns how many were actually skipped (fewer at end of data).
    pub fn skip(&mut self, n: u64) -> io::Result<u64> {
        let in_buf = (self.buf.len() - self.pos_in_buf) as u64;
        if n <= in_buf {
            self.pos_in_buf += n as usize;
            return Ok(n);
        }
        let rest = n - in_buf;
        let after_buf = self.buf_start + self.buf.len() as u64;
        self.buf.clear();
        self.pos_in_buf = 0;
        match &mut self.src {
            InputSrc::Random(s) => {
                let end = after_buf.saturating_add(rest).min(s.len().max(after_buf));
                self.buf_start = end;
                Ok(in_buf + (end - after_buf))
            }
            InputSrc::Stream(r) => {
                let skipped = io::copy(&mut r.take(rest), &mut io::sink())?;
                self.buf_start = after_buf + skipped;
                Ok(in_buf + skipped)
            }
        }
    }

    /// Read exactly `n` bytes into a new vector, failing at end of data. The caller caps `n`.
    pub fn read_vec(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut v = vec![0u8; n];
        self.read_exact(&mut v)?;
        Ok(v)
    }

    /// Read one line ending in `\n` (the newline is consumed, not returned). Fails with
    /// `InvalidData` when no newline comes within `max` bytes and `UnexpectedEof` at the end.
    pub fn read_line_max(&mut self, max: usize) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            let avail = self.fill_buf()?;
            if avail.is_empty() {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no newline before end of data"));
            }
            if let Some(i) = avail.iter().position(|&b| b == b'\n') {
                if line.len() + i > max {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
                }
                line.extend_from_slice(&avail[..i]);
                self.consume(i + 1);
                return Ok(line);
            }
            let n = avail.len();
            if line.len() + n > max {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
            }
            line.extend_from_slice(avail);
            self.consume(n);
        }
    }

    /// Peek at up to `n` upcoming bytes without consuming them (may return fewer at the end).
    pub fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.buf.len() - self.pos_in_buf < n {
            // compact then top up
            self.buf.drain(..self.pos_in_buf);
            self.buf_start += self.pos_in_buf as u64;
            self.pos_in_buf = 0;
            while self.buf.len() < n {
                let got = self.read_more(n - self.buf.len())?;
                if got == 0 {
                    break;
                }
            }
        }
        let end = self.buf.len().min(self.pos_in_buf + n);
        Ok(&self.buf[self.pos_in_buf..end])
    }

    fn read_more(&mut self, at_least: usize) -> io::Result<usize> {
        let want = at_least.max(BUF);
        let old = self.buf.len();
        self.buf.resize(old + want, 0);
        let got = match &mut self.src {
            InputSrc::Random(s) => s.read_at(self.buf_start + old as u64, &mut self.buf[old..]),
            InputSrc::Stream(r) => loop {
                match r.read(&mut self.buf[old..]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            },
        };
        match got {
            Ok(n) => {
                self.buf.truncate(old + n);
                Ok(n)
            }
            Err(e) => {
                self.buf.truncate(old);
                Err(e)
            }
        }
    }
}

impl Read for Input {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Input {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos_in_buf >= self.buf.len() {
            self.buf_start += self.buf.len() as u64;
            self.buf.clear();
            self.pos_in_buf = 0;
            self.read_more(BUF)?;
        }
        Ok(&self.buf[self.pos_in_buf..])
    }
    fn consume(&mut self, amt: usize) {
        self.pos_in_buf = (self.pos_in_buf + amt).min(self.buf.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_reads_lines_skips_and_peeks() {
        let data: Vec<u8> = b"abc\ndef\n".iter().copied().chain(std::iter::repeat_n(b'x', 200_000)).collect();
        for mut inp in [Data::bytes(data.clone()).into_input(), Input::stream(Box::new(io::Cursor::new(data.clone())))]
        {
            assert_eq!(inp.peek(2).unwrap(), b"ab");
            assert_eq!(inp.read_line_max(10).unwrap(), b"abc");
            assert_eq!(inp.pos(), 4);
            assert_eq!(inp.read_line_max(10).unwrap(), b"def");
            assert_eq!(inp.skip(100_000).unwrap(), 100_000);
            assert_eq!(inp.pos(), 100_008);
            assert_eq!(inp.peek(3).unwrap(), b"xxx");
            assert!(inp.read_line_max(10).is_err());
            assert_eq!(inp.skip(1 << 40).unwrap(), 100_000);
        }
    }

    #[test]
    fn slice_is_clamped() {
        let s: Arc<dyn Source> = Arc::new(BytesSource(b"0123456789".to_vec()));
        let w = SliceSource::new(s.clone(), 8, 100);
        assert_eq!(w.len(), 2);
        assert_eq!(read_up_to(&w, 0, 10).unwrap(), b"89");
        let w = SliceSource::new(s, 100, 5);
        assert_eq!(w.len(), 0);
    }
}
