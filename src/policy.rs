//! The policy: what to do with a file of each verdict, where, and with which exceptions.
//!
//! A policy is a TOML file (the built-in one is `config/modelgate.toml`). It is data, never
//! code: it cannot include other files or load plugins. Loading follows cargo-deny's habit:
//! the text is parsed into raw `serde` structs (`deny_unknown_fields`, spans kept), then a
//! second pass validates everything and reports EVERY problem with file, line, column and key.
//! [`Policy::decide`] is pure: the same report and path always give the same [`Decision`].
//!
//! Besides the verdict actions, a policy scopes rules to repositories, refs, paths and
//! detected formats, and configures the push gate (`[gate]`), the Git LFS store (`[lfs]`)
//! and who may bypass the gate (`[bypass]`).

use crate::engine::{FileReport, ScanOptions};
use crate::finding::{Finding, Severity, Verdict};
use crate::lfs::LfsStore;
use crate::lists::Lists;
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

/// The built-in policy, also printed by `modelgate policy show-default`.
pub const DEFAULT_POLICY: &str = include_str!("../config/modelgate.toml");

/// What happens to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Pass silently.
    Allow,
    /// Pass, but label the file in the output.
    Tag,
    /// Fail the scan (exit code 1).
    Reject,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Allow, Action::Tag, Action::Reject];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Tag => "tag",
            Action::Reject => "reject",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An action for every verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actions {
    pub safe: Action,
    pub suspicious: Action,
    pub dangerous: Action,
    pub error: Action,
    pub unsupported: Action,
}

impl Default for Actions {
    fn default() -> Self {
        Actions {
            safe: Action::Allow,
            suspicious: Action::Tag,
            dangerous: Action::Reject,
            error: Action::Reject,
            unsupported: Action::Allow,
        }
    }
}

impl Actions {
    pub fn get(&self, v: Verdict) -> Action {
        match v {
            Verdict::Safe => self.safe,
            Verdict::Suspicious => self.suspicious,
            Verdict::Dangerous => self.dangerous,
            Verdict::Error => self.error,
            Verdict::Unsupported => self.unsupported,
        }
    }

    fn slot(&mut self, v: Verdict) -> &mut Action {
        match v {
            Verdict::Safe => &mut self.safe,
            Verdict::Suspicious => &mut self.suspicious,
            Verdict::Dangerous => &mut self.dangerous,
            Verdict::Error => &mut self.error,
            Verdict::Unsupported => &mut self.unsupported,
        }
    }
}

/// Format labels a rule's `formats` / `not_formats` may name (the `format` of a file report,
/// split at `:` for wrapped streams such as `gzip:pickle`).
pub const FORMAT_NAMES: &[&str] = &[
    "pickle",
    "pytorch",
    "pytorch-legacy",
    "pytorch-tar",
    "joblib",
    "numpy",
    "numpy-npz",
    "zip",
    "tar",
    "7z",
    "gzip",
    "zlib",
    "bzip2",
    "xz",
    "lzma",
    "lz4",
    "zstd",
    "joblib-zlib",
    "safetensors",
    "gguf",
    "hdf5",
    "keras-h5",
    "keras-config",
    "keras-metadata",
    "tensorflow-savedmodel",
    "tflite",
    "onnx",
    "protobuf",
    "json",
    "unknown",
];

/// Formats whose loaders unpickle: the `pickle-based` group (a file whose scan found any
/// pickle import, such as a NumPy object array or a zip holding a pickle, is in it too).
pub const PICKLE_FORMATS: &[&str] = &["pickle", "pytorch", "pytorch-legacy", "pytorch-tar", "joblib", "joblib-zlib"];

/// Names of format groups: `pickle-based` and `any` (every recognised format, not `unknown`).
pub const FORMAT_GROUPS: &[&str] = &["pickle-based", "any"];

/// A set of format names and groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormatSet {
    /// The names as written (groups included).
    pub names: Vec<String>,
}

impl FormatSet {
    fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    /// Whether one component of a format label is in the set.
    fn contains(&self, component: &str) -> bool {
        self.has(component)
            || (self.has("any") && component != "unknown")
            || (self.has("pickle-based") && PICKLE_FORMATS.contains(&component))
    }

    /// `formats`: some component of the label is in the set (or the file imports through
    /// pickle and the set holds `pickle-based`).
    pub fn matches(&self, subject: &Subject<'_>) -> bool {
        subject.format.split(':').any(|c| self.contains(c)) || (subject.imports && self.has("pickle-based"))
    }

    /// `not_formats`: a recognised format with some component outside the set.
    pub fn excludes(&self, subject: &Subject<'_>) -> bool {
        subject.format != "unknown" && subject.format.split(':').any(|c| !self.contains(c))
    }
}

/// What the policy knows about one file when it decides.
#[derive(Debug, Clone, Copy, Default)]
pub struct Subject<'a> {
    /// Path relative to the scan root or repository, `/`-separated; `None` when the file has
    /// no path (an LFS object scanned on its own, a blob a ref points at directly).
    pub path: Option<&'a str>,
    /// Full ref name (`refs/heads/main`) in a push; `None` outside one.
    pub refname: Option<&'a str>,
    /// Names of the repository (forge name such as `org/repo`, and its path on disk).
    pub repos: &'a [String],
    /// The report's format label (`pickle`, `gzip:pickle`, `unknown`, ...).
    pub format: &'a str,
    /// The scan found pickle imports.
    pub imports: bool,
}

impl<'a> Subject<'a> {
    /// A file of `modelgate scan`: a path and a report, no repository or ref.
    pub fn file(path: &'a str, report: &'a FileReport) -> Subject<'a> {
        Subject { path: Some(path), format: &report.format, imports: !report.imports.is_empty(), ..Default::default() }
    }
}

/// A `[[rule]]`: matchers that scope it, and the actions it sets for some verdicts. Every
/// matcher present must match; a rule has at least one.
#[derive(Debug, Clone)]
pub struct Rule {
    pub reason: String,
    /// 1-based line of the rule in its policy file.
    pub line: usize,
    /// The `paths` globs as written.
    pub paths: Vec<String>,
    path_set: Option<GlobSet>,
    /// The `repos` globs as written.
    pub repos: Vec<String>,
    repo_set: Option<GlobSet>,
    /// The `refs` globs as written.
    pub refs: Vec<String>,
    ref_set: Option<GlobSet>,
    pub formats: Option<FormatSet>,
    pub not_formats: Option<FormatSet>,
    actions: Vec<(Verdict, Action)>,
}

impl Rule {
    /// Whether the rule applies to a file at `path` outside any repository.
    pub fn matches(&self, path: &str) -> bool {
        let s = Subject { path: Some(path), format: "unknown", ..Default::default() };
        self.formats.is_none() && self.not_formats.is_none() && self.applies(&s)
    }

    /// Whether every matcher of the rule matches the file.
    pub fn applies(&self, s: &Subject<'_>) -> bool {
        let glob_ok = |set: &Option<GlobSet>, value: Option<&str>| match set {
            None => true,
            Some(set) => value.is_some_and(|v| set.is_match(v)),
        };
        glob_ok(&self.path_set, s.path)
            && glob_ok(&self.ref_set, s.refname)
            && self.repo_set.as_ref().is_none_or(|set| s.repos.iter().any(|r| set.is_match(r.as_str())))
            && self.formats.as_ref().is_none_or(|f| f.matches(s))
            && self.not_formats.as_ref().is_none_or(|f| f.excludes(s))
    }

    /// The action this rule sets for a verdict, if it sets one.
    pub fn action(&self, v: Verdict) -> Option<Action> {
        self.actions.iter().find(|(k, _)| *k == v).map(|(_, a)| *a)
    }
}

/// An `[[ignore]]` exception: findings with this code (under these paths) are dropped.
#[derive(Debug, Clone)]
pub struct Exception {
    pub code: &'static str,
    pub reason: String,
    pub line: usize,
    /// The `paths` globs as written; empty means everywhere.
    pub paths: Vec<String>,
    path_set: Option<GlobSet>,
}

impl Exception {
    pub fn matches(&self, finding: &Finding, path: &str) -> bool {
        self.matches_code(finding.code, Some(path))
    }

    /// Whether the exception drops findings with `code` for a file at `path` (a path-scoped
    /// exception never applies to a file without a path).
    pub fn matches_code(&self, code: &str, path: Option<&str>) -> bool {
        code == self.code
            && match &self.path_set {
                None => true,
                Some(set) => path.is_some_and(|p| set.is_match(p)),
            }
    }
}

/// The rule that decided a file's action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedRule {
    /// Index into [`Policy::rules`].
    pub index: usize,
    pub line: usize,
    pub reason: String,
}

/// A finding an exception dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    /// Index into the report's findings.
    pub finding: usize,
    /// Index into [`Policy::exceptions`].
    pub exception: usize,
    /// The exception's reason.
    pub reason: String,
}

/// What the policy decided for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// The verdict after exceptions (the report's own verdict when none applied).
    pub verdict: Verdict,
    /// The last `[[rule]]` that set the action; `None` when it came from `[actions]`.
    pub rule: Option<MatchedRule>,
    /// Findings dropped by `[[ignore]]` exceptions, in finding order.
    pub suppressed: Vec<Suppressed>,
}

impl Decision {
    /// Whether the report's finding number `i` was dropped by an exception.
    pub fn is_suppressed(&self, i: usize) -> bool {
        self.suppressed.iter().any(|s| s.finding == i)
    }
}

/// How the push gate behaves beyond verdicts: failures, budgets, where results go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateSettings {
    /// What happens when the gate cannot judge a file because of its own failure or budget
    /// (timeout, byte budget, unreadable object or store), or cannot run at all.
    pub on_error: Action,
    /// What happens to a Git LFS pointer whose object is not in the store.
    pub lfs_missing: Action,
    /// Files above this size are not scanned: finding `file-too-large` (an `error` verdict).
    pub max_file_size: Option<u64>,
    /// Time one file's scan may take; past it the file follows `on_error`.
    pub file_timeout: Duration,
    /// Time all scans of one push may take together.
    pub push_timeout: Duration,
    /// Bytes one file's scan may read.
    pub max_file_read_bytes: u64,
    /// Bytes all scans of one push may read together.
    pub max_push_read_bytes: u64,
    /// Where post-receive writes notes.
    pub notes_ref: String,
    /// JSON lines audit log; relative to the repository's git directory. `None`: disabled.
    pub audit_log: Option<PathBuf>,
    /// Verdict cache directory; relative to the repository's git directory. `None`: disabled.
    pub cache_dir: Option<PathBuf>,
}

impl Default for GateSettings {
    fn default() -> Self {
        GateSettings {
            on_error: Action::Reject,
            lfs_missing: Action::Reject,
            max_file_size: None,
            file_timeout: Duration::from_secs(120),
            push_timeout: Duration::from_secs(600),
            max_file_read_bytes: 1 << 40,
            max_push_read_bytes: 4 << 40,
            notes_ref: "refs/notes/modelgate".into(),
            audit_log: Some(PathBuf::from("modelgate/audit.log")),
            cache_dir: Some(PathBuf::from("modelgate/cache")),
        }
    }
}

/// Who may skip the gate with `git push -o modelgate.skip=<reason>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bypass {
    /// Pusher names allowed to bypass; empty: nobody.
    pub pushers: Vec<String>,
    /// Environment variable naming the pusher; when set, the only one trusted. Otherwise
    /// `GL_USERNAME` (GitLab) or `GITEA_PUSHER_NAME` (Gitea, Forgejo).
    pub pusher_env: Option<String>,
    pub reason: String,
}

impl Bypass {
    pub fn allows(&self, pusher: &str) -> bool {
        self.pushers.iter().any(|p| p == pusher)
    }
}

/// A loaded, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Where it came from (a file path, or `built-in policy`).
    pub origin: String,
    pub actions: Actions,
    pub rules: Vec<Rule>,
    pub exceptions: Vec<Exception>,
    pub gate: GateSettings,
    /// The Git LFS store pointers are resolved in.
    pub lfs: LfsStore,
    pub bypass: Bypass,
    options: ScanOptions,
    /// Digest of the allow/deny entries (what, besides the engine and budgets, changes verdicts).
    lists_digest: String,
}

impl Policy {
    /// The built-in policy.
    pub fn builtin() -> Policy {
        match Policy::parse(DEFAULT_POLICY, "built-in policy") {
            Ok(p) => p,
            // The embedded file is tested; reaching this is a build defect, not a user error.
            Err(e) => unreachable!("the built-in policy is invalid: {e}"),
        }
    }

    /// Read and validate a policy file.
    pub fn from_file(path: &Path) -> anyhow::Result<Policy> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read policy {}: {}", path.display(), e))?;
        Ok(Policy::parse(&text, &path.display().to_string())?)
    }

    /// Validate policy text; `origin` names it in problems.
    pub fn parse(text: &str, origin: &str) -> Result<Policy, PolicyError> {
        let mut l = Loader { origin, text, problems: Vec::new() };
        let policy = l.load();
        if l.problems.is_empty() {
            if let Some(p) = policy {
                return Ok(p);
            }
        }
        let mut problems = l.problems;
        problems.sort_by_key(|p| (p.line, p.column));
        problems.dedup();
        Err(PolicyError { origin: origin.to_string(), problems })
    }

    /// Scan options with this policy's budgets and allow/deny lists.
    pub fn scan_options(&self) -> &ScanOptions {
        &self.options
    }

    /// A digest of the policy's allow/deny lists, for cache keys: verdicts cached under one
    /// set of lists are never served under another.
    pub fn lists_digest(&self) -> &str {
        &self.lists_digest
    }

    /// Decide what to do with a scanned file. `path` is relative to the scan root, `/`-separated.
    pub fn decide(&self, report: &FileReport, path: &str) -> Decision {
        let facts: Vec<(&str, Severity)> = report.findings.iter().map(|f| (f.code, f.severity)).collect();
        self.decide_facts(&Subject::file(path, report), report.verdict, &facts)
    }

    /// Decide from the facts of a judgement: the file, its verdict as scanned, and the code
    /// and severity of each finding in report order.
    pub fn decide_facts(&self, subject: &Subject<'_>, verdict: Verdict, findings: &[(&str, Severity)]) -> Decision {
        let suppressed: Vec<Suppressed> = findings
            .iter()
            .enumerate()
            .filter_map(|(i, (code, _))| {
                let e = self.exceptions.iter().position(|e| e.matches_code(code, subject.path))?;
                let reason = self.exceptions.get(e).map(|x| x.reason.clone()).unwrap_or_default();
                Some(Suppressed { finding: i, exception: e, reason })
            })
            .collect();
        let verdict = if suppressed.is_empty() {
            verdict
        } else {
            let worst = findings
                .iter()
                .enumerate()
                .filter(|(i, _)| !suppressed.iter().any(|s| s.finding == *i))
                .map(|(_, (_, sev))| *sev)
                .max();
            let model = verdict == Verdict::Safe || subject.imports || is_model_format(subject.format);
            Verdict::from_worst(worst, model)
        };
        let mut action = self.actions.get(verdict);
        let mut rule = None;
        for (index, r) in self.rules.iter().enumerate() {
            if let Some(a) = r.action(verdict).filter(|_| r.applies(subject)) {
                action = a;
                rule = Some(MatchedRule { index, line: r.line, reason: r.reason.clone() });
            }
        }
        Decision { action, verdict, rule, suppressed }
    }

    /// Exceptions no decision used (`used` holds the exception indices that did match).
    pub fn unused_exceptions<'a>(&'a self, used: &std::collections::HashSet<usize>) -> Vec<&'a Exception> {
        self.exceptions.iter().enumerate().filter(|(i, _)| !used.contains(i)).map(|(_, e)| e).collect()
    }
}

/// Whether a format label (as in `FileReport::format`) names a model format rather than a
/// plain container, so that a file stripped of all findings is "safe" rather than "unsupported".
fn is_model_format(label: &str) -> bool {
    let inner = label.rsplit(':').next().unwrap_or(label);
    matches!(
        inner,
        "pickle"
            | "pytorch"
            | "pytorch-legacy"
            | "pytorch-tar"
            | "joblib"
            | "numpy"
            | "numpy-npz"
            | "safetensors"
            | "gguf"
            | "hdf5"
            | "keras-h5"
            | "keras-config"
            | "keras-metadata"
            | "tensorflow-savedmodel"
            | "tflite"
            | "onnx"
    )
}

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    /// Dotted key path, e.g. `rule[1].paths[0]`.
    pub key: String,
    pub message: String,
}

/// Every problem found in a policy file.
#[derive(Debug, Clone)]
pub struct PolicyError {
    pub origin: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(f, "invalid policy {}: {} problem{}", self.origin, n, if n == 1 { "" } else { "s" })?;
        for p in &self.problems {
            let key = if p.key.is_empty() { String::new() } else { format!(" `{}`:", p.key) };
            write!(f, "\n  {}:{}:{}:{} {}", self.origin, p.line, p.column, key, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}

// Raw shapes of the file. Values that can be wrong in more than one way are kept as spanned
// strings/integers so the validation pass can report each problem where it is.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawActions {
    safe: Option<Spanned<String>>,
    suspicious: Option<Spanned<String>>,
    dangerous: Option<Spanned<String>>,
    error: Option<Spanned<String>>,
    unsupported: Option<Spanned<String>>,
}

impl RawActions {
    fn entries(self) -> impl Iterator<Item = (Verdict, Spanned<String>)> {
        [
            (Verdict::Safe, self.safe),
            (Verdict::Suspicious, self.suspicious),
            (Verdict::Dangerous, self.dangerous),
            (Verdict::Error, self.error),
            (Verdict::Unsupported, self.unsupported),
        ]
        .into_iter()
        .filter_map(|(v, a)| Some((v, a?)))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_depth: Option<Spanned<i64>>,
    max_expanded_bytes: Option<Spanned<i64>>,
    max_buffered_bytes: Option<Spanned<i64>>,
    max_members: Option<Spanned<i64>>,
    max_pickle_opcodes: Option<Spanned<i64>>,
    max_pickle_values: Option<Spanned<i64>>,
    max_nested_pickle_bytes: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImport {
    name: Option<Spanned<String>>,
    reason: Option<Spanned<String>>,
}

type Strings = Spanned<Vec<Spanned<String>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    paths: Option<Strings>,
    repos: Option<Strings>,
    refs: Option<Strings>,
    formats: Option<Strings>,
    not_formats: Option<Strings>,
    // Loaded separately as `RawActions` so that every unknown key in it is reported.
    #[allow(dead_code)]
    actions: Option<IgnoredAny>,
    action: Option<Spanned<String>>,
    reason: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGate {
    on_error: Option<Spanned<String>>,
    lfs_missing: Option<Spanned<String>>,
    max_file_size: Option<Spanned<i64>>,
    file_timeout: Option<Spanned<String>>,
    push_timeout: Option<Spanned<String>>,
    max_file_read_bytes: Option<Spanned<i64>>,
    max_push_read_bytes: Option<Spanned<i64>>,
    notes_ref: Option<Spanned<String>>,
    audit_log: Option<Spanned<String>>,
    cache_dir: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBypass {
    pushers: Option<Strings>,
    pusher_env: Option<Spanned<String>>,
    reason: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIgnore {
    code: Option<Spanned<String>>,
    paths: Option<Spanned<Vec<Spanned<String>>>>,
    reason: Option<Spanned<String>>,
}

const SECTIONS: &[&str] = &["actions", "limits", "gate", "lfs", "bypass", "allow", "deny", "rule", "ignore", "clamav"];

const MIB: i64 = 1 << 20;
/// `(key, min, max)` of every `[limits]` budget.
const LIMIT_RANGES: &[(&str, i64, i64)] = &[
    ("max_depth", 1, 64),
    ("max_expanded_bytes", MIB, 1 << 40),
    ("max_buffered_bytes", MIB, 16 << 30),
    ("max_members", 1, 100_000_000),
    ("max_pickle_opcodes", 1_000, 10_000_000_000),
    ("max_pickle_values", 1_000, 100_000_000),
    ("max_nested_pickle_bytes", 4096, 4 << 30),
];

struct Loader<'a> {
    origin: &'a str,
    text: &'a str,
    problems: Vec<Problem>,
}

impl Loader<'_> {
    fn problem(&mut self, span: Range<usize>, key: impl Into<String>, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.problems.push(Problem { line, column, key: key.into(), message: message.into() });
    }

    fn load(&mut self) -> Option<Policy> {
        let (root, errors) = DeTable::parse_recoverable(self.text);
        for e in &errors {
            let span = e.span().unwrap_or(0..0);
            // Syntax errors carry no key; when the span covers a bare key, name it.
            let text = self.text.get(span.clone()).unwrap_or("");
            let is_key = !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
            self.problem(span, if is_key { text } else { "" }, e.message().to_string());
        }
        if !errors.is_empty() {
            return None;
        }
        let root = root.into_inner();
        for (k, _) in root.iter() {
            if !SECTIONS.contains(&k.get_ref().as_ref()) {
                let msg = format!("unknown section `{}`; expected one of: {}", k.get_ref(), SECTIONS.join(", "));
                self.problem(k.span(), k.get_ref().to_string(), msg);
            }
        }

        let mut actions = Actions::default();
        if let Some(raw) = root.get("actions").and_then(|v| self.table::<RawActions>(v, "actions")) {
            for (verdict, a) in self.actions(raw, "actions") {
                *actions.slot(verdict) = a;
            }
        }

        let mut options = ScanOptions::default();
        if let Some(raw) = root.get("limits").and_then(|v| self.table::<RawLimits>(v, "limits")) {
            self.limits(raw, &mut options);
        }
        if let Some(v) = root.get("clamav") {
            match self.table::<crate::clamav::RawClamav>(v, "clamav").map(|raw| raw.validate(v.span())) {
                Some(Ok(c)) => options.clamav = Some(Arc::new(c)),
                Some(Err(problems)) => problems.into_iter().for_each(|(span, key, msg)| self.problem(span, key, msg)),
                None => {}
            }
        }

        let mut gate = GateSettings::default();
        if let Some(raw) = root.get("gate").and_then(|v| self.table::<RawGate>(v, "gate")) {
            self.gate(raw, &mut gate);
        }

        let mut lfs = LfsStore::default();
        if let Some(v) = root.get("lfs") {
            if let Some(store) = self.table::<LfsStore>(v, "lfs") {
                match store.validate() {
                    Ok(()) => lfs = store,
                    Err(e) => self.problem(v.span(), "lfs", e.0),
                }
            }
        }

        let mut bypass = Bypass::default();
        if let Some(v) = root.get("bypass") {
            if let Some(raw) = self.table::<RawBypass>(v, "bypass") {
                bypass = self.bypass(raw, v.span());
            }
        }

        let mut lists = Lists::builtin();
        let mut digest = sha2::Sha256::new();
        for (section, deny) in [("allow", false), ("deny", true)] {
            for e in self.array::<RawImport>(&root, section) {
                if let Some(name) = &e.raw.name {
                    digest.update(format!("{section}\0{}\n", name.get_ref().trim()).as_bytes());
                }
                self.import_entry(e, deny, &mut lists);
            }
        }
        options.lists = Arc::new(lists);
        let lists_digest = digest.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect();

        let mut rules = Vec::new();
        for e in self.array::<RawRule>(&root, "rule") {
            if let Some(r) = self.rule(e) {
                rules.push(r);
            }
        }

        let mut exceptions = Vec::new();
        for e in self.array::<RawIgnore>(&root, "ignore") {
            if let Some(x) = self.exception(e) {
                exceptions.push(x);
            }
        }

        Some(Policy {
            origin: self.origin.to_string(),
            actions,
            rules,
            exceptions,
            gate,
            lfs,
            bypass,
            options,
            lists_digest,
        })
    }

    /// Deserialize one table, after reporting (and removing) every key `T` does not know.
    fn table<T: DeserializeOwned>(&mut self, value: &Spanned<DeValue<'_>>, key: &str) -> Option<T> {
        let Some(table) = value.get_ref().as_table() else {
            let msg = format!("expected a table, found {}", value.get_ref().type_str());
            self.problem(value.span(), key, msg);
            return None;
        };
        let known = fields_of::<T>();
        let mut table = table.clone();
        let unknown: Vec<_> = table.keys().filter(|k| !known.contains(&k.get_ref().as_ref())).cloned().collect();
        for k in unknown {
            let msg = format!("unknown key `{}`; expected one of: {}", k.get_ref(), known.join(", "));
            self.problem(k.span(), format!("{key}.{}", k.get_ref()), msg);
            table.remove(k.get_ref().as_ref());
        }
        let span = value.span();
        match T::deserialize(ValueDeserializer::from(Spanned::new(span.clone(), DeValue::Table(table)))) {
            Ok(t) => Some(t),
            Err(e) => {
                let at = e.span().unwrap_or(span);
                let path = key_path(value, at.start).map(|p| format!("{key}{p}")).unwrap_or_else(|| key.to_string());
                self.problem(at, path, e.message().to_string());
                None
            }
        }
    }

    /// Deserialize every table of an array of tables (`[[section]]`), keyed `section[i]`.
    fn array<'r, 'i, T: DeserializeOwned>(&mut self, root: &'r DeTable<'i>, section: &str) -> Vec<Entry<'r, 'i, T>> {
        let Some(value) = root.get(section) else { return Vec::new() };
        let Some(items) = value.get_ref().as_array() else {
            let msg = format!("expected an array of tables (`[[{section}]]`), found {}", value.get_ref().type_str());
            self.problem(value.span(), section, msg);
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let key = format!("{section}[{i}]");
            if let Some(raw) = self.table::<T>(item, &key) {
                out.push(Entry { key, raw, value: item });
            }
        }
        out
    }

    fn actions(&mut self, raw: RawActions, key: &str) -> Vec<(Verdict, Action)> {
        let mut out = Vec::new();
        for (verdict, value) in raw.entries() {
            match Action::parse(value.get_ref()) {
                Some(a) => out.push((verdict, a)),
                None => {
                    let msg = format!("unknown action `{}`; expected `reject`, `tag` or `allow`", value.get_ref());
                    self.problem(value.span(), format!("{key}.{verdict}"), msg);
                }
            }
        }
        out
    }

    fn limits(&mut self, raw: RawLimits, o: &mut ScanOptions) {
        let values = [
            raw.max_depth,
            raw.max_expanded_bytes,
            raw.max_buffered_bytes,
            raw.max_members,
            raw.max_pickle_opcodes,
            raw.max_pickle_values,
            raw.max_nested_pickle_bytes,
        ];
        for (value, &(name, min, max)) in values.into_iter().zip(LIMIT_RANGES) {
            let Some(v) = value else { continue };
            let n = *v.get_ref();
            if n < min || n > max {
                self.problem(v.span(), format!("limits.{name}"), format!("{n} is out of range {min}..={max}"));
                continue;
            }
            let u = n.unsigned_abs();
            match name {
                "max_depth" => o.max_depth = u32::try_from(u).unwrap_or(u32::MAX),
                "max_expanded_bytes" => o.max_expanded_bytes = u,
                "max_buffered_bytes" => o.max_buffered_bytes = u,
                "max_members" => o.max_members = u,
                "max_pickle_opcodes" => o.max_pickle_opcodes = u,
                "max_pickle_values" => o.max_pickle_values = usize::try_from(u).unwrap_or(usize::MAX),
                _ => o.max_nested_pickle_bytes = u,
            }
        }
    }

    /// The required, non-empty `reason` of an entry.
    fn reason(&mut self, reason: Option<Spanned<String>>, entry: Span, key: &str, what: &str) -> Option<String> {
        match reason {
            Some(r) if !r.get_ref().trim().is_empty() => Some(r.into_inner()),
            Some(r) => {
                self.problem(r.span(), format!("{key}.reason"), format!("`reason` is empty: say why {what}"));
                None
            }
            None => {
                self.problem(entry, format!("{key}.reason"), format!("`reason` is required: say why {what}"));
                None
            }
        }
    }

    fn import_entry(&mut self, Entry { key, raw, value }: Entry<'_, '_, RawImport>, deny: bool, lists: &mut Lists) {
        let (key, span) = (key.as_str(), value.span());
        let what = if deny { "this import is denied" } else { "this import is safe to load" };
        let reason = self.reason(raw.reason, span.clone(), key, what);
        let name = match raw.name {
            None => {
                self.problem(span, format!("{key}.name"), "`name` is required (`module.name`, `module` or `module.*`)");
                return;
            }
            Some(n) => n,
        };
        let text = name.get_ref().trim();
        let components_ok = !text.is_empty()
            && text.split('.').enumerate().all(|(i, c)| {
                let last = i + 1 == text.split('.').count();
                (c == "*" && last && i > 0) || (!c.is_empty() && c.chars().all(|ch| ch.is_alphanumeric() || ch == '_'))
            });
        if !components_ok {
            let msg = if text.is_empty() {
                "`name` is empty; expected `module.name`, `module` or `module.*`".to_string()
            } else {
                format!("`{text}` is not an import name; expected `module.name`, `module` or `module.*`")
            };
            self.problem(name.span(), format!("{key}.name"), msg);
            return;
        }
        let Some(reason) = reason else { return };
        let added = if deny { lists.deny(text, &reason) } else { lists.allow(text, &reason) };
        if let Err(e) = added {
            self.problem(name.span(), format!("{key}.name"), e);
        }
    }

    /// Build a glob set from `paths`; `None` after reporting problems.
    fn globs(&mut self, paths: &Strings, key: &str) -> Option<GlobSet> {
        self.glob_list(paths, key, "paths")
    }

    /// Build a glob set from the list `field` of entry `key`; `None` after reporting problems.
    fn glob_list(&mut self, list: &Strings, key: &str, field: &str) -> Option<GlobSet> {
        if list.get_ref().is_empty() {
            self.problem(list.span(), format!("{key}.{field}"), format!("`{field}` is empty; list at least one glob"));
            return None;
        }
        let mut builder = GlobSetBuilder::new();
        let mut ok = true;
        for (i, p) in list.get_ref().iter().enumerate() {
            match glob(p.get_ref()) {
                Ok(g) => {
                    builder.add(g);
                }
                Err(msg) => {
                    self.problem(p.span(), format!("{key}.{field}[{i}]"), msg);
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        match builder.build() {
            Ok(set) => Some(set),
            Err(e) => {
                self.problem(list.span(), format!("{key}.{field}"), e.kind().to_string());
                None
            }
        }
    }

    /// Validate a list of format names and groups.
    fn format_set(&mut self, list: &Strings, key: &str, field: &str) -> Option<FormatSet> {
        if list.get_ref().is_empty() {
            self.problem(
                list.span(),
                format!("{key}.{field}"),
                format!("`{field}` is empty; list at least one format"),
            );
            return None;
        }
        let mut ok = true;
        for (i, f) in list.get_ref().iter().enumerate() {
            let name = f.get_ref().as_str();
            if !FORMAT_NAMES.contains(&name) && !FORMAT_GROUPS.contains(&name) {
                let msg = format!(
                    "unknown format `{name}`; expected a group ({}) or one of: {}",
                    FORMAT_GROUPS.join(", "),
                    FORMAT_NAMES.join(", ")
                );
                self.problem(f.span(), format!("{key}.{field}[{i}]"), msg);
                ok = false;
            }
        }
        ok.then(|| FormatSet { names: list.get_ref().iter().map(|f| f.get_ref().clone()).collect() })
    }

    fn rule(&mut self, Entry { key, raw, value }: Entry<'_, '_, RawRule>) -> Option<Rule> {
        let (key, span) = (key.as_str(), value.span());
        let reason = self.reason(raw.reason, span.clone(), key, "this rule exists");
        let mut ok = true;
        let mut glob_field = |l: &mut Self, list: &Option<Strings>, field: &str| match list {
            None => None,
            Some(list) => {
                let set = l.glob_list(list, key, field);
                ok &= set.is_some();
                set
            }
        };
        let path_set = glob_field(self, &raw.paths, "paths");
        let repo_set = glob_field(self, &raw.repos, "repos");
        let ref_set = glob_field(self, &raw.refs, "refs");
        let mut format_field = |l: &mut Self, list: &Option<Strings>, field: &str| match list {
            None => None,
            Some(list) => {
                let set = l.format_set(list, key, field);
                ok &= set.is_some();
                set
            }
        };
        let formats = format_field(self, &raw.formats, "formats");
        let not_formats = format_field(self, &raw.not_formats, "not_formats");
        let matchers = [&raw.paths, &raw.repos, &raw.refs, &raw.formats, &raw.not_formats];
        if matchers.iter().all(|m| m.is_none()) {
            self.problem(
                span.clone(),
                format!("{key}.paths"),
                "a rule needs a matcher: `paths`, `repos`, `refs`, `formats` or `not_formats`",
            );
            ok = false;
        }
        let akey = format!("{key}.actions");
        let actions_value = value.get_ref().as_table().and_then(|t| t.get("actions"));
        let actions = match (actions_value, &raw.action) {
            (Some(_), Some(a)) => {
                self.problem(a.span(), format!("{key}.action"), "set either `action` or `actions`, not both");
                None
            }
            (None, Some(a)) => match Action::parse(a.get_ref()) {
                Some(action) => Some(Verdict::ALL.iter().map(|v| (*v, action)).collect()),
                None => {
                    let msg = format!("unknown action `{}`; expected `reject`, `tag` or `allow`", a.get_ref());
                    self.problem(a.span(), format!("{key}.action"), msg);
                    None
                }
            },
            (None, None) => {
                self.problem(
                    span,
                    &akey,
                    "`actions` is required, e.g. `actions = { suspicious = \"reject\" }`, or `action = \"reject\"` for every verdict",
                );
                None
            }
            (Some(v), None) => match (self.problems.len(), self.table::<RawActions>(v, &akey)) {
                (before, Some(raw_actions)) => {
                    let a = self.actions(raw_actions, &akey);
                    if a.is_empty() && self.problems.len() == before {
                        self.problem(v.span(), &akey, "`actions` is empty; set an action for at least one verdict");
                    }
                    Some(a)
                }
                (_, None) => None,
            },
        };
        let (reason, actions) = (reason?, actions?);
        if !ok {
            return None;
        }
        let strings = |l: Option<Strings>| -> Vec<String> {
            l.map(|p| p.into_inner().into_iter().map(Spanned::into_inner).collect()).unwrap_or_default()
        };
        Some(Rule {
            reason,
            line: line_col(self.text, value.span().start).0,
            paths: strings(raw.paths),
            path_set,
            repos: strings(raw.repos),
            repo_set,
            refs: strings(raw.refs),
            ref_set,
            formats,
            not_formats,
            actions,
        })
    }

    fn action_value(&mut self, v: &Spanned<String>, key: &str) -> Option<Action> {
        let a = Action::parse(v.get_ref());
        if a.is_none() {
            let msg = format!("unknown action `{}`; expected `reject`, `tag` or `allow`", v.get_ref());
            self.problem(v.span(), key, msg);
        }
        a
    }

    fn bytes(&mut self, v: &Spanned<i64>, key: &str, min: i64, max: i64) -> Option<u64> {
        let n = *v.get_ref();
        if n < min || n > max {
            self.problem(v.span(), key, format!("{n} is out of range {min}..={max}"));
            return None;
        }
        Some(n.unsigned_abs())
    }

    fn duration(&mut self, v: &Spanned<String>, key: &str) -> Option<Duration> {
        match parse_duration(v.get_ref()) {
            Ok(d) if d >= Duration::from_millis(1) && d <= Duration::from_secs(24 * 3600) => Some(d),
            Ok(_) => {
                self.problem(v.span(), key, format!("`{}` is out of range 1ms..=24h", v.get_ref()));
                None
            }
            Err(msg) => {
                self.problem(v.span(), key, msg);
                None
            }
        }
    }

    fn gate(&mut self, raw: RawGate, g: &mut GateSettings) {
        if let Some(v) = &raw.on_error {
            g.on_error = self.action_value(v, "gate.on_error").unwrap_or(g.on_error);
        }
        if let Some(v) = &raw.lfs_missing {
            g.lfs_missing = self.action_value(v, "gate.lfs_missing").unwrap_or(g.lfs_missing);
        }
        const TIB: i64 = 1 << 40;
        if let Some(v) = &raw.max_file_size {
            g.max_file_size = self.bytes(v, "gate.max_file_size", 1, i64::MAX);
        }
        if let Some(v) = &raw.max_file_read_bytes {
            g.max_file_read_bytes = self.bytes(v, "gate.max_file_read_bytes", 1, 64 * TIB).unwrap_or(0);
        }
        if let Some(v) = &raw.max_push_read_bytes {
            g.max_push_read_bytes = self.bytes(v, "gate.max_push_read_bytes", 1, 64 * TIB).unwrap_or(0);
        }
        if let Some(v) = &raw.file_timeout {
            g.file_timeout = self.duration(v, "gate.file_timeout").unwrap_or_default();
        }
        if let Some(v) = &raw.push_timeout {
            g.push_timeout = self.duration(v, "gate.push_timeout").unwrap_or_default();
        }
        if let Some(v) = &raw.notes_ref {
            match check_notes_ref(v.get_ref()) {
                Ok(()) => g.notes_ref = v.get_ref().clone(),
                Err(msg) => self.problem(v.span(), "gate.notes_ref", msg),
            }
        }
        let path = |l: &mut Self, v: &Option<Spanned<String>>, key: &str, slot: &mut Option<PathBuf>| {
            let Some(v) = v else { return };
            if v.get_ref().is_empty() {
                *slot = None;
            } else if v.get_ref().contains('\0') {
                l.problem(v.span(), key, "a path cannot contain NUL");
            } else {
                *slot = Some(PathBuf::from(v.get_ref()));
            }
        };
        path(self, &raw.audit_log, "gate.audit_log", &mut g.audit_log);
        path(self, &raw.cache_dir, "gate.cache_dir", &mut g.cache_dir);
    }

    fn bypass(&mut self, raw: RawBypass, span: Span) -> Bypass {
        let mut b = Bypass::default();
        if let Some(list) = &raw.pushers {
            for (i, p) in list.get_ref().iter().enumerate() {
                let name = p.get_ref();
                if name.trim().is_empty() || name.chars().any(char::is_control) {
                    self.problem(
                        p.span(),
                        format!("bypass.pushers[{i}]"),
                        "a pusher name cannot be empty or hold control characters",
                    );
                } else {
                    b.pushers.push(name.clone());
                }
            }
        }
        if let Some(v) = &raw.pusher_env {
            let name = v.get_ref();
            let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if valid {
                b.pusher_env = Some(name.clone());
            } else {
                self.problem(v.span(), "bypass.pusher_env", format!("`{name}` is not an environment variable name"));
            }
        }
        if !b.pushers.is_empty() || raw.reason.is_some() {
            b.reason = self.reason(raw.reason, span, "bypass", "these pushers may skip the gate").unwrap_or_default();
        }
        b
    }

    fn exception(&mut self, Entry { key, raw, value }: Entry<'_, '_, RawIgnore>) -> Option<Exception> {
        let (key, span) = (key.as_str(), value.span());
        let reason = self.reason(raw.reason, span.clone(), key, "these findings are acceptable");
        let code = match raw.code {
            None => {
                self.problem(
                    span.clone(),
                    format!("{key}.code"),
                    "`code` is required (see `modelgate explain --list`)",
                );
                None
            }
            Some(c) => match crate::finding::code_info(c.get_ref()) {
                Some(info) => Some(info.code),
                None => {
                    let near = close_codes(c.get_ref());
                    let hint = if near.is_empty() {
                        "see `modelgate explain --list`".to_string()
                    } else {
                        format!(
                            "did you mean {}?",
                            near.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
                        )
                    };
                    self.problem(c.span(), format!("{key}.code"), format!("unknown code `{}`; {hint}", c.get_ref()));
                    None
                }
            },
        };
        let path_set = match &raw.paths {
            Some(p) => Some(self.globs(p, key)?),
            None => None,
        };
        let paths =
            raw.paths.map(|p| p.into_inner().into_iter().map(Spanned::into_inner).collect()).unwrap_or_default();
        Some(Exception { code: code?, reason: reason?, line: line_col(self.text, span.start).0, paths, path_set })
    }
}

type Span = Range<usize>;

/// One table of an array of tables, with its key (`rule[2]`) and its place in the file.
struct Entry<'r, 'i, T> {
    key: String,
    raw: T,
    value: &'r Spanned<DeValue<'i>>,
}

/// Compile one path glob: `*` and `?` stay within a path component, `**` crosses them.
fn glob(pattern: &str) -> Result<Glob, String> {
    if pattern.is_empty() {
        return Err("empty glob".to_string());
    }
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("invalid glob `{pattern}`: {}", e.kind()))
}

/// Parse a duration: a whole number and a unit, `ms`, `s`, `m` or `h` (`250ms`, `30s`, `2m`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("`{text}` is not a duration; write a whole number and a unit: `500ms`, `30s`, `2m`, `1h`");
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(bad()),
    };
    ms.map(Duration::from_millis).ok_or_else(bad)
}

/// A notes ref git accepts: `refs/notes/<name>` with ordinary ref-name characters.
fn check_notes_ref(name: &str) -> Result<(), String> {
    let rest = name.strip_prefix("refs/notes/").ok_or_else(|| format!("`{name}` does not start with refs/notes/"))?;
    let bad_char = |c: char| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c);
    let ok = !rest.is_empty()
        && !name.chars().any(bad_char)
        && !name.contains("..")
        && !name.contains("@{")
        && !name.ends_with('/')
        && !name.ends_with(".lock")
        && !name.ends_with('.')
        && rest.split('/').all(|c| !c.is_empty() && !c.starts_with('.'));
    if ok {
        Ok(())
    } else {
        Err(format!("`{name}` is not a valid notes ref name"))
    }
}

/// Known codes close to a misspelt one, closest first.
pub fn close_codes(code: &str) -> Vec<&'static str> {
    let mut scored: Vec<(usize, &'static str)> = crate::finding::all_codes()
        .into_iter()
        .filter_map(|c| {
            let d = edit_distance(code, c.code);
            let near = d <= (code.len() / 3).max(2) || (code.len() >= 4 && c.code.contains(code));
            near.then_some((d, c.code))
        })
        .collect();
    scored.sort();
    scored.into_iter().take(5).map(|(_, c)| c).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.get(j).copied().unwrap_or(0) + 1;
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The key path (`.a.b[2]`) below `value` whose key or value covers byte `pos`.
fn key_path(value: &Spanned<DeValue<'_>>, pos: usize) -> Option<String> {
    let covers = |s: Range<usize>| s.contains(&pos) || (s.is_empty() && s.start == pos);
    match value.get_ref() {
        DeValue::Table(t) => t.iter().find_map(|(k, v)| {
            let here = format!(".{}", k.get_ref());
            match key_path(v, pos) {
                Some(below) => Some(here + &below),
                None if covers(k.span()) || covers(v.span()) => Some(here),
                None => None,
            }
        }),
        DeValue::Array(a) => a.iter().enumerate().find_map(|(i, v)| match key_path(v, pos) {
            Some(below) => Some(format!("[{i}]{below}")),
            None if covers(v.span()) => Some(format!("[{i}]")),
            None => None,
        }),
        _ => None,
    }
}

/// The field names a derived `Deserialize` struct accepts. Asking serde itself keeps the
/// unknown-key check and the struct definitions from drifting apart.
fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{self, Visitor};
    struct Probe(&'static [&'static str]);
    impl<'de> de::Deserializer<'de> for &mut Probe {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = fields;
            Err(de::Error::custom("probed"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut probe = Probe(&[]);
    let _ = T::deserialize(&mut probe);
    probe.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Severity;

    fn report(findings: Vec<Finding>, verdict: Verdict) -> FileReport {
        FileReport { path: "x".into(), format: "pickle".into(), verdict, size: 1, imports: Vec::new(), findings }
    }

    #[test]
    fn builtin_loads_with_documented_defaults() {
        let p = Policy::builtin();
        assert_eq!(p.actions, Actions::default());
        assert!(p.rules.is_empty() && p.exceptions.is_empty());
        let d = ScanOptions::default();
        assert_eq!(p.scan_options().max_depth, d.max_depth);
        assert_eq!(p.scan_options().max_expanded_bytes, d.max_expanded_bytes);
        assert_eq!(p.scan_options().max_pickle_values, d.max_pickle_values);
    }

    #[test]
    fn fields_come_from_serde() {
        assert_eq!(fields_of::<RawImport>(), &["name", "reason"]);
        assert_eq!(
            fields_of::<RawRule>(),
            &["paths", "repos", "refs", "formats", "not_formats", "actions", "action", "reason"]
        );
        assert_eq!(fields_of::<LfsStore>(), &["layout", "root", "template", "verify_sha256"]);
    }

    #[test]
    fn line_and_column() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab\ncd", 99), (2, 3));
    }

    #[test]
    fn exception_recomputes_verdict() {
        let p = Policy::parse("[[ignore]]\ncode = \"read-error\"\nreason = \"r\"\n", "t").unwrap();
        let r = report(vec![Finding::new("read-error", Severity::Error, "m")], Verdict::Error);
        let d = p.decide(&r, "x");
        assert_eq!(d.verdict, Verdict::Safe);
        assert_eq!(d.action, Action::Allow);
        assert_eq!(d.suppressed, vec![Suppressed { finding: 0, exception: 0, reason: "r".into() }]);
        let mut r2 = r.clone();
        r2.format = "unknown".into();
        assert_eq!(p.decide(&r2, "x").verdict, Verdict::Unsupported);
    }

    #[test]
    fn edit_distance_works() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert!(close_codes("read-eror").contains(&"read-error"));
    }
}
