//! Git LFS objects in an S3-compatible bucket (`[lfs] layout = "s3"`), read through the
//! `object_store` crate's S3 client: ranged GETs for the bytes a scan asks for, a HEAD per
//! object, ListObjectsV2 for `lfs watch`, CopyObject and DeleteObject for a quarantine.
//!
//! Key layouts (what the forges write in their object-storage modes):
//! - Gitea / Forgejo: `<MINIO_BASE_PATH><oid[0:2]>/<oid[2:4]>/<oid[4:]>`: the LFS content
//!   store's `Pointer.RelativePath` (`modules/lfs/pointer.go`: `path.Join(Oid[0:2],
//!   Oid[2:4], Oid[4:])`) joined to the storage's base path by `MinioStorage.buildMinioPath`
//!   (`modules/storage/minio.go`); the base path of the `lfs` storage defaults to `lfs/`
//!   (`getStorageForMinio` in `modules/setting/storage.go`: `name + "/"`).
//! - GitLab: `<oid[0:2]>/<oid[2:4]>/<oid[4:]>` at the top of the LFS bucket
//!   (`app/uploaders/lfs_object_uploader.rb`: `store_dir` is `File.join(oid[0, 2], oid[2,
//!   2])`, `filename` is `oid[4..]`); with a bucket prefix (`bucket: "name/prefix"`), under it.
//!
//! So `prefix` (required: `"lfs/"` for a default Gitea, `""` for GitLab) then the same three
//! components; `template` (the placeholders of a template store, `{repo}` included) replaces
//! the three components for other layouts. Credentials come from the environment or the
//! AWS credentials file ([`super::credentials`]), never from the policy text.
//!
//! Reading: [`S3Source`] is the scanner's random-access [`Source`] over ranged GETs with a
//! small block cache: a scan of a zip reads its end records, central directory and the
//! members it parses (a checkpoint's pickle), never the tensor data it skips. Every GET of
//! an object names the ETag its HEAD returned (`If-Match`), so an object replaced during a
//! scan fails the read instead of mixing two contents.
//!
//! Failing closed: an object the bucket does not have is missing (`lfs-object-missing`:
//! never uploaded); an unreachable endpoint, a refused signature or a missing bucket is the
//! server's problem (`lfs-store-unavailable`, `on_error`), told to the admin with the
//! cause. Note that S3 answers 403, not 404, for a missing key when the credentials lack
//! `s3:ListBucket`: give the gate `s3:GetObject` and `s3:ListBucket` (and for a quarantine
//! `s3:PutObject`, `s3:DeleteObject`).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use super::credentials::{self, Credentials};
use super::{LfsObjects, ObjectMeta};
use crate::lfs::{is_oid, LfsStore, StoreError, StoreRepo};
use crate::lfs::{template_tokens as parse_template, TemplateBinding, TemplateToken as Token};
use crate::source::Source;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as Key;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};
use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

/// The policy keys only an S3 store uses.
const S3_KEYS: [&str; 6] = ["bucket", "prefix", "endpoint", "region", "path_style", "profile"];

fn s3_keys_set(lfs: &LfsStore) -> Vec<&'static str> {
    let set = [
        lfs.bucket.is_some(),
        lfs.prefix.is_some(),
        lfs.endpoint.is_some(),
        lfs.region.is_some(),
        lfs.path_style.is_some(),
        lfs.profile.is_some(),
    ];
    S3_KEYS.iter().zip(set).filter(|(_, s)| *s).map(|(k, _)| *k).collect()
}

/// A filesystem layout must not carry S3 keys (a typo in `layout` would silently ignore them).
pub fn no_s3_keys(lfs: &LfsStore) -> Result<(), StoreError> {
    match s3_keys_set(lfs).first() {
        Some(k) => Err(StoreError(format!("lfs `{k}` is only used with layout = \"s3\""))),
        None => Ok(()),
    }
}

/// Check an S3 store's configuration (no network).
pub fn validate(lfs: &LfsStore) -> Result<(), StoreError> {
    let bucket = lfs.bucket.as_deref().ok_or_else(|| StoreError("lfs layout s3 needs a bucket".into()))?;
    if !valid_bucket(bucket) {
        return Err(StoreError(format!(
            "lfs bucket {bucket:?} is not a bucket name (3-63 lowercase letters, digits, '.', '-', '_')"
        )));
    }
    let prefix = lfs.prefix.as_deref().ok_or_else(|| {
        StoreError(
            "lfs layout s3 needs a prefix: Gitea keeps lfs objects under its [storage.lfs] MINIO_BASE_PATH \
             (prefix = \"lfs/\" by default), GitLab at the top of its lfs bucket (prefix = \"\")"
                .into(),
        )
    })?;
    normalize_prefix(prefix)?;
    if lfs.root.is_some() {
        return Err(StoreError("lfs root is not used with layout = \"s3\" (the bucket and prefix say where)".into()));
    }
    if let Some(e) = &lfs.endpoint {
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            return Err(StoreError(format!("lfs endpoint {e:?} must start with http:// or https://")));
        }
    }
    if let Some(t) = &lfs.template {
        let probe = StoreRepo::new("owner/name").ok_or_else(|| StoreError("internal: probe repository".into()))?;
        let key = crate::lfs::expand_template(t, &"0".repeat(64), Some(&probe))?;
        if key.starts_with('/') {
            return Err(StoreError("an s3 lfs template is a key below the prefix: it may not start with '/'".into()));
        }
        parse_template(t).map_err(|e| StoreError(format!("bad lfs template: {e}")))?;
    }
    Ok(())
}

/// S3's bucket naming rules, loosely (S3-compatible servers allow `_` and capitals in old buckets).
fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len()) && b.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
}

/// `lfs/`, `/lfs`, `lfs` -> `lfs/`; `""` -> `""` (as Gitea's `path.Join` and a trimmed `/`).
fn normalize_prefix(p: &str) -> Result<String, StoreError> {
    let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    if parts.iter().any(|s| *s == "." || *s == ".." || s.chars().any(char::is_control)) {
        return Err(StoreError(format!("lfs prefix {p:?} may not contain '.', '..' or control characters")));
    }
    Ok(parts.iter().map(|s| format!("{s}/")).collect())
}

/// The key of `oid` (of `repo`, for a template naming repositories) below the prefix.
fn key_below_prefix(lfs: &LfsStore, oid: &str) -> Result<String, StoreError> {
    if !is_oid(oid) {
        return Err(StoreError(format!("invalid lfs oid {oid:?}")));
    }
    match &lfs.template {
        Some(t) => crate::lfs::expand_template(t, oid, lfs.repo.as_ref()),
        None => {
            let part = |a: usize, b: usize| oid.get(a..b).unwrap_or_default();
            Ok(format!("{}/{}/{}", part(0, 2), part(2, 4), part(4, 64)))
        }
    }
}

/// Whether an S3 store's configuration, `lfs`, can be used: one listing request under the
/// prefix (it fails for a missing bucket, an unreachable endpoint or refused credentials).
pub fn problem(lfs: &LfsStore) -> Option<String> {
    match S3Store::new(lfs) {
        Ok(s) => s.problem(),
        Err(e) => Some(e.0),
    }
}

/// An object opened: where it is (`s3://bucket/key`) and its bytes.
pub type Opened = (String, Arc<dyn Source>);

/// The object `oid` of the store `lfs`: where it is and its bytes; `Ok(None)` when the
/// bucket does not have it.
pub fn open_object(lfs: &LfsStore, oid: &str) -> Result<Option<Opened>, StoreError> {
    let store = S3Store::new(lfs)?;
    let Some(meta) = store.head(oid)? else { return Ok(None) };
    let src = store.open(oid, &meta)?;
    Ok(Some((meta.place, src)))
}

/// Bytes fetched from S3 by this process (all stores), and GET requests made: for `-v`
/// output and benchmarks.
pub fn fetched() -> (u64, u64) {
    (FETCHED_BYTES.load(Ordering::Relaxed), FETCH_REQUESTS.load(Ordering::Relaxed))
}

static FETCHED_BYTES: AtomicU64 = AtomicU64::new(0);
static FETCH_REQUESTS: AtomicU64 = AtomicU64::new(0);

/// The tokio runtime the blocking calls are driven on: two worker threads run the HTTP
/// connections while any number of scanning threads wait in `block_on` (a multi-thread
/// runtime, so that several judges read several objects at once).
fn runtime() -> Result<&'static tokio::runtime::Runtime, StoreError> {
    static RT: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("modelgate-s3")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| StoreError(format!("cannot start the s3 client runtime: {e}")))
}

/// Run `f` to completion from blocking code (never from inside the runtime).
fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, StoreError> {
    Ok(runtime()?.block_on(f))
}

/// An S3 store, as configured by the policy and credentialed by the environment.
pub struct S3Store {
    client: Arc<AmazonS3>,
    bucket: String,
    /// Normalized: `""` or `a/b/`.
    prefix: String,
    lfs: LfsStore,
    endpoint: String,
}

/// Clients by configuration and credentials (a client holds a connection pool).
type Clients = Mutex<HashMap<String, Arc<AmazonS3>>>;

impl S3Store {
    /// The store `lfs` describes (validated), with credentials found now.
    pub fn new(lfs: &LfsStore) -> Result<S3Store, StoreError> {
        validate(lfs)?;
        let bucket = lfs.bucket.clone().unwrap_or_default();
        let prefix = normalize_prefix(lfs.prefix.as_deref().unwrap_or_default())?;
        let var = |k: &str| std::env::var(k).ok();
        let creds = credentials::find(lfs.profile.as_deref(), &credentials::Env { var: &var })?;
        let region = lfs
            .region
            .clone()
            .or_else(|| var("AWS_REGION").filter(|r| !r.is_empty()))
            .or_else(|| var("AWS_DEFAULT_REGION").filter(|r| !r.is_empty()))
            .unwrap_or_else(|| "us-east-1".into());
        let path_style = lfs.path_style.unwrap_or(lfs.endpoint.is_some());
        let endpoint = match (&lfs.endpoint, path_style) {
            (Some(e), true) => e.trim_end_matches('/').to_string(),
            // Virtual-hosted style: the bucket is part of the host name.
            (Some(e), false) => match e.split_once("://") {
                Some((scheme, host)) => format!("{scheme}://{bucket}.{}", host.trim_end_matches('/')),
                None => e.clone(),
            },
            (None, true) => format!("https://s3.{region}.amazonaws.com"),
            (None, false) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
        };
        let id = format!(
            "{bucket}\n{endpoint}\n{region}\n{path_style}\n{}",
            creds.as_ref().map(|c| format!("{}\n{}\n{:?}", c.key_id, c.secret, c.token)).unwrap_or_default()
        );
        static CLIENTS: OnceLock<Clients> = OnceLock::new();
        let clients = CLIENTS.get_or_init(Clients::default);
        let cached = clients.lock().ok().and_then(|m| m.get(&id).cloned());
        let client = match cached {
            Some(c) => c,
            None => {
                let c = Arc::new(build(&bucket, &endpoint, &region, path_style, creds.as_ref())?);
                if let Ok(mut m) = clients.lock() {
                    m.insert(id, c.clone());
                }
                c
            }
        };
        Ok(S3Store { client, bucket, prefix, lfs: lfs.clone(), endpoint })
    }

    fn key(&self, oid: &str) -> Result<Key, StoreError> {
        let full = format!("{}{}", self.prefix, key_below_prefix(&self.lfs, oid)?);
        Key::parse(&full).map_err(|e| StoreError(format!("invalid s3 key {full:?}: {e}")))
    }

    fn place(&self, key: &Key) -> String {
        format!("s3://{}/{}", self.bucket, key.as_ref())
    }

    fn fail(&self, what: &str, e: &object_store::Error) -> StoreError {
        StoreError(format!("s3 {what} at {} failed: {}", self.endpoint, error_text(e)))
    }

    /// Every object of the store (keys that are not objects of the layout are passed
    /// over: temporary uploads, quarantines, other data), page by page, in key order.
    /// `each` is called between requests (it may judge, which reads other objects).
    pub fn list(&self, each: &mut dyn FnMut(super::Listed)) -> Result<(), StoreError> {
        let pattern = match &self.lfs.template {
            Some(t) => Some(parse_template(t).map_err(|e| StoreError(format!("bad lfs template: {e}")))?),
            None => None,
        };
        let prefix = Key::parse(self.prefix.trim_end_matches('/'))
            .map_err(|e| StoreError(format!("invalid s3 prefix {:?}: {e}", self.prefix)))?;
        let mut stream = self.client.list(if self.prefix.is_empty() { None } else { Some(&prefix) });
        loop {
            let Some(item) = block_on(stream.next())? else { return Ok(()) };
            let meta = item.map_err(|e| self.fail("listing", &e))?;
            let key: &str = meta.location.as_ref();
            let Some(rest) = key.strip_prefix(self.prefix.as_str()) else { continue };
            let found = match &pattern {
                Some(p) => match_key(p, rest),
                None => default_oid(rest).map(|oid| (oid, None)),
            };
            if let Some((oid, repo)) = found {
                each(super::Listed { oid, repo, size: meta.size, modified: system_time(&meta.last_modified) });
            }
        }
    }
}

/// A client for one bucket.
fn build(
    bucket: &str,
    endpoint: &str,
    region: &str,
    path_style: bool,
    creds: Option<&Credentials>,
) -> Result<AmazonS3, StoreError> {
    // reqwest's rustls without a provider of its own (no aws-lc-rs C build): ring, once per
    // process. rustls 0.23.48 deprecates it for lacking post-quantum key exchange, which the
    // aws-lc-rs provider has; S3 endpoints do not need it.
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
    let options = ClientOptions::new()
        .with_allow_http(endpoint.starts_with("http://"))
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(60));
    // A few quick retries: an unreachable store must become an error within seconds.
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 2,
        retry_timeout: Duration::from_secs(20),
    };
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(region)
        .with_endpoint(endpoint)
        .with_virtual_hosted_style_request(!path_style)
        .with_client_options(options)
        .with_retry(retry);
    match creds {
        Some(c) => {
            b = b.with_access_key_id(&c.key_id).with_secret_access_key(&c.secret);
            if let Some(t) = &c.token {
                b = b.with_token(t);
            }
        }
        None => {
            // The rest of the AWS chain: web identity (EKS), container credentials (ECS,
            // EKS pod identity), then EC2 instance metadata unless it is disabled.
            for (var, key) in [
                ("AWS_WEB_IDENTITY_TOKEN_FILE", AmazonS3ConfigKey::WebIdentityTokenFile),
                ("AWS_ROLE_ARN", AmazonS3ConfigKey::RoleArn),
                ("AWS_ROLE_SESSION_NAME", AmazonS3ConfigKey::RoleSessionName),
                ("AWS_ENDPOINT_URL_STS", AmazonS3ConfigKey::StsEndpoint),
                ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", AmazonS3ConfigKey::ContainerCredentialsRelativeUri),
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", AmazonS3ConfigKey::ContainerCredentialsFullUri),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", AmazonS3ConfigKey::ContainerAuthorizationTokenFile),
            ] {
                if let Some(v) = std::env::var(var).ok().filter(|v| !v.is_empty()) {
                    b = b.with_config(key, v);
                }
            }
            let chain = [
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            ];
            let metadata_off = std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
            if metadata_off && !chain.iter().any(|v| std::env::var_os(v).is_some()) {
                return Err(StoreError(
                    "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in the AWS \
                     credentials file (AWS_SHARED_CREDENTIALS_FILE, AWS_PROFILE or [lfs] profile)"
                        .into(),
                ));
            }
        }
    }
    b.build().map_err(|e| StoreError(format!("cannot configure the s3 client: {}", error_text(&e))))
}

/// An error's whole chain, on one line.
fn error_text(e: &object_store::Error) -> String {
    use std::error::Error as _;
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}

fn system_time(t: &chrono::DateTime<chrono::Utc>) -> SystemTime {
    match u64::try_from(t.timestamp()) {
        Ok(s) => SystemTime::UNIX_EPOCH + Duration::new(s, t.timestamp_subsec_nanos()),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

impl LfsObjects for S3Store {
    fn describe(&self) -> String {
        format!("s3://{}/{} at {}", self.bucket, self.prefix, self.endpoint)
    }

    fn locate(&self, oid: &str) -> String {
        match self.key(oid) {
            Ok(k) => self.place(&k),
            Err(e) => format!("{} ({})", self.describe(), e.0),
        }
    }

    fn head(&self, oid: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let key = self.key(oid)?;
        match block_on(self.client.head(&key))? {
            Ok(m) => Ok(Some(ObjectMeta {
                size: m.size,
                modified: system_time(&m.last_modified),
                version: m.e_tag.clone(),
                place: self.place(&key),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail(&format!("HEAD {}", self.place(&key)), &e)),
        }
    }

    fn open(&self, oid: &str, meta: &ObjectMeta) -> Result<Arc<dyn Source>, StoreError> {
        let key = self.key(oid)?;
        Ok(Arc::new(S3Source::new(self.client.clone(), key, self.place(&self.key(oid)?), meta)))
    }

    fn quarantine(
        &self,
        oid: &str,
        name: &str,
        to: &Path,
        record: &serde_json::Value,
    ) -> Result<Option<String>, StoreError> {
        let to = to.to_string_lossy();
        let dest = to.strip_prefix("s3://").and_then(|r| r.split_once('/').or(Some((r, ""))));
        let Some((bucket, dir)) = dest.filter(|(b, _)| *b == self.bucket) else {
            return Err(StoreError(format!(
                "an s3 store quarantines within its bucket: give --quarantine s3://{}/<prefix> (not {to})",
                self.bucket
            )));
        };
        let dir = normalize_prefix(dir)?;
        if dir.is_empty() || self.prefix.starts_with(&dir) {
            return Err(StoreError(format!("the quarantine s3://{bucket}/{dir} must be a prefix outside the store's")));
        }
        let from = self.key(oid)?;
        let parse = |k: String| Key::parse(&k).map_err(|e| StoreError(format!("invalid s3 key {k:?}: {e}")));
        let (object, verdict) = (parse(format!("{dir}{name}"))?, parse(format!("{dir}{name}.json"))?);
        match block_on(self.client.head(&from))? {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.fail("HEAD", &e)),
        }
        block_on(self.client.copy(&from, &object))?
            .map_err(|e| self.fail(&format!("copy to {}", self.place(&object)), &e))?;
        let json = serde_json::to_vec_pretty(record).map_err(|e| StoreError(e.to_string()))?;
        block_on(self.client.put(&verdict, PutPayload::from(json)))?
            .map_err(|e| self.fail("writing the verdict", &e))?;
        block_on(self.client.delete(&from))?.map_err(|e| self.fail(&format!("delete of {}", self.place(&from)), &e))?;
        Ok(Some(self.place(&object)))
    }

    fn problem(&self) -> Option<String> {
        let prefix = Key::parse(self.prefix.trim_end_matches('/')).ok();
        let listed = block_on(self.client.list_with_delimiter(prefix.as_ref().filter(|_| !self.prefix.is_empty())));
        match listed {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(format!(
                "the s3 lfs store s3://{}/{} cannot be listed at {}: {} (check [lfs] bucket, endpoint and region, and \
                 the gate's AWS credentials: it needs s3:ListBucket and s3:GetObject)",
                self.bucket,
                self.prefix,
                self.endpoint,
                error_text(&e)
            )),
            Err(e) => Some(e.0),
        }
    }
}

/// The oid of a Gitea/GitLab key below the prefix: `ab/cd/<60 hex>`.
fn default_oid(rest: &str) -> Option<String> {
    let mut parts = rest.split('/');
    let (a, b, tail) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || a.len() != 2 || b.len() != 2 || tail.len() != 60 {
        return None;
    }
    let oid = format!("{a}{b}{tail}");
    is_oid(&oid).then_some(oid)
}

/// The oid and repository a key below the prefix stands for under a template: the first
/// way the whole key matches that gives a full oid and a valid repository name.
fn match_key(tokens: &[Token], key: &str) -> Option<(String, Option<StoreRepo>)> {
    let b = TemplateBinding::new();
    let mut budget = 100_000u32;
    match_from(tokens, key, b, &mut budget)
}

fn match_from(
    tokens: &[Token],
    rest: &str,
    b: TemplateBinding,
    budget: &mut u32,
) -> Option<(String, Option<StoreRepo>)> {
    *budget = budget.checked_sub(1)?;
    let Some((first, more)) = tokens.split_first() else {
        return rest.is_empty().then(|| b.resolved()).flatten();
    };
    match first {
        Token::Lit(l) => match_from(more, rest.strip_prefix(l.as_str())?, b, budget),
        Token::Oid(a, z) => {
            let nb = b.bind_oid(*a, rest.get(..z - a)?)?;
            match_from(more, rest.get(z - a..)?, nb, budget)
        }
        Token::Repo | Token::Owner | Token::Name => {
            for end in (1..=rest.len()).filter(|e| rest.is_char_boundary(*e)) {
                let value = rest.get(..end)?;
                // `{name}` is one component; `{repo}` and `{owner}` may span several.
                if matches!(first, Token::Name) && value.contains('/') {
                    break;
                }
                let Some(nb) = b.bind_name(first, value) else { continue };
                if let Some(found) = match_from(more, rest.get(end..)?, nb, budget) {
                    return Some(found);
                }
            }
            None
        }
    }
}

/// Block size of [`S3Source`]'s cache: the least one GET fetches.
const BLOCK: u64 = 16 * 1024;
/// Blocks kept per object (4 MiB).
const CACHED_BLOCKS: usize = 256;
/// Read-ahead grows while reads are sequential, up to this many blocks (1 MiB).
const MAX_AHEAD: u64 = 64;
/// The most one read fetches (a larger read returns fewer bytes, as `read_at` may).
const MAX_FETCH: u64 = 2 * 1024 * 1024;

/// An S3 object as random-access bytes: ranged GETs of whole blocks, the last few
/// [`CACHED_BLOCKS`] kept, read-ahead growing while a parser reads straight on.
pub struct S3Source {
    client: Arc<AmazonS3>,
    key: Key,
    place: String,
    len: u64,
    etag: Option<String>,
    state: Mutex<Blocks>,
}

#[derive(Default)]
struct Blocks {
    /// Block index -> (bytes, last use).
    cached: HashMap<u64, (bytes::Bytes, u64)>,
    tick: u64,
    /// The block after the last fetch, and the read-ahead it earned.
    next: Option<u64>,
    ahead: u64,
}

impl S3Source {
    fn new(client: Arc<AmazonS3>, key: Key, place: String, meta: &ObjectMeta) -> S3Source {
        S3Source {
            client,
            key,
            place,
            len: meta.size,
            etag: meta.version.clone(),
            state: Mutex::new(Blocks::default()),
        }
    }

    fn fetch(&self, start: u64, end: u64) -> io::Result<bytes::Bytes> {
        let opts = GetOptions {
            range: Some(GetRange::Bounded(start..end)),
            if_match: self.etag.clone(),
            ..Default::default()
        };
        let client = self.client.clone();
        let key = self.key.clone();
        let got = block_on(async move {
            let r = client.get_opts(&key, opts).await?;
            r.bytes().await
        })
        .map_err(|e| io::Error::other(e.0))?;
        FETCH_REQUESTS.fetch_add(1, Ordering::Relaxed);
        let bytes = got.map_err(|e| {
            let why = match e {
                object_store::Error::Precondition { .. } => "the object changed while it was read".to_string(),
                object_store::Error::NotFound { .. } => "the object was deleted while it was read".to_string(),
                e => error_text(&e),
            };
            io::Error::other(format!("s3 read of {} bytes {start}-{end} failed: {why}", self.place))
        })?;
        FETCHED_BYTES.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if bytes.len() as u64 != end - start {
            return Err(io::Error::other(format!(
                "s3 read of {} bytes {start}-{end} returned {} bytes (the object changed?)",
                self.place,
                bytes.len()
            )));
        }
        Ok(bytes)
    }
}

impl Source for S3Source {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if offset >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let want = (self.len - offset).min(buf.len() as u64).min(MAX_FETCH);
        let end = offset + want;
        let mut st = self.state.lock().map_err(|_| io::Error::other("s3 block cache poisoned"))?;
        let (first, last) = (offset / BLOCK, (end - 1) / BLOCK);
        let mut missing = (first..=last).filter(|b| !st.cached.contains_key(b));
        if let Some(from) = missing.next() {
            let upto = (first..=last).rev().find(|b| !st.cached.contains_key(b)).unwrap_or(from);
            st.ahead = if st.next == Some(from) { (st.ahead * 2).clamp(1, MAX_AHEAD) } else { 0 };
            let blocks = self.len.div_ceil(BLOCK);
            let stop = (upto + 1 + st.ahead).min(blocks);
            let (start, stop_byte) = (from * BLOCK, (stop * BLOCK).min(self.len));
            let data = self.fetch(start, stop_byte)?;
            for b in from..stop {
                let lo = usize::try_from((b - from) * BLOCK).unwrap_or(usize::MAX);
                let hi = lo.saturating_add(BLOCK as usize).min(data.len());
                if lo < hi {
                    st.tick += 1;
                    let tick = st.tick;
                    st.cached.insert(b, (data.slice(lo..hi), tick));
                }
            }
            st.next = Some(stop);
            // Forget the least recently used blocks, never the ones this read needs.
            while st.cached.len() > CACHED_BLOCKS.max((last - first + 1) as usize) {
                let Some(old) = st
                    .cached
                    .iter()
                    .filter(|(b, _)| !(first..=last).contains(*b))
                    .min_by_key(|(_, (_, t))| *t)
                    .map(|(b, _)| *b)
                else {
                    break;
                };
                st.cached.remove(&old);
            }
        }
        let mut done = 0usize;
        let mut pos = offset;
        while pos < end {
            st.tick += 1;
            let tick = st.tick;
            let block = pos / BLOCK;
            let Some((bytes, used)) = st.cached.get_mut(&block) else {
                return Err(io::Error::other("s3 block cache lost a block"));
            };
            *used = tick;
            let within = usize::try_from(pos - block * BLOCK).unwrap_or(usize::MAX);
            let n = usize::try_from(end - pos).unwrap_or(usize::MAX).min(bytes.len().saturating_sub(within));
            let (Some(dst), Some(src)) = (buf.get_mut(done..done + n), bytes.get(within..within + n)) else {
                return Err(io::Error::other("s3 block cache out of range"));
            };
            if n == 0 {
                break;
            }
            dst.copy_from_slice(src);
            done += n;
            pos += n as u64;
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lfs::Layout;

    const OID: &str = "4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393";

    fn s3(prefix: &str, template: Option<&str>) -> LfsStore {
        LfsStore {
            layout: Layout::S3,
            bucket: Some("gitea".into()),
            prefix: Some(prefix.into()),
            template: template.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn keys_of_gitea_and_gitlab() {
        // Gitea's default MINIO_BASE_PATH for lfs, however it is spelled.
        for p in ["lfs/", "lfs", "/lfs/", "lfs//"] {
            let key = format!("{}{}", normalize_prefix(p).unwrap(), key_below_prefix(&s3(p, None), OID).unwrap());
            assert_eq!(key, format!("lfs/4d/7a/{}", &OID[4..]));
        }
        // GitLab: the top of the lfs bucket.
        assert_eq!(normalize_prefix("").unwrap(), "");
        assert_eq!(key_below_prefix(&s3("", None), OID).unwrap(), format!("4d/7a/{}", &OID[4..]));
        assert_eq!(normalize_prefix("a/b").unwrap(), "a/b/");
        assert!(normalize_prefix("a/../b").is_err());
        assert!(key_below_prefix(&s3("", None), "../../etc/passwd").is_err());
        assert_eq!(default_oid(&format!("4d/7a/{}", &OID[4..])), Some(OID.to_string()));
        for bad in [format!("4d/7b/{}", &OID[4..]), format!("4d/7a/{}x", &OID[4..]), "tmp/uploads/x".into(), OID.into()]
        {
            assert_eq!(default_oid(&bad).filter(|o| o == OID), None, "{bad}");
        }
    }

    #[test]
    fn configuration_is_checked() {
        assert!(validate(&s3("lfs/", None)).is_ok());
        let mut no_prefix = s3("", None);
        no_prefix.prefix = None;
        assert!(validate(&no_prefix).unwrap_err().0.contains("MINIO_BASE_PATH"));
        let mut no_bucket = s3("", None);
        no_bucket.bucket = None;
        assert!(validate(&no_bucket).is_err());
        assert!(validate(&LfsStore { bucket: Some("a/b".into()), ..s3("", None) }).is_err());
        assert!(validate(&LfsStore { root: Some("/x".into()), ..s3("", None) }).is_err());
        assert!(validate(&LfsStore { endpoint: Some("minio:9000".into()), ..s3("", None) }).is_err());
        assert!(validate(&s3("", Some("{repo}/{oid}"))).is_ok());
        assert!(validate(&s3("", Some("/{oid}"))).is_err());
        assert!(validate(&s3("", Some("{oid0:2}"))).is_err());
        // S3 keys on a filesystem layout are refused, not ignored.
        let fs =
            LfsStore { layout: Layout::Gitea, root: Some("/x".into()), bucket: Some("b".into()), ..Default::default() };
        assert!(fs.validate().unwrap_err().0.contains("bucket"));
    }

    #[test]
    fn template_keys_match_back() {
        let t = parse_template("{repo}/objects/{oid0:2}/{oid2:4}/{oid}").unwrap();
        let repo = StoreRepo::new("group/sub/project").unwrap();
        let lfs = LfsStore { repo: Some(repo.clone()), ..s3("", Some("{repo}/objects/{oid0:2}/{oid2:4}/{oid}")) };
        let key = key_below_prefix(&lfs, OID).unwrap();
        assert_eq!(key, format!("group/sub/project/objects/4d/7a/{OID}"));
        assert_eq!(match_key(&t, &key), Some((OID.to_string(), Some(repo))));
        // The directories must agree with the oid; other keys are not objects.
        assert_eq!(match_key(&t, &format!("g/p/objects/4d/7b/{OID}")), None);
        assert_eq!(match_key(&t, &format!("../objects/4d/7a/{OID}")), None);
        assert_eq!(match_key(&t, "g/p/objects/4d/7a/tmp"), None);
        let t = parse_template("{owner}/{name}/{oid}").unwrap();
        let (_, r) = match_key(&t, &format!("a/b/c/{OID}")).unwrap();
        assert_eq!(r.unwrap().full(), "a/b/c");
        let t = parse_template("{oid}.bin").unwrap();
        assert_eq!(match_key(&t, &format!("{OID}.bin")), Some((OID.to_string(), None)));
    }
}
