//! Loading and validating policies: every problem reported, with line, column and key.

use modelgate::engine::{FileReport, ScanOptions};
use modelgate::finding::{Finding, Severity, Verdict};
use modelgate::policy::{Action, Actions, Policy, PolicyError, Problem, DEFAULT_POLICY};

fn problems(text: &str) -> Vec<Problem> {
    match Policy::parse(text, "p.toml") {
        Ok(_) => panic!("policy should be invalid:\n{text}"),
        Err(PolicyError { problems, .. }) => problems,
    }
}

/// The problem at `line` whose key is `key`, with a message containing `needle`.
fn has(ps: &[Problem], line: usize, key: &str, needle: &str) -> bool {
    ps.iter().any(|p| p.line == line && p.key == key && p.message.contains(needle))
}

fn report(findings: Vec<Finding>) -> FileReport {
    let verdict = Verdict::from_findings(&findings, true);
    FileReport { path: "x".into(), format: "pickle".into(), verdict, size: 1, imports: Vec::new(), findings }
}

#[test]
fn default_policy_loads_with_the_documented_defaults() {
    let p = Policy::parse(DEFAULT_POLICY, "default").unwrap();
    assert_eq!(p.actions, Actions::default());
    assert_eq!(p.actions.get(Verdict::Dangerous), Action::Reject);
    assert_eq!(p.actions.get(Verdict::Suspicious), Action::Tag);
    assert_eq!(p.actions.get(Verdict::Error), Action::Reject);
    assert_eq!(p.actions.get(Verdict::Unsupported), Action::Allow);
    assert_eq!(p.actions.get(Verdict::Safe), Action::Allow);
    let (o, d) = (p.scan_options(), ScanOptions::default());
    assert_eq!(
        (o.max_depth, o.max_expanded_bytes, o.max_buffered_bytes, o.max_members),
        (d.max_depth, d.max_expanded_bytes, d.max_buffered_bytes, d.max_members)
    );
    assert_eq!(
        (o.max_pickle_opcodes, o.max_pickle_values, o.max_nested_pickle_bytes),
        (d.max_pickle_opcodes, d.max_pickle_values, d.max_nested_pickle_bytes)
    );
    // An empty policy is the default policy.
    let empty = Policy::parse("", "empty").unwrap();
    assert_eq!(empty.actions, p.actions);
}

#[test]
fn commented_examples_in_the_default_policy_are_valid() {
    // Uncomment every example entry: the documentation must not teach invalid syntax.
    let keys = [
        "[[",
        "name =",
        "reason =",
        "paths =",
        "actions =",
        "action =",
        "code =",
        "repos =",
        "refs =",
        "formats =",
        "not_formats =",
        "max_file_size =",
        "root =",
        "pusher_env =",
        "sha256 =",
        "expires =",
    ];
    let text: String = DEFAULT_POLICY
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if keys.iter().any(|k| rest.starts_with(k)) => rest.to_string(),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("\n[[rule]]") && text.contains("\n[[ignore]]") && text.contains("\n[[allow]]"));
    let p = Policy::parse(&text, "examples").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.rules.len(), 4);
    assert_eq!(p.exceptions.len(), 1);
    assert_eq!(p.gate.max_file_size, Some(107_374_182_400));
    assert_eq!(p.bypass.pusher_env.as_deref(), Some("REMOTE_USER"));
    assert_eq!(p.pinned.len(), 1);
    assert_eq!(p.pinned[0].expires.map(|d| d.to_string()).as_deref(), Some("2027-01-31"));
}

#[test]
fn every_problem_is_reported_with_line_and_key() {
    let text = r#"[actions]
suspicious = "rejct"
dangerous = "reject"
colour = "red"

[limits]
max_depth = 0
max_members = 10

[[allow]]
name = ""
reason = "x"

[[deny]]
name = "os.system"

[[rule]]
paths = ["a/[b"]
actions = { suspicous = "reject" }
reason = "r"

[[rule]]
paths = []
actions = { error = "tag" }

[[ignore]]
code = "no-such-code"
reason = "r"

[[ignore]]
code = "read-error"

[[ignore]]
code = "read-error"
reason = "   "

[plugins]
load = "evil.so"
"#;
    let ps = problems(text);
    let all = ps.iter().map(|p| format!("{}:{} {} {}", p.line, p.column, p.key, p.message)).collect::<Vec<_>>();
    let expect = [
        (2, "actions.suspicious", "unknown action `rejct`"),
        (4, "actions.colour", "unknown key `colour`"),
        (7, "limits.max_depth", "out of range 1..=64"),
        (11, "allow[0].name", "`name` is empty"),
        (14, "deny[0].reason", "`reason` is required"),
        (18, "rule[0].paths[0]", "invalid glob `a/[b`"),
        (19, "rule[0].actions.suspicous", "unknown key `suspicous`"),
        (23, "rule[1].paths", "`paths` is empty"),
        (22, "rule[1].reason", "`reason` is required"),
        (27, "ignore[0].code", "unknown code `no-such-code`"),
        (30, "ignore[1].reason", "`reason` is required"),
        (35, "ignore[2].reason", "`reason` is empty"),
        (37, "plugins", "unknown section `plugins`"),
    ];
    for (line, key, needle) in expect {
        assert!(has(&ps, line, key, needle), "missing {line} {key} {needle}:\n{}", all.join("\n"));
    }
    assert_eq!(ps.len(), expect.len(), "{}", all.join("\n"));
    // Sorted by position, with columns.
    assert!(ps.windows(2).all(|w| (w[0].line, w[0].column) <= (w[1].line, w[1].column)));
    assert_eq!(ps[0].column, 14, "column of the bad value");
}

#[test]
fn error_display_names_file_line_and_key() {
    let err = Policy::parse("[actions]\nsafe = \"maybe\"\n", "conf/p.toml").unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("invalid policy conf/p.toml: 1 problem"), "{text}");
    assert!(text.contains("conf/p.toml:2:8: `actions.safe`: unknown action `maybe`"), "{text}");
}

#[test]
fn unknown_keys_are_rejected_everywhere() {
    let ps =
        problems("[[rule]]\npaths = [\"x\"]\nactions = { error = \"tag\" }\nreason = \"r\"\nrepo = \"x\"\nwhen = 1\n");
    assert!(has(&ps, 5, "rule[0].repo", "unknown key `repo`"), "{ps:?}");
    assert!(has(&ps, 6, "rule[0].when", "unknown key `when`"), "{ps:?}");
    let ps = problems("[limits]\nmax_dept = 3\n");
    assert!(has(&ps, 2, "limits.max_dept", "expected one of: max_depth"), "{ps:?}");
    let ps = problems("[[ignore]]\ncode = \"read-error\"\nreason = \"r\"\nseverity = \"info\"\n");
    assert!(has(&ps, 4, "ignore[0].severity", "unknown key"), "{ps:?}");
    let ps = problems("include = \"other.toml\"\n");
    assert!(has(&ps, 1, "include", "unknown section"), "{ps:?}");
}

#[test]
fn wrong_types_and_syntax_errors_have_locations() {
    let ps = problems("[[allow]]\nname = \"a.b\"\nreason = 3\n");
    assert!(has(&ps, 3, "allow[0].reason", "invalid type: integer"), "{ps:?}");
    let ps = problems("[limits]\nmax_depth = \"deep\"\n");
    assert!(has(&ps, 2, "limits.max_depth", "invalid type"), "{ps:?}");
    let ps = problems("actions = 3\n");
    assert!(has(&ps, 1, "actions", "expected a table"), "{ps:?}");
    let ps = problems("[actions]\nsafe = \"allow\"\n[actions]\n");
    assert!(ps.iter().any(|p| p.line == 3), "{ps:?}");
    let ps = problems("allow = { name = \"x\" }\n");
    assert!(has(&ps, 1, "allow", "expected an array of tables"), "{ps:?}");
    let ps = problems("[[rule]]\npaths = \"models/**\"\nactions = { error = \"tag\" }\nreason = \"r\"\n");
    assert!(has(&ps, 2, "rule[0].paths", "invalid type"), "{ps:?}");
}

#[test]
fn import_entries_need_a_name_and_a_reason() {
    let ps = problems("[[allow]]\nreason = \"r\"\n\n[[allow]]\nname = \"torch..nn\"\nreason = \"r\"\n\n[[deny]]\nname = \"*\"\nreason = \"r\"\n");
    assert!(has(&ps, 1, "allow[0].name", "`name` is required"), "{ps:?}");
    assert!(has(&ps, 5, "allow[1].name", "not an import name"), "{ps:?}");
    assert!(has(&ps, 9, "deny[0].name", "not an import name"), "{ps:?}");
    let ok = "[[allow]]\nname = \"mylib.layers.Attention\"\nreason = \"ours\"\n[[allow]]\nname = \"mylib.*\"\nreason = \"ours\"\n[[deny]]\nname = \"mylib\"\nreason = \"x\"\n";
    Policy::parse(ok, "ok").unwrap();
}

#[test]
fn exceptions_require_a_reason_and_a_known_code() {
    let ps = problems("[[ignore]]\ncode = \"read-error\"\n");
    assert!(has(&ps, 1, "ignore[0].reason", "`reason` is required"), "{ps:?}");
    let ps = problems("[[ignore]]\nreason = \"r\"\n");
    assert!(has(&ps, 1, "ignore[0].code", "`code` is required"), "{ps:?}");
    let ps = problems("[[ignore]]\ncode = \"read-eror\"\nreason = \"r\"\n");
    assert!(has(&ps, 2, "ignore[0].code", "did you mean `read-error`"), "{ps:?}");
}

#[test]
fn rules_match_by_path_glob_and_the_strictest_action_wins() {
    let text = r#"
[actions]
error = "tag"

[[rule]]
paths = ["vendor/**"]
actions = { suspicious = "reject", error = "reject" }
reason = "vendored"

[[rule]]
paths = ["vendor/trusted/*.pt"]
actions = { suspicious = "allow" }
reason = "trusted"

[[rule]]
paths = ["models/**"]
actions = { error = "reject" }
reason = "models must be judged"
"#;
    let p = Policy::parse(text, "p").unwrap();
    let sus = report(vec![Finding::new("x", Severity::Suspicious, "m")]);
    let err = report(vec![Finding::new("read-error", Severity::Error, "m")]);

    let d = p.decide(&sus, "models/a.pt");
    assert_eq!((d.action, d.rule.is_none()), (Action::Tag, true), "no rule for the verdict: [actions]");

    let d = p.decide(&sus, "vendor/x/a.pt");
    assert_eq!(d.action, Action::Reject);
    assert_eq!(d.rule.as_ref().map(|r| (r.index, r.line, r.reason.as_str())), Some((0, 5, "vendored")));

    // A later, milder rule does not undo an earlier, stricter one (nor the other way round).
    let d = p.decide(&sus, "vendor/trusted/a.pt");
    assert_eq!((d.action, d.rule.map(|r| r.index)), (Action::Reject, Some(0)), "the strictest rule wins");

    // A rule raises [actions] for its paths; the rule is named.
    let d = p.decide(&err, "models/a.pt");
    assert_eq!((d.action, d.rule.map(|r| r.index)), (Action::Reject, Some(2)));
    let d = p.decide(&err, "docs/a.pt");
    assert_eq!((d.action, d.rule), (Action::Tag, None));

    // `*` stays within one path component.
    let d = p.decide(&sus, "vendor/trusted/deeper/a.pt");
    assert_eq!((d.action, d.rule.map(|r| r.index)), (Action::Reject, Some(0)));

    // The order of the rules does not matter.
    let reversed = r#"
[[rule]]
paths = ["vendor/trusted/*.pt"]
actions = { suspicious = "allow" }
reason = "trusted"

[[rule]]
paths = ["vendor/**"]
actions = { suspicious = "reject" }
reason = "vendored"
"#;
    let q = Policy::parse(reversed, "q").unwrap();
    assert_eq!(q.decide(&sus, "vendor/trusted/a.pt").action, Action::Reject);
}

#[test]
fn exceptions_drop_findings_and_the_verdict_is_recomputed() {
    let text = r#"
[[ignore]]
code = "read-error"
paths = ["fixtures/**"]
reason = "truncated on purpose"

[[ignore]]
code = "container-too-deep"
reason = "never used"
"#;
    let p = Policy::parse(text, "p").unwrap();
    let r =
        report(vec![Finding::new("x", Severity::Suspicious, "m"), Finding::new("read-error", Severity::Error, "m")]);
    assert_eq!(r.verdict, Verdict::Error);

    let d = p.decide(&r, "fixtures/a.bin");
    assert_eq!(d.verdict, Verdict::Suspicious);
    assert_eq!(d.action, Action::Tag);
    assert!(d.is_suppressed(1) && !d.is_suppressed(0));
    assert_eq!(d.suppressed[0].reason, "truncated on purpose");

    let d = p.decide(&r, "models/a.bin");
    assert_eq!((d.verdict, d.action), (Verdict::Error, Action::Reject), "outside `paths`");
    assert!(d.suppressed.is_empty());

    // A dangerous finding is never hidden because an error next to it was ignored.
    let mut r2 = r.clone();
    r2.findings.push(Finding::new("y", Severity::Dangerous, "boom"));
    r2.verdict = Verdict::Dangerous;
    assert_eq!(p.decide(&r2, "fixtures/a.bin").verdict, Verdict::Dangerous);

    let used = [0usize].into_iter().collect();
    let unused = p.unused_exceptions(&used);
    assert_eq!(unused.len(), 1);
    assert_eq!((unused[0].code, unused[0].line), ("container-too-deep", 7));
}

#[test]
fn limits_are_applied_and_range_checked() {
    let p = Policy::parse("[limits]\nmax_depth = 3\nmax_expanded_bytes = 1_048_576\n", "p").unwrap();
    assert_eq!(p.scan_options().max_depth, 3);
    assert_eq!(p.scan_options().max_expanded_bytes, 1 << 20);
    let ps = problems("[limits]\nmax_expanded_bytes = -5\nmax_pickle_values = 10_000_000_000\nmax_depth = 65\n");
    assert_eq!(ps.len(), 3, "{ps:?}");
    assert!(has(&ps, 2, "limits.max_expanded_bytes", "-5 is out of range"));
    assert!(has(&ps, 3, "limits.max_pickle_values", "out of range"));
}

#[test]
fn policy_files_are_read_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(&path, "[actions]\nsuspicious = \"reject\"\n").unwrap();
    let p = Policy::from_file(&path).unwrap();
    assert_eq!(p.actions.suspicious, Action::Reject);
    let missing = Policy::from_file(&dir.path().join("nope.toml")).unwrap_err();
    assert!(format!("{missing:#}").starts_with("cannot read policy"), "{missing:#}");
}
