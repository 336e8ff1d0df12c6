//! 7z archives: members handed back, names checked, budgets kept.
mod containers_util;

use containers_util::*;
use modelgate::engine::ScanOptions;
use modelgate::finding::{Severity, Verdict};

fn probe_members(r: &modelgate::engine::FileReport) -> Vec<String> {
    find(r, "npy-bad-header").iter().map(|f| f.member.clone().unwrap_or_default()).collect()
}

#[test]
fn members_are_handed_back() {
    for solid in [false, true] {
        let inner = zip(&[Z::stored("z.npy", &npy_probe())]);
        let r = scan(sevenz(&[("a.npy", &npy_probe()), ("ok.npy", &npy_f4(4)), ("d/in.zip", &inner)], solid));
        assert_eq!(r.format, "7z");
        assert_eq!(probe_members(&r), ["a.npy", "d/in.zip!z.npy"], "solid={solid}");
        assert_eq!(r.findings.len(), 2, "{:#?}", r.findings);
    }
    let r = scan(sevenz(&[("w.npy", &npy_f4(4)), ("readme", b"hi")], true));
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert_eq!(r.verdict, Verdict::Safe);
}

#[test]
fn traversal_names_are_dangerous() {
    let r = scan(sevenz(&[("../../x.sh", b"echo")], false));
    assert_eq!(one(&r, "sevenz-path-traversal").member.as_deref(), Some("../../x.sh"));
    assert_eq!(r.verdict, Verdict::Dangerous);
}

#[test]
fn damage_is_an_error() {
    let mut a = sevenz(&[("a.bin", &vec![3u8; 50_000]), ("b.npy", &npy_probe())], true);
    let n = a.len();
    for b in &mut a[40..n / 2] {
        *b ^= 0x5a;
    }
    let r = scan(a);
    assert_eq!(r.verdict, Verdict::Error, "{:#?}", r.findings);
    let mut cut = sevenz(&[("a.npy", &npy_probe())], false);
    cut.truncate(cut.len() - 10);
    assert_eq!(one(&scan(cut), "sevenz-unreadable").severity, Severity::Error);
}

#[test]
fn budgets() {
    let zeros = vec![0u8; 8 << 20];
    let a = sevenz(&[("zeros.bin", &zeros), ("after.npy", &npy_probe())], false);
    assert!(a.len() < 64 << 10);
    let opts = ScanOptions { max_expanded_bytes: 1 << 20, ..Default::default() };
    let r = scan_with(a.clone(), &opts);
    assert_eq!(one(&r, "expansion-budget-exceeded").severity, Severity::Error);

    // A member bigger than the in-memory budget: its beginning is still scanned.
    let mut big = npy_probe();
    big.resize(300_000, 0);
    let opts = ScanOptions { max_buffered_bytes: 100_000, ..Default::default() };
    let r = scan_with(sevenz(&[("big.npy", &big), ("next.npy", &npy_probe())], false), &opts);
    assert_eq!(one(&r, "sevenz-member-too-large").member.as_deref(), Some("big.npy"));
    assert_eq!(probe_members(&r), ["big.npy", "next.npy"]);

    let files: Vec<(String, Vec<u8>)> = (0..6).map(|i| (format!("m{i}.npy"), npy_probe())).collect();
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    let opts = ScanOptions { max_members: 2, ..Default::default() };
    let r = scan_with(sevenz(&refs, true), &opts);
    assert_eq!(one(&r, "sevenz-too-many-members").severity, Severity::Error);
    assert_eq!(probe_members(&r).len(), 2);
}
