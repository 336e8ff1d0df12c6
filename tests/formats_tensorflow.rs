mod containers_util;
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

/// FunctionDef: signature (OpDef name 1, input_arg 2 { name 1 }, output_arg 3), node_def 3,
/// with arguments, outputs (output_arg 3) and a ret map (4: key 1, value 2).
fn function_with(name: &str, args: &[&str], rets: &[(&str, &str)], nodes: &[Vec<u8>]) -> Vec<u8> {
    let mut sig = string(1, name);
    for a in args {
        sig.extend(msg(2, &string(1, a)));
    }
    for (out, _) in rets {
        sig.extend(msg(3, &string(1, out)));
    }
    let mut v = msg(1, &sig);
    for n in nodes {
        v.extend(msg(3, n));
    }
    for (out, r) in rets {
        v.extend(msg(4, &cat(&[string(1, out), string(2, r)])));
    }
    v
}

/// AttrValue.func { name }
fn attr_func(f: &str) -> Vec<u8> {
    msg(10, &string(1, f))
}

/// AttrValue.list.s
fn attr_list(items: &[&str]) -> Vec<u8> {
    msg(1, &items.iter().flat_map(|s| string(2, s)).collect::<Vec<u8>>())
}

fn call(name: &str, f: &str, inputs: &[&str]) -> Vec<u8> {
    node(name, "StatefulPartitionedCall", inputs, &[("f", attr_func(f))])
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
    // As tf.saved_model.save writes it (see tests/fixtures/tensorflow for the real thing).
    let save = function_with(
        "__inference__traced_save_45",
        &["file_prefix", "savev2_const"],
        &[],
        &[
            node("StaticRegexFullMatch", "StaticRegexFullMatch", &["file_prefix"], &[("pattern", attr_s("^s3://.*"))]),
            constant("Const", ".part"),
            constant("Const_1", "_temp/part"),
            node("Select", "Select", &["StaticRegexFullMatch:output:0", "Const:output:0", "Const_1:output:0"], &[]),
            node("StringJoin", "StringJoin", &["file_prefix", "Select:output:0"], &[]),
            node("ShardedFilename", "ShardedFilename", &["StringJoin:output:0", "shard", "num_shards"], &[]),
            node("SaveV2", "SaveV2", &["ShardedFilename:filename:0", "tensor_names", "slices", "savev2_const"], &[]),
            node("prefixes", "Pack", &["ShardedFilename:filename:0", "^SaveV2"], &[]),
            node("MergeV2Checkpoints", "MergeV2Checkpoints", &["prefixes:output:0", "file_prefix"], &[]),
        ],
    );
    let restore = function_with(
        "__inference__traced_restore_60",
        &["file_prefix"],
        &[],
        &[node("RestoreV2", "RestoreV2", &["file_prefix", "names", "slices"], &[])],
    );
    saved_model(
        &[
            node("x", "Placeholder", &[], &[]),
            call("serve", "__inference_serving_default_12", &["x"]),
            node("saver_filename", "Placeholder", &[], &[]),
            constant("Const", "object graph"),
            call("StatefulPartitionedCall_1", "__inference__traced_save_45", &["saver_filename", "Const"]),
            call("StatefulPartitionedCall_2", "__inference__traced_restore_60", &["saver_filename"]),
        ],
        &[function_with("__inference_serving_default_12", &["x"], &[], &serving), save, restore],
    )
}

#[test]
fn standard_checkpoint_functions_are_safe() {
    assert_safe(&scan(&tf2_model(&[])), "tensorflow-savedmodel");
    // TF1 Saver: the filename tensor (SaverDef.filename_tensor_name) is fed by the loader.
    assert_safe(&scan(&tf1_saver("save/Const:0")), "tensorflow-savedmodel");
    // Without the SaverDef naming it (a bare GraphDef written by tf.io.write_graph), the
    // PlaceholderWithDefault's default "model" is a plain name in the working directory.
    assert_safe(&scan(&tf1_saver("other:0")), "tensorflow-savedmodel");
}

#[test]
fn the_savers_filename_tensor() {
    // Fed by the loader on restore; other runs (a main op) see its default, which the graph fixed.
    let r = scan(&tf1_saver_default("save/Const:0", "/etc/cron.d/x"));
    assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
    assert!(evidence(&r, "tensorflow-file-write-op").contains("/etc/cron.d/x"), "{r:#?}");
    assert_safe(&scan(&tf1_saver_default("save/Const:0", "my_model")), "tensorflow-savedmodel");
    // A filename tensor that is no placeholder keeps the graph's value.
    let m = meta_graph(
        &[constant("save/Const", "/tmp/x"), node("save/SaveV2", "SaveV2", &["save/Const", "n", "s", "w"], &[])],
        &[],
        &[msg(3, &string(1, "save/Const:0"))],
    );
    assert!(evidence(&scan(&m), "tensorflow-file-write-op").contains("/tmp/x"));
}

/// A TF1 graph with a Saver; MetaGraphDef.saver_def (3) names the filename tensor.
fn tf1_saver(filename_tensor: &str) -> Vec<u8> {
    tf1_saver_default(filename_tensor, "model")
}

fn tf1_saver_default(filename_tensor: &str, default: &str) -> Vec<u8> {
    let nodes = [
        constant("save/filename/input", default),
        node("save/filename", "PlaceholderWithDefault", &["save/filename/input"], &[]),
        node("save/Const", "PlaceholderWithDefault", &["save/filename"], &[]),
        node("save/SaveV2", "SaveV2", &["save/Const", "save/names", "save/slices", "w"], &[]),
        node("save/RestoreV2", "RestoreV2", &["save/Const", "save/names", "save/slices"], &[]),
    ];
    meta_graph(&nodes, &[], &[msg(3, &string(1, filename_tensor))])
}

/// SavedModel with one MetaGraphDef: graph_def 2 plus extra MetaGraphDef fields.
fn meta_graph(nodes: &[Vec<u8>], functions: &[Vec<u8>], extra: &[Vec<u8>]) -> Vec<u8> {
    let mut g: Vec<u8> = nodes.iter().flat_map(|n| msg(1, n)).collect();
    if !functions.is_empty() {
        let lib: Vec<u8> = functions.iter().flat_map(|f| msg(1, f)).collect();
        g.extend(msg(2, &lib));
    }
    let mut meta = msg(2, &g);
    for e in extra {
        meta.extend_from_slice(e);
    }
    cat(&[int(1, 1), msg(2, &meta)])
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

/// The verdict and the evidence of the finding with `code`.
fn judged(bytes: &[u8], code: &str) -> (Verdict, String) {
    let r = scan(bytes);
    assert_eq!(r.format, "tensorflow-savedmodel", "{r:#?}");
    (r.verdict, evidence(&r, code))
}

#[test]
fn paths_built_by_any_op_are_fixed() {
    // Each builds the checkpoint prefix of a RestoreV2 (reported only when the graph fixes it).
    let x = || node("x", "Placeholder", &[], &[]);
    let restore = |prefix: &str| node("r", "RestoreV2", &[prefix, "names", "slices"], &[]);
    let fixed: Vec<(Vec<Vec<u8>>, &str)> = vec![
        (vec![constant("c", "/etc/ckpt"), restore("c")], "\"/etc/ckpt\""),
        (vec![x(), node("re", "RegexReplace", &["x", "p", "q"], &[]), restore("re")], "RegexReplace"),
        (vec![x(), node("re", "StaticRegexReplace", &["x"], &[]), restore("re:0")], "StaticRegexReplace"),
        (vec![x(), node("f", "StringFormat", &["x"], &[]), restore("f")], "StringFormat"),
        (vec![x(), node("a", "AsString", &["x"], &[]), restore("a")], "AsString"),
        (vec![x(), node("s", "Substr", &["x", "p", "l"], &[]), restore("s")], "Substr"),
        (vec![x(), node("j", "ReduceJoin", &["x", "axis"], &[]), restore("j")], "ReduceJoin"),
        // A fixed directory before the caller's part, or `..` after it.
        (
            vec![x(), constant("d", "/etc/"), node("j", "StringJoin", &["d", "x"], &[]), restore("j")],
            "\"/etc/\" + <placeholder x>",
        ),
        (vec![x(), constant("d", "/../../etc/cron.d/x"), node("j", "Add", &["x", "d"], &[]), restore("j")], "cron.d"),
        (
            vec![
                x(),
                constant("sep", "/"),
                node("j", "StringJoin", &["x", "x"], &[("separator", attr_s("/../"))]),
                restore("j"),
            ],
            "/../",
        ),
        // The default of a PlaceholderWithDefault runs when nothing is fed.
        (
            vec![constant("d", "/etc/ckpt"), node("p", "PlaceholderWithDefault", &["d"], &[]), restore("p")],
            "\"/etc/ckpt\"",
        ),
        // Either branch of a select, and every input of a merge, may be the path.
        (
            vec![x(), constant("c", "/etc/ckpt"), node("s", "SelectV2", &["cond", "x", "c"], &[]), restore("s")],
            "\"/etc/ckpt\"",
        ),
        (vec![x(), constant("c", "/etc/ckpt"), node("m", "Merge", &["x", "c"], &[]), restore("m")], "/etc/ckpt"),
        (vec![node("i", "Identity", &["c", "^x"], &[]), constant("c", "/a"), restore("i:0")], "\"/a\""),
        (vec![restore("nowhere:0")], "names no node"),
    ];
    for (nodes, ev) in fixed {
        let (v, e) = judged(&saved_model(&nodes, &[]), "tensorflow-file-read-op");
        assert_eq!(v, Verdict::Suspicious, "{ev}: {e}");
        assert!(e.contains(ev) && e.contains("\"r\" op RestoreV2"), "{ev}: {e}");
    }
    // The caller's path with safe suffixes, through identities, is the caller's.
    for nodes in [
        vec![node("x", "Placeholder", &[], &[]), restore("x")],
        vec![
            node("x", "Placeholder", &[], &[]),
            constant("c", "_temp/part"),
            node("i", "IdentityN", &["c", "x"], &[]),
            node("j", "StringJoin", &["i:1", "c"], &[]),
            node("s", "ShardedFilename", &["j", "n", "m"], &[]),
            node("id", "Snapshot", &["s"], &[]),
            restore("id"),
        ],
    ] {
        assert_safe(&scan(&saved_model(&nodes, &[])), "tensorflow-savedmodel");
    }
}

#[test]
fn arguments_resolve_through_call_sites() {
    let saver = |args: &[&str]| {
        function_with("save_fn", &["prefix", "t"], &[], &[node("s", "SaveV2", &[args[0], "names", "slices", "t"], &[])])
    };
    // Called by nobody: the argument is the caller's.
    assert_safe(&scan(&saved_model(&[], &[saver(&["prefix"])])), "tensorflow-savedmodel");
    // Called with a constant by the main graph, directly or through another function.
    let direct = saved_model(&[constant("c", "/tmp/x"), call("k", "save_fn", &["c", "t"])], &[saver(&["prefix"])]);
    let (v, e) = judged(&direct, "tensorflow-file-write-op");
    assert_eq!(v, Verdict::Dangerous);
    assert!(e.contains("path \"/tmp/x\"") && e.contains("function \"save_fn\""), "{e}");
    let outer = function_with(
        "outer",
        &["p"],
        &[],
        &[
            constant("suffix", "/../../etc/x"),
            node("j", "StringJoin", &["p", "suffix:output:0"], &[]),
            call("k", "save_fn", &["j:output:0", "t"]),
        ],
    );
    let (v, e) = judged(&saved_model(&[], &[outer, saver(&["prefix"])]), "tensorflow-file-write-op");
    assert_eq!(v, Verdict::Dangerous);
    assert!(e.contains("/../../etc/x"), "{e}");
    // A call by op name (the function is the op), and an If branch (inputs shift by one).
    let by_name =
        saved_model(&[constant("c", "/tmp/y"), node("k", "save_fn", &["c", "t"], &[])], &[saver(&["prefix"])]);
    assert!(judged(&by_name, "tensorflow-file-write-op").1.contains("/tmp/y"));
    let branch = saved_model(
        &[
            node("x", "Placeholder", &[], &[]),
            constant("c", "/tmp/z"),
            node(
                "if",
                "If",
                &["cond", "c", "t"],
                &[("then_branch", attr_func("save_fn")), ("else_branch", attr_func("save_fn"))],
            ),
        ],
        &[saver(&["prefix"])],
    );
    assert!(judged(&branch, "tensorflow-file-write-op").1.contains("/tmp/z"));
    // Called by an op whose argument mapping is not known (a dataset map): fixed by the graph.
    let mapped =
        saved_model(&[node("m", "MapDataset", &["ds"], &[("f", attr_func("save_fn"))])], &[saver(&["prefix"])]);
    assert_eq!(judged(&mapped, "tensorflow-file-write-op").0, Verdict::Dangerous);
    // Called with the caller's placeholder: the caller's.
    let fed =
        saved_model(&[node("x", "Placeholder", &[], &[]), call("k", "save_fn", &["x", "t"])], &[saver(&["prefix"])]);
    assert_safe(&scan(&fed), "tensorflow-savedmodel");
}

#[test]
fn call_outputs_and_recursion() {
    // A function returns a constant; its call's output is the path.
    let give = function_with("give", &["a"], &[("out", "c:output:0")], &[constant("c", "/tmp/from_fn")]);
    let pass = function_with("pass", &["a"], &[("out", "i:output:0")], &[node("i", "Identity", &["a"], &[])]);
    let m = saved_model(
        &[
            node("x", "Placeholder", &[], &[]),
            call("k", "give", &["x"]),
            node("r", "RestoreV2", &["k:0", "n", "s"], &[]),
        ],
        std::slice::from_ref(&give),
    );
    assert!(judged(&m, "tensorflow-file-read-op").1.contains("/tmp/from_fn"));
    // A function passing its argument through returns what the call site gave it.
    let through = |input: &str| {
        saved_model(
            &[
                node("x", "Placeholder", &[], &[]),
                constant("c", "/tmp/through"),
                call("k", "pass", &[input]),
                node("r", "RestoreV2", &["k:0", "n", "s"], &[]),
            ],
            std::slice::from_ref(&pass),
        )
    };
    assert!(judged(&through("c"), "tensorflow-file-read-op").1.contains("/tmp/through"));
    assert_safe(&scan(&through("x")), "tensorflow-savedmodel");
    // A function that calls itself with its own argument ends (and stays the caller's).
    let rec = function_with(
        "rec",
        &["p"],
        &[],
        &[call("again", "rec", &["p"]), node("s", "SaveV2", &["p", "n", "s", "t"], &[])],
    );
    assert_safe(&scan(&saved_model(&[], &[rec])), "tensorflow-savedmodel");
    // A long chain stops at the trace budget: it cannot be judged (error), and says why.
    let mut chain = vec![node("n0", "Placeholder", &[], &[])];
    for i in 1..30_000 {
        chain.push(node(&format!("n{i}"), "Identity", &[&format!("n{}", i - 1)], &[]));
    }
    chain.push(node("r", "RestoreV2", &["n29999", "n", "s"], &[]));
    let (v, e) = judged(&saved_model(&chain, &[]), "tensorflow-trace-budget");
    assert_eq!(v, Verdict::Error);
    assert!(e.contains("too deep") && e.contains("\"r\" op RestoreV2"), "{e}");
    // A fixed alternative next to a cut-short one is still reported as fixed.
    chain.push(constant("c", "/etc/ckpt"));
    chain.push(node("m", "Merge", &["n29999", "c"], &[]));
    chain.push(node("r2", "RestoreV2", &["m", "n", "s"], &[]));
    let r = scan(&saved_model(&chain, &[]));
    assert!(evidence(&r, "tensorflow-file-read-op").contains("/etc/ckpt"), "{r:#?}");
}

/// MetaGraphDef.asset_file_def (6): tensor_info { name }, filename.
fn asset(tensor: &str, file: &str) -> Vec<u8> {
    msg(6, &cat(&[msg(1, &string(1, tensor)), string(2, file)]))
}

#[test]
fn assets_are_the_callers_unless_they_walk_out() {
    let model = |file: &str| {
        meta_graph(
            &[
                constant("asset_path", "/abs/path/at/export/vocab.txt"),
                node("t", "HashTableV2", &[], &[]),
                node("init", "InitializeTableFromTextFileV2", &["t", "asset_path"], &[]),
            ],
            &[],
            &[asset("asset_path:0", file)],
        )
    };
    assert_safe(&scan(&model("vocab.txt")), "tensorflow-savedmodel");
    for bad in ["../../etc/passwd", "/etc/passwd"] {
        let (v, e) = judged(&model(bad), "tensorflow-file-read-op");
        assert_eq!(v, Verdict::Suspicious, "{bad}");
        assert!(e.contains(bad), "{e}");
    }
    // Without an asset entry, the constant is the graph's.
    let plain = saved_model(
        &[constant("p", "/etc/passwd"), node("init", "InitializeTableFromTextFileV2", &["t", "p"], &[])],
        &[],
    );
    assert!(judged(&plain, "tensorflow-file-read-op").1.contains("/etc/passwd"));
    // The `saved_model_assets` collection (TF1 builders) counts as well: collection_def 4 {
    // key, value: CollectionDef { any_list 5 { value 1: Any { type_url 1, value 2 } } } }.
    let asset_def = cat(&[msg(1, &string(1, "asset_path:0")), string(2, "vocab.txt")]);
    let any = cat(&[string(1, "type.googleapis.com/tensorflow.AssetFileDef"), msg(2, &asset_def)]);
    let coll = msg(4, &cat(&[string(1, "saved_model_assets"), msg(2, &msg(5, &msg(1, &any)))]));
    let m = meta_graph(
        &[constant("asset_path", "x"), node("init", "InitializeTableFromTextFileV2", &["t", "asset_path"], &[])],
        &[],
        &[coll],
    );
    assert_safe(&scan(&m), "tensorflow-savedmodel");
}

#[test]
fn captured_inputs_and_variables() {
    // object_graph_def 7 { nodes 1 [SavedObject], concrete_functions 2 { key, value { bound_inputs 2 } } }
    let init = function_with(
        "init_fn",
        &["path", "table"],
        &[],
        &[node("i", "InitializeTableFromTextFileV2", &["table", "path"], &[])],
    );
    let objects = |path_object: Vec<u8>| {
        let nodes =
            cat(&[msg(1, &msg(4, &string(1, "_generic_user_object"))), msg(1, &path_object), msg(1, &msg(10, &[]))]);
        let cf = msg(2, &cat(&[string(1, "init_fn"), msg(2, &msg(2, &[1, 2]))]));
        msg(7, &cat(&[nodes, cf]))
    };
    let with = |path_object: Vec<u8>, extra: Vec<Vec<u8>>| {
        let mut e = vec![objects(path_object)];
        e.extend(extra);
        meta_graph(&[constant("Const", "/etc/passwd")], std::slice::from_ref(&init), &e)
    };
    // Captured asset (SavedAsset 5 { asset_file_def_index 1 }) with a clean name: the model's own.
    assert_safe(&scan(&with(msg(5, &int(1, 0)), vec![asset("a:0", "vocab.txt")])), "tensorflow-savedmodel");
    // Captured constant (SavedConstant 9 { operation 1 }): fixed by the graph.
    let (v, e) = judged(&with(msg(9, &string(1, "Const")), vec![]), "tensorflow-file-read-op");
    assert_eq!(v, Verdict::Suspicious);
    assert!(e.contains("/etc/passwd"), "{e}");
    // Captured variable (7): its value comes from the checkpoint.
    assert!(judged(&with(msg(7, &[]), vec![]), "tensorflow-file-read-op").1.contains("variable"));

    // ReadVariableOp: the values the main graph assigns (TF2 assets) or else the checkpoint.
    let var_model = |value: Vec<u8>, extra: Vec<Vec<u8>>| {
        meta_graph(
            &[
                node("v", "VarHandleOp", &[], &[]),
                value,
                node("assign", "AssignVariableOp", &["v", "val"], &[]),
                node("read", "ReadVariableOp", &["v", "^assign"], &[]),
                call("k", "init_fn", &["read", "t"]),
            ],
            std::slice::from_ref(&init),
            &extra,
        )
    };
    let placeholder = node("val", "Placeholder", &[], &[]);
    assert_safe(&scan(&var_model(placeholder.clone(), vec![asset("val:0", "vocab.txt")])), "tensorflow-savedmodel");
    let (v, e) = judged(&var_model(constant("val", "/etc/shadow"), vec![]), "tensorflow-file-read-op");
    assert_eq!(v, Verdict::Suspicious);
    assert!(e.contains("/etc/shadow"), "{e}");
    let unassigned = meta_graph(
        &[
            node("v", "VarHandleOp", &[], &[]),
            node("read", "ReadVariableOp", &["v"], &[]),
            call("k", "init_fn", &["read", "t"]),
        ],
        std::slice::from_ref(&init),
        &[],
    );
    assert!(judged(&unassigned, "tensorflow-file-read-op").1.contains("checkpoint"));
}

#[test]
fn ops_from_the_registry() {
    let x = node("x", "Placeholder", &[], &[]);
    let cases: Vec<(Vec<u8>, &str, Verdict, &str)> = vec![
        (
            node("c", "CacheDatasetV2", &["ds", "p", "cache"], &[]),
            "tensorflow-file-write-op",
            Verdict::Dangerous,
            "CacheDatasetV2",
        ),
        (
            node("c", "SaveDatasetV2", &["ds", "p"], &[]),
            "tensorflow-file-write-op",
            Verdict::Dangerous,
            "SaveDatasetV2",
        ),
        (node("c", "SnapshotDatasetV2", &["ds", "p"], &[]), "tensorflow-file-write-op", Verdict::Dangerous, "Snapshot"),
        (
            node("c", "TextLineDataset", &["p", "t", "b"], &[]),
            "tensorflow-file-read-op",
            Verdict::Suspicious,
            "TextLine",
        ),
        (
            node("c", "TFRecordDatasetV2", &["p", "t", "b", "l"], &[]),
            "tensorflow-file-read-op",
            Verdict::Suspicious,
            "TFRecord",
        ),
        (node("c", "MatchingFilesDataset", &["p"], &[]), "tensorflow-file-read-op", Verdict::Suspicious, "Matching"),
        (node("c", "WholeFileReaderV2", &[], &[]), "tensorflow-file-read-op", Verdict::Suspicious, "WholeFile"),
        (
            node("c", "ImmutableConst", &[], &[("memory_region_name", attr_s("/etc/x"))]),
            "tensorflow-file-read-op",
            Verdict::Suspicious,
            "memory_region_name \"/etc/x\"",
        ),
        (
            node("c", "CreateSummaryFileWriter", &["w", "p", "q", "f", "s"], &[]),
            "tensorflow-file-write-op",
            Verdict::Dangerous,
            "Summary",
        ),
        (
            node("c", "WriteAudioSummary", &["w", "s", "t", "a", "r"], &[]),
            "tensorflow-file-write-op",
            Verdict::Dangerous,
            "Audio",
        ),
        (node("c", "PyFuncStateless", &["x"], &[]), "tensorflow-python-op", Verdict::Dangerous, "PyFuncStateless"),
        (
            node("c", "DataServiceDatasetV4", &["i", "m", "a"], &[]),
            "tensorflow-network-op",
            Verdict::Dangerous,
            "DataService",
        ),
        (node("c", "RpcClient", &["a", "t"], &[]), "tensorflow-network-op", Verdict::Dangerous, "RpcClient"),
        (
            node("c", "DebugIdentityV3", &["x"], &[("debug_urls", attr_list(&["file:///tmp/dbg"]))]),
            "tensorflow-file-write-op",
            Verdict::Dangerous,
            "file:///tmp/dbg",
        ),
        (
            node("c", "DebugIdentity", &["x"], &[("debug_urls", attr_list(&["grpc://evil:1"]))]),
            "tensorflow-network-op",
            Verdict::Dangerous,
            "grpc://evil:1",
        ),
        (
            node("c", "DecodeProtoV2", &["b"], &[("descriptor_source", attr_s("/etc/desc.pb"))]),
            "tensorflow-file-read-op",
            Verdict::Suspicious,
            "/etc/desc.pb",
        ),
        (
            node("c", "FixedUnigramCandidateSampler", &["t"], &[("vocab_file", attr_s("/etc/v"))]),
            "tensorflow-file-read-op",
            Verdict::Suspicious,
            "vocab_file",
        ),
        (
            node("c", "FileSystemSetConfiguration", &["s", "k", "v"], &[]),
            "tensorflow-filesystem-config-op",
            Verdict::Suspicious,
            "FileSystemSetConfiguration",
        ),
        (node("c", "DatasetFromGraph", &["g"], &[]), "tensorflow-hidden-graph", Verdict::Error, "DatasetFromGraph"),
        (
            node("c", "DumpTensor", &["x"], &[("log_dir_path", attr_s("/tmp/d")), ("file_name", attr_s("f"))]),
            "tensorflow-file-write-op",
            Verdict::Dangerous,
            "/tmp/d",
        ),
    ];
    for (n, code, verdict, ev) in cases {
        let r = scan(&saved_model(&[x.clone(), n], &[]));
        assert_eq!(r.verdict, verdict, "{ev}: {r:#?}");
        assert!(evidence(&r, code).contains(ev), "{ev}: {r:#?}");
    }
    // Attr-gated ops without a file, and an in-memory cache, are fine.
    for n in [
        node("c", "CacheDatasetV2", &["ds", "e", "cache"], &[]),
        node("c", "DebugIdentityV3", &["x"], &[("debug_urls", attr_list(&[]))]),
        node("c", "DecodeProtoV2", &["b"], &[("descriptor_source", attr_s("local://"))]),
        node("c", "PrintV2", &["x"], &[("output_stream", attr_s("log(info)"))]),
        node("c", "FixedUnigramCandidateSampler", &["t"], &[("vocab_file", attr_s(""))]),
    ] {
        assert_safe(&scan(&saved_model(&[x.clone(), constant("e", ""), n], &[])), "tensorflow-savedmodel");
    }
}

#[test]
fn graph_and_meta_graph_roots() {
    // A GraphDef on its own (tf.io.write_graph, frozen graphs) and a MetaGraphDef (`.meta`).
    let nodes = [node("x", "Placeholder", &[], &[]), constant("p", "/tmp/w"), node("w", "WriteFile", &["p", "x"], &[])];
    let graph: Vec<u8> = nodes.iter().flat_map(|n| msg(1, n)).chain(msg(4, &int(1, 1700))).collect();
    let meta = msg(2, &graph);
    for b in [graph, meta] {
        let (v, e) = judged(&b, "tensorflow-file-write-op");
        assert_eq!(v, Verdict::Dangerous);
        assert!(e.contains("/tmp/w"), "{e}");
    }
}

#[test]
fn text_format_graphs() {
    let ok = r#"# a comment
saved_model_schema_version: 1
meta_graphs {
  meta_info_def { tags: "serve" stripped_op_list { op { name: "Const" } } }
  graph_def <
    node { name: "x" op: "Placeholder" attr { key: "dtype" value { type: DT_STRING } } }
    node { name: "r" op: "RestoreV2" input: ["x", 'n'] input: "s" }
    versions { producer: 1700 bad_consumers: [1, -2] }
  >
  saver_def { filename_tensor_name: "x:0" version: V2 keep_checkpoint_every_n_hours: 1e4 }
}
"#;
    assert_safe(&scan(ok.as_bytes()), "tensorflow-savedmodel");
    // The op name spelled with escapes and split literals is read as TensorFlow reads it.
    let bad = "node { name: 'p' op: \"Py\\x46\" 'un\\143' }\n";
    let r = scan(bad.as_bytes());
    assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
    assert!(evidence(&r, "tensorflow-python-op").contains("PyFunc"));
    // Broken text is an error, and what came before the break is still judged.
    let r = scan(b"node { name: 'w' op: 'WriteFile' input: 'p' }\nnode { name: 'p' op: 'Const' attr { key: 'value' value { s: \"unterminated");
    assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
    assert!(has(&r, "tensorflow-malformed"));
    let r = scan(b"meta_graphs { graph_def { node { name: 'a' op: 'NoOp' } } } }");
    assert_eq!(r.verdict, Verdict::Error, "{r:#?}");
    let r = scan(format!("node {}", "{ attr ".repeat(200)).as_bytes());
    assert_eq!(r.verdict, Verdict::Error, "{r:#?}");
    never_panics(ok.as_bytes());
}

#[test]
fn fingerprint_is_recognised() {
    // FingerprintDef: checksum 1, hashes 2-5, version 6 { producer 1 }, uuid 7.
    let fp = cat(&[int(1, 5), int(2, 6), int(3, 7), int(4, 8), int(5, 9), msg(6, &int(1, 4)), string(7, "1234")]);
    assert_safe(&scan(&fp), "tensorflow-savedmodel");
}

/// TFLite models with associated files (labels, vocabularies) carry them as a zip after the
/// flatbuffer (tflite_support's MetadataPopulator appends it): both parts are judged, and the
/// layout alone is no reason to tag the model; a dangerous member still decides.
#[test]
fn tflite_with_associated_files() {
    use containers_util::{zip_opts, ZipOpts, Z};
    let model = tflite(&["TFLite_Detection_PostProcess"]);
    let o = ZipOpts { prepend: model.clone(), ..Default::default() };
    let r = scan(&zip_opts(&[Z::stored("labels.txt", b"cat\ndog\n")], &o));
    assert_eq!(r.verdict, Verdict::Safe, "{r:#?}");
    assert!(has(&r, "tflite-associated-files"), "{r:#?}");
    assert!(!has(&r, "zip-prepended-data"), "{r:#?}");
    let r = scan(&zip_opts(&[Z::stored("labels.pkl", b"cos\nsystem\n(S'echo pwned'\ntR.")], &o));
    assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
    // any other head in front of a zip stays a polyglot worth a look
    let o = ZipOpts { prepend: b"GIF89a junk before the archive".to_vec(), ..Default::default() };
    let r = scan(&zip_opts(&[Z::stored("labels.txt", b"cat\n")], &o));
    assert!(has(&r, "zip-prepended-data"), "{r:#?}");
}
