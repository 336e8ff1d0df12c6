//! TensorFlow: SavedModel `saved_model.pb`, Keras `keras_metadata.pb`, and TFLite flatbuffers.
//!
//! A SavedModel runs its graph ops when served, so ops that call Python or touch the file
//! system are what matters. The graph is walked with the bounded protobuf reader:
//! `SavedModel.meta_graphs[].graph_def.node[]` and every function of
//! `graph_def.library.function[].node_def[]`. There is no magic number: a file is a SavedModel
//! when that structure parses and holds nodes with op names.
//!
//! Classification (see [`OP_RULES`]):
//! - ops that call Python (`PyFunc`, `PyFuncStateless`, `EagerPyFunc`): dangerous;
//! - ops that write or delete files (`WriteFile`, summary writers, dataset savers, `PrintV2`
//!   to `file://`, debug ops with `debug_urls`): dangerous. The checkpoint ops (`SaveV2`,
//!   `MergeV2Checkpoints`, ...) are in every SavedModel's save function and write where the
//!   caller says; they are dangerous only when the path is a constant baked into the graph;
//! - ops that read files or probe the file system (`ReadFile`, `MatchingFiles`, readers,
//!   file datasets, `ImmutableConst`): suspicious. Reading runs no code, but a served model
//!   can leak a local file into its output.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use crate::detect::Format;
use crate::engine::Scan;
use crate::finding::{CodeInfo, Finding, Severity};
use crate::formats::jinja::excerpt;
use crate::formats::protobuf::{Blocks, Error, Field, Reader};
use crate::source::Source;
use std::collections::HashMap;

pub const CODES: &[CodeInfo] = &[
    CodeInfo {
        code: "tensorflow-python-op",
        severity: Severity::Dangerous,
        summary: "a tensorflow graph calls python (PyFunc, EagerPyFunc)",
        fix: "do not load the model; rebuild it without tf.py_function / tf.numpy_function",
    },
    CodeInfo {
        code: "tensorflow-file-write-op",
        severity: Severity::Dangerous,
        summary: "a tensorflow graph writes or deletes files when it runs",
        fix: "do not serve the model; rebuild it without file-writing ops",
    },
    CodeInfo {
        code: "tensorflow-file-read-op",
        severity: Severity::Suspicious,
        summary: "a tensorflow graph reads files or lists directories when it runs",
        fix: "check that the op reads only the model's own assets; a served model can leak local files",
    },
    CodeInfo {
        code: "tensorflow-malformed",
        severity: Severity::Error,
        summary: "a tensorflow model file is truncated or malformed",
        fix: "re-export the model; a file that cannot be parsed cannot be judged",
    },
    CodeInfo {
        code: "tflite-custom-op",
        severity: Severity::Info,
        summary: "a tflite model uses a custom operator that the runtime must provide",
        fix: "make sure the custom operator comes from a library you trust",
    },
    CodeInfo {
        code: "tflite-malformed",
        severity: Severity::Error,
        summary: "a tflite flatbuffer is truncated or malformed",
        fix: "re-convert the model; a file that cannot be parsed cannot be judged",
    },
];

/// How an op is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Always reported.
    Always,
    /// Reported when one of the first inputs is a path baked into the graph.
    ConstPath,
    /// Reported when the `output_stream` attribute names a file.
    FileStream,
    /// Reported when the `debug_urls` attribute is not empty.
    DebugUrls,
    /// Reported when `descriptor_source` is a file rather than the built-in pool.
    DescriptorFile,
}

/// One rule: op name, finding code, severity, what it does, how it is checked.
pub struct OpRule {
    pub op: &'static str,
    pub code: &'static str,
    pub severity: Severity,
    pub what: &'static str,
    check: Check,
}

const fn rule(op: &'static str, code: &'static str, severity: Severity, what: &'static str, check: Check) -> OpRule {
    OpRule { op, code, severity, what, check }
}

const PY: &str = "tensorflow-python-op";
const WR: &str = "tensorflow-file-write-op";
const RD: &str = "tensorflow-file-read-op";
const D: Severity = Severity::Dangerous;
const S: Severity = Severity::Suspicious;

/// TensorFlow ops that reach Python, the file system or the network.
pub const OP_RULES: &[OpRule] = &[
    rule("PyFunc", PY, D, "calls a python function", Check::Always),
    rule("PyFuncStateless", PY, D, "calls a python function", Check::Always),
    rule("EagerPyFunc", PY, D, "calls a python function", Check::Always),
    rule("WriteFile", WR, D, "writes a file", Check::Always),
    rule("DatasetToTFRecord", WR, D, "writes a tfrecord file", Check::Always),
    rule("ExperimentalDatasetToTFRecord", WR, D, "writes a tfrecord file", Check::Always),
    rule("SaveDataset", WR, D, "writes a dataset to disk", Check::Always),
    rule("SaveDatasetV2", WR, D, "writes a dataset to disk", Check::Always),
    rule("SnapshotDataset", WR, D, "writes dataset snapshots to disk", Check::Always),
    rule("SnapshotDatasetV2", WR, D, "writes dataset snapshots to disk", Check::Always),
    rule("CreateSummaryFileWriter", WR, D, "opens a summary file for writing", Check::Always),
    rule("CreateSummaryDbWriter", WR, D, "opens a summary database for writing", Check::Always),
    rule("WriteSummary", WR, D, "writes a summary file", Check::Always),
    rule("WriteScalarSummary", WR, D, "writes a summary file", Check::Always),
    rule("WriteHistogramSummary", WR, D, "writes a summary file", Check::Always),
    rule("WriteImageSummary", WR, D, "writes a summary file", Check::Always),
    rule("WriteAudioSummary", WR, D, "writes a summary file", Check::Always),
    rule("WriteGraphSummary", WR, D, "writes a summary file", Check::Always),
    rule("WriteRawProtoSummary", WR, D, "writes a summary file", Check::Always),
    rule("ImportEvent", WR, D, "writes a summary file", Check::Always),
    rule("Save", WR, D, "writes a checkpoint to a fixed path", Check::ConstPath),
    rule("SaveV2", WR, D, "writes a checkpoint to a fixed path", Check::ConstPath),
    rule("SaveSlices", WR, D, "writes a checkpoint to a fixed path", Check::ConstPath),
    rule("MergeV2Checkpoints", WR, D, "moves and deletes checkpoint files at a fixed path", Check::ConstPath),
    rule("PrintV2", WR, D, "appends to a file", Check::FileStream),
    rule("DebugIdentity", WR, D, "sends tensors to debug urls (files or grpc)", Check::DebugUrls),
    rule("DebugIdentityV2", WR, D, "sends tensors to debug urls (files or grpc)", Check::DebugUrls),
    rule("DebugIdentityV3", WR, D, "sends tensors to debug urls (files or grpc)", Check::DebugUrls),
    rule("DebugNanCount", WR, D, "sends tensors to debug urls (files or grpc)", Check::DebugUrls),
    rule("DebugNumericSummary", WR, D, "sends tensors to debug urls (files or grpc)", Check::DebugUrls),
    rule("ReadFile", RD, S, "reads a file", Check::Always),
    rule("MatchingFiles", RD, S, "lists files matching a pattern", Check::Always),
    rule("ImmutableConst", RD, S, "memory-maps a file", Check::Always),
    rule("WholeFileReader", RD, S, "reads whole files", Check::Always),
    rule("WholeFileReaderV2", RD, S, "reads whole files", Check::Always),
    rule("TextLineReader", RD, S, "reads a text file", Check::Always),
    rule("TextLineReaderV2", RD, S, "reads a text file", Check::Always),
    rule("TFRecordReader", RD, S, "reads a tfrecord file", Check::Always),
    rule("TFRecordReaderV2", RD, S, "reads a tfrecord file", Check::Always),
    rule("FixedLengthRecordReader", RD, S, "reads a file", Check::Always),
    rule("FixedLengthRecordReaderV2", RD, S, "reads a file", Check::Always),
    rule("LMDBReader", RD, S, "reads an lmdb database", Check::Always),
    rule("TFRecordDataset", RD, S, "reads a tfrecord file", Check::Always),
    rule("TFRecordDatasetV2", RD, S, "reads a tfrecord file", Check::Always),
    rule("TextLineDataset", RD, S, "reads a text file", Check::Always),
    rule("FixedLengthRecordDataset", RD, S, "reads a file", Check::Always),
    rule("FixedLengthRecordDatasetV2", RD, S, "reads a file", Check::Always),
    rule("CSVDataset", RD, S, "reads a csv file", Check::Always),
    rule("CSVDatasetV2", RD, S, "reads a csv file", Check::Always),
    rule("ExperimentalCSVDataset", RD, S, "reads a csv file", Check::Always),
    rule("SqlDataset", RD, S, "queries a database file", Check::Always),
    rule("ExperimentalSqlDataset", RD, S, "queries a database file", Check::Always),
    rule("LMDBDataset", RD, S, "reads an lmdb database", Check::Always),
    rule("ExperimentalLMDBDataset", RD, S, "reads an lmdb database", Check::Always),
    rule("LoadDataset", RD, S, "loads a dataset from disk", Check::Always),
    rule("LoadAndRemapMatrix", RD, S, "reads a checkpoint file", Check::Always),
    rule("GcsConfigureCredentials", RD, S, "configures cloud storage credentials", Check::Always),
    rule("GcsConfigureBlockCache", RD, S, "configures cloud storage access", Check::Always),
    rule("Restore", RD, S, "reads a checkpoint from a fixed path", Check::ConstPath),
    rule("RestoreV2", RD, S, "reads a checkpoint from a fixed path", Check::ConstPath),
    rule("RestoreSlice", RD, S, "reads a checkpoint from a fixed path", Check::ConstPath),
    rule("DecodeProtoV2", RD, S, "loads a protobuf descriptor file", Check::DescriptorFile),
    rule("EncodeProto", RD, S, "loads a protobuf descriptor file", Check::DescriptorFile),
];

/// The rule for an op name, if any.
pub fn op_rule(op: &str) -> Option<&'static OpRule> {
    OP_RULES.iter().find(|r| r.op == op)
}

const MAX_NAME: usize = 1024;
const MAX_INPUTS: usize = 16;
const MAX_STR_ATTR: usize = 4096;
/// TFLite operator codes read (real models have a few hundred at most).
const MAX_OPERATOR_CODES: u32 = 100_000;
/// Bytes of node names and strings kept while walking one SavedModel.
const MAX_RETAINED: usize = 256 << 20;
/// Keras JSON kept from one SavedModel's object graph.
const MAX_KERAS_JSON: usize = 64 << 20;

/// The parts of a NodeDef the rules look at.
#[derive(Debug, Default, Clone)]
struct Node {
    name: String,
    op: String,
    inputs: Vec<String>,
    const_str: Option<String>,
    output_stream: Option<String>,
    debug_urls: Vec<String>,
    descriptor_source: Option<String>,
    offset: u64,
}

/// What a SavedModel walk collected.
#[derive(Default)]
struct Walk {
    /// A node with an op name was parsed: the bytes are a SavedModel.
    recognised: bool,
    findings: Vec<Finding>,
    keras: Vec<(String, String)>,
    keras_bytes: usize,
    /// Bytes held by kept nodes.
    retained: usize,
}

/// Ops the path tracing follows (see [`const_path`]).
const TRACED_OPS: &[&str] = &["Const", "Identity", "Snapshot", "StringJoin", "ShardedFilename", "ShardedFilespec"];

impl Walk {
    /// Keep a node only when a rule or the path tracing needs it; memory stays bounded.
    fn keep(&mut self, nodes: &mut Vec<Node>, n: Node) -> Result<(), Error> {
        self.recognised = true;
        if op_rule(&n.op).is_none() && !TRACED_OPS.contains(&n.op.as_str()) {
            return Ok(());
        }
        self.retained += n.name.len()
            + n.inputs.iter().map(String::len).sum::<usize>()
            + n.const_str.as_ref().map_or(0, String::len)
            + 64;
        if self.retained > MAX_RETAINED {
            return Err(Error { offset: n.offset, what: "graph too large to judge".into() });
        }
        nodes.push(n);
        Ok(())
    }
}

fn valid_op_name(op: &str) -> bool {
    let mut chars = op.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && op.len() <= 256
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '>' | '.' | '-' | '/'))
}

fn malformed(e: &Error) -> Finding {
    Finding::new("tensorflow-malformed", Severity::Error, format!("saved model is malformed: {e}")).at(e.offset)
}

/// Walk a SavedModel. `None` when the bytes do not have its structure.
pub fn scan_saved_model(scan: &mut Scan<'_>, src: &dyn Source) -> Option<Format> {
    let blocks = Blocks::new(src);
    let mut w = Walk::default();
    let res = saved_model(&mut Reader::root(&blocks), &mut w);
    if !w.recognised {
        return None;
    }
    scan.mark_model();
    if let Err(e) = res {
        w.findings.push(malformed(&e));
    }
    for f in w.findings {
        scan.finding(f);
    }
    for (id, json) in w.keras {
        crate::formats::keras::check_json_text(scan, &json, &format!("object graph {id}"));
    }
    Some(Format::SavedModel)
}

fn expect_len(f: &Field) -> Result<(), Error> {
    if f.is_len() {
        Ok(())
    } else {
        Err(Error { offset: f.offset, what: format!("field {} has the wrong wire type", f.number) })
    }
}

fn saved_model(r: &mut Reader<'_, '_>, w: &mut Walk) -> Result<(), Error> {
    while let Some(f) = r.next()? {
        match f.number {
            1 if f.varint().is_none() => return Err(wrong(&f)),
            2 => {
                expect_len(&f)?;
                meta_graph(&mut r.sub(&f)?, w)?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn wrong(f: &Field) -> Error {
    Error { offset: f.offset, what: format!("field {} has the wrong wire type", f.number) }
}

fn meta_graph(r: &mut Reader<'_, '_>, w: &mut Walk) -> Result<(), Error> {
    while let Some(f) = r.next()? {
        match f.number {
            1..=7 if !f.is_len() => return Err(wrong(&f)),
            2 => graph_def(&mut r.sub(&f)?, w)?,
            7 => object_graph(&mut r.sub(&f)?, w)?,
            _ => {}
        }
    }
    Ok(())
}

fn graph_def(r: &mut Reader<'_, '_>, w: &mut Walk) -> Result<(), Error> {
    let mut nodes = Vec::new();
    // Nodes parsed before an error are still judged: a broken tail never hides a payload.
    let res = (|| {
        while let Some(f) = r.next()? {
            match f.number {
                1 | 2 | 4 if !f.is_len() => return Err(wrong(&f)),
                3 if f.varint().is_none() => return Err(wrong(&f)),
                1 => w.keep(&mut nodes, node_def(&mut r.sub(&f)?)?)?,
                2 => library(&mut r.sub(&f)?, w)?,
                _ => {}
            }
        }
        Ok(())
    })();
    judge(&nodes, "the main graph", w);
    res
}

fn library(r: &mut Reader<'_, '_>, w: &mut Walk) -> Result<(), Error> {
    while let Some(f) = r.next()? {
        if f.number == 1 {
            expect_len(&f)?;
            function_def(&mut r.sub(&f)?, w)?;
        }
    }
    Ok(())
}

fn function_def(r: &mut Reader<'_, '_>, w: &mut Walk) -> Result<(), Error> {
    let mut name = String::new();
    let mut nodes = Vec::new();
    let res = (|| {
        while let Some(f) = r.next()? {
            match f.number {
                1 | 3 if !f.is_len() => return Err(wrong(&f)),
                1 => {
                    let mut sig = r.sub(&f)?;
                    while let Some(g) = sig.next()? {
                        if g.number == 1 && g.is_len() {
                            name = sig.string(&g, MAX_NAME)?;
                        }
                    }
                }
                3 => w.keep(&mut nodes, node_def(&mut r.sub(&f)?)?)?,
                _ => {}
            }
        }
        Ok(())
    })();
    judge(&nodes, &format!("function {}", quote(&name)), w);
    res
}

fn node_def(r: &mut Reader<'_, '_>) -> Result<Node, Error> {
    let mut n = Node { offset: r.pos(), ..Node::default() };
    while let Some(f) = r.next()? {
        match f.number {
            1..=5 if !f.is_len() => return Err(wrong(&f)),
            1 => n.name = r.string(&f, MAX_NAME)?,
            2 => n.op = r.string(&f, 257)?,
            3 if n.inputs.len() < MAX_INPUTS => n.inputs.push(r.string(&f, MAX_NAME)?),
            5 => attr_entry(&mut r.sub(&f)?, &mut n)?,
            _ => {}
        }
    }
    if !valid_op_name(&n.op) {
        return Err(Error { offset: n.offset, what: format!("node has an invalid op name {}", quote(&n.op)) });
    }
    Ok(n)
}

fn attr_entry(r: &mut Reader<'_, '_>, n: &mut Node) -> Result<(), Error> {
    let mut key = String::new();
    let mut value = None;
    while let Some(f) = r.next()? {
        match f.number {
            1 => key = r.string(&f, 256)?,
            2 => value = Some(f),
            _ => {}
        }
    }
    let Some(v) = value else { return Ok(()) };
    if !matches!(key.as_str(), "value" | "output_stream" | "debug_urls" | "descriptor_source") {
        return Ok(());
    }
    let mut strings = Vec::new();
    attr_strings(&mut r.sub(&v)?, &mut strings)?;
    match key.as_str() {
        "value" => n.const_str = strings.into_iter().next(),
        "output_stream" => n.output_stream = strings.into_iter().next(),
        "debug_urls" => n.debug_urls = strings,
        _ => n.descriptor_source = strings.into_iter().next(),
    }
    Ok(())
}

/// Strings held by an AttrValue: `s`, `list.s`, or a string tensor's first values.
fn attr_strings(r: &mut Reader<'_, '_>, out: &mut Vec<String>) -> Result<(), Error> {
    while let Some(f) = r.next()? {
        match f.number {
            2 if f.is_len() => out.push(r.string(&f, MAX_STR_ATTR)?),
            1 if f.is_len() => {
                let mut list = r.sub(&f)?;
                while let Some(g) = list.next()? {
                    if g.number == 2 && g.is_len() && out.len() < 16 {
                        out.push(list.string(&g, MAX_STR_ATTR)?);
                    }
                }
            }
            8 if f.is_len() => {
                let mut t = r.sub(&f)?;
                while let Some(g) = t.next()? {
                    if g.number == 8 && g.is_len() && out.len() < 16 {
                        out.push(t.string(&g, MAX_STR_ATTR)?);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// SavedObjectGraph: keep the Keras JSON of `nodes[].user_object.metadata`.
fn object_graph(r: &mut Reader<'_, '_>, w: &mut Walk) -> Result<(), Error> {
    while let Some(f) = r.next()? {
        if f.number != 1 || !f.is_len() {
            continue;
        }
        let mut obj = r.sub(&f)?;
        while let Some(g) = obj.next()? {
            if g.number != 4 || !g.is_len() {
                continue;
            }
            let mut user = obj.sub(&g)?;
            let (mut id, mut meta) = (String::new(), String::new());
            while let Some(h) = user.next()? {
                match h.number {
                    1 if h.is_len() => id = user.string(&h, MAX_NAME)?,
                    3 if h.is_len() && w.keras_bytes < MAX_KERAS_JSON => meta = user.string(&h, MAX_KERAS_JSON)?,
                    _ => {}
                }
            }
            if !meta.is_empty() {
                w.keras_bytes += meta.len();
                w.keras.push((id, meta));
            }
        }
    }
    Ok(())
}

/// The name a node input refers to (`^ctrl`, `node:1`, `node:output:0` -> `node`).
fn input_node(input: &str) -> Option<&str> {
    if input.starts_with('^') {
        return None;
    }
    input.split(':').next()
}

/// The constant string a path input reduces to, following Identity/StringJoin chains.
fn const_path(name: &str, by_name: &HashMap<&str, &Node>, depth: u32) -> Option<String> {
    let node = by_name.get(name)?;
    if depth > 16 {
        return None;
    }
    match node.op.as_str() {
        "Const" => Some(node.const_str.clone().unwrap_or_default()),
        "Identity" | "Snapshot" | "StringJoin" | "ShardedFilename" | "ShardedFilespec" => {
            let mut parts = Vec::new();
            for i in node.inputs.iter().filter_map(|i| input_node(i)) {
                parts.push(const_path(i, by_name, depth + 1)?);
            }
            (!parts.is_empty()).then(|| parts.join(""))
        }
        _ => None,
    }
}

fn judge(nodes: &[Node], scope: &str, w: &mut Walk) {
    let by_name: HashMap<&str, &Node> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    for n in nodes {
        let Some(rule) = op_rule(&n.op) else { continue };
        let path = n.inputs.iter().take(2).filter_map(|i| input_node(i)).find_map(|i| const_path(i, &by_name, 0));
        let detail = match rule.check {
            Check::Always => path.as_ref().map(|p| format!("path {}", quote(&excerpt(p, 200)))),
            Check::ConstPath => match &path {
                Some(p) => Some(format!("path {}", quote(&excerpt(p, 200)))),
                None => continue,
            },
            Check::FileStream => match &n.output_stream {
                Some(s) if s.starts_with("file://") => Some(format!("output_stream {}", quote(&excerpt(s, 200)))),
                _ => continue,
            },
            Check::DebugUrls => match n.debug_urls.iter().find(|u| !u.is_empty()) {
                Some(u) => Some(format!("debug_urls {}", quote(&excerpt(u, 200)))),
                None => continue,
            },
            Check::DescriptorFile => match &n.descriptor_source {
                Some(s) if !s.is_empty() && s != "local://" => {
                    Some(format!("descriptor_source {}", quote(&excerpt(s, 200))))
                }
                _ => continue,
            },
        };
        let mut evidence = format!("node {} op {} in {scope}", quote(&excerpt(&n.name, 200)), n.op);
        if let Some(d) = detail {
            evidence.push_str(", ");
            evidence.push_str(&d);
        }
        w.findings.push(
            Finding::new(rule.code, rule.severity, format!("op {} {}", n.op, rule.what))
                .at(n.offset)
                .evidence(evidence),
        );
    }
}

/// `keras_metadata.pb`: `SavedMetadata { repeated SavedObject nodes = 1 }`, each node's
/// `metadata` (field 5) a Keras JSON config. `None` unless every top-level field is a node and
/// at least one node has a `_tf_keras_` identifier and JSON metadata.
pub fn scan_keras_metadata(scan: &mut Scan<'_>, src: &dyn Source) -> Option<Format> {
    let blocks = Blocks::new(src);
    let mut r = Reader::root(&blocks);
    let mut nodes: Vec<(String, String)> = Vec::new();
    let mut recognised = false;
    let mut total = 0usize;
    let res: Result<(), Error> = (|| {
        while let Some(f) = r.next()? {
            if f.number != 1 || !f.is_len() {
                return Err(wrong(&f));
            }
            let mut node = r.sub(&f)?;
            let (mut path, mut id, mut meta) = (String::new(), String::new(), String::new());
            while let Some(g) = node.next()? {
                match g.number {
                    2 if g.varint().is_none() => return Err(wrong(&g)),
                    3..=6 if !g.is_len() => return Err(wrong(&g)),
                    3 => path = node.string(&g, MAX_NAME)?,
                    4 => id = node.string(&g, MAX_NAME)?,
                    5 if total < MAX_KERAS_JSON => meta = node.string(&g, MAX_KERAS_JSON)?,
                    _ => {}
                }
            }
            if id.starts_with("_tf_keras_") && meta.trim_start().starts_with('{') {
                recognised = true;
            }
            total += meta.len();
            nodes.push((if path.is_empty() { id } else { path }, meta));
        }
        Ok(())
    })();
    if !recognised {
        return None;
    }
    scan.mark_model();
    if let Err(e) = res {
        scan.finding(
            Finding::new("tensorflow-malformed", Severity::Error, format!("keras metadata is malformed: {e}"))
                .at(e.offset),
        );
    }
    for (path, meta) in nodes {
        if !meta.is_empty() {
            crate::formats::keras::check_json_text(scan, &meta, &path);
        }
    }
    Some(Format::KerasMetadata)
}

/// TFLite: a flatbuffer with the file identifier `TFL3` at offset 4.
pub fn sniff_tflite(head: &[u8]) -> Option<Format> {
    (head.get(4..8) == Some(b"TFL3")).then_some(Format::TfLite)
}

/// Bounded flatbuffer access over a source.
struct Flat<'b, 'a> {
    b: &'b Blocks<'a>,
}

impl Flat<'_, '_> {
    fn u32(&self, pos: u64) -> Result<u32, Error> {
        let mut v = 0u32;
        for i in 0..4 {
            v |= u32::from(self.b.byte(pos + i)?) << (8 * i);
        }
        Ok(v)
    }

    fn u16(&self, pos: u64) -> Result<u16, Error> {
        Ok(u16::from(self.b.byte(pos)?) | u16::from(self.b.byte(pos + 1)?) << 8)
    }

    /// Absolute position of table field `index`, `None` when absent.
    fn field(&self, table: u64, index: u64) -> Result<Option<u64>, Error> {
        let soff = i64::from(self.u32(table)? as i32);
        let vt = u64::try_from(table as i64 - soff)
            .map_err(|_| Error { offset: table, what: "vtable before the start of the file".into() })?;
        let vt_len = u64::from(self.u16(vt)?);
        let slot = 4 + 2 * index;
        if slot + 2 > vt_len {
            return Ok(None);
        }
        let off = u64::from(self.u16(vt + slot)?);
        Ok((off != 0).then_some(table + off))
    }

    /// Follow a uoffset stored at `pos`.
    fn deref(&self, pos: u64) -> Result<u64, Error> {
        Ok(pos + u64::from(self.u32(pos)?))
    }

    fn string(&self, pos: u64, max: usize) -> Result<String, Error> {
        let at = self.deref(pos)?;
        let len = self.u32(at)? as usize;
        Ok(String::from_utf8_lossy(&self.b.read(at + 4, len.min(max))?).into_owned())
    }
}

/// Scan a TFLite model: custom operators are reported; `Flex` ops run TensorFlow ops and are
/// judged like SavedModel ops.
pub fn scan_tflite(scan: &mut Scan<'_>, src: &dyn Source) -> Format {
    scan.mark_model();
    let blocks = Blocks::new(src);
    match tflite_ops(&Flat { b: &blocks }) {
        Ok(customs) => {
            for (i, name) in customs {
                let at = format!("operator code {i}");
                if let Some(rule) = name.strip_prefix("Flex").and_then(op_rule) {
                    if rule.check == Check::Always {
                        scan.finding(
                            Finding::new(rule.code, rule.severity, format!("flex op {name} {}", rule.what))
                                .evidence(format!("{at}: custom_code {}", quote(&name))),
                        );
                        continue;
                    }
                }
                scan.finding(
                    Finding::new("tflite-custom-op", Severity::Info, format!("custom operator {}", quote(&name)))
                        .evidence(format!("{at}: custom_code {}", quote(&excerpt(&name, 200)))),
                );
            }
        }
        Err(e) => scan.finding(
            Finding::new("tflite-malformed", Severity::Error, format!("tflite model is malformed: {e}")).at(e.offset),
        ),
    }
    Format::TfLite
}

/// Custom operator codes of the model: (index, custom_code).
fn tflite_ops(f: &Flat<'_, '_>) -> Result<Vec<(u32, String)>, Error> {
    const BUILTIN_CUSTOM: i64 = 32;
    let root = f.deref(0)?;
    let mut out = Vec::new();
    let Some(codes) = f.field(root, 1)? else { return Ok(out) };
    let vec = f.deref(codes)?;
    let n = f.u32(vec)?;
    if u64::from(n) * 4 > f.b.len() || n > MAX_OPERATOR_CODES {
        return Err(Error { offset: vec, what: format!("operator code count {n} is implausible") });
    }
    for i in 0..n {
        let elem = vec + 4 + 4 * u64::from(i);
        let code = f.deref(elem)?;
        let dep = match f.field(code, 0)? {
            Some(p) => i64::from(f.b.byte(p)? as i8),
            None => 0,
        };
        let builtin = match f.field(code, 3)? {
            Some(p) => i64::from(f.u32(p)? as i32),
            None => 0,
        };
        let custom = match f.field(code, 1)? {
            Some(p) => Some(f.string(p, MAX_NAME)?),
            None => None,
        };
        if let Some(name) = custom {
            if dep == BUILTIN_CUSTOM || builtin == BUILTIN_CUSTOM || !name.is_empty() {
                out.push((i, name));
            }
        }
    }
    Ok(out)
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_names() {
        assert!(valid_op_name("Const"));
        assert!(valid_op_name("__inference_call_123"));
        assert!(valid_op_name("Addons>GeluV2"));
        assert!(!valid_op_name(""));
        assert!(!valid_op_name("9x"));
        assert!(!valid_op_name("a b"));
    }

    #[test]
    fn inputs() {
        assert_eq!(input_node("save/Const:0"), Some("save/Const"));
        assert_eq!(input_node("x:output:0"), Some("x"));
        assert_eq!(input_node("^dep"), None);
    }

    #[test]
    fn rules_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in OP_RULES {
            assert!(seen.insert(r.op), "{}", r.op);
            assert!(CODES.iter().any(|c| c.code == r.code && c.severity == r.severity), "{}", r.op);
        }
    }
}
