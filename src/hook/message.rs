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

/// Writes message lines to the pusher (hook stderr), prefixed for GitLab's web UI when needed.
pub struct Out<'a> {
    w: &'a mut dyn Write,
    prefix: &'static str,
}

impl<'a> Out<'a> {
    pub fn new(w: &'a mut dyn Write, gitlab: bool) -> Out<'a> {
        Out { w, prefix: if gitlab { "GL-HOOK-ERR: " } else { "" } }
    }

    /// One line; the whole line is escaped again, so nothing unescaped can slip through.
    pub fn line(&mut self, s: &str) {
        // A pusher that hung up must not turn into a hook failure of its own.
        let _ = writeln!(self.w, "{}{}", self.prefix, escape(s));
    }

    pub fn flush(&mut self) {
        let _ = self.w.flush();
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
    fn gitlab_prefix() {
        let mut buf = Vec::new();
        let mut o = Out::new(&mut buf, true);
        o.line("x\ny");
        assert_eq!(buf, b"GL-HOOK-ERR: x\\x0ay\n");
    }
}
