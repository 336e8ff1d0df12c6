//! What `modelgate policy check` says about a policy that loads: rules that can never match,
//! rules that never change a decision (the strictest action wins, so a rule milder than
//! `[actions]` or than a broader rule does nothing), pinned `[[allow]]` entries past their
//! date, an LFS store root that is not there, and what `modelgate scan` ignores.
//!
//! Nothing here changes a decision; it only reads the loaded [`Policy`].

use super::{Action, Date, FormatSet, Pin, Policy, Rule, Subject, FORMAT_NAMES, WRAPPER_NAMES};
use crate::finding::Verdict;
use crate::lfs::Layout;
use std::collections::HashSet;
use std::fmt;
use std::path::Path;

/// How much a remark matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// A fact worth knowing (a rule only the push gate applies).
    Note,
    /// Most likely not what the author meant: something never matches or never applies.
    Warning,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Note => "note",
            Level::Warning => "warning",
        }
    }
}

/// One remark about a policy, with the line and key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remark {
    pub level: Level,
    /// 1-based line in the policy file (0 when the remark is about the whole file).
    pub line: usize,
    /// Dotted key (`rule[1].refs[0]`), or empty.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Remark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = if self.key.is_empty() { String::new() } else { format!("`{}`: ", self.key) };
        write!(f, "{}: {key}{}", self.level.as_str(), self.message)
    }
}

/// Every remark about `policy`, in line order. `today` decides what has expired.
pub fn remarks(policy: &Policy, today: Date) -> Vec<Remark> {
    let mut out = Vec::new();
    for (i, r) in policy.rules.iter().enumerate() {
        rule_remarks(policy, i, r, &mut out);
    }
    for (i, e) in policy.exceptions.iter().enumerate() {
        for (j, g) in e.paths.iter().enumerate() {
            if let Some(why) = path_glob_never_matches(g) {
                out.push(warn(e.line, format!("ignore[{i}].paths[{j}]"), format!("`{g}` never matches: {why}")));
            }
        }
    }
    pinned_remarks(policy, today, &mut out);
    store_remarks(policy, &mut out);
    bypass_remarks(policy, &mut out);
    out.sort_by_key(|r| (r.line, std::cmp::Reverse(r.level)));
    out
}

fn warn(line: usize, key: impl Into<String>, message: impl Into<String>) -> Remark {
    Remark { level: Level::Warning, line, key: key.into(), message: message.into() }
}

fn note(line: usize, key: impl Into<String>, message: impl Into<String>) -> Remark {
    Remark { level: Level::Note, line, key: key.into(), message: message.into() }
}

fn rule_remarks(policy: &Policy, i: usize, r: &Rule, out: &mut Vec<Remark>) {
    let key = format!("rule[{i}]");
    let mut never = false;

    if let Some(why) = formats_never_match(r.formats.as_ref(), r.not_formats.as_ref()) {
        out.push(warn(r.line, format!("{key}.formats"), format!("this rule never matches: {why}")));
        never = true;
    }
    let dead_paths: Vec<(usize, &str, &str)> = r
        .paths
        .iter()
        .enumerate()
        .filter_map(|(j, g)| path_glob_never_matches(g).map(|why| (j, g.as_str(), why)))
        .collect();
    for (j, g, why) in &dead_paths {
        out.push(warn(r.line, format!("{key}.paths[{j}]"), format!("`{g}` never matches: {why}")));
    }
    never |= !r.paths.is_empty() && dead_paths.len() == r.paths.len();
    let dead_refs: Vec<(usize, &str, String)> = r
        .refs
        .iter()
        .enumerate()
        .filter_map(|(j, g)| ref_glob_never_matches(g).map(|why| (j, g.as_str(), why)))
        .collect();
    for (j, g, why) in &dead_refs {
        out.push(warn(r.line, format!("{key}.refs[{j}]"), format!("`{g}` never matches: {why}")));
    }
    never |= !r.refs.is_empty() && dead_refs.len() == r.refs.len();
    for (j, g) in r.repos.iter().enumerate() {
        if g.len() > 1 && g.ends_with('/') {
            let msg = format!("`{g}` never matches: repository names and paths have no trailing `/`");
            out.push(warn(r.line, format!("{key}.repos[{j}]"), msg));
        }
    }
    let forge_names: Vec<&str> =
        r.repos.iter().filter(|g| !g.starts_with('/') && !g.starts_with('*')).map(String::as_str).collect();
    if !forge_names.is_empty() && policy.gate.trust_env == super::TrustEnv::None {
        out.push(note(
            r.line,
            format!("{key}.repos"),
            format!(
                "{} name a forge repository; the gate reads forge names only from a trusted environment \
                 (`[gate] trust_env = \"gitea\"` or `\"gitlab\"`, or hooks installed with `--flavor gitea|gitlab`), \
                 otherwise only the repository's path on disk is matched",
                forge_names.iter().map(|g| format!("`{g}`")).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    if !r.refs.is_empty() || !r.repos.is_empty() {
        let by = if r.refs.is_empty() {
            "`repos`"
        } else if r.repos.is_empty() {
            "`refs`"
        } else {
            "`repos` and `refs`"
        };
        out.push(note(
            r.line,
            key.clone(),
            format!("scoped by {by}: only the push gate applies this rule; `modelgate scan` ignores it"),
        ));
    }
    if never {
        return;
    }

    // The strictest action wins: an action at most what applies anyway never shows.
    let mut dead = 0;
    for &(verdict, action) in r.actions() {
        let floor = floor(policy, verdict);
        let akey = format!("{key}.actions.{verdict}");
        if action < floor.0 {
            dead += 1;
            out.push(warn(
                r.line,
                akey,
                format!(
                    "sets `{verdict} = \"{action}\"`, but {} gives `{}` and the strictest action wins, so this \
                     never makes a file pass; to let one reviewed file through pin it (`[[allow]] sha256 = \"...\"` \
                     with a reason), to drop one finding under some paths use `[[ignore]] code = ... paths = [...]`",
                    floor.1, floor.0
                ),
            ));
            continue;
        }
        if action == floor.0 {
            dead += 1;
            out.push(note(r.line, akey, format!("sets `{verdict} = \"{action}\"`, which {} gives anyway", floor.1)));
            continue;
        }
        let stricter = policy
            .rules
            .iter()
            .enumerate()
            .find(|(j, s)| *j != i && s.action(verdict).is_some_and(|b| b > action) && covers(s, r));
        if let Some((j, s)) = stricter {
            dead += 1;
            out.push(warn(
                r.line,
                akey,
                format!(
                    "sets `{verdict} = \"{action}\"`, but rule[{j}] (line {}) matches every file this rule matches and \
                     sets `{}`: the strictest action wins, so this never applies",
                    s.line,
                    s.action(verdict).unwrap_or(Action::Reject)
                ),
            ));
        }
    }
    if dead > 0 && dead == r.actions().len() {
        out.push(warn(r.line, key, "this rule never changes a decision (see the remarks on its actions)"));
    }
}

/// The mildest action a file of `verdict` can have before rules: `[actions]`, and for
/// `error` also `on_error` / `lfs_missing` of the gate (which replace it for gate failures).
fn floor(policy: &Policy, verdict: Verdict) -> (Action, String) {
    let base = (policy.actions.get(verdict), format!("`[actions] {verdict}`"));
    if verdict != Verdict::Error {
        return base;
    }
    let g = &policy.gate;
    [base, (g.on_error, "`[gate] on_error`".to_string()), (g.lfs_missing, "`[gate] lfs_missing`".to_string())]
        .into_iter()
        .min_by_key(|(a, _)| *a)
        .unwrap_or((Action::Reject, String::new()))
}

/// Whether every file `r` matches is also matched by `s` (judged on the matchers as written:
/// the same globs or a `**`, a superset of formats, a subset of excluded formats).
fn covers(s: &Rule, r: &Rule) -> bool {
    let globs = |sg: &[String], rg: &[String]| {
        sg.is_empty() || sg.iter().any(|g| g == "**") || (!rg.is_empty() && rg.iter().all(|g| sg.contains(g)))
    };
    let names = |f: &Option<FormatSet>| f.as_ref().map(|f| f.names.iter().cloned().collect::<HashSet<_>>());
    let formats = match (names(&s.formats), names(&r.formats)) {
        (None, _) => true,
        (Some(sf), _)
            if sf.contains("any") && r.formats.as_ref().is_some_and(|f| !f.names.iter().any(|n| n == "unknown")) =>
        {
            true
        }
        (Some(sf), Some(rf)) => rf.is_subset(&sf),
        (Some(_), None) => false,
    };
    let not_formats = match (names(&s.not_formats), names(&r.not_formats)) {
        (None, _) => true,
        (Some(sn), Some(rn)) => sn.is_subset(&rn),
        (Some(_), None) => false,
    };
    globs(&s.paths, &r.paths) && globs(&s.repos, &r.repos) && globs(&s.refs, &r.refs) && formats && not_formats
}

/// Why no detected format can satisfy `formats` and `not_formats` together, if none can.
/// Every label the engine gives is a format name, optionally behind compression wrappers
/// (`gzip:pickle`); labels with up to two wrappers are tried, with and without imports.
fn formats_never_match(formats: Option<&FormatSet>, not_formats: Option<&FormatSet>) -> Option<String> {
    if formats.is_none() && not_formats.is_none() {
        return None;
    }
    let bases: Vec<&str> = FORMAT_NAMES.iter().copied().filter(|n| !WRAPPER_NAMES.contains(n)).collect();
    let mut labels: Vec<String> = bases.iter().map(|b| b.to_string()).collect();
    for w in WRAPPER_NAMES {
        for b in &bases {
            labels.push(format!("{w}:{b}"));
            for w2 in WRAPPER_NAMES {
                labels.push(format!("{w}:{w2}:{b}"));
            }
        }
    }
    let possible = labels.iter().any(|label| {
        [false, true].into_iter().any(|imports| {
            let s = Subject { format: label, imports, ..Default::default() };
            formats.is_none_or(|f| f.matches(&s)) && not_formats.is_none_or(|f| f.excludes(&s))
        })
    });
    if possible {
        return None;
    }
    Some(match (formats, not_formats) {
        (Some(f), Some(n)) => format!(
            "no format is in `formats` ({}) and outside `not_formats` ({})",
            f.names.join(", "),
            n.names.join(", ")
        ),
        (None, Some(n)) => format!("`not_formats` ({}) leaves no recognised format", n.names.join(", ")),
        _ => "`formats` names no format a file can have".to_string(),
    })
}

/// Why a `paths` glob can never match a path as the policy sees it (relative, `/`-separated,
/// no `./`, no trailing `/`), if it cannot.
fn path_glob_never_matches(g: &str) -> Option<&'static str> {
    if g.starts_with('/') {
        Some("paths are relative to the scanned directory or the repository root, without a leading `/`")
    } else if g.starts_with("./") {
        Some("paths never start with `./`; write the path from the root (`models/**`)")
    } else if g.len() > 1 && g.ends_with('/') {
        Some("paths of files never end with `/`; add `**` to match under a directory (`models/**`)")
    } else if g.contains('\\') && !g.contains("\\*") && !g.contains("\\?") && !g.contains("\\[") && !g.contains("\\{") {
        Some("`\\` is not a separator in paths; use `/`")
    } else {
        None
    }
}

/// Why a `refs` glob can never match a pushed ref (a full name such as `refs/heads/main`
/// that git accepts), if it cannot.
fn ref_glob_never_matches(g: &str) -> Option<String> {
    let glob_start = matches!(g.chars().next(), Some('*' | '?' | '[' | '{'));
    if !g.starts_with("refs/") && g != "HEAD" && !glob_start {
        let hint = if g.starts_with("heads/") || g.starts_with("tags/") {
            format!("refs/{g}")
        } else if g.contains('*') {
            format!("refs/heads/{g}")
        } else {
            format!("refs/heads/{g}` or `refs/tags/{g}")
        };
        return Some(format!("pushed refs are full names; did you mean `{hint}`?"));
    }
    // Characters and sequences git refuses in ref names (git check-ref-format), outside the
    // glob syntax `* ? [ ] { } ,` and `!` of classes.
    let bad_char = g.chars().find(|c| c.is_control() || *c == ' ' || "~^:\\".contains(*c));
    if let Some(c) = bad_char {
        return Some(format!("git refuses {c:?} in ref names"));
    }
    for seq in ["..", "@{", "//"] {
        if g.contains(seq) && !(seq == "@{" && g.contains("@{,")) {
            return Some(format!("git refuses `{seq}` in ref names"));
        }
    }
    if g.ends_with('/') || g.ends_with('.') || g.ends_with(".lock") {
        return Some("git refuses ref names ending in `/`, `.` or `.lock`".to_string());
    }
    if g.split('/').any(|c| c.starts_with('.')) {
        return Some("git refuses ref name components that start with `.`".to_string());
    }
    None
}

fn pinned_remarks(policy: &Policy, today: Date, out: &mut Vec<Remark>) {
    let mut seen: HashSet<&Pin> = HashSet::new();
    for p in &policy.pinned {
        let key = format!("allow[{}]", p.entry);
        if !seen.insert(&p.pin) {
            out.push(note(p.line, key.clone(), format!("another `[[allow]]` entry already pins {}", p.pin)));
        }
        match p.expires {
            Some(e) if today > e => out.push(warn(
                p.line,
                format!("{key}.expires"),
                format!(
                    "expired on {e}: {} is no longer allowed; remove the entry, or renew `expires` after a review",
                    p.pin
                ),
            )),
            Some(e) => {
                let days = days_between(today, e);
                if days <= 14 {
                    out.push(note(p.line, format!("{key}.expires"), format!("expires on {e} (in {days} day(s))")));
                }
            }
            None => {}
        }
    }
    for e in &policy.expired {
        out.push(warn(
            e.line,
            format!("allow[{}].expires", e.entry),
            format!(
                "expired on {}: `{}` is no longer allowlisted; remove the entry, or renew `expires`",
                e.expires, e.name
            ),
        ));
    }
}

/// Whole days from `a` to `b` (negative when `b` is earlier).
fn days_between(a: Date, b: Date) -> i64 {
    fn days(d: Date) -> i64 {
        // Howard Hinnant's `days_from_civil`.
        let y = i64::from(d.year) - i64::from(d.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = i64::from(d.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }
    days(b) - days(a)
}

fn store_remarks(policy: &Policy, out: &mut Vec<Remark>) {
    let store = &policy.lfs;
    let dir = match (store.layout, &store.root, &store.template) {
        (Layout::Template, root, Some(t)) => {
            let prefix = t.split('{').next().unwrap_or("");
            let prefix = prefix.rsplit_once('/').map_or("", |(d, _)| d);
            match root {
                Some(r) if !Path::new(prefix).is_absolute() => Some(r.join(prefix)),
                _ if Path::new(prefix).is_absolute() => Some(prefix.into()),
                _ => None,
            }
        }
        (_, Some(r), _) => Some(r.clone()),
        _ => None,
    };
    let Some(dir) = dir else { return };
    if !dir.is_absolute() {
        out.push(note(
            0,
            "lfs.root",
            format!("`{}` is relative: it is looked up under each repository's git directory", dir.display()),
        ));
        return;
    }
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => out.push(warn(0, "lfs.root", format!("{} is not a directory", dir.display()))),
        Err(e) => out.push(warn(
            0,
            "lfs.root",
            format!(
                "the lfs store {} cannot be read here ({e}): every pushed lfs pointer would be rejected as a \
                 server misconfiguration; check `[lfs] root` (Gitea: `[lfs] PATH` of app.ini)",
                dir.display()
            ),
        )),
    }
}

fn bypass_remarks(policy: &Policy, out: &mut Vec<Remark>) {
    let b = &policy.bypass;
    if !b.pushers.is_empty() && b.pusher_env.is_none() && policy.gate.trust_env == super::TrustEnv::None {
        out.push(note(
            0,
            "bypass.pushers",
            "the gate knows who pushes only from a trusted environment (`[gate] trust_env`, hooks installed with \
             `--flavor gitea|gitlab`, or `[bypass] pusher_env`); without one no bypass is honoured",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_arithmetic() {
        let d = |y, m, dd| Date::new(y, m, dd).unwrap();
        assert_eq!(days_between(d(2024, 2, 28), d(2024, 3, 1)), 2);
        assert_eq!(days_between(d(2023, 12, 31), d(2024, 1, 1)), 1);
        assert_eq!(days_between(d(2024, 1, 1), d(2023, 1, 1)), -365);
        assert_eq!(Date::from_unix_days(0), d(1970, 1, 1));
        assert_eq!(Date::from_unix_days(19_723), d(2024, 1, 1));
        assert_eq!(Date::from_unix_days(11_016), d(2000, 2, 29));
    }

    #[test]
    fn ref_globs_git_refuses() {
        assert!(ref_glob_never_matches("refs/heads/main").is_none());
        assert!(ref_glob_never_matches("refs/tags/**").is_none());
        assert!(ref_glob_never_matches("refs/heads/{main,release/*}").is_none());
        assert!(ref_glob_never_matches("main").unwrap().contains("refs/heads/main"));
        assert!(ref_glob_never_matches("heads/main").unwrap().contains("refs/heads/main"));
        assert!(ref_glob_never_matches("refs/heads/a b").is_some());
        assert!(ref_glob_never_matches("refs/heads/x..y").is_some());
        assert!(ref_glob_never_matches("refs/heads/").is_some());
        assert!(ref_glob_never_matches("refs/heads/x.lock").is_some());
        assert!(ref_glob_never_matches("refs/heads/.hidden").is_some());
    }

    #[test]
    fn format_sets_that_exclude_each_other() {
        let set = |n: &[&str]| Some(FormatSet { names: n.iter().map(|s| s.to_string()).collect() });
        assert!(formats_never_match(set(&["pickle"]).as_ref(), set(&["pickle"]).as_ref()).is_none(), "gzip:pickle");
        assert!(formats_never_match(set(&["unknown"]).as_ref(), set(&["json"]).as_ref()).is_none(), "gzip:unknown");
        let all: Vec<&str> = FORMAT_NAMES.to_vec();
        assert!(formats_never_match(set(&["safetensors"]).as_ref(), set(&all).as_ref()).is_some());
        assert!(formats_never_match(set(&["unknown"]).as_ref(), set(&all).as_ref()).is_some());
        assert!(formats_never_match(None, set(&["any"]).as_ref()).is_none(), "gzip:unknown");
        assert!(formats_never_match(set(&["gguf"]).as_ref(), None).is_none());
    }
}
