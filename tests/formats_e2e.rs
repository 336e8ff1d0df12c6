//! Model layouts end to end, as they ship: a `.keras` zip, a zipped SavedModel directory, and an
//! ONNX model beside its external data file scanned as a directory by `modelgate scan`.

mod containers_util;
mod formats_common;

use containers_util::{zip, Z};
use formats_common::pb::{cat, int, msg, string};
use modelgate::engine::{scan_path, FileReport, ScanOptions};
use modelgate::finding::Verdict;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

/// HDF5 weights as Keras 3 writes `model.weights.h5` (a committed fixture made by h5py).
const WEIGHTS_H5: &[u8] = include_bytes!("fixtures/formats/weights_only.h5");

fn scan_file(dir: &Path, name: &str, bytes: &[u8]) -> FileReport {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    scan_path(&path, name, &ScanOptions::default())
}

/// Deterministic float32 weights: raw bytes no loader interprets.
fn weights(n: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x % 2000) as f32 / 1000.0 - 1.0).to_le_bytes()
        })
        .collect()
}

/// Message and evidence of the `code` finding, which must sit in `member`.
fn dangerous_in(r: &FileReport, code: &str, member: &str) -> String {
    assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
    let f = r.findings.iter().find(|f| f.code == code).unwrap_or_else(|| panic!("no {code}: {r:#?}"));
    assert_eq!(f.member.as_deref(), Some(member), "{f:?}");
    format!("{} | {}", f.message, f.evidence.as_deref().unwrap_or_default())
}

fn safe(r: &FileReport) {
    assert_eq!(r.verdict, Verdict::Safe, "{r:#?}");
    assert!(r.findings.iter().all(|f| f.severity == modelgate::finding::Severity::Info), "{r:#?}");
}

// ---- Keras v3 ----

fn obj(module: &str, class: &str, config: Value) -> Value {
    json!({"module": module, "class_name": class, "config": config, "registered_name": null})
}

fn keras_config(extra: Option<Value>) -> Vec<u8> {
    let dense = |name: &str| {
        obj(
            "keras.layers",
            "Dense",
            json!({"name": name, "units": 4, "activation": "relu",
            "kernel_initializer": obj("keras.initializers", "GlorotUniform", json!({"seed": null}))}),
        )
    };
    let mut layers = vec![
        obj("keras.layers", "InputLayer", json!({"name": "input", "batch_shape": [null, 8]})),
        dense("hidden"),
        dense("out"),
    ];
    layers.extend(extra);
    let model = json!({"module": "keras", "class_name": "Functional", "registered_name": "Functional",
        "config": {"name": "classifier", "layers": layers,
            "input_layers": [["input", 0, 0]], "output_layers": [["out", 0, 0]]},
        "build_config": {"input_shape": null},
        "compile_config": {"optimizer": obj("keras.optimizers", "Adam", json!({"learning_rate": 0.001})),
            "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}});
    serde_json::to_vec(&model).unwrap()
}

fn dot_keras(config: &[u8], deflate: bool) -> Vec<u8> {
    let metadata = br#"{"keras_version": "3.6.0", "date_saved": "2025-01-10@12:00:00"}"#;
    let member = if deflate { Z::deflated } else { Z::stored };
    zip(&[member("metadata.json", metadata), member("config.json", config), member("model.weights.h5", WEIGHTS_H5)])
}

#[test]
fn keras_v3_archives() {
    let dir = tempfile::tempdir().unwrap();
    for deflate in [false, true] {
        safe(&scan_file(dir.path(), "ok.keras", &dot_keras(&keras_config(None), deflate)));

        let lambda = obj(
            "keras.layers",
            "Lambda",
            json!({"name": "sneaky", "function": {"class_name": "__lambda__",
            "config": {"code": "lambda x: __import__('os').system('echo pwned') or x", "defaults": null}}}),
        );
        let r = scan_file(dir.path(), "lambda.keras", &dot_keras(&keras_config(Some(lambda)), deflate));
        let ev = dangerous_in(&r, "keras-lambda-layer", "config.json");
        assert!(ev.contains("sneaky") && ev.contains("echo pwned"), "{ev}");
        assert_eq!(r.path, "lambda.keras");

        let system = obj("os", "system", json!("echo pwned"));
        let r = scan_file(dir.path(), "cve.keras", &dot_keras(&keras_config(Some(system)), deflate));
        let ev = dangerous_in(&r, "keras-dangerous-object", "config.json");
        assert!(ev.contains("os.system") && ev.contains("classifier/system") && ev.contains("echo pwned"), "{ev}");
    }
    // A .keras inside a zip of a model repository keeps the nested member path.
    let outer = zip(&[
        Z::stored("README.md", b"# classifier\n"),
        Z::stored("models/m.keras", &dot_keras(&keras_config(Some(obj("keras.layers", "Lambda", json!({})))), true)),
    ]);
    let r = scan_file(dir.path(), "repo.zip", &outer);
    dangerous_in(&r, "keras-lambda-layer", "models/m.keras!config.json");
}

// ---- TensorFlow SavedModel ----

fn node(name: &str, op: &str, inputs: &[&str]) -> Vec<u8> {
    let mut v = cat(&[string(1, name), string(2, op)]);
    for i in inputs {
        v.extend(string(3, i));
    }
    v
}

/// SavedModel { schema 1, meta_graphs 2 { meta_info_def 1 { tags 4 }, graph_def 2 { node 1,
/// library 2 { function 1 { signature 1 { name 1 }, node_def 3 } } } } }
fn saved_model(serving: &[Vec<u8>]) -> Vec<u8> {
    let mut f = msg(1, &string(1, "__inference_serving_default_31"));
    for n in serving {
        f.extend(msg(3, n));
    }
    let g = cat(&[
        msg(1, &node("serving_default_x", "Placeholder", &[])),
        msg(1, &node("StatefulPartitionedCall", "StatefulPartitionedCall", &["serving_default_x"])),
        msg(2, &msg(1, &f)),
        msg(4, &int(1, 1700)),
    ]);
    cat(&[int(1, 1), msg(2, &cat(&[msg(1, &string(4, "serve")), msg(2, &g)]))])
}

/// The files `tf.saved_model.save` writes, under `root/`.
fn saved_model_dir(root: &str, pb: Vec<u8>) -> Vec<(String, Vec<u8>)> {
    // FingerprintDef: five uint64 hashes and a VersionDef.
    let fingerprint =
        cat(&[int(1, 0x1234_5678_9abc), int(2, 77), int(3, 88), int(4, 99), int(5, 1234), msg(6, &int(1, 1))]);
    // variables.index: an SSTable whose blocks hold a BundleHeaderProto, ending in the table magic.
    let mut index = vec![0x00, 0x00, 0x04, 0x08, 0x01, 0x1a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00];
    index.extend([0u8; 33]);
    index.extend(0xdb47_7524_8b80_fb57u64.to_le_bytes());
    vec![
        (format!("{root}/saved_model.pb"), pb),
        (format!("{root}/fingerprint.pb"), fingerprint),
        (format!("{root}/variables/variables.index"), index),
        (format!("{root}/variables/variables.data-00000-of-00001"), weights(4096)),
    ]
}

fn zipped(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    zip(&files.iter().map(|(n, b)| Z::deflated(n, b)).collect::<Vec<_>>())
}

#[test]
fn saved_model_directory_zipped() {
    let dir = tempfile::tempdir().unwrap();
    let benign = saved_model(&[node("MatMul", "MatMul", &["x", "w"]), node("Relu", "Relu", &["MatMul:product:0"])]);
    safe(&scan_file(dir.path(), "ok.zip", &zipped(&saved_model_dir("export/1", benign))));

    let evil = saved_model(&[node("MatMul", "MatMul", &["x", "w"]), node("run_me", "PyFunc", &["MatMul:product:0"])]);
    let r = scan_file(dir.path(), "bad.zip", &zipped(&saved_model_dir("export/1", evil.clone())));
    let ev = dangerous_in(&r, "tensorflow-python-op", "export/1/saved_model.pb");
    assert!(ev.contains("run_me") && ev.contains("PyFunc"), "{ev}");

    // The same directory unpacked, scanned by the command line.
    let root = dir.path().join("unpacked");
    for (name, bytes) in saved_model_dir("m", evil) {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    let (code, v) = cli(&root);
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(file(&v, "m/saved_model.pb")["verdict"], "dangerous", "{v:#}");
    for other in ["m/fingerprint.pb", "m/variables/variables.index", "m/variables/variables.data-00000-of-00001"] {
        assert_eq!(file(&v, other)["decision"], "allow", "{other}: {v:#}");
    }
}

// ---- ONNX with external data ----

/// ModelProto { ir_version 1, producer 2, graph 7 { node 1, name 2, initializer 5, input 11,
/// output 12 }, opset_import 8 }, the initializer stored in `location`.
fn onnx_model(location: &str, len: usize) -> Vec<u8> {
    let node = cat(&[string(1, "x"), string(1, "w"), string(2, "y"), string(3, "mm"), string(4, "MatMul")]);
    let ext = |k: &str, v: &str| msg(13, &cat(&[string(1, k), string(2, v)]));
    let init = cat(&[
        int(1, 16),
        int(1, len as u64 / 64),
        int(2, 1),
        string(8, "w"),
        ext("location", location),
        ext("offset", "0"),
        ext("length", &len.to_string()),
        int(14, 1),
    ]);
    let graph =
        cat(&[msg(1, &node), string(2, "main"), msg(5, &init), msg(11, &string(1, "x")), msg(12, &string(1, "y"))]);
    cat(&[
        int(1, 8),
        string(2, "pytorch"),
        string(3, "2.4.0"),
        msg(7, &graph),
        msg(8, &cat(&[string(1, ""), int(2, 17)])),
    ])
}

#[test]
fn onnx_with_sibling_external_data_as_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = weights(1024);
    std::fs::write(dir.path().join("model.onnx"), onnx_model("model.onnx.data", data.len())).unwrap();
    std::fs::write(dir.path().join("model.onnx.data"), &data).unwrap();
    let (code, v) = cli(dir.path());
    assert_eq!(code, Some(0), "{v:#}");
    let m = file(&v, "model.onnx");
    assert_eq!((m["format"].as_str(), m["verdict"].as_str()), (Some("onnx"), Some("safe")), "{v:#}");
    assert_eq!(file(&v, "model.onnx.data")["decision"], "allow", "{v:#}");

    std::fs::write(dir.path().join("model.onnx"), onnx_model("../../../etc/passwd", data.len())).unwrap();
    let (code, v) = cli(dir.path());
    assert_eq!(code, Some(1), "{v:#}");
    let m = file(&v, "model.onnx");
    assert_eq!(m["verdict"], "dangerous", "{v:#}");
    let f = m["findings"].as_array().unwrap().iter().find(|f| f["code"] == "onnx-external-data-path").unwrap();
    assert!(f["evidence"].as_str().unwrap().contains("../../../etc/passwd"), "{f}");
}

/// `modelgate scan --format json DIR`: exit code and document.
fn cli(dir: &Path) -> (Option<i32>, Value) {
    let o = Command::new(env!("CARGO_BIN_EXE_modelgate")).arg("scan").arg("--format=json").arg(dir).output().unwrap();
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    });
    (o.status.code(), v)
}

fn file(v: &Value, rel: &str) -> Value {
    let files = v["files"].as_array().unwrap();
    files
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with(rel))
        .unwrap_or_else(|| panic!("no {rel}: {v:#}"))
        .clone()
}

/// The layouts above, truncated and bit-flipped: never a panic (`internal-error`).
#[test]
fn mangled_layouts_never_panic() {
    let lambda = obj("keras.layers", "Lambda", json!({"name": "l"}));
    formats_common::never_panics(&dot_keras(&keras_config(Some(lambda)), true));
    let evil = saved_model(&[node("run_me", "PyFunc", &["x"])]);
    formats_common::never_panics(&zipped(&saved_model_dir("m", evil)));
    formats_common::never_panics(&onnx_model("model.onnx.data", 4096));
}
