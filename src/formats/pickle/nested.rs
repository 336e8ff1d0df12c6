//! Recognising a pickle hidden inside a string or bytes constant: raw (`\x80\x02..\x05`),
//! hex text (`80 04 95 ...`) or base64 (`gASV...`). Only a pickle header counts, so JWTs,
//! checksums, gzip bytes and base64 JSON are never mistaken for one.

use base64::Engine;

/// How the inner pickle was encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    Raw,
    Hex,
    Base64,
}

impl Encoding {
    pub(super) fn label(self) -> &'static str {
        match self {
            Encoding::Raw => "raw",
            Encoding::Hex => "hex-encoded",
            Encoding::Base64 => "base64-encoded",
        }
    }
}

/// Bytes needed by [`sniff`] to decide.
pub(super) const SNIFF_LEN: usize = 16;

fn is_header(b: &[u8]) -> bool {
    matches!(b, [0x80, 2..=5, ..])
}

/// Does `prefix` (the first bytes of a constant) start like an encoded pickle?
pub(super) fn sniff(prefix: &[u8]) -> Option<Encoding> {
    if is_header(prefix) {
        return Some(Encoding::Raw);
    }
    let text = trim_start(prefix);
    if text.len() >= 4 && text.starts_with(b"gA") {
        let mut out = [0u8; 3];
        let alpha = if text.iter().take(4).any(|&c| c == b'-' || c == b'_') {
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
        } else {
            &base64::engine::general_purpose::STANDARD_NO_PAD
        };
        if alpha.decode_slice(text.get(..4)?, &mut out).is_ok() && is_header(&out) {
            return Some(Encoding::Base64);
        }
    }
    let hex = text.strip_prefix(b"0x").or_else(|| text.strip_prefix(b"0X")).unwrap_or(text);
    let digits: Vec<u8> = hex.iter().copied().filter(|c| !is_sep(*c)).take(4).collect();
    if let [a, b, c, d] = digits[..] {
        if digits.iter().all(u8::is_ascii_hexdigit)
            && is_header(&[hex_val(a) * 16 + hex_val(b), hex_val(c) * 16 + hex_val(d)])
        {
            return Some(Encoding::Hex);
        }
    }
    None
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    b.get(n..).unwrap_or(&[])
}

fn is_sep(c: u8) -> bool {
    c.is_ascii_whitespace() || c == b':' || c == b'-' || c == b','
}

fn hex_val(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

/// Decode the whole constant; `None` when it is not valid in that encoding.
pub(super) fn decode(enc: Encoding, data: &[u8], max: usize) -> Option<Vec<u8>> {
    match enc {
        Encoding::Raw => Some(data.get(..max.min(data.len()))?.to_vec()),
        Encoding::Hex => decode_hex(data, max),
        Encoding::Base64 => decode_base64(data, max),
    }
}

/// Hex text, with optional `0x` prefix and separators between bytes.
pub(super) fn decode_hex(data: &[u8], max: usize) -> Option<Vec<u8>> {
    let t = trim_start(data);
    let t = t.strip_prefix(b"0x").or_else(|| t.strip_prefix(b"0X")).unwrap_or(t);
    let mut out = Vec::with_capacity((t.len() / 2).min(max));
    let mut hi: Option<u8> = None;
    for &c in t {
        if is_sep(c) {
            if hi.is_some() {
                return None;
            }
            continue;
        }
        if !c.is_ascii_hexdigit() {
            return None;
        }
        match hi.take() {
            None => hi = Some(hex_val(c)),
            Some(h) => {
                if out.len() >= max {
                    break;
                }
                out.push(h * 16 + hex_val(c));
            }
        }
    }
    if hi.is_some() {
        return None;
    }
    Some(out)
}

/// Standard or URL-safe base64; whitespace is ignored, padding optional.
pub(super) fn decode_base64(data: &[u8], max: usize) -> Option<Vec<u8>> {
    let clean: Vec<u8> = data.iter().copied().filter(|c| !c.is_ascii_whitespace()).collect();
    let body = {
        let n = clean.iter().rev().take_while(|&&c| c == b'=').count();
        clean.get(..clean.len() - n)?
    };
    if body.contains(&b'=') {
        return None;
    }
    let engine = if body.iter().any(|&c| c == b'-' || c == b'_') {
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
    } else {
        &base64::engine::general_purpose::STANDARD_NO_PAD
    };
    // decode at most enough for `max` output bytes
    let keep = (max / 3 + 1).saturating_mul(4).min(body.len());
    let keep = if keep < body.len() { keep - keep % 4 } else { keep };
    let mut out = engine.decode(body.get(..keep)?).ok()?;
    out.truncate(max);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_only_headers() {
        assert_eq!(sniff(b"\x80\x04\x95\x10"), Some(Encoding::Raw));
        assert_eq!(sniff(b"gASVEAAAAAAAAAB9"), Some(Encoding::Base64));
        assert_eq!(sniff(b"gAJjb3MKc3lzdGVt"), Some(Encoding::Base64));
        assert_eq!(sniff(b"80 04 95 10"), Some(Encoding::Hex));
        assert_eq!(sniff(b"800495100000"), Some(Encoding::Hex));
        assert_eq!(sniff(b"\x80\x06"), None);
        assert_eq!(sniff(b"eyJhbGciOiJIUzI1NiJ9"), None); // a JWT
        assert_eq!(sniff(b"\x1f\x8b\x08\x00"), None); // gzip
        assert_eq!(sniff(b"e3b0c44298fc1c14"), None); // sha256
        assert_eq!(sniff(b"eyJrZXkiOiAidmFsdWUifQ=="), None); // base64 JSON
        assert_eq!(decode(Encoding::Hex, b"80 04 4b 01 2e", 100).unwrap(), b"\x80\x04K\x01.");
        assert_eq!(decode(Encoding::Base64, b"gARLAS4=", 100).unwrap(), b"\x80\x04K\x01.");
        assert!(decode(Encoding::Hex, b"80 0", 100).is_none());
    }
}
