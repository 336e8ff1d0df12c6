//! 7z archives (the nullifAI campaign packed PyTorch checkpoints in 7z so that scanners skipped
//! them). Decoded with `sevenz-rust2` under a memory limit; each member is buffered (within
//! `max_buffered_bytes`, charged to the expansion budget) and handed back to the dispatcher.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use crate::detect::Format;
use crate::engine::{Hint, Scan};
use crate::finding::{CodeInfo, Finding, Severity};
use crate::formats::zip::{unsafe_path, Notes};
use crate::source::{BytesSource, Data, Source};
use sevenz_rust2::{ArchiveReader, EntryDecision, Password};
use std::collections::HashSet;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;

pub const CODES: &[CodeInfo] = &[
    CodeInfo {
        code: "sevenz-unreadable",
        severity: Severity::Error,
        summary: "a 7z archive could not be opened (damaged, encrypted or using an unsupported method)",
        fix: "unpack the archive and push the model files themselves",
    },
    CodeInfo {
        code: "sevenz-corrupt",
        severity: Severity::Error,
        summary: "a 7z archive's data could not be decoded completely; members after the damage were not scanned",
        fix: "re-create the archive, or push the model files themselves",
    },
    CodeInfo {
        code: "sevenz-member-too-large",
        severity: Severity::Error,
        summary: "a 7z member is larger than the in-memory budget; only its beginning was scanned",
        fix: "push the model file itself rather than a 7z archive of it",
    },
    CodeInfo {
        code: "sevenz-member-unscanned",
        severity: Severity::Error,
        summary: "a 7z member was not decoded, so its content could not be judged",
        fix: "unpack the archive and push the model files themselves",
    },
    CodeInfo {
        code: "sevenz-too-many-members",
        severity: Severity::Error,
        summary: "the 7z archive holds more members than the scan budget allows; the rest were not scanned",
        fix: "split the archive, or raise max_members in the policy if the file is trusted",
    },
    CodeInfo {
        code: "sevenz-path-traversal",
        severity: Severity::Dangerous,
        summary: "a 7z member name escapes the extraction folder (`..`, absolute path or drive letter)",
        fix: "do not extract this archive; rename the members to relative paths",
    },
];

/// `Read + Seek` over a [`Source`].
struct SourceReader {
    src: Arc<dyn Source>,
    pos: u64,
}

impl Read for SourceReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.src.read_at(self.pos, buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SourceReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let base = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.src.len().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = base.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek out of range"))?;
        Ok(self.pos)
    }
}

/// A member's decoder, charging the file's expansion budget as it decodes; past it, reads fail
/// with `OutOfMemory` (what decoded before is still scanned).
struct Charged<'s, 'o, R> {
    inner: R,
    scan: &'s Scan<'o>,
    spent: bool,
}

impl<R: Read> Read for Charged<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.spent {
            return Err(io::Error::new(io::ErrorKind::OutOfMemory, "decompression budget exceeded"));
        }
        let n = self.inner.read(buf)?;
        if !self.scan.expand(n as u64) {
            self.spent = true;
        }
        Ok(n)
    }
}

/// Scan a 7z archive; every member is handed back to the dispatcher.
pub fn scan(scan: &mut Scan<'_>, src: Arc<dyn Source>) -> Format {
    scan.mark_model();
    let memory_kb = usize::try_from(scan.opts.max_buffered_bytes / 1024).unwrap_or(usize::MAX).max(64 << 10);
    let reader = io::BufReader::new(SourceReader { src, pos: 0 });
    let mut archive = match ArchiveReader::new_with_memory_limit(reader, Password::empty(), memory_kb) {
        Ok(a) => a,
        Err(e) => {
            scan.finding(Finding::new(
                "sevenz-unreadable",
                Severity::Error,
                format!("cannot open the 7z archive: {e}"),
            ));
            return Format::SevenZip;
        }
    };
    archive.set_thread_count(1);

    let mut notes = Notes::default();
    let files = &archive.archive().files;
    // The member budget is the file's: every archive of every nesting level draws on it.
    let listed = files.len() as u64;
    let max = usize::try_from(scan.take_members(listed)).unwrap_or(usize::MAX);
    if files.len() > max {
        scan.finding(Finding::new(
            "sevenz-too-many-members",
            Severity::Error,
            format!(
                "{} members, more than the {} members left of this file's budget; the rest were not scanned",
                files.len(),
                max
            ),
        ));
    }
    for f in files.iter().take(max) {
        if let Some(why) = unsafe_path(&f.name) {
            notes.add(
                scan,
                Finding::new(
                    "sevenz-path-traversal",
                    Severity::Dangerous,
                    format!("member name has {why}: extracting it writes outside the target folder"),
                )
                .member(f.name.clone()),
            );
        }
    }
    let want: Vec<String> =
        files.iter().take(max).filter(|f| f.has_stream && !f.is_directory).map(|f| f.name.clone()).collect();

    let cap = scan.opts.max_buffered_bytes;
    let mut seen = HashSet::new();
    let mut handed = 0usize;
    let mut budget_spent = false;
    let result = archive.for_each_entries_with_decision(|entry, r| {
        if handed >= max {
            return Ok(EntryDecision::Stop);
        }
        if entry.is_directory || !entry.has_stream {
            return Ok(EntryDecision::Continue);
        }
        handed += 1;
        seen.insert(entry.name.clone());
        // Each member is held in memory while it is scanned, counted against the file's
        // budget of bytes held at once (nested archives each hold theirs).
        // Decoded bytes count against the file's expansion budget as they are decoded.
        let charged = Charged { inner: Read::take(&mut *r, cap), scan: &*scan, spent: false };
        let (buf, whole, spent) = match scan.buffer(charged, Some(entry.size)) {
            crate::engine::Buffered::Whole(buf) => {
                let mut probe = [0u8; 1];
                let whole = buf.len() < cap || r.read(&mut probe)? == 0;
                (buf, whole, false)
            }
            crate::engine::Buffered::Over(head, _) => (Arc::new(BytesSource(head)) as Arc<dyn Source>, false, false),
            crate::engine::Buffered::Failed(buf, e) => {
                if e.kind() != io::ErrorKind::OutOfMemory {
                    return Err(e.into());
                }
                (buf, false, true)
            }
        };
        if spent {
            budget_spent = true;
        } else if !whole {
            notes.add(
                scan,
                Finding::new(
                    "sevenz-member-too-large",
                    Severity::Error,
                    format!(
                        "member is larger than the bytes that may be held in memory for this file; only its first {} bytes were scanned",
                        buf.len()
                    ),
                )
                .member(entry.name.clone()),
            );
        }
        scan.member(&entry.name, Data::Random(buf), Hint::Sniff);
        if budget_spent {
            return Ok(EntryDecision::Stop);
        }
        // The rest of an oversized member would only be decoded to be thrown away.
        Ok(if whole { EntryDecision::Continue } else { EntryDecision::SkipBlock })
    });
    if let Err(e) = result {
        scan.finding(Finding::new("sevenz-corrupt", Severity::Error, format!("cannot decode the 7z data: {e}")));
    }
    if !budget_spent {
        for name in want.iter().filter(|n| !seen.contains(*n)) {
            notes.add(
                scan,
                Finding::new("sevenz-member-unscanned", Severity::Error, "member was not decoded").member(name.clone()),
            );
        }
    }
    notes.flush(scan);
    Format::SevenZip
}
