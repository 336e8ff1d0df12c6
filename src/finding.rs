//! Findings: the facts a scan produces, each with a stable code.
//!
//! Codes are API: users write policy against them. Every code lives in exactly one
//! module's `CODES` table; [`all_codes`] gathers them and a test asserts uniqueness.

use serde::Serialize;
use std::fmt;

/// How bad a finding is. The order matters: a file's verdict is taken from its worst
/// finding, and `Dangerous` outranks `Error` everywhere ("error never masks malice").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth showing, never changes a verdict.
    Info,
    /// Outside what benign models contain, but no known way to run code.
    Suspicious,
    /// The file could not be fully judged (unreadable, budget exhausted, unsupported member).
    Error,
    /// Runs code, or is built to evade a scanner.
    Dangerous,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Suspicious => "suspicious",
            Severity::Error => "error",
            Severity::Dangerous => "dangerous",
        }
    }
}

/// The judgement on one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Not a model format modelgate knows; nothing in it is loaded as code by ML loaders.
    Unsupported,
    /// A model whose every import is allowlisted and which has no finding above `info`.
    Safe,
    /// Imports outside the allowlist (or other suspicious facts), nothing known dangerous.
    Suspicious,
    /// The file could not be judged (unreadable, budget exhausted, ...).
    Error,
    /// Something that runs code on load, or an evasion of scanners.
    Dangerous,
}

impl Verdict {
    pub const ALL: [Verdict; 5] =
        [Verdict::Safe, Verdict::Suspicious, Verdict::Dangerous, Verdict::Unsupported, Verdict::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Unsupported => "unsupported",
            Verdict::Safe => "safe",
            Verdict::Suspicious => "suspicious",
            Verdict::Error => "error",
            Verdict::Dangerous => "dangerous",
        }
    }

    pub fn parse(s: &str) -> Option<Verdict> {
        Verdict::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The verdict of a file of a known model format with these findings.
    pub fn from_findings<'a>(findings: impl IntoIterator<Item = &'a Finding>, model: bool) -> Verdict {
        Verdict::from_worst(findings.into_iter().map(|f| f.severity).max(), model)
    }

    /// The verdict for the most severe finding (`None`: no finding at all).
    pub fn from_worst(worst: Option<Severity>, model: bool) -> Verdict {
        match worst {
            Some(Severity::Dangerous) => Verdict::Dangerous,
            Some(Severity::Error) => Verdict::Error,
            Some(Severity::Suspicious) => Verdict::Suspicious,
            _ if model => Verdict::Safe,
            _ => Verdict::Unsupported,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stable finding code with its one-line description (`modelgate explain CODE`).
#[derive(Debug, Clone, Copy)]
pub struct CodeInfo {
    /// Kebab-case, stable across releases.
    pub code: &'static str,
    /// The severity this code usually carries (a parser may raise or lower it per finding).
    pub severity: Severity,
    /// One line, lower-case start, no trailing period.
    pub summary: &'static str,
    /// What a user should do about it.
    pub fix: &'static str,
}

/// One fact about a scanned file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    /// Path of the archive member (`archive/data.pkl`, nested with `!`), if inside a container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// Byte offset in the member (or file) where the fact was seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Reconstructed call or excerpt, e.g. `os.system('echo pwned')`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
}

impl Finding {
    pub fn new(code: &'static str, severity: Severity, message: impl Into<String>) -> Finding {
        Finding { code, severity, message: message.into(), member: None, offset: None, evidence: None }
    }

    pub fn at(mut self, offset: u64) -> Finding {
        self.offset = Some(offset);
        self
    }

    pub fn evidence(mut self, evidence: impl Into<String>) -> Finding {
        self.evidence = Some(evidence.into());
        self
    }

    pub fn member(mut self, member: impl Into<String>) -> Finding {
        self.member = Some(member.into());
        self
    }

    /// Prefix the member path with the container member this finding was found in.
    pub fn nest(mut self, outer: &str) -> Finding {
        self.member = Some(match self.member.take() {
            Some(inner) => format!("{outer}!{inner}"),
            None => outer.to_string(),
        });
        self
    }
}

/// Every finding code of every module.
pub fn all_codes() -> Vec<&'static CodeInfo> {
    crate::CODE_TABLES.iter().flat_map(|t| t.iter()).collect()
}

/// Look up a code's description.
pub fn code_info(code: &str) -> Option<&'static CodeInfo> {
    all_codes().into_iter().find(|c| c.code == code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_kebab_case() {
        let mut seen = HashSet::new();
        for c in all_codes() {
            assert!(seen.insert(c.code), "duplicate code {}", c.code);
            assert!(
                c.code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "code {} is not kebab-case",
                c.code
            );
            assert!(!c.summary.is_empty() && !c.summary.ends_with('.'), "{}", c.code);
            assert!(!c.fix.is_empty(), "{} has no fix text", c.code);
        }
        assert!(seen.len() > 10);
    }

    #[test]
    fn dangerous_outranks_error() {
        let f = [
            Finding::new("a", Severity::Error, "x"),
            Finding::new("b", Severity::Dangerous, "y"),
            Finding::new("c", Severity::Suspicious, "z"),
        ];
        assert_eq!(Verdict::from_findings(&f, true), Verdict::Dangerous);
        assert_eq!(Verdict::from_findings(&f[..1], true), Verdict::Error);
        assert_eq!(Verdict::from_findings(&[], false), Verdict::Unsupported);
        assert_eq!(Verdict::from_findings(&[], true), Verdict::Safe);
    }
}

/// One name a pickle imports (what `find_class` would be asked for).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Import {
    /// Module after CPython's protocol < 3 name mapping (`__builtin__` -> `builtins`).
    pub module: String,
    /// Attribute name, possibly dotted (protocol >= 4 resolves each component).
    pub name: String,
    /// The names as written in the stream, when the mapping changed them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<(String, String)>,
    /// Opcode that made the import (`GLOBAL`, `STACK_GLOBAL`, `INST`, `EXT1`, ...).
    pub opcode: &'static str,
    pub offset: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// The first reconstructed call that uses it, e.g. `os.system('echo pwned')`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
}

impl Import {
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.module, self.name)
    }
}

/// How a member handed back by a container should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// Detect by content; headerless (protocol 0/1) pickles are probed too.
    Sniff,
    /// The loader reads this member as a pickle whatever it looks like.
    Pickle,
    /// Raw tensor bytes the loader never interprets: only unmistakable magic is checked.
    RawData,
}
