mod formats_common;
use formats_common::pb::{cat, int, msg, string};
use formats_common::*;
use modelgate::finding::Verdict;

fn node(name: &str, op: &str, domain: &str, attrs: &[Vec<u8>]) -> Vec<u8> {
    let mut v = cat(&[string(1, "x"), string(2, "y"), string(3, name), string(4, op)]);
    if !domain.is_empty() {
        v.extend(string(7, domain));
    }
    for a in attrs {
        v.extend(msg(5, a));
    }
    v
}

/// TensorProto with raw data, or stored externally at `location`.
fn tensor(name: &str, location: Option<&str>) -> Vec<u8> {
    let mut v = cat(&[int(1, 4), int(2, 1), string(8, name)]);
    match location {
        Some(l) => {
            v.extend(msg(13, &cat(&[string(1, "location"), string(2, l)])));
            v.extend(msg(13, &cat(&[string(1, "offset"), string(2, "0")])));
            v.extend(int(14, 1));
        }
        None => v.extend(msg(9, &[0u8; 16])),
    }
    v
}

fn graph(nodes: &[Vec<u8>], inits: &[Vec<u8>]) -> Vec<u8> {
    let mut g = Vec::new();
    for n in nodes {
        g.extend(msg(1, n));
    }
    g.extend(string(2, "main"));
    for t in inits {
        g.extend(msg(5, t));
    }
    g.extend(msg(11, &string(1, "x")));
    g.extend(msg(12, &string(1, "y")));
    g
}

fn model(g: &[u8], extra: &[Vec<u8>]) -> Vec<u8> {
    let mut m = cat(&[
        int(1, 8),
        string(2, "pytorch"),
        string(3, "2.1.0"),
        msg(7, g),
        msg(8, &cat(&[string(1, ""), int(2, 17)])),
    ]);
    for e in extra {
        m.extend_from_slice(e);
    }
    m
}

fn relu_model(inits: &[Vec<u8>]) -> Vec<u8> {
    model(&graph(&[node("relu", "Relu", "", &[]), node("mm", "FusedMatMul", "com.microsoft", &[])], inits), &[])
}

#[test]
fn ordinary_models_are_safe() {
    assert_safe(&scan(&relu_model(&[tensor("w", None)])), "onnx");
    assert_safe(&scan(&relu_model(&[tensor("w", Some("model.onnx.data"))])), "onnx");
    assert_safe(&scan_stream(&relu_model(&[tensor("w", Some("weights/w.bin"))])), "onnx");
}

#[test]
fn escaping_external_data_is_dangerous() {
    for loc in ["/etc/passwd", "../../../../etc/shadow", "a/../../b", "C:\\Windows\\win.ini", "..\\..\\x"] {
        let r = scan(&relu_model(&[tensor("w", None), tensor("leak", Some(loc))]));
        assert_eq!(r.verdict, Verdict::Dangerous, "{loc}: {r:#?}");
        let ev = evidence(&r, "onnx-external-data-path");
        assert!(ev.contains("\"leak\"") && ev.contains("main graph"), "{ev}");
    }
}

#[test]
fn external_data_in_subgraphs_and_functions_is_found() {
    // An `If` node whose then_branch (attribute g) holds an escaping initializer.
    let sub = graph(&[node("inner", "Identity", "", &[])], &[tensor("deep", Some("/proc/self/environ"))]);
    let attr = cat(&[string(1, "then_branch"), msg(6, &sub), int(20, 5)]);
    let r = scan(&model(&graph(&[node("if", "If", "", &[attr])], &[]), &[]));
    assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
    assert!(evidence(&r, "onnx-external-data-path").contains("subgraph of node \"if\""));
    // A tensor attribute of a node in a model-local function.
    let tattr = cat(&[string(1, "value"), msg(5, &tensor("c", Some("/etc/hosts")))]);
    let func = cat(&[string(1, "MyFn"), msg(7, &node("k", "Constant", "", &[tattr])), string(10, "local.fns")]);
    let r = scan(&model(&graph(&[node("call", "MyFn", "local.fns", &[])], &[]), &[msg(25, &func)]));
    assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
    assert!(!has(&r, "onnx-custom-operator"), "local function domains are not custom operators");
}

#[test]
fn custom_domains_are_suspicious() {
    let g = graph(
        &[
            node("a", "Relu", "", &[]),
            node("b", "Frobnicate", "com.example.ops", &[]),
            node("c", "Frobnicate", "com.example.ops", &[]),
        ],
        &[],
    );
    let r = scan(&model(&g, &[]));
    assert_eq!(r.verdict, Verdict::Suspicious, "{r:#?}");
    assert_eq!(r.findings.len(), 1);
    assert!(r.findings[0].message.contains("Frobnicate") && r.findings[0].message.contains("com.example.ops"));
}

#[test]
fn malformed_and_non_onnx() {
    let mut m = relu_model(&[tensor("w", None)]);
    m.truncate(m.len() - 20);
    let r = scan(&m);
    assert_eq!(r.format, "onnx");
    assert_eq!(r.verdict, Verdict::Error, "{r:#?}");
    let r = scan(&relu_model(&[cat(&[string(8, "w"), int(14, 1)])]));
    assert_eq!(r.verdict, Verdict::Error, "{r:#?}");
    // ir_version without a graph, or a graph-less protobuf: not ONNX.
    assert_eq!(scan(&cat(&[int(1, 8), string(2, "x")])).verdict, Verdict::Unsupported);
    assert_eq!(scan(&cat(&[int(1, 100_000), msg(7, &[])])).verdict, Verdict::Unsupported);
}

#[test]
fn mangled_models_never_panic() {
    let sub = graph(&[node("inner", "Identity", "", &[])], &[tensor("deep", Some("x.bin"))]);
    let attr = cat(&[string(1, "body"), msg(6, &sub)]);
    never_panics(&model(
        &graph(&[node("loop", "Loop", "", &[attr]), node("c", "Op", "my.d", &[])], &[tensor("w", Some("../x"))]),
        &[],
    ));
}
