//! Output: printers render finished files and never decide anything.
//!
//! The scan pushes each `(FileReport, Decision)` into a [`Printer`] in output order, then
//! calls [`Printer::finish`] with the [`Summary`]. The exit code is decided in one place,
//! [`exit_code`].

pub mod human;
pub mod json;
pub mod sarif;

use crate::engine::FileReport;
use crate::finding::{Finding, Verdict};
use crate::policy::{Action, Decision};
use std::borrow::Cow;
use std::fmt::Write as _;
use std::io;

/// Exit code when no file is rejected.
pub const EXIT_OK: i32 = 0;
/// Exit code when at least one file is rejected.
pub const EXIT_REJECT: i32 = 1;
/// Exit code when modelgate cannot run (bad arguments, invalid policy, unwritable output).
pub const EXIT_CANNOT_RUN: i32 = 2;

/// A sink for finished files.
pub trait Printer {
    /// One finished file; files arrive in output (path) order.
    fn file(&mut self, report: &FileReport, decision: &Decision) -> io::Result<()>;
    /// After the last file.
    fn finish(&mut self, summary: &Summary) -> io::Result<()>;
}

/// Counts over a scan, per verdict (after exceptions) and per action.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub files: u64,
    /// Files left out by `scan --exclude` (not in `files`).
    pub excluded: u64,
    verdicts: [u64; 5],
    actions: [u64; 3],
}

impl Summary {
    pub fn add(&mut self, decision: &Decision) {
        self.files += 1;
        if let Some(n) = Verdict::ALL.iter().position(|v| *v == decision.verdict).and_then(|i| self.verdicts.get_mut(i))
        {
            *n += 1;
        }
        if let Some(n) = Action::ALL.iter().position(|a| *a == decision.action).and_then(|i| self.actions.get_mut(i)) {
            *n += 1;
        }
    }

    pub fn verdict(&self, v: Verdict) -> u64 {
        Verdict::ALL.iter().position(|x| *x == v).and_then(|i| self.verdicts.get(i)).copied().unwrap_or(0)
    }

    pub fn action(&self, a: Action) -> u64 {
        Action::ALL.iter().position(|x| *x == a).and_then(|i| self.actions.get(i)).copied().unwrap_or(0)
    }

    pub fn exit_code(&self) -> i32 {
        exit_code(self)
    }
}

/// The exit code of a completed scan: 1 when any file's decision is `reject`, else 0.
/// The verdicts behind the decisions do not matter here: a dangerous file next to an
/// unreadable one is rejected either way, so no error can hide it.
pub fn exit_code(summary: &Summary) -> i32 {
    if summary.action(Action::Reject) > 0 {
        EXIT_REJECT
    } else {
        EXIT_OK
    }
}

/// The findings a decision kept, in report order, with their index.
pub fn active_findings<'a>(report: &'a FileReport, decision: &'a Decision) -> impl Iterator<Item = &'a Finding> + 'a {
    report.findings.iter().enumerate().filter(|(i, _)| !decision.is_suppressed(*i)).map(|(_, f)| f)
}

/// The most severe finding a decision kept (the first of equals).
pub fn worst_active<'a>(report: &'a FileReport, decision: &'a Decision) -> Option<&'a Finding> {
    active_findings(report, decision).fold(None, |best: Option<&Finding>, f| match best {
        Some(b) if b.severity >= f.severity => Some(b),
        _ => Some(f),
    })
}

/// Make untrusted text safe for a terminal or a log: control characters (escape sequences,
/// carriage returns, ...) and bidirectional overrides are shown as `\xNN` / `\u{NNNN}`.
pub fn escape(s: &str) -> Cow<'_, str> {
    let bad = |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !bad(c) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:04x}}}", c as u32);
        }
    }
    Cow::Owned(out)
}

/// `member@0xoffset`, `member`, `@0xoffset` or empty.
pub fn location(f: &Finding) -> String {
    match (&f.member, f.offset) {
        (Some(m), Some(o)) => format!("{}@{:#x}", escape(m), o),
        (Some(m), None) => escape(m).into_owned(),
        (None, Some(o)) => format!("@{o:#x}"),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Suppressed;

    fn decision(verdict: Verdict, action: Action) -> Decision {
        Decision { action, verdict, rule: None, suppressed: Vec::new(), allowed: None }
    }

    fn summary(items: &[(Verdict, Action)]) -> Summary {
        let mut s = Summary::default();
        for (v, a) in items {
            s.add(&decision(*v, *a));
        }
        s
    }

    #[test]
    fn exit_codes() {
        use Action::*;
        use Verdict::*;
        assert_eq!(exit_code(&summary(&[])), 0);
        assert_eq!(exit_code(&summary(&[(Safe, Allow), (Unsupported, Allow)])), 0);
        assert_eq!(exit_code(&summary(&[(Suspicious, Tag)])), 0, "tag only passes");
        assert_eq!(exit_code(&summary(&[(Error, Reject)])), 1, "error only fails closed");
        assert_eq!(exit_code(&summary(&[(Dangerous, Reject), (Error, Reject)])), 1, "dangerous + error");
        assert_eq!(exit_code(&summary(&[(Error, Reject), (Dangerous, Reject), (Safe, Allow)])), 1);
        assert_eq!(exit_code(&summary(&[(Safe, Allow), (Suspicious, Tag), (Dangerous, Reject)])), 1);
        assert_eq!(exit_code(&summary(&[(Suspicious, Reject)])), 1, "a rule can make suspicious reject");
        assert_eq!(exit_code(&summary(&[(Dangerous, Tag)])), 0, "the policy decides, the exit code follows");
    }

    #[test]
    fn summary_counts() {
        let s = summary(&[(Verdict::Dangerous, Action::Reject), (Verdict::Safe, Action::Allow)]);
        assert_eq!(s.files, 2);
        assert_eq!(s.verdict(Verdict::Dangerous), 1);
        assert_eq!(s.verdict(Verdict::Error), 0);
        assert_eq!(s.action(Action::Allow), 1);
        assert_eq!(s.exit_code(), 1);
    }

    #[test]
    fn escapes_control_characters() {
        assert_eq!(escape("model.pt"), "model.pt");
        assert_eq!(escape("a\x1b[31mb\r\n"), "a\\x1b[31mb\\x0d\\x0a");
        assert_eq!(escape("x\u{202e}y\u{9b}"), "x\\u{202e}y\\u{009b}");
    }

    #[test]
    fn worst_skips_suppressed() {
        use crate::finding::Severity;
        let r = FileReport {
            path: "p".into(),
            format: "pickle".into(),
            verdict: Verdict::Dangerous,
            size: 0,
            imports: Vec::new(),
            findings: vec![
                Finding::new("a", Severity::Suspicious, "s"),
                Finding::new("b", Severity::Dangerous, "d").member("m").at(42),
            ],
        };
        let mut d = decision(Verdict::Dangerous, Action::Reject);
        assert_eq!(worst_active(&r, &d).map(|f| f.code), Some("b"));
        assert_eq!(location(&r.findings[1]), "m@0x2a");
        d.suppressed.push(Suppressed { finding: 1, exception: 0, reason: "r".into() });
        assert_eq!(worst_active(&r, &d).map(|f| f.code), Some("a"));
    }
}
