//! Differential test against CPython: for every fixture and for thousands of generated
//! streams, the (raw) module/name pairs modelgate's emulation of each unpickler reports
//! equal the `find_class` calls CPython's real C `pickle.Unpickler` and pure-Python
//! `pickle._Unpickler` make (see tests/pickle_differential.py); the emulation of "either
//! loader", which the scan uses, sees every call of both (they are prefixes of its calls).
//! The generator mutates streams where the two unpicklers differ: number lines as
//! `strtol`/`int()`/`float()` read them, lines cut at the end of the data, frames shorter or
//! longer than their data, call arguments of every type, state on built-in values.
//! Without python3 the test is skipped, unless CI=true.

mod common;

use common::fixtures;
use modelgate::engine::FileReport;
use modelgate::formats::pickle::{find_class_calls, Loader};
use std::process::Command;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const NAMES: &[(&str, &str)] = &[
    ("os", "system"),
    ("builtins", "eval"),
    ("__builtin__", "set"),
    ("__builtin__", "xrange"),
    ("copy_reg", "_reconstructor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("collections", "OrderedDict"),
    ("pathlib", "os.system"),
    ("a.b", "c.d"),
    ("mod", "name with space"),
    ("m\u{e9}", "n\u{f6}"),
    ("x\u{0}y", "z"),
];

const INT_LINES: &[&str] = &[
    "07",
    "-07",
    "0_7",
    "12\u{0}zz",
    "\u{0}",
    "+1",
    "\t1",
    "1\r",
    "0x_1f",
    "1_0",
    " 0x1f ",
    "000",
    "0",
    "1",
    "01",
    "00",
    "-1",
    "42",
    "0x1f",
    "010",
    "08",
    "1_000",
    "0b101",
    " 7",
    "7 ",
    "abc",
    "",
    "99999999999999999999999",
    "-0",
    "+5",
    "1__0",
    "0o17",
];
const FLOAT_LINES: &[&str] = &[
    "1.5",
    "-0.0",
    "inf",
    "nan",
    "1e999",
    "1e-999",
    "x",
    "1.",
    ".5",
    "1e",
    " 1",
    "1.5 ",
    " 1.5\r",
    "1_0.2_5",
    "1__0",
    "1_",
    "_1",
    "1_e5",
    "1e1_0",
    "-InFiNiTy",
    "+nan ",
    "1.5\u{0}x",
    "\u{0}",
    "1e-99999",
];
const LONG_LINES: &[&str] =
    &["12L", "12", "12\u{0}L", "0x1fL", "010L", "1_0L", " 5 L", "L", "-0L", "99999999999999999999999L"];
const MEMO_KEY_LINES: &[&str] =
    &["0", "1", "+1", " 1 ", "1_0", "010", "-1", "1\u{0}", "99999999999999999999999", "0x1", "", "1e3"];
const STRING_LINES: &[&str] = &[
    "'os'",
    "\"system\"",
    "'a\\x41'",
    "'a\\x4'",
    "'bad",
    "noquote",
    "'\\101\\n'",
    "''",
    "'it\\'s'",
    "'tail\\'",
    "'\u{e9}'",
];
const UNICODE_LINES: &[&str] =
    &["os", "sys\\u0074em", "\\u12", "\\U0001f600", "\\U00110000", "\\\\u0041", "plain text"];

const TEMPLATES: &[&[u8]] = &[
    b"]N\x85",
    b"]K\x00K\x01s",
    b"]K\x05aK\x00K\x07s",
    b"]K\x05aJ\xff\xff\xff\xffK\x07s",
    b"\x96\x03\x00\x00\x00\x00\x00\x00\x00abcK\x00K\x41s",
    b"\x96\x03\x00\x00\x00\x00\x00\x00\x00abcK\x00M\x00\x01s",
    b"\x96\x01\x00\x00\x00\x00\x00\x00\x00a(K\x01K\x02e",
    b"\x96\x01\x00\x00\x00\x00\x00\x00\x00a(K\x01Ne",
    b"}(]Nu",
    b"}(N]\x85Nu",
    b"(]\x91",
    b"(K\x01\x8c\x01a\x91",
    b"\x8f(]\x90",
    b"\x8f(K\x01K\x02\x90",
    b"N)\x81",
    b"]Nb",
    b"](N}tb",
    b"]}b",
    b"](N}\x8c\x01aN\x86\x86b",
    b"C\x03abc\x98",
    b"\x96\x01\x00\x00\x00\x00\x00\x00\x00a\x98",
    b"\x96\x01\x00\x00\x00\x00\x00\x00\x00a\x98}\x8c\x01k\x8c\x01vs",
    b"(K\x01K\x02lK\x03a",
    b"(N]\x86}(K\x01N\x86Nu",
    b"K\x01)R",
    b"N)\x81",
    b"(K\x01o",
    b"(\x8c\x01xo",
    b"}]b",
    b"\x88N\x86b",
    b"(N(t\x91",
    b"(](t\x91",
];

struct Gen {
    rng: Rng,
}

impl Gen {
    fn name(&mut self) -> (&'static str, &'static str) {
        *self.rng.pick(NAMES)
    }

    fn push_str(&mut self, out: &mut Vec<u8>, s: &str) {
        match self.rng.below(6) {
            0 => {
                out.push(b'X');
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            1 => {
                out.push(b'S');
                out.push(b'\'');
                out.extend_from_slice(s.as_bytes());
                out.extend_from_slice(b"'\n");
            }
            2 => {
                out.push(b'U');
                out.push(s.len() as u8);
                out.extend_from_slice(s.as_bytes());
            }
            3 => {
                out.push(b'V');
                out.extend_from_slice(s.as_bytes());
                out.push(b'\n');
            }
            _ => {
                out.push(0x8c);
                out.push(s.len() as u8);
                out.extend_from_slice(s.as_bytes());
            }
        }
    }

    fn line(out: &mut Vec<u8>, op: u8, s: &str) {
        out.push(op);
        out.extend_from_slice(s.as_bytes());
        out.push(b'\n');
    }

    fn memo_index(&mut self) -> u64 {
        if self.rng.chance(5) {
            1000 + self.rng.below(100_000)
        } else {
            self.rng.below(6)
        }
    }

    /// Streams on which the C and the pure-Python unpickler differ.
    fn divergent(&mut self, out: &mut Vec<u8>) {
        let (m, n) = self.name();
        match self.rng.below(16) {
            0 => {
                let l = *self.rng.pick(LONG_LINES);
                Self::line(out, b'L', l)
            }
            1 => {
                // a memo key line for PUT or GET
                let l = *self.rng.pick(MEMO_KEY_LINES);
                Self::line(out, if self.rng.chance(50) { b'p' } else { b'g' }, l)
            }
            2 => {
                // call arguments that are not a tuple: list, dict, str, set, bytes
                out.extend_from_slice(format!("c{m}\n{n}\n").as_bytes());
                let args: &[u8] = self.rng.pick::<&[u8]>(&[
                    b"](\x8c\x04echoe",
                    b"}\x8c\x04echoNs",
                    b"\x8c\x02ab",
                    b"\x8f(K\x01\x90",
                    b"C\x02ab",
                    b"N",
                    b"K\x05",
                    b"(K\x01\x91",
                ]);
                out.extend_from_slice(args);
                out.push(*self.rng.pick(&[b'R', 0x81]));
            }
            3 => {
                // NEWOBJ_EX with keyword arguments of every type
                out.extend_from_slice(format!("c{m}\n{n}\n").as_bytes());
                out.extend_from_slice(self.rng.pick::<&[u8]>(&[b")", b"]", b"}"]));
                out.extend_from_slice(self.rng.pick::<&[u8]>(&[b"}", b"]", b"N", b"}\x8c\x01kNs", b"}K\x01Ns"]));
                out.push(0x92);
            }
            4 => {
                // BUILD on a built-in value with falsy or truthy state
                out.extend_from_slice(self.rng.pick::<&[u8]>(&[b"]", b"N", b"}", b"K\x01", b"\x8c\x01a"]));
                out.extend_from_slice(self.rng.pick::<&[u8]>(&[
                    b"N",
                    b"K\x00",
                    b")",
                    b"}",
                    b"]",
                    b"\x89",
                    b"\x8c\x00",
                    b"NN\x86",
                    b"N}\x86",
                    b"K\x00)\x86",
                    b"K\x01",
                    b"}\x8c\x01kNs",
                    b"N}\x8c\x01kNs\x86",
                ]));
                out.push(b'b');
            }
            5 => {
                // APPENDS / ADDITEMS with no items on values without extend/append/add
                out.extend_from_slice(self.rng.pick::<&[u8]>(&[
                    b"N",
                    b"}",
                    b")",
                    b"]",
                    b"\x8f",
                    b"(\x91",
                    b"\x8c\x01a",
                ]));
                out.push(b'(');
                out.push(*self.rng.pick(&[b'e', 0x90, b'u']));
            }
            6 => {
                // BINSTRING lengths with the sign bit set
                out.push(b'T');
                out.extend_from_slice(&(0x8000_0000u32 + self.rng.below(4) as u32).to_le_bytes());
                out.extend_from_slice(b"abc");
            }
            7 => {
                // GLOBAL / INST with empty lines, INST without a MARK
                match self.rng.below(4) {
                    0 => out.extend_from_slice(b"c\n\n"),
                    1 => out.extend_from_slice(format!("c\n{n}\n").as_bytes()),
                    2 => out.extend_from_slice(format!("i{m}\n\n").as_bytes()),
                    _ => out.extend_from_slice(format!("i{m}\n{n}\n").as_bytes()),
                }
            }
            8 => {
                // SETITEMS with an odd number of items on an imported object
                out.extend_from_slice(format!("c{m}\n{n}\n(").as_bytes());
                out.extend_from_slice(self.rng.pick::<&[u8]>(&[b"K\x01K\x02K\x03", b"K\x01", b"K\x01K\x02"]));
                out.push(b'u');
            }
            9 => {
                // a FRAME inside a frame
                out.push(0x95);
                out.extend_from_slice(&(self.rng.below(8) + 2).to_le_bytes());
                out.push(0x95);
                out.extend_from_slice(&self.rng.below(6).to_le_bytes());
            }
            10 => {
                // a memo key only the pure-Python unpickler's dict memo holds, used again
                let key = *self.rng.pick(&["99999999999999999999999", "18446744073709551616", "9223372036854775808"]);
                out.push(b'N');
                Self::line(out, b'p', key);
                Self::line(out, b'g', key);
            }
            11 => {
                let l = *self.rng.pick(INT_LINES);
                Self::line(out, b'I', l)
            }
            12 => {
                let l = *self.rng.pick(FLOAT_LINES);
                Self::line(out, b'F', l)
            }
            13 => {
                // a readonly buffer, a bytearray, a memoryview state
                out.extend_from_slice(b"\x96\x02\x00\x00\x00\x00\x00\x00\x00ab\x98");
            }
            _ => {
                // a call whose stream ends inside the name line (no newline)
                out.extend_from_slice(format!("c{m}\n{n}").as_bytes());
            }
        }
    }

    fn fragment(&mut self, out: &mut Vec<u8>) {
        if self.rng.chance(15) {
            return self.divergent(out);
        }
        let r = &mut self.rng;
        match r.below(64) {
            0 => out.push(b'N'),
            1 => out.push(0x88),
            2 => out.push(0x89),
            3 => {
                let l = *self.rng.pick(INT_LINES);
                Self::line(out, b'I', l)
            }
            4 => {
                out.push(b'J');
                let v = self.rng.next() as u32;
                out.extend_from_slice(&v.to_le_bytes());
            }
            5 => {
                out.push(b'K');
                out.push(self.rng.below(256) as u8);
            }
            6 => {
                out.push(b'M');
                out.extend_from_slice(&(self.rng.below(65536) as u16).to_le_bytes());
            }
            7 => {
                let l = *self.rng.pick(INT_LINES);
                Self::line(out, b'L', &format!("{l}L"))
            }
            8 => {
                out.push(0x8a);
                let n = self.rng.below(10) as u8;
                out.push(n);
                for _ in 0..n {
                    out.push(self.rng.next() as u8);
                }
            }
            9 => {
                out.push(0x8b);
                let n = if self.rng.chance(20) { -1i32 } else { self.rng.below(12) as i32 };
                out.extend_from_slice(&n.to_le_bytes());
                for _ in 0..n.max(0) {
                    out.push(self.rng.next() as u8);
                }
            }
            10 => {
                let l = *self.rng.pick(FLOAT_LINES);
                Self::line(out, b'F', l)
            }
            11 => {
                out.push(b'G');
                out.extend_from_slice(&self.rng.next().to_be_bytes());
            }
            12 | 13 => {
                let l = *self.rng.pick(STRING_LINES);
                Self::line(out, b'S', l)
            }
            14 => {
                let l = *self.rng.pick(UNICODE_LINES);
                Self::line(out, b'V', l)
            }
            15 => {
                let (m, n) = self.name();
                let s = if self.rng.chance(50) { m } else { n };
                self.push_str(out, s);
            }
            16 => {
                // BINUNICODE with maybe invalid UTF-8 or a surrogate
                let body: &[u8] = match self.rng.below(4) {
                    0 => b"ok",
                    1 => b"\xff\xfe",
                    2 => b"\xed\xa0\x80",
                    _ => b"caf\xc3\xa9",
                };
                out.push(b'X');
                out.extend_from_slice(&(body.len() as u32).to_le_bytes());
                out.extend_from_slice(body);
            }
            17 => {
                out.push(b'C');
                let n = self.rng.below(6) as u8;
                out.push(n);
                for _ in 0..n {
                    out.push(self.rng.next() as u8);
                }
            }
            18 => {
                let op = *self.rng.pick(&[b'B', 0x8e, 0x96, b'T', 0x8d]);
                out.push(op);
                let n = self.rng.below(5);
                if op == b'B' || op == b'T' {
                    out.extend_from_slice(&(n as u32).to_le_bytes());
                } else {
                    out.extend_from_slice(&n.to_le_bytes());
                }
                for _ in 0..n {
                    out.push(b'a' + self.rng.below(26) as u8);
                }
            }
            19..=22 => {
                let (m, n) = self.name();
                if self.rng.chance(5) {
                    out.extend_from_slice(b"cmod\n\xf8\n");
                } else if self.rng.chance(5) {
                    out.extend_from_slice(b"c\nname\n");
                } else {
                    out.push(b'c');
                    out.extend_from_slice(m.as_bytes());
                    out.push(b'\n');
                    out.extend_from_slice(n.as_bytes());
                    out.push(b'\n');
                }
            }
            23..=25 => {
                if self.rng.chance(80) {
                    let (m, n) = self.name();
                    self.push_str(out, m);
                    self.push_str(out, n);
                }
                out.push(0x93);
            }
            26 => {
                let (m, n) = self.name();
                if self.rng.chance(80) {
                    out.push(b'(');
                }
                if self.rng.chance(50) {
                    out.push(b'N');
                }
                out.push(b'i');
                out.extend_from_slice(m.as_bytes());
                out.push(b'\n');
                out.extend_from_slice(n.as_bytes());
                out.push(b'\n');
            }
            27 => {
                let i = self.memo_index();
                match self.rng.below(4) {
                    0 => Self::line(out, b'p', &i.to_string()),
                    1 => {
                        out.push(b'q');
                        out.push(i as u8);
                    }
                    2 => {
                        out.push(b'r');
                        out.extend_from_slice(&(i as u32).to_le_bytes());
                    }
                    _ => out.push(0x94),
                }
            }
            28 | 29 => {
                let i = self.memo_index();
                match self.rng.below(3) {
                    0 => Self::line(out, b'g', &i.to_string()),
                    1 => {
                        out.push(b'h');
                        out.push(i as u8);
                    }
                    _ => {
                        out.push(b'j');
                        out.extend_from_slice(&(i as u32).to_le_bytes());
                    }
                }
            }
            30..=33 => out.push(b'('),
            34 => out.push(b't'),
            35 => out.push(*self.rng.pick(&[0x85, 0x86, 0x87, b')'])),
            36 => out.push(*self.rng.pick(&[b']', b'}', 0x8f])),
            37 => out.push(*self.rng.pick(&[b'l', b'd', 0x91])),
            38 => out.push(b'a'),
            39 => out.push(b'e'),
            40 => out.push(b's'),
            41 => out.push(b'u'),
            42 => out.push(0x90),
            43 => out.push(b'0'),
            44 => out.push(b'1'),
            45 => out.push(b'2'),
            46 => out.push(b'b'),
            47 | 48 => out.push(b'R'),
            49 => out.push(0x81),
            50 => out.push(0x92),
            51 => out.push(b'o'),
            52 => {
                let pid = *self.rng.pick(&["0", "storage", "caf\u{e9}"]);
                Self::line(out, b'P', pid)
            }
            53 => out.push(b'Q'),
            54 => {
                out.push(*self.rng.pick(&[0x82, 0x83, 0x84]));
                out.extend_from_slice(&[self.rng.below(3) as u8, 0, 0, 0][..1]);
            }
            55 => {
                out.push(0x80);
                out.push(self.rng.below(7) as u8);
            }
            56 => {
                // a frame, usually covering a few upcoming bytes
                out.push(0x95);
                let n = if self.rng.chance(10) { 1u64 << 40 } else { self.rng.below(24) };
                out.extend_from_slice(&n.to_le_bytes());
            }
            57 => out.push(*self.rng.pick(&[0x98, 0x98, 0x97])),
            58 => out.push(*self.rng.pick(&[0x00, 0xff, b'x', b'\n'])),
            59 => {
                // a call: GLOBAL, an argument tuple, REDUCE
                let (m, n) = self.name();
                out.push(b'c');
                out.extend_from_slice(format!("{m}\n{n}\n").as_bytes());
                self.push_str(out, "echo");
                out.extend_from_slice(&[0x85, b'R']);
            }
            60 => {
                // a dict with items
                out.extend_from_slice(b"}(");
                self.push_str(out, "k");
                out.push(b'N');
                out.push(b'u');
            }
            61 => {
                // an instance with state
                let (m, n) = self.name();
                out.push(b'c');
                out.extend_from_slice(format!("{m}\n{n}\n").as_bytes());
                out.extend_from_slice(b")\x81}b");
            }
            62 => {
                // small structures that exercise CPython's type checks
                let t = self.rng.pick(TEMPLATES);
                out.extend_from_slice(t);
            }
            _ => out.push(b'.'),
        }
    }

    fn case(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.rng.chance(60) {
            out.push(0x80);
            out.push(*self.rng.pick(&[0, 1, 2, 2, 3, 4, 4, 5, 6]));
        }
        let n = 1 + self.rng.below(30);
        for _ in 0..n {
            self.fragment(&mut out);
        }
        if self.rng.chance(85) {
            out.push(b'.');
        }
        if self.rng.chance(15) {
            let more = 1 + self.rng.below(10);
            for _ in 0..more {
                self.fragment(&mut out);
            }
            out.push(b'.');
        }
        if self.rng.chance(10) && !out.is_empty() {
            let cut = self.rng.below(out.len() as u64) as usize;
            out.truncate(cut.max(1));
        }
        if self.rng.chance(8) && out.len() > 2 {
            // a frame over the rest of the stream, declared shorter or longer than it is
            let at = 2 + self.rng.below(out.len() as u64 - 2) as usize;
            let rest = (out.len() - at) as i64;
            let delta = *self.rng.pick(&[0i64, 0, -1, -2, 1, 2, 40, 1 << 20]);
            let n = (rest + delta).max(0) as u64;
            let mut framed = out[..at].to_vec();
            framed.push(0x95);
            framed.extend_from_slice(&n.to_le_bytes());
            framed.extend_from_slice(&out[at..]);
            out = framed;
        }
        if self.rng.chance(5) && out.last() == Some(&b'.') {
            // the stream ends without STOP inside a line: drop the STOP and a newline or more
            out.pop();
            if let Some(i) = out.iter().rposition(|&b| b == b'\n') {
                out.truncate(i + self.rng.below(2) as usize);
            }
        }
        if self.rng.chance(5) && !out.is_empty() {
            let i = self.rng.below(out.len() as u64) as usize;
            out[i] ^= 1 << self.rng.below(8);
        }
        out
    }
}

/// What modelgate says `find_class` was called with: raw names of the outer stream's imports.
fn reported(r: &FileReport) -> Vec<(String, String)> {
    r.imports
        .iter()
        .filter(|i| i.member.is_none() && !i.opcode.starts_with("EXT"))
        .map(|i| i.raw.clone().unwrap_or_else(|| (i.module.clone(), i.name.clone())))
        .collect()
}

fn python() -> Option<&'static str> {
    ["python3", "python"]
        .into_iter()
        .find(|p| Command::new(p).arg("-c").arg("import pickle").output().is_ok_and(|o| o.status.success()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn calls(v: &serde_json::Value) -> Vec<(String, String)> {
    v["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn find_class_calls_match_cpython() {
    let Some(py) = python() else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("python3 is required for the differential test when CI=true");
        }
        eprintln!("skipping the differential test: python3 not found");
        return;
    };
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, bytes, follows_more) in fixtures::all() {
        // joblib arrays are followed by joblib's own unpickler, not pickle.load
        if !name.starts_with("joblib") || !follows_more {
            cases.push((name, bytes));
        }
    }
    // MODELGATE_DIFF_CASES / MODELGATE_DIFF_SEED widen the search when hunting for differences
    let count: usize = std::env::var("MODELGATE_DIFF_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let seed: u64 =
        std::env::var("MODELGATE_DIFF_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed_1234_abcd_0001);
    let mut g = Gen { rng: Rng(seed | 1) };
    for i in 0..count {
        cases.push((format!("random-{i}"), g.case()));
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cases.txt");
    let text: String = cases.iter().map(|(_, b)| hex(b) + "\n").collect();
    std::fs::write(&input, text).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pickle_differential.py");
    let out = Command::new(py).arg(script).arg(&input).output().unwrap();
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), cases.len());
    let mut failures = Vec::new();
    let (mut with_calls, mut differ) = (0, 0);
    for ((name, bytes), line) in cases.iter().zip(lines) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let any = find_class_calls(bytes, Loader::Any);
        let mut why = Vec::new();
        let mut seen = Vec::new();
        for (key, loader) in [("c", Loader::C), ("py", Loader::Python)] {
            let expect = calls(&v[key]);
            let got = find_class_calls(bytes, loader);
            // CPython ran out of memory (a huge memo index): modelgate reads on, so it may see more
            let memory_cut = v[key]["memory"].as_bool() == Some(true) && got.starts_with(&expect);
            if got != expect && !memory_cut {
                why.push(format!("  {key} cpython:  {expect:?}\n  {key} emulator: {got:?}"));
            }
            // "either loader" sees every call each one makes
            if !any.starts_with(&got) {
                why.push(format!("  either-loader emulator {any:?} misses the calls of {key}: {got:?}"));
            }
            seen.push(expect);
        }
        if !seen[0].is_empty() || !seen[1].is_empty() {
            with_calls += 1;
        }
        if seen[0] != seen[1] {
            differ += 1;
        }
        // the scan reports the imports of the pickles it accepts: a prefix of those calls
        let r = common::scan(bytes);
        let accepted = reported(&r);
        if !any.starts_with(&accepted) {
            why.push(format!("  reported: {accepted:?}\n  either:   {any:?}"));
        }
        if !why.is_empty() {
            failures.push(format!("{name}: {}\n{}\n{}", hex(bytes), why.join("\n"), common::dump(&r)));
        }
    }
    eprintln!("{} cases, {with_calls} with imports, {differ} on which the two unpicklers differ", cases.len());
    assert!(with_calls > 500, "the generator should produce many streams with imports ({with_calls})");
    assert!(differ > 100, "the generator should produce many streams the two unpicklers read differently ({differ})");
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
}
