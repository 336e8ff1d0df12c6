//! End to end: a harmless `os.system('echo pwned')` pickle inside every container and wrapper
//! must come out Dangerous at the right member path. These need the real pickle parser.
mod containers_util;

use containers_util::*;
use modelgate::engine::FileReport;
use modelgate::finding::Verdict;

fn assert_dangerous(r: &FileReport, member: Option<&str>) {
    assert_eq!(r.verdict, Verdict::Dangerous, "{} {:#?} {:#?}", r.format, r.findings, r.imports);
    let hit = r
        .findings
        .iter()
        .any(|f| f.severity == modelgate::finding::Severity::Dangerous && f.member.as_deref() == member);
    assert!(hit, "no dangerous finding at {member:?}: {:#?}", r.findings);
}

const DATA_PKL: Option<&str> = Some("archive/data.pkl");

#[test]
fn torch_zip_stored_and_deflated() {
    assert_dangerous(&scan(torch_zip(EVIL_PICKLE)), DATA_PKL);
    let r = scan(zip(&[Z::deflated("archive/data.pkl", EVIL_PICKLE), Z::stored("archive/version", b"3\n")]));
    assert_eq!(r.format, "pytorch");
    assert_dangerous(&r, DATA_PKL);
    // Whatever the top folder is called.
    assert_dangerous(&scan(zip(&[Z::stored("resnet/data.pkl", EVIL_PICKLE)])), Some("resnet/data.pkl"));
    // A headerless (protocol 0) data.pkl is still read as a pickle.
    assert_dangerous(&scan(torch_zip(EVIL_PICKLE_P0)), DATA_PKL);
    // Several .pkl members: all scanned.
    let r = scan(zip(&[Z::stored("archive/data.pkl", b"\x80\x02}."), Z::stored("archive/constants.pkl", EVIL_PICKLE)]));
    assert_dangerous(&r, Some("archive/constants.pkl"));
}

#[test]
fn tampered_zips() {
    let mut crc = Z::stored("archive/data.pkl", EVIL_PICKLE);
    crc.crc ^= 0xdead;
    assert_dangerous(&scan(zip(&[crc])), DATA_PKL);
    for flag in [0x1, 0x20, 0x40] {
        assert_dangerous(&scan(zip(&[Z::stored("archive/data.pkl", EVIL_PICKLE).flags(flag)])), DATA_PKL);
    }
    let mut renamed = Z::stored("archive/data.pkl", EVIL_PICKLE);
    renamed.local_name = Some("archive/datap.kl".into());
    assert_dangerous(&scan(zip(&[renamed])), DATA_PKL);
    let o = ZipOpts { prepend: vec![0xEE; 100], ..Default::default() };
    assert_dangerous(&scan(zip_opts(&[Z::stored("archive/data.pkl", EVIL_PICKLE)], &o)), DATA_PKL);
    // Polyglot: a benign pickle head, a malicious zip behind it.
    let o = ZipOpts { prepend: b"\x80\x02}q\x00.".to_vec(), ..Default::default() };
    assert_dangerous(&scan(zip_opts(&[Z::stored("archive/data.pkl", EVIL_PICKLE)], &o)), DATA_PKL);
    // And the other way round: a malicious head that torch.load reads, a benign zip behind it.
    let o = ZipOpts { prepend: EVIL_PICKLE.to_vec(), ..Default::default() };
    assert_dangerous(&scan(zip_opts(&[Z::stored("archive/data.pkl", b"\x80\x02}.")], &o)), None);
}

#[test]
fn pickles_with_innocent_names_in_plain_zips() {
    for name in ["x.bin", "data", "weights.safetensors", "archive/data.txt"] {
        assert_dangerous(&scan(zip(&[Z::stored(name, EVIL_PICKLE_P0), Z::stored("readme.md", b"hi")])), Some(name));
        assert_dangerous(&scan(zip(&[Z::deflated(name, EVIL_PICKLE)])), Some(name));
    }
    let inner = torch_zip(EVIL_PICKLE);
    assert_dangerous(&scan(zip(&[Z::stored("model.pt", &inner)])), Some("model.pt!archive/data.pkl"));
}

#[test]
fn tars() {
    let t = tar(&[("archive/data.pkl", EVIL_PICKLE), ("archive/version", b"3\n")]);
    assert_dangerous(&scan(t.clone()), DATA_PKL);
    assert_dangerous(&scan(gzip(&t)), DATA_PKL);
    assert_dangerous(&scan_stream(t), DATA_PKL);
}

#[test]
fn every_wrapper() {
    type Wrap = fn(&[u8]) -> Vec<u8>;
    let wrappers: [Wrap; 7] = [gzip, zlib, bzip2, xz, lzma_alone, lz4, joblib_zf];
    for wrap in wrappers {
        assert_dangerous(&scan(wrap(&torch_zip(EVIL_PICKLE))), DATA_PKL);
        assert_dangerous(&scan(wrap(EVIL_PICKLE)), None);
    }
}

#[test]
fn numpy_object_arrays() {
    assert_dangerous(&scan(npy_object(EVIL_PICKLE)), None);
    let npz = zip(&[Z::stored("a.npy", &npy_f4(2)), Z::deflated("b.npy", &npy_object(EVIL_PICKLE))]);
    let r = scan(npz);
    assert_eq!(r.format, "numpy-npz");
    assert_dangerous(&r, Some("b.npy"));
}

/// torch 0.1's tar layout: the payload may sit in `pickle`, or in a record of `storages` after
/// raw storage bytes (where a plain pickle-stream scan stops).
#[test]
fn torch_legacy_tar() {
    let count1 = b"\x80\x02K\x01.";
    let count2 = b"\x80\x02K\x02.";
    let zero = b"\x80\x02K\x00.";
    let record = b"\x80\x02X\x01\x00\x00\x000X\x03\x00\x00\x00cpuctorch\nFloatStorage\nq\x00\x87q\x01.";
    let mut storages = count2.to_vec();
    storages.extend_from_slice(record);
    storages.extend_from_slice(&2i64.to_le_bytes());
    storages.extend_from_slice(&[0xAB; 8]);
    storages.extend_from_slice(EVIL_PICKLE);
    let t = tar(&[("sys_info", b"\x80\x02}q\x00."), ("pickle", EVIL_PICKLE), ("tensors", zero), ("storages", count1)]);
    let r = scan(t);
    assert_eq!(r.format, "pytorch-tar");
    assert_dangerous(&r, Some("pickle"));
    let t = tar(&[
        ("sys_info", b"\x80\x02}q\x00."),
        ("pickle", b"\x80\x02}q\x00."),
        ("tensors", zero),
        ("storages", &storages),
    ]);
    let r = scan(t);
    assert_eq!(r.format, "pytorch-tar");
    assert_dangerous(&r, Some("storages"));
}

#[test]
fn sevenz_archives() {
    for solid in [false, true] {
        let r = scan(sevenz(&[("archive/version", b"3\n"), ("archive/data.pkl", EVIL_PICKLE)], solid));
        assert_eq!(r.format, "7z");
        assert_dangerous(&r, DATA_PKL);
        let r = scan(sevenz(&[("model.pt", &torch_zip(EVIL_PICKLE))], solid));
        assert_dangerous(&r, Some("model.pt!archive/data.pkl"));
    }
}
