//! The content ids of a file outside a repository, for `[[allow]]` entries pinned to
//! content: its sha256 (`sha256sum`; also the oid Git LFS gives it) and the blob ids git
//! would give it (`git hash-object`: the hash of `blob <size>\0` and the bytes, sha1 or
//! sha256). Computed only for the kinds of pins the policy has, streaming the file.

use super::ContentIds;
use crate::source::Source;
use sha2::Digest as _;

/// A file's content ids (lowercase hex); `None` for the kinds not asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileIds {
    pub sha256: Option<String>,
    pub blob_sha1: Option<String>,
    pub blob_sha256: Option<String>,
}

impl FileIds {
    /// Hash `src` for the ids asked for: `(sha256, sha1 blob id, sha256 blob id)`, as
    /// [`super::Policy::pins_needed`] gives them.
    pub fn of(src: &dyn Source, (sha256, blob1, blob256): (bool, bool, bool)) -> std::io::Result<FileIds> {
        if !(sha256 || blob1 || blob256) {
            return Ok(FileIds::default());
        }
        let header = format!("blob {}\0", src.len());
        let mut h256 = sha256.then(sha2::Sha256::new);
        let mut b1 = blob1.then(|| gix::hash::hasher(gix::hash::Kind::Sha1));
        let mut b256 = blob256.then(|| gix::hash::hasher(gix::hash::Kind::Sha256));
        for h in [b1.as_mut(), b256.as_mut()].into_iter().flatten() {
            h.update(header.as_bytes());
        }
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0u64;
        loop {
            let n = src.read_at(off, &mut buf)?;
            if n == 0 {
                break;
            }
            let chunk = buf.get(..n).unwrap_or_default();
            if let Some(h) = h256.as_mut() {
                h.update(chunk);
            }
            for h in [b1.as_mut(), b256.as_mut()].into_iter().flatten() {
                h.update(chunk);
            }
            off += n as u64;
        }
        if off != src.len() {
            return Err(std::io::Error::other("the file changed size while it was hashed"));
        }
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let finish = |h: Option<gix::hash::Hasher>| -> std::io::Result<Option<String>> {
            h.map(|h| h.try_finalize().map(|id| id.to_hex().to_string()).map_err(std::io::Error::other)).transpose()
        };
        Ok(FileIds { sha256: h256.map(|h| hex(&h.finalize())), blob_sha1: finish(b1)?, blob_sha256: finish(b256)? })
    }

    /// The ids as a decision reads them.
    pub fn content(&self) -> ContentIds<'_> {
        ContentIds {
            sha256: self.sha256.as_deref(),
            blob: self.blob_sha1.as_deref(),
            blob256: self.blob_sha256.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::BytesSource;

    #[test]
    fn ids_match_git_and_sha256sum() {
        let ids = FileIds::of(&BytesSource(b"hello\n".to_vec()), (true, true, true)).unwrap();
        // `printf 'hello\n' | sha256sum`, `git hash-object`, `git hash-object` in a sha256 repository.
        assert_eq!(ids.sha256.as_deref(), Some("5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"));
        assert_eq!(ids.blob_sha1.as_deref(), Some("ce013625030ba8dba906f756967f9e9ca394464a"));
        assert_eq!(
            ids.blob_sha256.as_deref(),
            Some("2cf8d83d9ee29543b34a87727421fdecb7e3f3a183d337639025de576db9ebb4")
        );
        assert_eq!(FileIds::of(&BytesSource(vec![]), (false, false, false)).unwrap(), FileIds::default());
    }
}
