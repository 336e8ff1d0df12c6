//! Reading blobs: size from the object header first, small blobs into memory through gix,
//! big ones streamed by `git cat-file` into a temporary file without a name (gix can only load
//! a whole object into memory).

use anyhow::{anyhow, bail, Context, Result};
use gix::objs::Find;
use gix::odb::Header;
use gix::ObjectId;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::source::{BytesSource, FileSource, Source};

/// Reads blobs of one repository view on one thread.
pub struct BlobReader {
    odb: gix::odb::Handle,
    git_dir: PathBuf,
    big: u64,
    buf: Vec<u8>,
    /// The object store refuses allocations of `big` bytes or more.
    limited: bool,
}

/// A blob's bytes, ready to scan.
pub struct ReadBlob {
    pub size: u64,
    pub source: Arc<dyn Source>,
    /// True when the blob was streamed to a temporary file.
    pub streamed: bool,
    /// The bytes, when they are in memory (the same as `source`).
    pub memory: Option<Arc<BytesSource>>,
}

impl BlobReader {
    /// `big`: blobs of at least this many bytes are streamed instead of loaded.
    pub fn new(mut odb: gix::odb::Handle, git_dir: &Path, big: u64) -> BlobReader {
        odb.set_pack_cache(|| Box::new(DeltaBases::default()));
        BlobReader { odb, git_dir: git_dir.to_path_buf(), big, buf: Vec::new(), limited: false }
    }

    /// A reader on its own object store for `objects_dir` (and its alternates), which refuses
    /// to allocate `big` bytes or more for any object: [`BlobReader::try_read_small`] then
    /// needs no header lookup first.
    pub fn at(objects_dir: &Path, kind: gix::hash::Kind, git_dir: &Path, big: u64) -> std::io::Result<BlobReader> {
        let limit = usize::try_from(big.saturating_sub(1)).unwrap_or(usize::MAX);
        let options = gix::odb::store::init::Options { alloc_limit_bytes: Some(limit), ..Default::default() };
        let odb = gix::odb::at_opts(objects_dir, kind, None, options)?;
        let mut reader = BlobReader::new(odb, git_dir, big);
        reader.limited = true;
        Ok(reader)
    }

    /// The blob in memory when it is smaller than `big`, in one lookup; `None` when it is
    /// not (or gix could not load it within the limit): then [`BlobReader::size`] and
    /// [`BlobReader::read_sized`] decide. Fails for missing objects and non-blobs.
    pub fn try_read_small(&mut self, id: &ObjectId) -> Result<Option<ReadBlob>> {
        if !self.limited {
            return Ok(None);
        }
        let mut buf = std::mem::take(&mut self.buf);
        let (kind, start, len) = match self.odb.try_find(id, &mut buf) {
            // Over the allocation limit (or unreadable by gix): the header decides.
            Err(_) => {
                self.buf = buf;
                return Ok(None);
            }
            Ok(None) => {
                self.buf = buf;
                bail!("object {id} is missing");
            }
            Ok(Some(data)) => (data.kind, data.data.as_ptr() as usize, data.data.len()),
        };
        if kind != gix::object::Kind::Blob {
            self.buf = buf;
            bail!("object {id} is a {kind}, not a blob");
        }
        // The object is in the buffer (gix decodes into it): keep it without a copy.
        let at = start.wrapping_sub(buf.as_ptr() as usize);
        if at.checked_add(len).is_some_and(|end| end <= buf.len()) {
            buf.truncate(at + len);
            buf.drain(..at);
            return Ok(Some(self.in_memory(buf)));
        }
        // Elsewhere (not gix's way today): the header decides.
        self.buf = buf;
        Ok(None)
    }

    fn in_memory(&self, data: Vec<u8>) -> ReadBlob {
        let memory = Arc::new(BytesSource(data));
        ReadBlob { size: memory.0.len() as u64, source: memory.clone(), streamed: false, memory: Some(memory) }
    }

    /// Size of a blob without inflating it; fails for missing objects and non-blobs.
    pub fn size(&self, id: &ObjectId) -> Result<u64> {
        let h = self.odb.try_header(id).map_err(|e| anyhow!("cannot read object {id}: {e}"))?;
        let h = h.ok_or_else(|| anyhow!("object {id} is missing"))?;
        if h.kind() != gix::object::Kind::Blob {
            bail!("object {id} is a {}, not a blob", h.kind());
        }
        Ok(h.size())
    }

    /// The blob's bytes: in memory below the threshold, else in a temporary file.
    pub fn read(&mut self, id: &ObjectId) -> Result<ReadBlob> {
        self.read_with(id, &|| Ok(()))
    }

    /// [`BlobReader::read`], calling `check` between chunks of a streamed blob: an error
    /// from it (a cancelled or over-budget judgement) stops the stream and `git cat-file`.
    pub fn read_with(&mut self, id: &ObjectId, check: &dyn Fn() -> std::io::Result<()>) -> Result<ReadBlob> {
        let size = self.size(id)?;
        self.read_sized(id, size, check)
    }

    /// [`BlobReader::read_with`] for a blob whose size [`BlobReader::size`] just gave (each
    /// header lookup is a search of every pack index: a visible cost over many small blobs).
    pub fn read_sized(
        &mut self,
        id: &ObjectId,
        size: u64,
        check: &dyn Fn() -> std::io::Result<()>,
    ) -> Result<ReadBlob> {
        if size >= self.big {
            let source = self.stream(id, size, check)?;
            return Ok(ReadBlob { size, source, streamed: true, memory: None });
        }
        let data = match self.odb.try_find(id, &mut self.buf) {
            Ok(d) => d,
            // A delta base over the allocation limit: git reads it, the blob itself is small.
            Err(_) if self.limited => {
                let source = self.stream(id, size, check)?;
                let data = crate::source::read_up_to(source.as_ref(), 0, usize::try_from(size).unwrap_or(usize::MAX))?;
                return Ok(self.in_memory(data));
            }
            Err(e) => bail!("cannot read blob {id}: {e}"),
        };
        let data = data.ok_or_else(|| anyhow!("blob {id} is missing"))?;
        if data.kind != gix::object::Kind::Blob || data.data.len() as u64 != size {
            bail!("blob {id} changed while it was read");
        }
        let data = data.data.to_vec();
        Ok(self.in_memory(data))
    }

    /// Stream a big blob through `git cat-file` into a temporary file that has no name (or
    /// loses it as soon as it is created), so that nothing is left on disk whatever happens
    /// to the judgement: an error, a cancellation, a worker abandoned at its time budget
    /// while the hook exits, or the process being killed. The file goes with its last handle.
    fn stream(&self, id: &ObjectId, size: u64, check: &dyn Fn() -> std::io::Result<()>) -> Result<Arc<dyn Source>> {
        let mut file = tempfile::tempfile().context("cannot create a temporary file")?;
        let mut errors = tempfile::tempfile().context("cannot create a temporary file")?;
        // `--no-replace-objects`: replace refs must not change which bytes are scanned.
        let mut child = Command::new("git")
            .arg("--git-dir")
            .arg(&self.git_dir)
            .args(["--no-replace-objects", "cat-file", "blob"])
            .arg(id.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(errors.try_clone()?)
            .spawn()
            .context("cannot run git cat-file")?;
        // Read the pipe here rather than letting git write the file: if this process goes
        // away, git's next write fails and it ends too.
        let copied = match child.stdout.take() {
            Some(mut out) => copy_checked(&mut out, &mut file, size, check),
            None => Err(anyhow!("no output from git cat-file")),
        };
        if copied.is_err() {
            let _ = child.kill();
        }
        let status = child.wait().context("cannot run git cat-file")?;
        let copied = copied.with_context(|| format!("cannot stream blob {id}"))?;
        if !status.success() {
            let mut msg = Vec::new();
            errors.seek(SeekFrom::Start(0))?;
            let _ = (&mut errors).take(4096).read_to_end(&mut msg);
            bail!("git cat-file failed for {id}: {}", String::from_utf8_lossy(&msg).trim());
        }
        if copied != size {
            bail!("git cat-file gave {copied} bytes for blob {id} of {size} bytes");
        }
        Ok(Arc::new(FileSource::from_file(file)?))
    }
}

/// Decoded pack entries kept by a [`BlobReader`]'s object store. gix resolves a deltified
/// object from the nearest entry of its chain found here, and keeps each object it decodes:
/// without it every blob read inflates its whole delta chain again (up to 50 deep after `git
/// gc`), so reading the blobs of a history costs the square of its chains. Read in pack
/// order (bases are written before their deltas), each blob costs one inflation. `get`
/// returns the kind and the entry's compressed size, as gix's own caches do.
#[derive(Default)]
struct DeltaBases {
    /// `(kind, compressed size, data)` by pack and offset.
    current: std::collections::HashMap<(u32, u64), (gix::object::Kind, usize, Vec<u8>)>,
    older: std::collections::HashMap<(u32, u64), (gix::object::Kind, usize, Vec<u8>)>,
    bytes: usize,
}

impl DeltaBases {
    /// Bytes kept in each of the two generations (the older one is dropped when the current
    /// one is full: an approximate LRU of at most twice this).
    const GENERATION: usize = 8 << 20;

    fn insert(&mut self, key: (u32, u64), kind: gix::object::Kind, compressed: usize, data: Vec<u8>) {
        if data.len() > Self::GENERATION / 4 {
            return;
        }
        if self.bytes + data.len() > Self::GENERATION {
            self.older = std::mem::take(&mut self.current);
            self.bytes = 0;
        }
        self.bytes += data.len();
        self.current.insert(key, (kind, compressed, data));
    }
}

impl gix::odb::pack::cache::DecodeEntry for DeltaBases {
    fn put(&mut self, pack_id: u32, offset: u64, data: &[u8], kind: gix::object::Kind, compressed: usize) {
        if data.len() <= Self::GENERATION / 4 {
            self.insert((pack_id, offset), kind, compressed, data.to_vec());
        }
    }

    fn get(&mut self, pack_id: u32, offset: u64, out: &mut Vec<u8>) -> Option<(gix::object::Kind, usize)> {
        let key = (pack_id, offset);
        if let Some((kind, compressed, data)) = self.current.get(&key) {
            out.clear();
            out.extend_from_slice(data);
            return Some((*kind, *compressed));
        }
        let (kind, compressed, data) = self.older.remove(&key)?;
        out.clear();
        out.extend_from_slice(&data);
        self.insert(key, kind, compressed, data);
        Some((kind, compressed))
    }
}

/// Copy `from` to `to` in chunks, calling `check` before each; at most `max` bytes.
fn copy_checked(
    from: &mut dyn Read,
    to: &mut dyn Write,
    max: u64,
    check: &dyn Fn() -> std::io::Result<()>,
) -> Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        check()?;
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        total += n as u64;
        if total > max {
            bail!("more than the blob's {max} bytes");
        }
        to.write_all(buf.get(..n).unwrap_or_default())?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_stop_on_a_failed_check_and_past_the_size() {
        let data = vec![7u8; 3 << 20];
        let mut out = Vec::new();
        assert_eq!(copy_checked(&mut &data[..], &mut out, 3 << 20, &|| Ok(())).unwrap(), 3 << 20);
        assert_eq!(out, data);
        let calls = std::cell::Cell::new(0);
        let cancel_second = || {
            calls.set(calls.get() + 1);
            if calls.get() > 1 {
                Err(std::io::Error::other("cancelled"))
            } else {
                Ok(())
            }
        };
        let mut out = Vec::new();
        let e = copy_checked(&mut &data[..], &mut out, 3 << 20, &cancel_second).unwrap_err();
        assert!(e.to_string().contains("cancelled"), "{e}");
        assert_eq!(out.len(), 1 << 20, "stopped after the first chunk");
        assert!(copy_checked(&mut &data[..], &mut Vec::new(), (3 << 20) - 1, &|| Ok(())).is_err());
    }
}
