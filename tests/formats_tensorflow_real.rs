//! SavedModels and graphs written by real TensorFlow 2.21 / Keras 3 / tf_keras
//! (`tests/fixtures/tensorflow/make_savedmodels.py`): exports that only compute are `safe`; each
//! attack writes, reads, calls Python or fixes a checkpoint path, and is reported.
mod formats_common;
use formats_common::*;
use modelgate::finding::Verdict;

fn fixture(path: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tensorflow").join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn real_exports_are_safe() {
    for (path, format) in [
        ("benign_tf2_module/saved_model.pb", "tensorflow-savedmodel"),
        ("benign_tf2_module/fingerprint.pb", "tensorflow-savedmodel"),
        ("benign_tf2_asset_table/saved_model.pb", "tensorflow-savedmodel"),
        ("benign_keras3_export/saved_model.pb", "tensorflow-savedmodel"),
        ("benign_keras3_export/fingerprint.pb", "tensorflow-savedmodel"),
        ("benign_tf_keras_savedmodel/saved_model.pb", "tensorflow-savedmodel"),
        ("benign_tf_keras_savedmodel/keras_metadata.pb", "keras-metadata"),
        ("benign_tf1_builder/saved_model.pb", "tensorflow-savedmodel"),
        ("benign_tf1_builder_text/saved_model.pbtxt", "tensorflow-savedmodel"),
        ("benign_tf1_asset_table/saved_model.pb", "tensorflow-savedmodel"),
        ("benign_tf1_graph_pbtxt/graph.pbtxt", "tensorflow-savedmodel"),
        ("benign_tf1_graph_pb/graph.pb", "tensorflow-savedmodel"),
    ] {
        let b = fixture(path);
        let r = scan(&b);
        assert_eq!(r.format, format, "{path}: {r:#?}");
        assert_eq!(r.verdict, Verdict::Safe, "{path}: {r:#?}");
        assert!(r.findings.is_empty(), "{path}: {r:#?}");
        let r = scan_stream(&b);
        assert_eq!(r.verdict, Verdict::Safe, "{path} as a stream: {r:#?}");
    }
}

#[test]
fn real_attacks_are_reported() {
    for (path, code, verdict, evidence_has) in [
        ("attack_write_const/saved_model.pb", "tensorflow-file-write-op", Verdict::Dangerous, "\"/tmp/mg_owned\""),
        ("attack_read_const/saved_model.pb", "tensorflow-file-read-op", Verdict::Suspicious, "\"/etc/passwd\""),
        ("attack_savev2_joined/saved_model.pb", "tensorflow-file-write-op", Verdict::Dangerous, "\"/tmp/mg_ckpt\""),
        ("attack_restore_regex/saved_model.pb", "tensorflow-file-read-op", Verdict::Suspicious, "StaticRegexReplace"),
        ("attack_call_const_arg/saved_model.pb", "tensorflow-file-write-op", Verdict::Dangerous, "\"/tmp/mg_called\""),
        ("attack_table_fixed_file/saved_model.pb", "tensorflow-file-read-op", Verdict::Suspicious, "\"/etc/passwd\""),
        ("attack_cache_dataset/saved_model.pb", "tensorflow-file-write-op", Verdict::Dangerous, "\"/tmp/mg_cache\""),
        ("attack_pyfunc/saved_model.pb", "tensorflow-python-op", Verdict::Dangerous, "op PyFunc"),
        ("attack_print_to_file/saved_model.pb", "tensorflow-file-write-op", Verdict::Dangerous, "file:///tmp/mg_log"),
        ("attack_tf1_main_op/saved_model.pb", "tensorflow-file-write-op", Verdict::Dangerous, "\"/tmp/mg_main_op\""),
        (
            "attack_tf1_main_op_text/saved_model.pbtxt",
            "tensorflow-file-write-op",
            Verdict::Dangerous,
            "\"/tmp/mg_main_op\"",
        ),
        ("attack_graph_pb/graph.pb", "tensorflow-file-write-op", Verdict::Dangerous, "\"/tmp/mg_main_op\""),
        ("attack_graph_pbtxt/graph.pbtxt", "tensorflow-file-write-op", Verdict::Dangerous, "\"/tmp/mg_main_op\""),
    ] {
        let r = scan(&fixture(path));
        assert_eq!(r.format, "tensorflow-savedmodel", "{path}: {r:#?}");
        assert_eq!(r.verdict, verdict, "{path}: {r:#?}");
        let e = evidence(&r, code);
        assert!(e.contains(evidence_has), "{path}: {e}");
    }
    // The TF1 graph also restores from a PlaceholderWithDefault whose default the graph fixed.
    for path in ["attack_tf1_main_op/saved_model.pb", "attack_tf1_main_op_text/saved_model.pbtxt"] {
        let r = scan(&fixture(path));
        assert!(evidence(&r, "tensorflow-file-read-op").contains("\"/etc/mg_ckpt\""), "{path}: {r:#?}");
    }
}

/// `bytes` with `from` replaced by `to` (same length, so every protobuf length stays right).
fn replaced(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = bytes.windows(from.len()).position(|w| w == from).expect("needle");
    let mut b = bytes.to_vec();
    b[at..at + to.len()].copy_from_slice(to);
    b
}

#[test]
fn the_savers_are_found_and_their_paths_judged() {
    // TF2: the saver functions get `saver_filename`, a Placeholder of the main graph, through
    // StatefulPartitionedCall. Computed by another op instead, the path is the graph's.
    let b = fixture("benign_tf2_module/saved_model.pb");
    let r = scan(&replaced(&b, b"saver_filename\x12\x0bPlaceholder", b"saver_filename\x12\x0bStringStrip"));
    assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
    let e = evidence(&r, "tensorflow-file-write-op");
    assert!(e.contains("__inference__traced_save_") && e.contains("StringStrip"), "{e}");
    assert!(evidence(&r, "tensorflow-file-read-op").contains("op RestoreV2"), "{r:#?}");
    // TF1: the Saver's filename tensor is a PlaceholderWithDefault of "model"; with a default
    // that leaves the working directory, the runs that do not feed it write there.
    let b = fixture("benign_tf1_builder/saved_model.pb");
    let r = scan(&replaced(&b, b"B\x05model", b"B\x05/mode"));
    assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
    assert!(evidence(&r, "tensorflow-file-write-op").contains("path \"/mode\""), "{r:#?}");
    // The asset of the TF1 vocabulary table: named in the saved_model_assets collection.
    let b = fixture("benign_tf1_asset_table/saved_model.pb");
    let r = scan(&replaced(&b, b"saved_model_assets", b"saved_model_assetz"));
    assert_eq!(r.verdict, Verdict::Suspicious, "{r:#?}");
    assert!(evidence(&r, "tensorflow-file-read-op").contains("tf1_vocab.txt"), "{r:#?}");
}

#[test]
fn real_fixtures_never_panic() {
    never_panics_at(&fixture("benign_tf2_asset_table/saved_model.pb"), 150);
    never_panics_at(&fixture("attack_tf1_main_op_text/saved_model.pbtxt"), 150);
}
