//! The policy's `[clamav]` table: defaults, the documented example, and every problem reported.

use modelgate::clamav::{ClamavConfig, Endpoint};
use modelgate::policy::{Policy, PolicyError, Problem, DEFAULT_POLICY};
use std::path::PathBuf;
use std::time::Duration;

fn clamav(text: &str) -> ClamavConfig {
    let p = Policy::parse(text, "p.toml").unwrap_or_else(|e| panic!("{e}"));
    p.scan_options().clamav.as_deref().cloned().expect("clamav configured")
}

fn problems(text: &str) -> Vec<Problem> {
    match Policy::parse(text, "p.toml") {
        Ok(_) => panic!("policy should be invalid:\n{text}"),
        Err(PolicyError { problems, .. }) => problems,
    }
}

fn has(ps: &[Problem], line: usize, key: &str, needle: &str) -> bool {
    ps.iter().any(|p| p.line == line && p.key == key && p.message.contains(needle))
}

#[test]
fn off_unless_configured() {
    assert!(Policy::builtin().scan_options().clamav.is_none());
    assert!(Policy::parse("", "p").unwrap().scan_options().clamav.is_none());
}

#[test]
fn values_and_defaults() {
    let c = clamav("[clamav]\nsocket = \"/run/clamav/clamd.ctl\"\n");
    assert_eq!(c.endpoint, Endpoint::Unix(PathBuf::from("/run/clamav/clamd.ctl")));
    assert_eq!((c.timeout, c.max_bytes, c.required), (Duration::from_secs(30), 25 << 20, true));
    let c = clamav("[clamav]\naddress = \"127.0.0.1:3310\"\ntimeout_ms = 500\nmax_bytes = 1_000\nrequired = false\n");
    assert_eq!(c.endpoint, Endpoint::Tcp("127.0.0.1:3310".into()));
    assert_eq!((c.timeout, c.max_bytes, c.required), (Duration::from_millis(500), 1000, false));
}

#[test]
fn documented_example_is_valid() {
    // Uncomment the `[clamav]` block of the built-in policy.
    let block: Vec<&str> = DEFAULT_POLICY.lines().skip_while(|l| *l != "# [clamav]").collect();
    assert!(!block.is_empty(), "the built-in policy documents [clamav]");
    let text: String = block
        .iter()
        .map(|l| l.strip_prefix("# ").filter(|r| !r.starts_with("# ")).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let c = clamav(&text);
    assert_eq!((c.max_bytes, c.required, c.timeout.as_millis()), (26_214_400, true, 30_000));
}

#[test]
fn every_problem_is_reported() {
    let ps = problems("[clamav]\nsocket = \"/s\"\naddress = \"h:1\"\ntimeout_ms = 5\nmax_bytes = 0\nport = 3\n");
    assert!(has(&ps, 3, "clamav.address", "not both"), "{ps:#?}");
    assert!(has(&ps, 4, "clamav.timeout_ms", "out of range 100..="), "{ps:#?}");
    assert!(has(&ps, 5, "clamav.max_bytes", "out of range 1..="), "{ps:#?}");
    assert!(has(&ps, 6, "clamav.port", "unknown key `port`; expected one of: socket, address"), "{ps:#?}");

    let ps = problems("[actions]\nsafe = \"allow\"\n\n[clamav]\nrequired = true\n");
    assert!(ps.iter().any(|p| p.key == "clamav.socket" && p.message.contains("is required")), "{ps:#?}");
    for bad in ["127.0.0.1", "h:0", ":3310", "h:99999"] {
        let ps = problems(&format!("[clamav]\naddress = \"{bad}\"\n"));
        assert!(has(&ps, 2, "clamav.address", "is not `host:port`"), "{bad}: {ps:#?}");
    }
    assert!(has(&problems("[clamav]\nsocket = \"\"\n"), 2, "clamav.socket", "empty"));
    assert!(has(&problems("[clamav]\nsocket = \"/s\"\nrequired = \"yes\"\n"), 3, "clamav.required", ""));
    assert!(has(&problems("clamav = 3\n"), 1, "clamav", "expected a table"));
}
