//! Reading a push's tree objects straight from its packs, keeping decoded delta bases.
//!
//! gix resolves every packed object from the bottom of its delta chain and caches only the
//! object asked for, never the bases on the way (and never a chain's undeltified base), so
//! reading the trees of a long history inflates each chain again for every tree on it: on a
//! 10,000-commit push with chains 50 deep that was most of the gate's time. git
//! keeps a cache of delta bases; this does the same for the packs of one object directory
//! (the quarantine during a push), with bounded memory. Anything it cannot resolve itself
//! (loose objects, bases in other packs, unusual entries, any decoding problem) is read
//! through the repository's own object store instead, so it never decides an outcome.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use gix::hash::oid;
use gix::object::Kind;
use gix::odb::pack;
use gix::odb::pack::data::entry::Header as EntryHeader;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

/// Decoded objects kept (results, undeltified bases, and checkpoints on chains).
const OBJECT_CACHE_BYTES: usize = 16 << 20;
/// Inflated delta instructions kept. A tree's delta is typically a hundred bytes, so this
/// holds tens of thousands, and rebuilding an evicted object then costs copies, not inflation.
const DELTA_CACHE_BYTES: usize = 8 << 20;
/// Besides the result, every this many steps up a chain the intermediate object is kept, and
/// rebuilding its neighbours later starts there. Keeping every intermediate object instead
/// filled the cache with old versions of far-away directories: on the 10,000-commit
/// benchmark push (chains 50 deep) 32 MiB inflated 9 times as many entries as there are,
/// while this, with the sizes above, inflates each about once.
const CHECKPOINT: usize = 8;
/// Objects bigger than this are left to the object store (trees are far smaller).
const MAX_OBJECT_BYTES: u64 = 16 << 20;
/// Longer delta chains (git's default limit is 50, `--depth` allows up to 4095) are left to
/// the object store; this also ends any cycle.
const MAX_CHAIN: usize = 5000;
/// More packs than this in the directory: leave everything to the object store.
const MAX_PACKS: usize = 256;

/// Packs of one object directory plus a cache of decoded objects, falling back to `store`.
pub struct PackedObjects<'s> {
    store: &'s gix::OdbHandle,
    hash: gix::hash::Kind,
    packs: Vec<Pack>,
    state: RefCell<State>,
}

struct Pack {
    index: pack::index::File,
    data: pack::data::File,
}

struct State {
    cache: Cache<Obj>,
    /// Inflated delta instructions: re-applying a chain is cheap, inflating it is not.
    deltas: Cache<Vec<u8>>,
    inflate: gix::zlib::Inflate,
    /// Delta entries waiting for their base: the object asked for first, the one nearest
    /// the base last.
    chain: Vec<pack::data::Entry>,
    stats: Stats,
}

/// What a [`PackedObjects`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Objects decoded from the packs (or their cache).
    pub decoded: u64,
    /// Objects read through the object store instead.
    pub from_store: u64,
    /// Pack entries inflated.
    pub inflated: u64,
}

/// A decoded object.
pub struct Obj {
    pub kind: Kind,
    pub data: Vec<u8>,
}

impl<'s> PackedObjects<'s> {
    /// Read the packs (`*.idx` with their `*.pack`) of `objects_dir`; unreadable packs are
    /// skipped (their objects come from `store`).
    pub fn open(objects_dir: Option<&Path>, store: &'s gix::OdbHandle, hash: gix::hash::Kind) -> PackedObjects<'s> {
        let dirs: Vec<&Path> = objects_dir.into_iter().collect();
        PackedObjects::open_dirs(&dirs, store, hash)
    }

    /// [`PackedObjects::open`] on the packs of several object directories (a repository and
    /// its alternates: a fork's history is in the packs of the repository it shares them with).
    pub fn open_dirs(dirs: &[&Path], store: &'s gix::OdbHandle, hash: gix::hash::Kind) -> PackedObjects<'s> {
        let mut packs = Vec::new();
        let mut idx: Vec<std::path::PathBuf> = Vec::new();
        for dir in dirs {
            let mut here: Vec<_> = std::fs::read_dir(dir.join("pack"))
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "idx"))
                .collect();
            here.sort();
            idx.extend(here);
        }
        if idx.len() <= MAX_PACKS {
            for i in idx {
                let (Ok(index), Ok(data)) =
                    (pack::index::File::at(&i, hash), pack::data::File::at(i.with_extension("pack"), hash))
                else {
                    continue;
                };
                // An index that does not describe this very pack file would give wrong objects.
                if index.num_objects() == data.num_objects() && index.pack_checksum() == data.checksum() {
                    packs.push(Pack { index, data });
                }
            }
        }
        PackedObjects {
            store,
            hash,
            packs,
            state: RefCell::new(State {
                cache: Cache::new(OBJECT_CACHE_BYTES),
                deltas: Cache::new(DELTA_CACHE_BYTES),
                inflate: gix::zlib::Inflate::default(),
                chain: Vec::new(),
                stats: Stats::default(),
            }),
        }
    }

    /// Number of packs read directly.
    pub fn packs(&self) -> usize {
        self.packs.len()
    }

    /// What it has done so far.
    pub fn stats(&self) -> Stats {
        self.state.borrow().stats
    }

    /// Decode `id` from the packs into `out`; `None` when it is not in them or cannot be
    /// decoded here.
    fn find_packed(&self, id: &oid, out: &mut Vec<u8>) -> Option<Kind> {
        let obj = self.packed(id)?;
        out.clear();
        out.extend_from_slice(&obj.data);
        Some(obj.kind)
    }

    /// `id` decoded from the packs, shared with the cache (no copy).
    fn packed(&self, id: &oid) -> Option<Rc<Obj>> {
        let (p, offset) = self.packs.iter().enumerate().find_map(|(n, p)| {
            let i = p.index.lookup(id)?;
            Some((n, p.index.pack_offset_at_index(i)))
        })?;
        let mut state = self.state.borrow_mut();
        self.resolve(&mut state, p, offset)
    }

    /// The object `id`, from the packs or else the object store; `None` when it is missing.
    pub fn object(&self, id: &oid) -> anyhow::Result<Option<Rc<Obj>>> {
        use gix::objs::Find;
        if let Some(o) = self.packed(id) {
            self.state.borrow_mut().stats.decoded += 1;
            return Ok(Some(o));
        }
        self.state.borrow_mut().stats.from_store += 1;
        let mut buf = Vec::new();
        let found = self.store.try_find(id, &mut buf).map_err(|e| anyhow::anyhow!("cannot read object {id}: {e}"))?;
        Ok(found.map(|d| Rc::new(Obj { kind: d.kind, data: d.data.to_vec() })))
    }

    /// Every object id in the packs read directly.
    pub fn pack_ids(&self) -> impl Iterator<Item = gix::ObjectId> + '_ {
        self.packs.iter().flat_map(|p| p.index.iter().map(|e| e.oid))
    }

    /// The object at `offset` of pack `p`, from the cache or decoded.
    fn resolve(&self, state: &mut State, p: usize, offset: u64) -> Option<Rc<Obj>> {
        let pack = self.packs.get(p)?;
        let State { cache, deltas, inflate, chain, stats } = state;
        chain.clear();
        let mut cursor = offset;
        let mut base = loop {
            if let Some(hit) = cache.get(p, cursor) {
                break hit;
            }
            if chain.len() >= MAX_CHAIN {
                return None;
            }
            let entry = pack.data.entry(cursor).ok()?;
            if entry.decompressed_size > MAX_OBJECT_BYTES {
                return None;
            }
            let next = match &entry.header {
                EntryHeader::OfsDelta { base_distance } => entry.checked_base_pack_offset(*base_distance)?,
                // Thin-pack bases are appended to the pack by `index-pack --fix-thin`; a
                // base elsewhere is left to the store.
                EntryHeader::RefDelta { base_id } => pack.index.pack_offset_at_index(pack.index.lookup(base_id)?),
                h => {
                    let kind = h.as_kind()?;
                    let mut data = vec![0; usize::try_from(entry.decompressed_size).ok()?];
                    pack.data.decompress_entry(&entry, inflate, &mut data).ok()?;
                    stats.inflated += 1;
                    let obj = Rc::new(Obj { kind, data });
                    cache.put(p, cursor, obj.clone());
                    break obj;
                }
            };
            chain.push(entry);
            cursor = next;
        };
        let steps = chain.len();
        while let Some(entry) = chain.pop() {
            let at = entry.pack_offset();
            let step = steps - chain.len();
            let delta = match deltas.get(p, at) {
                Some(d) => d,
                None => {
                    let mut d = vec![0; usize::try_from(entry.decompressed_size).ok()?];
                    pack.data.decompress_entry(&entry, inflate, &mut d).ok()?;
                    stats.inflated += 1;
                    let d = Rc::new(d);
                    deltas.put(p, at, d.clone());
                    d
                }
            };
            let data = apply_delta(&base.data, &delta, MAX_OBJECT_BYTES)?;
            let obj = Rc::new(Obj { kind: base.kind, data });
            if step % CHECKPOINT == 0 || step == steps {
                cache.put(p, at, obj.clone());
            }
            base = obj;
        }
        Some(base)
    }
}

impl gix::objs::Find for PackedObjects<'_> {
    fn try_find<'a>(&self, id: &oid, buffer: &'a mut Vec<u8>) -> gix::error::Result<Option<gix::objs::Data<'a>>> {
        if let Some(kind) = self.find_packed(id, buffer) {
            self.state.borrow_mut().stats.decoded += 1;
            return Ok(Some(gix::objs::Data { kind, object_hash: self.hash, data: buffer }));
        }
        self.state.borrow_mut().stats.from_store += 1;
        self.store.try_find(id, buffer)
    }
}

/// Apply a git delta (`data`: base size, result size, then copy and insert instructions)
/// to `base`. `None` for anything malformed or a result over `max` bytes.
pub(crate) fn apply_delta(base: &[u8], data: &[u8], max: u64) -> Option<Vec<u8>> {
    let mut i = 0usize;
    let base_size = varint(data, &mut i)?;
    let result_size = varint(data, &mut i)?;
    if base_size != base.len() as u64 || result_size > max {
        return None;
    }
    let mut out = Vec::with_capacity(usize::try_from(result_size).ok()?);
    while let Some(&cmd) = data.get(i) {
        i += 1;
        if cmd & 0x80 != 0 {
            let mut ofs = 0usize;
            let mut size = 0usize;
            for bit in 0..7 {
                if cmd & (1 << bit) != 0 {
                    let b = usize::from(*data.get(i)?);
                    i += 1;
                    if bit < 4 {
                        ofs |= b << (8 * bit);
                    } else {
                        size |= b << (8 * (bit - 4));
                    }
                }
            }
            if size == 0 {
                size = 0x10000;
            }
            out.extend_from_slice(base.get(ofs..ofs.checked_add(size)?)?);
        } else if cmd != 0 {
            let end = i.checked_add(usize::from(cmd))?;
            out.extend_from_slice(data.get(i..end)?);
            i = end;
        } else {
            return None;
        }
        if out.len() as u64 > result_size {
            return None;
        }
    }
    (out.len() as u64 == result_size).then_some(out)
}

/// A delta header size: little-endian base-128.
fn varint(data: &[u8], i: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*i)?;
        *i += 1;
        v |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Values by pack and offset in two generations: hits move to the current one, and when it
/// holds half the budget the older one is dropped (an approximate LRU).
struct Cache<V> {
    current: HashMap<(usize, u64), Rc<V>, FastHash>,
    older: HashMap<(usize, u64), Rc<V>, FastHash>,
    bytes: usize,
    cap: usize,
}

/// A multiply-and-rotate hasher for pack offsets (keys come from the pack index, not from
/// anyone who could aim collisions at it, and SipHash was a tenth of the walk).
#[derive(Default, Clone, Copy)]
struct FastHash;

impl std::hash::BuildHasher for FastHash {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher(0)
    }
}

struct FastHasher(u64);

impl std::hash::Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

/// Bytes a cached value holds.
trait Weight {
    fn weight(&self) -> usize;
}

impl Weight for Obj {
    fn weight(&self) -> usize {
        self.data.len() + 64
    }
}

impl Weight for Vec<u8> {
    fn weight(&self) -> usize {
        self.len() + 48
    }
}

impl<V: Weight> Cache<V> {
    fn new(cap: usize) -> Cache<V> {
        Cache { current: HashMap::default(), older: HashMap::default(), bytes: 0, cap }
    }

    fn get(&mut self, p: usize, offset: u64) -> Option<Rc<V>> {
        if let Some(o) = self.current.get(&(p, offset)) {
            return Some(o.clone());
        }
        let o = self.older.remove(&(p, offset))?;
        self.put(p, offset, o.clone());
        Some(o)
    }

    fn put(&mut self, p: usize, offset: u64, v: Rc<V>) {
        let size = v.weight();
        if size > self.cap / 4 {
            return;
        }
        if self.bytes + size > self.cap / 2 {
            self.older = std::mem::take(&mut self.current);
            self.bytes = 0;
        }
        self.bytes += size;
        self.current.insert((p, offset), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_copy_and_insert_and_reject_malformed_input() {
        let base = b"hello, world";
        // Base 12 bytes, result 11: copy "hello" (offset 0, size 5), insert " you", insert "!!".
        let delta = [12, 11, 0x90, 5, 4, b' ', b'y', b'o', b'u', 2, b'!', b'!'];
        assert_eq!(apply_delta(base, &delta, 100).as_deref(), Some(&b"hello you!!"[..]));
        // Copy with an offset: "world" (ofs 7, size 5).
        assert_eq!(apply_delta(base, &[12, 5, 0x91, 7, 5], 100).as_deref(), Some(&b"world"[..]));
        // Wrong base size, result bigger than declared or than the limit, copy out of range,
        // truncated instructions, the reserved command 0, a result shorter than declared.
        for bad in [
            &[11u8, 5, 0x91, 7, 5][..],
            &[12, 4, 0x91, 7, 5],
            &[12, 5, 0x91, 9, 5],
            &[12, 5, 0x91, 7],
            &[12, 5, 3, b'a'],
            &[12, 1, 0],
            &[12, 6, 0x91, 7, 5],
            &[12, 0x80],
        ] {
            assert_eq!(apply_delta(base, bad, 100), None, "{bad:?}");
        }
        assert_eq!(apply_delta(base, &[12, 5, 0x91, 7, 5], 4), None);
        // A size of zero means 0x10000.
        let big = vec![7u8; 0x10000];
        let out = apply_delta(&big, &[0x80, 0x80, 4, 0x80, 0x80, 4, 0x80], 1 << 20).unwrap();
        assert_eq!(out, big);
    }

    #[test]
    fn cache_keeps_recent_objects_within_its_budget() {
        let mut c = Cache::<Obj>::new(4096);
        let obj = |n: usize| Rc::new(Obj { kind: Kind::Tree, data: vec![0; n] });
        c.put(0, 1, obj(500));
        c.put(0, 2, obj(500));
        assert!(c.get(0, 1).is_some());
        for i in 10..100 {
            c.put(0, i, obj(500));
            assert!(c.bytes <= 2048 && c.current.len() + c.older.len() <= 8);
        }
        assert!(c.get(0, 2).is_none());
        assert!(c.get(0, 99).is_some());
        c.put(1, 1, obj(2000));
        assert!(c.get(1, 1).is_none(), "objects over a quarter of the budget are not kept");
    }
}
