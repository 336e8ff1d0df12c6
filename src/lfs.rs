//! Git LFS: strict pointer parsing (spec v1) and resolution of a pointer to the object
//! in a configured store, so that the model behind a pointer is what gets scanned.
//!
//! The oid is validated before any path is built from it: a pointer is attacker-written
//! text (`oid sha256:../../etc/passwd`).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use crate::finding::{CodeInfo, Finding, Severity};
use crate::source::{FileSource, Source};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// git-lfs reads at most this many bytes of a blob to decide whether it is a pointer
/// (`lfs.BlobSizeCutoff`). The smudge filter reads them from any blob, however large, and
/// ignores the rest when they decode as a pointer.
pub const MAX_POINTER_SIZE: u64 = 1024;

/// The spec URLs git-lfs accepts in the `version` line (`lfs/pointer.go` `v1Aliases`).
const VERSION_ALIASES: &[&str] =
    &["http://git-media.io/v/2", "https://hawser.github.com/spec/v1", "https://git-lfs.github.com/spec/v1"];

pub const CODES: &[CodeInfo] = &[
    CodeInfo {
        code: "lfs-pointer-extension",
        severity: Severity::Error,
        summary: "a git lfs pointer names extensions: clients run programs the server does not know on the object",
        fix: "push the file without git lfs extensions, or ask an admin whether on_error may let it through",
    },
    CodeInfo {
        code: "lfs-object-missing",
        severity: Severity::Error,
        summary: "the git lfs object a pointer names is not in the server's lfs store",
        fix: "upload the objects with `git lfs push --all <remote>`, then push again",
    },
    CodeInfo {
        code: "lfs-object-mismatch",
        severity: Severity::Error,
        summary: "the stored git lfs object does not match the size or sha256 in its pointer",
        fix: "upload the objects again with `git lfs push --all <remote>`; ask an admin to check the lfs store",
    },
    CodeInfo {
        code: "lfs-store-unavailable",
        severity: Severity::Error,
        summary: "the git lfs store could not be read",
        fix: "ask an admin to check the lfs store configuration and permissions",
    },
];

/// A Git LFS pointer as git-lfs decodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    /// 64 lowercase hex characters (the sha256 of the object).
    pub oid: String,
    pub size: u64,
    /// `ext-<priority>-<name>` lines, by priority: the client pipes the object through
    /// these programs (configured on the client) when it checks the file out.
    pub extensions: Vec<Extension>,
}

/// A pointer extension line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub priority: u8,
    pub name: String,
    pub oid: String,
}

/// Whether git-lfs's smudge filter takes these bytes for a pointer, and which: exactly
/// `lfs.DecodeFrom` (git-lfs 3.3 and current, `lfs/pointer.go`) on `head`, the first
/// [`MAX_POINTER_SIZE`] bytes of the blob (or all of a shorter one). `DecodeFrom` reads once
/// into a 1024-byte buffer, trims Unicode white space around it (`bytes.TrimSpace`), and
/// then `decodeKV` accepts it. An empty blob is git-lfs's empty pointer, which smudges to
/// nothing: `None`, there is no object to look up.
pub fn decode_pointer(head: &[u8]) -> Option<Pointer> {
    let head = head.get(..head.len().min(MAX_POINTER_SIZE as usize)).unwrap_or(head);
    let data = go_trim_space(head);
    if data.is_empty() {
        return None;
    }
    decode_kv(data)
}

/// `lfs.decodeKV` / `decodeKVData`.
fn decode_kv(data: &[u8]) -> Option<Pointer> {
    // matcherRE: `git-media|hawser|git-lfs` anywhere.
    // Built once: building a searcher for each blob of a history was a visible cost.
    static NEEDLES: std::sync::LazyLock<[memchr::memmem::Finder<'static>; 3]> =
        std::sync::LazyLock::new(|| [b"git-media".as_slice(), b"hawser", b"git-lfs"].map(memchr::memmem::Finder::new));
    if !NEEDLES.iter().any(|f| f.find(data).is_some()) {
        return None;
    }
    const KEYS: [&[u8]; 3] = [b"version", b"oid", b"size"];
    let mut values: [Option<&[u8]>; 3] = [None; 3];
    // A map in git-lfs: a repeated key keeps its last value.
    let mut exts: Vec<(&[u8], &[u8])> = Vec::new();
    let mut line = 0usize;
    // bufio.ScanLines: split at LF, drop one CR before it, the last line needs no LF.
    let mut rest = data;
    while !rest.is_empty() {
        let (mut text, after) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (rest.get(..i)?, rest.get(i + 1..)?),
            None => (rest, &[][..]),
        };
        rest = after;
        if let Some(t) = text.strip_suffix(b"\r") {
            text = t;
        }
        if text.is_empty() {
            continue;
        }
        let sp = text.iter().position(|&b| b == b' ')?;
        let (key, value) = (text.get(..sp)?, text.get(sp + 1..)?);
        let expected = KEYS.get(line)?; // "extra line"
        if key != *expected {
            if !is_ext_key(key) {
                return None;
            }
            match exts.iter_mut().find(|(k, _)| *k == key) {
                Some(e) => e.1 = value,
                None => exts.push((key, value)),
            }
            continue;
        }
        *values.get_mut(line)? = Some(value);
        line += 1;
    }
    let [version, oid, size] = values;
    if !VERSION_ALIASES.iter().any(|v| Some(v.as_bytes()) == version) {
        return None;
    }
    let oid = parse_oid(oid?)?;
    let size = go_parse_int(size.unwrap_or_default())?;
    let size = u64::try_from(size).ok()?;
    let mut extensions = Vec::new();
    for (key, value) in exts {
        // parsePointerExtension: `ext-<digit>-<name>` (is_ext_key checked the shape).
        let priority = key.get(4).map(|d| d - b'0')?;
        let name = String::from_utf8_lossy(key.get(6..)?).into_owned();
        let oid = parse_oid(value)?;
        if extensions.iter().any(|e: &Extension| e.priority == priority) {
            return None; // validatePointerExtensions: duplicate priority
        }
        extensions.push(Extension { priority, name, oid });
    }
    extensions.sort_by_key(|e| e.priority);
    Some(Pointer { oid, size, extensions })
}

/// extRE: `\Aext-\d{1}-\w+` (ASCII digit, then at least one ASCII word character; the rest
/// of the key is not looked at).
fn is_ext_key(key: &[u8]) -> bool {
    key.starts_with(b"ext-")
        && key.get(4).is_some_and(u8::is_ascii_digit)
        && key.get(5) == Some(&b'-')
        && key.get(6).is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_')
}

/// parseOid: `sha256:` then exactly 64 lowercase hex characters.
fn parse_oid(value: &[u8]) -> Option<String> {
    let hex = value.strip_prefix(b"sha256:")?;
    let hex = std::str::from_utf8(hex).ok()?;
    is_oid(hex).then(|| hex.to_string())
}

/// Go's `strconv.ParseInt(s, 10, 64)`: an optional sign, then one or more ASCII digits
/// (leading zeros allowed, no underscores in base 10), within `i64`.
fn go_parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first() {
        Some(b'+') => (false, s.get(1..)?),
        Some(b'-') => (true, s.get(1..)?),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: i128 = 0;
    for &d in digits {
        v = v * 10 + i128::from(d - b'0');
        if v > i128::from(i64::MAX) + 1 {
            return None;
        }
    }
    let v = if neg { -v } else { v };
    i64::try_from(v).ok()
}

/// Go's `bytes.TrimSpace`: strip leading and trailing `unicode.IsSpace` runes; bytes that
/// are not valid UTF-8 are never space.
fn go_trim_space(mut s: &[u8]) -> &[u8] {
    while let Some((c, n)) = first_rune(s) {
        if !go_is_space(c) {
            break;
        }
        s = s.get(n..).unwrap_or_default();
    }
    while let Some((c, n)) = last_rune(s) {
        if !go_is_space(c) {
            break;
        }
        s = s.get(..s.len() - n).unwrap_or_default();
    }
    s
}

/// `unicode.IsSpace`.
fn go_is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{0b}' | '\u{0c}' | '\r' | ' ' | '\u{85}' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}'
    )
}

/// The first UTF-8 character and its length, `None` if `s` is empty or starts with an
/// invalid sequence (Go decodes that as RuneError, which is not space).
fn first_rune(s: &[u8]) -> Option<(char, usize)> {
    let n = match *s.first()? {
        b if b < 0x80 => 1,
        b if b & 0xe0 == 0xc0 => 2,
        b if b & 0xf0 == 0xe0 => 3,
        b if b & 0xf8 == 0xf0 => 4,
        _ => return None,
    };
    let c = std::str::from_utf8(s.get(..n)?).ok()?.chars().next()?;
    Some((c, n))
}

/// The last UTF-8 character and its length (Go's `utf8.DecodeLastRune`).
fn last_rune(s: &[u8]) -> Option<(char, usize)> {
    for n in 1..=4.min(s.len()) {
        let tail = s.get(s.len() - n..)?;
        if let Ok(t) = std::str::from_utf8(tail) {
            let c = t.chars().next()?;
            return (c.len_utf8() == n).then_some((c, n));
        }
        // A continuation byte: look one further back.
        if tail.first().is_none_or(|b| b & 0xc0 != 0x80) {
            return None;
        }
    }
    None
}

/// True for exactly 64 lowercase hex characters, the only oid a store path is built from.
pub fn is_oid(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// How a store lays objects out under its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// `<root>/<oid[0:2]>/<oid[2:4]>/<oid>`: the git-lfs client's store and a `file://` bare repository.
    #[default]
    GitLfs,
    /// `<root>/<oid[0:2]>/<oid[2:4]>/<oid[4:]>` (Gitea, Forgejo).
    Gitea,
    /// Same layout as Gitea (GitLab, lfs-test-server).
    Gitlab,
    /// A path template (`{oid}`, `{oid0:2}`, `{oid2:4}`, `{oid4:}`, ...; `{repo}`, `{owner}`,
    /// `{name}` for the repository).
    Template,
    /// An S3-compatible bucket: keys `<prefix><oid[0:2]>/<oid[2:4]>/<oid[4:]>` (the object
    /// storage of Gitea and GitLab), or `<prefix><template>` (see [`crate::store::s3`]).
    S3,
}

/// The repository a template store is looked up for: `owner/name` (a GitLab path may have
/// more components: `group/sub/project`). Every component is checked, so that a name
/// cannot lead out of the store (`..`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreRepo(String);

impl StoreRepo {
    /// `None` unless every `/`-separated component is a plain name.
    pub fn new(full: &str) -> Option<StoreRepo> {
        let ok = |c: &str| !c.is_empty() && c != "." && c != ".." && !c.chars().any(|ch| ch.is_control() || ch == '\\');
        full.split('/').all(ok).then(|| StoreRepo(full.to_string()))
    }

    /// The whole name (`{repo}`).
    pub fn full(&self) -> &str {
        &self.0
    }

    /// Everything before the last component (`{owner}`); empty for a one-component name.
    pub fn owner(&self) -> &str {
        self.0.rsplit_once('/').map_or("", |(o, _)| o)
    }

    /// The last component (`{name}`).
    pub fn name(&self) -> &str {
        self.0.rsplit_once('/').map_or(self.0.as_str(), |(_, n)| n)
    }
}

/// Where the server keeps LFS objects. Embedded in the policy as `[lfs]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LfsStore {
    pub layout: Layout,
    /// Store root; for `git-lfs` it defaults to the bare repository's `lfs/objects`.
    /// A relative root is taken relative to the repository's git directory.
    pub root: Option<PathBuf>,
    /// The path template when `layout = "template"`; relative templates are under `root`
    /// (or the git directory).
    pub template: Option<String>,
    /// Hash every resolved object and compare it with its oid (reads the whole object).
    pub verify_sha256: bool,
    /// The repository `{repo}`, `{owner}` and `{name}` of a template stand for (set by the
    /// hook from the trusted environment or the repository's path; not a policy key).
    #[serde(skip)]
    pub repo: Option<StoreRepo>,
    /// `layout = "s3"`: the bucket, the key prefix objects are under (Gitea: its
    /// `MINIO_BASE_PATH`, `lfs/`; GitLab: `""`), the endpoint of an S3-compatible server
    /// (default AWS), the region, path-style requests, and the credentials-file profile.
    /// Credentials never come from the policy (see [`crate::store::s3`]).
    pub bucket: Option<String>,
    pub prefix: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: Option<bool>,
    pub profile: Option<String>,
}

/// A configuration or resolution failure that is not about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

impl LfsStore {
    /// Check the configuration once (template syntax, required root).
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.layout == Layout::S3 {
            return crate::store::s3::validate(self);
        }
        crate::store::s3::no_s3_keys(self)?;
        match self.layout {
            Layout::Gitea | Layout::Gitlab if self.root.is_none() => {
                Err(StoreError("lfs layout gitea/gitlab needs a root".into()))
            }
            Layout::Template => {
                let t = self
                    .template
                    .as_deref()
                    .ok_or_else(|| StoreError("lfs layout template needs a template".into()))?;
                let probe = StoreRepo("owner/name".into());
                expand_template(t, &"0".repeat(64), Some(&probe)).map(|_| ())
            }
            _ if self.template.is_some() => {
                Err(StoreError("lfs template is only used with layout = \"template\"".into()))
            }
            _ => Ok(()),
        }
    }

    /// The path where the object `oid` must be. `oid` is validated first.
    pub fn object_path(&self, git_dir: &Path, oid: &str) -> Result<PathBuf, StoreError> {
        if !is_oid(oid) {
            return Err(StoreError(format!("invalid lfs oid {oid:?}")));
        }
        let base = match &self.root {
            Some(r) => git_dir.join(r),
            None => match self.layout {
                Layout::GitLfs => git_dir.join("lfs").join("objects"),
                Layout::Template => git_dir.to_path_buf(),
                Layout::Gitea | Layout::Gitlab => {
                    return Err(StoreError("lfs layout gitea/gitlab needs a root".into()))
                }
                Layout::S3 => return Err(StoreError("an s3 lfs store has keys, not paths".into())),
            },
        };
        let (a, b, tail) = (slice(oid, 0, 2)?, slice(oid, 2, 4)?, slice(oid, 4, 64)?);
        Ok(match self.layout {
            Layout::GitLfs => base.join(a).join(b).join(oid),
            Layout::Gitea | Layout::Gitlab => base.join(a).join(b).join(tail),
            Layout::S3 => return Err(StoreError("an s3 lfs store has keys, not paths".into())),
            Layout::Template => {
                let t = self
                    .template
                    .as_deref()
                    .ok_or_else(|| StoreError("lfs layout template needs a template".into()))?;
                base.join(expand_template(t, oid, self.repo.as_ref())?)
            }
        })
    }

    /// Whether object paths depend on the repository (a template with `{repo}`, `{owner}` or
    /// `{name}`).
    pub fn names_repo(&self) -> bool {
        matches!(self.layout, Layout::Template | Layout::S3)
            && self.template.as_deref().is_some_and(|t| ["{repo}", "{owner}", "{name}"].iter().any(|p| t.contains(p)))
    }

    /// The directory an admin configured for the store, which must exist whatever objects
    /// were uploaded: `root`, or the fixed part of an absolute template (up to its first
    /// placeholder). `None` when nothing was configured (the git-lfs layout's default
    /// `lfs/objects` appears with the first upload).
    pub fn configured_root(&self, git_dir: &Path) -> Option<PathBuf> {
        let template_dir = self.template.as_deref().filter(|_| self.layout == Layout::Template).map(|t| {
            let fixed = t.split('{').next().unwrap_or("");
            PathBuf::from(fixed.rsplit_once('/').map_or("", |(d, _)| d))
        });
        match (&self.root, template_dir) {
            (Some(r), Some(t)) => Some(git_dir.join(r).join(t)),
            (Some(r), None) => Some(git_dir.join(r)),
            (None, Some(t)) if t.is_absolute() => Some(t),
            _ => None,
        }
    }

    /// Why the store cannot be used at all, for the admin (paths included): its configured
    /// root is missing or is not a readable directory.
    pub fn misconfiguration(&self, git_dir: &Path) -> Option<String> {
        if self.layout == Layout::S3 {
            return crate::store::s3::problem(self);
        }
        let root = self.configured_root(git_dir)?;
        match std::fs::metadata(&root) {
            Ok(m) if m.is_dir() => match std::fs::read_dir(&root) {
                Ok(_) => None,
                Err(e) => Some(format!("the lfs store root {} cannot be read: {e}", root.display())),
            },
            Ok(_) => Some(format!("the lfs store root {} is not a directory", root.display())),
            Err(e) => Some(format!("the lfs store root {} cannot be used: {e}", root.display())),
        }
    }
}

fn slice(oid: &str, a: usize, b: usize) -> Result<&str, StoreError> {
    oid.get(a..b).ok_or_else(|| StoreError("oid too short".into()))
}

/// Expand `{oid}` and `{oidA:B}` / `{oidA:}` (character ranges of the oid), and `{repo}`,
/// `{owner}`, `{name}` (the repository). The oid placeholders together must cover every
/// character of the oid, so that two objects never share a path.
pub(crate) fn expand_template(template: &str, oid: &str, repo: Option<&StoreRepo>) -> Result<String, StoreError> {
    let mut out = String::new();
    let mut covered = [false; 64];
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let literal = rest.get(..open).unwrap_or_default();
        if literal.contains('}') {
            return Err(StoreError(format!("unmatched '}}' in lfs template {template:?}")));
        }
        out.push_str(literal);
        let after = rest.get(open + 1..).unwrap_or_default();
        let close = after.find('}').ok_or_else(|| StoreError(format!("unclosed '{{' in lfs template {template:?}")))?;
        let key = after.get(..close).unwrap_or_default();
        rest = after.get(close + 1..).unwrap_or_default();
        if matches!(key, "repo" | "owner" | "name") {
            let r = repo.ok_or_else(|| {
                StoreError(format!("the lfs template names the repository ({{{key}}}) but its name is unknown"))
            })?;
            out.push_str(match key {
                "repo" => r.full(),
                "owner" => r.owner(),
                _ => r.name(),
            });
            continue;
        }
        let (a, b) = placeholder(key).ok_or_else(|| {
            StoreError(format!(
                "unknown placeholder {{{key}}} in lfs template (use {{oid}}, {{oidA:B}}, {{repo}}, {{owner}} or {{name}})"
            ))
        })?;
        out.push_str(oid.get(a..b).ok_or_else(|| StoreError("oid too short".into()))?);
        covered.iter_mut().skip(a).take(b - a).for_each(|c| *c = true);
    }
    if rest.contains('}') {
        return Err(StoreError(format!("unmatched '}}' in lfs template {template:?}")));
    }
    out.push_str(rest);
    if !covered.iter().all(|&c| c) {
        return Err(StoreError("lfs template must use every character of the oid (e.g. {oid})".into()));
    }
    Ok(out)
}

/// A piece of an LFS path template: literal text or a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TemplateToken {
    Lit(String),
    /// Characters `a..b` of the oid.
    Oid(usize, usize),
    Repo,
    Owner,
    Name,
}

/// What a key or path matched against a template's tokens has bound so far: characters of
/// the oid and the repository placeholders. The S3 store's listing and the filesystem
/// watcher match with it.
#[derive(Debug, Clone, Default)]
pub(crate) struct TemplateBinding {
    oid: Vec<Option<u8>>,
    repo: Option<String>,
    owner: Option<String>,
    name: Option<String>,
}

impl TemplateBinding {
    pub fn new() -> TemplateBinding {
        TemplateBinding { oid: vec![None; 64], ..Default::default() }
    }

    /// `part` bound to oid characters from `at` on; `None` when it is not lowercase hex or
    /// disagrees with what is bound there.
    pub fn bind_oid(&self, at: usize, part: &str) -> Option<TemplateBinding> {
        let mut nb = self.clone();
        for (i, c) in part.bytes().enumerate() {
            if !(c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
                return None;
            }
            match nb.oid.get_mut(at + i)? {
                slot @ None => *slot = Some(c),
                Some(prev) if *prev == c => {}
                Some(_) => return None,
            }
        }
        Some(nb)
    }

    /// `value` bound to a repository placeholder (`{repo}`, `{owner}`, `{name}`); `None` when
    /// it disagrees with what is bound, or `token` is no such placeholder.
    pub fn bind_name(&self, token: &TemplateToken, value: &str) -> Option<TemplateBinding> {
        let mut nb = self.clone();
        let slot = match token {
            TemplateToken::Repo => &mut nb.repo,
            TemplateToken::Owner => &mut nb.owner,
            TemplateToken::Name => &mut nb.name,
            _ => return None,
        };
        match slot {
            Some(v) if v != value => return None,
            _ => *slot = Some(value.to_string()),
        }
        Some(nb)
    }

    /// The full oid and the repository it names (`{repo}`, else `{owner}/{name}`, else
    /// `{name}`), when the oid is complete and the repository name valid.
    pub fn resolved(&self) -> Option<(String, Option<StoreRepo>)> {
        let oid: String = self.oid.iter().map(|c| c.map(char::from)).collect::<Option<String>>()?;
        let repo = match (&self.repo, &self.owner, &self.name) {
            (Some(r), _, _) => Some(r.clone()),
            (None, Some(o), Some(n)) => Some(format!("{o}/{n}")),
            (None, None, Some(n)) => Some(n.clone()),
            _ => None,
        };
        let repo = match repo {
            Some(r) => Some(StoreRepo::new(&r)?),
            None => None,
        };
        is_oid(&oid).then_some((oid, repo))
    }
}

/// Split a template (or one path component of it) into literals and placeholders, as
/// [`expand_template`] reads them; the stores match keys and paths against the result.
pub(crate) fn template_tokens(t: &str) -> Result<Vec<TemplateToken>, String> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            out.push(TemplateToken::Lit(rest.get(..open).unwrap_or_default().to_string()));
        }
        let after = rest.get(open + 1..).unwrap_or_default();
        let close = after.find('}').ok_or("unclosed `{`")?;
        let key = after.get(..close).unwrap_or_default();
        out.push(match key {
            "repo" => TemplateToken::Repo,
            "owner" => TemplateToken::Owner,
            "name" => TemplateToken::Name,
            _ => {
                let (a, b) = placeholder(key).ok_or_else(|| format!("unknown placeholder {{{key}}}"))?;
                TemplateToken::Oid(a, b)
            }
        });
        rest = after.get(close + 1..).unwrap_or_default();
    }
    if !rest.is_empty() {
        out.push(TemplateToken::Lit(rest.to_string()));
    }
    Ok(out)
}

/// The character range a placeholder stands for.
fn placeholder(key: &str) -> Option<(usize, usize)> {
    let range = key.strip_prefix("oid")?;
    if range.is_empty() {
        return Some((0, 64));
    }
    let (a, b) = range.split_once(':')?;
    let a: usize = a.parse().ok()?;
    let b: usize = if b.is_empty() { 64 } else { b.parse().ok()? };
    (a < b && b <= 64).then_some((a, b))
}

/// The outcome of looking a valid pointer up in the store.
pub enum Resolved {
    /// The object, opened, with the size the pointer promised: where it is (a path, or
    /// `s3://bucket/key`) and its bytes.
    Found { path: PathBuf, source: Arc<dyn Source> },
    /// A finding that decides the file instead (`lfs-object-missing`, `lfs-object-mismatch`,
    /// `lfs-store-unavailable`).
    Problem(Finding),
}

/// Find the object behind `pointer` and check it against the pointer.
pub fn resolve(store: &LfsStore, git_dir: &Path, pointer: &Pointer) -> Resolved {
    if store.layout == Layout::S3 {
        return match crate::store::s3::open_object(store, &pointer.oid) {
            Ok(Some((place, source))) => check_object(store, pointer, PathBuf::from(place), source),
            Ok(None) => Resolved::Problem(missing(pointer)),
            // Not "never uploaded": the bucket cannot be read (unreachable, credentials).
            Err(_) => Resolved::Problem(store_misconfigured(&pointer.oid)),
        };
    }
    let path = match store.object_path(git_dir, &pointer.oid) {
        Ok(p) => p,
        Err(e) => return Resolved::Problem(Finding::new("lfs-store-unavailable", Severity::Error, e.0)),
    };
    let source = match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => match FileSource::open(&path) {
            Ok(s) => Arc::new(s) as Arc<dyn Source>,
            Err(e) => return Resolved::Problem(unavailable(&pointer.oid, &e)),
        },
        Ok(_) => return Resolved::Problem(missing(pointer)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Not "never uploaded" when the store itself is not there: the server is wrong.
            if store.misconfiguration(git_dir).is_some() {
                return Resolved::Problem(store_misconfigured(&pointer.oid));
            }
            return Resolved::Problem(missing(pointer));
        }
        Err(e) => return Resolved::Problem(unavailable(&pointer.oid, &e)),
    };
    check_object(store, pointer, path, source)
}

/// The object's size against the pointer's, and with `verify_sha256` its content against the oid.
fn check_object(store: &LfsStore, pointer: &Pointer, path: PathBuf, source: Arc<dyn Source>) -> Resolved {
    if source.len() != pointer.size {
        return Resolved::Problem(
            Finding::new(
                "lfs-object-mismatch",
                Severity::Error,
                format!("lfs object has {} bytes, its pointer says {}", source.len(), pointer.size),
            )
            .evidence(format!("sha256:{}", pointer.oid)),
        );
    }
    if store.verify_sha256 {
        match sha256_of(source.as_ref()) {
            Ok(h) if h == pointer.oid => {}
            Ok(h) => {
                return Resolved::Problem(
                    Finding::new("lfs-object-mismatch", Severity::Error, "lfs object content does not hash to its oid")
                        .evidence(format!("sha256:{} (content hashes to sha256:{h})", pointer.oid)),
                )
            }
            Err(e) => return Resolved::Problem(unavailable(&pointer.oid, &e)),
        }
    }
    Resolved::Found { path, source }
}

fn missing(p: &Pointer) -> Finding {
    Finding::new(
        "lfs-object-missing",
        Severity::Error,
        format!(
            "the lfs object ({} bytes) was never uploaded; run `git lfs push --all <remote>` and push again",
            p.size
        ),
    )
    .evidence(format!("sha256:{}", p.oid))
}

/// The finding for a pointer whose store is misconfigured: what the pusher reads, with no
/// server path (the admin learns the details from [`LfsStore::misconfiguration`]).
pub fn store_misconfigured(oid: &str) -> Finding {
    Finding::new(
        "lfs-store-unavailable",
        Severity::Error,
        "server misconfiguration: the git lfs store is not set up on this server, so the object cannot be \
         checked (this is not about your upload); an admin has been told",
    )
    .evidence(format!("sha256:{oid}"))
}

fn unavailable(oid: &str, e: &std::io::Error) -> Finding {
    Finding::new("lfs-store-unavailable", Severity::Error, format!("cannot read lfs object: {e}"))
        .evidence(format!("sha256:{oid}"))
}

/// Finding for a pointer with extensions: the client runs its own programs on the object.
pub fn extension_finding(p: &Pointer) -> Finding {
    let names: Vec<String> = p.extensions.iter().map(|e| format!("ext-{}-{}", e.priority, e.name)).collect();
    Finding::new(
        "lfs-pointer-extension",
        Severity::Error,
        "the pointer names git lfs extensions: a client with them configured checks out what its own programs make of the object, which cannot be judged here",
    )
    .evidence(names.join(", "))
}

/// sha256 of a whole source, streamed in 1 MiB reads.
pub fn sha256_of(src: &dyn Source) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    loop {
        let n = src.read_at(off, &mut buf)?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
        off += n as u64;
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OID: &str = "4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393";

    fn ptr(oid: &str, size: &str) -> Vec<u8> {
        format!("version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n").into_bytes()
    }

    fn p(oid: &str, size: u64) -> Option<Pointer> {
        Some(Pointer { oid: oid.into(), size, extensions: Vec::new() })
    }

    #[test]
    fn pointers_as_git_lfs_decodes_them() {
        let canonical = ptr(OID, "12345");
        assert_eq!(decode_pointer(&canonical), p(OID, 12345));
        assert_eq!(decode_pointer(&ptr(OID, "0")), p(OID, 0));
        let s = String::from_utf8(canonical.clone()).unwrap();
        // What bytes.TrimSpace, bufio.ScanLines and strconv.ParseInt let through.
        let accepted = [
            format!("  \t\n{s}\n\n  "),
            format!("\u{a0}\u{2003}{s}\u{3000}"),
            s.replace('\n', "\r\n"),
            s.replace('\n', "\n\n\n"),
            s.trim_end().to_string(),
            s.replace("12345", "+12345"),
            s.replace("12345", "0012345"),
            s.replace("https://git-lfs.github.com/spec/v1", "https://hawser.github.com/spec/v1"),
            s.replace("https://git-lfs.github.com/spec/v1", "http://git-media.io/v/2"),
        ];
        for a in &accepted {
            assert_eq!(decode_pointer(a.as_bytes()), p(OID, 12345), "{a:?}");
        }
        assert_eq!(decode_pointer(s.replace("12345", "-0").as_bytes()), p(OID, 0));
        // The smudge filter reads 1024 bytes whatever the blob's size: what follows is ignored.
        let mut big = canonical.clone();
        big.resize(1024, b' ');
        big.extend_from_slice(b"\x80\x04anything at all");
        assert_eq!(decode_pointer(&big), p(OID, 12345));
        // Extensions, anywhere before the size line, sorted by priority.
        let ext = format!(
            "version https://git-lfs.github.com/spec/v1\next-1-b sha256:{OID}\next-0-a sha256:{OID}\noid sha256:{OID}\nsize 3\n"
        );
        let d = decode_pointer(ext.as_bytes()).unwrap();
        assert_eq!(d.extensions.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn what_git_lfs_does_not_take_for_a_pointer() {
        let s = String::from_utf8(ptr(OID, "1")).unwrap();
        let rejected: Vec<String> = vec![
            String::new(),
            "hello".into(),
            ptr("../../etc/passwd", "1").iter().map(|&b| b as char).collect(),
            s.replace(OID, &OID.to_uppercase()),
            s.replace(OID, &OID[..63]),
            s.replace("size 1", "size -1"),
            s.replace("size 1", "size 1e3"),
            s.replace("size 1", "size 99999999999999999999"),
            s.replace("size 1", "size 1_0"),
            s.replace("size 1", "size "),
            s.replace(&format!("{OID}\n"), &format!("{OID} \n")),
            format!("{s}junk\n"),
            format!("{s}zzz x\n"),
            format!("{s}ext-0-a sha256:{OID}\n"),
            format!("version https://git-lfs.github.com/spec/v1\nsize 1\noid sha256:{OID}\n"),
            format!("version https://git-lfs.github.com/spec/v1\noid sha256:{OID}\n"),
            s.replace("spec/v1", "spec/v2"),
            s.replace("spec/v1", "spec/v1 "),
            s.replace("sha256:", "md5:"),
            s.replace("\noid", "\n oid"),
            s.replace('\n', "\r\r\n"),
            format!("version https://git-lfs.github.com/spec/v1\next-0-a sha256:{OID}\next-0-b sha256:{OID}\noid sha256:{OID}\nsize 1\n"),
            format!("version https://git-lfs.github.com/spec/v1\next-10-a sha256:{OID}\noid sha256:{OID}\nsize 1\n"),
            s.replace("git-lfs.github.com", "example.com"),
        ];
        for r in &rejected {
            assert_eq!(decode_pointer(r.as_bytes()), None, "{r:?}");
        }
        // Trailing white space of the whole text goes, even on the size line.
        assert_eq!(decode_pointer(format!("{s} \t").replace("size 1\n", "size 1 \n").as_bytes()), p(OID, 1));
        // Past the first 1024 bytes nothing counts, a pointer there included.
        let mut late = vec![b' '; 1024];
        late.extend_from_slice(s.as_bytes());
        assert_eq!(decode_pointer(&late), None);
        // Invalid UTF-8 is never white space.
        assert_eq!(decode_pointer(&[b"\xa0".as_slice(), s.as_bytes()].concat()), None);
    }

    #[test]
    fn go_helpers() {
        assert_eq!(go_parse_int(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(go_parse_int(b"9223372036854775808"), None);
        assert_eq!(go_parse_int(b"+"), None);
        assert_eq!(go_trim_space("\u{85} x \u{2029}".as_bytes()), b"x");
        assert_eq!(go_trim_space(b"\xe2\x80"), b"\xe2\x80");
    }

    #[test]
    fn layouts() {
        let g = Path::new("/srv/repo.git");
        let s = LfsStore::default();
        assert_eq!(s.object_path(g, OID).unwrap(), PathBuf::from(format!("/srv/repo.git/lfs/objects/4d/7a/{OID}")));
        let s = LfsStore { layout: Layout::Gitea, root: Some("/data/lfs".into()), ..Default::default() };
        assert_eq!(s.object_path(g, OID).unwrap(), PathBuf::from(format!("/data/lfs/4d/7a/{}", &OID[4..])));
        let s = LfsStore {
            layout: Layout::Template,
            root: Some("/x".into()),
            template: Some("objs/{oid0:2}/{oid2:4}/{oid4:}.bin".into()),
            ..Default::default()
        };
        s.validate().unwrap();
        assert_eq!(s.object_path(g, OID).unwrap(), PathBuf::from(format!("/x/objs/4d/7a/{}.bin", &OID[4..])));
        assert!(s.object_path(g, "../../etc/passwd").is_err());
        for t in ["{oid", "{name}", "{oid0:2}", "x}{oid}", "{oid3:2}", "{oid0:2}/{oid3:}", "{oid0:65}", "/fixed"] {
            let s = LfsStore { layout: Layout::Template, template: Some(t.into()), ..Default::default() };
            assert!(s.validate().is_err(), "{t}");
        }
        assert!(LfsStore { layout: Layout::Gitea, ..Default::default() }.validate().is_err());
    }

    #[test]
    fn config_rejects_unknown_fields() {
        let ok: LfsStore = toml::from_str("layout = \"gitlab\"\nroot = \"/lfs\"\nverify_sha256 = true").unwrap();
        assert_eq!(ok.layout, Layout::Gitlab);
        assert!(ok.verify_sha256);
        assert!(toml::from_str::<LfsStore>("layout = \"gitea\"\nroots = \"/lfs\"").is_err());
        assert!(toml::from_str::<LfsStore>("layout = \"s4\"").is_err());
        let s3: LfsStore = toml::from_str("layout = \"s3\"\nbucket = \"b\"\nprefix = \"lfs/\"").unwrap();
        assert_eq!((s3.layout, s3.bucket.as_deref()), (Layout::S3, Some("b")));
    }

    #[test]
    fn resolve_checks_size_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let content = b"hello lfs";
        let oid = sha256_of(&crate::source::BytesSource(content.to_vec())).unwrap();
        let store = LfsStore { root: Some(dir.path().into()), verify_sha256: true, ..Default::default() };
        let p = Pointer { oid: oid.clone(), size: content.len() as u64, extensions: Vec::new() };
        let Resolved::Problem(f) = resolve(&store, dir.path(), &p) else { panic!() };
        assert_eq!(f.code, "lfs-object-missing");
        assert!(f.message.contains("git lfs push --all"));
        let path = store.object_path(dir.path(), &oid).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        assert!(matches!(resolve(&store, dir.path(), &p), Resolved::Found { .. }));
        let wrong = Pointer { oid: oid.clone(), size: 3, extensions: Vec::new() };
        let Resolved::Problem(f) = resolve(&store, dir.path(), &wrong) else { panic!() };
        assert_eq!(f.code, "lfs-object-mismatch");
        std::fs::write(&path, b"hello LFS").unwrap();
        let Resolved::Problem(f) = resolve(&store, dir.path(), &p) else { panic!() };
        assert_eq!(f.code, "lfs-object-mismatch");
    }
}
