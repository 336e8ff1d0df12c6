//! A blob is checked out under every path it has: a name that claims a model format
//! (`*.safetensors`, `*.pt`, `saved_model.pb`) makes content that matches no format an error
//! (`model-content-unrecognised`, fail closed), whichever of the blob's paths makes the claim
//! and whatever the cache holds from pushes under other names.

mod git_support;
use git_support::*;

/// Bytes no format matches (a fixed head and a pseudo-random tail).
fn unrecognised(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = b"\xfe\xed\xfa\xce".to_vec();
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push((x >> 24) as u8);
    }
    out
}

#[test]
fn every_path_of_a_blob_counts_for_a_name_claim() {
    // The blob's first place (in tree order) claims nothing; another one claims a model.
    for (neutral, claiming) in [
        ("a.bin", "weights/model.safetensors"),
        ("data/blob.dat", "export/saved_model.pb"),
        ("0.txt", "zz/checkpoint.pt.gz"),
    ] {
        let e = Env::new();
        let bytes = unrecognised(3000, 7);
        e.write(neutral, &bytes);
        e.write(claiming, &bytes);
        e.commit("same bytes, two names");
        let out = assert_rejected(e.push(&["main"]));
        assert!(out.contains("model-content-unrecognised"), "{neutral} + {claiming}:\n{out}");
        assert_eq!(e.server_ref("refs/heads/main"), None);

        // Under the neutral name alone it is only unsupported, and allowed.
        e.w(&["rm", "-q", "--cached", claiming]);
        std::fs::remove_file(e.work.join(claiming)).unwrap();
        e.w(&["commit", "-q", "--amend", "-m", "one name"]);
        assert_accepted(e.push(&["main"]));
    }
}

#[test]
fn a_cached_verdict_holds_only_for_the_names_it_was_made_under() {
    let e = Env::new();
    // Big enough for its verdict to be cached (files of no known format from 1 MiB on).
    let bytes = unrecognised(1_200_000, 11);
    e.write("blob.bin", &bytes);
    e.commit("neutral name");
    let first = assert_accepted(e.push(&["main"]));
    assert!(first.contains("(0 from cache)"), "{first}");

    // The same blob under a name that claims a model, in a later push: not served from the
    // judgement made under the neutral name.
    e.w(&["mv", "blob.bin", "model.safetensors"]);
    e.commit("renamed");
    let out = assert_rejected(e.push(&["main"]));
    assert!(out.contains("model-content-unrecognised"), "{out}");

    // And the judgement under the claiming name does not follow the blob to another
    // neutral name (the rejected commit is dropped first).
    e.w(&["reset", "-q", "--hard", "HEAD~1"]);
    e.w(&["mv", "blob.bin", "other.bin"]);
    e.commit("renamed");
    let out = assert_accepted(e.push(&["main"]));
    assert!(out.contains("(1 from cache)"), "the neutral judgement is reused:\n{out}");
}

#[test]
fn a_cached_verdict_of_recognised_content_holds_under_any_name() {
    let e = Env::new();
    // A safetensors file past 1 MiB (cached), first under a name that claims nothing.
    let pad = 1_100_000usize;
    let header = format!("{{\"w\":{{\"dtype\":\"U8\",\"shape\":[{pad}],\"data_offsets\":[0,{pad}]}}}}");
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.resize(bytes.len() + pad, 0);
    e.write("weights.bin", &bytes);
    e.commit("neutral name");
    let first = assert_accepted(e.push(&["main"]));
    assert!(first.contains("(0 from cache)"), "{first}");
    // Renamed to what it is: the name's claim cannot change the verdict of recognised content.
    e.w(&["mv", "weights.bin", "model.safetensors"]);
    e.commit("renamed");
    let out = assert_accepted(e.push(&["main"]));
    assert!(out.contains("(1 from cache)"), "{out}");
}
