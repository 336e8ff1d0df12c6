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
//!
//! Decisions: the strictest action wins (reject > tag > allow) among `[actions]` and every
//! matching `[[rule]]`, so a rule can make a file's fate stricter, never milder. What may
//! pass in spite of that is said by content: an `[[allow]]` entry pinned to one file's
//! `sha256` or git `blob` id (with a reason and an optional expiry date) allows exactly that
//! content, wherever it appears. [`check::remarks`] finds rules that can never match or
//! never change a decision.

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
pub const DEFAULT_POLICY: &str = include_str!("../../config/modelgate.toml");

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

/// Compression wrappers among [`FORMAT_NAMES`]: a wrapped stream's label is `wrapper:content`.
pub const WRAPPER_NAMES: &[&str] = &["gzip", "zlib", "bzip2", "xz", "lzma", "lz4", "zstd", "joblib-zlib"];

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
    /// What identifies the file's exact content, for `[[allow]]` entries pinned to it.
    pub content: ContentIds<'a>,
}

/// The identities of a file's content known when deciding (lowercase hex).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContentIds<'a> {
    /// sha256 of the content: of the file (`sha256sum`), or the oid of a Git LFS object.
    pub sha256: Option<&'a str>,
    /// The git blob id (sha1 or sha256 repository) of the file, or of the LFS pointer in git.
    pub blob: Option<&'a str>,
    /// Outside a repository, the blob id a sha256 repository would give the file (`blob`
    /// then holds the sha1 one).
    pub blob256: Option<&'a str>,
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

    /// The actions the rule sets, per verdict.
    pub fn actions(&self) -> &[(Verdict, Action)] {
        &self.actions
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

/// The rule that decided a file's action: the first matching rule that sets the strictest
/// action (which may also be what `[actions]` says).
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
    /// The first matching `[[rule]]` that sets the final action; `None` when only `[actions]`
    /// (or a pinned `[[allow]]` entry) decided.
    pub rule: Option<MatchedRule>,
    /// Findings dropped by `[[ignore]]` exceptions, in finding order.
    pub suppressed: Vec<Suppressed>,
    /// The `[[allow]]` entry pinned to this content that allowed the file, whatever its verdict.
    pub allowed: Option<MatchedAllow>,
}

/// A pinned `[[allow]]` entry that matched a file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedAllow {
    /// Index into [`Policy::pinned`].
    pub index: usize,
    /// `allow[i]`: the entry's place among the file's `[[allow]]` tables.
    pub entry: usize,
    pub line: usize,
    pub reason: String,
    pub pin: Pin,
}

/// What an `[[allow]]` entry is pinned to (lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pin {
    /// sha256 of the content: `sha256sum FILE`, and the oid of its Git LFS object.
    Sha256(String),
    /// A git blob id (40 hex digits in a sha1 repository, 64 in a sha256 one).
    Blob(String),
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pin::Sha256(h) => write!(f, "sha256 {h}"),
            Pin::Blob(h) => write!(f, "blob {h}"),
        }
    }
}

/// An `[[allow]]` entry pinned to one file's exact content: that content is allowed wherever
/// it appears, whatever its verdict and whatever rules say, until `expires` has passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedAllow {
    pub pin: Pin,
    pub reason: String,
    /// `allow[i]`.
    pub entry: usize,
    pub line: usize,
    /// The last day the entry applies (inclusive, UTC).
    pub expires: Option<Date>,
}

impl PinnedAllow {
    /// Whether the entry still applies on `today`.
    pub fn active_on(&self, today: Date) -> bool {
        self.expires.is_none_or(|e| today <= e)
    }

    fn matches(&self, c: &ContentIds<'_>) -> bool {
        match &self.pin {
            Pin::Sha256(h) => c.sha256 == Some(h.as_str()),
            Pin::Blob(h) => c.blob == Some(h.as_str()) || c.blob256 == Some(h.as_str()),
        }
    }
}

/// An `[[allow]]` entry naming imports whose `expires` date has passed: it was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredEntry {
    /// `allow[i]`.
    pub entry: usize,
    pub line: usize,
    pub name: String,
    pub expires: Date,
}

/// A calendar date, as TOML writes one (`2027-01-31`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: i32,
    pub month: u8,
    pub day: u8,
}

impl Date {
    /// A valid date, or `None`.
    pub fn new(year: i32, month: u8, day: u8) -> Option<Date> {
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        (1..=days).contains(&day).then_some(Date { year, month, day })
    }

    /// `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Option<Date> {
        let b = text.as_bytes();
        let digits = |r: std::ops::Range<usize>| b.get(r).filter(|d| d.iter().all(u8::is_ascii_digit)).is_some();
        if b.len() != 10 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !digits(0..4) {
            return None;
        }
        if !digits(5..7) || !digits(8..10) {
            return None;
        }
        let n = |r: std::ops::Range<usize>| text.get(r).and_then(|t| t.parse::<u16>().ok());
        Date::new(i32::from(n(0..4)?), u8::try_from(n(5..7)?).ok()?, u8::try_from(n(8..10)?).ok()?)
    }

    /// The date `days` days after 1970-01-01 (Howard Hinnant's `civil_from_days`).
    pub fn from_unix_days(days: i64) -> Date {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Date {
            year: i32::try_from(year).unwrap_or(i32::MAX),
            month: u8::try_from(month).unwrap_or(1),
            day: u8::try_from(day).unwrap_or(1),
        }
    }

    /// Today in UTC.
    pub fn today() -> Date {
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Date::from_unix_days(i64::try_from(secs / 86_400).unwrap_or(0))
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
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
    /// Which forge's environment variables the hooks may believe (pusher, repository name,
    /// `MODELGATE_POLICY`). Over ssh or `file://` a pusher can set variables, so by default
    /// none is believed.
    pub trust_env: TrustEnv,
}

/// Whose environment variables the gate believes. A pusher can set environment variables
/// over ssh (`SendEnv`, when sshd accepts them) and over `file://`; the forge's own variables
/// are set by the forge after it authenticated the pusher, so only then are they evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum TrustEnv {
    /// Believe no variable: the pusher is unknown, repositories are named by their path on
    /// disk, and `MODELGATE_POLICY` is ignored by the hooks.
    #[default]
    None,
    /// Gitea and Forgejo: `GITEA_PUSHER_NAME`, `GITEA_REPO_USER_NAME`/`GITEA_REPO_NAME`.
    Gitea,
    /// GitLab (Gitaly): `GL_USERNAME`, `GL_PROJECT_PATH`.
    Gitlab,
    /// A web server in front of `git http-backend`: `REMOTE_USER` (set once it authenticated).
    Http,
}

impl TrustEnv {
    pub const ALL: [TrustEnv; 4] = [TrustEnv::None, TrustEnv::Gitea, TrustEnv::Gitlab, TrustEnv::Http];

    pub fn as_str(self) -> &'static str {
        match self {
            TrustEnv::None => "none",
            TrustEnv::Gitea => "gitea",
            TrustEnv::Gitlab => "gitlab",
            TrustEnv::Http => "http",
        }
    }

    /// `none`, `gitea` (or `forgejo`), `gitlab`, `http`.
    pub fn parse(s: &str) -> Option<TrustEnv> {
        if s == "forgejo" {
            return Some(TrustEnv::Gitea);
        }
        TrustEnv::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The variable that names the pusher.
    pub fn pusher_var(self) -> Option<&'static str> {
        match self {
            TrustEnv::None => None,
            TrustEnv::Gitea => Some("GITEA_PUSHER_NAME"),
            TrustEnv::Gitlab => Some("GL_USERNAME"),
            TrustEnv::Http => Some("REMOTE_USER"),
        }
    }

    /// The variables that name the repository (joined with `/`).
    pub fn repo_vars(self) -> &'static [&'static str] {
        match self {
            TrustEnv::Gitea => &["GITEA_REPO_USER_NAME", "GITEA_REPO_NAME"],
            TrustEnv::Gitlab => &["GL_PROJECT_PATH"],
            TrustEnv::None | TrustEnv::Http => &[],
        }
    }

    /// Every variable believed in this environment (`MODELGATE_POLICY` included).
    pub fn trusted_vars(self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = self.pusher_var().into_iter().collect();
        v.extend_from_slice(self.repo_vars());
        if self != TrustEnv::None {
            v.push("MODELGATE_POLICY");
        }
        v
    }
}

impl fmt::Display for TrustEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
            trust_env: TrustEnv::None,
        }
    }
}

/// Who may skip the gate with `git push -o modelgate.skip=<reason>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bypass {
    /// Pusher names allowed to bypass; empty: nobody.
    pub pushers: Vec<String>,
    /// Environment variable naming the pusher; when set, the only one believed for the
    /// pusher (an explicit statement of trust). Otherwise the trusted environment's
    /// ([`TrustEnv::pusher_var`]); with none, the pusher is unknown.
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
    /// `[[allow]]` entries pinned to content (`sha256`, `blob`), in file order.
    pub pinned: Vec<PinnedAllow>,
    /// `[[allow]]` entries naming imports whose expiry date had passed when the policy was
    /// loaded: not applied.
    pub expired: Vec<ExpiredEntry>,
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
        load::parse(text, origin)
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
        self.decide_content(report, path, ContentIds::default())
    }

    /// [`Policy::decide`] knowing the file's content ids (for pinned `[[allow]]` entries).
    pub fn decide_content(&self, report: &FileReport, path: &str, content: ContentIds<'_>) -> Decision {
        let facts: Vec<(&str, Severity)> = report.findings.iter().map(|f| (f.code, f.severity)).collect();
        let subject = Subject { content, ..Subject::file(path, report) };
        self.decide_facts(&subject, report.verdict, &facts)
    }

    /// Which content ids a decision may need: `(sha256, sha1 blob ids, sha256 blob ids)`,
    /// so that callers compute only those (hashing a big file is not free).
    pub fn pins_needed(&self) -> (bool, bool, bool) {
        let today = Date::today();
        let active = || self.pinned.iter().filter(|p| p.active_on(today));
        (
            active().any(|p| matches!(p.pin, Pin::Sha256(_))),
            active().any(|p| matches!(&p.pin, Pin::Blob(h) if h.len() == 40)),
            active().any(|p| matches!(&p.pin, Pin::Blob(h) if h.len() == 64)),
        )
    }

    /// The active pinned `[[allow]]` entry matching this content, if any.
    pub fn pinned_allow(&self, content: &ContentIds<'_>) -> Option<MatchedAllow> {
        if self.pinned.is_empty() || (content.sha256.is_none() && content.blob.is_none() && content.blob256.is_none()) {
            return None;
        }
        let today = Date::today();
        self.pinned.iter().enumerate().find(|(_, p)| p.active_on(today) && p.matches(content)).map(|(index, p)| {
            MatchedAllow { index, entry: p.entry, line: p.line, reason: p.reason.clone(), pin: p.pin.clone() }
        })
    }

    /// The strictest action among `base` and the rules matching `subject` for `verdict`, and
    /// the first matching rule that sets that action (its reason is the one to show), if any.
    pub fn strictest(&self, subject: &Subject<'_>, verdict: Verdict, base: Action) -> (Action, Option<MatchedRule>) {
        let mut action = base;
        let mut rule = None;
        for (index, r) in self.rules.iter().enumerate() {
            let Some(a) = r.action(verdict).filter(|a| *a >= action) else { continue };
            if (a > action || rule.is_none()) && r.applies(subject) {
                action = a;
                rule = Some(MatchedRule { index, line: r.line, reason: r.reason.clone() });
            }
        }
        (action, rule)
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
        if let Some(allowed) = self.pinned_allow(&subject.content) {
            return Decision { action: Action::Allow, verdict, rule: None, suppressed, allowed: Some(allowed) };
        }
        let (action, rule) = self.strictest(subject, verdict, self.actions.get(verdict));
        Decision { action, verdict, rule, suppressed, allowed: None }
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

pub mod check;
mod content;
mod load;
pub use content::FileIds;
pub use load::{close_codes, parse_duration};

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
}
