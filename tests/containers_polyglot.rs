//! Polyglots: bytes that two loaders read as two different things are judged both ways. h5py
//! finds a superblock at 0, 512, 1024, ... whatever the head is; `zipfile` reads from the end
//! record whatever precedes it; `tarfile` reads a header at 0 whatever magic the rest has.
mod containers_util;

use containers_util::*;
use modelgate::finding::Verdict;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/containers/polyglot/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Made by make_polyglots.py with h5py (which loads each) and the other format's own reader
/// where Python has one: a Keras model with a Lambda layer behind a user block that starts as
/// another format.
const POLYGLOTS: &[(&str, &str)] = &[
    ("polyglot_gguf.h5", "gguf"),
    ("polyglot_pickle.h5", "pickle"),
    ("polyglot_npy.h5", "numpy"),
    ("polyglot_safetensors.h5", "safetensors"),
    ("polyglot_tflite.h5", "tflite"),
    ("polyglot_zip.h5", "zip"),
];

fn lambda_found(r: &modelgate::engine::FileReport) -> bool {
    r.findings
        .iter()
        .any(|f| f.code == "keras-lambda-layer" && f.evidence.as_deref().unwrap_or("").contains("modelgate"))
}

#[test]
fn hdf5_behind_any_head_is_read_as_h5py_reads_it() {
    for (name, head) in POLYGLOTS {
        let r = scan(fixture(name));
        assert_eq!(r.format, *head, "{name}");
        assert_eq!(r.verdict, Verdict::Dangerous, "{name}: {:#?}", r.findings);
        assert!(lambda_found(&r), "{name}: {:#?}", r.findings);
    }
}

#[test]
fn hdf5_behind_any_head_in_a_stream_too() {
    // Decompressed bytes (a .h5.gz, a deflated member) are looked at the same way.
    for (name, _) in POLYGLOTS {
        let bytes = fixture(name);
        let r = scan(gzip(&bytes));
        assert!(lambda_found(&r), "gzip {name}: {:#?}", r.findings);
        let r = scan(zip(&[Z::deflated("model.h5", &bytes)]));
        assert!(lambda_found(&r), "zip member {name}: {:#?}", r.findings);
        assert_eq!(r.verdict, Verdict::Dangerous);
    }
}

#[test]
fn hdf5_members_of_torch_archives_are_read_too() {
    // A member torch reads as a pickle can still be an HDF5 file to whoever extracts it.
    let r = scan(zip(&[Z::stored("archive/data.pkl", &fixture("polyglot_pickle.h5"))]));
    assert_eq!(r.format, "pytorch");
    assert!(lambda_found(&r), "{:#?}", r.findings);
}

/// A Keras 3 config with a Lambda layer (marshalled bytecode).
const LAMBDA_CONFIG: &[u8] = br#"{"class_name": "Lambda", "config": {"name": "l", "function": {"class_name": "__lambda__", "config": {"code": "4wEAAAAAAAAAAAAAAAEAAAADAAAAQwAAAHMIAAAAfABkARcAUwApAk7pAQAAAKkAKQHaAXhyAgAAAHICAAAA+gg8c3RyaW5nPtoIPGxhbWJkYT4BAAAAcwAAAAA=", "defaults": null, "closure": null}}}}"#;

#[test]
fn zip_behind_any_head_is_read_as_zipfile_reads_it() {
    // Keras opens a `.keras` file with zipfile, which finds the archive from its end: a GGUF,
    // safetensors, HDF5 or TFLite head in front changes nothing for it.
    let polyglot = fixture("polyglot_gguf.h5");
    let heads: Vec<(&str, Vec<u8>)> = vec![
        ("gguf", polyglot[..64].to_vec()),
        (
            "hdf5",
            std::fs::read(format!("{}/tests/fixtures/formats/weights_only.h5", env!("CARGO_MANIFEST_DIR"))).unwrap(),
        ),
        ("safetensors", fixture("polyglot_safetensors.h5")[..48].to_vec()),
        ("tflite", fixture("polyglot_tflite.h5")[..16].to_vec()),
        // Heads that detection leaves unknown or probes as a pickle (it looks at the end
        // for an archive then), and a whole pickle (it does not).
        ("text", b"nothing a loader reads\n".to_vec()),
        ("pickle probe", b"(lp0\n".to_vec()),
        ("pickle", b"\x80\x02K\x01.".to_vec()),
    ];
    for (what, head) in heads {
        let bytes =
            zip_opts(&[Z::deflated("config.json", LAMBDA_CONFIG)], &ZipOpts { prepend: head, ..Default::default() });
        let r = scan(bytes);
        assert_eq!(r.verdict, Verdict::Dangerous, "{what}: {:#?}", r.findings);
        assert!(r.findings.iter().any(|f| f.code == "keras-lambda-layer"), "{what}: {:#?}", r.findings);
        // a zip after a TFLite model is how associated files travel (an info, not a tag)
        let layout = if what == "tflite" { "tflite-associated-files" } else { "zip-prepended-data" };
        assert!(r.findings.iter().any(|f| f.code == layout), "{what}");
    }
}

#[test]
fn tar_header_in_front_of_a_zip_is_read_as_tarfile_reads_it() {
    // The first 512 bytes are a zip local header (and name) and a valid tar header at once:
    // zipfile sees a member of tar header bytes, tarfile a member holding a pickle.
    let name = "n".repeat(60);
    let local_len = 30 + name.len();
    let mut block = tar_header("x", EVIL_PICKLE.len() as u64, b'0', b"ustar\0");
    // The zip local header and its name take the tar name field (100 bytes).
    block[..100].fill(0);
    let mut local = b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00".to_vec();
    local.extend_from_slice(&[0; 12]); // crc, sizes: patched below
    local.extend_from_slice(&(name.len() as u16).to_le_bytes());
    local.extend_from_slice(&0u16.to_le_bytes());
    local.extend_from_slice(name.as_bytes());
    assert_eq!(local.len(), local_len);
    block[..local_len].copy_from_slice(&local);
    // The stored member runs from the end of the local header to the end of the tar data.
    let mut data = block[local_len..].to_vec();
    data.extend_from_slice(EVIL_PICKLE);
    data.resize(512 - local_len + 512, 0);
    let csize = data.len() as u32;
    let c = crc(&data);
    for (at, v) in [(14, c), (18, csize), (22, csize)] {
        block[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    fix_checksum(&mut block);
    let mut file = block.to_vec();
    file.extend_from_slice(EVIL_PICKLE);
    file.resize(1024, 0);
    // Central directory and end record.
    let cd_at = file.len() as u32;
    let mut cd = b"PK\x01\x02\x14\x00\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00".to_vec();
    cd.extend_from_slice(&c.to_le_bytes());
    cd.extend_from_slice(&csize.to_le_bytes());
    cd.extend_from_slice(&csize.to_le_bytes());
    cd.extend_from_slice(&(name.len() as u16).to_le_bytes());
    cd.extend_from_slice(&[0; 12]);
    cd.extend_from_slice(&0u32.to_le_bytes());
    cd.extend_from_slice(name.as_bytes());
    let cd_len = cd.len() as u32;
    file.extend_from_slice(&cd);
    file.extend_from_slice(b"PK\x05\x06\0\0\0\0\x01\0\x01\0");
    file.extend_from_slice(&cd_len.to_le_bytes());
    file.extend_from_slice(&cd_at.to_le_bytes());
    file.extend_from_slice(&[0, 0]);
    assert!(modelgate::formats::tar::is_header(&file[..512]));
    let r = scan(file.clone());
    assert_eq!(r.format, "zip");
    assert_eq!(r.verdict, Verdict::Dangerous, "{:#?}", r.findings);

    // Python's tarfile and zipfile both read it.
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("both");
    std::fs::write(&p, &file).unwrap();
    let out = run_python(
        py,
        "import sys, tarfile, zipfile\n\
         t = tarfile.open(sys.argv[1])\n\
         m = t.getmembers()[0]\n\
         sys.stdout.buffer.write(t.extractfile(m).read())\n\
         assert zipfile.ZipFile(sys.argv[1]).namelist() == ['n' * 60]\n",
        &[p.as_os_str()],
    );
    assert_eq!(out, EVIL_PICKLE);
}

#[test]
fn a_superblock_deep_in_a_stream_is_not_passed_over() {
    // Decompressed data is held only 1 MiB deep to look for a superblock; one further in (a
    // bigger user block) cannot be read, and says so, whatever the head is.
    for head in [&b"\x80\x02}q\x00."[..], b"\xff\xd8\xff\xe0 some image"] {
        for at in [1usize << 20, 4 << 20] {
            let mut data = head.to_vec();
            data.resize(at, 0);
            data.extend_from_slice(b"\x89HDF\r\n\x1a\n");
            data.resize(at + 4096, 0);
            for r in [scan(gzip(&data)), scan(zip(&[Z::deflated("model.h5", &data)]))] {
                let f = one(&r, "hdf5-superblock-unread");
                assert_eq!(f.offset, Some(at as u64));
                assert_eq!(r.verdict, Verdict::Error);
            }
        }
    }
    // Not at a power of two: no superblock for h5py.
    let mut data = vec![0u8; 3 << 20];
    data[(3 << 20) - 100..(3 << 20) - 92].copy_from_slice(b"\x89HDF\r\n\x1a\n");
    assert!(find(&scan(gzip(&data)), "hdf5-superblock-unread").is_empty());
}

#[test]
fn a_deflated_torch_pickle_that_is_also_hdf5() {
    // torch reads archive/data.pkl as a pickle; extracted, h5py reads the same bytes as HDF5.
    let r = scan(zip(&[Z::deflated("archive/data.pkl", &fixture("polyglot_pickle.h5"))]));
    assert_eq!(r.format, "pytorch");
    assert!(lambda_found(&r), "{:#?}", r.findings);
}
