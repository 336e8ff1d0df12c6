//! The bytes git writes to a work tree for a blob, under every client configuration: the
//! checkout conversions of `convert.c` (`convert_to_working_tree_ca_internal`: `ident`, then
//! end of line, then `working-tree-encoding`, then a filter driver), and the streaming
//! variants git uses for files it does not read whole (`get_stream_filter_ca`).
//!
//! This never interprets model bytes: it only rewrites them as git would.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use super::attr::{same_encoding, Checkout, Crlf};
use std::io::Write;
use std::process::{Command, Stdio};

/// One way a blob can come out of a checkout that differs from the stored bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    /// What produced it, e.g. `core.autocrlf=true (LF -> CRLF)`; stable, part of cache keys.
    pub label: String,
    pub bytes: Vec<u8>,
}

/// Every distinct checkout of `blob` (with id `hex`) under `co` other than the stored bytes,
/// and the encodings that could not be produced here (iconv missing or failing in a way
/// that is not git's own failure).
pub fn variants(blob: &[u8], hex: &str, co: &Checkout) -> (Vec<Variant>, Vec<String>) {
    let mut out: Vec<Variant> = Vec::new();
    let problems = Vec::new();
    if co.symlink {
        return (out, problems);
    }
    // The common case (end of line only): one conversion, no copies.
    if !co.ident && co.encoding.is_none() {
        if let Some(c) = crlf_to_worktree(blob, co.crlf) {
            let label = match co.crlf {
                Crlf::Always => "text, CRLF line endings",
                _ => "core.autocrlf=true (LF -> CRLF)",
            };
            if c != blob {
                out.push(Variant { label: label.to_string(), bytes: c });
            }
        }
        return (out, problems);
    }
    variants_staged(blob, hex, co)
}

/// [`variants`] through every stage: ident, end of line, then each encoding.
fn variants_staged(blob: &[u8], hex: &str, co: &Checkout) -> (Vec<Variant>, Vec<String>) {
    let mut out: Vec<Variant> = Vec::new();
    let mut problems = Vec::new();
    if co.symlink {
        return (out, problems);
    }
    let mut stage: Vec<(String, Vec<u8>)> = vec![(String::new(), blob.to_vec())];
    if co.ident {
        let a = ident_to_worktree(blob, hex);
        let b = ident_stream(blob, hex);
        push_distinct(&mut stage, "ident".into(), a);
        push_distinct(&mut stage, "ident (streaming)".into(), b);
    }
    let mut eol: Vec<(String, Vec<u8>)> = Vec::new();
    for (l, b) in stage {
        if let Some(c) = crlf_to_worktree(&b, co.crlf) {
            let why = match co.crlf {
                Crlf::Always => "text, CRLF line endings",
                _ => "core.autocrlf=true (LF -> CRLF)",
            };
            let label = if l.is_empty() { why.to_string() } else { format!("{l}, {why}") };
            push_distinct(&mut eol, label, c);
        }
        push_distinct(&mut eol, l, b);
    }
    let mut all: Vec<(String, Vec<u8>)> = Vec::new();
    for (l, b) in eol {
        if let Some(enc) = &co.encoding {
            for (name, r) in encode_to_worktree(&b, enc) {
                match r {
                    Ok(Some(e)) => {
                        let label = if l.is_empty() {
                            format!("working-tree-encoding={name}")
                        } else {
                            format!("{l}, working-tree-encoding={name}")
                        };
                        push_distinct(&mut all, label, e);
                    }
                    Ok(None) => {}
                    Err(why) => {
                        if !problems.contains(&why) {
                            problems.push(why);
                        }
                    }
                }
            }
        }
        push_distinct(&mut all, l, b);
    }
    for (label, bytes) in all {
        if !label.is_empty() && bytes != blob && !out.iter().any(|v| v.bytes == bytes) {
            out.push(Variant { label, bytes });
        }
    }
    (out, problems)
}

fn push_distinct(v: &mut Vec<(String, Vec<u8>)>, label: String, bytes: Vec<u8>) {
    if !v.iter().any(|(_, b)| *b == bytes) {
        v.push((label, bytes));
    }
}

/// `convert.c` `text_stat`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TextStat {
    pub nul: u64,
    pub lonecr: u64,
    pub lonelf: u64,
    pub crlf: u64,
    pub printable: u64,
    pub nonprintable: u64,
}

/// `gather_stats`.
pub fn gather_stats(buf: &[u8]) -> TextStat {
    let mut s = TextStat::default();
    let mut i = 0;
    while let Some(&c) = buf.get(i) {
        if c == b'\r' {
            if buf.get(i + 1) == Some(&b'\n') {
                s.crlf += 1;
                i += 1;
            } else {
                s.lonecr += 1;
            }
        } else if c == b'\n' {
            s.lonelf += 1;
        } else if c == 127 {
            s.nonprintable += 1;
        } else if c < 32 {
            match c {
                8 | b'\t' | 0x1b | 0x0c => s.printable += 1,
                0 => {
                    s.nul += 1;
                    s.nonprintable += 1;
                }
                _ => s.nonprintable += 1,
            }
        } else {
            s.printable += 1;
        }
        i += 1;
    }
    // A trailing ^Z (EOF) is not counted as non-printable (git's unsigned arithmetic).
    if buf.last() == Some(&0x1a) {
        s.nonprintable = s.nonprintable.wrapping_sub(1);
    }
    s
}

/// `convert_is_binary`.
pub fn is_binary(s: &TextStat) -> bool {
    s.lonecr > 0 || s.nul > 0 || (s.printable >> 7) < s.nonprintable
}

/// `crlf_to_worktree` when the client writes CRLF: `None` when nothing changes.
pub fn crlf_to_worktree(buf: &[u8], mode: Crlf) -> Option<Vec<u8>> {
    if buf.is_empty() || mode == Crlf::Never {
        return None;
    }
    // Cheap first looks: no LF, nothing to convert; for `auto`, any NUL (binary) or CR (a
    // lone CR, or a CRLF) means no conversion either, as the full count below would say.
    memchr::memchr(b'\n', buf)?;
    if mode == Crlf::Auto {
        if memchr::memchr2(0, b'\r', buf).is_some() {
            return None;
        }
        return crlf_auto_without_cr(buf);
    }
    let s = gather_stats(buf);
    // will_convert_lf_to_crlf
    if s.lonelf == 0 {
        return None;
    }
    if mode == Crlf::Auto && (s.lonecr > 0 || s.crlf > 0 || is_binary(&s)) {
        return None;
    }
    Some(lf_to_crlf(buf, s.lonelf as usize))
}

/// Every LF not after a CR gets a CR before it, byte by byte (`lonelf`: how many there are).
fn lf_to_crlf(buf: &[u8], lonelf: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(buf.len() + lonelf);
    let mut prev = 0u8;
    for &c in buf {
        if c == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(c);
        prev = c;
    }
    out
}

/// [`crlf_to_worktree`] for `auto` on bytes with no CR and no NUL (every LF is lone): the
/// same counts as [`gather_stats`], in passes the compiler vectorises, and the copy in runs
/// between LFs (judging every text blob of a history spent a tenth of its time here).
fn crlf_auto_without_cr(buf: &[u8]) -> Option<Vec<u8>> {
    let lonelf = memchr::memchr_iter(b'\n', buf).count();
    // Each byte is an LF, non-printable (control bytes but BS, TAB, ESC, FF; DEL) or printable.
    let mut nonprintable: usize =
        buf.iter().map(|&b| usize::from((b < 32 && !matches!(b, 8 | 9 | 10 | 0x0c | 0x1b)) || b == 127)).sum();
    let printable = buf.len() - lonelf - nonprintable;
    if buf.last() == Some(&0x1a) {
        nonprintable -= 1;
    }
    if lonelf == 0 || (printable >> 7) < nonprintable {
        return None;
    }
    let mut out = Vec::with_capacity(buf.len() + lonelf);
    let mut from = 0;
    for at in memchr::memchr_iter(b'\n', buf) {
        out.extend_from_slice(buf.get(from..at).unwrap_or_default());
        out.extend_from_slice(b"\r\n");
        from = at + 1;
    }
    out.extend_from_slice(buf.get(from..).unwrap_or_default());
    Some(out)
}

/// `ident_to_worktree` (in-core): `$Id$` and git-style `$Id: ... $` become `$Id: <hex> $`.
pub fn ident_to_worktree(src: &[u8], hex: &str) -> Vec<u8> {
    if count_ident(src) == 0 {
        return src.to_vec();
    }
    let mut out = Vec::with_capacity(src.len() + 64);
    let mut s = src;
    while let Some(d) = s.iter().position(|&b| b == b'$') {
        out.extend_from_slice(s.get(..=d).unwrap_or_default());
        s = s.get(d + 1..).unwrap_or_default();
        if s.len() < 3 || !s.starts_with(b"Id") {
            continue;
        }
        match s.get(2) {
            Some(b'$') => s = s.get(3..).unwrap_or_default(),
            Some(b':') => {
                let Some(d2) = s.get(3..).and_then(|r| r.iter().position(|&b| b == b'$')).map(|x| x + 3) else {
                    break;
                };
                let inner = s.get(3..d2).unwrap_or_default();
                if inner.contains(&b'\n') {
                    continue;
                }
                // A space before the one right before the closing '$': another VCS's id.
                let spc = s.get(4.min(d2)..d2).and_then(|r| r.iter().position(|&b| b == b' ')).map(|x| x + 4);
                if spc.is_some_and(|p| p + 1 < d2) {
                    continue;
                }
                s = s.get(d2 + 1..).unwrap_or_default();
            }
            _ => continue,
        }
        out.extend_from_slice(format!("Id: {hex} $").as_bytes());
    }
    out.extend_from_slice(s);
    out
}

/// `count_ident`.
fn count_ident(src: &[u8]) -> usize {
    let mut cnt = 0;
    let mut i = 0;
    while let Some(&ch) = src.get(i) {
        i += 1;
        if ch != b'$' {
            continue;
        }
        if src.len() - i < 3 {
            break;
        }
        if src.get(i..i + 2) != Some(b"Id") {
            continue;
        }
        let c = src.get(i + 2).copied().unwrap_or(0);
        i += 3;
        if c == b'$' {
            cnt += 1;
        }
        if c != b':' {
            continue;
        }
        while let Some(&c) = src.get(i) {
            i += 1;
            if c == b'$' {
                cnt += 1;
                break;
            }
            if c == b'\n' {
                break;
            }
        }
    }
    cnt
}

/// The streaming ident filter (`ident_filter_fn`), which git uses instead of the in-core
/// one when no other conversion needs the whole file; it treats `$Id:...$` differently.
pub fn ident_stream(src: &[u8], hex: &str) -> Vec<u8> {
    const HEAD: &[u8] = b"$Id";
    let ident = format!(": {hex} $");
    let mut out = Vec::with_capacity(src.len() + 64);
    let mut left: Vec<u8> = Vec::new();
    // 0..=3: matched that much of "$Id"; -2: skipping an "$Id:" body.
    let mut state: i32 = 0;
    for &ch in src {
        if state == -2 {
            left.push(ch);
            if ch != b'\n' && ch != b'$' {
                continue;
            }
            if ch == b'$' && !is_foreign_ident(&left) {
                left.truncate(HEAD.len());
                left.extend_from_slice(ident.as_bytes());
            }
            out.append(&mut left);
            state = 0;
            continue;
        }
        let st = state as usize;
        if st < HEAD.len() && HEAD.get(st) == Some(&ch) {
            state += 1;
            continue;
        }
        left.extend_from_slice(HEAD.get(..st).unwrap_or_default());
        if st == HEAD.len() {
            if ch != b':' && ch != b'$' {
                left.push(ch);
                out.append(&mut left);
                state = 0;
                continue;
            }
            if ch == b':' {
                left.push(ch);
                state = -2;
            } else {
                left.extend_from_slice(ident.as_bytes());
                out.append(&mut left);
                state = 0;
            }
            continue;
        }
        left.push(ch);
        out.append(&mut left);
        state = 0;
    }
    // Drain at the end of input.
    if state > 0 {
        left.extend_from_slice(HEAD.get(..state as usize).unwrap_or_default());
    }
    out.append(&mut left);
    out
}

/// `is_foreign_ident`: after `$Id: `, white space not followed by `$`.
fn is_foreign_ident(s: &[u8]) -> bool {
    let Some(rest) = s.strip_prefix(b"$Id: ") else { return false };
    rest.iter()
        .enumerate()
        .any(|(i, &c)| matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') && rest.get(i + 1) != Some(&b'$'))
}

/// One way to encode: its name, and the bytes (`None`: git writes the file unconverted) or
/// why they could not be produced.
pub type Encoded = (String, Result<Option<Vec<u8>>, String>);

/// `encode_to_worktree` (`reencode_string_len` from UTF-8 to `enc`) for every way a client
/// can do it: the name, the produced bytes (`Ok(None)`: git's conversion fails, so it writes
/// the bytes unconverted), or why it could not be produced here.
pub fn encode_to_worktree(src: &[u8], enc: &str) -> Vec<Encoded> {
    if src.is_empty() || same_encoding(enc, "UTF-8") {
        return Vec::new();
    }
    // UTF-16 and UTF-32 are written by git itself or by iconv, with a byte-order mark in the
    // platform's or the big-endian order (glibc, libiconv, ICONV_OMITS_BOM).
    if let Some(forms) = utf_forms(enc) {
        let Ok(text) = std::str::from_utf8(src) else {
            return vec![(enc.to_string(), Ok(None))];
        };
        return forms.into_iter().map(|(name, f)| (name, Ok(Some(f.encode(text))))).collect();
    }
    vec![(enc.to_string(), iconv(src, enc))]
}

#[derive(Clone, Copy)]
struct Utf {
    width: usize,
    big_endian: bool,
    bom: bool,
}

impl Utf {
    fn encode(self, text: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len() * self.width + 4);
        let mut put = |u: u32| {
            if self.width == 2 {
                let b = (u as u16).to_le_bytes();
                if self.big_endian {
                    out.extend_from_slice(&[b[1], b[0]]);
                } else {
                    out.extend_from_slice(&b);
                }
            } else if self.big_endian {
                out.extend_from_slice(&u.to_be_bytes());
            } else {
                out.extend_from_slice(&u.to_le_bytes());
            }
        };
        if self.bom {
            put(0xfeff);
        }
        for c in text.chars() {
            if self.width == 2 {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    put(u32::from(*u));
                }
            } else {
                put(u32::from(c));
            }
        }
        out
    }
}

/// The byte forms of a UTF-16/UTF-32 (or UCS-2/UCS-4) name, or `None` for other encodings.
fn utf_forms(enc: &str) -> Option<Vec<(String, Utf)>> {
    let l = enc.to_ascii_lowercase();
    let (width, rest) = if let Some(r) = l.strip_prefix("utf") {
        let r = r.strip_prefix('-').unwrap_or(r);
        if let Some(r) = r.strip_prefix("16") {
            (2, r)
        } else if let Some(r) = r.strip_prefix("32") {
            (4, r)
        } else {
            return None;
        }
    } else if let Some(r) = l.strip_prefix("ucs-2").or_else(|| l.strip_prefix("ucs2")) {
        (2, r)
    } else if let Some(r) = l.strip_prefix("ucs-4").or_else(|| l.strip_prefix("ucs4")) {
        (4, r)
    } else {
        return None;
    };
    let f = |big_endian, bom| Utf { width, big_endian, bom };
    let name = |s: &str| format!("{enc} ({s})");
    Some(match rest {
        "" => vec![(name("BOM, little-endian"), f(false, true)), (name("BOM, big-endian"), f(true, true))],
        "le" => vec![(enc.to_string(), f(false, false))],
        "be" => vec![(enc.to_string(), f(true, false))],
        "le-bom" => vec![(enc.to_string(), f(false, true))],
        "be-bom" => vec![(enc.to_string(), f(true, true))],
        _ => return None,
    })
}

/// Convert with the system's `iconv` program (glibc's, like git on Linux), trying git's
/// fallback spelling for `latin-1`. `Ok(None)`: iconv refuses the name or the text, which
/// makes git write the file unconverted.
fn iconv(src: &[u8], enc: &str) -> Result<Option<Vec<u8>>, String> {
    let mut names = vec![enc.to_string()];
    if enc.eq_ignore_ascii_case("latin-1") {
        names.push("ISO-8859-1".into());
    }
    for name in names {
        let child = Command::new("iconv")
            .args(["-f", "UTF-8", "-t"])
            .arg(&name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => return Err(format!("cannot run iconv to produce working-tree-encoding={enc}: {e}")),
        };
        let input = src.to_vec();
        let writer = child.stdin.take().map(|mut stdin| std::thread::spawn(move || stdin.write_all(&input)));
        let out = child.wait_with_output().map_err(|e| format!("iconv failed: {e}"))?;
        if let Some(w) = writer {
            let _ = w.join();
        }
        if out.status.success() {
            return Ok(Some(out.stdout));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slow, general path of `crlf_to_worktree` for `auto` (git's `gather_stats` and a
    /// byte-wise copy), to check the fast one against.
    fn crlf_auto_reference(buf: &[u8]) -> Option<Vec<u8>> {
        let st = gather_stats(buf);
        if buf.is_empty() || st.lonelf == 0 || st.lonecr > 0 || st.crlf > 0 || is_binary(&st) {
            return None;
        }
        Some(lf_to_crlf(buf, 0))
    }

    #[test]
    fn the_fast_autocrlf_path_agrees_with_gits_counts() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let alphabet: &[u8] = b"ab \n\n\r\t\x00\x01\x08\x0c\x1b\x1a\x7f\xc3\xa9";
        for case in 0..20_000 {
            let len = (case % 300) + usize::from(case % 7 == 0) * 700;
            let mut buf = Vec::with_capacity(len);
            // Mostly printable text with a few rarer bytes, so that every outcome happens.
            let rare = case % 5;
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let pick = (x >> 33) as usize;
                let b = if pick % 100 < 90 - rare * 5 { alphabet[pick % 3] } else { alphabet[pick % alphabet.len()] };
                buf.push(b);
            }
            if case % 11 == 0 {
                buf.push(0x1a);
            }
            assert_eq!(crlf_to_worktree(&buf, Crlf::Auto), crlf_auto_reference(&buf), "{buf:?}");
        }
    }

    #[test]
    fn end_of_line_only_variants_equal_the_staged_ones() {
        let texts: [&[u8]; 8] = [b"", b"a", b"a\nb\n", b"a\r\nb\n", b"\n", b"x\x00\ny", b"lone\rcr\n", b"$Id$\nkeep\n"];
        for crlf in [Crlf::Never, Crlf::Auto, Crlf::Always] {
            for symlink in [false, true] {
                let co = Checkout { crlf, symlink, ..Checkout::default() };
                for t in texts {
                    assert_eq!(variants(t, HEX, &co), variants_staged(t, HEX, &co), "{crlf:?} {symlink} {t:?}");
                }
            }
        }
    }

    const HEX: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn crlf_like_git() {
        assert_eq!(crlf_to_worktree(b"a\nb\n", Crlf::Auto).unwrap(), b"a\r\nb\r\n");
        assert_eq!(crlf_to_worktree(b"a\r\nb\n", Crlf::Auto), None, "mixed: autocrlf leaves it");
        assert_eq!(crlf_to_worktree(b"a\r\nb\n", Crlf::Always).unwrap(), b"a\r\nb\r\n");
        assert_eq!(crlf_to_worktree(b"a\0\nb\n", Crlf::Auto), None, "binary");
        assert_eq!(crlf_to_worktree(b"a\0\nb\n", Crlf::Always).unwrap(), b"a\0\r\nb\r\n");
        assert_eq!(crlf_to_worktree(b"a\nb\n", Crlf::Never), None);
        assert_eq!(crlf_to_worktree(b"a\rb\n", Crlf::Auto), None, "lone CR");
        // Non-printables: more than 1 in 128 makes it binary.
        let mut t = vec![b'a'; 255];
        t.extend_from_slice(b"\x01\x01\n");
        assert_eq!(crlf_to_worktree(&t, Crlf::Auto), None);
        t.remove(0);
        t.remove(0);
        let mut u = vec![b'a'; 256];
        u.extend_from_slice(b"\x01\x01\n");
        assert!(crlf_to_worktree(&u, Crlf::Auto).is_some());
        // High bytes count as printable.
        assert!(crlf_to_worktree(b"\x80\x8a\n.", Crlf::Auto).is_some());
        assert_eq!(crlf_to_worktree(b"\x80\x02\x8a\n.", Crlf::Auto), None, "1 in 3 non-printable");
    }

    #[test]
    fn ident_like_git() {
        let exp = format!("$Id: {HEX} $");
        assert_eq!(ident_to_worktree(b"x $Id$ y", HEX), format!("x {exp} y").into_bytes());
        assert_eq!(ident_to_worktree(b"$Id: old $", HEX), exp.clone().into_bytes());
        assert_eq!(ident_to_worktree(b"$Id: a b c $", HEX), b"$Id: a b c $".to_vec(), "foreign id kept");
        assert_eq!(ident_to_worktree(b"$Id: a\n$", HEX), b"$Id: a\n$".to_vec());
        assert_eq!(ident_to_worktree(b"no ident", HEX), b"no ident".to_vec());
        assert_eq!(ident_stream(b"x $Id$ y", HEX), format!("x {exp} y").into_bytes());
        assert_eq!(ident_stream(b"$Id:abc def$", HEX), exp.clone().into_bytes(), "streaming: not foreign");
        assert_eq!(ident_to_worktree(b"$Id:abc def$", HEX), b"$Id:abc def$".to_vec(), "in-core: foreign");
        assert_eq!(ident_stream(b"$I", HEX), b"$I".to_vec());
        assert_eq!(ident_stream(b"a$Id", HEX), b"a$Id".to_vec());
    }

    #[test]
    fn encodings() {
        let v = encode_to_worktree("é\n".as_bytes(), "UTF-16");
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].1.as_ref().unwrap().as_deref(), Some(&b"\xff\xfe\xe9\x00\n\x00"[..]));
        assert_eq!(v[1].1.as_ref().unwrap().as_deref(), Some(&b"\xfe\xff\x00\xe9\x00\n"[..]));
        let v = encode_to_worktree("é".as_bytes(), "utf-16le");
        assert_eq!(v[0].1.as_ref().unwrap().as_deref(), Some(&b"\xe9\x00"[..]));
        assert!(encode_to_worktree(b"x", "UTF8").is_empty());
        // Latin-1 through iconv gives back the original bytes of a pickle stored as UTF-8.
        let pickle = b"\x80\x04\x95";
        let stored: String = pickle.iter().map(|&b| char::from(b)).collect();
        let v = encode_to_worktree(stored.as_bytes(), "latin1");
        assert_eq!(v[0].1.as_ref().unwrap().as_deref(), Some(&pickle[..]));
        let v = encode_to_worktree("€".as_bytes(), "latin1");
        assert_eq!(v[0].1.as_ref().unwrap(), &None, "not representable: git writes it unconverted");
    }

    #[test]
    fn variants_combine_in_git_order() {
        let co = Checkout { ident: true, encoding: Some("UTF-16LE".into()), ..Checkout::default() };
        let (v, problems) = variants(b"$Id$\n", HEX, &co);
        assert!(problems.is_empty());
        let want: Vec<u8> = format!("$Id: {HEX} $\r\n").encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        assert!(v.iter().any(|x| x.bytes == want), "{v:?}");
        let (v, _) = variants(b"\x80\x04\x00\n", HEX, &Checkout::default());
        assert!(v.is_empty(), "binary content is never converted by autocrlf");
        let (v, _) = variants(b"x\n", HEX, &Checkout::symlink());
        assert!(v.is_empty());
    }
}
