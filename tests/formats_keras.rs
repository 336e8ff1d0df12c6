mod formats_common;
use formats_common::*;
use modelgate::finding::{Severity, Verdict};
use serde_json::json;

fn layer(module: &str, class: &str, config: serde_json::Value) -> serde_json::Value {
    json!({"module": module, "class_name": class, "config": config, "registered_name": null})
}

fn model(layers: Vec<serde_json::Value>) -> Vec<u8> {
    let v = json!({"module": "keras", "class_name": "Functional", "config": {"name": "m", "layers": layers,
        "input_layers": [["input", 0, 0]], "output_layers": [["dense", 0, 0]]},
        "registered_name": "Functional", "build_config": {"input_shape": null},
        "compile_config": {"optimizer": layer("keras.optimizers", "Adam", json!({"learning_rate": 0.001})),
            "loss": layer("keras.losses", "MeanSquaredError", json!({})), "metrics": ["mae"]}});
    serde_json::to_vec_pretty(&v).unwrap()
}

fn dense() -> serde_json::Value {
    layer(
        "keras.layers",
        "Dense",
        json!({"name": "dense", "units": 4, "activation": "relu",
        "kernel_initializer": layer("keras.initializers", "GlorotUniform", json!({"seed": null})),
        "dtype": layer("keras", "DTypePolicy", json!({"name": "float32"}))}),
    )
}

#[test]
fn ordinary_config_json_is_safe() {
    let input = layer("keras.layers", "InputLayer", json!({"name": "input", "batch_shape": [null, 3]}));
    assert_safe(&scan(&model(vec![input, dense()])), "keras-config");
    assert_safe(&scan_stream(&model(vec![dense()])), "keras-config");
}

#[test]
fn lambda_inside_nested_model_is_dangerous() {
    let lam = layer(
        "keras.layers",
        "Lambda",
        json!({"name": "sneaky", "function":
        {"class_name": "__lambda__", "config": {"code": "4wEAAAAAAAAAAAAAAAEAAAADAAAA8xYAAACVAHQBAAAAAAAAAAAAAGQBpgEAAKsBAAAAAAAAAABTACkCTnoKZWNobyBwd25lZCkB2gVwcmludCkB2gF4cwEAAAAg",
        "defaults": null, "closure": null}}}),
    );
    let inner = layer("keras", "Sequential", json!({"name": "inner", "layers": [dense(), lam]}));
    let wrapped = layer("keras.layers", "TimeDistributed", json!({"name": "td", "layer": inner}));
    let r = scan(&model(vec![wrapped]));
    assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
    let ev = evidence(&r, "keras-lambda-layer");
    assert!(ev.contains("model/m/td/inner/sneaky") && ev.contains("echo pwned"), "{ev}");
}

#[test]
fn arbitrary_callables_cve_2025_1550() {
    let cases = [
        (layer("os", "system", json!("echo pwned")), "keras-dangerous-object", Verdict::Dangerous),
        (layer("subprocess", "Popen", json!({"args": ["echo", "x"]})), "keras-dangerous-object", Verdict::Dangerous),
        (
            json!({"module": "builtins", "class_name": "function", "config": "exec", "registered_name": "function"}),
            "keras-dangerous-object",
            Verdict::Dangerous,
        ),
        (
            layer("keras.utils", "get_file", json!({"origin": "http://example.invalid/p", "cache_dir": "/tmp"})),
            "keras-get-file",
            Verdict::Dangerous,
        ),
        (
            layer("keras.config", "enable_unsafe_deserialization", json!({})),
            "keras-unsafe-deserialization",
            Verdict::Dangerous,
        ),
        (
            layer("keras.src.utils.torch_utils", "TorchModuleWrapper", json!({"module": "UEsDBA=="})),
            "keras-torch-module-wrapper",
            Verdict::Dangerous,
        ),
        (layer("my_project.layers", "Attention2", json!({})), "keras-unknown-object", Verdict::Suspicious),
        (
            layer("keras.layers", "StringLookup", json!({"vocabulary": "/etc/passwd"})),
            "keras-vocabulary-file",
            Verdict::Suspicious,
        ),
    ];
    for (obj, code, verdict) in cases {
        let r = scan(&model(vec![dense(), obj.clone()]));
        assert_eq!(r.verdict, verdict, "{obj}: {r:#?}");
        assert!(has(&r, code), "{obj}: {r:#?}");
    }
}

#[test]
fn legacy_configs_use_the_class_allowlist() {
    let ok = json!({"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "Conv2D", "config": {"filters": 8, "kernel_regularizer": {"class_name": "L1L2", "config": {}}}},
        {"class_name": "Bidirectional", "config": {"layer": {"class_name": "LSTM", "config": {}}}},
        {"class_name": "Dense", "config": {"units": 1}}]}});
    assert_safe(&scan(&serde_json::to_vec(&ok).unwrap()), "keras-config");
    let custom = json!({"class_name": "Sequential", "config": {"layers": [{"class_name": "MyLayer", "config": {}}]}});
    assert_eq!(scan(&serde_json::to_vec(&custom).unwrap()).verdict, Verdict::Suspicious);
}

#[test]
fn other_json_is_not_a_model() {
    for j in [&br#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "x": NaN}"#[..], b"{}", b"{\\rtf1 x}"] {
        let r = scan(j);
        assert_eq!(r.verdict, Verdict::Unsupported, "{r:#?}");
    }
}

const LAMBDA: &str = r#"{"class_name": "Lambda", "config": {"name": "evil", "function": ["4wEAAAAAAAAAAAAAAAEAAAADAAAA8xYAAACVAHQBAAAAAAAAAAAAAGQBpgEAAKsBAAAAAAAAAABTACkCTnoKZWNobyBwd25lZCkB2gVwcmludCkB2gF4cwEAAAAg", null, null]}}"#;

/// Keras reads `config.json` with `json.loads`: what Python accepts (and serde_json does
/// not) is checked, never passed over as unknown bytes.
#[test]
fn configs_python_reads_are_checked() {
    let cfg = |extra: &str| {
        format!(r#"{{"class_name": "Sequential", "config": {{"name": "s"{extra}, "layers": [{LAMBDA}]}}}}"#)
    };
    let docs: Vec<Vec<u8>> = vec![
        cfg(r#", "lr": NaN, "clip": Infinity, "low": -Infinity"#).into_bytes(),
        cfg(r#", "seed": 123456789012345678901234567890123456789, "eps": 1e999"#).into_bytes(),
        cfg(r#", "note": "\ud800 lone surrogate""#).into_bytes(),
        cfg(r#", "dup": 1, "dup": 2"#).into_bytes(),
        cfg("").replace("\"Lambda\"", r#""La\u006dbda""#).into_bytes(),
        [&b"\xef\xbb\xbf"[..], cfg("").as_bytes()].concat(),
        cfg("").encode_utf16().flat_map(u16::to_le_bytes).collect(),
        cfg("").encode_utf16().flat_map(u16::to_be_bytes).collect(),
        [&b"\xff\xfe"[..], &cfg("").encode_utf16().flat_map(u16::to_le_bytes).collect::<Vec<u8>>()].concat(),
        cfg("").chars().flat_map(|c| (c as u32).to_be_bytes()).collect(),
        format!(
            r#"{{"class_name": "Sequential", "config": {{"deep": {}0{}, "layers": [{LAMBDA}]}}}}"#,
            "[".repeat(300),
            "]".repeat(300)
        )
        .into_bytes(),
    ];
    for d in docs {
        let r = scan(&d);
        assert_eq!(r.verdict, Verdict::Dangerous, "{}: {r:#?}", String::from_utf8_lossy(&d));
        assert!(has(&r, "keras-lambda-layer"));
        assert_eq!(r.format, "keras-config");
    }
    // A Lambda nested 900 deep (Python 3.11 reads it) is found.
    let mut deep = LAMBDA.to_string();
    for _ in 0..450 {
        deep = format!(r#"{{"class_name": "TimeDistributed", "config": {{"layer": {deep}}}}}"#);
    }
    let r = scan(deep.as_bytes());
    assert_eq!(r.verdict, Verdict::Dangerous, "{:?}", r.findings);
}

/// A document that starts as a JSON object but cannot be read, or nests past the budget, is
/// an error: never "unknown bytes".
#[test]
fn unreadable_configs_fail_closed() {
    for d in [
        format!(r#"{{"class_name": "Sequential", "config": {{"layers": [{LAMBDA},]}}}}"#),
        r#"{"class_name": "Lambda", "config": {"function": "x"}"#.to_string(),
        format!(r#"{{"class_name": "Sequential", "config": {}1{}}}"#, "[".repeat(2000), "]".repeat(2000)),
        r#"{"chat_template": "{{ x }}", }"#.to_string(),
        // a key a loader reads, hidden in an escape
        r#"{"chat\u005ftemplate": "{{ x }}", }"#.to_string(),
        r#"{"model_type": "llama", "auto_map": {"AutoModel": "m.M"},}"#.to_string(),
    ] {
        let r = scan(d.as_bytes());
        assert_eq!(r.verdict, Verdict::Error, "{d:.80}: {r:#?}");
        assert!(has(&r, "json-malformed"), "{r:#?}");
    }
}

/// JSON-like documents json.loads refuses that name no key a model loader reads (tool
/// configs with comments or trailing commas: tsconfig, pyrightconfig, VS Code settings) are
/// no model files: unsupported, with an info finding saying why.
#[test]
fn unreadable_tool_configs_are_not_models() {
    for d in [
        "{\n  \"extends\": \"./tsconfig.json\",\n  // comment\n  \"compilerOptions\": {\"strict\": true,},\n}\n",
        "{\n  \"pythonVersion\": \"3.9\",\n  \"reportDeprecated\": \"warning\", // TODO\n  \"executionEnvironments\": [{ /* x */ \"root\": \".\" }]\n}\n",
        r#"{"a": "#,
    ] {
        let r = scan(d.as_bytes());
        assert_eq!(r.verdict, Verdict::Unsupported, "{d:.80}: {r:#?}");
        assert_eq!(r.findings.iter().map(|f| f.code).collect::<Vec<_>>(), ["json-unreadable"], "{r:#?}");
        assert_eq!(r.findings[0].severity, Severity::Info);
    }
}

/// More findings than are listed never hide the worst one.
#[test]
fn many_findings_keep_the_dangerous_one() {
    let mut layers: Vec<serde_json::Value> =
        (0..500).map(|i| layer("my_pkg.layers", &format!("Custom{i}"), json!({}))).collect();
    layers.push(serde_json::from_str(LAMBDA).unwrap());
    let r = scan(&model(layers));
    assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
    assert!(has(&r, "keras-findings-elided"));
}

#[test]
fn mangled_configs_never_panic() {
    never_panics(&model(vec![dense(), layer("keras.layers", "Lambda", json!({"function": "lambda x: x"}))]));
}

/// The python3 on PATH (the JSON oracle needs only the standard library).
fn python() -> Option<&'static str> {
    ["python3", "python"]
        .into_iter()
        .find(|p| std::process::Command::new(p).arg("-c").arg("import json").output().is_ok_and(|o| o.status.success()))
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// Python's normalised value (floats as `{"$f": repr}`) equals modelgate's.
fn same(got: &serde_json::Value, want: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (got, want) {
        (Value::Number(n), Value::Object(o)) if o.contains_key("$f") => {
            let w: f64 = o["$f"].as_str().unwrap().parse().unwrap();
            n.as_f64().is_some_and(|g| g.to_bits() == w.to_bits() || (g == 0.0 && w == 0.0))
        }
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y)),
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, x)| b.get(k).is_some_and(|y| same(x, y)))
        }
        _ => got == want,
    }
}

/// Differential test against CPython's `json.loads` (tests/fixtures/json/pyjson_cases.py
/// generates and judges ~3000 documents): modelgate's reader accepts what Python accepts,
/// with the same values, and refuses what Python refuses. Allowed differences: modelgate
/// may refuse (as an error, never "not json") nesting deeper than its budget, and may read
/// documents Python refuses only for its recursion limit or its int digit limit.
#[test]
fn json_loads_matches_cpython() {
    use modelgate::formats::pyjson::{loads_bytes, ErrorKind};
    let Some(py) = python() else {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "python3 is required when CI=true");
        eprintln!("skipping: python3 not found");
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/json/pyjson_cases.py");
    let out = std::process::Command::new(py).arg(script).arg("11").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut counts = [0usize; 4];
    let mut failures = Vec::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let doc = unhex(case["doc"].as_str().unwrap());
        let got = loads_bytes(&doc);
        let ok = case["ok"].as_bool().unwrap();
        let agree = match (&got, ok) {
            (Ok(v), true) => {
                counts[0] += 1;
                case.get("deep").is_some() || same(v, &case["value"])
            }
            (Err(e), true) => {
                counts[1] += 1;
                e.kind == ErrorKind::Budget
            }
            (Err(e), false) => {
                counts[2] += 1;
                e.kind == ErrorKind::Invalid || case["why"] == "recursion"
            }
            (Ok(_), false) => {
                counts[3] += 1;
                case["why"] == "recursion" || case["why"] == "digits"
            }
        };
        if !agree {
            failures.push(format!("{:?}: python {case}, modelgate {got:?}", String::from_utf8_lossy(&doc)));
        }
    }
    eprintln!(
        "both accept {}, budget error {}, both refuse {}, python-only refusal {}",
        counts[0], counts[1], counts[2], counts[3]
    );
    assert!(counts[0] > 500 && counts[2] > 1000, "{counts:?}");
    assert!(failures.is_empty(), "{} disagreements:\n{}", failures.len(), failures.join("\n"));
}
