//! ONNX models: a `ModelProto` walked with the bounded protobuf reader.
//!
//! ONNX runs no Python, but two things reach outside the file: tensors stored as external
//! data (their `location` is opened relative to the model's directory, so an absolute path or
//! one that climbs out with `..` reads any file, CVE-2022-25882 / CVE-2024-27318), and
//! operators from custom domains (they need a native library registered by the runtime).
//! Every graph is visited: the main graph, subgraphs in node attributes (`If`, `Loop`,
//! `Scan`), training graphs and local functions. Tensor data is never read.
//!
//! There is no magic number: a file is ONNX when `ir_version` (field 1) is a plausible varint
//! and `graph` (field 7) parses as a `GraphProto`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use crate::detect::Format;
use crate::engine::Scan;
use crate::finding::{CodeInfo, Finding, Severity};
use crate::formats::jinja::excerpt;
use crate::formats::protobuf::{Blocks, Error, Field, Reader};
use crate::source::Source;
use std::collections::{BTreeMap, HashSet};

pub const CODES: &[CodeInfo] = &[
    CodeInfo {
        code: "onnx-external-data-path",
        severity: Severity::Dangerous,
        summary: "an onnx tensor's external data location is absolute or leaves the model directory",
        fix: "do not load the model; external data must be a file beside the model",
    },
    CodeInfo {
        code: "onnx-external-data-unusual",
        severity: Severity::Suspicious,
        summary: "an onnx tensor's external data location uses '..' or unusual characters",
        fix: "re-save the model with plain relative external data file names",
    },
    CodeInfo {
        code: "onnx-custom-operator",
        severity: Severity::Suspicious,
        summary: "an onnx model uses operators from a custom domain that a native library must provide",
        fix: "make sure the custom operator library comes from a source you trust",
    },
    CodeInfo {
        code: "onnx-malformed",
        severity: Severity::Error,
        summary: "an onnx model is truncated or malformed",
        fix: "re-export the model; a file that cannot be parsed cannot be judged",
    },
];

/// Highest `ir_version` accepted as plausible (IR 11 is current; leave room for growth).
const MAX_IR_VERSION: u64 = 64;
const MAX_NAME: usize = 1024;
/// Longest operator domain or external data location read; a longer one is malformed (it is
/// never cut: a cut location or domain would be judged as something it is not).
const MAX_PATH: u64 = 64 << 10;
/// Most external-data findings reported for one model.
const MAX_FINDINGS: usize = 200;

/// Operator domains served by the standard runtimes.
fn standard_domain(d: &str) -> bool {
    d.is_empty()
        || d == "ai.onnx"
        || d.starts_with("ai.onnx.")
        || d == "com.microsoft"
        || d.starts_with("com.microsoft.")
        || d == "com.ms.internal.nhwc"
        || d == "org.pytorch.aten"
}

#[derive(Default)]
struct Walk {
    findings: Vec<Finding>,
    /// (domain, op_type) -> first node name, for custom domains.
    custom: BTreeMap<(String, String), String>,
    /// Domains of model-local functions (their operators are defined in the file).
    local_domains: HashSet<String>,
}

/// Walk an ONNX model. `None` when the bytes do not have its structure.
pub fn scan(scan: &mut Scan<'_>, src: &dyn Source) -> Option<Format> {
    let blocks = Blocks::new(src);
    let mut w = Walk::default();
    let mut ir_ok = false;
    let mut graph_started = false;
    let res = model(&mut Reader::root(&blocks), &mut w, &mut ir_ok, &mut graph_started);
    // A graph field whose length runs past the file is a truncated model, not other bytes.
    let truncated_graph = matches!(&res, Err(e) if e.what.starts_with("field 7 length"));
    if !(ir_ok && (graph_started || truncated_graph)) {
        return None;
    }
    scan.mark_model();
    if let Err(e) = res {
        w.findings.push(
            Finding::new("onnx-malformed", Severity::Error, format!("onnx model is malformed: {e}")).at(e.offset),
        );
    }
    for f in w.findings {
        scan.finding(f);
    }
    for ((domain, op), node) in w.custom {
        if w.local_domains.contains(&domain) {
            continue;
        }
        scan.finding(
            Finding::new(
                "onnx-custom-operator",
                Severity::Suspicious,
                format!("operator {op} from custom domain {}", quote(&domain)),
            )
            .evidence(format!("first used by node {}", quote(&excerpt(&node, 120)))),
        );
    }
    Some(Format::Onnx)
}

fn wrong(f: &Field) -> Error {
    Error { offset: f.offset, what: format!("field {} has the wrong wire type", f.number) }
}

fn model(r: &mut Reader<'_, '_>, w: &mut Walk, ir_ok: &mut bool, graph_started: &mut bool) -> Result<(), Error> {
    while let Some(f) = r.next()? {
        match f.number {
            1 => match f.varint() {
                Some(v) if (1..=MAX_IR_VERSION).contains(&v) => *ir_ok = true,
                _ => return Err(wrong(&f)),
            },
            5 if f.varint().is_none() => return Err(wrong(&f)),
            2 | 3 | 4 | 6 | 7 | 8 | 14 | 20 | 25 if !f.is_len() => return Err(wrong(&f)),
            7 => {
                *graph_started = true;
                graph(&mut r.sub(&f)?, w, "main graph")?;
            }
            8 => r.sub(&f)?.skip_all()?,
            20 => {
                let mut t = r.sub(&f)?;
                while let Some(g) = t.next()? {
                    if (g.number == 1 || g.number == 2) && g.is_len() {
                        graph(&mut t.sub(&g)?, w, "training graph")?;
                    }
                }
            }
            25 => function(&mut r.sub(&f)?, w)?,
            _ => {}
        }
    }
    Ok(())
}

fn graph(r: &mut Reader<'_, '_>, w: &mut Walk, scope: &str) -> Result<(), Error> {
    while let Some(f) = r.next()? {
        match f.number {
            1 | 2 | 5 | 10..=16 if !f.is_len() => return Err(wrong(&f)),
            1 => node(&mut r.sub(&f)?, w, scope)?,
            5 => tensor(&mut r.sub(&f)?, w, &format!("initializer in {scope}"))?,
            15 => sparse_tensor(&mut r.sub(&f)?, w, &format!("sparse initializer in {scope}"))?,
            11..=13 => value_info(&mut r.sub(&f)?)?,
            _ => {}
        }
    }
    Ok(())
}

fn value_info(r: &mut Reader<'_, '_>) -> Result<(), Error> {
    while let Some(f) = r.next()? {
        if f.number == 1 && !f.is_len() {
            return Err(wrong(&f));
        }
    }
    Ok(())
}

fn node(r: &mut Reader<'_, '_>, w: &mut Walk, scope: &str) -> Result<(), Error> {
    let (mut name, mut op, mut domain) = (String::new(), String::new(), String::new());
    let mut attrs = Vec::new();
    while let Some(f) = r.next()? {
        match f.number {
            1..=7 if !f.is_len() => return Err(wrong(&f)),
            3 => name = r.string(&f, MAX_NAME)?,
            4 => op = r.string(&f, MAX_NAME)?,
            7 => domain = full_string(r, &f, "operator domain")?,
            5 => attrs.push(f),
            _ => {}
        }
    }
    let label = if name.is_empty() { op.clone() } else { name.clone() };
    for a in attrs {
        attribute(&mut r.sub(&a)?, w, &format!("node {} in {scope}", quote(&excerpt(&label, 120))))?;
    }
    if !standard_domain(&domain) && w.custom.len() < MAX_FINDINGS {
        w.custom.entry((domain, op)).or_insert(label);
    }
    Ok(())
}

fn attribute(r: &mut Reader<'_, '_>, w: &mut Walk, scope: &str) -> Result<(), Error> {
    while let Some(f) = r.next()? {
        match f.number {
            5 | 6 | 10 | 11 | 22 | 23 if !f.is_len() => return Err(wrong(&f)),
            5 | 10 => tensor(&mut r.sub(&f)?, w, &format!("tensor attribute of {scope}"))?,
            22 | 23 => sparse_tensor(&mut r.sub(&f)?, w, &format!("sparse tensor attribute of {scope}"))?,
            6 | 11 => graph(&mut r.sub(&f)?, w, &format!("subgraph of {scope}"))?,
            _ => {}
        }
    }
    Ok(())
}

fn function(r: &mut Reader<'_, '_>, w: &mut Walk) -> Result<(), Error> {
    let (mut name, mut domain) = (String::new(), String::new());
    let mut nodes = Vec::new();
    while let Some(f) = r.next()? {
        match f.number {
            1 | 7 | 10 if !f.is_len() => return Err(wrong(&f)),
            1 => name = r.string(&f, MAX_NAME)?,
            10 => domain = full_string(r, &f, "function domain")?,
            7 => nodes.push(f),
            _ => {}
        }
    }
    let scope = format!("function {}", quote(&excerpt(&name, 120)));
    for n in nodes {
        node(&mut r.sub(&n)?, w, &scope)?;
    }
    w.local_domains.insert(domain);
    Ok(())
}

fn sparse_tensor(r: &mut Reader<'_, '_>, w: &mut Walk, scope: &str) -> Result<(), Error> {
    while let Some(f) = r.next()? {
        if f.number == 1 || f.number == 2 {
            if !f.is_len() {
                return Err(wrong(&f));
            }
            tensor(&mut r.sub(&f)?, w, scope)?;
        }
    }
    Ok(())
}

fn tensor(r: &mut Reader<'_, '_>, w: &mut Walk, scope: &str) -> Result<(), Error> {
    let mut name = String::new();
    let mut location: Option<(String, u64)> = None;
    let mut external = false;
    let start = r.pos();
    while let Some(f) = r.next()? {
        match f.number {
            8 | 9 | 13 if !f.is_len() => return Err(wrong(&f)),
            14 if f.varint().is_none() => return Err(wrong(&f)),
            8 => name = r.string(&f, MAX_NAME)?,
            14 => external = f.varint() == Some(1),
            13 => {
                let mut e = r.sub(&f)?;
                let (mut k, mut v) = (String::new(), String::new());
                while let Some(g) = e.next()? {
                    match g.number {
                        1 if g.is_len() => k = e.string(&g, 64)?,
                        2 if g.is_len() => v = full_string(&e, &g, "external data value")?,
                        _ => {}
                    }
                }
                if k == "location" {
                    location = Some((v, f.offset));
                }
            }
            _ => {}
        }
    }
    let what = format!("tensor {} ({scope})", quote(&excerpt(&name, 120)));
    match location {
        Some((loc, at)) => {
            if let Some((code, sev, why)) = judge_location(&loc) {
                // At most MAX_FINDINGS of each severity: a dangerous location is never crowded
                // out by suspicious ones.
                if w.findings.iter().filter(|f| f.severity == sev).count() >= MAX_FINDINGS {
                    return Ok(());
                }
                w.findings.push(
                    Finding::new(code, sev, format!("external data location {why}"))
                        .at(at)
                        .evidence(format!("{what}: location = {}", quote(&excerpt(&loc, 200)))),
                );
            }
        }
        None if external && w.findings.iter().filter(|f| f.code == "onnx-malformed").count() < MAX_FINDINGS => {
            w.findings.push(
                Finding::new("onnx-malformed", Severity::Error, "tensor stored externally has no location")
                    .at(start)
                    .evidence(what),
            )
        }
        None => {}
    }
    Ok(())
}

/// Classify an external data location: dangerous when it escapes the model directory.
pub fn judge_location(loc: &str) -> Option<(&'static str, Severity, &'static str)> {
    const D: (&str, Severity) = ("onnx-external-data-path", Severity::Dangerous);
    const S: (&str, Severity) = ("onnx-external-data-unusual", Severity::Suspicious);
    if loc.is_empty() {
        return Some(("onnx-malformed", Severity::Error, "is empty"));
    }
    let b = loc.as_bytes();
    if loc.starts_with('/') || loc.starts_with('\\') {
        return Some((D.0, D.1, "is an absolute path"));
    }
    if b.len() >= 2 && b.first().is_some_and(u8::is_ascii_alphabetic) && b.get(1) == Some(&b':') {
        return Some((D.0, D.1, "names a drive"));
    }
    if loc.contains("://") {
        return Some((D.0, D.1, "is a url"));
    }
    let mut depth: i64 = 0;
    let mut climbs = false;
    for part in loc.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                climbs = true;
                depth -= 1;
                if depth < 0 {
                    return Some((D.0, D.1, "leaves the model directory"));
                }
            }
            _ => depth += 1,
        }
    }
    if climbs {
        return Some((S.0, S.1, "uses '..'"));
    }
    if loc.chars().any(|c| c.is_control() || c == ':') {
        return Some((S.0, S.1, "holds control characters or ':'"));
    }
    None
}

/// A whole string field, or an error when it is longer than [`MAX_PATH`].
fn full_string(r: &Reader<'_, '_>, f: &Field, what: &str) -> Result<String, Error> {
    if let crate::formats::protobuf::Wire::Len { len, .. } = f.wire {
        if len > MAX_PATH {
            return Err(Error { offset: f.offset, what: format!("{what} of {len} bytes is too long to check") });
        }
    }
    r.string(f, MAX_PATH as usize)
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let code = |l: &str| judge_location(l).map(|x| x.0);
        assert_eq!(code("weights.bin"), None);
        assert_eq!(code("data/weights.bin"), None);
        assert_eq!(code("./w.bin"), None);
        assert_eq!(code("/etc/passwd"), Some("onnx-external-data-path"));
        assert_eq!(code("\\\\server\\share\\x"), Some("onnx-external-data-path"));
        assert_eq!(code("C:\\Windows\\win.ini"), Some("onnx-external-data-path"));
        assert_eq!(code("../secret"), Some("onnx-external-data-path"));
        assert_eq!(code("a/../../b"), Some("onnx-external-data-path"));
        assert_eq!(code("a\\..\\..\\b"), Some("onnx-external-data-path"));
        assert_eq!(code("file:///etc/passwd"), Some("onnx-external-data-path"));
        assert_eq!(code("a/../b"), Some("onnx-external-data-unusual"));
        assert_eq!(code(""), Some("onnx-malformed"));
    }

    #[test]
    fn domains() {
        assert!(standard_domain(""));
        assert!(standard_domain("ai.onnx.ml"));
        assert!(standard_domain("com.microsoft"));
        assert!(!standard_domain("my.custom"));
        assert!(!standard_domain("ai.onnxx"));
    }
}
