//! ClamAV through a real clamd (Debian `clamav-daemon`), started here with a generated
//! clamd.conf and a signature database built on the spot (no download): a Unix socket and a
//! TCP socket on 127.0.0.1, the marker found in files, archives and heads of large files.
//! Without clamd the test is skipped, except under CI=true where it fails.

mod containers_util;
mod git_support;

use modelgate::clamav::{ClamavConfig, Endpoint};
use modelgate::engine::{scan_source, FileReport, ScanOptions};
use modelgate::finding::{Severity, Verdict};
use modelgate::source::BytesSource;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Harmless bytes our own signature names; split so that this source file does not match.
fn marker() -> Vec<u8> {
    [&b"MODELGATE-CLAMAV-"[..], b"TEST-MARKER-7f3a"].concat()
}
/// clamd appends `.UNOFFICIAL` to signatures from databases it has no digital signature for.
const SIGNATURE: &str = "Modelgate.Test.Marker.UNOFFICIAL";
/// clamd's StreamMaxLength in this test.
const STREAM_MAX: u64 = 1 << 20;

fn find_clamd() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("clamd"))
        .find(|p| p.is_file())
}

/// A clamd owned by the test; killed on drop.
struct Clamd {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Clamd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Clamd {
    fn socket(&self) -> PathBuf {
        self.dir.path().join("clamd.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("clamd.log")).unwrap_or_default()
    }

    fn start() -> Option<Clamd> {
        let Some(bin) = find_clamd() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "clamd not found: CI must install clamav-daemon (see .ci/run)"
            );
            eprintln!("skipping the clamd tests: clamd is not installed (apt-get install clamav-daemon)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::create_dir(&db).unwrap();
        let hex: String = marker().iter().map(|b| format!("{b:02x}")).collect();
        // Extended signature: any file type, any offset.
        std::fs::write(db.join("modelgate.ndb"), format!("Modelgate.Test.Marker:0:*:{hex}\n")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let conf = dir.path().join("clamd.conf");
        let d = dir.path().display();
        std::fs::write(
            &conf,
            format!(
                "Foreground yes\nDatabaseDirectory {d}/db\nLocalSocket {d}/clamd.sock\nTCPSocket {port}\n\
                 TCPAddr 127.0.0.1\nLogFile {d}/clamd.log\nPidFile {d}/clamd.pid\nStreamMaxLength {STREAM_MAX}\n\
                 SelfCheck 3600\n"
            ),
        )
        .unwrap();
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut clamd = Clamd { child, dir, port };
        let started = Instant::now();
        loop {
            if clamd.ping() {
                return Some(clamd);
            }
            if let Some(status) = clamd.child.try_wait().unwrap() {
                panic!("clamd exited with {status}:\n{}", clamd.log());
            }
            assert!(started.elapsed() < Duration::from_secs(120), "clamd did not come up:\n{}", clamd.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = std::os::unix::net::UnixStream::connect(self.socket()) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut reply = Vec::new();
        s.write_all(b"zPING\0").is_ok() && s.read_to_end(&mut reply).is_ok() && reply == b"PONG\0"
    }

    fn unix(&self) -> ClamavConfig {
        ClamavConfig::new(Endpoint::Unix(self.socket()))
    }

    fn tcp(&self) -> ClamavConfig {
        ClamavConfig::new(Endpoint::Tcp(format!("127.0.0.1:{}", self.port)))
    }
}

fn scan(bytes: Vec<u8>, cfg: &ClamavConfig) -> FileReport {
    let opts = ScanOptions { clamav: Some(Arc::new(cfg.clone())), ..ScanOptions::default() };
    scan_source("t", Arc::new(BytesSource(bytes)), &opts)
}

fn with_marker_at(len: usize, at: usize) -> Vec<u8> {
    let mut b: Vec<u8> = (0..len).map(|i| b"model weights "[i % 14]).collect();
    b[at..at + marker().len()].copy_from_slice(&marker());
    b
}

fn clamav_codes(r: &FileReport) -> Vec<(&'static str, Severity)> {
    r.findings.iter().filter(|f| f.code.starts_with("clamav-")).map(|f| (f.code, f.severity)).collect()
}

fn assert_signature(r: &FileReport) {
    assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
    let f = r.findings.iter().find(|f| f.code == "clamav-signature").expect("a clamav-signature finding");
    assert_eq!(f.evidence.as_deref(), Some(SIGNATURE), "{f:?}");
    assert_eq!((f.severity, f.member.as_deref()), (Severity::Dangerous, None));
}

#[test]
fn real_clamd() {
    let Some(clamd) = Clamd::start() else { return };
    for cfg in [clamd.unix(), clamd.tcp()] {
        // Clean bytes: no clamav finding, the verdict is the engine's alone.
        let clean = scan(with_marker_at(4096, 0).iter().map(|b| b ^ 0x20).collect(), &cfg);
        assert_eq!((clean.verdict, clamav_codes(&clean)), (Verdict::Unsupported, vec![]), "{cfg:?}: {clean:#?}");
        assert_signature(&scan(with_marker_at(4096, 1000), &cfg));
        assert_signature(&scan(marker(), &cfg));
        // The version the verdict cache keys on (no official database here: no database version).
        let v = modelgate::clamav::version(&cfg).unwrap();
        assert!(v.starts_with("ClamAV ") && !v.contains('\0'), "{v:?}");
    }
    let cfg = clamd.unix();

    // clamd opens archives itself: a deflated zip member is matched, reported on the zip.
    let z = containers_util::zip(&[containers_util::Z::deflated("notes/readme.txt", &with_marker_at(10_000, 5000))]);
    assert_signature(&scan(z, &cfg));

    // A benign pickle stays safe; a malicious one is dangerous from the engine whatever clamd says.
    let safe_pickle = b"\x80\x04\x95\x07\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01K\x02e.".to_vec();
    let r = scan(safe_pickle, &cfg);
    assert_eq!((r.verdict, clamav_codes(&r)), (Verdict::Safe, vec![]), "{r:#?}");
    let r = scan(containers_util::EVIL_PICKLE.to_vec(), &cfg);
    assert_eq!(r.verdict, Verdict::Dangerous);
    assert!(clamav_codes(&r).is_empty(), "{r:#?}");

    // Larger than max_bytes: only the head goes to clamd, and an info finding says so.
    let head = ClamavConfig { max_bytes: STREAM_MAX, ..cfg.clone() };
    let big = 3 * STREAM_MAX as usize;
    let r = scan(with_marker_at(big, 100), &head);
    assert_signature(&r);
    assert!(clamav_codes(&r).contains(&("clamav-partial", Severity::Info)), "{r:#?}");
    let r = scan(with_marker_at(big, 2 * STREAM_MAX as usize), &head);
    assert_eq!((r.verdict, clamav_codes(&r)), (Verdict::Unsupported, vec![("clamav-partial", Severity::Info)]));
    // Exactly StreamMaxLength bytes are accepted.
    let r = scan(with_marker_at(STREAM_MAX as usize, STREAM_MAX as usize - 100), &head);
    assert_signature(&r);
    assert!(!clamav_codes(&r).contains(&("clamav-partial", Severity::Info)));

    // max_bytes above clamd's StreamMaxLength: clamd refuses the stream.
    let over = ClamavConfig { max_bytes: 2 * STREAM_MAX, ..cfg.clone() };
    let r = scan(with_marker_at(big, 100), &over);
    assert_eq!(r.verdict, Verdict::Error, "{r:#?}");
    let f = r.findings.iter().find(|f| f.code == "clamav-error").unwrap();
    assert!(f.message.contains("StreamMaxLength"), "{}", f.message);
    let r = scan(with_marker_at(big, 100), &ClamavConfig { required: false, ..over });
    assert!(clamav_codes(&r).contains(&("clamav-error", Severity::Info)), "{r:#?}");

    cli(&clamd);
    push_gate(&clamd);
}

/// The pre-receive hook with a policy that configures clamd: the marker file is rejected.
fn push_gate(clamd: &Clamd) {
    let e = git_support::Env::new();
    let policy = e.policy("p.toml", &format!("[clamav]\nsocket = {:?}\n", clamd.socket().display().to_string()));
    e.install_gate(Some(&policy), &["--force"]);
    e.write("m/weights.pkl", git_support::GOOD_PICKLE);
    e.commit("model");
    git_support::assert_accepted(e.push(&["main"]));
    e.write("docs/marked.txt", &with_marker_at(300, 10));
    e.commit("marked");
    let out = git_support::assert_rejected(e.push(&["main"]));
    assert!(out.contains("clamav-signature") && out.contains(SIGNATURE), "{out}");
}

/// `modelgate scan DIR` with a policy that configures clamd: the marker file is rejected.
fn cli(clamd: &Clamd) {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    std::fs::write(models.join("clean.bin"), b"nothing to see").unwrap();
    std::fs::write(models.join("marked.bin"), with_marker_at(300, 10)).unwrap();
    let policy = dir.path().join("p.toml");
    std::fs::write(&policy, format!("[clamav]\naddress = \"127.0.0.1:{}\"\ntimeout_ms = 10_000\n", clamd.port))
        .unwrap();
    let out = run(&policy, &models);
    assert_eq!(out.0, Some(1), "{}", out.1);
    let v: serde_json::Value = serde_json::from_str(&out.1).unwrap();
    let files = v["files"].as_array().unwrap();
    let by_name = |n: &str| files.iter().find(|f| f["path"].as_str().unwrap().ends_with(n)).unwrap().clone();
    assert_eq!(by_name("clean.bin")["verdict"], "unsupported", "{v:#}");
    let marked = by_name("marked.bin");
    assert_eq!(marked["verdict"], "dangerous", "{v:#}");
    assert_eq!(marked["findings"][0]["code"], "clamav-signature");
    assert_eq!(marked["findings"][0]["evidence"], SIGNATURE);
}

fn run(policy: &Path, target: &Path) -> (Option<i32>, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .arg("scan")
        .arg("--format=json")
        .arg("--policy")
        .arg(policy)
        .arg(target)
        .output()
        .unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
}

/// No clamd at the configured place: an error (rejected) when required, info when not.
#[test]
fn unreachable_clamd() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.bin"), b"plain bytes").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let sock = dir.path().join("no-clamd.sock");
    for endpoint in [format!("socket = {:?}", sock.display().to_string()), format!("address = \"127.0.0.1:{port}\"")] {
        for (required, code, severity) in [("true", Some(1), "error"), ("false", Some(0), "info")] {
            let policy = dir.path().join("p.toml");
            std::fs::write(&policy, format!("[clamav]\n{endpoint}\nrequired = {required}\ntimeout_ms = 2000\n"))
                .unwrap();
            let (status, out) = run(&policy, &dir.path().join("m.bin"));
            assert_eq!(status, code, "{endpoint} required={required}: {out}");
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            let f = &v["files"][0]["findings"][0];
            assert_eq!((f["code"].as_str(), f["severity"].as_str()), (Some("clamav-error"), Some(severity)), "{v:#}");
            assert!(f["message"].as_str().unwrap().contains("clamd at"), "{f}");
        }
    }
}

/// The push gate's verdict cache: a verdict made without clamd is not served once the policy
/// configures clamd, and a judgement made while clamd was away is not cached at all.
#[test]
fn unreachable_clamd_in_the_push_gate() {
    let e = git_support::Env::new();
    let sock = e.dir.path().join("no-clamd.sock");
    let push_renamed = |to: &str| {
        let from = e.w(&["ls-files", "m"]);
        e.w(&["mv", &from, to]);
        e.commit(to);
        e.push(&["main"])
    };
    e.install_gate(Some(&e.policy("p.toml", "")), &["--force"]);
    e.write("m/weights.pkl", git_support::GOOD_PICKLE);
    e.commit("model");
    let out = git_support::assert_accepted(e.push(&["main"]));
    assert!(out.contains("1 new file(s) checked (0 from cache)"), "{out}");
    let out = git_support::assert_accepted(push_renamed("m/a.pkl"));
    assert!(out.contains("1 new file(s) checked (1 from cache)"), "{out}");

    let clamav =
        |required: bool| format!("[clamav]\nsocket = {:?}\nrequired = {required}\n", sock.display().to_string());
    e.install_gate(Some(&e.policy("p.toml", &clamav(false))), &["--force"]);
    for to in ["m/b.pkl", "m/c.pkl"] {
        let out = git_support::assert_accepted(push_renamed(to));
        assert!(out.contains("1 new file(s) checked (0 from cache)"), "{out}");
    }
    e.install_gate(Some(&e.policy("p.toml", &clamav(true))), &["--force"]);
    let out = git_support::assert_rejected(push_renamed("m/d.pkl"));
    assert!(out.contains("clamav-error") && out.contains("no-clamd.sock"), "{out}");
}
