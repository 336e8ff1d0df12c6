//! `modelgate man [DIR]`: roff pages generated from the clap definition, one per subcommand,
//! rendered with `man -l` and checked with `groff -ww` where installed (else read as roff).

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_modelgate");

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success())
}

/// The minimal roff a man page needs: `.TH` first (after string definitions), `.SH NAME` with
/// `name \- summary`, and `.SH SYNOPSIS`.
fn roff_sections(page: &str) -> Vec<String> {
    let lines: Vec<&str> = page.lines().filter(|l| !l.starts_with(".ie") && !l.starts_with(".el")).collect();
    assert!(lines.first().is_some_and(|l| l.starts_with(".TH ")), "{page}");
    lines.iter().filter_map(|l| l.strip_prefix(".SH ")).map(|s| s.trim_matches('"').to_string()).collect()
}

#[test]
fn one_page_per_subcommand_that_man_renders() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    let o = Command::new(BIN).arg("man").arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", show(&o.stderr));
    let listed: Vec<String> = show(&o.stdout).lines().map(str::to_string).collect();
    let mut files: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(listed.len(), files.len(), "every written page is listed: {listed:?}");
    // Every subcommand, nested ones included, and no page for clap's `help`.
    for want in [
        "modelgate.1",
        "modelgate-scan.1",
        "modelgate-explain.1",
        "modelgate-man.1",
        "modelgate-policy-check.1",
        "modelgate-policy-test.1",
        "modelgate-hook-pre-receive.1",
        "modelgate-hook-post-receive.1",
        "modelgate-lfs-scan.1",
        "modelgate-lfs-watch.1",
        "modelgate-install.1",
    ] {
        assert!(files.contains(&want.to_string()), "{want} in {files:?}");
    }
    assert!(!files.iter().any(|f| f.contains("help")), "{files:?}");

    for f in &files {
        let page = std::fs::read_to_string(out.join(f)).unwrap();
        let sections = roff_sections(&page);
        assert!(sections.iter().any(|s| s == "NAME") && sections.iter().any(|s| s == "SYNOPSIS"), "{f}: {sections:?}");
        assert!(!page.contains("help(1)"), "{f} names a page that is not written");
    }
    let scan = std::fs::read_to_string(out.join("modelgate-scan.1")).unwrap();
    for opt in ["output", "quiet", "exclude", "jobs", "format"] {
        assert!(scan.contains(&format!("\\-\\-{opt}")), "modelgate-scan.1 documents --{opt}");
    }
    let top = std::fs::read_to_string(out.join("modelgate.1")).unwrap();
    assert!(roff_sections(&top).iter().any(|s| s == "SUBCOMMANDS"), "{top}");

    // Without DIR: the top page on stdout.
    let o = Command::new(BIN).arg("man").output().unwrap();
    assert!(o.status.success());
    assert_eq!(show(&o.stdout), top);

    if have("groff") {
        for f in &files {
            // -ww: every warning; -z: no output. A clean page warns about nothing.
            let o = Command::new("groff").args(["-man", "-ww", "-z", "-Tutf8"]).arg(out.join(f)).output().unwrap();
            assert!(o.status.success() && o.stderr.is_empty(), "groff on {f}: {}", show(&o.stderr));
        }
    } else {
        eprintln!("groff not installed: pages read as roff only");
    }
    if have("man") {
        let text = render(&out.join("modelgate-scan.1"));
        assert!(text.contains("NAME") && text.contains("modelgate-scan"), "{text}");
        assert!(text.contains("--exclude") || text.contains("‐‐exclude"), "{text}");
        let text = render(&out.join("modelgate-lfs-watch.1"));
        assert!(text.contains("--quarantine") || text.contains("‐‐quarantine"), "{text}");
    } else {
        eprintln!("man not installed: pages not rendered");
    }
}

fn render(page: &Path) -> String {
    let o = Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANWIDTH", "200")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("MAN_KEEP_FORMATTING", "")
        .env_remove("MANOPT")
        .output()
        .unwrap();
    assert!(o.status.success(), "man -l {}: {}", page.display(), show(&o.stderr));
    // Strip overstriking (bold/underline) some man setups keep.
    let mut out = String::new();
    for c in show(&o.stdout).chars() {
        if c == '\u{8}' {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out
}
