//! Tree objects as raw bytes: their entries, git's entry order, and which entries of one
//! tree are not in another, for the push gate's diff of a push and the audit's walk of a
//! history. Entries are borrowed from the decoded tree, never copied.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use std::cmp::Ordering;

/// One tree entry, borrowed from the tree's bytes: `<octal mode> <name>\0<id>`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry<'a> {
    pub mode: u32,
    pub name: &'a [u8],
    pub id: &'a [u8],
    /// The whole entry as stored: identical bytes mean an identical entry.
    pub raw: &'a [u8],
}

pub(crate) const S_IFMT: u32 = 0o170000;
pub(crate) const S_IFDIR: u32 = 0o040000;
pub(crate) const S_IFREG: u32 = 0o100000;
pub(crate) const S_IFLNK: u32 = 0o120000;
pub(crate) const S_IFGITLINK: u32 = 0o160000;

impl Entry<'_> {
    pub fn is_tree(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
}

/// The entry at the start of `data` and its length; `None` when it is malformed.
pub(crate) fn entry(data: &[u8], hash_len: usize) -> Option<(Entry<'_>, usize)> {
    let sp = memchr::memchr(b' ', data)?;
    let nul = sp + 1 + memchr::memchr(0, data.get(sp + 1..)?)?;
    let end = nul + 1 + hash_len;
    let mode_bytes = data.get(..sp)?;
    if mode_bytes.is_empty() || mode_bytes.len() > 7 {
        return None;
    }
    let mut mode = 0u32;
    for &d in mode_bytes {
        if !(b'0'..=b'7').contains(&d) {
            return None;
        }
        mode = mode * 8 + u32::from(d - b'0');
    }
    let e = Entry { mode, name: data.get(sp + 1..nul)?, id: data.get(nul + 1..end)?, raw: data.get(..end)? };
    Some((e, end))
}

/// The entries of a tree's bytes up to the first malformed one, and whether there was one.
pub(crate) fn entries(mut data: &[u8], hash_len: usize) -> (Vec<Entry<'_>>, bool) {
    let mut out = Vec::new();
    while !data.is_empty() {
        let Some((e, n)) = entry(data, hash_len) else { return (out, true) };
        out.push(e);
        data = data.get(n..).unwrap_or_default();
    }
    (out, false)
}

/// Every entry of a tree's bytes; `None` when they are malformed.
pub(crate) fn all_entries(data: &[u8], hash_len: usize) -> Option<Vec<Entry<'_>>> {
    match entries(data, hash_len) {
        (v, false) => Some(v),
        (_, true) => None,
    }
}

/// git's tree order (`base_name_compare`): names compare as if trees ended in `/`.
pub(crate) fn tree_order(a: &Entry<'_>, b: &Entry<'_>) -> Ordering {
    let n = a.name.len().min(b.name.len());
    match a.name.get(..n).cmp(&b.name.get(..n)) {
        Ordering::Equal => {}
        o => return o,
    }
    let next = |e: &Entry<'_>| e.name.get(n).copied().unwrap_or(if e.is_tree() { b'/' } else { 0 });
    next(a).cmp(&next(b))
}

/// The entries of `new` not identical to one of `old`, each with its namesake in `old`
/// (which pairs subtrees for a smaller diff). Only an entry identical in mode, name and id to
/// one of `old` is passed over, so an unsorted tree loses nothing (only pairings).
pub(crate) fn changed<'a>(old: &[Entry<'a>], new: &[Entry<'a>]) -> Vec<(Entry<'a>, Option<Entry<'a>>)> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while let Some(n) = new.get(j) {
        match old.get(i) {
            Some(o) if o.raw == n.raw => {
                i += 1;
                j += 1;
            }
            Some(o) => match tree_order(o, n) {
                Ordering::Less => i += 1,
                Ordering::Greater => {
                    out.push((*n, None));
                    j += 1;
                }
                Ordering::Equal => {
                    out.push((*n, Some(*o)));
                    i += 1;
                    j += 1;
                }
            },
            None => {
                out.push((*n, None));
                j += 1;
            }
        }
    }
    out
}

/// Length of the common prefix of two byte strings (compared in blocks).
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 64 <= n && a.get(i..i + 64) == b.get(i..i + 64) {
        i += 64;
    }
    while i < n && a.get(i) == b.get(i) {
        i += 1;
    }
    i
}

/// The entries both trees start with, as a length in bytes (whole entries).
fn shared_head(old: &[u8], new: &[u8], hash_len: usize) -> Option<usize> {
    let same = common_prefix(old, new);
    let mut at = 0;
    while at < new.len() {
        let (_, n) = entry(new.get(at..)?, hash_len)?;
        if at + n > same {
            break;
        }
        at += n;
    }
    Some(at)
}

/// [`changed`] straight from two trees' bytes, without decoding what they share: from the
/// first entry that differs, and once they are in step again after a difference, the rest
/// compared as bytes ends it when equal. `None` for malformed bytes.
pub(crate) fn changed_bytes<'a>(
    old: &'a [u8],
    new: &'a [u8],
    hash_len: usize,
) -> Option<Vec<(Entry<'a>, Option<Entry<'a>>)>> {
    let from = shared_head(old, new, hash_len)?;
    let (mut a, mut b) = (from, from);
    let mut out = Vec::new();
    let mut in_step = true;
    while let Some(rest) = new.get(b..).filter(|r| !r.is_empty()) {
        let (n, n_len) = entry(rest, hash_len)?;
        let Some(old_rest) = old.get(a..).filter(|r| !r.is_empty()) else {
            out.push((n, None));
            b += n_len;
            continue;
        };
        let (o, o_len) = entry(old_rest, hash_len)?;
        if o.raw == n.raw {
            if !in_step && old_rest == rest {
                break;
            }
            in_step = true;
            a += o_len;
            b += n_len;
            continue;
        }
        in_step = false;
        match tree_order(&o, &n) {
            Ordering::Less => a += o_len,
            Ordering::Greater => {
                out.push((n, None));
                b += n_len;
            }
            Ordering::Equal => {
                out.push((n, Some(o)));
                a += o_len;
                b += n_len;
            }
        }
    }
    Some(out)
}

/// Whether a tree's bytes may hold a `.gitattributes` entry (git reads one even from an
/// unsorted tree).
pub(crate) fn may_have_attributes(data: &[u8]) -> bool {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b" .gitattributes\0"));
    FINDER.find(data).is_some()
}

/// The `.gitattributes` entry of a tree (any mode but a directory's), as git reads it.
pub(crate) fn attr_entry<'a>(v: &[Entry<'a>]) -> Option<Entry<'a>> {
    v.iter().find(|e| e.name == b".gitattributes" && !e.is_tree()).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree's bytes from `(mode, name, id byte)`.
    fn tree(entries: &[(&str, &str, u8)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (mode, name, id) in entries {
            out.extend_from_slice(format!("{mode} {name}\0").as_bytes());
            out.extend_from_slice(&[*id; 20]);
        }
        out
    }

    fn names(c: &[(Entry<'_>, Option<Entry<'_>>)]) -> Vec<(String, bool)> {
        c.iter().map(|(n, o)| (String::from_utf8_lossy(n.name).into_owned(), o.is_some())).collect()
    }

    #[test]
    fn changed_entries_are_all_found_sorted_or_not() {
        let old = tree(&[("100644", "a", 1), ("40000", "d", 2), ("100644", "z", 3)]);
        let new = tree(&[("100644", "a", 1), ("40000", "d", 4), ("100644", "e", 5), ("100644", "z", 3)]);
        let (o, n) = (all_entries(&old, 20).unwrap(), all_entries(&new, 20).unwrap());
        assert_eq!(names(&changed(&o, &n)), [("d".to_string(), true), ("e".to_string(), false)]);
        // Compared from the first entry that differs: the same.
        let from = shared_head(&old, &new, 20).unwrap();
        assert_eq!(from, "100644 a\0".len() + 20);
        let (o2, n2) = (all_entries(&old[from..], 20).unwrap(), all_entries(&new[from..], 20).unwrap());
        assert_eq!(names(&changed(&o2, &n2)), names(&changed(&o, &n)));
        assert_eq!(names(&changed_bytes(&old, &new, 20).unwrap()), names(&changed(&o, &n)));
        // In step again after a difference: the rest is not decoded (a malformed tail that
        // both share changes nothing), but a difference after it is found.
        let tail = b"garbage that is no entry";
        let old_t = [tree(&[("100644", "a", 1), ("100644", "b", 2)]).as_slice(), tail].concat();
        let new_t = [tree(&[("100644", "a", 9), ("100644", "b", 2)]).as_slice(), tail].concat();
        assert_eq!(names(&changed_bytes(&old_t, &new_t, 20).unwrap()), [("a".to_string(), true)]);
        let old3 = tree(&[("100644", "a", 1), ("100644", "b", 2), ("100644", "c", 3), ("100644", "d", 4)]);
        let new3 = tree(&[("100644", "a", 9), ("100644", "b", 2), ("100644", "c", 3), ("100644", "d", 8)]);
        let got = names(&changed_bytes(&old3, &new3, 20).unwrap());
        assert_eq!(got, [("a".to_string(), true), ("d".to_string(), true)]);
        // A mode change is a change; an unsorted tree loses no entry (it may give more).
        let new = tree(&[("100755", "a", 1), ("100644", "z", 9), ("40000", "d", 2), ("100644", "b", 7)]);
        let n = all_entries(&new, 20).unwrap();
        let got = names(&changed(&o, &n));
        for name in ["a", "z", "b"] {
            assert!(got.iter().any(|(g, _)| g == name), "{name}: {got:?}");
        }
        // Malformed bytes are refused, not skipped.
        assert!(all_entries(b"100644 a\0short", 20).is_none());
        assert!(all_entries(b"10x644 a\0aaaaaaaaaaaaaaaaaaaa", 20).is_none());
        // git's order: a tree sorts as if its name ended in '/'.
        let bytes = tree(&[("40000", "a", 1), ("100644", "a.b", 2)]);
        let t = all_entries(&bytes, 20).unwrap();
        assert_eq!(tree_order(&t[1], &t[0]), Ordering::Less);
    }
}
