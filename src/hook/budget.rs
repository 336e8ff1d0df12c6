//! Budgets of one push: bytes read per file and per push, and a way to stop a scan that
//! was abandoned. Every byte a scan reads goes through a [`Guarded`] source; past a budget,
//! or once cancelled, its reads fail, so the parser stops at its next read.

use crate::source::Source;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Time and byte budgets, and the size limit, of the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Time one file's judgement may take (reading, verifying, scanning).
    pub file_timeout: Option<Duration>,
    /// Time all judgements of one push may take together.
    pub push_timeout: Option<Duration>,
    /// Bytes one file's judgement may read.
    pub file_read_bytes: Option<u64>,
    /// Bytes all judgements of one push may read together.
    pub push_read_bytes: Option<u64>,
    /// Files (or LFS objects) above this size are not scanned (`file-too-large`).
    pub max_file_size: Option<u64>,
    /// Worker threads; 0: one per core.
    pub jobs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let p = crate::policy::GateSettings::default();
        Limits {
            file_timeout: Some(p.file_timeout),
            push_timeout: Some(p.push_timeout),
            file_read_bytes: Some(p.max_file_read_bytes),
            push_read_bytes: Some(p.max_push_read_bytes),
            max_file_size: p.max_file_size,
            jobs: 0,
        }
    }
}

/// Bytes read by every scan of one push.
#[derive(Debug)]
pub struct PushMeter {
    read: AtomicU64,
    max: u64,
}

impl PushMeter {
    pub fn new(max: Option<u64>) -> PushMeter {
        PushMeter { read: AtomicU64::new(0), max: max.unwrap_or(u64::MAX) }
    }

    /// Whether the push has read more than its budget.
    #[cfg(test)]
    fn exhausted(&self) -> bool {
        self.read.load(Ordering::Relaxed) > self.max
    }
}

/// Why a file's reads were stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    FileBytes,
    PushBytes,
    Cancelled,
}

/// The budget state of one file's judgement.
#[derive(Debug)]
pub struct FileMeter {
    read: AtomicU64,
    max: u64,
    push: Arc<PushMeter>,
    cancelled: AtomicBool,
    /// 0: running; else the first [`Stop`] that hit.
    stop: AtomicU8,
}

impl FileMeter {
    pub fn new(max: Option<u64>, push: Arc<PushMeter>) -> FileMeter {
        FileMeter {
            read: AtomicU64::new(0),
            max: max.unwrap_or(u64::MAX),
            push,
            cancelled: AtomicBool::new(false),
            stop: AtomicU8::new(0),
        }
    }

    /// Make every further read fail (the judgement was abandoned).
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
        let _ = self.stop.compare_exchange(0, 3, Ordering::Relaxed, Ordering::Relaxed);
    }

    pub fn stopped(&self) -> Option<Stop> {
        match self.stop.load(Ordering::Relaxed) {
            1 => Some(Stop::FileBytes),
            2 => Some(Stop::PushBytes),
            3 => Some(Stop::Cancelled),
            _ => None,
        }
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    fn charge(&self, n: u64) -> io::Result<()> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(io::Error::other("scan abandoned"));
        }
        let file = self.read.fetch_add(n, Ordering::Relaxed).saturating_add(n);
        let push = self.push.read.fetch_add(n, Ordering::Relaxed).saturating_add(n);
        let hit = if file > self.max {
            1
        } else if push > self.push.max {
            2
        } else {
            return Ok(());
        };
        let _ = self.stop.compare_exchange(0, hit, Ordering::Relaxed, Ordering::Relaxed);
        Err(io::Error::other("scan byte budget exceeded"))
    }

    /// Fail early when the file may not read at all (push budget already spent, cancelled).
    pub fn check(&self) -> io::Result<()> {
        self.charge(0)
    }
}

/// A source whose reads are charged to a [`FileMeter`].
pub struct Guarded {
    inner: Arc<dyn Source>,
    meter: Arc<FileMeter>,
}

impl Guarded {
    pub fn new(inner: Arc<dyn Source>, meter: Arc<FileMeter>) -> Guarded {
        Guarded { inner, meter }
    }
}

impl Source for Guarded {
    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.meter.check()?;
        let n = self.inner.read_at(offset, buf)?;
        self.meter.charge(n as u64)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{read_up_to, BytesSource};

    #[test]
    fn file_and_push_budgets_stop_reads() {
        let push = Arc::new(PushMeter::new(Some(150)));
        let a = Arc::new(FileMeter::new(Some(100), push.clone()));
        let src = Guarded::new(Arc::new(BytesSource(vec![7; 1000])), a.clone());
        assert_eq!(read_up_to(&src, 0, 60).unwrap().len(), 60);
        assert!(read_up_to(&src, 0, 60).is_err());
        assert_eq!(a.stopped(), Some(Stop::FileBytes));

        let b = Arc::new(FileMeter::new(Some(100), push.clone()));
        let src = Guarded::new(Arc::new(BytesSource(vec![7; 1000])), b.clone());
        assert!(read_up_to(&src, 0, 50).is_err(), "push has 120 of 150 read");
        assert_eq!(b.stopped(), Some(Stop::PushBytes));
        assert!(push.exhausted());

        let c = Arc::new(FileMeter::new(None, Arc::new(PushMeter::new(None))));
        let src = Guarded::new(Arc::new(BytesSource(vec![7; 10])), c.clone());
        c.cancel();
        assert!(read_up_to(&src, 0, 5).is_err());
        assert_eq!(c.stopped(), Some(Stop::Cancelled));
    }
}
