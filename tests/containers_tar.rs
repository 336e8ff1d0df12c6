//! The tar reader: header variants, checksums, traversal, torch's legacy layout, streams.
mod containers_util;

use containers_util::*;
use modelgate::engine::ScanOptions;
use modelgate::finding::{Severity, Verdict};

fn probe_members(r: &modelgate::engine::FileReport) -> Vec<String> {
    find(r, "npy-bad-header").iter().map(|f| f.member.clone().unwrap_or_default()).collect()
}

#[test]
fn members_are_handed_back() {
    let r = scan(tar(&[("a.npy", &npy_probe()), ("dir/b.txt", b"hello"), ("dir/c.npy", &npy_probe())]));
    assert_eq!(r.format, "tar");
    assert_eq!(probe_members(&r), ["a.npy", "dir/c.npy"]);
}

#[test]
fn clean_tar_is_safe() {
    let r = scan(tar(&[("w.npy", &npy_f4(10)), ("readme", b"x")]));
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert_eq!(r.verdict, Verdict::Safe);
}

#[test]
fn gnu_long_names_pax_paths_and_prefixes() {
    let long = format!("{}/deep.npy", "d".repeat(150));
    let mut t = Vec::new();
    // GNU: an `L` entry holds the next member's name.
    tar_push(
        &mut t,
        tar_header("././@LongLink", long.len() as u64 + 1, b'L', b"ustar  \0"),
        format!("{long}\0").as_bytes(),
    );
    tar_push(&mut t, tar_header("truncated-name", npy_probe().len() as u64, b'0', b"ustar  \0"), &npy_probe());
    // pax: `path=` in an `x` entry.
    let rec = "pax/name.npy";
    let line = format!("{} path={rec}\n", rec.len() + 7 + 2);
    assert_eq!(line.len(), rec.len() + 7 + 2);
    tar_push(&mut t, tar_header("PaxHeader", line.len() as u64, b'x', b"ustar\0"), line.as_bytes());
    tar_push(&mut t, tar_header("short", npy_probe().len() as u64, b'0', b"ustar\0"), &npy_probe());
    // ustar: prefix + name.
    let mut h = tar_header("p.npy", npy_probe().len() as u64, b'0', b"ustar\0");
    h[345..351].copy_from_slice(b"prefix");
    fix_checksum(&mut h);
    tar_push(&mut t, h, &npy_probe());
    tar_end(&mut t);
    let r = scan(t);
    assert_eq!(probe_members(&r), [long.as_str(), "pax/name.npy", "prefix/p.npy"]);
}

#[test]
fn pax_size_and_base256_sizes() {
    let probe = npy_probe();
    let mut t = Vec::new();
    let line = format!("{} size={}\n", 9 + probe.len().to_string().len(), probe.len());
    tar_push(&mut t, tar_header("PaxHeader", line.len() as u64, b'x', b"ustar\0"), line.as_bytes());
    // The header's own size field is wrong; pax wins.
    tar_push(&mut t, tar_header("a.npy", 0, b'0', b"ustar\0"), &probe);
    let mut h = tar_header("b.npy", 0, b'0', b"ustar  \0");
    h[124..136].fill(0);
    h[124] = 0x80;
    h[132..136].copy_from_slice(&(probe.len() as u32).to_be_bytes());
    fix_checksum(&mut h);
    tar_push(&mut t, h, &probe);
    tar_end(&mut t);
    let r = scan(t);
    assert_eq!(probe_members(&r), ["a.npy", "b.npy"], "{:#?}", r.findings);
}

#[test]
fn bad_checksum_is_reported_and_reading_goes_on() {
    let mut t = Vec::new();
    let mut h = tar_header("a.npy", npy_probe().len() as u64, b'0', b"ustar\0");
    h[148..156].copy_from_slice(b"0000001\0");
    tar_push(&mut t, h, &npy_probe());
    tar_push(&mut t, tar_header("b.npy", npy_probe().len() as u64, b'0', b"ustar\0"), &npy_probe());
    tar_end(&mut t);
    let r = scan(t);
    let f = one(&r, "tar-bad-checksum");
    assert_eq!(f.member.as_deref(), Some("a.npy"));
    assert_eq!(f.severity, Severity::Suspicious);
    assert_eq!(probe_members(&r), ["a.npy", "b.npy"]);
}

#[test]
fn garbage_after_members_is_malformed() {
    let mut t = tar(&[("a.npy", &npy_probe())]);
    t.truncate(1024);
    t.extend_from_slice(&[0x41; 512]);
    let r = scan(t);
    assert_eq!(one(&r, "tar-malformed").severity, Severity::Error);
    assert_eq!(probe_members(&r), ["a.npy"]);
}

#[test]
fn traversal_in_names_and_links_is_dangerous() {
    for name in ["../evil.npy", "/etc/cron.d/x", "a/../../b"] {
        let r = scan(tar(&[(name, b"x")]));
        let f = one(&r, "tar-path-traversal");
        assert_eq!(f.member.as_deref(), Some(name));
        assert_eq!(r.verdict, Verdict::Dangerous);
    }
    let mut t = Vec::new();
    let mut h = tar_header("link", 0, b'2', b"ustar\0");
    h[157..168].copy_from_slice(b"/etc/passwd");
    fix_checksum(&mut h);
    tar_push(&mut t, h, b"");
    tar_end(&mut t);
    let r = scan(t);
    assert!(one(&r, "tar-path-traversal").evidence.as_deref().unwrap().contains("/etc/passwd"));
}

#[test]
fn truncated_and_capped() {
    let t = tar(&[("a.npy", &npy_probe()), ("b.bin", &[7u8; 2000])]);
    let r = scan(t[..1024 + 700].to_vec());
    assert_eq!(one(&r, "tar-truncated").member.as_deref(), Some("b.bin"));
    let r = scan(t[..1024 + 100].to_vec());
    assert_eq!(one(&r, "tar-truncated").severity, Severity::Error);

    let files: Vec<(String, Vec<u8>)> = (0..8).map(|i| (format!("m{i}.npy"), npy_probe())).collect();
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    let opts = ScanOptions { max_members: 3, ..Default::default() };
    let r = scan_with(tar(&refs), &opts);
    assert_eq!(one(&r, "tar-too-many-members").severity, Severity::Error);
    assert_eq!(probe_members(&r).len(), 3);
}

#[test]
fn compressed_tar_streams_members() {
    let t = tar(&[("a.npy", &npy_probe()), ("big.bin", &vec![1u8; 300_000]), ("c/d.npy", &npy_probe())]);
    let r = scan(gzip(&t));
    assert_eq!(r.format, "gzip:tar");
    assert_eq!(probe_members(&r), ["a.npy", "c/d.npy"]);
    // Nested: a zip inside a tar inside xz.
    let z = zip(&[Z::stored("in.npy", &npy_probe())]);
    let r = scan(xz(&tar(&[("x.zip", &z)])));
    assert_eq!(r.format, "xz:tar");
    assert_eq!(probe_members(&r), ["x.zip!in.npy"]);
    // The same tar read from a plain stream.
    let r = scan_stream(t);
    assert_eq!(probe_members(&r), ["a.npy", "c/d.npy"]);
}

/// Torch 0.1's layout; walking `storages`/`tensors` needs the pickle parser (see the e2e tests).
#[test]
fn torch_legacy_tar_is_labelled() {
    let t = tar(&[
        ("sys_info", b"\x80\x02}q\x00."),
        ("pickle", b"\x80\x02K\x01."),
        ("tensors", b"\x80\x02K\x00."),
        ("storages", b"\x80\x02K\x00."),
    ]);
    let r = scan(t);
    assert_eq!(r.format, "pytorch-tar");
    let r = scan(tar(&[("pickle", b"\x80\x02K\x01."), ("other", b"x")]));
    assert_eq!(r.format, "tar");
}

/// Pre-POSIX (v7) headers have no magic; `tarfile`, and so torch's legacy loader, reads them.
#[test]
fn v7_tar_without_magic_is_read() {
    let evil = b"cos\nsystem\n(S'echo pwned'\ntR.";
    let mut t = Vec::new();
    for (name, data) in [("sys_info", &b"\x80\x02}q\x00."[..]), ("pickle", &evil[..]), ("storages", b"\x80\x02K\x00.")]
    {
        let h = tar_header(name, data.len() as u64, 0, b"");
        assert_eq!(&h[257..263], &[0u8; 6]);
        tar_push(&mut t, h, data);
    }
    tar_end(&mut t);
    let r = scan(t.clone());
    assert_eq!(r.format, "tar");
    assert_eq!(r.verdict, Verdict::Dangerous, "{:#?}", r.findings);
    assert!(dangerous_at(&r, "pickle"));
    // A wrong checksum without magic is not a tar.
    t[148] = b'7';
    assert_ne!(scan(t).format, "tar");
}

/// A tar whose first header is also a pickle: `pickle.load` runs it, tarfile lists members.
#[test]
fn tar_header_that_is_a_pickle_is_scanned_as_both() {
    let evil = "cos\nsystem\n(S'echo pwned'\ntR.";
    let mut t = Vec::new();
    tar_push(&mut t, tar_header(evil, 5, b'0', b"ustar\0"), b"hello");
    tar_end(&mut t);
    let r = scan(t);
    assert_eq!(r.format, "tar");
    assert_eq!(r.verdict, Verdict::Dangerous, "{:#?}", r.findings);
    assert!(
        r.findings.iter().any(|f| f.evidence.as_deref().unwrap_or("").contains("os.system('echo pwned')")),
        "{:#?}",
        r.findings
    );
}

/// Mutated tars listed by CPython's `tarfile` (tests/fixtures/containers/tar_differential.py):
/// every archive tarfile lists, this reader lists the same way (names, types, sizes and the
/// bytes `extractfile` yields), up to where it reads on past a bad checksum or stops earlier
/// with an error (both fail closed or read more, never less).
#[test]
fn members_match_cpython_tarfile() {
    use base64::Engine;
    use sha2::Digest;
    let Some(py) = python() else { return };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/containers/tar_differential.py");
    let out = std::process::Command::new(py).args([script, "7", "3000"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut compared = 0;
    let mut early = 0;
    for (i, line) in String::from_utf8(out.stdout).unwrap().lines().enumerate() {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let tar = base64::engine::general_purpose::STANDARD.decode(case["tar"].as_str().unwrap()).unwrap();
        let Some(expected) = case["members"].as_array() else { continue };
        let (listed, end) = modelgate::formats::tar::list(&tar);
        let ours: Vec<_> = listed.iter().take_while(|m| !m.bad_checksum).collect();
        let stopped_early = ours.len() < listed.len() || end.is_err();
        let got: Vec<serde_json::Value> = ours
            .iter()
            .map(|m| {
                let sha = m.data.as_ref().map(|d| match d {
                    Ok(v) => serde_json::Value::from(hex(&sha2::Sha256::digest(v))),
                    Err(_) => serde_json::Value::from("unreadable"),
                });
                serde_json::json!([m.name, (m.kind as char).to_string(), m.size, sha])
            })
            .collect();
        if stopped_early {
            // Fail closed (an error) or read on: what both read must agree.
            if got.len() < expected.len() {
                early += 1;
                if i < 30 {
                    eprintln!("case {i} stopped early: {end:?}");
                }
            }
            let n = got.len().min(expected.len());
            assert_eq!(got[..n], expected[..n], "case {i}: {end:?}");
        } else {
            assert_eq!(&got, expected, "case {i}");
        }
        compared += 1;
    }
    assert!(compared > 1000, "{compared}");
    // Stopping early is failing closed, but it must stay the exception.
    assert!(early * 20 < compared, "{early} of {compared} stopped before tarfile did");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
