//! Human output: one line per file, a summary line on stderr.

use super::{active_findings, escape, location, worst_active, Printer, Summary};
use crate::engine::FileReport;
use crate::finding::Verdict;
use crate::policy::{Action, Decision};
use std::io::{self, Write};

/// Prints `VERDICT action path [format] code member@offset: evidence` per file.
pub struct Human<W: Write, E: Write> {
    out: W,
    err: E,
    /// ANSI colours on the verdict (the caller checks the tty and `NO_COLOR`).
    pub color: bool,
    /// Every finding, suppressed ones and the deciding rule too.
    pub verbose: bool,
    /// `path: module.name, ...` instead of verdict lines.
    pub list_imports: bool,
}

impl<W: Write, E: Write> Human<W, E> {
    pub fn new(out: W, err: E) -> Self {
        Human { out, err, color: false, verbose: false, list_imports: false }
    }

    fn paint(&self, text: &str, verdict: Verdict) -> String {
        if !self.color {
            return text.to_string();
        }
        let code = match verdict {
            Verdict::Dangerous => "1;31",
            Verdict::Error => "1;35",
            Verdict::Suspicious => "1;33",
            Verdict::Safe => "32",
            Verdict::Unsupported => "2",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

impl<W: Write, E: Write> Printer for Human<W, E> {
    fn file(&mut self, r: &FileReport, d: &Decision) -> io::Result<()> {
        let path = escape(&r.path);
        if self.list_imports {
            let names = r.import_names();
            let list =
                if names.is_empty() { "(no imports)".to_string() } else { escape(&names.join(", ")).into_owned() };
            return writeln!(self.out, "{path}: {list}");
        }
        let verdict = self.paint(&format!("{:<11}", d.verdict.as_str().to_uppercase()), d.verdict);
        let mut line = format!("{verdict} {:<6} {path} [{}]", d.action.as_str(), escape(&r.format));
        if let Some(f) = worst_active(r, d) {
            let loc = location(f);
            let text = escape(f.evidence.as_deref().unwrap_or(&f.message));
            line.push(' ');
            line.push_str(f.code);
            if !loc.is_empty() {
                line.push(' ');
                line.push_str(&loc);
            }
            line.push_str(": ");
            line.push_str(&text);
        }
        writeln!(self.out, "{}", line.trim_end())?;
        if !self.verbose {
            return Ok(());
        }
        for f in active_findings(r, d) {
            let loc = location(f);
            let sep = if loc.is_empty() { "" } else { " " };
            write!(self.out, "    {:<10} {}{sep}{loc}: {}", f.severity.as_str(), f.code, escape(&f.message))?;
            match &f.evidence {
                Some(e) => writeln!(self.out, " | {}", escape(e))?,
                None => writeln!(self.out)?,
            }
        }
        for s in &d.suppressed {
            if let Some(f) = r.findings.get(s.finding) {
                let loc = location(f);
                let sep = if loc.is_empty() { "" } else { " " };
                writeln!(
                    self.out,
                    "    {:<10} {}{sep}{loc}: {} (ignored: {})",
                    "ignored",
                    f.code,
                    escape(&f.message),
                    s.reason
                )?;
            }
        }
        if let Some(rule) = &d.rule {
            writeln!(self.out, "    rule at line {}: {}", rule.line, rule.reason)?;
        }
        if let Some(a) = &d.allowed {
            writeln!(self.out, "    allowed by the [[allow]] entry at line {} ({}): {}", a.line, a.pin, a.reason)?;
        }
        Ok(())
    }

    fn finish(&mut self, s: &Summary) -> io::Result<()> {
        self.out.flush()?;
        let verdicts: Vec<String> =
            [Verdict::Dangerous, Verdict::Error, Verdict::Suspicious, Verdict::Safe, Verdict::Unsupported]
                .into_iter()
                .map(|v| format!("{} {v}", s.verdict(v)))
                .collect();
        let n = s.files;
        let excluded = if s.excluded > 0 { format!("; {} excluded", s.excluded) } else { String::new() };
        writeln!(
            self.err,
            "{n} file{}: {}; {} rejected, {} tagged, {} allowed{excluded}",
            if n == 1 { "" } else { "s" },
            verdicts.join(", "),
            s.action(Action::Reject),
            s.action(Action::Tag),
            s.action(Action::Allow),
        )?;
        self.err.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::{Finding, Severity};
    use crate::policy::Suppressed;

    fn report() -> FileReport {
        FileReport {
            path: "model.pt".into(),
            format: "pytorch".into(),
            verdict: Verdict::Dangerous,
            size: 10,
            imports: Vec::new(),
            findings: vec![
                Finding::new("x-suspicious", Severity::Suspicious, "odd import"),
                Finding::new("pickle-import-dangerous", Severity::Dangerous, "calls os.system")
                    .member("archive/data.pkl")
                    .at(0x2a)
                    .evidence("os.system('echo pwned')"),
            ],
        }
    }

    fn render(r: &FileReport, d: &Decision, verbose: bool) -> (String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut p = Human::new(&mut out, &mut err);
        p.verbose = verbose;
        p.file(r, d).unwrap();
        let mut s = Summary::default();
        s.add(d);
        p.finish(&s).unwrap();
        (String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }

    #[test]
    fn one_line_with_the_worst_finding() {
        let d = Decision {
            action: Action::Reject,
            verdict: Verdict::Dangerous,
            rule: None,
            suppressed: vec![],
            allowed: None,
        };
        let (out, err) = render(&report(), &d, false);
        assert_eq!(
            out,
            "DANGEROUS   reject model.pt [pytorch] pickle-import-dangerous archive/data.pkl@0x2a: os.system('echo pwned')\n"
        );
        assert_eq!(
            err,
            "1 file: 1 dangerous, 0 error, 0 suspicious, 0 safe, 0 unsupported; 1 rejected, 0 tagged, 0 allowed\n"
        );
    }

    #[test]
    fn verbose_lists_every_finding_and_suppressions() {
        let d = Decision {
            action: Action::Tag,
            verdict: Verdict::Suspicious,
            rule: None,
            suppressed: vec![Suppressed { finding: 1, exception: 0, reason: "known".into() }],
            allowed: None,
        };
        let (out, _) = render(&report(), &d, true);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("SUSPICIOUS  tag    model.pt [pytorch] x-suspicious: odd import"));
        assert!(lines[1].contains("suspicious x-suspicious: odd import"));
        assert!(lines[2].contains("ignored") && lines[2].contains("(ignored: known)"));
    }

    #[test]
    fn colour_only_on_the_verdict() {
        let d =
            Decision { action: Action::Allow, verdict: Verdict::Safe, rule: None, suppressed: vec![], allowed: None };
        let mut r = report();
        r.findings.clear();
        let mut out = Vec::new();
        let mut p = Human::new(&mut out, Vec::new());
        p.color = true;
        p.file(&r, &d).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "\x1b[32mSAFE       \x1b[0m allow  model.pt [pytorch]\n");
    }
}
