//! The zip reader: structure, tampering findings, member paths and budgets.
mod containers_util;

use containers_util::*;
use modelgate::engine::ScanOptions;
use modelgate::finding::{Severity, Verdict};
use modelgate::source::{FileSource, Source};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[test]
fn members_are_handed_back_with_their_paths() {
    let inner = zip(&[Z::stored("deep/x.npy", &npy_probe())]);
    let r = scan(zip(&[
        Z::stored("a.npy", &npy_probe()),
        Z::deflated("b/c.npy", &npy_probe()),
        Z::stored("inner.zip", &inner),
        Z::stored("ok.npy", &npy_f4(3)),
    ]));
    assert_eq!(r.format, "zip");
    let members: Vec<_> = find(&r, "npy-bad-header").iter().map(|f| f.member.clone().unwrap()).collect();
    assert_eq!(members, ["a.npy", "b/c.npy", "inner.zip!deep/x.npy"]);
    assert_eq!(r.verdict, Verdict::Error);
}

#[test]
fn clean_zip_is_safe_and_npz_is_labelled() {
    let r = scan(zip(&[Z::stored("readme.txt", b"hello"), Z::stored("w.npy", &npy_f4(2))]));
    assert_eq!(r.format, "zip");
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert_eq!(r.verdict, Verdict::Safe);

    let r = scan(zip(&[Z::stored("a.npy", &npy_f4(2)), Z::deflated("b.npy", &npy_f4(100))]));
    assert_eq!(r.format, "numpy-npz");
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
}

#[test]
fn torch_zip_is_labelled_under_any_top_folder() {
    assert_eq!(scan(torch_zip(b"\x80\x02}q\x00.")).format, "pytorch");
    let r = scan(zip(&[Z::stored("my_model/data.pkl", b"\x80\x02}.")]));
    assert_eq!(r.format, "pytorch");
    let r = scan(zip(&[Z::stored("data.pkl", b"\x80\x02}.")]));
    assert_eq!(r.format, "pytorch");
    let r = scan(zip(&[Z::stored("data.pkl.bak", b"\x80\x02}.")]));
    assert_eq!(r.format, "zip");
}

#[test]
fn torch_storages_are_raw_data() {
    // A storage that happens to start like an .npy is still sniffed (unmistakable magic), but a
    // storage that starts like a text pickle is not probed as one.
    let r = scan(zip(&[
        Z::stored("archive/data.pkl", b"\x80\x02}."),
        Z::stored("archive/data/0", &npy_probe()),
        Z::stored("archive/data/1", b"(lp0\nI1\na."),
    ]));
    assert_eq!(r.format, "pytorch");
    assert_eq!(one(&r, "npy-bad-header").member.as_deref(), Some("archive/data/0"));
    assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
}

#[test]
fn crc_mismatch_is_reported_for_stored_and_deflated() {
    let mut a = Z::stored("archive/data.pkl", b"\x80\x02}.");
    a.crc ^= 1;
    let mut b = Z::deflated("x.bin", b"hello hello hello hello");
    b.crc = 7;
    let r = scan(zip(&[a, b]));
    let members: Vec<_> = find(&r, "zip-crc-mismatch").iter().map(|f| f.member.clone().unwrap()).collect();
    assert_eq!(members, ["archive/data.pkl", "x.bin"]);
    assert_eq!(one(&r, "zip-crc-mismatch").severity, Severity::Suspicious);
    assert_eq!(r.verdict, Verdict::Suspicious);
}

#[test]
fn flag_bits_are_reported_and_ignored() {
    for (flag, code) in [(0x20, "zip-flag-patched"), (0x40, "zip-flag-strong-encryption")] {
        let r = scan(zip(&[Z::stored("m/a.npy", &npy_probe()).flags(flag)]));
        assert_eq!(one(&r, code).member.as_deref(), Some("m/a.npy"));
        // The member was read anyway.
        assert_eq!(one(&r, "npy-bad-header").member.as_deref(), Some("m/a.npy"));
    }
    // Flag 0x1 on plaintext: read like torch reads it, and reported.
    let r = scan(zip(&[Z::stored("m/a.npy", &npy_f4(4)).flags(1)]));
    let f = one(&r, "zip-flag-encrypted");
    assert!(f.message.contains("numpy"), "{}", f.message);
    assert_eq!(r.verdict, Verdict::Suspicious);
    // Really encrypted bytes: what they hold cannot be judged, so the file fails closed.
    let mut enc = Z::stored("secret.txt", &[0x9d, 0x11, 0xe3, 0x42, 0x07, 0xc8, 0x5a, 0x31, 0x99, 0x00, 0xfe]);
    enc.crc = 0x1234_5678;
    let r = scan(zip(&[enc.flags(1)]));
    assert_eq!(codes(&r), ["zip-encrypted-member"]);
    assert_eq!(one(&r, "zip-encrypted-member").severity, Severity::Error);
    assert_eq!(r.verdict, Verdict::Error);
}

#[test]
fn local_name_mismatch_uses_the_central_name() {
    let mut m = Z::stored("archive/data.pkl", &npy_probe());
    m.local_name = Some("archive/datap.kl".into());
    let r = scan(zip(&[m]));
    let f = one(&r, "zip-local-name-mismatch");
    assert_eq!(f.member.as_deref(), Some("archive/data.pkl"));
    assert!(f.evidence.as_deref().unwrap().contains("archive/datap.kl"));
    assert_eq!(r.format, "pytorch");
}

#[test]
fn prepended_bytes_are_detected_scanned_and_offsets_adjusted() {
    let o = ZipOpts { prepend: b"#!/bin/sh\necho not a zip\n".to_vec(), ..Default::default() };
    let r = scan(zip_opts(&[Z::stored("a.npy", &npy_probe()), Z::stored("b.txt", b"b")], &o));
    assert_eq!(r.format, "zip");
    assert_eq!(one(&r, "zip-prepended-data").offset, Some(0));
    assert_eq!(one(&r, "npy-bad-header").member.as_deref(), Some("a.npy"));

    // A polyglot: the head is an .npy (what np.load and torch.load read), the tail a zip (what
    // zipfile reads). Both are scanned.
    let o = ZipOpts { prepend: npy_probe(), ..Default::default() };
    let r = scan(zip_opts(&[Z::stored("a.npy", &npy_probe())], &o));
    assert_eq!(r.format, "numpy");
    let members: Vec<_> = find(&r, "npy-bad-header").iter().map(|f| f.member.clone()).collect();
    assert_eq!(members, [None, Some("a.npy".to_string())]);
    assert_eq!(one(&r, "zip-prepended-data").offset, Some(0));
}

#[test]
fn prepended_garbage_is_found_through_the_end_record() {
    let o = ZipOpts { prepend: vec![0xEE; 3000], comment: b"a comment".to_vec(), ..Default::default() };
    let r = scan(zip_opts(&[Z::stored("inner/a.npy", &npy_probe()), Z::stored("c", b"")], &o));
    assert_eq!(r.format, "zip");
    assert_eq!(one(&r, "npy-bad-header").member.as_deref(), Some("inner/a.npy"));
    assert_eq!(one(&r, "zip-prepended-data").severity, Severity::Suspicious);
}

#[test]
fn duplicate_names_and_overlaps() {
    let r = scan(zip(&[Z::stored("a.npy", &npy_probe()), Z::stored("a.npy", &npy_f4(1))]));
    assert_eq!(one(&r, "zip-duplicate-name").member.as_deref(), Some("a.npy"));
    assert_eq!(find(&r, "npy-bad-header").len(), 1);

    // Two entries pointing at the same local header (the overlap zip bombs use).
    let mut b = Z::stored("b.npy", &npy_probe());
    b.offset = Some(0);
    let r = scan(zip(&[Z::stored("a.npy", &npy_probe()), b]));
    assert_eq!(one(&r, "zip-overlapping-members").severity, Severity::Suspicious);
}

#[test]
fn zip_slip_names_are_dangerous() {
    for name in ["../../etc/evil.txt", "/etc/passwd", "C:\\Windows\\evil.dll", "a/../../b", "..\\x"] {
        let r = scan(zip(&[Z::stored(name, b"x"), Z::stored("fine.txt", b"y")]));
        let f = one(&r, "zip-path-traversal");
        assert_eq!(f.member.as_deref(), Some(name));
        assert_eq!(f.severity, Severity::Dangerous);
        assert_eq!(r.verdict, Verdict::Dangerous, "{name}");
    }
}

#[test]
fn unsupported_methods_are_errors() {
    let mut m = Z::stored("a.npy", &npy_probe());
    m.method = 9;
    let r = scan(zip(&[m, Z::stored("b.npy", &npy_probe())]));
    let f = one(&r, "zip-unsupported-method");
    assert_eq!(f.member.as_deref(), Some("a.npy"));
    assert!(f.message.contains("deflate64"));
    assert_eq!(find(&r, "npy-bad-header").len(), 1);
    assert_eq!(r.verdict, Verdict::Error);
}

#[test]
fn bzip2_and_lzma_members_are_decoded() {
    let probe = npy_probe();
    let mut b = Z::stored("b.npy", &probe);
    b.method = 12;
    b.raw = bzip2(&probe);
    // Zip's LZMA: version, properties size, the 5 property bytes, then the raw stream.
    let alone = lzma_alone(&probe);
    let mut l = Z::stored("l.npy", &probe);
    l.method = 14;
    l.flags = 0x2;
    l.raw = [&[9u8, 20, 5, 0][..], &alone[..5], &alone[13..]].concat();
    let r = scan(zip(&[b, l]));
    let members: Vec<_> = find(&r, "npy-bad-header").iter().map(|f| f.member.clone().unwrap()).collect();
    assert_eq!(members, ["b.npy", "l.npy"], "{:#?}", r.findings);
    assert!(find(&r, "zip-crc-mismatch").is_empty());
}

/// Python 3.14's `zipfile` reads zstd members (method 93), so `np.load` of such an `.npz` runs
/// the pickle of an object array inside.
#[test]
fn zstd_members_are_decoded() {
    let evil = npy_object(b"\x80\x02cposix\nsystem\nX\x0b\x00\x00\x00echo pwnedq\x00\x85R.");
    let r = scan(zip(&[Z::zstd("w.npy", &npy_f4(100)), Z::zstd("obj.npy", &evil)]));
    assert_eq!(r.format, "numpy-npz");
    assert!(dangerous_at(&r, "obj.npy"), "{:#?}", r.findings);
    assert!(find(&r, "zip-crc-mismatch").is_empty() && find(&r, "zip-unsupported-method").is_empty());
    // A broken zstd member is an error, not a pass.
    let mut z = Z::zstd("obj.npy", &evil);
    z.raw.truncate(z.raw.len() / 2);
    assert_eq!(scan(zip(&[z])).verdict, Verdict::Error);
}

#[test]
fn member_count_is_capped() {
    let members: Vec<Z> = (0..10).map(|i| Z::stored(&format!("m{i}.npy"), &npy_probe())).collect();
    let opts = ScanOptions { max_members: 4, ..Default::default() };
    let r = scan_with(zip(&members), &opts);
    assert_eq!(one(&r, "zip-too-many-members").severity, Severity::Error);
    assert_eq!(find(&r, "npy-bad-header").len(), 4);
}

#[test]
fn entry_count_mismatch_is_reported_and_all_entries_scanned() {
    let o = ZipOpts { count: Some(1), ..Default::default() };
    let r = scan(zip_opts(&[Z::stored("a.npy", &npy_probe()), Z::stored("b.npy", &npy_probe())], &o));
    assert_eq!(one(&r, "zip-entry-count-mismatch").severity, Severity::Suspicious);
    assert_eq!(find(&r, "npy-bad-header").len(), 2);
}

#[test]
fn bombs_are_bounded() {
    // A pickle member is read whole (the loader reads it whole): 4 MiB of zeros from a few KiB.
    let zeros = vec![0u8; 4 << 20];
    let m = Z::deflated("archive/data.pkl", &zeros);
    assert!(m.raw.len() < 8 << 10);
    let opts = ScanOptions { max_expanded_bytes: 1 << 20, ..Default::default() };
    let r = scan_with(zip(&[m]), &opts);
    assert_eq!(one(&r, "expansion-budget-exceeded").severity, Severity::Error);
    assert_eq!(one(&r, "zip-compression-ratio").member.as_deref(), Some("archive/data.pkl"));
    assert!(find(&r, "zip-member-corrupt").is_empty(), "the budget is not damage: {:#?}", r.findings);
    // Zeros are also not a pickle, and a data.pkl the loader cannot read is malformed.
    assert_eq!(r.verdict, Verdict::Dangerous);

    // A nested archive must be buffered whole to be opened: the budget stops that too.
    let inner = zip(&[Z::stored("zeros.bin", &zeros)]);
    let r = scan_with(zip(&[Z::deflated("inner.zip", &inner)]), &opts);
    assert_eq!(one(&r, "expansion-budget-exceeded").severity, Severity::Error);
}

#[test]
fn nesting_depth_is_limited() {
    let mut z = zip(&[Z::stored("x.npy", &npy_probe())]);
    for i in 0..6 {
        z = zip(&[Z::stored(&format!("l{i}.zip"), &z)]);
    }
    let opts = ScanOptions { max_depth: 3, ..Default::default() };
    let r = scan_with(z.clone(), &opts);
    let f = one(&r, "container-too-deep");
    assert_eq!(f.member.as_deref(), Some("l5.zip!l4.zip!l3.zip!l2.zip"));
    assert!(find(&r, "npy-bad-header").is_empty());
    // With the default depth the innermost member is reached.
    let r = scan(z);
    assert_eq!(one(&r, "npy-bad-header").member.as_deref(), Some("l5.zip!l4.zip!l3.zip!l2.zip!l1.zip!l0.zip!x.npy"));
}

#[test]
fn zip64_records_are_read() {
    let o = ZipOpts { zip64: true, ..Default::default() };
    let r = scan(zip_opts(&[Z::stored("a.npy", &npy_f4(1)), Z::deflated("b/c.npy", &npy_probe())], &o));
    assert_eq!(one(&r, "npy-bad-header").member.as_deref(), Some("b/c.npy"));
    assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
}

#[test]
fn truncated_and_broken_archives_are_errors() {
    let z = zip(&[Z::stored("a.npy", &npy_f4(16))]);
    // Cut inside the member: no end record at all.
    let r = scan(z[..40].to_vec());
    assert_eq!(r.format, "zip");
    assert_eq!(one(&r, "zip-no-end-record").severity, Severity::Error);

    // A member whose data runs past the end of the file.
    let mut m = Z::stored("a.npy", &npy_f4(16));
    m.raw.truncate(10);
    let mut z = zip(&[m]);
    // Make the declared compressed size larger than what is there.
    let cd = z.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    z[cd + 20..cd + 24].copy_from_slice(&5000u32.to_le_bytes());
    let r = scan(z);
    assert_eq!(one(&r, "zip-member-truncated").member.as_deref(), Some("a.npy"));

    // A local header offset that points at nothing.
    let mut m = Z::stored("a.npy", &npy_f4(1));
    m.offset = Some(3);
    let r = scan(zip(&[m]));
    assert_eq!(one(&r, "zip-bad-local-header").member.as_deref(), Some("a.npy"));

    // Garbage instead of the second central-directory entry: the first member is still scanned.
    let mut z = zip(&[Z::stored("a.npy", &npy_probe()), Z::stored("b.npy", &npy_probe())]);
    let second = z.windows(4).rposition(|w| w == b"PK\x01\x02").unwrap();
    z[second..second + 4].copy_from_slice(b"XXXX");
    let r = scan(z);
    assert_eq!(one(&r, "zip-bad-central-directory").severity, Severity::Error);
    assert_eq!(one(&r, "npy-bad-header").member.as_deref(), Some("a.npy"));

    // Corrupt deflate data.
    let mut m = Z::deflated("a.npy", &npy_probe());
    m.raw = vec![0xff; 40];
    let r = scan(zip(&[m]));
    assert_eq!(one(&r, "zip-member-corrupt").member.as_deref(), Some("a.npy"));
}

/// An 8 GiB torch checkpoint of 4,096 stored 2 MiB tensors (a sparse file) is judged without
/// reading its tensors.
#[test]
fn huge_torch_zip_reads_no_tensor_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.pt");
    let n = 4096u64;
    let tensor = 2u64 << 20;
    let mut file = std::fs::File::create(&path).unwrap();
    use std::io::{Seek, SeekFrom, Write};
    let mut cd = Vec::new();
    let mut pos = 0u64;
    let mut write_member = |file: &mut std::fs::File, name: &str, data: Option<&[u8]>, size: u64, cd: &mut Vec<u8>| {
        let crc32 = data.map_or(0, crc);
        let mut h = Vec::new();
        h.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00");
        h.extend_from_slice(&crc32.to_le_bytes());
        h.extend_from_slice(&(size as u32).to_le_bytes());
        h.extend_from_slice(&(size as u32).to_le_bytes());
        h.extend_from_slice(&(name.len() as u16).to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        h.extend_from_slice(name.as_bytes());
        file.seek(SeekFrom::Start(pos)).unwrap();
        file.write_all(&h).unwrap();
        if let Some(d) = data {
            file.write_all(d).unwrap();
        }
        cd.extend_from_slice(b"PK\x01\x02\x14\x00\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00");
        cd.extend_from_slice(&crc32.to_le_bytes());
        cd.extend_from_slice(&(size as u32).to_le_bytes());
        cd.extend_from_slice(&(size as u32).to_le_bytes());
        cd.extend_from_slice(&(name.len() as u16).to_le_bytes());
        cd.extend_from_slice(&12u16.to_le_bytes());
        cd.extend_from_slice(&[0u8; 10]);
        cd.extend_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
        cd.extend_from_slice(name.as_bytes());
        cd.extend_from_slice(&1u16.to_le_bytes());
        cd.extend_from_slice(&8u16.to_le_bytes());
        cd.extend_from_slice(&pos.to_le_bytes());
        pos += h.len() as u64 + size;
    };
    let pkl: &[u8] = b"\x80\x02}q\x00.";
    write_member(&mut file, "archive/data.pkl", Some(pkl), pkl.len() as u64, &mut cd);
    for i in 0..n {
        write_member(&mut file, &format!("archive/data/{i}"), None, tensor, &mut cd);
    }
    let cd_start = pos;
    let mut tail = cd.clone();
    let z64 = cd_start + cd.len() as u64;
    tail.extend_from_slice(b"PK\x06\x06");
    tail.extend_from_slice(&44u64.to_le_bytes());
    tail.extend_from_slice(&[45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    tail.extend_from_slice(&(n + 1).to_le_bytes());
    tail.extend_from_slice(&(n + 1).to_le_bytes());
    tail.extend_from_slice(&(cd.len() as u64).to_le_bytes());
    tail.extend_from_slice(&cd_start.to_le_bytes());
    tail.extend_from_slice(b"PK\x06\x07\x00\x00\x00\x00");
    tail.extend_from_slice(&z64.to_le_bytes());
    tail.extend_from_slice(&1u32.to_le_bytes());
    tail.extend_from_slice(b"PK\x05\x06\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00");
    file.seek(SeekFrom::Start(cd_start)).unwrap();
    file.write_all(&tail).unwrap();
    drop(file);

    let src = Arc::new(Counting { inner: FileSource::open(&path).unwrap(), read: AtomicU64::new(0) });
    assert!(src.len() > 8 << 30);
    let r = modelgate::engine::scan_source("big.pt", src.clone(), &ScanOptions::default());
    assert_eq!(r.format, "pytorch");
    assert!(r.findings.is_empty(), "{:#?}", &r.findings[..r.findings.len().min(5)]);
    assert_eq!(r.verdict, Verdict::Safe);
    // The tensors are never read: the central directory, the local headers, data.pkl and the
    // few head bytes sniffed per tensor member are (speed is measured in bench/, not here).
    let read = src.read.load(Ordering::Relaxed);
    assert!(read < (n + 1) * 1024 + (1 << 20), "read {read} bytes of an 8 GiB file");
}

/// A source that counts the bytes read from it.
struct Counting {
    inner: FileSource,
    read: AtomicU64,
}

impl Source for Counting {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read_at(offset, buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Mutated zips read by CPython's `zipfile` and torch's zip reader
/// (tests/fixtures/containers/zip_differential.py): every member either loader yields whose
/// bytes start with a payload pickle (`mkNNN.system('echo mkNNN')`) is seen by the scan (its
/// marker is in the evidence), whatever the names, duplicates, flags, data descriptors, zip64
/// records, prepended bytes, comments or methods. Where the scan misses one, the archive must
/// be rejected as `error`, and that stays the exception. Benign archives both loaders read
/// cleanly are not rejected.
#[test]
fn members_either_loader_reads_are_scanned() {
    use base64::Engine;
    use std::collections::BTreeSet;
    // torch's reader when /usr/bin/python3 has torch; CPython's zipfile alone otherwise.
    let Some(py) = torch_python().or_else(python) else { return };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/containers/zip_differential.py");
    let out = std::process::Command::new(py).args([script, "11", "2500"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (mut compared, mut with_torch, mut closed, mut payloads) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for (i, line) in String::from_utf8(out.stdout).unwrap().lines().enumerate() {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let zip = base64::engine::general_purpose::STANDARD.decode(case["zip"].as_str().unwrap()).unwrap();
        let mut expected = BTreeSet::new();
        let mut clean = true;
        for loader in ["zipfile", "torch"] {
            match &case[loader] {
                serde_json::Value::Array(members) => {
                    for m in members {
                        if let Some(mark) = m[1].as_str() {
                            expected.insert(mark.to_string());
                        }
                        if loader == "zipfile" && m[2] != serde_json::Value::Bool(true) {
                            clean = false;
                        }
                    }
                    if loader == "torch" {
                        with_torch += 1;
                    }
                }
                serde_json::Value::Null => {}
                _ => clean = false,
            }
        }
        let r = scan(zip);
        compared += 1;
        payloads += expected.len();
        // The payload's import is named after its marker (`mkNNN.system`).
        let seen: BTreeSet<String> = r
            .findings
            .iter()
            .flat_map(|f| f.message.match_indices("imports mk").map(|(at, _)| f.message.get(at + 8..at + 13)))
            .flatten()
            .map(str::to_string)
            .collect();
        let missed: Vec<_> = expected.difference(&seen).collect();
        if !missed.is_empty() {
            if r.verdict == Verdict::Error {
                closed += 1;
                if closed < 10 {
                    eprintln!("case {i}: {missed:?} not seen, but failed closed: {:?}", codes(&r));
                }
            } else {
                failures.push(format!(
                    "case {i}: {missed:?} read by a loader, not seen ({:?}); zipfile {}, torch {}",
                    r.verdict, case["zipfile"], case["torch"]
                ));
            }
        }
        let benign_clean = case["benign"] == true && clean && case["torch"].is_array();
        if benign_clean && case["base"] == true && matches!(r.verdict, Verdict::Error | Verdict::Dangerous) {
            failures.push(format!("case {i}: a benign archive both loaders read is {:?}: {:?}", r.verdict, codes(&r)));
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert!(compared > 2000, "{compared}");
    assert!(payloads > 1000, "{payloads}");
    // Failing closed where a loader read a payload is safe, but it must stay the exception.
    assert!(closed * 20 < compared, "{closed} of {compared} failed closed instead of seeing the member");
    eprintln!(
        "{compared} archives ({with_torch} with torch), {payloads} payloads read by a loader, {closed} failed closed"
    );
}

fn positions(b: &[u8], sig: &[u8]) -> Vec<usize> {
    b.windows(sig.len()).enumerate().filter(|(_, w)| *w == sig).map(|(i, _)| i).collect()
}

/// Both loaders take the encryption flag from the central directory (`zipfile.ZipFile.open`
/// reads `zinfo.flag_bits`, miniz `mz_zip_reader_file_stat`): a flag set only in a local
/// header changes nothing they read, so it cannot make a plaintext member unjudgeable.
#[test]
fn a_local_encryption_flag_is_not_read() {
    let mut z = zip(&[Z::stored("m/version", b"3\n"), Z::stored("m/a.npy", &npy_f4(4))]);
    for at in positions(&z, b"PK\x03\x04") {
        z[at + 6] |= 1;
    }
    let r = scan(z);
    assert!(find(&r, "zip-encrypted-member").is_empty(), "{:#?}", r.findings);
    assert!(find(&r, "zip-flag-encrypted").is_empty(), "{:#?}", r.findings);
    assert_eq!(r.verdict, Verdict::Safe, "{:#?}", r.findings);
}

/// Bytes removed before the central directory: Python's zipfile shifts every recorded offset
/// by where the directory really is (`concat` in `_RealGetContents`, negative here), so the
/// members behind the cut are read, and so are they here.
#[test]
fn bytes_removed_before_the_directory_shift_offsets_down() {
    let mut z = zip(&[Z::stored("a.txt", b"hello world!"), Z::stored("b.npy", &npy_probe())]);
    let second = positions(&z, b"PK\x03\x04")[1];
    z.drain(second - 4..second);
    let r = scan(z);
    assert_eq!(one(&r, "npy-bad-header").member.as_deref(), Some("b.npy"), "{:#?}", r.findings);
    // a.txt's recorded offset 0 now lies before the file: unreadable to zipfile, an error here.
    assert_eq!(one(&r, "zip-bad-local-header").member.as_deref(), Some("a.txt"));
}

/// A central-directory entry whose comment (name, extra field) runs past the directory's end:
/// zipfile reads the directory's bytes into a BytesIO and takes what is left, so the entry
/// stands and its member is read.
#[test]
fn central_entry_fields_are_cut_at_the_directory_end() {
    let mut z = zip(&[Z::stored("a.txt", b"hello"), Z::stored("b.npy", &npy_probe())]);
    let last = *positions(&z, b"PK\x01\x02").last().unwrap();
    z[last + 32..last + 34].copy_from_slice(&600u16.to_le_bytes());
    let r = scan(z);
    assert_eq!(one(&r, "npy-bad-header").member.as_deref(), Some("b.npy"), "{:#?}", r.findings);
    assert_eq!(one(&r, "zip-entry-cut").severity, Severity::Suspicious);
    assert!(find(&r, "zip-bad-central-directory").is_empty(), "{:#?}", r.findings);
}
