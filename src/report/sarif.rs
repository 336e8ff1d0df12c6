//! `--format sarif`: SARIF 2.1.0 for code-scanning dashboards.

use super::{Printer, Summary};
use crate::engine::FileReport;
use crate::finding::{all_codes, Severity};
use crate::policy::Decision;
use serde_json::{json, Value};
use std::io::{self, Write};

/// Where users learn about the tool (the package's repository, or its crates.io page).
const INFORMATION_URI: &str = {
    let repo = env!("CARGO_PKG_REPOSITORY");
    if repo.is_empty() {
        "https://crates.io/crates/modelgate"
    } else {
        repo
    }
};

/// SARIF `level` of a finding severity.
pub fn level(s: Severity) -> &'static str {
    match s {
        Severity::Dangerous | Severity::Error => "error",
        Severity::Suspicious => "warning",
        Severity::Info => "note",
    }
}

/// A relative path as a URI reference, or an absolute one as a `file://` URI.
pub fn uri(path: &str) -> String {
    let path = path.strip_prefix("./").unwrap_or(path);
    let mut out = String::with_capacity(path.len());
    if path.starts_with('/') {
        out.push_str("file://");
    }
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Collects results and writes one SARIF log at the end.
pub struct Sarif<W: Write> {
    out: W,
    results: Vec<Value>,
}

impl<W: Write> Sarif<W> {
    pub fn new(out: W) -> Self {
        Sarif { out, results: Vec::new() }
    }
}

impl<W: Write> Printer for Sarif<W> {
    fn file(&mut self, r: &FileReport, d: &Decision) -> io::Result<()> {
        let codes = all_codes();
        for (i, f) in r.findings.iter().enumerate() {
            let mut physical = json!({ "artifactLocation": { "uri": uri(&r.path) } });
            let mut text = f.message.clone();
            if let Some(e) = &f.evidence {
                text = format!("{text}: {e}");
            }
            let mut location = json!({});
            match &f.member {
                Some(m) => {
                    text = format!("{text} (in member {m})");
                    location["logicalLocations"] = json!([{ "fullyQualifiedName": m, "kind": "resource" }]);
                }
                None => {
                    if let Some(o) = f.offset {
                        physical["region"] = json!({ "byteOffset": o });
                    }
                }
            }
            location["physicalLocation"] = physical;
            let mut result = json!({
                "ruleId": f.code,
                "level": level(f.severity),
                "message": { "text": text },
                "locations": [location],
                "properties": {
                    "severity": f.severity.as_str(),
                    "member": f.member,
                    "offset": f.offset,
                    "evidence": f.evidence,
                    "verdict": d.verdict.as_str(),
                    "decision": d.action.as_str(),
                },
            });
            if let Some(idx) = codes.iter().position(|c| c.code == f.code) {
                result["ruleIndex"] = json!(idx);
            }
            if let Some(s) = d.suppressed.iter().find(|s| s.finding == i) {
                result["suppressions"] = json!([{ "kind": "external", "justification": s.reason }]);
            }
            self.results.push(result);
        }
        Ok(())
    }

    fn finish(&mut self, s: &Summary) -> io::Result<()> {
        let rules: Vec<Value> = all_codes()
            .into_iter()
            .map(|c| {
                json!({
                    "id": c.code,
                    "shortDescription": { "text": c.summary },
                    "help": { "text": c.fix },
                    "defaultConfiguration": { "level": level(c.severity) },
                    "properties": { "severity": c.severity.as_str() },
                })
            })
            .collect();
        let log = json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": { "driver": {
                    "name": "modelgate",
                    "version": env!("CARGO_PKG_VERSION"),
                    "informationUri": INFORMATION_URI,
                    "rules": rules,
                }},
                "results": std::mem::take(&mut self.results),
                "invocations": [{ "executionSuccessful": true, "exitCode": s.exit_code() }],
            }],
        });
        serde_json::to_writer_pretty(&mut self.out, &log)?;
        writeln!(self.out)?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_encoded() {
        assert_eq!(uri("./models/a b.pt"), "models/a%20b.pt");
        assert_eq!(uri("/abs/x#1"), "file:///abs/x%231");
        assert_eq!(uri("ü"), "%C3%BC");
    }

    #[test]
    fn levels() {
        assert_eq!(level(Severity::Dangerous), "error");
        assert_eq!(level(Severity::Error), "error");
        assert_eq!(level(Severity::Suspicious), "warning");
        assert_eq!(level(Severity::Info), "note");
    }
}
