//! Reading blobs: size from the object header first, small blobs into memory through gix,
//! big ones streamed by `git cat-file` into an unlinked temporary file (gix can only load a
//! whole object into memory).

use anyhow::{anyhow, bail, Context, Result};
use gix::objs::Find;
use gix::odb::Header;
use gix::ObjectId;
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
}

/// A blob's bytes, ready to scan.
pub struct ReadBlob {
    pub size: u64,
    pub source: Arc<dyn Source>,
    /// True when the blob was streamed to a temporary file.
    pub streamed: bool,
}

impl BlobReader {
    /// `big`: blobs of at least this many bytes are streamed instead of loaded.
    pub fn new(odb: gix::odb::Handle, git_dir: &Path, big: u64) -> BlobReader {
        BlobReader { odb, git_dir: git_dir.to_path_buf(), big, buf: Vec::new() }
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
        let size = self.size(id)?;
        if size >= self.big {
            let source = self.stream(id, size)?;
            return Ok(ReadBlob { size, source, streamed: true });
        }
        let data = self.odb.try_find(id, &mut self.buf).map_err(|e| anyhow!("cannot read blob {id}: {e}"))?;
        let data = data.ok_or_else(|| anyhow!("blob {id} is missing"))?;
        if data.kind != gix::object::Kind::Blob || data.data.len() as u64 != size {
            bail!("blob {id} changed while it was read");
        }
        Ok(ReadBlob { size, source: Arc::new(BytesSource(data.data.to_vec())), streamed: false })
    }

    /// Stream a big blob into an unlinked temporary file outside the repository.
    fn stream(&self, id: &ObjectId, size: u64) -> Result<Arc<dyn Source>> {
        let tmp =
            tempfile::Builder::new().prefix("modelgate-blob-").tempfile().context("cannot create a temporary file")?;
        let out = tmp.reopen()?;
        // `--no-replace-objects`: replace refs must not change which bytes are scanned.
        let status = Command::new("git")
            .arg("--git-dir")
            .arg(&self.git_dir)
            .args(["--no-replace-objects", "cat-file", "blob"])
            .arg(id.to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::piped())
            .output()
            .context("cannot run git cat-file")?;
        if !status.status.success() {
            bail!("git cat-file failed for {id}: {}", String::from_utf8_lossy(&status.stderr).trim());
        }
        let src = FileSource::open(tmp.path()).context("cannot reopen the temporary file")?;
        // The open handle keeps the data; the name goes now.
        drop(tmp);
        if src.len() != size {
            bail!("git cat-file gave {} bytes for blob {id} of {size} bytes", src.len());
        }
        Ok(Arc::new(src))
    }
}
