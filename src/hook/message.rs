//! Lines for the pusher's terminal. Paths, ref names and evidence are attacker-chosen, so
//! control characters, terminal escapes and bidirectional overrides are shown escaped.

use std::io::Write;

/// Escape a string for one terminal line: control characters (C0, DEL, C1) and Unicode
/// bidi controls become `\xNN` / `\u{NNNN}`.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_char(&mut out, c);
    }
    out
}

/// [`escape`] for raw bytes (git paths need not be UTF-8): invalid bytes become `\xNN`.
pub fn escape_bytes(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_char(&mut out, c);
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

fn push_char(out: &mut String, c: char) {
    let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if c.is_control() && (c as u32) < 0x100 {
        out.push_str(&format!("\\x{:02x}", c as u32));
    } else if c.is_control() || bidi {
        out.push_str(&format!("\\u{{{:04x}}}", c as u32));
    } else {
        out.push(c);
    }
}

/// Message lines for the pusher (hook stderr). Lines are kept until [`Out::flush`], so that
/// the GitLab prefix `GL-HOOK-ERR: ` (which makes GitLab's web UI show a line as the reason a
/// push failed) is put only on the lines of a rejected push ([`Out::reject`]). Every line is
/// escaped, and server paths ([`Out::hide`]) are replaced, whatever produced the text.
pub struct Out<'a> {
    w: &'a mut dyn Write,
    gitlab: bool,
    rejected: bool,
    lines: Vec<String>,
    hidden: Vec<String>,
}

/// What a hidden server path is shown as.
pub const HIDDEN: &str = "<server path>";

impl<'a> Out<'a> {
    pub fn new(w: &'a mut dyn Write, gitlab: bool) -> Out<'a> {
        Out { w, gitlab, rejected: false, lines: Vec::new(), hidden: Vec::new() }
    }

    /// For a hook: the GitLab prefix when under GitLab, and the environment's server paths hidden.
    pub fn for_hook(w: &'a mut dyn Write, env: &super::HookEnv) -> Out<'a> {
        let mut o = Out::new(w, env.gitlab);
        o.hide(&env.hidden);
        o
    }

    /// Replace these strings (absolute server paths, longest first) in every line.
    pub fn hide(&mut self, paths: &[String]) {
        for p in paths {
            if !p.is_empty() && !self.hidden.contains(p) {
                self.hidden.push(p.clone());
            }
        }
        self.hidden.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// One line; the whole line is escaped again, so nothing unescaped can slip through.
    pub fn line(&mut self, s: &str) {
        let mut text = s.to_string();
        for h in &self.hidden {
            if text.contains(h.as_str()) {
                text = text.replace(h.as_str(), HIDDEN);
            }
        }
        self.lines.push(escape(&text));
    }

    /// The push is being rejected: under GitLab its lines carry `GL-HOOK-ERR: `.
    pub fn reject(&mut self) {
        self.rejected = true;
    }

    /// Write the lines kept so far.
    pub fn flush(&mut self) {
        let prefix = if self.gitlab && self.rejected { "GL-HOOK-ERR: " } else { "" };
        for l in self.lines.drain(..) {
            // A pusher that hung up must not turn into a hook failure of its own.
            let _ = writeln!(self.w, "{prefix}{l}");
        }
        let _ = self.w.flush();
    }
}

impl Drop for Out<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Advice for a rejected file, beyond the fixes of its findings: how to get it out of the
/// push (amend the commit that holds it, or rewrite history when it is in an earlier commit
/// than the pushed tip), and an allowlist entry only where one could help.
pub struct Advice<'a> {
    /// The file's path in the push (escaped), if it has one.
    pub path: Option<&'a str>,
    /// The commit that brought it (short id), if known.
    pub commit: Option<&'a str>,
    /// Whether that commit is the tip of the ref being pushed (else later commits follow it).
    pub at_tip: bool,
    pub verdict: crate::finding::Verdict,
    /// Allowlisting the file's imports would let it pass (it is suspicious only for imports
    /// outside the allowlist, and a safe file there would not be rejected).
    pub allowlist_helps: bool,
    /// The format was recognised as a model.
    pub model: bool,
    /// The blob id, for a pinned `[[allow]]` entry an admin could write.
    pub blob: &'a str,
    /// The rejection is about an LFS object (missing, mismatching) or the gate's own limits.
    pub not_content: bool,
}

impl Advice<'_> {
    /// The `fix:` lines.
    pub fn lines(&self) -> Vec<String> {
        use crate::finding::Verdict;
        let mut out = Vec::new();
        if self.model && !self.not_content {
            out.push("fix: convert the model to safetensors (loading it runs no code)".to_string());
        }
        if self.allowlist_helps {
            out.push(
                "fix: if the imports above are your own reviewed code, ask an admin to allowlist them \
                 (`[[allow]] name = \"module.Class\"`)"
                    .to_string(),
            );
        }
        if self.verdict == Verdict::Dangerous {
            out.push(format!(
                "fix: if this exact file is a deliberate test fixture, an admin can pin an exception to its content \
                 (`[[allow]] blob = \"{}\"` with a reason)",
                self.blob
            ));
        }
        if let Some(path) = self.path.filter(|p| !p.is_empty()) {
            let q = shell_quote(path);
            match (self.commit, self.at_tip) {
                (Some(c), false) => {
                    out.push(format!(
                        "fix: the file is in commit {c}, which later commits build on: deleting it in a new commit \
                         leaves it in history, and the push still carries it"
                    ));
                    out.push(format!(
                        "fix: remove it from history: `git rebase -i {c}~1` (mark {c} `edit`, then `git rm --cached {q}` \
                         and `git commit --amend`), or `git filter-repo --path {q} --invert-paths`; then push again"
                    ));
                }
                (Some(_), true) => out.push(format!(
                    "fix: to push without it: `git rm --cached {q}`, `git commit --amend`, then push again"
                )),
                (None, _) => {}
            }
        }
        out
    }
}

/// Quote a path for a shell command line shown to the pusher.
fn shell_quote(p: &str) -> String {
    if !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+@%,".contains(c)) {
        p.to_string()
    } else {
        format!("'{}'", p.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_terminal_controls() {
        assert_eq!(escape("a\x1b[31mb\nc\rd\x7f"), "a\\x1b[31mb\\x0ac\\x0dd\\x7f");
        assert_eq!(escape("\u{9b}x\u{202e}gpj.exe"), "\\x9bx\\u{202e}gpj.exe");
        assert_eq!(escape("plain/path ünïcode.pkl"), "plain/path ünïcode.pkl");
        assert_eq!(escape_bytes(b"bad\xffname\x07"), "bad\\xffname\\x07");
        // Escaping is idempotent on its own output.
        let once = escape_bytes(b"\x1b]0;title\x07");
        assert_eq!(escape(&once), once);
    }

    #[test]
    fn gitlab_prefix_only_on_rejections() {
        let mut buf = Vec::new();
        let mut o = Out::new(&mut buf, true);
        o.line("x\ny");
        o.reject();
        o.flush();
        drop(o);
        assert_eq!(buf, b"GL-HOOK-ERR: x\\x0ay\n");
        let mut buf = Vec::new();
        let mut o = Out::new(&mut buf, true);
        o.line("warning: tagged");
        drop(o);
        assert_eq!(buf, b"warning: tagged\n");
    }

    #[test]
    fn server_paths_are_hidden() {
        let mut buf = Vec::new();
        let mut o = Out::new(&mut buf, false);
        o.hide(&["/srv/git".to_string(), "/srv/git/x.git".to_string()]);
        o.line("cannot open repository /srv/git/x.git: gone; also /srv/git/y");
        drop(o);
        assert_eq!(show(&buf), "cannot open repository <server path>: gone; also <server path>/y\n");
    }

    fn show(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    #[test]
    fn history_advice() {
        use crate::finding::Verdict;
        let a = Advice {
            path: Some("models/evil.pkl"),
            commit: Some("abc1234"),
            at_tip: false,
            verdict: Verdict::Dangerous,
            allowlist_helps: false,
            model: true,
            blob: "b0",
            not_content: false,
        };
        let l = a.lines().join("\n");
        assert!(
            l.contains("git rebase -i abc1234~1")
                && l.contains("git filter-repo --path models/evil.pkl --invert-paths"),
            "{l}"
        );
        assert!(!l.contains("allowlist"), "{l}");
        let tip = Advice { at_tip: true, path: Some("a b.pkl"), ..a };
        let l = tip.lines().join("\n");
        assert!(l.contains("git rm --cached 'a b.pkl'") && !l.contains("rebase"), "{l}");
        let sus = Advice { verdict: Verdict::Suspicious, allowlist_helps: true, ..tip };
        assert!(sus.lines().join("\n").contains("allowlist them"));
        assert!(!sus.lines().join("\n").contains("[[allow]] blob"), "no content pin for a suspicious file");
    }
}
