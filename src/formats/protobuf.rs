//! A minimal protobuf wire-format reader over random-access bytes, for TensorFlow and ONNX
//! models. It never trusts a length: every field must fit inside its parent, nesting is
//! depth-limited, the number of fields read is budgeted, and only the bytes a caller asks
//! for are read (a 2 GB tensor inside a model is skipped, never loaded).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use crate::detect::Format;
use crate::source::{read_exact_at, Source};
use std::cell::{Cell, RefCell};
use std::fmt;

/// Deepest message nesting followed (ONNX subgraphs nest, TF graphs do not go deep).
pub const MAX_DEPTH: u32 = 64;
/// Fields read from one file before giving up.
pub const MAX_FIELDS: u64 = 50_000_000;
const BLOCK: usize = 64 * 1024;

/// A wire-format error at a byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub offset: u64,
    pub what: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}", self.what, self.offset)
    }
}

fn err<T>(offset: u64, what: impl Into<String>) -> Result<T, Error> {
    Err(Error { offset, what: what.into() })
}

/// A source read through a one-block cache, with a budget of fields shared by all readers.
pub struct Blocks<'a> {
    src: &'a dyn Source,
    cache: RefCell<(u64, Vec<u8>)>,
    fields: Cell<u64>,
}

impl<'a> Blocks<'a> {
    pub fn new(src: &'a dyn Source) -> Blocks<'a> {
        Blocks { src, cache: RefCell::new((0, Vec::new())), fields: Cell::new(0) }
    }

    pub fn len(&self) -> u64 {
        self.src.len()
    }

    pub fn is_empty(&self) -> bool {
        self.src.len() == 0
    }

    /// The byte at `pos`.
    pub fn byte(&self, pos: u64) -> Result<u8, Error> {
        {
            let c = self.cache.borrow();
            if let Some(b) = pos.checked_sub(c.0).and_then(|i| usize::try_from(i).ok()).and_then(|i| c.1.get(i)) {
                return Ok(*b);
            }
        }
        if pos >= self.src.len() {
            return err(pos, "unexpected end of data");
        }
        let n = (self.src.len() - pos).min(BLOCK as u64) as usize;
        let mut data = vec![0u8; n];
        read_exact_at(self.src, pos, &mut data).or_else(|e| err(pos, format!("read error: {e}")))?;
        let b = data.first().copied();
        *self.cache.borrow_mut() = (pos, data);
        b.map_or_else(|| err(pos, "unexpected end of data"), Ok)
    }

    /// `n` bytes at `pos` (the caller bounds `n`). Small reads go through the block cache (a
    /// graph of a million nodes is a few million short strings, not a syscall each).
    pub fn read(&self, pos: u64, n: usize) -> Result<Vec<u8>, Error> {
        if pos.checked_add(n as u64).is_none_or(|end| end > self.src.len()) {
            return err(pos, "unexpected end of data");
        }
        if n <= BLOCK / 4 {
            if let Some(v) = self.cached(pos, n) {
                return Ok(v);
            }
            self.byte_refill(pos)?;
            if let Some(v) = self.cached(pos, n) {
                return Ok(v);
            }
        }
        let mut v = vec![0u8; n];
        read_exact_at(self.src, pos, &mut v).or_else(|e| err(pos, format!("read error: {e}")))?;
        Ok(v)
    }

    /// `n` bytes at `pos` when the cached block holds them.
    fn cached(&self, pos: u64, n: usize) -> Option<Vec<u8>> {
        let c = self.cache.borrow();
        let start = usize::try_from(pos.checked_sub(c.0)?).ok()?;
        c.1.get(start..start.checked_add(n)?).map(<[u8]>::to_vec)
    }

    /// Load the block that starts at `pos` into the cache.
    fn byte_refill(&self, pos: u64) -> Result<(), Error> {
        let n = (self.src.len() - pos).min(BLOCK as u64) as usize;
        let mut data = vec![0u8; n];
        read_exact_at(self.src, pos, &mut data).or_else(|e| err(pos, format!("read error: {e}")))?;
        *self.cache.borrow_mut() = (pos, data);
        Ok(())
    }

    fn spend(&self, at: u64) -> Result<(), Error> {
        let n = self.fields.get() + 1;
        self.fields.set(n);
        if n > MAX_FIELDS {
            return err(at, format!("more than {MAX_FIELDS} protobuf fields"));
        }
        Ok(())
    }
}

/// A field's value as the wire format carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    /// Length-delimited: the payload's absolute offset and length.
    Len {
        start: u64,
        len: u64,
    },
}

/// One field of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub number: u32,
    pub wire: Wire,
    /// Offset of the field's tag.
    pub offset: u64,
}

impl Field {
    pub fn varint(&self) -> Option<u64> {
        match self.wire {
            Wire::Varint(v) => Some(v),
            _ => None,
        }
    }

    pub fn is_len(&self) -> bool {
        matches!(self.wire, Wire::Len { .. })
    }
}

/// Iterates over the fields of one message `[pos, end)`.
pub struct Reader<'b, 'a> {
    blocks: &'b Blocks<'a>,
    pos: u64,
    end: u64,
    depth: u32,
}

impl<'b, 'a> Reader<'b, 'a> {
    /// The top-level message spanning the whole source.
    pub fn root(blocks: &'b Blocks<'a>) -> Reader<'b, 'a> {
        Reader { blocks, pos: 0, end: blocks.len(), depth: 0 }
    }

    pub fn pos(&self) -> u64 {
        self.pos
    }

    fn varint(&mut self) -> Result<u64, Error> {
        let start = self.pos;
        let mut v: u64 = 0;
        for i in 0..10u32 {
            if self.pos >= self.end {
                return err(start, "truncated varint");
            }
            let b = self.blocks.byte(self.pos)?;
            self.pos += 1;
            if i == 9 && b > 1 {
                return err(start, "varint longer than 64 bits");
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        err(start, "varint longer than 10 bytes")
    }

    fn fixed(&mut self, n: u64) -> Result<u64, Error> {
        if self.end.saturating_sub(self.pos) < n {
            return err(self.pos, "truncated fixed-width field");
        }
        let mut v = 0u64;
        for i in 0..n {
            v |= u64::from(self.blocks.byte(self.pos + i)?) << (8 * i);
        }
        self.pos += n;
        Ok(v)
    }

    /// The next field, `None` at the end of the message.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Field>, Error> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let offset = self.pos;
        self.blocks.spend(offset)?;
        let tag = self.varint()?;
        let number = u32::try_from(tag >> 3).ok().filter(|&n| n != 0 && n < (1 << 29));
        let Some(number) = number else {
            return err(offset, format!("invalid field number in tag {tag}"));
        };
        let wire = match tag & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(self.fixed(8)?),
            5 => Wire::Fixed32(self.fixed(4)? as u32),
            2 => {
                let len = self.varint()?;
                let start = self.pos;
                if len > self.end - start {
                    return err(offset, format!("field {number} length {len} runs past its message"));
                }
                self.pos = start + len;
                Wire::Len { start, len }
            }
            w => return err(offset, format!("unsupported wire type {w} in field {number}")),
        };
        Ok(Some(Field { number, wire, offset }))
    }

    /// A reader over a length-delimited field's payload as a nested message.
    pub fn sub(&self, f: &Field) -> Result<Reader<'b, 'a>, Error> {
        let Wire::Len { start, len } = f.wire else {
            return err(f.offset, format!("field {} is not a message", f.number));
        };
        if self.depth + 1 > MAX_DEPTH {
            return err(f.offset, format!("messages nested deeper than {MAX_DEPTH}"));
        }
        Ok(Reader { blocks: self.blocks, pos: start, end: start + len, depth: self.depth + 1 })
    }

    /// A length-delimited payload, at most `max` bytes of it (longer payloads are cut).
    pub fn bytes(&self, f: &Field, max: usize) -> Result<Vec<u8>, Error> {
        let Wire::Len { start, len } = f.wire else {
            return err(f.offset, format!("field {} is not a string", f.number));
        };
        self.blocks.read(start, len.min(max as u64) as usize)
    }

    /// A length-delimited payload as text (invalid UTF-8 replaced), cut at `max` bytes.
    pub fn string(&self, f: &Field, max: usize) -> Result<String, Error> {
        Ok(String::from_utf8_lossy(&self.bytes(f, max)?).into_owned())
    }

    /// Read every remaining field (useful for validating a message without looking inside).
    pub fn skip_all(&mut self) -> Result<(), Error> {
        while self.next()?.is_some() {}
        Ok(())
    }
}

/// Does the head of a file parse as protobuf fields? Used to route files without magic
/// (SavedModel, ONNX, Keras metadata) to their structural parsers. A head whose first byte is
/// a pickle opcode is left to the pickle probe (which hands it back here when it is no pickle).
pub fn sniff_probe(head: &[u8]) -> Option<Format> {
    let first = *head.first()?;
    if crate::formats::pickle::is_opcode(first) || !plausible_fields(head) {
        return None;
    }
    Some(Format::ProtobufProbe)
}

/// Every field in `head` is well-formed; the last one may run past the head (a long field).
pub fn plausible_fields(head: &[u8]) -> bool {
    let src = crate::source::BytesSource(head.to_vec());
    let blocks = Blocks::new(&src);
    let mut r = Reader { blocks: &blocks, pos: 0, end: u64::MAX, depth: 0 };
    let mut n = 0;
    loop {
        match r.next() {
            Ok(Some(f)) => {
                if let Wire::Len { start, len } = f.wire {
                    if start.saturating_add(len) >= head.len() as u64 {
                        return true;
                    }
                }
                n += 1;
                if r.pos == head.len() as u64 {
                    return true;
                }
            }
            Ok(None) => return n > 0,
            // Running off the end of the head is fine once a field has parsed.
            Err(e) => {
                return n > 0
                    && e.offset + 11 >= head.len() as u64
                    && (e.what.starts_with("trunc") || e.what.contains("end of data"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::BytesSource;

    /// Encode a varint (test helper; fixtures elsewhere use their own encoders).
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    #[test]
    fn reads_fields_and_nested_messages() {
        let mut m = vec![0x08];
        varint(300, &mut m);
        m.extend_from_slice(&[0x12, 0x04, 0x0a, 0x02, b'h', b'i']);
        m.extend_from_slice(&[0x1d, 1, 0, 0, 0, 0x21, 2, 0, 0, 0, 0, 0, 0, 0]);
        let src = BytesSource(m);
        let b = Blocks::new(&src);
        let mut r = Reader::root(&b);
        assert_eq!(r.next().unwrap().unwrap().varint(), Some(300));
        let f = r.next().unwrap().unwrap();
        let mut inner = r.sub(&f).unwrap();
        let s = inner.next().unwrap().unwrap();
        assert_eq!(inner.string(&s, 100).unwrap(), "hi");
        assert_eq!(inner.next().unwrap(), None);
        assert_eq!(r.next().unwrap().unwrap().wire, Wire::Fixed32(1));
        assert_eq!(r.next().unwrap().unwrap().wire, Wire::Fixed64(2));
        assert_eq!(r.next().unwrap(), None);
    }

    #[test]
    fn rejects_lies() {
        for bad in [
            &[0x12, 0x05, 1][..],
            &[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
            &[0x0b],
            &[0x00, 0x01],
            &[0x1d, 1, 2],
            &[0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
        ] {
            let src = BytesSource(bad.to_vec());
            let b = Blocks::new(&src);
            assert!(Reader::root(&b).skip_all().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn depth_is_limited() {
        let mut m = Vec::new();
        for _ in 0..100 {
            let mut outer = vec![0x0a];
            varint(m.len() as u64, &mut outer);
            outer.extend_from_slice(&m);
            m = outer;
        }
        let src = BytesSource(m);
        let b = Blocks::new(&src);
        fn walk(r: &mut Reader<'_, '_>) -> Result<(), Error> {
            while let Some(f) = r.next()? {
                walk(&mut r.sub(&f)?)?;
            }
            Ok(())
        }
        assert!(walk(&mut Reader::root(&b)).unwrap_err().what.contains("deeper"));
    }

    #[test]
    fn probe() {
        assert!(plausible_fields(b"\x12\x21\x12\x1f\x0a\x0e"));
        assert!(plausible_fields(b"\x08\x07\x12\x04abcd\x3a\x80\x80\x01"));
        assert!(!plausible_fields(b"hello world, this is text"));
        assert!(!plausible_fields(b""));
        assert!(!plausible_fields(b"\x0b\x00"));
    }
}
