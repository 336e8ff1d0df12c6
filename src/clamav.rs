//! ClamAV through clamd: each top-level file's bytes are streamed to a running clamd with its
//! `zINSTREAM` command and clamd's verdict becomes a finding.
//!
//! The protocol: the command `zINSTREAM\0`, then chunks each preceded by its length as a 4-byte
//! big-endian integer, then a zero length. clamd answers `stream: OK`, `stream: <Name> FOUND`
//! (one per match with `AllMatchScan`) or `<text> ERROR`, each ended by a NUL, and closes.
//!
//! clamd refuses a stream longer than its `StreamMaxLength` (Debian ships 25M). So a file longer
//! than `max_bytes` is not refused or skipped: its first `max_bytes` bytes are sent (where the
//! headers, and the executables and scripts ClamAV has signatures for, sit) and a
//! `clamav-partial` info finding says so. `max_bytes` must not exceed clamd's `StreamMaxLength`;
//! when it does clamd answers `INSTREAM size limit exceeded` and the file gets `clamav-error`.
//!
//! This is no parser: clamd's reply is the only untrusted input, and it is capped.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use crate::finding::{CodeInfo, Finding, Severity};
use crate::source::Source;
use serde::Deserialize;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

pub const CODES: &[CodeInfo] = &[
    CodeInfo {
        code: "clamav-signature",
        severity: Severity::Dangerous,
        summary: "clamav matched one of its signatures in the file",
        fix: "look up the signature name; remove the file unless the match is a known false positive",
    },
    CodeInfo {
        code: "clamav-error",
        severity: Severity::Error,
        summary: "clamav could not judge the file (clamd unreachable, timed out or failed)",
        fix: "check that clamd runs at the policy's `[clamav]` socket or address and that its `StreamMaxLength` \
              is at least `max_bytes`; set `required = false` to accept files clamd cannot judge",
    },
    CodeInfo {
        code: "clamav-partial",
        severity: Severity::Info,
        summary: "the file is larger than `[clamav] max_bytes`: only its first bytes were sent to clamav",
        fix: "raise `max_bytes` (and clamd's `StreamMaxLength`) if whole large files must be checked by clamav",
    },
];

/// Default `[clamav] timeout_ms`.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Default `[clamav] max_bytes`: clamd's `StreamMaxLength` as Debian ships it (25M).
pub const DEFAULT_MAX_BYTES: u64 = 25 << 20;
/// Bytes per INSTREAM chunk.
const CHUNK: usize = 64 << 10;
/// Bytes of reply read at most (a reply is one short line per match).
const MAX_REPLY: u64 = 64 << 10;
/// Signature matches reported per file at most.
const MAX_MATCHES: usize = 100;

/// Where clamd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket (clamd's `LocalSocket`).
    Unix(PathBuf),
    /// `host:port` (clamd's `TCPSocket`/`TCPAddr`), e.g. `127.0.0.1:3310`.
    Tcp(String),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix socket {}", p.display()),
            Endpoint::Tcp(a) => write!(f, "{a}"),
        }
    }
}

/// The policy's `[clamav]` table: hand every top-level file to clamd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClamavConfig {
    pub endpoint: Endpoint,
    /// Bounds connecting, each send and the wait for the reply.
    pub timeout: Duration,
    /// Bytes sent at most (the head of a larger file); at most clamd's `StreamMaxLength`.
    pub max_bytes: u64,
    /// When true a file clamd could not judge is an error (rejected by default); else info.
    pub required: bool,
}

impl ClamavConfig {
    pub fn new(endpoint: Endpoint) -> ClamavConfig {
        ClamavConfig {
            endpoint,
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
            max_bytes: DEFAULT_MAX_BYTES,
            required: true,
        }
    }
}

/// What clamd said about a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Clean,
    /// Signature names (more than one with clamd's `AllMatchScan`).
    Found(Vec<String>),
    /// clamd's error text (without the trailing ` ERROR`).
    Error(String),
}

/// Stream the first `cfg.max_bytes` bytes of `src` to clamd and return its reply.
pub fn scan(cfg: &ClamavConfig, src: &dyn Source) -> io::Result<Reply> {
    let mut conn = connect(cfg)?;
    let sent = send(&mut conn, src, cfg.max_bytes);
    // clamd answers and hangs up as soon as a stream passes its limit: the reply tells why.
    let reply = read_reply(&mut conn);
    match (sent, reply) {
        (_, Ok(text)) if !text.is_empty() => parse_reply(&text),
        (Err(e), _) if matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) => {
            Err(io::Error::new(
                e.kind(),
                format!(
                    "clamd closed the connection while the file was being sent, without a reply ({e}; \
                     is clamd's StreamMaxLength below `[clamav] max_bytes` = {}?)",
                    cfg.max_bytes
                ),
            ))
        }
        (Err(e), _) => Err(e),
        (Ok(()), Ok(_)) => {
            Err(io::Error::new(io::ErrorKind::UnexpectedEof, "clamd closed the connection without a reply"))
        }
        (Ok(()), Err(e)) => Err(e),
    }
}

/// clamd's `VERSION` reply, e.g. `ClamAV 1.4.6/27459/Tue Nov 25 09:35:17 2026`: the engine
/// and, with an official database loaded, the database version.
pub fn version(cfg: &ClamavConfig) -> io::Result<String> {
    let mut conn = connect(cfg)?;
    conn.write_all(b"zVERSION\0")?;
    conn.flush()?;
    let text = read_reply(conn.as_mut())?;
    let text = text.trim_end_matches(['\0', '\n']).to_string();
    if text.is_empty() {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "clamd gave no version"));
    }
    Ok(printable(&text))
}

/// What clamd's verdicts depend on besides the bytes, for caching them: the `VERSION` reply,
/// whose database version changes with every signature update. A database without a version
/// (locally built signatures only) gives no such signal, so the day is added: cached verdicts
/// are then re-checked at least once a day.
pub fn signature_epoch(version: &str, unix_secs: u64) -> String {
    if version.split('/').nth(1).is_some_and(|db| !db.trim().is_empty() && db.trim() != "0") {
        version.to_string()
    } else {
        format!("{version} day {}", unix_secs / 86_400)
    }
}

/// clamd's verdict on a top-level file as findings (none when clean and sent whole).
pub fn check(cfg: &ClamavConfig, src: &dyn Source) -> Vec<Finding> {
    let mut out = Vec::new();
    let len = src.len();
    if len > cfg.max_bytes {
        out.push(Finding::new(
            "clamav-partial",
            Severity::Info,
            format!("only the first {} of {len} bytes were sent to clamav (`[clamav] max_bytes`)", cfg.max_bytes),
        ));
    }
    let failure = match scan(cfg, src) {
        Ok(Reply::Clean) => None,
        Ok(Reply::Found(names)) => {
            for name in names {
                out.push(
                    Finding::new("clamav-signature", Severity::Dangerous, format!("clamav signature {name}"))
                        .evidence(name),
                );
            }
            None
        }
        Ok(Reply::Error(text)) if text.contains("size limit exceeded") => Some(format!(
            "clamd at {} refused the file: {text} (clamd's StreamMaxLength is below `[clamav] max_bytes` = {})",
            cfg.endpoint, cfg.max_bytes
        )),
        Ok(Reply::Error(text)) => Some(format!("clamd at {} could not scan the file: {text}", cfg.endpoint)),
        Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {
            Some(format!("clamd at {} did not answer within {} ms", cfg.endpoint, cfg.timeout.as_millis()))
        }
        Err(e) => Some(format!("clamd at {}: {}", cfg.endpoint, lower_first(&e.to_string()))),
    };
    if let Some(msg) = failure {
        let f = if cfg.required {
            Finding::new("clamav-error", Severity::Error, msg)
        } else {
            Finding::new("clamav-error", Severity::Info, format!("{msg}; not required by the policy"))
        };
        out.push(f);
    }
    out
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_lowercase().chain(c).collect()).unwrap_or_default()
}

trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

fn connect(cfg: &ClamavConfig) -> io::Result<Box<dyn Conn>> {
    match &cfg.endpoint {
        Endpoint::Tcp(addr) => {
            let mut last = io::Error::new(io::ErrorKind::NotFound, format!("cannot resolve {addr}"));
            for a in addr.to_socket_addrs()? {
                match TcpStream::connect_timeout(&a, cfg.timeout) {
                    Ok(s) => {
                        s.set_read_timeout(Some(cfg.timeout))?;
                        s.set_write_timeout(Some(cfg.timeout))?;
                        s.set_nodelay(true)?;
                        return Ok(Box::new(s));
                    }
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
        #[cfg(unix)]
        Endpoint::Unix(path) => {
            let s = std::os::unix::net::UnixStream::connect(path)?;
            s.set_read_timeout(Some(cfg.timeout))?;
            s.set_write_timeout(Some(cfg.timeout))?;
            Ok(Box::new(s))
        }
        #[cfg(not(unix))]
        Endpoint::Unix(_) => Err(io::Error::new(io::ErrorKind::Unsupported, "unix sockets are not supported here")),
    }
}

fn send(conn: &mut dyn Conn, src: &dyn Source, max: u64) -> io::Result<()> {
    conn.write_all(b"zINSTREAM\0")?;
    let end = src.len().min(max);
    let mut buf = vec![0u8; CHUNK + 4];
    let mut pos = 0u64;
    while pos < end {
        let want = usize::try_from(end - pos).unwrap_or(CHUNK).min(CHUNK);
        let Some(slot) = buf.get_mut(4..4 + want) else { break };
        let n = src.read_at(pos, slot)?;
        if n == 0 {
            break; // the file shrank since its length was taken: send what there was
        }
        let len = u32::try_from(n).map_err(io::Error::other)?;
        if let Some(head) = buf.get_mut(..4) {
            head.copy_from_slice(&len.to_be_bytes());
        }
        conn.write_all(buf.get(..4 + n).unwrap_or_default())?;
        pos += n as u64;
    }
    conn.write_all(&0u32.to_be_bytes())?;
    conn.flush()
}

/// Read until clamd hangs up. When it refuses a stream it answers and closes while we may
/// still be sending: the reply is then followed by a reset, which must not lose the reply.
fn read_reply(conn: &mut dyn Conn) -> io::Result<String> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while (raw.len() as u64) < MAX_REPLY {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) if !raw.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    raw.truncate(usize::try_from(MAX_REPLY).unwrap_or(usize::MAX));
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

/// Parse clamd's NUL- (or newline-) separated reply lines.
pub fn parse_reply(text: &str) -> io::Result<Reply> {
    let mut found = Vec::new();
    let mut clean = false;
    for line in text.split(['\0', '\n']).map(str::trim).filter(|l| !l.is_empty()) {
        let body = line.strip_prefix("stream:").map_or(line, str::trim);
        if body == "OK" {
            clean = true;
        } else if let Some(name) = body.strip_suffix(" FOUND") {
            if found.len() < MAX_MATCHES {
                found.push(printable(name.trim()));
            }
        } else if let Some(err) = body.strip_suffix("ERROR") {
            return Ok(Reply::Error(printable(err.trim())));
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected reply from clamd: {:?}", printable(line)),
            ));
        }
    }
    if !found.is_empty() {
        Ok(Reply::Found(found))
    } else if clean {
        Ok(Reply::Clean)
    } else {
        Err(io::Error::new(io::ErrorKind::UnexpectedEof, "clamd sent an empty reply"))
    }
}

/// Control characters escaped and length bounded: the reply ends up in reports.
fn printable(s: &str) -> String {
    s.chars().take(200).flat_map(|c| if c.is_control() { c.escape_default().collect() } else { vec![c] }).collect()
}

/// The policy's `[clamav]` table as written (validated by [`RawClamav::validate`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClamav {
    socket: Option<Spanned<String>>,
    address: Option<Spanned<String>>,
    timeout_ms: Option<Spanned<i64>>,
    max_bytes: Option<Spanned<i64>>,
    required: Option<bool>,
}

/// A problem in the `[clamav]` table: where, which key, what.
pub type RawProblem = (Range<usize>, String, String);

impl RawClamav {
    /// Check every value; `table` is the span of the whole table, for a missing key.
    pub fn validate(self, table: Range<usize>) -> Result<ClamavConfig, Vec<RawProblem>> {
        let mut problems: Vec<RawProblem> = Vec::new();
        let mut p = |span: Range<usize>, key: &str, msg: String| problems.push((span, format!("clamav.{key}"), msg));
        let endpoint = match (self.socket, self.address) {
            (Some(s), None) if s.get_ref().trim().is_empty() => {
                p(s.span(), "socket", "`socket` is empty; give the path of clamd's LocalSocket".into());
                None
            }
            (Some(s), None) if cfg!(not(unix)) => {
                p(s.span(), "socket", "unix sockets are not supported on this platform; use `address`".into());
                None
            }
            (Some(s), None) => Some(Endpoint::Unix(PathBuf::from(s.into_inner()))),
            (None, Some(a)) => match check_address(a.get_ref()) {
                Ok(()) => Some(Endpoint::Tcp(a.into_inner())),
                Err(msg) => {
                    p(a.span(), "address", msg);
                    None
                }
            },
            (Some(_), Some(a)) => {
                p(a.span(), "address", "set either `socket` or `address`, not both".into());
                None
            }
            (None, None) => {
                p(
                    table.clone(),
                    "socket",
                    "`socket` (clamd's LocalSocket path) or `address` (`host:port` of its TCPSocket) is required"
                        .into(),
                );
                None
            }
        };
        let mut int = |v: Option<Spanned<i64>>, key: &str, min: i64, max: i64, default: u64| match v {
            None => Some(default),
            Some(v) if (min..=max).contains(v.get_ref()) => Some(v.get_ref().unsigned_abs()),
            Some(v) => {
                p(v.span(), key, format!("{} is out of range {min}..={max}", v.get_ref()));
                None
            }
        };
        let timeout = int(self.timeout_ms, "timeout_ms", 100, 3_600_000, DEFAULT_TIMEOUT_MS);
        // clamd takes StreamMaxLength up to 4 GB; the chunk lengths are 32-bit.
        let max_bytes = int(self.max_bytes, "max_bytes", 1, 4_000_000_000, DEFAULT_MAX_BYTES);
        match (endpoint, timeout, max_bytes) {
            (Some(endpoint), Some(t), Some(max_bytes)) if problems.is_empty() => Ok(ClamavConfig {
                endpoint,
                timeout: Duration::from_millis(t),
                max_bytes,
                required: self.required.unwrap_or(true),
            }),
            _ => Err(problems),
        }
    }
}

/// `host:port` with a non-zero port (`127.0.0.1:3310`, `[::1]:3310`, `clamav:3310`).
fn check_address(a: &str) -> Result<(), String> {
    let bad = || format!("`{a}` is not `host:port`, e.g. `127.0.0.1:3310`");
    let (host, port) = a.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = !host.is_empty() && !host.chars().any(char::is_whitespace);
    match port.parse::<u16>() {
        Ok(p) if p > 0 && host_ok => Ok(()),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::BytesSource;
    use std::net::TcpListener;
    use std::thread;

    /// A one-connection clamd stand-in: checks the framing, returns what it received, sends `reply`.
    fn fake(reply: &'static [u8], answer: bool) -> (String, thread::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let h = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut cmd = [0u8; 10];
            s.read_exact(&mut cmd).unwrap();
            assert_eq!(&cmd, b"zINSTREAM\0");
            let mut got = Vec::new();
            loop {
                let mut len = [0u8; 4];
                s.read_exact(&mut len).unwrap();
                let n = u32::from_be_bytes(len) as usize;
                if n == 0 {
                    break;
                }
                assert!(n <= CHUNK);
                let mut chunk = vec![0u8; n];
                s.read_exact(&mut chunk).unwrap();
                got.extend(chunk);
            }
            if answer {
                s.write_all(reply).unwrap();
            } else {
                thread::sleep(Duration::from_millis(1500));
            }
            got
        });
        (addr, h)
    }

    fn cfg(addr: &str) -> ClamavConfig {
        ClamavConfig { timeout: Duration::from_millis(500), ..ClamavConfig::new(Endpoint::Tcp(addr.into())) }
    }

    #[test]
    fn streams_in_chunks_and_parses_a_match() {
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let (addr, h) = fake(b"stream: Test.Sig-1 FOUND\0", true);
        let f = check(&cfg(&addr), &BytesSource(data.clone()));
        assert_eq!(h.join().unwrap(), data);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].code, f[0].severity), ("clamav-signature", Severity::Dangerous));
        assert_eq!(f[0].evidence.as_deref(), Some("Test.Sig-1"));
    }

    #[test]
    fn sends_only_the_head_of_a_large_file() {
        let (addr, h) = fake(b"stream: OK\0", true);
        let c = ClamavConfig { max_bytes: 1000, ..cfg(&addr) };
        let f = check(&c, &BytesSource(vec![7u8; 5000]));
        assert_eq!(h.join().unwrap(), vec![7u8; 1000]);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].code, f[0].severity), ("clamav-partial", Severity::Info));
        assert!(f[0].message.contains("first 1000 of 5000"), "{}", f[0].message);
    }

    #[test]
    fn clean_empty_file() {
        let (addr, h) = fake(b"stream: OK\0", true);
        assert!(check(&cfg(&addr), &BytesSource(Vec::new())).is_empty());
        assert!(h.join().unwrap().is_empty());
    }

    #[test]
    fn silence_times_out() {
        let (addr, h) = fake(b"", false);
        let f = check(&cfg(&addr), &BytesSource(b"abc".to_vec()));
        assert_eq!((f[0].code, f[0].severity), ("clamav-error", Severity::Error));
        assert!(f[0].message.contains("did not answer within 500 ms"), "{}", f[0].message);
        h.join().unwrap();
    }

    #[test]
    fn signature_epochs() {
        let day = 20_000 * 86_400 + 5;
        let official = "ClamAV 1.4.6/27459/Tue Nov 25 09:35:17 2026";
        assert_eq!(signature_epoch(official, day), official);
        assert_eq!(signature_epoch("ClamAV 1.4.6", day), "ClamAV 1.4.6 day 20000");
        assert_eq!(signature_epoch("ClamAV 1.4.6", day + 86_400), "ClamAV 1.4.6 day 20001");
        assert_eq!(signature_epoch("ClamAV 1.4.6/0/x", day), "ClamAV 1.4.6/0/x day 20000");
    }

    #[test]
    fn replies() {
        assert_eq!(parse_reply("stream: OK\0").unwrap(), Reply::Clean);
        assert_eq!(
            parse_reply("stream: A FOUND\0stream: B FOUND\0").unwrap(),
            Reply::Found(vec!["A".into(), "B".into()])
        );
        assert_eq!(
            parse_reply("INSTREAM size limit exceeded. ERROR\0").unwrap(),
            Reply::Error("INSTREAM size limit exceeded.".into())
        );
        assert_eq!(
            parse_reply("stream: Can't allocate memory ERROR\n").unwrap(),
            Reply::Error("Can't allocate memory".into())
        );
        assert!(parse_reply("UNKNOWN COMMAND\0").is_err());
        assert!(parse_reply("\0").is_err());
        assert_eq!(parse_reply("stream: \x1b[31m FOUND").unwrap(), Reply::Found(vec!["\\u{1b}[31m".into()]));
    }

    #[test]
    fn unreachable_severity_follows_required() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = ClamavConfig::new(Endpoint::Unix(dir.path().join("none.sock")));
        let f = check(&c, &BytesSource(b"x".to_vec()));
        assert_eq!((f[0].code, f[0].severity), ("clamav-error", Severity::Error));
        c.required = false;
        let f = check(&c, &BytesSource(b"x".to_vec()));
        assert_eq!((f[0].code, f[0].severity), ("clamav-error", Severity::Info));
        assert!(f[0].message.contains("not required"), "{}", f[0].message);
    }

    #[test]
    fn addresses() {
        for ok in ["127.0.0.1:3310", "[::1]:3310", "clamav:3310", "localhost:1"] {
            assert!(check_address(ok).is_ok(), "{ok}");
        }
        for bad in ["127.0.0.1", ":3310", "h:0", "h:70000", "h:x", "a b:1"] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }
}
