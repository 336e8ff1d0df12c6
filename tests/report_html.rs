//! The HTML report in a real browser (headless Chromium, Debian's `chromium`): the counts it
//! shows are the audit's, hostile repository text (file names, a ref, a repository name,
//! imports and evidence made of markup) renders as text and runs nothing, the filter box
//! works, and nothing is fetched. A screenshot is left under `target/` as a test artefact.
//!
//! `.ci/run` installs chromium; elsewhere the test is skipped when it is missing (and fails
//! when `CI=true`).

mod git_support;

use git_support::{git_cmd, show, BIN, EVIL_PICKLE, GOOD_PICKLE};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Markup that would run if it were ever parsed as HTML: each sets the title.
const IMG: &str = "<img src=x onerror=\"document.title='pwned-img'\">";
const SCRIPT: &str = "a</script><script>document.title='pwned-script'</script>.pkl";
const REF: &str = "refs/heads/<svg/onload=document.title=1>";
const OWNER: &str = "x\"><img src=y onerror=alert(4)>";

fn chromium() -> Option<PathBuf> {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(o) = Command::new("sh").args(["-c", &format!("command -v {c}")]).output() {
            if o.status.success() {
                return Some(PathBuf::from(show(&o.stdout).trim()));
            }
        }
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("chromium is not installed (.ci/run installs it)");
    }
    eprintln!("skipped: chromium is not installed");
    None
}

/// Run headless Chromium on `url` with `extra` arguments; returns stdout.
fn browse(chrome: &Path, profile: &Path, url: &str, extra: &[&str]) -> String {
    let mut c = Command::new(chrome);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            panic!("chromium did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "chromium failed: {}", show(&o.stderr));
    show(&o.stdout)
}

/// A Gitea root with one repository whose owner, ref, file names, imports and evidence are
/// markup, and a second, plain one.
fn hostile_fleet(dir: &Path) -> PathBuf {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let work = dir.join("work");
    let git = |cwd: &Path, args: &[&str]| {
        let o = git_cmd(&home, cwd).args(args).output().unwrap();
        assert!(o.status.success(), "git {args:?}: {}", show(&o.stderr));
    };
    git(dir, &["init", "-q", "-b", "main", work.to_str().unwrap()]);
    let write = |p: &str, b: &[u8]| {
        let p = work.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b).unwrap();
    };
    write(&format!("models/{IMG}.pkl"), EVIL_PICKLE);
    write(&format!("models/{SCRIPT}"), GOOD_PICKLE);
    // A pickle importing a "module" made of markup: suspicious, with that import as evidence.
    let mut p = b"\x80\x02c".to_vec();
    p.extend_from_slice(b"x<img src=z onerror=\"document.title='pwned-import'\">\nAttr\n.");
    write("models/import.pkl", &p);
    write("README.md", b"readme\n");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "models"]);
    git(&work, &["branch", &REF["refs/heads/".len()..]]);
    git(&work, &["checkout", "-q", &REF["refs/heads/".len()..]]);
    write("models/branch-only.pkl", GOOD_PICKLE);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "branch"]);
    let root = dir.join("root");
    let bare = root.join(OWNER).join("models.git");
    std::fs::create_dir_all(bare.parent().unwrap()).unwrap();
    git(dir, &["clone", "-q", "--mirror", work.to_str().unwrap(), bare.to_str().unwrap()]);
    let plain = root.join("plain").join("repo.git");
    std::fs::create_dir_all(plain.parent().unwrap()).unwrap();
    git(dir, &["clone", "-q", "--mirror", work.to_str().unwrap(), plain.to_str().unwrap()]);
    root
}

fn count(dom: &str, key: &str) -> u64 {
    let needle = format!("data-count=\"{key}\"><span class=\"n\">");
    let i = dom.find(&needle).unwrap_or_else(|| panic!("no {key} count in the report")) + needle.len();
    dom[i..].split('<').next().unwrap().parse().unwrap()
}

#[test]
fn the_report_shows_the_counts_and_hostile_text_as_text() {
    let Some(chrome) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = hostile_fleet(dir.path());
    let jsonl = dir.path().join("audit.jsonl");
    let o = Command::new(BIN).args(["audit", "-q", "--flavor", "gitea", "-o"]).arg(&jsonl).arg(&root).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o.stderr));
    let records: Vec<Value> =
        std::fs::read_to_string(&jsonl).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let summary = records.last().unwrap().clone();
    assert_eq!(summary["files"], 8, "{summary}");
    let report = dir.path().join("report.html");
    let o = Command::new(BIN).arg("report").arg(&jsonl).arg("-o").arg(&report).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o.stderr));
    // The same report straight from the audit.
    let direct = dir.path().join("direct.html");
    let o = Command::new(BIN)
        .args(["audit", "-q", "--flavor", "gitea", "--format", "html", "-o"])
        .arg(&direct)
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let strip =
        |s: String| s.lines().filter(|l| !l.contains("class=\"muted\">modelgate ")).collect::<Vec<_>>().join("\n");
    assert_eq!(strip(std::fs::read_to_string(&direct).unwrap()), strip(std::fs::read_to_string(&report).unwrap()));

    let url = format!("file://{}", report.display());
    let profile = tempfile::tempdir().unwrap();
    let dom = browse(&chrome, profile.path(), &url, &["--dump-dom"]);
    assert!(dom.contains("<title>modelgate audit report</title>"), "a handler changed the title:\n{dom}");
    for key in ["repositories", "files", "dangerous", "error", "suspicious", "safe", "reject", "tag", "allow"] {
        let want = summary[key].as_u64().unwrap();
        assert_eq!(count(&dom, key), want, "{key}");
    }
    // The formats bar: a segment and a legend entry per format, with the counts.
    let pickle = summary["formats"]["pickle"].as_u64().unwrap();
    assert!(dom.contains(&format!("data-format-count=\"{pickle}\"")), "formats legend");
    // Hostile text is text: no element was made of it, and it is all there, escaped.
    assert_eq!(dom.matches("<img").count(), 0, "an <img> element was created");
    assert_eq!(dom.matches("<svg").count(), 0, "an <svg> element was created");
    assert_eq!(dom.matches("<script").count(), 1, "only the report's own script");
    for shown in [
        "&lt;img src=x onerror=\"document.title='pwned-img'\"&gt;.pkl",
        "a&lt;/script&gt;&lt;script&gt;document.title='pwned-script'&lt;/script&gt;.pkl",
        "refs/heads/&lt;svg/onload=document.title=1&gt;",
        "x\"&gt;&lt;img src=y onerror=alert(4)&gt;/models",
        "x&lt;img src=z onerror=\"document.title='pwned-import'\"&gt;.Attr",
    ] {
        assert!(dom.contains(shown), "{shown:?} not shown as text");
    }
    let rows = dom.matches("<tr class=\"file\"").count();
    assert_eq!(rows as u64, summary["files"].as_u64().unwrap());
    assert!(dom.contains(&format!("{rows} of {rows} files shown")));

    // The filter box, through a link's fragment: only what matches stays visible (what is
    // expected is counted from the records, whatever verdict the scanner gives).
    let files: Vec<&Value> = records.iter().filter(|r| r["type"] == "file").collect();
    let import = files.iter().find(|f| f["path"] == "models/import.pkl").unwrap();
    let verdict = import["verdict"].as_str().unwrap();
    let want = files.iter().filter(|f| f["path"] == "models/import.pkl" && f["verdict"] == verdict).count();
    assert_eq!(want, 2, "the import pickle is in both repositories");
    let dom = browse(&chrome, profile.path(), &format!("{url}#q=pwned-IMPORT&verdict={verdict}"), &["--dump-dom"]);
    assert!(dom.contains(&format!("{want} of {rows} files shown")), "the filter did not run: {}", shown(&dom));
    assert_eq!(visible_rows(&dom), want);
    let other = if verdict == "safe" { "dangerous" } else { "safe" };
    let dom = browse(&chrome, profile.path(), &format!("{url}#q=pwned-import&verdict={other}"), &["--dump-dom"]);
    assert!(dom.contains(&format!("0 of {rows} files shown")), "filters combine: {}", shown(&dom));
    assert_eq!(visible_rows(&dom), 0);
    let rejected = files.iter().filter(|f| f["decision"] == "reject").count();
    assert!(rejected >= 2 && rejected < files.len(), "{rejected} rejected of {}", files.len());
    let dom = browse(&chrome, profile.path(), &format!("{url}#decision=reject"), &["--dump-dom"]);
    assert!(dom.contains(&format!("{rejected} of {rows} files shown")), "decision filter: {}", shown(&dom));
    assert_eq!(visible_rows(&dom), rejected);

    // A screenshot for people, as a test artefact out of git.
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-html");
    std::fs::create_dir_all(&shots).unwrap();
    let png = shots.join("report.png");
    let _ = std::fs::remove_file(&png);
    browse(&chrome, profile.path(), &url, &[&format!("--screenshot={}", png.display()), "--window-size=1280,1400"]);
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG"), "no screenshot");
}

/// The "N of M files shown" line.
fn shown(dom: &str) -> &str {
    let end = dom.find(" files shown").map_or(0, |i| i + " files shown".len());
    &dom[end.saturating_sub(30)..end]
}

/// Rows not hidden, in a section not hidden.
fn visible_rows(dom: &str) -> usize {
    let mut n = 0;
    for section in dom.split("<section class=\"repo\"").skip(1) {
        if section.split('>').next().unwrap_or("").contains("hidden") {
            continue;
        }
        let body = section.split("</section>").next().unwrap_or("");
        n += body
            .split("<tr class=\"file\"")
            .skip(1)
            .filter(|r| !r.split('>').next().unwrap_or("").contains("hidden"))
            .count();
    }
    n
}

#[test]
fn the_report_fetches_nothing() {
    let Some(chrome) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = hostile_fleet(dir.path());
    let report = dir.path().join("report.html");
    let o = Command::new(BIN)
        .args(["audit", "-q", "--flavor", "gitea", "--format", "html", "-o"])
        .arg(&report)
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    // Served by a tiny HTTP server that logs what it is asked for (a relative `src=x` of a
    // hostile name would come here), and Chromium's network log of loading it: no request
    // made by the page (one with an origin as initiator; the browser's own background
    // requests have none) besides the page itself.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let body = std::fs::read(&report).unwrap();
    {
        let asked = asked.clone();
        std::thread::spawn(move || {
            use std::io::{BufRead, BufReader, Write};
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut line = String::new();
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                // Chromium opens spare connections that send nothing.
                if reader.read_line(&mut line).map_or(true, |n| n == 0) {
                    continue;
                }
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
                        break;
                    }
                }
                let path = line.split(' ').nth(1).unwrap_or("").to_string();
                asked.lock().unwrap().push(path.clone());
                let _ = if path == "/report.html" {
                    write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .and_then(|_| conn.write_all(&body))
                } else {
                    conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                };
            }
        });
    }
    let page = format!("http://127.0.0.1:{port}/report.html");
    let log = dir.path().join("netlog.json");
    let profile = tempfile::tempdir().unwrap();
    let dom = browse(&chrome, profile.path(), &page, &["--dump-dom", &format!("--log-net-log={}", log.display())]);
    assert!(dom.contains("files shown"), "the report did not load: {dom}");
    let asked = asked.lock().unwrap().clone();
    assert!(asked.contains(&"/report.html".to_string()), "{asked:?}");
    for path in &asked {
        assert!(path == "/report.html" || path == "/favicon.ico", "the report requested {path}");
    }
    let net: Value = serde_json::from_str(&std::fs::read_to_string(&log).unwrap()).unwrap();
    let start_job = net["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"].as_u64().unwrap();
    let mut seen_page = false;
    for e in net["events"].as_array().unwrap() {
        if e["type"].as_u64() != Some(start_job) {
            continue;
        }
        let url = e["params"]["url"].as_str().unwrap_or("");
        seen_page |= url == page;
        let initiator = e["params"]["initiator"].as_str().unwrap_or("not an origin");
        if initiator != "not an origin" {
            assert!(url == page || url.ends_with("/favicon.ico"), "the report requested {url} ({initiator})");
        }
    }
    assert!(seen_page, "the net log does not show the page itself");
}
