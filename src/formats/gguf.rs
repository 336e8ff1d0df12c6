//! GGUF (llama.cpp) models, versions 1 to 3, either byte order.
//!
//! Loading a GGUF runs no code, but servers render its `tokenizer.chat_template` with Jinja
//! (CVE-2024-34359), so every `*chat_template*` string is parsed and checked (see
//! [`crate::formats::jinja`]). The header, metadata and tensor infos are validated with every
//! count and length bounded by the bytes that remain; tensor data is never read.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use crate::detect::Format;
use crate::engine::Scan;
use crate::finding::{CodeInfo, Finding, Severity};
use crate::formats::jinja;
use crate::source::{Data, Input};
use std::io::Read;

pub const CODES: &[CodeInfo] = &[CodeInfo {
    code: "gguf-malformed",
    severity: Severity::Error,
    summary: "a gguf file is truncated or its header, metadata or tensor table is malformed",
    fix: "re-convert the model; loaders reject or disagree on such files",
}];

/// Counts beyond these are malformed even when a stream's length is unknown.
const MAX_KV: u64 = 1 << 20;
const MAX_TENSORS: u64 = 1 << 22;
const MAX_KEY: u64 = 64 << 10;
const MAX_ARRAY_DEPTH: u32 = 4;
/// llama.cpp's GGML_MAX_DIMS.
const MAX_DIMS: u32 = 4;

/// `GGUF` then a version 1..=3 in either byte order.
pub fn sniff(head: &[u8]) -> Option<Format> {
    if head.get(..4)? != b"GGUF" {
        return None;
    }
    let v: [u8; 4] = head.get(4..8)?.try_into().ok()?;
    let ok = |x: u32| (1..=3).contains(&x);
    (ok(u32::from_le_bytes(v)) || ok(u32::from_be_bytes(v))).then_some(Format::Gguf)
}

struct G {
    inp: Input,
    be: bool,
    v1: bool,
}

type Res<T> = Result<T, Finding>;

fn bad(at: u64, msg: impl Into<String>) -> Finding {
    Finding::new("gguf-malformed", Severity::Error, msg).at(at)
}

impl G {
    fn bytes<const N: usize>(&mut self) -> Res<[u8; N]> {
        let at = self.inp.pos();
        let mut b = [0u8; N];
        self.inp.read_exact(&mut b).map_err(|_| bad(at, "unexpected end of file"))?;
        if self.be {
            b.reverse();
        }
        Ok(b)
    }

    fn u32(&mut self) -> Res<u32> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Res<u64> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    /// A count or length: u32 in version 1, u64 later.
    fn len(&mut self) -> Res<u64> {
        if self.v1 {
            Ok(u64::from(self.u32()?))
        } else {
            self.u64()
        }
    }

    /// Fail when `n` items of at least `each` bytes cannot fit in what remains.
    fn fits(&self, n: u64, each: u64, what: &str) -> Res<()> {
        if let Some(rem) = self.inp.remaining() {
            if n.saturating_mul(each) > rem {
                return Err(bad(self.inp.pos(), format!("{what} count {n} exceeds the file")));
            }
        }
        Ok(())
    }

    fn skip(&mut self, n: u64) -> Res<()> {
        let at = self.inp.pos();
        self.fits(n, 1, "byte")?;
        match self.inp.skip(n) {
            Ok(got) if got == n => Ok(()),
            _ => Err(bad(at, "unexpected end of file")),
        }
    }

    /// A string: read up to `max` bytes, skip the rest. Returns (text, full length).
    fn string(&mut self, max: u64) -> Res<(String, u64)> {
        let at = self.inp.pos();
        let n = self.len()?;
        self.fits(n, 1, "string byte")?;
        let keep = n.min(max);
        let mut v = Vec::new();
        self.inp.by_ref().take(keep).read_to_end(&mut v).map_err(|e| bad(at, format!("read error: {e}")))?;
        if (v.len() as u64) < keep {
            return Err(bad(at, format!("string of {n} bytes runs past the end of the file")));
        }
        self.skip(n - keep)?;
        Ok((String::from_utf8_lossy(&v).into_owned(), n))
    }

    fn skip_string(&mut self) -> Res<()> {
        let n = self.len()?;
        self.skip(n)
    }
}

/// Size of a fixed-size metadata value type.
fn scalar_size(t: u32) -> Option<u64> {
    Some(match t {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        _ => return None,
    })
}

/// (bytes per block, elements per block) of ggml tensor types (ggml.c `type_traits`).
fn ggml_block(t: u32) -> Option<(u64, u64)> {
    Some(match t {
        0 => (4, 1),
        1 | 30 => (2, 1),
        2 | 20 => (18, 32),
        3 => (20, 32),
        6 => (22, 32),
        7 => (24, 32),
        8 => (34, 32),
        9 => (36, 32),
        10 => (84, 256),
        11 | 21 => (110, 256),
        12 => (144, 256),
        13 => (176, 256),
        14 => (210, 256),
        15 => (292, 256),
        16 | 35 => (66, 256),
        17 => (74, 256),
        18 => (98, 256),
        19 => (50, 256),
        22 => (82, 256),
        23 => (136, 256),
        24 => (1, 1),
        25 => (2, 1),
        26 => (4, 1),
        27 | 28 => (8, 1),
        29 => (56, 256),
        34 => (54, 256),
        39 => (17, 32),
        _ => return None,
    })
}

/// Scan a GGUF file.
pub fn scan(scan: &mut Scan<'_>, data: Data) {
    scan.mark_model();
    let mut g = G { inp: data.into_input(), be: false, v1: false };
    if let Err(f) = parse(scan, &mut g) {
        scan.finding(f);
    }
}

fn parse(scan: &mut Scan<'_>, g: &mut G) -> Res<()> {
    let magic: [u8; 4] = g.bytes()?;
    if &magic != b"GGUF" {
        return Err(bad(0, "no gguf magic"));
    }
    let raw = g.u32()?;
    let version = if (1..=3).contains(&raw) {
        raw
    } else if (1..=3).contains(&raw.swap_bytes()) {
        g.be = true;
        raw.swap_bytes()
    } else {
        return Err(bad(4, format!("unknown gguf version {raw}")));
    };
    g.v1 = version == 1;
    let tensors = g.len()?;
    let kvs = g.len()?;
    if tensors > MAX_TENSORS {
        return Err(bad(8, format!("tensor count {tensors} is implausible")));
    }
    if kvs > MAX_KV {
        return Err(bad(8, format!("metadata count {kvs} is implausible")));
    }
    // Smallest entry: an empty key, a type and a one-byte value.
    g.fits(kvs, if g.v1 { 9 } else { 13 }, "metadata")?;
    let mut alignment: u64 = 32;
    for _ in 0..kvs {
        let key_at = g.inp.pos();
        let (key, klen) = g.string(MAX_KEY)?;
        if klen > MAX_KEY {
            return Err(bad(key_at, format!("metadata key of {klen} bytes")));
        }
        let t = g.u32()?;
        let value_at = g.inp.pos();
        if t == 8 && is_template_key(&key) {
            let (text, n) = g.string(jinja::MAX_TEMPLATE as u64)?;
            template_findings(scan, &text, &key, value_at, n);
        } else if t == 9 && is_template_key(&key) {
            // An array under a template key: llama-cpp-python reads metadata as the strings
            // llama.cpp's `gguf_kv_to_str` makes (`["a", "b"]`), so the elements and that
            // rendering are both checked.
            let items = string_array(g, &key)?;
            if let Some((items, total)) = items {
                if total > jinja::MAX_TEMPLATE as u64 {
                    scan.finding(
                        Finding::new(
                            "chat-template-unparsed",
                            Severity::Error,
                            format!(
                                "{key}: template array of {total} bytes; only {} bytes were checked",
                                jinja::MAX_TEMPLATE
                            ),
                        )
                        .at(value_at),
                    );
                }
                let mut shown = String::from("[");
                for (i, s) in items.iter().enumerate() {
                    template_findings(scan, s, &key, value_at, s.len() as u64);
                    if i > 0 {
                        shown.push_str(", ");
                    }
                    shown.push('"');
                    shown.push_str(&s.replace('\\', "\\\\").replace('"', "\\\""));
                    shown.push('"');
                }
                shown.push(']');
                template_findings(scan, &shown, &key, value_at, shown.len() as u64);
            }
        } else if key == "general.alignment" && t == 4 {
            alignment = u64::from(g.u32()?);
            if alignment == 0 || !alignment.is_power_of_two() {
                return Err(bad(value_at, format!("general.alignment {alignment} is not a power of two")));
            }
        } else {
            skip_value(g, t, 0).map_err(|f| f.message_prefix(&key))?;
        }
    }
    // Smallest tensor info: an empty name, no dimensions, a type and an offset.
    g.fits(tensors, if g.v1 { 20 } else { 24 }, "tensor")?;
    let mut spans = Vec::new();
    for i in 0..tensors {
        let at = g.inp.pos();
        let (name, _) = g.string(256)?;
        let dims = g.u32()?;
        if dims > MAX_DIMS {
            return Err(bad(at, format!("tensor {name:?} has {dims} dimensions")));
        }
        let mut elems: u64 = 1;
        for _ in 0..dims {
            elems = elems.checked_mul(g.u64()?).ok_or_else(|| bad(at, format!("tensor {name:?} shape overflows")))?;
        }
        let ty = g.u32()?;
        let offset = g.u64()?;
        if ty >= 64 {
            return Err(bad(at, format!("tensor {name:?} has unknown type {ty}")));
        }
        if offset % alignment != 0 {
            return Err(bad(at, format!("tensor {name:?} offset {offset} is not aligned to {alignment}")));
        }
        let size = ggml_block(ty).and_then(|(bytes, per)| {
            if elems % per != 0 {
                return None;
            }
            (elems / per).checked_mul(bytes)
        });
        spans.push((i, name, offset, size, at));
    }
    let header_end = g.inp.pos();
    let data_start = header_end.div_ceil(alignment).saturating_mul(alignment);
    if let Some(total) = g.inp.total_len() {
        let data_len = total.saturating_sub(data_start);
        for (_, name, offset, size, at) in &spans {
            let end = offset.saturating_add(size.unwrap_or(0));
            if end > data_len {
                return Err(bad(
                    *at,
                    format!(
                        "tensor {name:?} data [{offset}, {end}) runs past the end of the file ({data_len} data bytes)"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Findings of one template value; `n` is its full length in the file.
fn template_findings(scan: &mut Scan<'_>, text: &str, key: &str, value_at: u64, n: u64) {
    for f in jinja::check_template(text, key) {
        scan.finding(f.at(value_at));
    }
    if n > jinja::MAX_TEMPLATE as u64 {
        scan.finding(
            Finding::new(
                "chat-template-unparsed",
                Severity::Error,
                format!(
                    "{key}: template of {n} bytes is longer than {} bytes; only its start was checked",
                    jinja::MAX_TEMPLATE
                ),
            )
            .at(value_at),
        );
    }
}

/// The strings of an array value (type 9) under a template key; `None` when the array
/// holds something else (it is skipped). Fails like [`skip_value`] on malformed data.
fn string_array(g: &mut G, key: &str) -> Res<Option<(Vec<String>, u64)>> {
    let at = g.inp.pos();
    let et = g.u32()?;
    let n = g.len()?;
    if et != 8 {
        // Not strings: skip it as any other array.
        if let Some(size) = scalar_size(et) {
            g.fits(n, size, "array element")?;
            return g.skip(n.saturating_mul(size)).map(|()| None);
        }
        if et != 9 {
            return Err(bad(at, format!("metadata {key:?}: array of unknown type {et}")));
        }
        g.fits(n, if g.v1 { 4 } else { 8 }, "array element")?;
        for _ in 0..n {
            skip_value(g, et, 1)?;
        }
        return Ok(None);
    }
    g.fits(n, if g.v1 { 4 } else { 8 }, "array element")?;
    let mut out = Vec::new();
    let mut total = 0u64;
    for _ in 0..n {
        if total > jinja::MAX_TEMPLATE as u64 {
            // Past the cap the rest is only skipped; the caller reports an error.
            let len = g.len()?;
            total = total.saturating_add(len);
            g.skip(len)?;
            continue;
        }
        let (s, len) = g.string(jinja::MAX_TEMPLATE as u64 - total)?;
        total = total.saturating_add(len);
        out.push(s);
    }
    Ok(Some((out, total)))
}

/// Keys whose string value is a Jinja chat template.
fn is_template_key(key: &str) -> bool {
    key.contains("chat_template")
}

fn skip_value(g: &mut G, t: u32, depth: u32) -> Res<()> {
    let at = g.inp.pos();
    if let Some(n) = scalar_size(t) {
        return g.skip(n);
    }
    match t {
        8 => g.skip_string(),
        9 => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(bad(at, "arrays nested too deep"));
            }
            let et = g.u32()?;
            let n = g.len()?;
            if let Some(size) = scalar_size(et) {
                g.fits(n, size, "array element")?;
                return g.skip(n.saturating_mul(size));
            }
            if et != 8 && et != 9 {
                return Err(bad(at, format!("array of unknown type {et}")));
            }
            g.fits(n, if g.v1 { 4 } else { 8 }, "array element")?;
            for _ in 0..n {
                skip_value(g, et, depth + 1)?;
            }
            Ok(())
        }
        _ => Err(bad(at, format!("metadata value of unknown type {t}"))),
    }
}

trait Prefix {
    fn message_prefix(self, key: &str) -> Self;
}

impl Prefix for Finding {
    fn message_prefix(mut self, key: &str) -> Finding {
        self.message = format!("metadata {key:?}: {}", self.message);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing() {
        assert_eq!(sniff(b"GGUF\x03\x00\x00\x00"), Some(Format::Gguf));
        assert_eq!(sniff(b"GGUF\x00\x00\x00\x02"), Some(Format::Gguf));
        assert_eq!(sniff(b"GGUF\x09\x00\x00\x00"), None);
        assert_eq!(sniff(b"GGML"), None);
        // A member the loader unpickles is a pickle whatever its magic.
        use crate::engine::Hint;
        let head = b"GGUF\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
        assert_eq!(crate::detect::sniff_head(head, Hint::Sniff), Format::Gguf);
        assert_eq!(crate::detect::sniff_head(head, Hint::Pickle), Format::Pickle);
        assert_eq!(crate::detect::sniff_head(head, Hint::RawData), Format::Unknown);
    }

    #[test]
    fn block_sizes() {
        assert_eq!(ggml_block(0), Some((4, 1)));
        assert_eq!(ggml_block(12), Some((144, 256)));
        assert_eq!(ggml_block(4), None);
    }
}
