//! `--format json`: one JSON document on stdout, a stable interface (see README).
//!
//! The output structs below ARE the schema: internal types never leak into it, so engine
//! changes cannot silently change the document. Every key is always present (`null` when
//! absent); keys may be added in later versions, never removed or renamed.

use super::{active_findings, Printer, Summary};
use crate::engine::FileReport;
use crate::finding::Verdict;
use crate::policy::{Action, Decision};
use serde::Serialize;
use std::io::{self, Write};

/// The whole document.
#[derive(Debug, Serialize)]
pub struct Document {
    /// modelgate version.
    pub modelgate: &'static str,
    pub files: Vec<File>,
    pub summary: SummaryOut,
}

/// One scanned file.
#[derive(Debug, Serialize)]
pub struct File {
    pub path: String,
    pub format: String,
    /// `safe | suspicious | dangerous | unsupported | error`, after policy exceptions.
    pub verdict: &'static str,
    /// `allow | tag | reject`.
    pub decision: &'static str,
    pub size: u64,
    /// Unique `module.name` imports in first-seen order.
    pub imports: Vec<String>,
    /// Findings after policy exceptions.
    pub findings: Vec<FindingOut>,
    /// The first matching policy rule that sets the decision, `null` when only `[actions]` did.
    pub rule: Option<RuleOut>,
    /// The `[[allow]]` entry pinned to this file's content that allowed it, `null` otherwise.
    pub allowed_by: Option<RuleOut>,
}

#[derive(Debug, Serialize)]
pub struct FindingOut {
    pub code: &'static str,
    /// `info | suspicious | error | dangerous`.
    pub severity: &'static str,
    pub message: String,
    pub member: Option<String>,
    pub offset: Option<u64>,
    pub evidence: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RuleOut {
    /// Line of the `[[rule]]` in the policy file.
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct SummaryOut {
    pub files: u64,
    /// Files left out by `--exclude`.
    pub excluded: u64,
    pub safe: u64,
    pub suspicious: u64,
    pub dangerous: u64,
    pub unsupported: u64,
    pub error: u64,
    pub allow: u64,
    pub tag: u64,
    pub reject: u64,
    pub exit_code: i32,
}

impl File {
    pub fn new(r: &FileReport, d: &Decision) -> File {
        File {
            path: r.path.clone(),
            format: r.format.clone(),
            verdict: d.verdict.as_str(),
            decision: d.action.as_str(),
            size: r.size,
            imports: r.import_names(),
            findings: active_findings(r, d)
                .map(|f| FindingOut {
                    code: f.code,
                    severity: f.severity.as_str(),
                    message: f.message.clone(),
                    member: f.member.clone(),
                    offset: f.offset,
                    evidence: f.evidence.clone(),
                })
                .collect(),
            rule: d.rule.as_ref().map(|m| RuleOut { line: m.line, reason: m.reason.clone() }),
            allowed_by: d.allowed.as_ref().map(|m| RuleOut { line: m.line, reason: m.reason.clone() }),
        }
    }
}

impl SummaryOut {
    pub fn new(s: &Summary) -> SummaryOut {
        SummaryOut {
            files: s.files,
            excluded: s.excluded,
            safe: s.verdict(Verdict::Safe),
            suspicious: s.verdict(Verdict::Suspicious),
            dangerous: s.verdict(Verdict::Dangerous),
            unsupported: s.verdict(Verdict::Unsupported),
            error: s.verdict(Verdict::Error),
            allow: s.action(Action::Allow),
            tag: s.action(Action::Tag),
            reject: s.action(Action::Reject),
            exit_code: s.exit_code(),
        }
    }
}

/// Collects files and writes the document at the end.
pub struct Json<W: Write> {
    out: W,
    files: Vec<File>,
}

impl<W: Write> Json<W> {
    pub fn new(out: W) -> Self {
        Json { out, files: Vec::new() }
    }
}

impl<W: Write> Printer for Json<W> {
    fn file(&mut self, r: &FileReport, d: &Decision) -> io::Result<()> {
        self.files.push(File::new(r, d));
        Ok(())
    }

    fn finish(&mut self, s: &Summary) -> io::Result<()> {
        let doc = Document {
            modelgate: env!("CARGO_PKG_VERSION"),
            files: std::mem::take(&mut self.files),
            summary: SummaryOut::new(s),
        };
        serde_json::to_writer_pretty(&mut self.out, &doc)?;
        writeln!(self.out)?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::{Finding, Severity};

    #[test]
    fn absent_keys_are_null() {
        let r = FileReport {
            path: "a".into(),
            format: "pickle".into(),
            verdict: Verdict::Error,
            size: 3,
            imports: Vec::new(),
            findings: vec![Finding::new("read-error", Severity::Error, "m")],
        };
        let d =
            Decision { action: Action::Reject, verdict: Verdict::Error, rule: None, suppressed: vec![], allowed: None };
        let mut out = Vec::new();
        let mut p = Json::new(&mut out);
        p.file(&r, &d).unwrap();
        let mut s = Summary::default();
        s.add(&d);
        p.finish(&s).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let f = &v["files"][0]["findings"][0];
        assert!(f["member"].is_null() && f["offset"].is_null() && f["evidence"].is_null());
        assert_eq!(f.as_object().unwrap().len(), 6);
        assert_eq!(v["summary"]["exit_code"], 1);
        assert!(v["files"][0]["rule"].is_null());
    }
}
