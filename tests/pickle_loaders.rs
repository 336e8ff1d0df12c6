//! Fidelity to the real loaders, with fixtures made and proven by CPython (and joblib when a
//! Python with it is at hand: `MG_PYTHON`, else /opt/mg-venv, which .ci/run provides):
//! - streams that only one of CPython's two unpicklers reads run their payload in that one,
//!   and modelgate judges them as the loader that reads on (the attacker picks the loader);
//! - `functools.partial` is judged by the callable it wraps (tests/pickle_loaders.py);
//! - a constant attribute lookup (`builtins.getattr(X, 'a')`, `operator.attrgetter('a.b')(X)`)
//!   is judged as the global `X.a` is: CPython's own zoneinfo pickles are safe, lookups of
//!   dangerous names (each proven to run its payload) are dangerous.
//!
//! Without python3 the tests are skipped, unless CI=true.

mod common;

use common::{dump, fixtures, must, scan, P};
use modelgate::engine::FileReport;
use modelgate::finding::Severity;
use modelgate::formats::pickle::{find_class_calls, Loader};
use std::path::PathBuf;
use std::process::Command;

fn python3() -> Option<PathBuf> {
    let ok = |p: &PathBuf| Command::new(p).args(["-c", "import pickle"]).output().is_ok_and(|o| o.status.success());
    let p = PathBuf::from("python3");
    if ok(&p) {
        return Some(p);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("python3 is required when CI=true");
    }
    eprintln!("skipping: python3 not found");
    None
}

/// A Python with joblib (the numpy/joblib venv), else plain python3 (joblib checks skipped).
fn python_with_joblib() -> Option<PathBuf> {
    let candidates = match std::env::var_os("MG_PYTHON") {
        Some(p) => vec![PathBuf::from(p)],
        None => vec![PathBuf::from("/opt/mg-venv/bin/python")],
    };
    for p in candidates {
        if Command::new(&p).args(["-c", "import joblib"]).output().is_ok_and(|o| o.status.success()) {
            return Some(p);
        }
    }
    eprintln!("no Python with joblib (MG_PYTHON, /opt/mg-venv): joblib.load is not checked");
    python3()
}

fn generate(python: &PathBuf, what: &str, dir: &std::path::Path) -> Vec<serde_json::Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pickle_loaders.py");
    let out = Command::new(python).arg(script).arg(what).arg(dir).output().expect("run python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect()
}

fn codes(r: &FileReport) -> Vec<&str> {
    r.findings.iter().map(|f| f.code).collect()
}

#[test]
fn streams_only_one_unpickler_reads_are_judged_as_that_one_runs_them() {
    let Some(py) = python_with_joblib() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cases = generate(&py, "two-unpicklers", dir.path());
    assert!(cases.len() >= 9);
    let mut joblib_checked = 0;
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let bytes = unhex(case["hex"].as_str().unwrap());
        let (c, pure) = (case["c"].as_bool().unwrap(), case["py"].as_bool().unwrap());
        // the fixture is what it claims: exactly one of the two unpicklers runs the payload,
        // and joblib.load runs it exactly when the pure-Python one does
        assert!(c != pure, "{name}: C ran {c}, pure-Python ran {pure}");
        if let Some(j) = case["joblib"].as_bool() {
            assert_eq!(j, pure, "{name}: joblib.load differs from pickle._Unpickler");
            joblib_checked += 1;
        }
        // the emulation of the unpickler that runs the payload reaches its import; the other
        // stops at the construct (before the payload, or at its call)
        let open = ("io".to_string(), "open".to_string());
        let (runs, stops) = if c { (Loader::C, Loader::Python) } else { (Loader::Python, Loader::C) };
        assert!(find_class_calls(&bytes, runs).contains(&open), "{name}: {runs:?} emulation");
        let other = find_class_calls(&bytes, stops);
        assert!(other.len() <= 1, "{name}: {stops:?} emulation reads on: {other:?}");
        // the scan reads on with the loader that accepts the stream and rejects it
        let r = scan(&bytes);
        assert_eq!(r.verdict.as_str(), "dangerous", "{name}: {}", dump(&r));
        assert!(r.import_names().contains(&"io.open".to_string()), "{name}: {}", dump(&r));
        assert_eq!(must(&r, "pickle-loader-divergence").severity, Severity::Dangerous, "{name}");
        assert!(codes(&r).contains(&"pickle-import-dangerous"), "{name}: {}", dump(&r));
    }
    eprintln!("{} streams, {joblib_checked} also loaded with joblib.load", cases.len());
}

#[test]
fn members_read_by_torch_follow_the_c_unpickler() {
    // a torch zip's data.pkl is read by the C unpickler: a float only float() accepts stops
    // it there (malformed), and the pure-Python reading is not reported as a divergence
    let body = P::proto(2).raw(b"F1_0.5\n").op(b'0').call1("builtins", "print", "x").stop().bytes();
    assert!(find_class_calls(&body, Loader::C).is_empty());
    assert_eq!(find_class_calls(&body, Loader::Python), vec![("builtins".to_string(), "print".to_string())]);
    let mut zip = Vec::new();
    {
        let mut w = ZipWriter::new(&mut zip);
        w.file("archive/data.pkl", &body);
        w.file("archive/version", b"3\n");
        w.finish();
    }
    let r = scan(&zip);
    assert!(codes(&r).contains(&"pickle-malformed"), "{}", dump(&r));
    assert!(!codes(&r).contains(&"pickle-loader-divergence"), "{}", dump(&r));
    // the same stream as a file of its own may be opened with joblib.load: it reads on
    let r = scan(&body);
    assert!(codes(&r).contains(&"pickle-loader-divergence"), "{}", dump(&r));
    assert!(r.import_names().contains(&"builtins.print".to_string()), "{}", dump(&r));
}

/// A minimal stored (uncompressed) zip writer for the torch layout.
struct ZipWriter<'a> {
    out: &'a mut Vec<u8>,
    central: Vec<u8>,
    count: u16,
}

impl<'a> ZipWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        ZipWriter { out, central: Vec::new(), count: 0 }
    }

    fn file(&mut self, name: &str, data: &[u8]) {
        let crc = crc32(data);
        let offset = self.out.len() as u32;
        let mut local = Vec::new();
        local.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        local.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        local.extend_from_slice(&crc.to_le_bytes());
        local.extend_from_slice(&(data.len() as u32).to_le_bytes());
        local.extend_from_slice(&(data.len() as u32).to_le_bytes());
        local.extend_from_slice(&(name.len() as u16).to_le_bytes());
        local.extend_from_slice(&0u16.to_le_bytes());
        local.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(&local);
        self.out.extend_from_slice(data);
        let c = &mut self.central;
        c.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        c.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        c.extend_from_slice(&crc.to_le_bytes());
        c.extend_from_slice(&(data.len() as u32).to_le_bytes());
        c.extend_from_slice(&(data.len() as u32).to_le_bytes());
        c.extend_from_slice(&(name.len() as u16).to_le_bytes());
        c.extend_from_slice(&[0; 12]);
        c.extend_from_slice(&offset.to_le_bytes());
        c.extend_from_slice(name.as_bytes());
        self.count += 1;
    }

    fn finish(self) {
        let at = self.out.len() as u32;
        self.out.extend_from_slice(&self.central);
        self.out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        self.out.extend_from_slice(&[0, 0, 0, 0]);
        self.out.extend_from_slice(&self.count.to_le_bytes());
        self.out.extend_from_slice(&self.count.to_le_bytes());
        self.out.extend_from_slice(&(self.central.len() as u32).to_le_bytes());
        self.out.extend_from_slice(&at.to_le_bytes());
        self.out.extend_from_slice(&0u16.to_le_bytes());
    }
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

// ---- functools.partial ----

/// The evidence of the finding that names `import` (`imports NAME:` or `imports NAME (written as ...)`).
fn evidence_of<'r>(r: &'r FileReport, import: &str) -> &'r str {
    let head = format!("imports {import}");
    r.findings
        .iter()
        .find(|f| f.message.strip_prefix(&head).is_some_and(|rest| rest.starts_with(':') || rest.starts_with(" (")))
        .and_then(|f| f.evidence.as_deref())
        .unwrap_or_else(|| panic!("no finding for {import}: {}", dump(r)))
}

#[test]
fn constant_attribute_lookups_are_judged_as_the_attribute() {
    let Some(py) = python3() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cases = generate(&py, "lookups", dir.path());
    assert_eq!(cases.len(), 7 + 2 * 6);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let r = scan(&unhex(case["hex"].as_str().unwrap()));
        let what = format!("{name}: {}", dump(&r));
        let imports = r.import_names();
        let has = |n: &str| imports.iter().any(|i| i == n);
        if name.starts_with("zoneinfo") {
            // CPython's pickle of a ZoneInfo: getattr(zoneinfo.ZoneInfo, '_unpickle')(key, 1)
            assert_eq!(case["value"].as_bool(), Some(true), "{name}: the round trip failed");
            assert_eq!(r.verdict.as_str(), "safe", "{what}");
            assert!(has("zoneinfo.ZoneInfo._unpickle") && !has("builtins.getattr"), "{what}");
            continue;
        }
        // the fixture is what it claims: both unpicklers run the payload
        assert!(case["c"].as_bool().unwrap() && case["py"].as_bool().unwrap(), "{name}: payload did not run");
        assert_eq!(r.verdict.as_str(), "dangerous", "{what}");
        match name {
            "getattr-open" | "getattr-open-p2" | "getattr-open-p4" | "getattr-exec" => {
                let attr = if name == "getattr-exec" { "exec" } else { "open" };
                let derived = format!("codecs.builtins.{attr}");
                assert!(has(&derived) && !has("builtins.getattr"), "{what}");
                let ev = evidence_of(&r, &derived);
                assert!(ev.starts_with(&format!("builtins.getattr(codecs.builtins, '{attr}')(")), "{what}");
            }
            "attrgetter-open" => {
                assert!(has("pickle.codecs.builtins.open") && !has("operator.attrgetter"), "{what}");
                let ev = evidence_of(&r, "pickle.codecs.builtins.open");
                assert!(ev.starts_with("operator.attrgetter('builtins.open')(pickle.codecs)("), "{what}");
            }
            // not constant lookups: getattr is judged as a name, as before
            "getattr-computed-name" | "getattr-via-partial" => {
                assert!(has("builtins.getattr"), "{what}");
                assert!(evidence_of(&r, "builtins.getattr").contains("builtins.getattr"), "{what}");
            }
            _ => panic!("unexpected case {name}"),
        }
    }
}

#[test]
fn pandas_timestamps_with_zoneinfo_time_zones_are_safe() {
    // written by pandas 3.1.1 (tests/fixtures/pickle/make_pandas_zoneinfo.py): the time zone is
    // builtins.getattr(zoneinfo.ZoneInfo, '_unpickle')('Europe/Paris', 1)
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pickle");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.contains("zoneinfo") || !name.ends_with(".pkl") {
            continue;
        }
        let r = scan(&std::fs::read(&path).unwrap());
        let what = format!("{name}: {}", dump(&r));
        assert_eq!(r.verdict.as_str(), "safe", "{what}");
        let imports = r.import_names();
        assert!(imports.contains(&"zoneinfo.ZoneInfo._unpickle".to_string()), "{what}");
        assert!(!imports.contains(&"builtins.getattr".to_string()), "{what}");
        seen += 1;
    }
    assert_eq!(seen, 3);
}

#[test]
fn lookups_the_scan_cannot_pin_down_keep_getattr_a_dangerous_name() {
    let g = |m: &str, n: &str| format!("c{m}\n{n}\n").into_bytes();
    let build = |parts: &[&[u8]]| parts.concat();
    let getattr = g("__builtin__", "getattr");
    let zi = g("zoneinfo", "ZoneInfo");
    // a name with a dot is one attribute for getattr (AttributeError), not a walk
    let dotted = build(&[&getattr, b"(", &g("codecs", "builtins"), b"Vos.system\ntR."]);
    // getattr stored in a list and never called by the pickle
    let stored = build(&[b"(", &getattr, b"l", &zi, b"(VUTC\nI1\ntR."]);
    // three arguments (a default): not resolved
    let default = build(&[&getattr, b"(", &zi, b"V_unpickle\nNtR(VUTC\nI1\ntR."]);
    // the object is a value built at load time, not a global
    let computed = build(&[&getattr, b"(", &zi, b"(VUTC\ntRV_unpickle\ntR."]);
    for (name, data) in [("dotted", dotted), ("stored", stored), ("default", default), ("computed", computed)] {
        let r = scan(&data);
        let what = format!("{name}: {}", dump(&r));
        assert_eq!(r.verdict.as_str(), "dangerous", "{what}");
        assert!(r.import_names().contains(&"builtins.getattr".to_string()), "{what}");
        evidence_of(&r, "builtins.getattr");
    }
    // a constant lookup of a name off the allowlist is judged as that name
    let from_file = build(&[&getattr, b"(", &zi, b"Vfrom_file\ntR."]);
    let r = scan(&from_file);
    assert_eq!(r.verdict.as_str(), "dangerous", "{}", dump(&r));
    assert!(!r.import_names().contains(&"builtins.getattr".to_string()), "{}", dump(&r));
    assert!(evidence_of(&r, "zoneinfo.ZoneInfo.from_file").contains("builtins.getattr(zoneinfo.ZoneInfo, 'from_file')"));
}

#[test]
fn partial_is_judged_by_the_callable_it_wraps() {
    let Some(py) = python3() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cases = generate(&py, "partials", dir.path());
    assert_eq!(cases.len(), 4 * 6);
    for case in &cases {
        let (name, proto) = (case["name"].as_str().unwrap(), case["protocol"].as_u64().unwrap());
        let r = scan(&unhex(case["hex"].as_str().unwrap()));
        let what = format!("{name} protocol {proto}: {}", dump(&r));
        assert!(r.import_names().contains(&"functools.partial".to_string()), "{what}");
        assert!(!codes(&r).contains(&"pickle-callable-unresolved"), "{what}");
        match name {
            // os.system pickles as posix.system
            "os-system" => {
                assert_eq!(r.verdict.as_str(), "dangerous", "{what}");
                let f = must(&r, "pickle-import-dangerous");
                let ev = f.evidence.as_deref().unwrap_or("");
                assert!(ev.contains("functools.partial(posix.system, 'echo pwned')"), "{what}");
            }
            "ordered-dict" | "numpy-float64" => assert_eq!(r.verdict.as_str(), "safe", "{what}"),
            "gensim-df2idf" => {
                assert_eq!(r.verdict.as_str(), "suspicious", "{what}");
                let f = must(&r, "pickle-import-unknown");
                assert!(f.message.contains("gensimlike.tfidf.df2idf"), "{what}");
                let ev = f.evidence.as_deref().unwrap_or("");
                assert!(ev.contains("functools.partial(gensimlike.tfidf.df2idf, log_base=2.0)"), "{what}");
            }
            _ => panic!("unexpected case {name}"),
        }
    }
}

#[test]
fn partial_built_by_hand_is_judged_by_what_it_ends_up_wrapping() {
    // partial(os.system, 'echo pwned') through REDUCE
    let r = scan(
        &P::proto(2)
            .global("functools", "partial")
            .global("os", "system")
            .str("echo pwned")
            .tuple2()
            .reduce()
            .stop()
            .bytes(),
    );
    assert_eq!(r.verdict.as_str(), "dangerous", "{}", dump(&r));
    let f = must(&r, "pickle-import-dangerous");
    assert_eq!(f.evidence.as_deref(), Some("functools.partial(os.system, 'echo pwned')"), "{}", dump(&r));
    // partial.__new__(partial, OrderedDict), then __setstate__((os.system, ('id',), None, None))
    let bytes = P::proto(2)
        .global("functools", "partial")
        .global("collections", "OrderedDict")
        .tuple1()
        .newobj()
        .mark()
        .global("os", "system")
        .str("id")
        .tuple1()
        .none()
        .none()
        .tuple()
        .build()
        .stop()
        .bytes();
    let r = scan(&bytes);
    assert_eq!(r.verdict.as_str(), "dangerous", "{}", dump(&r));
    let f = r.findings.iter().find(|f| f.code == "pickle-import-dangerous").unwrap();
    assert_eq!(f.evidence.as_deref(), Some("functools.partial(os.system, 'id')"), "{}", dump(&r));
    // a partial of a value computed at load time cannot be judged by a name
    let r = scan(
        &P::proto(2)
            .global("functools", "partial")
            .global("collections", "OrderedDict")
            .empty_tuple()
            .reduce()
            .tuple1()
            .reduce()
            .stop()
            .bytes(),
    );
    assert_eq!(must(&r, "pickle-callable-unresolved").severity, Severity::Dangerous, "{}", dump(&r));
    // the class passed on rather than called
    let r = scan(&P::proto(2).global("functools", "partial").tuple1().stop().bytes());
    assert_eq!(must(&r, "pickle-callable-unresolved").severity, Severity::Dangerous, "{}", dump(&r));
    // a __setstate__ whose callable is not a name
    let r = scan(
        &P::proto(2)
            .global("functools", "partial")
            .global("collections", "OrderedDict")
            .tuple1()
            .reduce()
            .mark()
            .str("os.system")
            .empty_tuple()
            .none()
            .none()
            .tuple()
            .build()
            .stop()
            .bytes(),
    );
    assert!(codes(&r).contains(&"pickle-callable-unresolved"), "{}", dump(&r));
    // partial of partial of an allowlisted class, the class memoized and fetched again: safe
    let r = scan(
        &P::proto(2)
            .global("functools", "partial")
            .binput(0)
            .binget(0)
            .global("collections", "OrderedDict")
            .tuple1()
            .reduce()
            .tuple1()
            .reduce()
            .stop()
            .bytes(),
    );
    assert_eq!(r.verdict.as_str(), "safe", "{}", dump(&r));
}

#[test]
fn joblib_array_bytes_that_pickle_load_runs_are_found() {
    // joblib.load reads array data after a NumpyArrayWrapper; pickle.load of the same file
    // reads those bytes as opcodes. A pad length byte of 0x28 (MARK) starts a hidden stream.
    let hidden = P::new().global("os", "system").str("id").tuple1().reduce().op(b'0').bytes();
    assert!(hidden.len() <= 0x28);
    let (head, tail) = fixtures::joblib_parts(16, false);
    // the fixture's pad is [3, 0, 0, 0]: a pad of 0x28 bytes that hold the hidden stream
    let mut b = head[..head.len() - 4].to_vec();
    let mut pad = vec![0x28u8];
    pad.extend_from_slice(&hidden);
    pad.resize(1 + 0x28, b'0');
    b.extend_from_slice(&pad);
    b.extend(std::iter::repeat_n(0u8, 16 * 8));
    b.extend_from_slice(&tail);
    // CPython's pickle.load imports os.system from those bytes (the stand-in harness of the
    // differential test records find_class calls without running anything)
    if let Some(py) = python3() {
        let dir = tempfile::tempdir().unwrap();
        let cases = dir.path().join("case.txt");
        std::fs::write(&cases, b.iter().map(|x| format!("{x:02x}")).collect::<String>() + "\n").unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pickle_differential.py");
        let out = Command::new(py).arg(script).arg(&cases).output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(v["c"]["calls"].as_array().unwrap().iter().any(|c| c[0] == "os" && c[1] == "system"), "{v}");
    }
    let r = scan(&b);
    assert_eq!(r.format, "joblib", "{}", dump(&r));
    assert!(r.import_names().contains(&"os.system".to_string()), "{}", dump(&r));
    let f = must(&r, "pickle-loader-divergence");
    assert!(f.message.contains("joblib array wrapper"), "{}", dump(&r));
    // a benign dump: the pad byte is no opcode, nothing is reported
    let r = scan(&fixtures::joblib(16, false, &[]));
    assert!(!r.findings.iter().any(|f| f.code == "pickle-loader-divergence"), "{}", dump(&r));
}
