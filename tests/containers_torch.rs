//! Which member torch reads and which bytes it gets: torch 0.1 tar checkpoints read through
//! Python's `tarfile` (links, sparse members, GNU long names, pax records, Python's numbers,
//! duplicate names, the storage views pickle) and zip checkpoints read through miniz (record
//! names compared without case). Each crafted file is proven real by `torch.load` running its
//! marker payload (when torch is installed; CI installs Debian's python3-torch).
mod containers_util;

use containers_util::*;
use modelgate::finding::{Severity, Verdict};
use std::path::{Path, PathBuf};

const CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/containers/torch_tar_cases.py");

/// The tar cases, written by the generator: (name, path).
fn tar_cases(dir: &Path) -> Option<Vec<(String, PathBuf)>> {
    let py = python()?;
    let out = std::process::Command::new(py).arg(CASES).arg(dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut cases: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tar"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    cases.sort();
    assert!(cases.len() >= 11, "{cases:?}");
    Some(cases)
}

/// The member (`storages`, `tensors` or `pickle`) each case hides its payload in, as torch reads it.
fn payload_member(case: &str) -> &'static str {
    match case {
        "plain" | "sparse_pickle" => "pickle",
        "tensors_symlink" | "tensors_hardlink" => "tensors",
        _ => "storages",
    }
}

#[test]
fn torch_tar_members_are_read_as_torch_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let Some(cases) = tar_cases(dir.path()) else { return };
    for (name, path) in &cases {
        let r = scan(std::fs::read(path).unwrap());
        assert_eq!(r.verdict, Verdict::Dangerous, "{name}: {:#?}", r.findings);
        assert_eq!(r.format, "pytorch-tar", "{name}");
        let hit = r
            .findings
            .iter()
            .find(|f| f.code == "pickle-import-dangerous")
            .unwrap_or_else(|| panic!("{name}: {:#?}", r.findings));
        assert_eq!(hit.member.as_deref(), Some(payload_member(name)), "{name}: {hit:?}");
        assert!(hit.evidence.as_deref().unwrap_or("").contains("MG_MARKER"), "{name}: {hit:?}");
    }
}

#[test]
fn torch_runs_every_tar_case() {
    let dir = tempfile::tempdir().unwrap();
    let Some(cases) = tar_cases(dir.path()) else { return };
    let Some(torch) = torch_python() else { return };
    let files: Vec<&Path> = cases.iter().map(|(_, p)| p.as_path()).collect();
    let fired = payloads_fire(torch, "import torch; torch.load(path)", &files);
    for ((name, _), fired) in cases.iter().zip(fired) {
        assert!(fired, "{name}: torch did not run it");
    }
}

#[test]
fn tar_checksums_and_numbers_as_python_reads_them() {
    // Python reads a header whose fields are written "0o..." or with underscores; `is_header`
    // must agree with `tarfile` on every variant (torch tries a tar before a pickle).
    let Some(py) = python() else { return };
    let mut blocks = Vec::new();
    let base = tar_header("pickle", 3, b'0', b"ustar\0");
    for size in ["0o_3", "+3", " 3 ", "0_3", "3_", "0o", "-3", "\u{1c}3\u{1f}", "3\u{b}", "0O3", "9", "0x3"] {
        let mut h = base;
        h[124..136].fill(0);
        h[124..124 + size.len()].copy_from_slice(size.as_bytes());
        fix_checksum(&mut h);
        blocks.push(h.to_vec());
        // And the checksum itself written the odd way.
        let mut h2 = h;
        let sum: u32 = {
            h2[148..156].copy_from_slice(b"        ");
            h2.iter().map(|&b| u32::from(b)).sum()
        };
        h2[148..156].fill(0);
        let text = format!("0o_{sum:o}");
        h2[148..148 + text.len().min(8)].copy_from_slice(&text.as_bytes()[..text.len().min(8)]);
        blocks.push(h2.to_vec());
    }
    let code = "import sys, tarfile\n\
        for line in sys.stdin.read().split():\n\
        \x20   b = bytes.fromhex(line)\n\
        \x20   try:\n\
        \x20       tarfile.TarInfo.frombuf(b, 'utf-8', 'surrogateescape'); print(1)\n\
        \x20   except tarfile.HeaderError:\n\
        \x20       print(0)\n";
    let input: String =
        blocks.iter().map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>() + "\n").collect();
    let mut child = std::process::Command::new(py)
        .arg("-c")
        .arg(code)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let verdicts: Vec<bool> = String::from_utf8_lossy(&out.stdout).lines().map(|l| l == "1").collect();
    assert_eq!(verdicts.len(), blocks.len());
    for (b, python_says) in blocks.iter().zip(verdicts) {
        assert_eq!(
            modelgate::formats::tar::is_header(b),
            python_says,
            "size {:?} checksum {:?}",
            String::from_utf8_lossy(&b[124..136]),
            String::from_utf8_lossy(&b[148..156])
        );
    }
}

/// `archive/DATA.PKL` is `data.pkl` to torch: miniz looks records up without case.
fn upper_case_zip() -> Vec<u8> {
    zip(&[Z::stored("archive/version", b"3\n"), Z::stored("archive/DATA.PKL", EVIL_PICKLE_TOUCH)])
}

/// `os.system('touch "$MG_MARKER"')`, protocol 2, as torch runs it.
const EVIL_PICKLE_TOUCH: &[u8] =
    b"\x80\x02cposix\nsystem\nq\x00X\x12\x00\x00\x00touch \"$MG_MARKER\"q\x01\x85q\x02Rq\x03.";

#[test]
fn torch_zip_records_are_found_without_case() {
    let r = scan(upper_case_zip());
    assert_eq!(r.format, "pytorch");
    assert_eq!(r.verdict, Verdict::Dangerous);
    assert!(dangerous_at(&r, "archive/DATA.PKL"), "{:#?}", r.findings);
    // Read as the pickle torch reads it: a truncated one is malformed, not unknown bytes.
    let r = scan(zip(&[Z::stored("archive/version", b"3\n"), Z::stored("archive/Data.Pkl", b"\x80\x02X\xff\xff")]));
    assert_eq!(one(&r, "pickle-malformed").member.as_deref(), Some("archive/Data.Pkl"));

    let Some(torch) = torch_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("upper.pt");
    std::fs::write(&p, upper_case_zip()).unwrap();
    assert_eq!(payloads_fire(torch, "import torch; torch.load(path)", &[&p]), [true]);
}

#[test]
fn zip_members_end_at_their_recorded_size() {
    // zipfile (numpy, Keras) and miniz (torch) never yield more than the recorded size: bytes
    // that decompress past it are not the member. A config that is valid JSON only when cut
    // there is read cut there.
    let config = br#"{"class_name": "Lambda", "config": {"name": "l", "function": {"class_name": "__lambda__", "config": {"code": "4wEAAAAAAAAAAAAAAAEAAAADAAAAQwAAAHMIAAAAfABkARcAUwApAk7pAQAAAKkAKQHaAXhyAgAAAHICAAAA+gg8c3RyaW5nPtoIPGxhbWJkYT4BAAAAcwAAAAA=", "defaults": null, "closure": null}}}}"#;
    let mut full = config.to_vec();
    full.extend_from_slice(b" this tail makes the whole not JSON");
    let mut m = Z::deflated("config.json", &full);
    m.usize = config.len() as u64;
    m.crc = crc(config);
    let bytes = zip(&[m]);
    let r = scan(bytes.clone());
    assert_eq!(one(&r, "zip-size-mismatch").severity, Severity::Suspicious);
    assert_eq!(r.verdict, Verdict::Dangerous, "{:#?}", r.findings);

    // Python's zipfile agrees: it yields exactly the recorded size.
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.keras");
    std::fs::write(&p, &bytes).unwrap();
    let out = run_python(
        py,
        "import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read('config.json'))",
        &[p.as_os_str()],
    );
    assert_eq!(out, config);
}

#[test]
fn stored_members_are_read_at_both_sizes() {
    // A stored member whose recorded sizes differ: zipfile yields the smaller, miniz (with
    // zip64 sizes) the uncompressed size. Both readings are scanned.
    let config = br#"{"class_name": "Lambda", "config": {"name": "l", "function": {"class_name": "__lambda__", "config": {"code": "4wEAAAAAAAAAAAAAAAEAAAADAAAAQwAAAHMIAAAAfABkARcAUwApAk7pAQAAAKkAKQHaAXhyAgAAAHICAAAA+gg8c3RyaW5nPtoIPGxhbWJkYT4BAAAAcwAAAAA=", "defaults": null, "closure": null}}}}"#;
    let mut full = config.to_vec();
    full.extend_from_slice(b" not JSON past the recorded size");
    let mut m = Z::stored("config.json", &full);
    m.usize = config.len() as u64;
    m.crc = crc(config);
    let bytes = zip(&[m]);
    let r = scan(bytes.clone());
    assert_eq!(one(&r, "zip-size-mismatch").severity, Severity::Suspicious);
    assert_eq!(r.verdict, Verdict::Dangerous, "{:#?}", r.findings);

    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.keras");
    std::fs::write(&p, &bytes).unwrap();
    let out = run_python(
        py,
        "import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read('config.json'))",
        &[p.as_os_str()],
    );
    assert_eq!(out, config);
}
