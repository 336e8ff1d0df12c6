mod containers_util;
mod formats_common;
use formats_common::*;
use modelgate::finding::Verdict;

/// Fixtures written by h5py (tests/fixtures/formats/make_h5.py); `.gz` ones are inflated.
fn fixture(name: &str) -> Vec<u8> {
    let raw = std::fs::read(format!("{}/tests/fixtures/formats/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    if !name.ends_with(".gz") {
        return raw;
    }
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&raw[..]), &mut out).unwrap();
    out
}

/// Benign Keras models in every layout the fixtures cover.
const BENIGN: &[&str] = &[
    "keras_dense_v0.h5",
    "keras_dense_latest.h5",
    "keras_dense_fixed_v0.h5",
    "keras_dense_200_attrs.h5",
    "keras_dense_huge_small.h5",
    "keras_dense_huge.h5.gz",
];

/// Keras models with a Lambda layer, one per layout.
const LAMBDA: &[&str] = &[
    // superblock 0, variable-length ASCII string (h5py 3 writes bytes so; global heap)
    "keras_lambda_v0.h5",
    // variable-length UTF-8 string (h5py 3 writes str so)
    "keras_lambda_vlen.h5",
    // superblock 3 / object header 2
    "keras_lambda_latest.h5",
    // dense attribute storage: fractal heap, b-tree of one node
    "keras_lambda_dense_attrs.h5",
    // a 1024-byte user block in front of the superblock
    "keras_lambda_userblock.h5",
    // fixed-length ASCII string (Keras 2 with h5py 2)
    "keras_lambda_fixed_v0.h5",
    // fixed-length UTF-8 string with non-ASCII text
    "keras_lambda_fixed_utf8.h5",
    // 200 and 600 attributes: name index b-tree of depth 1 and 2
    "keras_lambda_200_attrs.h5",
    "keras_lambda_600_attrs.h5",
    // model_config over 4 KB in dense storage: a huge heap object found through its b-tree
    "keras_lambda_huge_small.h5",
    // the same with 2-byte offsets: the heap ID holds the huge object's address and length
    "keras_lambda_huge_direct.h5",
    // a ~360 KB model_config: huge object (libver latest) and global heap (libver earliest)
    "keras_lambda_huge.h5.gz",
    "keras_lambda_huge_vlen_v0.h5.gz",
    // over 512 KB of heap objects: model_config in a direct block under a nested indirect block
    "keras_lambda_nested_heap.h5.gz",
    // a committed (named) datatype, in a version 0 and a version 3 file
    "keras_lambda_committed_type_earliest.h5",
    "keras_lambda_committed_type_latest.h5",
];

/// Where `needle` occurs in `b`.
fn find_all(b: &[u8], needle: &[u8]) -> Vec<usize> {
    b.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle).map(|(i, _)| i).collect()
}

/// Version 2 B-tree headers of record type `kind` in `b`.
fn btree_headers(b: &[u8], kind: u8) -> Vec<usize> {
    find_all(b, b"BTHD").into_iter().filter(|&i| b[i + 5] == kind).collect()
}

fn assert_lambda(f: &str, r: &modelgate::engine::FileReport, path: &str) {
    assert_eq!(r.format, "keras-h5", "{f}");
    assert_eq!(r.verdict, Verdict::Dangerous, "{f}: {r:#?}");
    let ev = evidence(r, "keras-lambda-layer");
    assert!(ev.contains(path) && ev.contains("modelgate fixture"), "{f}: {ev}");
    // Nothing else in the file went unread.
    assert!(!has(r, "hdf5-malformed") && !has(r, "hdf5-unsupported"), "{f}: {r:#?}");
}

#[test]
fn benign_models_are_safe() {
    for f in BENIGN {
        assert_safe(&scan(&fixture(f)), "keras-h5");
        assert_safe(&scan_stream(&fixture(f)), "keras-h5");
    }
    assert_safe(&scan(&fixture("weights_only.h5")), "hdf5");
}

#[test]
fn lambda_layers_are_dangerous_in_every_layout() {
    for f in LAMBDA {
        let path =
            if f.contains("utf8") { "model_config/séq_λ/lambda_payload" } else { "model_config/seq/lambda_payload" };
        assert_lambda(f, &scan(&fixture(f)), path);
        // A stream too: a superblock after a user block is looked for in its first MiB.
        assert_lambda(f, &scan_stream(&fixture(f)), path);
    }
}

/// A gzipped `.h5` whose superblock follows a user block: found behind the wrapper too.
#[test]
fn user_block_behind_a_compressed_wrapper() {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&fixture("keras_lambda_userblock.h5")).unwrap();
    let r = scan(&gz.finish().unwrap());
    assert_eq!(r.format, "gzip:keras-h5");
    assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
    assert!(evidence(&r, "keras-lambda-layer").contains("model_config/seq/lambda_payload"));
}

#[test]
fn fixtures_have_the_layouts_they_claim() {
    // Name index b-trees (record type 8) of depth 0, 1 and 2.
    for (f, depth) in
        [("keras_lambda_dense_attrs.h5", 0u16), ("keras_lambda_200_attrs.h5", 1), ("keras_lambda_600_attrs.h5", 2)]
    {
        let b = fixture(f);
        let at = btree_headers(&b, 8);
        assert_eq!(at.len(), 1, "{f}");
        assert_eq!(u16::from_le_bytes([b[at[0] + 12], b[at[0] + 13]]), depth, "{f}");
    }
    // Nested indirect blocks: the root one and one under it.
    assert_eq!(find_all(&fixture("keras_lambda_nested_heap.h5.gz"), b"FHIB").len(), 2);
    // 2-byte offsets, 4-byte lengths (superblock version 2: sizes at bytes 9 and 10).
    let b = fixture("keras_lambda_huge_direct.h5");
    assert_eq!((b[9], b[10]), (2, 4));
}

/// Damage the 4-byte signature at `at`.
fn unsign(mut b: Vec<u8>, at: usize) -> Vec<u8> {
    b[at..at + 4].copy_from_slice(b"XXXX");
    b
}

#[test]
fn huge_objects_are_read_through_their_btree_or_their_id() {
    // Indirect huge object IDs: without the huge object b-tree (type 1) the config is lost.
    for f in ["keras_lambda_huge_small.h5", "keras_lambda_huge.h5.gz"] {
        let b = fixture(f);
        let at = btree_headers(&b, 1);
        assert_eq!(at.len(), 1, "{f}");
        let r = scan(&unsign(b, at[0]));
        assert_eq!(r.verdict, Verdict::Error, "{f}: {r:#?}");
        assert!(r.findings.iter().any(|x| x.code == "hdf5-malformed" && x.message.contains("huge object b-tree")));
    }
    // Direct huge object IDs: the b-tree (type 3, kept by HDF5 for deletion) is not needed.
    let b = fixture("keras_lambda_huge_direct.h5");
    let at = btree_headers(&b, 3);
    assert_eq!(at.len(), 1);
    assert_lambda("direct", &scan(&unsign(b, at[0])), "model_config/seq/lambda_payload");
}

/// The heap offset that the fractal heap block at `at` starts at (5 bytes after the
/// signature, version and the 8-byte heap header address).
fn block_offset(b: &[u8], at: usize) -> u64 {
    b[at + 13..at + 18].iter().rev().fold(0u64, |v, &x| v << 8 | u64::from(x))
}

#[test]
fn nested_indirect_blocks_are_followed() {
    // model_config is only reachable through the nested indirect block (the one not at heap
    // offset 0).
    let b = fixture("keras_lambda_nested_heap.h5.gz");
    let child = *find_all(&b, b"FHIB").iter().find(|&&at| block_offset(&b, at) != 0).unwrap();
    let r = scan(&unsign(b, child));
    assert_eq!(r.verdict, Verdict::Error, "{r:#?}");
    assert!(!has(&r, "keras-lambda-layer"), "{r:#?}");
    assert!(r.findings.iter().any(|x| x.code == "hdf5-malformed" && x.message.contains("indirect heap block")));
}

#[test]
fn heap_blocks_pointing_elsewhere_are_errors() {
    // The root indirect block's pointer to the nested one, turned back to the root itself.
    let mut b = fixture("keras_lambda_nested_heap.h5.gz");
    let blocks = find_all(&b, b"FHIB");
    let root = *blocks.iter().find(|&&at| block_offset(&b, at) == 0).unwrap();
    let child = *blocks.iter().find(|&&at| block_offset(&b, at) != 0).unwrap();
    let ptr = find_all(&b[root..], &(child as u64).to_le_bytes())[0] + root;
    b[ptr..ptr + 8].copy_from_slice(&(root as u64).to_le_bytes());
    let r = scan(&b);
    assert_eq!(r.verdict, Verdict::Error, "{r:#?}");
    assert!(r.findings.iter().any(|x| x.code == "hdf5-malformed" && x.message.contains("belongs elsewhere")));
}

#[test]
fn btrees_hold_no_more_records_than_they_say() {
    // Total record count in the header (after the root node's count): 600 attributes and 3
    // Keras ones, claimed to be 10.
    let mut b = fixture("keras_lambda_600_attrs.h5");
    let head = btree_headers(&b, 8)[0];
    assert_eq!(u64::from_le_bytes(b[head + 26..head + 34].try_into().unwrap()), 603);
    b[head + 26..head + 34].copy_from_slice(&10u64.to_le_bytes());
    let r = scan(&b);
    assert_eq!(r.verdict, Verdict::Error, "{r:#?}");
    assert!(r.findings.iter().any(|x| x.code == "hdf5-malformed" && x.message.contains("more records")));
}

#[test]
fn deep_btrees_are_walked_in_full() {
    // Every internal node of the depth-2 tree is needed: damaging any one loses records.
    let b = fixture("keras_lambda_600_attrs.h5");
    let internal = find_all(&b, b"BTIN");
    assert!(internal.len() >= 2, "{}", internal.len());
    for at in internal {
        let r = scan(&unsign(b.clone(), at));
        assert_eq!(r.verdict, Verdict::Error, "{r:#?}");
        assert!(has(&r, "hdf5-malformed"), "{r:#?}");
    }
}

/// The first unsupported finding's message.
fn unsupported_message(r: &modelgate::engine::FileReport) -> String {
    assert_eq!(r.verdict, Verdict::Error, "{r:#?}");
    r.findings.iter().find(|f| f.code == "hdf5-unsupported").map(|f| f.message.clone()).unwrap_or_default()
}

#[test]
fn layouts_not_read_fail_closed() {
    // A config that is not a string.
    let m = unsupported_message(&scan(&fixture("keras_int_config.h5")));
    assert!(m.contains("model_config") && m.contains("not a string"), "{m}");

    // An attribute message kept in the shared object header message heap (message flag 2):
    // its name is unknown, so it may be the config.
    let mut b = fixture("keras_lambda_fixed_v0.h5");
    let name = find_all(&b, b"model_config\0")[0];
    assert_eq!(b[name - 8], 1, "attribute message version 1 expected");
    b[name - 12] |= 0x02;
    let m = unsupported_message(&scan(&b));
    assert!(m.contains("shared object header message heap"), "{m}");

    // The same for every record of a dense name index (record flags byte).
    let mut b = fixture("keras_lambda_dense_attrs.h5");
    let leaf = find_all(&b, b"BTLF")[0];
    let head = btree_headers(&b, 8)[0];
    let count = usize::from(u16::from_le_bytes([b[head + 24], b[head + 25]]));
    assert!(count > 8);
    for i in 0..count {
        b[leaf + 6 + i * 17 + 8] |= 0x02;
    }
    let m = unsupported_message(&scan(&b));
    assert!(m.contains("shared object header message heap"), "{m}");

    // A datatype shared through that heap (shared message version 3, type 1).
    let mut b = fixture("keras_lambda_committed_type_latest.h5");
    let dt = find_all(&b, b"model_config\0")[0] + 13;
    assert_eq!(b[dt..dt + 2], [2, 2], "shared message version 2 expected");
    b[dt..dt + 2].copy_from_slice(&[3, 1]);
    let m = unsupported_message(&scan(&b));
    assert!(m.contains("datatype stored in the shared object header message heap"), "{m}");

    // A filtered fractal heap (I/O filter length in the heap header).
    let mut b = fixture("keras_lambda_dense_attrs.h5");
    let heap = find_all(&b, b"FRHP")[0];
    b[heap + 7] = 16;
    let m = unsupported_message(&scan(&b));
    assert!(m.contains("filtered fractal heap"), "{m}");
}

#[test]
fn broken_config_json_is_an_error() {
    let mut b = fixture("keras_dense_v0.h5");
    let needle = b"{\"class_name\"";
    let at = b.windows(needle.len()).position(|w| w == needle).unwrap();
    b[at] = b'x';
    let r = scan(&b);
    assert_eq!(r.verdict, Verdict::Error, "{r:#?}");
    assert!(has(&r, "keras-config-malformed"));
}

#[test]
fn broken_structure_is_an_error() {
    let mut b = fixture("keras_dense_latest.h5");
    b.truncate(200);
    let r = scan(&b);
    assert_eq!(r.verdict, Verdict::Error, "{r:#?}");
    assert!(has(&r, "hdf5-malformed"));
    let r = scan(b"\x89HDF\r\n\x1a\n\x07");
    assert!(has(&r, "hdf5-malformed"));
}

#[test]
fn mangled_files_never_panic() {
    for f in LAMBDA.iter().chain(BENIGN).chain(&["keras_int_config.h5", "weights_only.h5"]) {
        // The ~360 KB configs are mostly JSON text, whose structure the small huge-object
        // fixtures share: fewer points there.
        let b = fixture(f);
        never_panics_at(&b, if b.len() > 300_000 && !f.contains("nested") { 60 } else { 400 });
    }
}

#[test]
fn self_referencing_continuations_are_bounded() {
    // Object header v1 at 96 whose only message is a continuation to itself.
    let mut b = fixture("keras_dense_v0.h5");
    let root = 0x60usize;
    assert_eq!(b[root], 1, "fixture layout changed");
    let msg_at = root + 16;
    b[root + 2..root + 4].copy_from_slice(&1u16.to_le_bytes());
    b[root + 8..root + 12].copy_from_slice(&24u32.to_le_bytes());
    b[msg_at..msg_at + 2].copy_from_slice(&0x10u16.to_le_bytes());
    b[msg_at + 2..msg_at + 4].copy_from_slice(&16u16.to_le_bytes());
    b[msg_at + 8..msg_at + 16].copy_from_slice(&(msg_at as u64).to_le_bytes());
    b[msg_at + 16..msg_at + 24].copy_from_slice(&24u64.to_le_bytes());
    let r = scan(&b);
    assert!(has(&r, "hdf5-malformed"), "{r:#?}");
    assert!(r.findings[0].message.contains("loop"), "{r:#?}");
}

/// A version 2 file (superblock 2, object header 2) whose root object header continues into
/// `n` continuation blocks, each pointing at the next; the last one holds no message.
fn continuation_chain(n: usize) -> Vec<u8> {
    let cont = |to: usize| -> Vec<u8> {
        let mut m = vec![0x10, 16, 0, 0];
        m.extend_from_slice(&(to as u64).to_le_bytes());
        m.extend_from_slice(&28u64.to_le_bytes());
        m
    };
    let mut b = b"\x89HDF\r\n\x1a\n\x02\x08\x08\x00".to_vec();
    b.extend_from_slice(&0u64.to_le_bytes()); // base address
    b.extend_from_slice(&u64::MAX.to_le_bytes()); // no superblock extension
    b.extend_from_slice(&0u64.to_le_bytes()); // end of file, set below
    b.extend_from_slice(&48u64.to_le_bytes()); // root object header
    b.extend_from_slice(&[0; 4]); // checksum
    b.extend_from_slice(b"OHDR\x02\x00\x14");
    let first = 48 + 7 + 20 + 4;
    b.extend_from_slice(&cont(first));
    b.extend_from_slice(&[0; 4]);
    for i in 0..n {
        b.extend_from_slice(b"OCHK");
        if i + 1 < n {
            b.extend_from_slice(&cont(first + 28 * (i + 1)));
        } else {
            b.extend_from_slice(&[0, 16, 0, 0]);
            b.extend_from_slice(&[0; 16]);
        }
        b.extend_from_slice(&[0; 4]);
    }
    let len = b.len() as u64;
    b[28..36].copy_from_slice(&len.to_le_bytes());
    b
}

#[test]
fn structure_reads_are_budgeted_per_file() {
    // One file of 9,000 chained blocks is read in full ...
    let one = continuation_chain(9000);
    let r = scan(&one);
    assert_eq!(r.format, "hdf5");
    assert!(r.findings.is_empty(), "{r:#?}");
    // ... but the budget is the file's, not each parse's: thirty-two of them in one file run out.
    let members: Vec<_> = (0..32).map(|i| containers_util::Z::stored(&format!("m{i}.h5"), &one)).collect();
    let r = scan(&containers_util::zip(&members));
    assert!(has(&r, "hdf5-budget-exceeded"), "{:#?}", &r.findings);
    assert_eq!(r.verdict, Verdict::Error);
}

#[test]
fn the_base_address_is_where_the_superblock_is() {
    // Superblock at 1024 storing base address 0: HDF5 reads addresses from the superblock's
    // position whatever is stored (made by tests/fixtures/containers/make_polyglots.py, which
    // checks that h5py loads it).
    let b = std::fs::read(format!(
        "{}/tests/fixtures/containers/polyglot/keras_lambda_base0.h5",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    assert_lambda("keras_lambda_base0.h5", &scan(&b), "model_config/seq/lambda_payload");
}
