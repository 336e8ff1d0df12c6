mod formats_common;
use formats_common::pb::{cat, int, msg, string};
use formats_common::*;
use modelgate::finding::Verdict;

/// NodeDef: name 1, op 2, input 3, attr 5 (map entry key 1, AttrValue 2).
fn node(name: &str, op: &str, inputs: &[&str], attrs: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut v = cat(&[string(1, name), string(2, op)]);
    for i in inputs {
        v.extend(string(3, i));
    }
    for (k, a) in attrs {
        v.extend(msg(5, &cat(&[string(1, k), msg(2, a)])));
    }
    v
}

/// AttrValue.s
fn attr_s(s: &str) -> Vec<u8> {
    string(2, s)
}

/// AttrValue.tensor with one DT_STRING value.
fn attr_str_tensor(s: &str) -> Vec<u8> {
    msg(8, &cat(&[int(1, 7), string(8, s)]))
}

fn constant(name: &str, s: &str) -> Vec<u8> {
    node(name, "Const", &[], &[("value", attr_str_tensor(s)), ("dtype", int(6, 7))])
}

/// FunctionDef: signature (OpDef name 1) and node_def 3.
fn function(name: &str, nodes: &[Vec<u8>]) -> Vec<u8> {
    let mut v = msg(1, &string(1, name));
    for n in nodes {
        v.extend(msg(3, n));
    }
    v
}

/// SavedModel { schema 1, meta_graphs 2 { graph_def 2 { node 1, library 2 { function 1 } } } }
fn saved_model(nodes: &[Vec<u8>], functions: &[Vec<u8>]) -> Vec<u8> {
    let mut g = Vec::new();
    for n in nodes {
        g.extend(msg(1, n));
    }
    if !functions.is_empty() {
        let lib: Vec<u8> = functions.iter().flat_map(|f| msg(1, f)).collect();
        g.extend(msg(2, &lib));
    }
    g.extend(msg(4, &int(1, 1700)));
    let meta = cat(&[msg(1, &string(4, "serve")), msg(2, &g)]);
    cat(&[int(1, 1), msg(2, &meta)])
}

#[test]
fn corpus_shaped_pyfunc_is_dangerous_and_const_is_safe() {
    let bad =
        msg(2, &msg(2, &cat(&[msg(1, &node("Const", "Const", &[], &[])), msg(1, &node("bad", "PyFunc", &[], &[]))])));
    assert_eq!(bad.len(), 35);
    let r = scan(&bad);
    assert_eq!(r.format, "tensorflow-savedmodel");
    assert_eq!(r.verdict, Verdict::Dangerous);
    assert!(evidence(&r, "tensorflow-python-op").contains("\"bad\" op PyFunc"), "{r:#?}");
    let good = msg(2, &msg(2, &msg(1, &node("Const", "Const", &[], &[]))));
    assert_eq!(good.len(), 20);
    assert_safe(&scan(&good), "tensorflow-savedmodel");
    assert_safe(&scan_stream(&good), "tensorflow-savedmodel");
}

/// A TF2-style model: a serving function and the standard save/restore functions whose paths
/// come from function arguments.
fn tf2_model(extra_serving: &[Vec<u8>]) -> Vec<u8> {
    let mut serving = vec![
        node("MatMul", "MatMul", &["x", "w"], &[]),
        node("Relu", "Relu", &["MatMul:product:0"], &[]),
        node("print", "PrintV2", &["Relu:activations:0"], &[("output_stream", attr_s("stderr"))]),
    ];
    serving.extend_from_slice(extra_serving);
    let save = function(
        "__inference__traced_save_45",
        &[
            constant("Const", "_temp/part"),
            node("StringJoin", "StringJoin", &["file_prefix", "Const:output:0"], &[]),
            node("ShardedFilename", "ShardedFilename", &["StringJoin:output:0", "num_shards"], &[]),
            node("SaveV2", "SaveV2", &["ShardedFilename:filename:0", "tensor_names", "slices"], &[]),
            node("MergeV2Checkpoints", "MergeV2Checkpoints", &["prefixes", "file_prefix"], &[]),
        ],
    );
    let restore = function("__inference__traced_restore_60", &[node("RestoreV2", "RestoreV2", &["file_prefix"], &[])]);
    saved_model(
        &[
            node("saver_filename", "Placeholder", &[], &[]),
            node("call", "StatefulPartitionedCall", &["saver_filename"], &[]),
        ],
        &[function("__inference_serving_default_12", &serving), save, restore],
    )
}

#[test]
fn standard_checkpoint_functions_are_safe() {
    assert_safe(&scan(&tf2_model(&[])), "tensorflow-savedmodel");
    // TF1 Saver: the filename is a PlaceholderWithDefault.
    let tf1 = saved_model(
        &[
            constant("save/filename/input", "model"),
            node("save/filename", "PlaceholderWithDefault", &["save/filename/input"], &[]),
            node("save/Const", "PlaceholderWithDefault", &["save/filename"], &[]),
            node("save/SaveV2", "SaveV2", &["save/Const", "save/names", "save/slices"], &[]),
            node("save/RestoreV2", "RestoreV2", &["save/Const", "save/names", "save/slices"], &[]),
        ],
        &[],
    );
    assert_safe(&scan(&tf1), "tensorflow-savedmodel");
}

#[test]
fn file_ops_in_serving_functions() {
    let cases: Vec<(Vec<Vec<u8>>, &str, Verdict, &str)> = vec![
        (
            vec![
                constant("p", "/tmp/owned"),
                constant("c", "x"),
                node("w", "WriteFile", &["p:output:0", "c:output:0"], &[]),
            ],
            "tensorflow-file-write-op",
            Verdict::Dangerous,
            "path \"/tmp/owned\"",
        ),
        (
            vec![
                constant("p", "/etc/"),
                constant("q", "passwd"),
                node("j", "StringJoin", &["p", "q"], &[]),
                node("s", "SaveV2", &["j:output:0", "n", "t"], &[]),
            ],
            "tensorflow-file-write-op",
            Verdict::Dangerous,
            "path \"/etc/passwd\"",
        ),
        (
            vec![node("pr", "PrintV2", &["x"], &[("output_stream", attr_s("file:///tmp/log"))])],
            "tensorflow-file-write-op",
            Verdict::Dangerous,
            "file:///tmp/log",
        ),
        (vec![node("e", "EagerPyFunc", &["x"], &[])], "tensorflow-python-op", Verdict::Dangerous, "op EagerPyFunc"),
        (
            vec![constant("p", "/etc/passwd"), node("r", "ReadFile", &["p:output:0"], &[])],
            "tensorflow-file-read-op",
            Verdict::Suspicious,
            "path \"/etc/passwd\"",
        ),
        (
            vec![node("m", "MatchingFiles", &["x"], &[])],
            "tensorflow-file-read-op",
            Verdict::Suspicious,
            "MatchingFiles",
        ),
    ];
    for (nodes, code, verdict, ev) in cases {
        let r = scan(&tf2_model(&nodes));
        assert_eq!(r.verdict, verdict, "{code}: {r:#?}");
        let e = evidence(&r, code);
        assert!(e.contains(ev) && e.contains("__inference_serving_default_12"), "{code}: {e}");
    }
}

#[test]
fn keras_json_in_object_graph_is_checked() {
    let lambda = r#"{"class_name": "Lambda", "config": {"name": "l", "function": "lambda x: x"}}"#;
    let user = msg(4, &cat(&[string(1, "_tf_keras_layer"), string(3, lambda)]));
    let meta = cat(&[msg(2, &msg(1, &node("c", "Const", &[], &[]))), msg(7, &msg(1, &user))]);
    let r = scan(&cat(&[int(1, 1), msg(2, &meta)]));
    assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
    assert!(has(&r, "keras-lambda-layer"));
}

fn keras_metadata(layers: &[&str]) -> Vec<u8> {
    layers
        .iter()
        .enumerate()
        .flat_map(|(i, m)| {
            msg(
                1,
                &cat(&[
                    int(2, i as u64),
                    string(3, &format!("root.layer-{i}")),
                    string(4, "_tf_keras_layer"),
                    string(5, m),
                ]),
            )
        })
        .collect()
}

#[test]
fn keras_metadata_pb() {
    let ok = keras_metadata(&[r#"{"class_name": "Dense", "name": "d", "config": {"units": 2}}"#]);
    assert_safe(&scan(&ok), "keras-metadata");
    let bad = keras_metadata(&[
        r#"{"class_name": "Dense", "name": "d", "config": {"units": 2}}"#,
        r#"{"class_name": "Lambda", "name": "l", "config": {"function": ["4wAAAAAAAAAAAAAAAAEAAAACAAAAQwAAAHMMAAAAdABkAYMBAQBkAFMAKQJO", null, null]}}"#,
    ]);
    let r = scan(&bad);
    assert_eq!(r.verdict, Verdict::Dangerous);
    assert!(evidence(&r, "keras-lambda-layer").contains("root.layer-1"), "{r:#?}");
}

#[test]
fn malformed_tail_keeps_the_payload() {
    let mut bad = tf2_model(&[node("p", "PyFunc", &["x"], &[])]);
    // Claim a longer graph than there is: the outer message length now lies.
    bad.extend_from_slice(&msg(2, &[0x0a, 0x40, 0x01]));
    let r = scan(&bad);
    assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
    assert!(has(&r, "tensorflow-malformed"));
}

#[test]
fn other_bytes_are_not_savedmodels() {
    for b in [&b"\x08\x01\x12\x03abc"[..], b"\x12\x05hello", b"\x0a\x02{}", b"plain text file\n", b"\x08\x96\x01"] {
        let r = scan(b);
        assert_eq!(r.verdict, Verdict::Unsupported, "{b:?}: {r:#?}");
    }
}

/// Minimal TFLite flatbuffer: Model { version, operator_codes: [OperatorCode { custom_code, builtin_code }] }.
fn tflite(customs: &[&str]) -> Vec<u8> {
    let mut b = vec![0u8; 8];
    b[4..8].copy_from_slice(b"TFL3");
    // vtable for Model: 3 slots (version, operator_codes)
    let vt_model = b.len();
    b.extend_from_slice(&[8, 0, 12, 0, 4, 0, 8, 0]);
    let model = b.len();
    b.extend_from_slice(&((model - vt_model) as i32).to_le_bytes());
    b.extend_from_slice(&3u32.to_le_bytes());
    let codes_ref = b.len();
    b.extend_from_slice(&0u32.to_le_bytes());
    let vec = b.len();
    b.extend_from_slice(&(customs.len() as u32).to_le_bytes());
    let slots: Vec<usize> = customs
        .iter()
        .map(|_| {
            let p = b.len();
            b.extend_from_slice(&0u32.to_le_bytes());
            p
        })
        .collect();
    // vtable for OperatorCode: slots 0..4 (deprecated_builtin_code, custom_code, version, builtin_code)
    let vt_code = b.len();
    b.extend_from_slice(&[12, 0, 16, 0, 0, 0, 4, 0, 0, 0, 8, 0]);
    for (c, slot) in customs.iter().zip(slots) {
        let table = b.len();
        b.extend_from_slice(&((table - vt_code) as i32).to_le_bytes());
        let str_ref = b.len();
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&32i32.to_le_bytes());
        let s = b.len();
        b.extend_from_slice(&(c.len() as u32).to_le_bytes());
        b.extend_from_slice(c.as_bytes());
        b.push(0);
        while b.len() % 4 != 0 {
            b.push(0);
        }
        b[str_ref..str_ref + 4].copy_from_slice(&((s - str_ref) as u32).to_le_bytes());
        b[slot..slot + 4].copy_from_slice(&((table - slot) as u32).to_le_bytes());
    }
    b[codes_ref..codes_ref + 4].copy_from_slice(&((vec - codes_ref) as u32).to_le_bytes());
    b[0..4].copy_from_slice(&(model as u32).to_le_bytes());
    b
}

#[test]
fn tflite_custom_and_flex_ops() {
    assert_safe(&scan(&tflite(&[])), "tflite");
    let r = scan(&tflite(&["TFLite_Detection_PostProcess"]));
    assert_eq!(r.verdict, Verdict::Safe, "{r:#?}");
    assert!(evidence(&r, "tflite-custom-op").contains("TFLite_Detection_PostProcess"));
    let r = scan(&tflite(&["MyOp", "FlexWriteFile"]));
    assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
    assert!(evidence(&r, "tensorflow-file-write-op").contains("FlexWriteFile"));
    let mut broken = tflite(&["MyOp"]);
    broken[0] = 0xf0;
    assert_eq!(scan(&broken).verdict, Verdict::Error);
}

#[test]
fn mangled_inputs_never_panic() {
    never_panics(&tf2_model(&[node("p", "PyFunc", &["x"], &[])]));
    never_panics(&keras_metadata(&[r#"{"class_name": "Lambda", "config": {"function": "x"}}"#]));
    never_panics(&tflite(&["FlexReadFile", "Custom"]));
}

#[test]
fn savedmodel_starting_with_a_pickle_opcode_byte_is_still_found() {
    // Field 5 (varint) is unknown to SavedModel and skipped by TensorFlow; its tag is `(`, a
    // pickle opcode, so the file goes to the pickle probe first and must come back here.
    let sm = cat(&[int(5, 1), tf2_model(&[node("p", "PyFunc", &["x"], &[])])]);
    assert_eq!(sm[0], b'(');
    let r = scan(&sm);
    assert_eq!(r.format, "tensorflow-savedmodel", "{r:#?}");
    assert_eq!(r.verdict, Verdict::Dangerous);
}
