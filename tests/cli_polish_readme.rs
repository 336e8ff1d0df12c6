//! The README's commands do what it says: the quick start's scan of `samples/`, the `modelgate
//! scan` lines of the CI snippets (run in a real git checkout), the command that fetches the
//! push gate's notes (after real pushes through the hooks), and the files it points to.

mod git_support;
use git_support::*;
use std::path::Path;
use std::process::Command;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// The contents of every fenced block whose info string is `lang`.
fn blocks(text: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        match (&mut cur, line.trim_start().strip_prefix("```")) {
            (None, Some(info)) if info.trim() == lang => cur = Some(String::new()),
            (Some(_), Some(_)) => out.extend(cur.take()),
            (Some(b), None) => {
                b.push_str(line);
                b.push('\n');
            }
            _ => {}
        }
    }
    out
}

#[test]
fn quick_start_commands_are_the_first_thing_and_true() {
    let text = readme();
    let first = blocks(&text, "sh").into_iter().next().unwrap();
    let cmds: Vec<&str> = first.lines().map(|l| l.split('#').next().unwrap().trim()).collect();
    assert_eq!(cmds, ["cargo run --release -- scan samples/", "cargo test"]);
    // `scan samples/` as the README describes it (the binary cargo run would build).
    let root = env!("CARGO_MANIFEST_DIR");
    let o = Command::new(BIN).current_dir(root).args(["scan", "samples/"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "exits 1: the dangerous files are rejected");
    let out = show(&o.stdout);
    for (verdict, file) in [
        ("SAFE", "benign.pkl"),
        ("SUSPICIOUS", "suspicious.pkl"),
        ("DANGEROUS", "dangerous.pkl"),
        ("DANGEROUS", "dangerous_model.pt"),
        ("UNSUPPORTED", "make_samples.py"),
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(verdict) && l.contains(&format!("samples/{file} "))),
            "{file}: {out}"
        );
    }
    // The test prerequisites follow right after, before the next section.
    let after = &text[text.find("cargo test").unwrap()..text.find("## What it does").unwrap()];
    for pkg in ["git-lfs", "clamav-daemon", "python3", "systemd", "CI=true .ci/run"] {
        assert!(after.contains(pkg), "prerequisite {pkg} in the quick start");
    }
    assert!(text.contains("cargo install --locked --path ."));
}

#[test]
fn ci_snippets_scan_commands_write_sarif_from_a_checkout() {
    let text = readme();
    let lines: Vec<String> = blocks(&text, "yaml")
        .iter()
        .flat_map(|b| b.lines().map(str::to_string).collect::<Vec<_>>())
        .filter_map(|l| {
            let l = l.trim().trim_start_matches("- ").trim_start_matches("run: ").to_string();
            l.starts_with("modelgate scan").then_some(l)
        })
        .collect();
    assert_eq!(lines.len(), 2, "one scan in the GitHub and one in the GitLab snippet: {lines:?}");
    for line in &lines {
        let e = Env::new();
        e.write("models/evil.pkl", BAD);
        e.write("models/ok.pkl", GOOD_PICKLE);
        e.commit("models");
        let args: Vec<&str> = line.split_whitespace().skip(1).collect();
        let o = Command::new(BIN).current_dir(&e.work).args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{line}: a rejected file fails the job: {}", show(&o.stderr));
        let sarif: serde_json::Value =
            serde_json::from_slice(&std::fs::read(e.work.join("modelgate.sarif")).unwrap()).unwrap();
        assert_eq!(sarif["version"], "2.1.0");
        let results = sarif["runs"][0]["results"].as_array().unwrap();
        let uris: Vec<&str> = results
            .iter()
            .filter_map(|r| r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].as_str())
            .collect();
        assert!(uris.contains(&"models/evil.pkl"), "relative URIs code scanning maps to files: {uris:?}");
        // The same scan as JSON: the git directory was left out, and counted.
        let json: Vec<&str> = args.iter().map(|a| if *a == "sarif" { "json" } else { a }).collect();
        let o = Command::new(BIN).current_dir(&e.work).args(&json).output().unwrap();
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(e.work.join("modelgate.sarif")).unwrap()).unwrap();
        assert_eq!(o.status.code(), Some(1));
        let paths: Vec<&str> = doc["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
        assert!(!paths.iter().any(|p| p.starts_with(".git/")), "{paths:?}");
        assert!(doc["summary"]["excluded"].as_u64().unwrap() > 0, "{}", doc["summary"]);
    }
    // The upload steps read the file the scan wrote.
    assert!(text.contains("sarif_file: modelgate.sarif") && text.contains("paths: [modelgate.sarif]"));
}

#[test]
fn the_notes_fetch_command_shows_the_gate_s_notes_in_a_clone() {
    let text = readme();
    let fetch = text.lines().map(str::trim).find(|l| l.starts_with("git fetch origin 'refs/notes/")).unwrap();
    let refspec = fetch.split('\'').nth(1).unwrap();
    assert_eq!(refspec, "refs/notes/*:refs/notes/*");
    let e = Env::new();
    e.install_hook("post-receive");
    e.write("models/sus.pkl", SUSPICIOUS_PICKLE);
    e.commit("a model");
    assert_accepted(e.push(&["main"]));
    let clone = e.dir.path().join("clone");
    e.run(e.dir.path(), &["clone", "-q", "-b", "main", &format!("file://{}", e.bare.display()), "clone"]);
    assert_eq!(e.run(&clone, &["log", "-1", "--notes=modelgate", "--format=%N"]), "", "a clone has no notes");
    e.run(&clone, &["fetch", "origin", refspec]);
    let note = e.run(&clone, &["log", "-1", "--notes=modelgate", "--format=%N"]);
    assert!(note.contains("models/sus.pkl: suspicious (pickle)"), "{note}");
}

#[test]
fn files_the_readme_points_to_exist() {
    let text = readme();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for f in ["deploy/systemd/modelgate-lfs-watch.service", "deploy/systemd/modelgate.sysusers.conf", ".ci/run"] {
        assert!(text.contains(f.trim_start_matches("deploy/systemd/")), "{f} named in the README");
        assert!(root.join(f).is_file(), "{f}");
    }
    // The pre-commit snippet's hook ids are the ones the repository defines.
    let hooks = std::fs::read_to_string(root.join(".pre-commit-hooks.yaml")).unwrap();
    let snippet = blocks(&text, "yaml").into_iter().find(|b| b.contains("pre-commit-config")).unwrap();
    assert!(snippet.contains("rev: v0.1.0"), "{snippet}");
    for id in snippet.lines().filter_map(|l| l.trim().trim_start_matches("# ").strip_prefix("- id: ")) {
        let id = id.split_whitespace().next().unwrap();
        assert!(hooks.contains(&format!("- id: {id}\n")), "{id} in .pre-commit-hooks.yaml");
    }
}
