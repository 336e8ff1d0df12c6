//! The HTML report of an audit: one self-contained file, no network, no external script,
//! style or font. A summary at the top (counts by verdict and decision, a bar of formats),
//! then per repository its files as the Hugging Face Hub lists them: path, size, format, a
//! verdict badge, the decision and what decided it, the detected imports, the findings with
//! their evidence, and a filter box.
//!
//! Everything taken from a repository (names, paths, refs, imports, evidence, messages) is
//! shown as text: control and bidirectional characters escaped as modelgate escapes them in a
//! terminal, then HTML-escaped (`& < > " '`), in element content and in quoted attributes
//! alike. No repository text is ever put into the script, a URL or a style. The page's
//! Content-Security-Policy allows only its own inline script (by hash) and inline styles,
//! and no connection at all, so even a mistake here could neither run a script nor load
//! anything.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use crate::audit::records::{Block, FileRecord, Summary};
use std::fmt::Write as _;

/// The filter box's script: reads only the page's own elements and the URL fragment (a
/// filter in a link), writes only `hidden`, form values and one text node (`textContent`).
const SCRIPT: &str = r#"(function () {
  var q = document.getElementById('filter');
  var v = document.getElementById('verdict');
  var d = document.getElementById('decision');
  var shown = document.getElementById('shown');
  var rows = Array.prototype.slice.call(document.querySelectorAll('tr.file'));
  var texts = rows.map(function (r) { return (r.getAttribute('data-repo') + ' ' + r.textContent).toLowerCase(); });
  var sections = Array.prototype.slice.call(document.querySelectorAll('section.repo'));
  function apply() {
    var t = q.value.toLowerCase().trim(), vv = v.value, dv = d.value, n = 0;
    rows.forEach(function (r, i) {
      var ok = (!t || texts[i].indexOf(t) >= 0) &&
        (!vv || r.getAttribute('data-verdict') === vv) &&
        (!dv || r.getAttribute('data-decision') === dv);
      r.hidden = !ok;
      if (ok) { n++; }
    });
    var filtering = !!(t || vv || dv);
    sections.forEach(function (s) {
      s.hidden = filtering && s.querySelectorAll('tr.file:not([hidden])').length === 0;
    });
    shown.textContent = n + ' of ' + rows.length + ' files shown';
  }
  // A link may carry the filter: report.html#q=os.system&verdict=dangerous&decision=reject
  (location.hash || '').slice(1).split('&').forEach(function (kv) {
    var i = kv.indexOf('=');
    if (i < 0) { return; }
    var val;
    try { val = decodeURIComponent(kv.slice(i + 1).replace(/\+/g, ' ')); } catch (e) { return; }
    var k = kv.slice(0, i);
    if (k === 'q') { q.value = val; } else if (k === 'verdict') { v.value = val; } else if (k === 'decision') { d.value = val; }
  });
  q.addEventListener('input', apply);
  v.addEventListener('change', apply);
  d.addEventListener('change', apply);
  apply();
})();"#;

const STYLE: &str = r#"
:root { --fg: #1f2328; --muted: #656d76; --line: #d0d7de; --bg: #f6f8fa; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); margin: 0 auto; max-width: 1200px; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 0; word-break: break-all; }
.muted, .meta { color: var(--muted); font-size: 12px; }
.cards { display: flex; flex-wrap: wrap; gap: 8px; margin: 16px 0 8px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 8px 12px; min-width: 92px; background: #fff; }
.card .n { font-size: 20px; font-weight: 600; display: block; }
.card .l { color: var(--muted); font-size: 12px; }
.bar { display: flex; height: 14px; border-radius: 7px; overflow: hidden; border: 1px solid var(--line); margin: 12px 0 6px; }
.bar span { display: block; height: 100%; }
.legend { list-style: none; padding: 0; margin: 0 0 16px; display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 12px; }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; vertical-align: -1px; }
.filters { position: sticky; top: 0; background: #fff; padding: 8px 0; border-bottom: 1px solid var(--line); display: flex; gap: 8px; align-items: center; z-index: 1; }
.filters input { flex: 1; padding: 6px 8px; border: 1px solid var(--line); border-radius: 6px; font: inherit; }
.filters select { padding: 5px; border: 1px solid var(--line); border-radius: 6px; font: inherit; }
section.repo { border: 1px solid var(--line); border-radius: 8px; margin: 16px 0; overflow: hidden; }
section.repo > header { background: var(--bg); padding: 10px 12px; border-bottom: 1px solid var(--line); }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: 6px 10px; border-top: 1px solid var(--line); }
th { font-size: 12px; color: var(--muted); font-weight: 600; border-top: 0; }
td.path { word-break: break-all; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; }
td.size { white-space: nowrap; color: var(--muted); }
.badge { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px; font-weight: 600; white-space: nowrap; border: 1px solid transparent; }
.v-safe { background: #dafbe1; color: #116329; } .v-suspicious { background: #fff8c5; color: #7d4e00; }
.v-dangerous { background: #ffebe9; color: #a40e26; border-color: #ff8182; } .v-error { background: #ffe2cc; color: #953800; }
.v-unsupported { background: #eaeef2; color: #57606a; }
.d-reject { color: #a40e26; font-weight: 600; } .d-tag { color: #7d4e00; font-weight: 600; } .d-allow { color: #116329; }
details summary { cursor: pointer; color: var(--muted); font-size: 12px; }
ul.plain { margin: 4px 0; padding-left: 16px; } code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
pre { white-space: pre-wrap; word-break: break-all; background: var(--bg); padding: 4px 6px; border-radius: 4px; margin: 2px 0; }
.sev-dangerous { color: #a40e26; } .sev-error { color: #953800; } .sev-suspicious { color: #7d4e00; } .sev-info { color: var(--muted); }
.failed { border: 1px solid #ff8182; background: #ffebe9; border-radius: 8px; padding: 8px 12px; margin: 8px 0; }
.empty { padding: 10px 12px; color: var(--muted); }
"#;

/// Colours of the formats bar, by rank.
const PALETTE: &[&str] =
    &["#0969da", "#8250df", "#bf3989", "#1a7f37", "#bc4c00", "#9a6700", "#116329", "#cf222e", "#57606a", "#0550ae"];

/// Render the report of `blocks` (one per repository, shown in the order given).
pub fn render<'b>(blocks: impl IntoIterator<Item = &'b Block>, summary: &Summary, source: &str) -> String {
    let blocks: Vec<&Block> = blocks.into_iter().collect();
    let mut h = String::with_capacity(64 << 10);
    let script_hash = {
        use base64::Engine as _;
        use sha2::{Digest, Sha256};
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(SCRIPT.as_bytes()))
    };
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; \
         script-src 'sha256-{script_hash}'; img-src 'none'; connect-src 'none'; base-uri 'none'; form-action 'none'\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>modelgate audit report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
    );
    let _ = write!(
        h,
        "<h1>modelgate audit report</h1>\n<p class=\"muted\">modelgate {} &middot; {}</p>\n",
        text(&summary.modelgate),
        text(source)
    );
    summary_section(&mut h, summary);
    failed_section(&mut h, &blocks);
    filters(&mut h, summary.files);
    for b in &blocks {
        repo_section(&mut h, b);
    }
    let _ = write!(h, "<script>{SCRIPT}</script>\n</body>\n</html>\n");
    h
}

fn summary_section(h: &mut String, s: &Summary) {
    h.push_str("<section id=\"summary\">\n<div class=\"cards\">\n");
    let card = |h: &mut String, key: &str, n: u64, label: &str, class: &str| {
        let _ = writeln!(
            h,
            "<div class=\"card {class}\" data-count=\"{key}\"><span class=\"n\">{n}</span><span class=\"l\">{label}</span></div>"
        );
    };
    card(h, "repositories", s.repositories, "repositories", "");
    if s.failed > 0 {
        card(h, "failed", s.failed, "could not be audited", "v-error");
    }
    card(h, "files", s.files, "files", "");
    for (key, n) in [
        ("dangerous", s.dangerous),
        ("error", s.error),
        ("suspicious", s.suspicious),
        ("safe", s.safe),
        ("unsupported", s.unsupported),
    ] {
        card(h, key, n, key, &format!("v-{key}"));
    }
    for (key, n, label) in [("reject", s.reject, "rejected"), ("tag", s.tag, "tagged"), ("allow", s.allow, "allowed")] {
        card(h, key, n, label, &format!("d-{key}"));
    }
    h.push_str("</div>\n");
    let _ = writeln!(
        h,
        "<p class=\"muted\">{} commits, {} refs, {} blobs ({}) in {} file places</p>",
        s.commits,
        s.refs,
        s.blobs,
        text(&crate::audit::human_bytes(s.bytes)),
        s.places
    );
    // The bar of formats, most frequent first.
    let mut formats: Vec<(&String, &u64)> = s.formats.iter().collect();
    formats.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let total: u64 = formats.iter().map(|(_, n)| **n).sum();
    if total > 0 {
        h.push_str("<div class=\"bar\" id=\"formats\" role=\"img\" aria-label=\"files by format\">");
        for (i, (name, n)) in formats.iter().enumerate() {
            let colour = PALETTE.get(i % PALETTE.len()).unwrap_or(&"#57606a");
            let pct = (**n as f64) * 100.0 / (total as f64);
            let _ =
                write!(h, "<span style=\"width:{pct:.3}%;background:{colour}\" title=\"{}: {n}\"></span>", text(name));
        }
        h.push_str("</div>\n<ul class=\"legend\">");
        for (i, (name, n)) in formats.iter().enumerate() {
            let colour = PALETTE.get(i % PALETTE.len()).unwrap_or(&"#57606a");
            let _ = write!(
                h,
                "<li data-format-count=\"{n}\"><i style=\"background:{colour}\"></i>{} <span class=\"muted\">{n}</span></li>",
                text(name)
            );
        }
        h.push_str("</ul>\n");
    }
    h.push_str("</section>\n");
}

fn failed_section(h: &mut String, blocks: &[&Block]) {
    for b in blocks {
        if let Some(e) = &b.repo.error {
            let _ = writeln!(
                h,
                "<div class=\"failed\"><b>{}</b> could not be audited: {}</div>",
                text(&b.repo.repository),
                text(e)
            );
        }
    }
}

fn filters(h: &mut String, files: u64) {
    h.push_str("<div class=\"filters\">\n");
    h.push_str(
        "<input id=\"filter\" type=\"search\" placeholder=\"Filter by path, repository, format, import or code\" \
         aria-label=\"filter\" autocomplete=\"off\">\n",
    );
    h.push_str("<select id=\"verdict\" aria-label=\"verdict\"><option value=\"\">any verdict</option>");
    for v in ["dangerous", "error", "suspicious", "safe", "unsupported"] {
        let _ = write!(h, "<option value=\"{v}\">{v}</option>");
    }
    h.push_str("</select>\n<select id=\"decision\" aria-label=\"decision\"><option value=\"\">any decision</option>");
    for d in ["reject", "tag", "allow"] {
        let _ = write!(h, "<option value=\"{d}\">{d}</option>");
    }
    let _ = writeln!(h, "</select>\n<span id=\"shown\" class=\"muted\">{files} of {files} files shown</span>\n</div>");
}

fn repo_section(h: &mut String, b: &Block) {
    let r = &b.repo;
    let rejected = b.files.iter().filter(|f| f.decision == "reject").count();
    let _ = write!(
        h,
        "<section class=\"repo\" data-repo=\"{}\">\n<header><h2>{}</h2><div class=\"meta\">{} files{} &middot; {} commits &middot; {} refs &middot; {} blobs ({}) &middot; policy: {} &middot; {}</div></header>\n",
        text(&r.repository),
        text(&r.repository),
        b.files.len(),
        if rejected > 0 { format!(", <span class=\"d-reject\">{rejected} rejected</span>") } else { String::new() },
        r.commits,
        r.refs,
        r.blobs,
        text(&crate::audit::human_bytes(r.bytes)),
        text(r.policy.as_deref().unwrap_or("unknown")),
        text(&r.path),
    );
    if let Some(e) = &r.error {
        let _ = writeln!(h, "<div class=\"empty\">could not be audited: {}</div>", text(e));
    }
    if b.files.is_empty() {
        if r.error.is_none() {
            h.push_str("<div class=\"empty\">no model files</div>\n");
        }
        h.push_str("</section>\n");
        return;
    }
    h.push_str(
        "<table>\n<thead><tr><th>path</th><th>size</th><th>format</th><th>verdict</th><th>decision</th>\
         <th>imports</th><th>findings</th></tr></thead>\n<tbody>\n",
    );
    let mut files: Vec<&FileRecord> = b.files.iter().collect();
    files.sort_by(|x, y| (&x.path, &x.commit).cmp(&(&y.path, &y.commit)));
    for f in files {
        file_row(h, f);
    }
    h.push_str("</tbody>\n</table>\n</section>\n");
}

fn file_row(h: &mut String, f: &FileRecord) {
    let verdict = class_word(&f.verdict);
    let decision = class_word(&f.decision);
    let _ = write!(
        h,
        "<tr class=\"file\" data-repo=\"{}\" data-verdict=\"{verdict}\" data-decision=\"{decision}\">",
        text(&f.repository)
    );
    // Path, and where it is.
    let mut at = Vec::new();
    if let Some(r) = &f.refname {
        at.push(text(r));
    }
    if let Some(c) = &f.commit {
        at.push(format!("<span title=\"{}\">{}</span>", text(c), text(c.get(..7).unwrap_or(c))));
    }
    if let Some(o) = &f.lfs_oid {
        at.push(format!("<span title=\"sha256:{}\">LFS {}</span>", text(o), text(o.get(..12).unwrap_or(o))));
    } else if let Some(bl) = &f.blob {
        at.push(format!("<span title=\"{}\">blob {}</span>", text(bl), text(bl.get(..7).unwrap_or(bl))));
    }
    if let Some(q) = &f.quarantined {
        at.push(format!("quarantined to {}", text(q)));
    }
    let _ = write!(h, "<td class=\"path\">{}<div class=\"meta\">{}</div></td>", text(&f.path), at.join(" &middot; "));
    match f.size {
        Some(n) => {
            let _ = write!(h, "<td class=\"size\" title=\"{n} bytes\">{}</td>", text(&crate::audit::human_bytes(n)));
        }
        None => h.push_str("<td class=\"size\">&mdash;</td>"),
    }
    let _ = write!(h, "<td>{}</td>", text(&f.format));
    let _ = write!(h, "<td><span class=\"badge v-{verdict}\">{}</span>", text(&f.verdict));
    // The verdict is of the file as this checkout writes it (not the stored bytes).
    if let Some(c) = &f.checkout {
        let _ = write!(h, "<div class=\"meta checkout\">as checked out with {}</div>", text(c));
    }
    h.push_str("</td>");
    let _ = write!(h, "<td><span class=\"d-{decision}\">{}</span>", text(&f.decision));
    if let Some(why) = &f.decided_by {
        let _ = write!(h, "<div class=\"meta\">{}</div>", text(why));
    }
    h.push_str("</td>");
    if f.imports.is_empty() {
        h.push_str("<td class=\"muted\">&mdash;</td>");
    } else {
        let _ = write!(
            h,
            "<td><details><summary>Detected Pickle imports ({})</summary><ul class=\"plain\">",
            f.imports.len()
        );
        for i in &f.imports {
            let _ = write!(h, "<li><code>{}</code></li>", text(i));
        }
        h.push_str("</ul></details></td>");
    }
    let shown: Vec<_> = f.findings.iter().collect();
    if shown.is_empty() {
        h.push_str("<td class=\"muted\">&mdash;</td>");
    } else {
        let _ = write!(
            h,
            "<td><details{}><summary>{} finding{}: {}</summary><ul class=\"plain\">",
            if f.decision == "reject" { " open" } else { "" },
            shown.len(),
            if shown.len() == 1 { "" } else { "s" },
            text(&f.codes.join(", "))
        );
        for x in shown {
            let sev = class_word(x.severity.as_str());
            let _ = write!(
                h,
                "<li><span class=\"sev-{sev}\">[{}]</span> <code>{}</code>: {}",
                text(sev),
                text(&x.code),
                text(&x.message)
            );
            let mut loc = Vec::new();
            if let Some(m) = &x.member {
                loc.push(format!("in {}", text(m)));
            }
            if let Some(o) = x.offset {
                loc.push(format!("at offset {o}"));
            }
            if !loc.is_empty() {
                let _ = write!(h, " <span class=\"muted\">{}</span>", loc.join(" "));
            }
            if let Some(e) = &x.evidence {
                let _ = write!(h, "<pre>{}</pre>", text(e));
            }
            h.push_str("</li>");
        }
        h.push_str("</ul></details></td>");
    }
    h.push_str("</tr>\n");
}

/// A word used in a class or data attribute: only the known lowercase words pass, anything
/// else becomes `other`.
fn class_word(s: &str) -> &str {
    match s {
        "safe" | "suspicious" | "dangerous" | "error" | "unsupported" | "allow" | "tag" | "reject" | "info" => s,
        _ => "other",
    }
}

/// Repository text as HTML text or a quoted attribute value: control and bidirectional
/// characters escaped as in a terminal, then `& < > " '` as entities.
pub fn text(s: &str) -> String {
    let shown = crate::hook::escape(s);
    let mut out = String::with_capacity(shown.len());
    for c in shown.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_text_never_becomes_markup() {
        let evil = "<img src=x onerror=alert(1)></script><script>alert(2)</script>\"'&\u{202e}\x1b[31m";
        let t = text(evil);
        for bad in ["<", ">", "\"", "'", "\u{202e}", "\x1b"] {
            assert!(!t.contains(bad), "{bad:?} in {t}");
        }
        assert!(t.contains("&lt;/script&gt;"));
        assert_eq!(class_word("dangerous\" onload=\""), "other");
    }

    #[test]
    fn a_checkout_verdict_says_which_checkout_escaped() {
        let mut f = FileRecord {
            repository: "o/r".into(),
            path: "m.pkl".into(),
            format: "pickle".into(),
            verdict: "dangerous".into(),
            decision: "reject".into(),
            ..Default::default()
        };
        let mut plain = String::new();
        file_row(&mut plain, &f);
        assert!(!plain.contains("checked out with"), "{plain}");
        f.checkout = Some("core.autocrlf=true (LF -> CRLF) <b>".into());
        let mut h = String::new();
        file_row(&mut h, &f);
        assert!(h.contains("as checked out with core.autocrlf=true (LF -&gt; CRLF) &lt;b&gt;"), "{h}");
    }
}
