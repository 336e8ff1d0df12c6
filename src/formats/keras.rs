//! Keras model configs: the JSON in a `.keras` zip's `config.json`, an HDF5 file's
//! `model_config` attribute, `keras_metadata.pb`, or `model.to_json()` output.
//!
//! Loading a config builds every object it names, so the checks walk every object at any
//! depth (nested models, wrappers, optimizer and loss configs) and flag:
//! - `Lambda` layers: their function is Python bytecode or source run by the model;
//! - objects whose `module`/`class_name` leave Keras' own namespace (CVE-2025-1550): any
//!   importable callable can be named; dangerous when it is a known code/command/file gadget;
//! - Keras' own gadgets: `keras.utils.get_file` (CVE-2025-8747),
//!   `keras.config.enable_unsafe_deserialization` (CVE-2025-9906), `TorchModuleWrapper`
//!   (a pickled torch module, CVE-2025-49655);
//! - lookup layers whose vocabulary is a path (a file read at load time).
//!
//! Legacy configs (no `module` key) can only name registered objects; there an allowlist of
//! Keras' standard class names keeps ordinary models safe and anything else is suspicious.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use crate::detect::Format;
use crate::engine::Scan;
use crate::finding::{CodeInfo, Finding, Severity};
use crate::formats::jinja::excerpt;
use crate::formats::pyjson;
use crate::source::Data;
use base64::Engine as _;
use serde_json::Value;
use std::io::Read;
use std::rc::Rc;

pub const CODES: &[CodeInfo] = &[
    CodeInfo {
        code: "keras-lambda-layer",
        severity: Severity::Dangerous,
        summary: "a keras model holds a lambda layer whose python code runs when the model is used",
        fix: "do not load the model; rebuild it with standard layers or registered custom layers",
    },
    CodeInfo {
        code: "keras-dangerous-object",
        severity: Severity::Dangerous,
        summary: "a keras config names a python callable that runs commands, code or file operations",
        fix: "do not load the model; the config was crafted to call a function on load",
    },
    CodeInfo {
        code: "keras-get-file",
        severity: Severity::Dangerous,
        summary: "a keras config calls keras.utils.get_file to download or write files on load",
        fix: "do not load the model; legitimate configs never call get_file",
    },
    CodeInfo {
        code: "keras-unsafe-deserialization",
        severity: Severity::Dangerous,
        summary: "a keras config turns off safe mode (enable_unsafe_deserialization)",
        fix: "do not load the model; the config disables keras' own protection",
    },
    CodeInfo {
        code: "keras-torch-module-wrapper",
        severity: Severity::Dangerous,
        summary: "a keras config holds a TorchModuleWrapper, a pickled torch module loaded with torch.load",
        fix: "do not load the model unless you trust its author; the pickle can run code",
    },
    CodeInfo {
        code: "keras-unknown-object",
        severity: Severity::Suspicious,
        summary: "a keras config names an object outside keras' own serializable objects",
        fix: "check that the custom object comes from code you trust before loading",
    },
    CodeInfo {
        code: "keras-vocabulary-file",
        severity: Severity::Suspicious,
        summary: "a keras lookup layer reads its vocabulary from a path or url on load",
        fix: "check the path; a crafted model can read local files or reach the network",
    },
    CodeInfo {
        code: "keras-config-malformed",
        severity: Severity::Error,
        summary: "a keras model config is not valid json or is too large to check",
        fix: "re-save the model; a config that cannot be parsed cannot be judged",
    },
    CodeInfo {
        code: "json-malformed",
        severity: Severity::Error,
        summary: "a json document that starts like a config cannot be read as python's json reads it, or is too large or deep to check",
        fix: "re-save the file with json.dump; a config that cannot be parsed cannot be judged",
    },
    CodeInfo {
        code: "json-unreadable",
        severity: Severity::Info,
        summary: "a json-like document that python's json.loads refuses and that names no key a model loader reads (class_name, chat_template): not a model file",
        fix: "nothing to do for a tool config (tsconfig, pyrightconfig); a model config must be plain json",
    },
    CodeInfo {
        code: "keras-findings-elided",
        severity: Severity::Info,
        summary: "a keras config has more findings of each kind than are listed",
        fix: "nothing beyond the findings listed; the verdict already reflects the worst of them",
    },
];

/// Keys whose presence makes a JSON document one a model loader acts on (see [`not_json`]).
const LOADER_KEYS: &[&str] = &["\"class_name\"", "\"chat_template\"", "\"config\"", "\"model_type\"", "\"auto_map\""];

/// Largest JSON document read; a larger one that starts like a JSON object is an error.
pub const MAX_JSON: u64 = 256 << 20;
/// Most findings of each severity reported for one config (the rest are counted).
const MAX_FINDINGS: usize = 200;
/// Longest object path shown in evidence.
const MAX_PATH: usize = 600;

/// A JSON object at the head, in any encoding `json.loads(bytes)` detects (UTF-8 with or
/// without BOM, UTF-16, UTF-32), after whitespace.
pub fn sniff_json(head: &[u8]) -> Option<Format> {
    let text = pyjson::head_text(head);
    let first = text.chars().find(|c| !matches!(c, ' ' | '\t' | '\n' | '\r'))?;
    (first == '{').then_some(Format::JsonProbe)
}

/// True for a serialized Keras object at the top of a document.
pub fn is_keras_config(v: &Value) -> bool {
    v.get("class_name").is_some_and(Value::is_string) && v.get("config").is_some()
}

/// Scan a JSON document as Python's `json.loads` reads it (see [`pyjson`]): a Keras config
/// is checked, a tokenizer config's or `chat_template.json`'s chat templates too; other
/// valid JSON is not a model. A document that starts like a JSON object but cannot be read
/// is an error (fail closed), unless it is a Jinja template (`{{`/`{%` at the start).
pub fn scan_json(scan: &mut Scan<'_>, data: Data) -> Format {
    let mut text = Vec::new();
    let mut input = data.into_input();
    if let Err(e) = input.by_ref().take(MAX_JSON + 1).read_to_end(&mut text) {
        scan.finding(Finding::new("read-error", Severity::Error, format!("cannot read json: {e}")));
        return Format::JsonProbe;
    }
    if text.len() as u64 > MAX_JSON {
        scan.finding(Finding::new(
            "json-malformed",
            Severity::Error,
            format!("json document larger than {MAX_JSON} bytes; a config this large is not checked"),
        ));
        return Format::JsonProbe;
    }
    let doc = match pyjson::decode_bytes(&text) {
        Ok(d) => d,
        Err(e) => return not_json(scan, &text, &e),
    };
    let skel = match doc.skeleton() {
        Ok(s) => s,
        Err(e) => return not_json(scan, &text, &e),
    };
    let keras = skel.get("class_name").is_some_and(|m| m.is_string) && skel.get("config").is_some();
    if keras {
        scan.mark_model();
        match doc.parse_all() {
            Ok(v) => {
                for f in check_config(&v, "model") {
                    scan.finding(f);
                }
            }
            Err(e) => scan.finding(Finding::new(
                "keras-config-malformed",
                Severity::Error,
                format!("keras config cannot be checked: {e}"),
            )),
        }
        return Format::KerasConfig;
    }
    if let Some(m) = skel.get("chat_template") {
        let v = match doc.value(m) {
            Ok(v) => v,
            Err(e) => {
                scan.finding(Finding::new(
                    "json-malformed",
                    Severity::Error,
                    format!("chat_template cannot be checked: {e}"),
                ));
                return Format::JsonProbe;
            }
        };
        if crate::formats::jinja::scan_tokenizer_config(scan, &serde_json::json!({ "chat_template": v })) {
            return Format::JsonProbe;
        }
    }
    Format::Unknown
}

/// Bytes sniffed as JSON that `json.loads` cannot read: a Jinja template is judged as one;
/// a document that began as a JSON object (`{"key"`) and names a key a model loader reads is
/// an error, one that names none is unknown with an info finding; anything else is unknown.
fn not_json(scan: &mut Scan<'_>, text: &[u8], e: &pyjson::Error) -> Format {
    if e.kind == pyjson::ErrorKind::Budget {
        scan.finding(Finding::new("json-malformed", Severity::Error, format!("json document cannot be checked: {e}")));
        return Format::JsonProbe;
    }
    if let Some(f) = crate::formats::jinja::scan_text(scan, text) {
        return f;
    }
    let head = pyjson::head_text(text.get(..64).unwrap_or(text));
    let mut rest = head.trim_start_matches([' ', '\t', '\n', '\r']).chars();
    let object_member =
        rest.next() == Some('{') && rest.as_str().trim_start_matches([' ', '\t', '\n', '\r']).starts_with('"');
    if object_member {
        // What modelgate judges in JSON is what a loader acts on: a Keras config
        // (`class_name`) or a tokenizer config's `chat_template`. A document naming neither
        // (a tsconfig or pyrightconfig with comments, JSON5) is no model file: no model loader
        // opens it, and json.loads would refuse it anyway. One that names them, or hides key
        // names in escapes, cannot be judged: an error.
        let all = pyjson::head_text(text);
        if LOADER_KEYS.iter().any(|k| all.contains(k)) || all.contains("\\u") {
            scan.finding(Finding::new(
                "json-malformed",
                Severity::Error,
                format!("document starts like a json object but python's json.loads refuses it: {e}"),
            ));
            return Format::JsonProbe;
        }
        scan.finding(Finding::new(
            "json-unreadable",
            Severity::Info,
            format!("not a model file: a json-like document that python's json.loads refuses ({e}) and that names no key a model loader reads"),
        ));
        return Format::Unknown;
    }
    Format::Unknown
}

/// Check config JSON held as text (an HDF5 attribute, a protobuf string), read as Keras'
/// `json_utils.decode` does (`json.loads` of a str): malformed JSON is an error finding.
/// `path` names where the text came from.
pub fn check_json_text(scan: &mut Scan<'_>, text: &str, path: &str) {
    match pyjson::loads_str(text) {
        Ok(v) => {
            for f in check_config(&v, path) {
                scan.finding(f);
            }
        }
        Err(e) => scan.finding(
            Finding::new(
                "keras-config-malformed",
                Severity::Error,
                format!("keras config cannot be read as json: {e}"),
            )
            .evidence(format!("{path}: {}", excerpt(text, 120))),
        ),
    }
}

/// Every finding for one config document; `root` names the document in evidence paths.
/// At most [`MAX_FINDINGS`] of each severity are kept (most severe first), so a dangerous
/// finding is never crowded out; the number left out is reported.
pub fn check_config(v: &Value, root: &str) -> Vec<Finding> {
    let mut out = Findings::default();
    walk(v, root, &mut out);
    out.finish()
}

/// Findings kept per severity, with a count of those left out.
#[derive(Default)]
struct Findings {
    kept: Vec<Finding>,
    per_severity: std::collections::HashMap<Severity, usize>,
    dropped: usize,
}

impl Findings {
    fn push(&mut self, f: Finding) {
        let n = self.per_severity.entry(f.severity).or_default();
        if *n < MAX_FINDINGS {
            *n += 1;
            self.kept.push(f);
        } else {
            self.dropped += 1;
        }
    }

    fn finish(mut self) -> Vec<Finding> {
        self.kept.sort_by_key(|f| std::cmp::Reverse(f.severity));
        if self.dropped > 0 {
            self.kept.push(Finding::new(
                "keras-findings-elided",
                Severity::Info,
                format!("{} more findings of the kinds above are not listed", self.dropped),
            ));
        }
        self.kept
    }
}

/// Module roots whose callables run commands or code, touch files or the network.
const DANGEROUS_MODULES: &[&str] = &[
    "os",
    "posix",
    "nt",
    "subprocess",
    "sys",
    "shutil",
    "socket",
    "importlib",
    "runpy",
    "pickle",
    "_pickle",
    "dill",
    "cloudpickle",
    "joblib",
    "marshal",
    "ctypes",
    "code",
    "codeop",
    "pty",
    "commands",
    "webbrowser",
    "urllib",
    "urllib2",
    "requests",
    "http",
    "httplib",
    "ftplib",
    "smtplib",
    "telnetlib",
    "multiprocessing",
    "asyncio",
    "pdb",
    "timeit",
    "cProfile",
    "profile",
    "trace",
    "types",
    "pip",
    "io",
    "_io",
    "tempfile",
    "glob",
    "pathlib",
    "zipfile",
    "tarfile",
];

/// Callable names that run code or commands, or read/write/delete files, whatever module holds them.
const DANGEROUS_NAMES: &[&str] = &[
    "system",
    "popen",
    "Popen",
    "exec",
    "eval",
    "compile",
    "__import__",
    "import_module",
    "open",
    "getattr",
    "setattr",
    "spawn",
    "call",
    "check_call",
    "check_output",
    "run",
    "load",
    "loads",
    "load_model",
    "load_weights",
    "write_file",
    "read_file",
    "rmtree",
    "remove",
    "unlink",
    "rename",
    "makedirs",
    "copy",
    "extract_archive",
    "urlopen",
    "urlretrieve",
];

/// Module namespaces of Keras and its official companions.
fn keras_module(m: &str) -> bool {
    let root = m.split('.').next().unwrap_or(m);
    matches!(root, "keras" | "tf_keras" | "keras_nlp" | "keras_hub" | "keras_cv")
        || m.starts_with("tensorflow.keras")
        || m.starts_with("tensorflow.python.keras")
}

/// Python builtins a config may legitimately name (dtype-like values).
const SAFE_BUILTINS: &[&str] = &["float", "int", "bool", "str", "tuple", "list", "dict", "slice", "Ellipsis"];

/// Special `class_name`s of Keras 3's serialization (`__tensor__`, `__numpy__`, ...).
const SPECIAL_CLASSES: &[&str] = &[
    "__tensor__",
    "__numpy__",
    "__bytes__",
    "__typespec__",
    "__ellipsis__",
    "__slice__",
    "__keras_tensor__",
    "__dtype__",
    "__tensorshape__",
    "__tuple__",
];

fn last_component(s: &str) -> &str {
    s.rsplit(['.', '>']).next().unwrap_or(s)
}

fn label(obj: &serde_json::Map<String, Value>, cls: &str) -> String {
    let name = obj.get("config").and_then(|c| c.get("name")).and_then(Value::as_str);
    let name = name.or_else(|| obj.get("name").and_then(Value::as_str));
    excerpt(name.unwrap_or(cls), 80)
}

/// Walk every value (with an explicit stack: configs nest up to [`pyjson::MAX_DEPTH`]).
fn walk(root: &Value, root_path: &str, out: &mut Findings) {
    let mut stack: Vec<(&Value, Rc<str>)> = vec![(root, Rc::from(root_path))];
    while let Some((v, path)) = stack.pop() {
        match v {
            Value::Object(obj) => {
                let mut child = path.clone();
                if let Some(cls) = obj.get("class_name").and_then(Value::as_str) {
                    child = Rc::from(cap_path(format!("{path}/{}", label(obj, cls))));
                    check_object(obj, cls, &child, out);
                }
                let lambda = obj.get("class_name").and_then(Value::as_str).map(last_component) == Some("Lambda");
                for (k, x) in obj.iter().rev() {
                    match (k.as_str(), x) {
                        ("class_name" | "module", _) => {}
                        // A Lambda's function was reported with the layer; walking it again would
                        // only re-report its `builtins.function` wrapper.
                        ("config", Value::Object(c)) if lambda => {
                            for (ck, cx) in c.iter().rev() {
                                if ck != "function" {
                                    stack.push((cx, child.clone()));
                                }
                            }
                        }
                        _ => stack.push((x, child.clone())),
                    }
                }
            }
            Value::Array(a) => {
                for x in a.iter().rev() {
                    stack.push((x, path.clone()));
                }
            }
            Value::String(s) if s.contains("enable_unsafe_deserialization") => out.push(
                Finding::new(
                    "keras-unsafe-deserialization",
                    Severity::Dangerous,
                    "config refers to enable_unsafe_deserialization",
                )
                .evidence(format!("{path}: {}", quote(&excerpt(s, 160)))),
            ),
            _ => {}
        }
    }
}

/// An object path no longer than [`MAX_PATH`] characters (its end kept).
fn cap_path(p: String) -> String {
    let n = p.chars().count();
    if n <= MAX_PATH {
        return p;
    }
    format!("…{}", p.chars().skip(n - MAX_PATH).collect::<String>())
}

fn check_object(obj: &serde_json::Map<String, Value>, cls: &str, path: &str, out: &mut Findings) {
    let module = obj.get("module").and_then(Value::as_str);
    let registered = obj.get("registered_name").and_then(Value::as_str);
    let short = last_component(cls);
    let full = module.map_or_else(|| cls.to_string(), |m| format!("{m}.{cls}"));
    let config = obj.get("config");
    let push = |out: &mut Findings, code: &'static str, sev: Severity, msg: String, ev: String| {
        out.push(Finding::new(code, sev, msg).evidence(format!("{path}: {ev}")));
    };
    match short {
        "Lambda" => {
            let ev = config
                .and_then(|c| c.get("function"))
                .map_or_else(|| "function missing".to_string(), describe_function);
            push(
                out,
                "keras-lambda-layer",
                Severity::Dangerous,
                format!("lambda layer {}", quote(&label(obj, cls))),
                ev,
            );
            return;
        }
        "TorchModuleWrapper" => {
            push(
                out,
                "keras-torch-module-wrapper",
                Severity::Dangerous,
                "TorchModuleWrapper layer loads a pickled torch module".into(),
                excerpt(&full, 160),
            );
            return;
        }
        "get_file" => {
            push(
                out,
                "keras-get-file",
                Severity::Dangerous,
                format!("config calls {}", excerpt(&full, 120)),
                args(config),
            );
            return;
        }
        "enable_unsafe_deserialization" => {
            push(
                out,
                "keras-unsafe-deserialization",
                Severity::Dangerous,
                format!("config calls {}", excerpt(&full, 120)),
                excerpt(&full, 160),
            );
            return;
        }
        "StringLookup" | "IntegerLookup" | "TextVectorization" => {
            if let Some(p) = config.and_then(|c| c.get("vocabulary")).and_then(Value::as_str) {
                push(
                    out,
                    "keras-vocabulary-file",
                    Severity::Suspicious,
                    format!("{short} layer reads its vocabulary from a path"),
                    format!("vocabulary = {}", quote(&excerpt(p, 160))),
                );
            }
        }
        _ => {}
    }
    if cls == "__lambda__" {
        let ev = config.and_then(|c| c.get("code")).map_or_else(|| "code missing".to_string(), describe_function);
        push(out, "keras-lambda-layer", Severity::Dangerous, "config holds a serialized python lambda".into(), ev);
        return;
    }
    // `{"module": M, "class_name": "function", "config": NAME}` is the function M.NAME.
    let name = match (module, config.and_then(Value::as_str)) {
        (Some(_), Some(n)) if cls == "function" => n,
        _ => cls,
    };
    let callable = module.map_or_else(|| name.to_string(), |m| format!("{m}.{name}"));
    let dangerous_name = DANGEROUS_NAMES.contains(&last_component(name));
    match module {
        Some(m) if keras_module(m) => {
            if dangerous_name {
                push(
                    out,
                    "keras-dangerous-object",
                    Severity::Dangerous,
                    format!("config calls {} from inside keras", excerpt(&callable, 120)),
                    args(config),
                );
            } else if let Some(r) = registered.filter(|r| foreign_registration(r)) {
                push(
                    out,
                    "keras-unknown-object",
                    Severity::Suspicious,
                    format!("object registered outside keras: {}", quote(&excerpt(r, 120))),
                    excerpt(&callable, 160),
                );
            }
        }
        Some(m) => {
            let root = m.split('.').next().unwrap_or(m);
            if root == "builtins" && SAFE_BUILTINS.contains(&name) {
                return;
            }
            let (code, sev) = if DANGEROUS_MODULES.contains(&root) || dangerous_name {
                ("keras-dangerous-object", Severity::Dangerous)
            } else {
                ("keras-unknown-object", Severity::Suspicious)
            };
            push(
                out,
                code,
                sev,
                format!("config names {} from outside keras", quote(&excerpt(&callable, 120))),
                args(config),
            );
        }
        None => {
            if SPECIAL_CLASSES.contains(&cls) || is_keras_class(cls) {
                return;
            }
            let (code, sev) = if dangerous_name {
                ("keras-dangerous-object", Severity::Dangerous)
            } else {
                ("keras-unknown-object", Severity::Suspicious)
            };
            push(
                out,
                code,
                sev,
                format!("config names {} which is not a keras object", quote(&excerpt(cls, 120))),
                args(config),
            );
        }
    }
}

/// `Package>Name` registrations whose package is not Keras'.
fn foreign_registration(r: &str) -> bool {
    match r.split_once('>') {
        Some((pkg, _)) => !matches!(pkg, "keras" | "keras_nlp" | "keras_hub" | "keras_cv" | "Custom"),
        None => false,
    }
}

/// A short excerpt of an object's config for evidence.
fn args(config: Option<&Value>) -> String {
    match config {
        Some(c) => format!("config = {}", excerpt(&compact(c), 200)),
        None => "no config".into(),
    }
}

/// What a Lambda's function is: source text, or base64 marshalled bytecode shown as the
/// printable strings it contains.
fn describe_function(f: &Value) -> String {
    let code = match f {
        Value::String(s) => Some(s.as_str()),
        Value::Array(a) => a.first().and_then(Value::as_str),
        Value::Object(o) => match o.get("config") {
            Some(Value::String(s)) => Some(s.as_str()),
            Some(Value::Object(c)) => c.get("code").and_then(Value::as_str),
            _ => None,
        },
        _ => None,
    };
    let Some(code) = code else { return format!("function = {}", excerpt(&compact(f), 200)) };
    let compact: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    match base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()) {
        Ok(bytes) if compact.len() >= 16 => {
            format!("bytecode ({} bytes) with strings: {}", bytes.len(), excerpt(&printable_strings(&bytes), 200))
        }
        _ => format!("function = {}", quote(&excerpt(code, 200))),
    }
}

/// A short JSON rendering of `v` for evidence: at most about 240 characters, nesting shown
/// to a fixed depth (values nest up to [`pyjson::MAX_DEPTH`]; no recursion on them).
fn compact(v: &Value) -> String {
    fn go(v: &Value, depth: u32, out: &mut String) {
        if out.len() > 240 {
            return;
        }
        match v {
            Value::Array(a) if depth < 6 => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    if out.len() > 240 {
                        out.push('…');
                        break;
                    }
                    go(x, depth + 1, out);
                }
                out.push(']');
            }
            Value::Object(o) if depth < 6 => {
                out.push('{');
                for (i, (k, x)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    if out.len() > 240 {
                        out.push('…');
                        break;
                    }
                    out.push_str(&quote(k));
                    out.push(':');
                    go(x, depth + 1, out);
                }
                out.push('}');
            }
            Value::Array(_) => out.push_str("[…]"),
            Value::Object(_) => out.push_str("{…}"),
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    go(v, 0, &mut out);
    out
}

/// Runs of at least three printable ASCII characters, space-separated.
pub fn printable_strings(b: &[u8]) -> String {
    let mut out: Vec<String> = Vec::new();
    for run in b.split(|c| !(c.is_ascii_graphic() || *c == b' ')) {
        if run.len() >= 3 {
            out.push(String::from_utf8_lossy(run).into_owned());
        }
    }
    out.join(" ")
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Class names of Keras' own serializable objects (layers, models, initializers,
/// regularizers, constraints, optimizers, losses, metrics, schedules, dtype policies),
/// across Keras 2 and 3.
fn is_keras_class(cls: &str) -> bool {
    // Keras 2.11+ writes optimizers of the legacy path as `Custom>Adam`.
    let cls = cls.strip_prefix("Custom>").or_else(|| cls.strip_prefix("keras>")).unwrap_or(cls);
    KERAS_CLASSES.split_ascii_whitespace().any(|c| c == cls)
}

const KERAS_CLASSES: &str = "
Sequential Functional Model InputLayer Input InputSpec KerasTensor TensorShape TFOpLambda SlicingOpLambda
TensorSpec RaggedTensorSpec SparseTensorSpec TypeSpec
Dense EinsumDense Activation Dropout SpatialDropout1D SpatialDropout2D SpatialDropout3D GaussianDropout
GaussianNoise AlphaDropout ActivityRegularization Flatten Reshape Permute RepeatVector Masking Identity
Embedding Conv1D Conv2D Conv3D Conv1DTranspose Conv2DTranspose Conv3DTranspose Convolution1D Convolution2D
Convolution3D Convolution2DTranspose Convolution3DTranspose SeparableConv1D SeparableConv2D
SeparableConvolution1D SeparableConvolution2D DepthwiseConv1D DepthwiseConv2D Cropping1D Cropping2D Cropping3D
UpSampling1D UpSampling2D UpSampling3D ZeroPadding1D ZeroPadding2D ZeroPadding3D MaxPooling1D MaxPooling2D
MaxPooling3D MaxPool1D MaxPool2D MaxPool3D AveragePooling1D AveragePooling2D AveragePooling3D AvgPool1D AvgPool2D
AvgPool3D GlobalMaxPooling1D GlobalMaxPooling2D GlobalMaxPooling3D GlobalMaxPool1D GlobalMaxPool2D
GlobalMaxPool3D GlobalAveragePooling1D GlobalAveragePooling2D GlobalAveragePooling3D GlobalAvgPool1D
GlobalAvgPool2D GlobalAvgPool3D LocallyConnected1D LocallyConnected2D SimpleRNN GRU LSTM SimpleRNNCell GRUCell
LSTMCell StackedRNNCells RNN ConvLSTM1D ConvLSTM2D ConvLSTM3D ConvLSTM2DCell CuDNNGRU CuDNNLSTM GRUV1 GRUV2
LSTMV1 LSTMV2 Bidirectional TimeDistributed Wrapper Add Subtract Multiply Average Maximum Minimum Concatenate Dot
add subtract multiply average maximum minimum concatenate dot BatchNormalization LayerNormalization
GroupNormalization UnitNormalization SyncBatchNormalization RMSNormalization SpectralNormalization Normalization
Discretization CategoryEncoding Hashing HashedCrossing StringLookup IntegerLookup TextVectorization Rescaling
Resizing CenterCrop RandomCrop RandomFlip RandomRotation RandomTranslation RandomZoom RandomContrast
RandomBrightness RandomHeight RandomWidth AutoContrast Equalization RandomGrayscale RandomHue RandomSaturation
RandomSharpness RandomShear RandomColorJitter RandomColorDegeneration RandomPosterization RandomInvert Solarization
RandAugment AugMix CutMix MixUp Pipeline MelSpectrogram STFTSpectrogram Attention AdditiveAttention
MultiHeadAttention GroupedQueryAttention ReLU LeakyReLU PReLU ELU ThresholdedReLU Softmax Elu Relu
RandomFourierFeatures CenterCrop2D TorchModuleWrapper JaxLayer FlaxLayer
Zeros Ones Constant RandomNormal RandomUniform TruncatedNormal VarianceScaling Orthogonal Identity GlorotNormal
GlorotUniform HeNormal HeUniform LecunNormal LecunUniform Initializer zeros ones constant random_normal
random_uniform truncated_normal variance_scaling orthogonal identity glorot_normal glorot_uniform he_normal
he_uniform lecun_normal lecun_uniform IdentityInitializer OrthogonalInitializer STFTInitializer
L1 L2 L1L2 OrthogonalRegularizer Regularizer l1 l2 l1_l2 MaxNorm MinMaxNorm NonNeg UnitNorm Constraint max_norm
min_max_norm non_neg unit_norm RadialConstraint
Adam AdamW Adamax Adadelta Adagrad Adafactor Ftrl Lamb Lion Nadam RMSprop SGD LossScaleOptimizer
LossScaleOptimizerV3 Optimizer Muon
ExponentialDecay PiecewiseConstantDecay PolynomialDecay InverseTimeDecay CosineDecay CosineDecayRestarts
LearningRateSchedule
Loss LossFunctionWrapper MeanSquaredError MeanAbsoluteError MeanAbsolutePercentageError
MeanSquaredLogarithmicError BinaryCrossentropy BinaryFocalCrossentropy CategoricalCrossentropy
CategoricalFocalCrossentropy SparseCategoricalCrossentropy Hinge SquaredHinge CategoricalHinge Huber LogCosh
Poisson KLDivergence CosineSimilarity Tversky Dice CTC Circle
Metric Mean Sum MeanMetricWrapper Accuracy BinaryAccuracy CategoricalAccuracy SparseCategoricalAccuracy
TopKCategoricalAccuracy SparseTopKCategoricalAccuracy AUC Precision Recall PrecisionAtRecall RecallAtPrecision
SensitivityAtSpecificity SpecificityAtSensitivity TruePositives TrueNegatives FalsePositives FalseNegatives
MeanIoU IoU BinaryIoU OneHotIoU OneHotMeanIoU RootMeanSquaredError LogCoshError R2Score F1Score FBetaScore
MeanRelativeError KLDivergence Poisson
Policy DTypePolicy FloatDTypePolicy QuantizedDTypePolicy QuantizedFloat8DTypePolicy DTypePolicyMap
mixed_float16 mixed_bfloat16
";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn codes(v: &Value) -> Vec<&'static str> {
        check_config(v, "model").iter().map(|f| f.code).collect()
    }

    #[test]
    fn ordinary_models_are_clean() {
        let v3 = json!({"module": "keras", "class_name": "Sequential", "config": {"name": "s", "layers": [
            {"module": "keras.layers", "class_name": "InputLayer", "config": {"batch_shape": [null, 4]}, "registered_name": null},
            {"module": "keras.layers", "class_name": "Dense", "config": {"name": "d", "units": 2,
                "kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform", "config": {"seed": null}, "registered_name": null},
                "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": null}},
             "registered_name": null, "build_config": {"input_shape": [null, 4]}}]},
            "registered_name": null,
            "compile_config": {"optimizer": {"module": "keras.optimizers", "class_name": "Adam", "config": {}, "registered_name": null},
                "loss": "mse", "metrics": [{"module": "builtins", "class_name": "str", "config": "x"}]}});
        assert_eq!(codes(&v3), Vec::<&str>::new());
        let v2 = json!({"class_name": "Functional", "config": {"layers": [
            {"class_name": "Dense", "config": {"kernel_regularizer": {"class_name": "L2", "config": {"l2": 0.01}}}},
            {"class_name": "Bidirectional", "config": {"layer": {"class_name": "LSTM", "config": {}}}}]}});
        assert_eq!(codes(&v2), Vec::<&str>::new());
    }

    #[test]
    fn lambda_at_any_depth() {
        let code = base64::engine::general_purpose::STANDARD.encode(b"\xe3\x00\x00os\xdasystem\xdaecho pwned");
        let v = json!({"class_name": "Sequential", "config": {"layers": [
            {"class_name": "TimeDistributed", "config": {"layer": {"class_name": "Functional", "config": {"layers": [
                {"class_name": "Lambda", "config": {"name": "evil", "function": [code, null, null], "function_type": "lambda"}}]}}}}]}});
        let f = check_config(&v, "model");
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].code, "keras-lambda-layer");
        let ev = f[0].evidence.as_deref().unwrap();
        assert!(
            ev.contains("model/") && ev.contains("evil") && ev.contains("system") && ev.contains("echo pwned"),
            "{ev}"
        );
        let v3 = json!({"module": "keras.layers", "class_name": "Lambda", "config": {"function":
            {"module": "builtins", "class_name": "function", "config": code, "registered_name": "function"}}});
        assert_eq!(codes(&v3), ["keras-lambda-layer"]);
    }

    #[test]
    fn objects_outside_keras() {
        let v = json!({"module": "os", "class_name": "system", "config": {"command": "echo pwned"}});
        assert_eq!(codes(&v), ["keras-dangerous-object"]);
        let v = json!({"class_name": "Sequential", "config": {"layers": [
            {"module": "builtins", "class_name": "function", "config": "eval", "registered_name": "function"}]}});
        assert_eq!(codes(&v), ["keras-dangerous-object"]);
        let v =
            json!({"module": "my_pkg.layers", "class_name": "Fancy", "config": {}, "registered_name": "MyPkg>Fancy"});
        assert_eq!(codes(&v), ["keras-unknown-object"]);
        let v = json!({"class_name": "FancyLegacyLayer", "config": {}});
        assert_eq!(codes(&v), ["keras-unknown-object"]);
    }

    #[test]
    fn keras_gadgets() {
        let v = json!({"module": "keras.utils", "class_name": "get_file", "config": {"origin": "http://example.invalid/x"}});
        assert_eq!(codes(&v), ["keras-get-file"]);
        let v = json!({"module": "keras.config", "class_name": "enable_unsafe_deserialization", "config": {}});
        assert_eq!(codes(&v), ["keras-unsafe-deserialization"]);
        let v = json!({"module": "keras.src.utils.torch_utils", "class_name": "TorchModuleWrapper", "config": {"module": "gASV"}});
        assert_eq!(codes(&v), ["keras-torch-module-wrapper"]);
        let v =
            json!({"module": "keras.layers", "class_name": "StringLookup", "config": {"vocabulary": "/etc/passwd"}});
        assert_eq!(codes(&v), ["keras-vocabulary-file"]);
        let v = json!({"module": "keras.src.saving.saving_lib", "class_name": "load_model", "config": {}});
        assert_eq!(codes(&v), ["keras-dangerous-object"]);
    }

    #[test]
    fn sniff() {
        assert_eq!(sniff_json(b"\xef\xbb\xbf \n{\"a\":1}"), Some(Format::JsonProbe));
        assert_eq!(sniff_json(b"[1]"), None);
    }
}
