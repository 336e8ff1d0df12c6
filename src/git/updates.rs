//! The `<old> <new> <ref>` lines pre-receive and post-receive read on stdin.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use gix::bstr::{BString, ByteSlice};
use gix::hash::Kind;
use gix::ObjectId;

/// stdin larger than this is refused (a push of a million refs is about 100 MB).
pub const MAX_INPUT: u64 = 256 << 20;

/// One ref update of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    /// Null when the ref is created.
    pub old: ObjectId,
    /// Null when the ref is deleted.
    pub new: ObjectId,
    /// Full ref name as git sent it (bytes; may be any valid ref name).
    pub name: BString,
}

/// What an update does to its ref.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    Create,
    Update,
    Delete,
}

impl RefUpdate {
    pub fn kind(&self) -> UpdateKind {
        if self.new.is_null() {
            UpdateKind::Delete
        } else if self.old.is_null() {
            UpdateKind::Create
        } else {
            UpdateKind::Update
        }
    }
}

/// Parse hook stdin. Every non-empty line must be `<old> <new> <ref>` with ids of the
/// repository's hash length in lowercase hex; anything else is an error naming the line.
pub fn parse_updates(input: &[u8], kind: Kind) -> Result<Vec<RefUpdate>, String> {
    let mut out = Vec::new();
    for (n, line) in input.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let bad = |why: &str| format!("bad ref update on line {}: {why}", n + 1);
        let mut parts = line.splitn(3, |&b| b == b' ');
        let (Some(old), Some(new), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected `<old-id> <new-id> <ref>`"));
        };
        let old = parse_id(old, kind).ok_or_else(|| bad("old id is not a full lowercase hex object id"))?;
        let new = parse_id(new, kind).ok_or_else(|| bad("new id is not a full lowercase hex object id"))?;
        if !name.starts_with(b"refs/") && name != b"HEAD" {
            return Err(bad("ref name does not start with refs/"));
        }
        if name.iter().any(|&b| b <= b' ' || b == 0x7f) {
            return Err(bad("ref name contains whitespace or control characters"));
        }
        if old.is_null() && new.is_null() {
            return Err(bad("both ids are zero"));
        }
        out.push(RefUpdate { old, new, name: name.as_bstr().to_owned() });
    }
    Ok(out)
}

fn parse_id(hex: &[u8], kind: Kind) -> Option<ObjectId> {
    if hex.len() != kind.len_in_hex() || !hex.iter().all(|&b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    ObjectId::from_hex(hex).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const Z: &str = "0000000000000000000000000000000000000000";
    const A: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

    #[test]
    fn parses_create_update_delete() {
        let input = format!("{Z} {A} refs/heads/new\n{A} {A} refs/tags/t\n{A} {Z} refs/heads/gone\n\n");
        let u = parse_updates(input.as_bytes(), Kind::Sha1).unwrap();
        assert_eq!(u.len(), 3);
        assert_eq!(u[0].kind(), UpdateKind::Create);
        assert_eq!(u[1].kind(), UpdateKind::Update);
        assert_eq!(u[2].kind(), UpdateKind::Delete);
        assert_eq!(u[2].name, "refs/heads/gone");
    }

    #[test]
    fn rejects_garbage() {
        let long = format!("{A}{A}");
        let upper = A.to_uppercase();
        let cases = [
            "garbage".to_string(),
            format!("{A} {A}"),
            format!("{A}  {A} refs/heads/x"),
            format!("{upper} {A} refs/heads/x"),
            format!("{} {A} refs/heads/x", &A[..39]),
            format!("{long} {A} refs/heads/x"),
            format!("{A} {A} refs/heads/a b"),
            format!("{A} {A} refs/heads/\x1b[31m"),
            format!("{A} {A} heads/x"),
            format!("{Z} {Z} refs/heads/x"),
            format!("{A} {A} refs/heads/x\r"),
        ];
        for c in cases {
            let e = parse_updates(c.as_bytes(), Kind::Sha1).unwrap_err();
            assert!(e.contains("line 1"), "{e}");
        }
        // A SHA-1 id in a SHA-256 repository is rejected.
        assert!(parse_updates(format!("{A} {A} refs/heads/x").as_bytes(), Kind::Sha256).is_err());
        let z256 = "0".repeat(64);
        let a256 = "ab".repeat(32);
        let u = parse_updates(format!("{z256} {a256} refs/heads/x").as_bytes(), Kind::Sha256).unwrap();
        assert_eq!(u[0].new.kind(), Kind::Sha256);
    }
}
