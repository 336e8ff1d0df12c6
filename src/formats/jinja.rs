//! Jinja2 chat templates (WIP).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub const CODES: &[crate::finding::CodeInfo] = &[];

/// A printable excerpt of `s`: control characters escaped, at most `max` characters.
pub fn excerpt(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n >= max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// WIP
pub fn scan_tokenizer_config(_scan: &mut crate::engine::Scan<'_>, _v: &serde_json::Value) -> bool {
    false
}
