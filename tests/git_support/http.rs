//! Smart HTTP for the push-gate tests: the real `git http-backend` (the server-side program
//! that runs receive-pack, and so the hooks) run as a CGI program behind a small HTTP/1.1
//! server on 127.0.0.1, started by the test and stopped when dropped.
//!
//! Why a front of our own rather than an existing server: none is installed by default, and
//! python3's `http.server --cgi` (CGIHTTPRequestHandler) reads request bodies by Content-Length
//! only (git streams a push larger than `http.postBuffer` chunked), answers `200` whatever the
//! CGI `Status:` header says, and passes neither Content-Encoding nor Git-Protocol. This front
//! does what Apache or nginx+fcgiwrap do for git: it de-chunks the body (nginx buffers bodies
//! the same way), passes the CGI environment, and turns `Status:` into the status line.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 64 * 1024 * 1024;

/// One request the server answered.
#[derive(Debug, Clone)]
pub struct Served {
    pub method: String,
    /// The URL path, decoded (`PATH_INFO`).
    pub path: String,
    pub query: String,
    /// The body came with `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// The body's length once de-chunked (still encoded if `content_encoding` is set).
    pub body_len: usize,
    pub content_encoding: Option<String>,
    /// The user of valid Basic credentials (`REMOTE_USER`).
    pub remote_user: Option<String>,
    pub status: u16,
}

/// How the server is set up.
#[derive(Clone)]
pub struct Config {
    /// `GIT_PROJECT_ROOT`: URL paths are repositories below it.
    pub root: PathBuf,
    /// `HOME` of http-backend (and so of receive-pack and the hooks).
    pub home: PathBuf,
    /// When not empty, pushes need Basic credentials of one of these (user, password), as in
    /// the Apache example of git-http-backend(1); fetches stay anonymous.
    pub push_users: Vec<(String, String)>,
}

/// A running server; stopped (and its threads joined) on drop.
pub struct HttpGit {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Served>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl HttpGit {
    /// Listen on a free port of 127.0.0.1. Connections made after this returns are queued
    /// by the kernel, so there is nothing to wait for.
    pub fn start(config: Config) -> std::io::Result<HttpGit> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut workers = Vec::new();
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = conn else { continue };
                    let (config, log) = (config.clone(), log.clone());
                    workers.push(std::thread::spawn(move || serve(stream, &config, &log)));
                }
                for w in workers {
                    let _ = w.join();
                }
            })
        };
        Ok(HttpGit { addr, log, stop, accept: Some(accept) })
    }

    /// `http://127.0.0.1:<port>/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// The requests answered so far.
    pub fn served(&self) -> Vec<Served> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for HttpGit {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

struct Head {
    method: String,
    target: String,
    headers: HashMap<String, String>,
}

/// One request per connection (`Connection: close`): curl reconnects as needed.
fn serve(stream: TcpStream, config: &Config, log: &Mutex<Vec<Served>>) {
    // A safety net so that a stuck client cannot keep the server from stopping.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    let peer = stream.peer_addr().ok();
    let Ok(write_half) = stream.try_clone() else { return };
    let mut out = write_half;
    let mut input = BufReader::new(stream);
    let head = match read_head(&mut input) {
        Ok(Some(h)) => h,
        Ok(None) => return,
        Err(e) => {
            let _ = respond(&mut out, 400, &[], format!("bad request: {e}\n").as_bytes());
            return;
        }
    };
    let (path_raw, query) = match head.target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (head.target.clone(), String::new()),
    };
    let path = percent_decode(&path_raw);
    let header = |k: &str| head.headers.get(k).cloned();
    let chunked = header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let mut served = Served {
        method: head.method.clone(),
        path: path.clone(),
        query: query.clone(),
        chunked,
        body_len: 0,
        content_encoding: header("content-encoding"),
        remote_user: None,
        status: 0,
    };

    let is_push = query.split('&').any(|kv| kv == "service=git-receive-pack") || path.ends_with("/git-receive-pack");
    if is_push && !config.push_users.is_empty() {
        match basic_user(header("authorization").as_deref()) {
            Some(cred) if config.push_users.contains(&cred) => served.remote_user = Some(cred.0),
            _ => {
                // Refused before the body is read, as `Expect: 100-continue` allows; a body
                // already sent is drained so that the client sees the answer, not a reset.
                if header("expect").is_none() {
                    let _ = read_body(&mut input, &head.headers, &mut out);
                }
                served.status = 401;
                record(log, served);
                let _ = respond(
                    &mut out,
                    401,
                    &[("WWW-Authenticate".into(), "Basic realm=\"git\"".into())],
                    b"authentication required\n",
                );
                return;
            }
        }
    }

    let body = match read_body(&mut input, &head.headers, &mut out) {
        Ok(b) => b,
        Err(e) => {
            served.status = 400;
            record(log, served);
            let _ = respond(&mut out, 400, &[], format!("bad request body: {e}\n").as_bytes());
            return;
        }
    };
    served.body_len = body.len();

    let (status, headers, response) = match run_cgi(config, &head, &path, &query, &body, peer, &served) {
        Ok(r) => r,
        Err(e) => (502, Vec::new(), format!("http-backend failed: {e}\n").into_bytes()),
    };
    served.status = status;
    record(log, served);
    let _ = respond(&mut out, status, &headers, &response);
}

/// Done before answering, so that the log is complete once the client has its answer.
fn record(log: &Mutex<Vec<Served>>, served: Served) {
    if let Ok(mut l) = log.lock() {
        l.push(served);
    }
}

fn read_head(input: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut lines = Vec::new();
    let mut total = 0;
    loop {
        let mut line = Vec::new();
        let n = input.by_ref().take((MAX_HEAD - total + 1) as u64).read_until(b'\n', &mut line)?;
        if n == 0 {
            return if lines.is_empty() { Ok(None) } else { Err(bad("truncated request head")) };
        }
        total += n;
        if total > MAX_HEAD {
            return Err(bad("request head too large"));
        }
        let text = String::from_utf8(line).map_err(|_| bad("request head is not utf-8"))?;
        let text = text.trim_end_matches(['\r', '\n']).to_string();
        if text.is_empty() {
            if lines.is_empty() {
                continue; // a stray CRLF between requests is allowed
            }
            break;
        }
        lines.push(text);
    }
    let mut request_line = lines[0].split(' ');
    let (Some(method), Some(target), Some(_version)) = (request_line.next(), request_line.next(), request_line.next())
    else {
        return Err(bad("malformed request line"));
    };
    let mut headers = HashMap::new();
    for l in &lines[1..] {
        let (k, v) = l.split_once(':').ok_or_else(|| bad("malformed header"))?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    Ok(Some(Head { method: method.to_string(), target: target.to_string(), headers }))
}

/// The request body: Content-Length or chunked (de-chunked), after `100 Continue` when asked.
fn read_body(
    input: &mut impl BufRead,
    headers: &HashMap<String, String>,
    out: &mut impl Write,
) -> std::io::Result<Vec<u8>> {
    let chunked = headers.get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = headers.get("content-length");
    if !chunked && length.is_none() {
        return Ok(Vec::new());
    }
    if headers.get("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        out.flush()?;
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut line = String::new();
            input.by_ref().take(1024).read_line(&mut line)?;
            let size = line.trim_end().split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let mut t = String::new();
                    let n = input.by_ref().take(MAX_HEAD as u64).read_line(&mut t)?;
                    if n == 0 || t.trim_end().is_empty() {
                        return Ok(body);
                    }
                }
            }
            if body.len() + size > MAX_BODY {
                return Err(bad("request body too large"));
            }
            let start = body.len();
            body.resize(start + size, 0);
            input.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            input.read_exact(&mut crlf)?;
            if &crlf != b"\r\n" {
                return Err(bad("chunk not followed by CRLF"));
            }
        }
    }
    let n: usize = length.and_then(|l| l.parse().ok()).ok_or_else(|| bad("bad content-length"))?;
    if n > MAX_BODY {
        return Err(bad("request body too large"));
    }
    body.resize(n, 0);
    input.read_exact(&mut body)?;
    Ok(body)
}

type CgiAnswer = (u16, Vec<(String, String)>, Vec<u8>);

fn run_cgi(
    config: &Config,
    head: &Head,
    path: &str,
    query: &str,
    body: &[u8],
    peer: Option<SocketAddr>,
    served: &Served,
) -> std::io::Result<CgiAnswer> {
    let mut c = super::git_cmd(&config.home, &config.root);
    c.arg("http-backend");
    for k in ["REMOTE_USER", "AUTH_TYPE", "GIT_PROTOCOL", "CONTENT_TYPE", "CONTENT_LENGTH", "HTTP_CONTENT_ENCODING"] {
        c.env_remove(k);
    }
    c.env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("SERVER_SOFTWARE", "modelgate-test")
        .env("SERVER_NAME", "127.0.0.1")
        .env("GIT_PROJECT_ROOT", &config.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &head.method)
        .env("SCRIPT_NAME", "")
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", body.len().to_string());
    if let Some(peer) = peer {
        c.env("REMOTE_ADDR", peer.ip().to_string()).env("REMOTE_PORT", peer.port().to_string());
    }
    if let Some(user) = &served.remote_user {
        c.env("REMOTE_USER", user).env("AUTH_TYPE", "Basic");
    }
    if let Some(t) = head.headers.get("content-type") {
        c.env("CONTENT_TYPE", t);
    }
    if let Some(p) = head.headers.get("git-protocol") {
        // What git-http-backend(1) asks of Apache: `SetEnvIf Git-Protocol ".*" GIT_PROTOCOL=$0`.
        c.env("GIT_PROTOCOL", p);
    }
    // Every other request header as HTTP_<NAME>, as CGI servers do (http-backend reads
    // HTTP_CONTENT_ENCODING to gunzip the body, and HTTP_GIT_PROTOCOL).
    for (k, v) in &head.headers {
        // Credentials stay with the server; the body is handed over whole, so the
        // hop-by-hop framing headers do not apply to it.
        let skip =
            ["authorization", "content-type", "content-length", "transfer-encoding", "connection", "expect", "te"];
        if skip.contains(&k.as_str()) {
            continue;
        }
        c.env(format!("HTTP_{}", k.to_ascii_uppercase().replace('-', "_")), v);
    }
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn()?;
    let mut stdin = child.stdin.take().ok_or_else(|| bad("no stdin"))?;
    let mut stderr = child.stderr.take().ok_or_else(|| bad("no stderr"))?;
    let mut stdout = child.stdout.take().ok_or_else(|| bad("no stdout"))?;
    // Fed and drained at once: receive-pack answers while it still reads the pack.
    let input = body.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let errors = std::thread::spawn(move || {
        let mut e = Vec::new();
        let _ = stderr.read_to_end(&mut e);
        e
    });
    let mut output = Vec::new();
    stdout.read_to_end(&mut output)?;
    let _ = feeder.join();
    let errors = errors.join().unwrap_or_default();
    let exit = child.wait()?;
    if !errors.is_empty() {
        eprintln!("http-backend ({} {path}): {}", head.method, String::from_utf8_lossy(&errors).trim_end());
    }
    parse_cgi(&output).ok_or_else(|| bad(&format!("malformed cgi output (exit {exit})")))
}

/// CGI output: header lines, an empty line, the body; `Status: 403 Forbidden` sets the status.
fn parse_cgi(output: &[u8]) -> Option<CgiAnswer> {
    let mut status = 200;
    let mut headers = Vec::new();
    let mut rest = output;
    loop {
        let nl = rest.iter().position(|b| *b == b'\n')?;
        let (line, tail) = rest.split_at(nl);
        rest = tail.get(1..)?;
        let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':')?;
        let v = v.trim();
        if k.eq_ignore_ascii_case("status") {
            status = v.split(' ').next()?.parse().ok()?;
        } else if !k.eq_ignore_ascii_case("content-length") && !k.eq_ignore_ascii_case("connection") {
            headers.push((k.to_string(), v.to_string()));
        }
    }
    Some((status, headers, rest.to_vec()))
}

fn respond(out: &mut impl Write, status: u16, headers: &[(String, String)], body: &[u8]) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        _ => "Status",
    };
    let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    out.write_all(head.as_bytes())?;
    out.write_all(body)?;
    out.flush()
}

fn basic_user(authorization: Option<&str>) -> Option<(String, String)> {
    use base64::Engine;
    let (scheme, token) = authorization?.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(token.trim()).ok()?;
    let (u, p) = String::from_utf8(decoded).ok()?.split_once(':').map(|(u, p)| (u.to_string(), p.to_string()))?;
    Some((u, p))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn bad(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}
