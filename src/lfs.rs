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

/// Blobs of this size or more are never pointers (git-lfs looks only at smaller ones).
pub const MAX_POINTER_SIZE: u64 = 1024;

const VERSION_LINE: &[u8] = b"version https://git-lfs.github.com/spec/v1\n";

pub const CODES: &[CodeInfo] = &[
    CodeInfo {
        code: "lfs-pointer-invalid",
        severity: Severity::Dangerous,
        summary: "a blob starts like a git lfs pointer but is not a valid spec v1 pointer",
        fix: "re-add the file with `git lfs track` and `git add` so that git-lfs writes a proper pointer",
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

/// A valid Git LFS pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    /// 64 lowercase hex characters (the sha256 of the object).
    pub oid: String,
    pub size: u64,
}

/// What a small blob turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PointerCheck {
    /// Not pointer-shaped: an ordinary blob.
    NotPointer,
    Valid(Pointer),
    /// Starts like a pointer but breaks the spec; the reason is plain text.
    Invalid(String),
}

/// Classify a blob: ordinary, valid pointer, or something that pretends to be one.
pub fn check_pointer(blob: &[u8]) -> PointerCheck {
    if blob.len() as u64 >= MAX_POINTER_SIZE || !looks_like_pointer(blob) {
        return PointerCheck::NotPointer;
    }
    match parse_pointer(blob) {
        Ok(p) => PointerCheck::Valid(p),
        Err(reason) => PointerCheck::Invalid(reason),
    }
}

/// git-lfs (and the pre-release "hawser" spec) pointers start with `version https://`
/// and name a spec URL; anything that does is judged strictly.
fn looks_like_pointer(blob: &[u8]) -> bool {
    blob.starts_with(b"version https://git-lfs.github.com/spec/")
        || blob.starts_with(b"version https://hawser.github.com/spec/")
}

fn parse_pointer(blob: &[u8]) -> Result<Pointer, String> {
    let text = std::str::from_utf8(blob).map_err(|_| "the pointer is not utf-8 text".to_string())?;
    let rest = text
        .strip_prefix(std::str::from_utf8(VERSION_LINE).unwrap_or_default())
        .ok_or_else(|| "unknown pointer version (expected spec v1)".to_string())?;
    if !rest.ends_with('\n') {
        return Err("the last line does not end in a line feed".into());
    }
    if rest.contains('\r') {
        return Err("lines must end in a bare line feed".into());
    }
    let mut oid = None;
    let mut size = None;
    let mut last_key = "";
    for line in rest.lines() {
        let (key, value) = line.split_once(' ').ok_or_else(|| format!("line without a value: {line:?}"))?;
        if key <= last_key {
            return Err(format!("keys are not sorted or are repeated at {key:?}"));
        }
        last_key = key;
        match key {
            "oid" => oid = Some(parse_oid(value)?),
            "size" => size = Some(parse_size(value)?),
            k if k.starts_with("ext-") => return Err("pointer extensions are not supported".into()),
            _ => return Err(format!("unknown key {key:?}")),
        }
    }
    match (oid, size) {
        (Some(oid), Some(size)) => Ok(Pointer { oid, size }),
        (None, _) => Err("the pointer has no oid".into()),
        (_, None) => Err("the pointer has no size".into()),
    }
}

fn parse_oid(value: &str) -> Result<String, String> {
    let hex = value.strip_prefix("sha256:").ok_or_else(|| format!("oid {value:?} is not a sha256 oid"))?;
    if !is_oid(hex) {
        return Err(format!("oid {value:?} is not 64 lowercase hex characters"));
    }
    Ok(hex.to_string())
}

/// True for exactly 64 lowercase hex characters, the only oid a store path is built from.
pub fn is_oid(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn parse_size(value: &str) -> Result<u64, String> {
    let ok =
        !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) && (value == "0" || !value.starts_with('0'));
    if !ok {
        return Err(format!("size {value:?} is not a decimal number"));
    }
    value.parse::<u64>().map_err(|_| format!("size {value:?} is out of range"))
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
            },
        };
        let (a, b, tail) = (slice(oid, 0, 2)?, slice(oid, 2, 4)?, slice(oid, 4, 64)?);
        Ok(match self.layout {
            Layout::GitLfs => base.join(a).join(b).join(oid),
            Layout::Gitea | Layout::Gitlab => base.join(a).join(b).join(tail),
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
        self.layout == Layout::Template
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
fn expand_template(template: &str, oid: &str, repo: Option<&StoreRepo>) -> Result<String, StoreError> {
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
    /// The object, opened, with the size the pointer promised.
    Found { path: PathBuf, source: FileSource },
    /// A finding that decides the file instead (`lfs-object-missing`, `lfs-object-mismatch`,
    /// `lfs-store-unavailable`).
    Problem(Finding),
}

/// Find the object behind `pointer` and check it against the pointer.
pub fn resolve(store: &LfsStore, git_dir: &Path, pointer: &Pointer) -> Resolved {
    let path = match store.object_path(git_dir, &pointer.oid) {
        Ok(p) => p,
        Err(e) => return Resolved::Problem(Finding::new("lfs-store-unavailable", Severity::Error, e.0)),
    };
    let source = match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => match FileSource::open(&path) {
            Ok(s) => s,
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
        match sha256_of(&source) {
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

/// Finding for a blob that pretends to be a pointer.
pub fn invalid_pointer(reason: &str) -> Finding {
    Finding::new("lfs-pointer-invalid", Severity::Dangerous, format!("invalid git lfs pointer: {reason}"))
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

    #[test]
    fn valid_pointer() {
        assert_eq!(check_pointer(&ptr(OID, "12345")), PointerCheck::Valid(Pointer { oid: OID.into(), size: 12345 }));
        assert_eq!(check_pointer(&ptr(OID, "0")), PointerCheck::Valid(Pointer { oid: OID.into(), size: 0 }));
    }

    #[test]
    fn not_pointers() {
        assert_eq!(check_pointer(b"hello"), PointerCheck::NotPointer);
        assert_eq!(check_pointer(b""), PointerCheck::NotPointer);
        let mut big = ptr(OID, "1");
        big.resize(1024, b'x');
        assert_eq!(check_pointer(&big), PointerCheck::NotPointer);
    }

    #[test]
    fn invalid_pointers() {
        let bad: Vec<Vec<u8>> = vec![
            ptr("../../etc/passwd", "1"),
            ptr(&OID.to_uppercase(), "1"),
            ptr(&OID[..63], "1"),
            ptr(OID, "-1"),
            ptr(OID, "01"),
            ptr(OID, "1e3"),
            ptr(OID, "99999999999999999999999"),
            ptr(OID, ""),
            [ptr(OID, "1"), b"junk\n".to_vec()].concat(),
            [ptr(OID, "1"), b"zzz x\n".to_vec()].concat(),
            ptr(OID, "1").split_last().unwrap().1.to_vec(),
            String::from_utf8(ptr(OID, "1")).unwrap().replace('\n', "\r\n").into_bytes(),
            format!("version https://git-lfs.github.com/spec/v1\nsize 1\noid sha256:{OID}\n").into_bytes(),
            format!("version https://git-lfs.github.com/spec/v1\noid sha256:{OID}\n").into_bytes(),
            format!("version https://git-lfs.github.com/spec/v2\noid sha256:{OID}\nsize 1\n").into_bytes(),
            format!("version https://git-lfs.github.com/spec/v1\noid sha256:{OID}\noid sha256:{OID}\nsize 1\n")
                .into_bytes(),
            format!("version https://git-lfs.github.com/spec/v1\noid md5:{}\nsize 1\n", &OID[..32]).into_bytes(),
            format!("version https://git-lfs.github.com/spec/v1\next-0-foo sha256:{OID}\noid sha256:{OID}\nsize 1\n")
                .into_bytes(),
            b"version https://git-lfs.github.com/spec/v1\xff\n".to_vec(),
        ];
        for b in bad {
            assert!(
                matches!(check_pointer(&b), PointerCheck::Invalid(_)),
                "{:?} -> {:?}",
                String::from_utf8_lossy(&b),
                check_pointer(&b)
            );
        }
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
        assert!(toml::from_str::<LfsStore>("layout = \"s3\"").is_err());
    }

    #[test]
    fn resolve_checks_size_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let content = b"hello lfs";
        let oid = sha256_of(&crate::source::BytesSource(content.to_vec())).unwrap();
        let store = LfsStore { root: Some(dir.path().into()), verify_sha256: true, ..Default::default() };
        let p = Pointer { oid: oid.clone(), size: content.len() as u64 };
        let Resolved::Problem(f) = resolve(&store, dir.path(), &p) else { panic!() };
        assert_eq!(f.code, "lfs-object-missing");
        assert!(f.message.contains("git lfs push --all"));
        let path = store.object_path(dir.path(), &oid).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        assert!(matches!(resolve(&store, dir.path(), &p), Resolved::Found { .. }));
        let wrong = Pointer { oid: oid.clone(), size: 3 };
        let Resolved::Problem(f) = resolve(&store, dir.path(), &wrong) else { panic!() };
        assert_eq!(f.code, "lfs-object-mismatch");
        std::fs::write(&path, b"hello LFS").unwrap();
        let Resolved::Problem(f) = resolve(&store, dir.path(), &p) else { panic!() };
        assert_eq!(f.code, "lfs-object-mismatch");
    }
}
