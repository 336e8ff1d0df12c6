//! Content-addressed verdict cache: re-pushing content already judged reads none of its
//! bytes. Keys are a blob id or an LFS oid plus the engine version, the scan budgets and
//! the policy's salt; entries are JSON files written atomically (temp file + rename).

use super::judge::Judged;
use crate::engine::ScanOptions;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// A verdict cache in one directory (never inside the quarantine).
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    fingerprint: String,
    /// Off when clamd is configured but its signature version is unknown: verdicts judged with
    /// other signatures must not be reused, nor these stored as if they were current.
    enabled: bool,
    /// Whether anything was stored under this fingerprint when the cache was opened: if not,
    /// lookups are skipped (a file-system miss per blob is most of a small file's cost).
    present: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Serialize, Deserialize)]
struct Entry<T> {
    key: String,
    engine: String,
    fingerprint: String,
    judged: T,
}

impl Cache {
    pub fn new(dir: PathBuf, opts: &ScanOptions, salt: &str) -> Cache {
        let signatures = match &opts.clamav {
            None => Some(String::new()),
            Some(cfg) => crate::clamav::version(cfg).ok().map(|v| {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                crate::clamav::signature_epoch(&v, now)
            }),
        };
        let enabled = signatures.is_some();
        let fingerprint = fingerprint(opts, salt, signatures.as_deref().unwrap_or(""));
        let present = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(dir.join(&fingerprint).is_dir()));
        Cache { dir, fingerprint, enabled, present }
    }

    /// Key of a git blob (`<kind>` is the hash name, so SHA-1 and SHA-256 never mix).
    pub fn blob_key(id: &gix::ObjectId) -> String {
        format!("{}-{}", id.kind(), id)
    }

    /// Key of an LFS object.
    pub fn lfs_key(oid: &str) -> String {
        format!("lfs-{oid}")
    }

    fn path(&self, key: &str) -> Option<PathBuf> {
        // Keys are built from validated hex ids; anything else never becomes a path.
        let ok = key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && key.len() <= 160;
        let tail = key.rsplit('-').next()?;
        ok.then(|| self.dir.join(&self.fingerprint).join(tail.get(..2).unwrap_or("xx")).join(format!("{key}.json")))
    }

    pub fn get(&self, key: &str) -> Option<Judged> {
        self.get_value(key)
    }

    /// Any cached value (the judgements of a blob's checkout variants, ...).
    pub fn get_value<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        if !self.enabled || !self.present.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let text = std::fs::read(self.path(key)?).ok()?;
        let e: Entry<T> = serde_json::from_slice(&text).ok()?;
        (e.key == key && e.engine == crate::ENGINE_VERSION && e.fingerprint == self.fingerprint).then_some(e.judged)
    }

    pub fn put(&self, key: &str, judged: &Judged) -> std::io::Result<()> {
        self.put_value(key, judged)
    }

    pub fn put_value<T: Serialize>(&self, key: &str, judged: &T) -> std::io::Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let path = self.path(key).ok_or_else(|| std::io::Error::other("bad cache key"))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let entry = Entry {
            key: key.to_string(),
            engine: crate::ENGINE_VERSION.to_string(),
            fingerprint: self.fingerprint.clone(),
            judged,
        };
        // One write: serde_json writes token by token, and the file is unbuffered.
        let text = serde_json::to_vec(&entry)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(&mut tmp, &text)?;
        tmp.persist(&path).map_err(|e| e.error)?;
        self.present.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// Everything besides the bytes that can change a verdict.
fn fingerprint(opts: &ScanOptions, salt: &str, signatures: &str) -> String {
    let mut h = Sha256::new();
    let budgets = format!(
        "{}\0{}\0{}\0{}\0{}\0{}\0{}\0{}\0{}\0{:?}",
        crate::ENGINE_VERSION,
        opts.max_depth,
        opts.max_expanded_bytes,
        opts.max_buffered_bytes,
        opts.max_members,
        opts.max_pickle_opcodes,
        opts.max_pickle_values,
        opts.max_nested_pickle_bytes,
        salt,
        opts.clamav
    );
    h.update(budgets.as_bytes());
    h.update(b"\0");
    h.update(signatures.as_bytes());
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Verdict;

    fn judged(size: u64) -> Judged {
        Judged {
            verdict: Verdict::Safe,
            format: "pickle".into(),
            size,
            imports: vec!["collections.OrderedDict".into()],
            findings: Vec::new(),
            lfs_oid: None,
            cached: false,
        }
    }

    #[test]
    fn concurrent_writers_never_leave_a_torn_entry() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf(), &ScanOptions::default(), "salt");
        let key = Cache::lfs_key(&"ab".repeat(32));
        std::thread::scope(|s| {
            for t in 0..8u64 {
                let (cache, key) = (&cache, &key);
                s.spawn(move || {
                    for i in 0..50u64 {
                        cache.put(key, &judged(t * 1000 + i)).unwrap();
                        // A reader sees some whole entry, never a partial one.
                        let got = cache.get(key).expect("an entry is always there once written");
                        assert_eq!(got.imports, vec!["collections.OrderedDict".to_string()]);
                    }
                });
            }
        });
        let entries: Vec<_> = walkdir::WalkDir::new(dir.path()).into_iter().filter_map(Result::ok).collect();
        assert_eq!(entries.iter().filter(|e| e.file_type().is_file()).count(), 1, "no temporary files left");
        // Another salt (other allow/deny lists) does not see the entry; odd keys are refused.
        let other = Cache::new(dir.path().to_path_buf(), &ScanOptions::default(), "other");
        assert!(other.get(&key).is_none());
        assert!(cache.put("../../escape", &judged(1)).is_err());
    }

    #[test]
    fn clamav_signatures_are_part_of_the_fingerprint() {
        let opts = ScanOptions::default();
        let a = fingerprint(&opts, "s", "ClamAV 1.4.6/27459/Tue Nov 25 09:35:17 2026");
        let b = fingerprint(&opts, "s", "ClamAV 1.4.6/27460/Wed Nov 26 09:35:17 2026");
        assert_ne!(a, b);
        assert_eq!(a, fingerprint(&opts, "s", "ClamAV 1.4.6/27459/Tue Nov 25 09:35:17 2026"));
    }

    #[test]
    fn unknown_signatures_switch_the_cache_off() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = ScanOptions::default();
        let sock = dir.path().join("no-clamd.sock");
        opts.clamav = Some(std::sync::Arc::new(crate::clamav::ClamavConfig::new(crate::clamav::Endpoint::Unix(sock))));
        let cache = Cache::new(dir.path().join("cache"), &opts, "salt");
        let key = Cache::lfs_key(&"cd".repeat(32));
        cache.put(&key, &judged(1)).unwrap();
        assert!(cache.get(&key).is_none());
        assert!(!dir.path().join("cache").exists(), "nothing stored");
    }
}
