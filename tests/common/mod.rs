//! A tiny pickle assembler for tests: every opcode by name, so fixtures read like
//! `pickletools.dis` output.
#![allow(dead_code)]

pub mod fixtures;

use modelgate::engine::{scan_data, FileReport, ScanOptions};
use modelgate::finding::{Finding, Severity};
use modelgate::source::Data;

#[derive(Default, Clone)]
pub struct P(pub Vec<u8>);

impl P {
    pub fn new() -> P {
        P(Vec::new())
    }
    pub fn proto(n: u8) -> P {
        P(vec![0x80, n])
    }
    pub fn bytes(self) -> Vec<u8> {
        self.0
    }
    pub fn raw(mut self, b: &[u8]) -> P {
        self.0.extend_from_slice(b);
        self
    }
    pub fn op(self, op: u8) -> P {
        self.raw(&[op])
    }
    pub fn mark(self) -> P {
        self.op(b'(')
    }
    pub fn stop(self) -> P {
        self.op(b'.')
    }
    pub fn pop(self) -> P {
        self.op(b'0')
    }
    pub fn dup(self) -> P {
        self.op(b'2')
    }
    pub fn none(self) -> P {
        self.op(b'N')
    }
    pub fn tuple(self) -> P {
        self.op(b't')
    }
    pub fn tuple1(self) -> P {
        self.op(0x85)
    }
    pub fn tuple2(self) -> P {
        self.op(0x86)
    }
    pub fn tuple3(self) -> P {
        self.op(0x87)
    }
    pub fn empty_tuple(self) -> P {
        self.op(b')')
    }
    pub fn empty_list(self) -> P {
        self.op(b']')
    }
    pub fn empty_dict(self) -> P {
        self.op(b'}')
    }
    pub fn reduce(self) -> P {
        self.op(b'R')
    }
    pub fn build(self) -> P {
        self.op(b'b')
    }
    pub fn newobj(self) -> P {
        self.op(0x81)
    }
    pub fn newobj_ex(self) -> P {
        self.op(0x92)
    }
    pub fn obj(self) -> P {
        self.op(b'o')
    }
    pub fn append(self) -> P {
        self.op(b'a')
    }
    pub fn appends(self) -> P {
        self.op(b'e')
    }
    pub fn setitem(self) -> P {
        self.op(b's')
    }
    pub fn setitems(self) -> P {
        self.op(b'u')
    }
    pub fn stack_global(self) -> P {
        self.op(0x93)
    }
    pub fn memoize(self) -> P {
        self.op(0x94)
    }
    pub fn binpersid(self) -> P {
        self.op(b'Q')
    }
    /// `GLOBAL module\nname\n`
    pub fn global(self, module: &str, name: &str) -> P {
        self.op(b'c').raw(module.as_bytes()).raw(b"\n").raw(name.as_bytes()).raw(b"\n")
    }
    /// `INST module\nname\n` (needs a MARK before the arguments)
    pub fn inst(self, module: &str, name: &str) -> P {
        self.op(b'i').raw(module.as_bytes()).raw(b"\n").raw(name.as_bytes()).raw(b"\n")
    }
    /// Protocol-0 `STRING` with Python-style quoting.
    pub fn string(self, s: &str) -> P {
        let mut q = String::from("'");
        for ch in s.chars() {
            match ch {
                '\\' => q.push_str("\\\\"),
                '\'' => q.push_str("\\'"),
                '\n' => q.push_str("\\n"),
                c => q.push(c),
            }
        }
        q.push('\'');
        self.op(b'S').raw(q.as_bytes()).raw(b"\n")
    }
    /// Protocol-0 `UNICODE` (raw-unicode-escape).
    pub fn unicode_line(self, s: &str) -> P {
        self.op(b'V').raw(s.as_bytes()).raw(b"\n")
    }
    pub fn binstring(self, s: &[u8]) -> P {
        self.op(b'T').raw(&(s.len() as u32).to_le_bytes()).raw(s)
    }
    pub fn short_binstring(self, s: &[u8]) -> P {
        self.op(b'U').raw(&[s.len() as u8]).raw(s)
    }
    /// SHORT_BINUNICODE when short, BINUNICODE otherwise.
    pub fn str(self, s: &str) -> P {
        if s.len() < 256 {
            self.op(0x8c).raw(&[s.len() as u8]).raw(s.as_bytes())
        } else {
            self.op(b'X').raw(&(s.len() as u32).to_le_bytes()).raw(s.as_bytes())
        }
    }
    pub fn binunicode(self, s: &[u8]) -> P {
        self.op(b'X').raw(&(s.len() as u32).to_le_bytes()).raw(s)
    }
    /// SHORT_BINBYTES when short, BINBYTES otherwise.
    pub fn bin(self, b: &[u8]) -> P {
        if b.len() < 256 {
            self.op(b'C').raw(&[b.len() as u8]).raw(b)
        } else {
            self.op(b'B').raw(&(b.len() as u32).to_le_bytes()).raw(b)
        }
    }
    pub fn int(self, i: i64) -> P {
        if (0..256).contains(&i) {
            self.op(b'K').raw(&[i as u8])
        } else if (0..65536).contains(&i) {
            self.op(b'M').raw(&(i as u16).to_le_bytes())
        } else {
            self.op(b'J').raw(&(i as i32).to_le_bytes())
        }
    }
    pub fn binput(self, i: u8) -> P {
        self.op(b'q').raw(&[i])
    }
    pub fn binget(self, i: u8) -> P {
        self.op(b'h').raw(&[i])
    }
    pub fn frame(self, n: u64) -> P {
        self.op(0x95).raw(&n.to_le_bytes())
    }
    /// `module.name(arg)` via GLOBAL, SHORT_BINUNICODE, TUPLE1, REDUCE.
    pub fn call1(self, module: &str, name: &str, arg: &str) -> P {
        self.global(module, name).str(arg).tuple1().reduce()
    }
    /// `module.name(arg)` via STACK_GLOBAL (protocol 4 style).
    pub fn call1_sg(self, module: &str, name: &str, arg: &str) -> P {
        self.str(module).str(name).stack_global().str(arg).tuple1().reduce()
    }
}

pub fn opts() -> ScanOptions {
    ScanOptions::default()
}

pub fn scan(bytes: &[u8]) -> FileReport {
    scan_with(bytes, &opts())
}

pub fn scan_with(bytes: &[u8], opts: &ScanOptions) -> FileReport {
    scan_data("fixture", Data::bytes(bytes.to_vec()), Some(bytes.len() as u64), opts)
}

pub fn find<'a>(r: &'a FileReport, code: &str) -> Option<&'a Finding> {
    r.findings.iter().find(|f| f.code == code)
}

/// The finding with `code`, or a panic listing what was found.
pub fn must<'a>(r: &'a FileReport, code: &str) -> &'a Finding {
    find(r, code).unwrap_or_else(|| panic!("no {code} finding in {}", dump(r)))
}

pub fn dump(r: &FileReport) -> String {
    let mut s = format!("verdict {} format {}\n", r.verdict, r.format);
    for f in &r.findings {
        s.push_str(&format!(
            "  {} {} @{:?} {:?}: {} | {}\n",
            f.severity.as_str(),
            f.code,
            f.offset,
            f.member,
            f.message,
            f.evidence.clone().unwrap_or_default()
        ));
    }
    for i in &r.imports {
        s.push_str(&format!("  import {} ({}) {:?}\n", i.full_name(), i.opcode, i.member));
    }
    s
}

/// Assert the verdict is dangerous and some dangerous finding carries `evidence` (substring).
pub fn assert_dangerous(r: &FileReport, evidence: &str) {
    assert_eq!(r.verdict.as_str(), "dangerous", "{}", dump(r));
    assert!(
        r.findings
            .iter()
            .any(|f| f.severity == Severity::Dangerous && f.evidence.as_deref().unwrap_or("").contains(evidence)),
        "no dangerous finding with evidence {evidence:?}\n{}",
        dump(r)
    );
}
