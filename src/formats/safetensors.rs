//! safetensors: an 8-byte little-endian header length, a JSON header, then raw tensor bytes.
//!
//! The loader executes nothing, so what matters is that the header is exactly what the
//! reference loader accepts (readers that disagree on a malformed header are an attack
//! surface) and that `__metadata__` carries no code for tools that might run it. Only the
//! header is read: a multi-GB file costs one small read.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use crate::detect::Format;
use crate::engine::Scan;
use crate::finding::{CodeInfo, Finding, Severity};
use crate::formats::jinja::excerpt;
use crate::source::{Data, Input};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use std::fmt;
use std::io::Read;

pub const CODES: &[CodeInfo] = &[
    CodeInfo {
        code: "safetensors-malformed",
        severity: Severity::Error,
        summary: "the safetensors header is malformed or does not match the file",
        fix: "re-export the tensors with the safetensors library; loaders reject or disagree on such files",
    },
    CodeInfo {
        code: "safetensors-metadata-code",
        severity: Severity::Dangerous,
        summary: "safetensors metadata holds python code that runs commands or evaluates code",
        fix: "remove the code from __metadata__; no legitimate model stores executable code there",
    },
    CodeInfo {
        code: "safetensors-metadata-suspicious",
        severity: Severity::Suspicious,
        summary: "safetensors metadata holds shell commands or html script",
        fix: "check who wrote the metadata and remove the commands or markup",
    },
];

/// The reference loader's header size cap (`MAX_HEADER_SIZE` in the safetensors crate).
pub const MAX_HEADER: u64 = 100_000_000;

/// Most findings reported for one header (the rest are summarised).
const MAX_FINDINGS: usize = 32;

/// A u64 length (below 4 GiB, so the high half is zero) followed by a JSON object that opens
/// with a key or closes at once: `{"` or `{}`, spaces allowed.
pub fn sniff(head: &[u8]) -> Option<Format> {
    let len = u64::from_le_bytes(head.get(..8)?.try_into().ok()?);
    if !(2..=u64::from(u32::MAX)).contains(&len) {
        return None;
    }
    let rest = head.get(8..)?;
    if rest.first() != Some(&b'{') {
        return None;
    }
    let next = rest.iter().skip(1).find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))?;
    matches!(next, b'"' | b'}').then_some(Format::Safetensors)
}

/// Scan a safetensors file: read the header, check it against the data region's size.
pub fn scan(scan: &mut Scan<'_>, data: Data) {
    scan.mark_model();
    let mut input = data.into_input();
    match read_header(&mut input) {
        Ok((header, data_len)) => {
            for f in check_header(&header, data_len) {
                scan.finding(f);
            }
        }
        Err(f) => scan.finding(f),
    }
}

fn malformed(msg: impl Into<String>) -> Finding {
    Finding::new("safetensors-malformed", Severity::Error, msg)
}

/// Read the header and measure the data region (seeking on random sources, discarding on streams).
fn read_header(input: &mut Input) -> Result<(Vec<u8>, u64), Finding> {
    let mut len8 = [0u8; 8];
    input.read_exact(&mut len8).map_err(|e| malformed(format!("cannot read the header length: {e}")).at(0))?;
    let len = u64::from_le_bytes(len8);
    if len > MAX_HEADER {
        return Err(malformed(format!("header length {len} exceeds the loader's limit of {MAX_HEADER} bytes")).at(0));
    }
    if let Some(rem) = input.remaining() {
        if len > rem {
            return Err(
                malformed(format!("header length {len} runs past the end of the file ({rem} bytes follow)")).at(0)
            );
        }
    }
    // Grown as bytes arrive, so a stream that lies about the length costs only what it holds.
    let mut header = Vec::new();
    input
        .by_ref()
        .take(len)
        .read_to_end(&mut header)
        .map_err(|e| malformed(format!("cannot read the header: {e}")).at(8))?;
    if (header.len() as u64) < len {
        return Err(malformed(format!(
            "header length {len} runs past the end of the file ({} bytes follow)",
            header.len()
        ))
        .at(0));
    }
    let data_len = match input.remaining() {
        Some(r) => r,
        None => input.skip(u64::MAX).map_err(|e| malformed(format!("cannot read the tensor data: {e}")))?,
    };
    Ok((header, data_len))
}

/// JSON object entries in document order, duplicates kept (serde_json's map keeps only the last).
struct Entries(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a json object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Entries, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = m.next_entry::<String, serde_json::Value>()? {
                    v.push(e);
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// Bits per element of each dtype the reference loader knows.
fn dtype_bits(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 8,
        "I16" | "U16" | "F16" | "BF16" => 16,
        "I32" | "U32" | "F32" => 32,
        "I64" | "U64" | "F64" | "C64" => 64,
        "F4" => 4,
        "F6_E2M3" | "F6_E3M2" => 6,
        _ => return None,
    })
}

/// Check a header against a data region of `data_len` bytes.
pub fn check_header(header: &[u8], data_len: u64) -> Vec<Finding> {
    let mut out = Vec::new();
    let entries = match serde_json::from_slice::<Entries>(header) {
        Ok(e) => e.0,
        Err(e) => {
            out.push(malformed(format!("header is not a json object: {e}")).at(8));
            return out;
        }
    };
    let at = |key: &str| 8 + find(header, format!("\"{key}\"").as_bytes()).unwrap_or(0) as u64;
    let mut seen = std::collections::HashSet::new();
    let mut spans: Vec<(u64, u64, &str)> = Vec::new();
    for (name, value) in &entries {
        // Past the cap only `__metadata__` is still read: code in it is dangerous whatever
        // else is wrong with the header.
        if out.len() >= MAX_FINDINGS && name != "__metadata__" {
            continue;
        }
        if !seen.insert(name.as_str()) {
            out.push(
                malformed(format!("key {} appears more than once; readers disagree on which one counts", quote(name)))
                    .at(at(name)),
            );
            continue;
        }
        if name == "__metadata__" {
            check_metadata(value, at(name), &mut out);
            continue;
        }
        match tensor_span(value) {
            Ok(span) => spans.push((span.0, span.1, name)),
            Err(msg) => out.push(malformed(format!("tensor {}: {msg}", quote(name))).at(at(name))),
        }
    }
    spans.sort_unstable();
    let mut expected = 0u64;
    for &(begin, end, name) in &spans {
        if out.len() >= MAX_FINDINGS {
            break;
        }
        if begin != expected {
            let what = if begin < expected { "overlaps the previous tensor" } else { "leaves a gap before it" };
            out.push(
                malformed(format!(
                    "tensor {} starts at data offset {begin} and {what} (expected {expected})",
                    quote(name)
                ))
                .at(at(name)),
            );
        }
        expected = expected.max(end);
    }
    if out.iter().all(|f| f.code != "safetensors-malformed") {
        if expected > data_len {
            out.push(malformed(format!(
                "tensor data runs to offset {expected}, past the end of the data region ({data_len} bytes)"
            )));
        } else if expected < data_len {
            out.push(malformed(format!("tensors cover {expected} bytes but the data region holds {data_len} bytes")));
        }
    }
    out
}

/// Validate one tensor entry; returns its data offsets.
fn tensor_span(v: &serde_json::Value) -> Result<(u64, u64), String> {
    let obj = v.as_object().ok_or("entry is not an object")?;
    let dtype = obj.get("dtype").and_then(|d| d.as_str()).ok_or("missing dtype")?;
    let bits = dtype_bits(dtype).ok_or_else(|| format!("unknown dtype {}", quote(dtype)))?;
    let shape = obj.get("shape").and_then(|s| s.as_array()).ok_or("missing shape")?;
    let mut elems: u64 = 1;
    for d in shape {
        let d = d.as_u64().ok_or("shape holds a value that is not a non-negative integer")?;
        elems = elems.checked_mul(d).ok_or("shape overflows")?;
    }
    let offs = obj.get("data_offsets").and_then(|o| o.as_array()).ok_or("missing data_offsets")?;
    let (begin, end) = match offs.as_slice() {
        [b, e] => (b.as_u64().ok_or("bad data_offsets")?, e.as_u64().ok_or("bad data_offsets")?),
        _ => return Err("data_offsets is not a pair".into()),
    };
    if end < begin {
        return Err(format!("data_offsets [{begin}, {end}] end before they begin"));
    }
    let total_bits = elems.checked_mul(bits).ok_or("shape overflows")?;
    if total_bits % 8 != 0 {
        return Err(format!("{elems} elements of {dtype} do not fill whole bytes"));
    }
    if total_bits / 8 != end - begin {
        return Err(format!(
            "shape {:?} of {dtype} needs {} bytes but data_offsets [{begin}, {end}] hold {}",
            shape.iter().filter_map(|d| d.as_u64()).collect::<Vec<_>>(),
            total_bits / 8,
            end - begin
        ));
    }
    Ok((begin, end))
}

fn check_metadata(v: &serde_json::Value, offset: u64, out: &mut Vec<Finding>) {
    let Some(map) = v.as_object() else {
        out.push(malformed("__metadata__ is not an object").at(offset));
        return;
    };
    let mut per: std::collections::HashMap<&'static str, usize> = std::collections::HashMap::new();
    for (k, val) in map {
        // At most MAX_FINDINGS of each kind; the kinds are checked for every key.
        let full = |c: &'static str, per: &std::collections::HashMap<&'static str, usize>| {
            per.get(c).copied().unwrap_or(0) >= MAX_FINDINGS
        };
        if full("safetensors-metadata-code", &per)
            && full("safetensors-metadata-suspicious", &per)
            && full("safetensors-malformed", &per)
        {
            break;
        }
        let Some(s) = val.as_str() else {
            if full("safetensors-malformed", &per) {
                continue;
            }
            *per.entry("safetensors-malformed").or_default() += 1;
            out.push(malformed(format!("__metadata__ value {} is not a string", quote(k))).at(offset));
            continue;
        };
        let evidence = || format!("__metadata__[{}] = {}", quote(k), quote(&excerpt(s, 200)));
        if let Some(p) = code_pattern(s).or_else(|| code_pattern(k)) {
            if full("safetensors-metadata-code", &per) {
                continue;
            }
            *per.entry("safetensors-metadata-code").or_default() += 1;
            out.push(
                Finding::new(
                    "safetensors-metadata-code",
                    Severity::Dangerous,
                    format!("metadata {} holds python code ({p})", quote(k)),
                )
                .at(offset)
                .evidence(evidence()),
            );
        } else if let Some(p) = shell_or_markup_pattern(s) {
            if full("safetensors-metadata-suspicious", &per) {
                continue;
            }
            *per.entry("safetensors-metadata-suspicious").or_default() += 1;
            out.push(
                Finding::new(
                    "safetensors-metadata-suspicious",
                    Severity::Suspicious,
                    format!("metadata {} holds {p}", quote(k)),
                )
                .at(offset)
                .evidence(evidence()),
            );
        }
    }
}

/// Python that runs commands or code: imports of process/code modules and exec-style calls.
pub fn code_pattern(s: &str) -> Option<&'static str> {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    const CALLS: &[&str] = &[
        "os.system(",
        "os.popen(",
        "os.exec",
        "os.spawn",
        "subprocess.",
        "exec(",
        "eval(",
        "__import__(",
        "compile(",
        "pickle.loads(",
        "marshal.loads(",
        "pty.spawn(",
        "importlib.import_module(",
        "__builtins__",
    ];
    for c in CALLS {
        if let Some(i) = compact.find(c) {
            // `exec(`/`eval(`/`compile(` must not be the tail of a longer identifier (`my_eval(`).
            let prev = i.checked_sub(1).and_then(|j| compact.as_bytes().get(j));
            if !prev.is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_') {
                return Some(c);
            }
        }
    }
    let words: Vec<&str> = s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')).collect();
    const MODULES: &[&str] = &["os", "subprocess", "pty", "socket", "sys", "shutil", "builtins", "ctypes", "runpy"];
    for w in words.windows(2) {
        if let [kw, m] = w {
            if (*kw == "import" || *kw == "from") && MODULES.contains(&m.split('.').next().unwrap_or(m)) {
                return Some(if *kw == "import" { "import statement" } else { "from-import statement" });
            }
        }
    }
    None
}

fn shell_or_markup_pattern(s: &str) -> Option<&'static str> {
    let lower = s.to_ascii_lowercase();
    const PATTERNS: &[(&str, &str)] = &[
        ("<script", "an html script tag"),
        ("javascript:", "a javascript url"),
        ("rm -rf", "a shell command (rm -rf)"),
        ("wget ", "a shell command (wget)"),
        ("curl ", "a shell command (curl)"),
        ("chmod ", "a shell command (chmod)"),
        ("/bin/sh", "a shell path"),
        ("/bin/bash", "a shell path"),
        ("| sh", "a pipe into a shell"),
        ("|sh", "a pipe into a shell"),
        ("| bash", "a pipe into a shell"),
        ("powershell", "a powershell command"),
    ];
    PATTERNS.iter().find(|(p, _)| lower.contains(p)).map(|(_, what)| *what)
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(json: &str) -> Vec<u8> {
        json.as_bytes().to_vec()
    }

    #[test]
    fn valid_header_is_clean() {
        let h = header(
            r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]}}"#,
        );
        assert!(check_header(&h, 22).is_empty(), "{:?}", check_header(&h, 22));
    }

    #[test]
    fn sub_byte_dtypes() {
        let h = header(r#"{"a":{"dtype":"F4","shape":[4],"data_offsets":[0,2]}}"#);
        assert!(check_header(&h, 2).is_empty());
        let h = header(r#"{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}"#);
        assert_eq!(check_header(&h, 2)[0].code, "safetensors-malformed");
    }

    #[test]
    fn structural_errors() {
        let cases = [
            (r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, 4, "needs 8 bytes"),
            (r#"{"a":{"dtype":"X9","shape":[1],"data_offsets":[0,4]}}"#, 4, "unknown dtype"),
            (
                r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}"#,
                6,
                "overlaps",
            ),
            (r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}"#, 8, "gap"),
            (r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#, 10, "cover 4 bytes"),
            (r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#, 2, "past the end"),
            (
                r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#,
                4,
                "more than once",
            ),
            (r#"{"__metadata__":{"x":1}}"#, 0, "not a string"),
            (r#"{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,4]}}"#, 4, "non-negative"),
            (r#"{"a":{"dtype":"U8","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}}"#, 4, "overflows"),
            (r#"[1,2]"#, 0, "not a json object"),
            (r#"{"a":1"#, 0, "not a json object"),
        ];
        for (json, len, want) in cases {
            let f = check_header(json.as_bytes(), len);
            assert!(
                f.iter().any(|f| f.code == "safetensors-malformed" && f.message.contains(want)),
                "{json}: want {want}, got {f:?}"
            );
        }
    }

    #[test]
    fn metadata_code_patterns() {
        assert!(code_pattern("import os; os.system('echo pwned')").is_some());
        assert!(code_pattern("import base64; exec(base64.b64decode('cHJpbnQ='))").is_some());
        assert!(code_pattern("import subprocess; subprocess.call(['ls'])").is_some());
        assert!(code_pattern("__import__('os')").is_some());
        assert!(code_pattern("A small transformer model for text classification").is_none());
        assert!(code_pattern("pt").is_none());
        assert!(code_pattern("we import ostrich data; run my_eval(x)").is_none());
        assert!(code_pattern("https://huggingface.co/org/model").is_none());
    }

    #[test]
    fn sniffing() {
        let mk = |len: u64, rest: &[u8]| [len.to_le_bytes().as_slice(), rest].concat();
        assert_eq!(sniff(&mk(30, br#"{"a":{}}"#)), Some(Format::Safetensors));
        assert_eq!(sniff(&mk(30, b"{ \n \"a\"")), Some(Format::Safetensors));
        assert_eq!(sniff(&mk(2, b"{}")), Some(Format::Safetensors));
        assert_eq!(sniff(&mk(30, b"[1]")), None);
        assert_eq!(sniff(&mk(30, b"{x")), None);
        assert_eq!(sniff(&mk(1 << 40, br#"{"a"#)), None);
        assert_eq!(sniff(b"\x80\x04\x95"), None);
    }
}
