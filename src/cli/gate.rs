//! `modelgate lfs scan|watch` and `modelgate install`: argument handling around
//! [`crate::hook::lfs_store`] and [`crate::hook::install`].

use crate::hook::gate::{hook_config, load_policy};
use crate::hook::install::{self, Flavor, Options, Outcome, PolicyChoice};
use crate::hook::lfs_store::{parse_oid, LfsRun, ObjectVerdict, WatchOptions};
use crate::hook::Action;
use crate::policy::{parse_duration, Policy, TrustEnv};
use crate::report::{EXIT_CANNOT_RUN, EXIT_OK, EXIT_REJECT};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum LfsCommand {
    /// Judge LFS objects by oid (arguments, or one per line on stdin); exit 1 if any is rejected
    Scan(LfsScanArgs),
    /// Poll a filesystem LFS store and judge each object once it is complete
    Watch(LfsWatchArgs),
}

#[derive(Debug, Args)]
pub struct LfsCommon {
    /// Policy file (default: $MODELGATE_POLICY, else <git-dir>/modelgate.toml, else
    /// /etc/modelgate/policy.toml, else the built-in policy); its [lfs] section names the store
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The repository (or base directory) relative store, cache and audit-log paths are
    /// resolved against (default: $GIT_DIR, else the current directory)
    #[arg(long, value_name = "DIR")]
    pub git_dir: Option<PathBuf>,
    /// Output format
    #[arg(long, value_enum, default_value_t = LfsFormat::Human)]
    pub format: LfsFormat,
    /// The repository an lfs `template` store's {repo}, {owner} and {name} stand for
    /// (`owner/name`; default: from the git directory's path)
    #[arg(long, value_name = "NAME")]
    pub repo: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LfsFormat {
    /// One line per object
    Human,
    /// JSON (a document for `scan`, one object per line for `watch`)
    Json,
}

#[derive(Debug, Args)]
pub struct LfsScanArgs {
    #[command(flatten)]
    pub common: LfsCommon,
    /// Object ids (`<64 hex>` or `sha256:<64 hex>`); read from stdin when none are given
    #[arg(value_name = "OID")]
    pub oids: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LfsWatchArgs {
    #[command(flatten)]
    pub common: LfsCommon,
    /// Move rejected objects (and a JSON verdict beside each) to this directory
    #[arg(long, value_name = "DIR")]
    pub quarantine: Option<PathBuf>,
    /// Time between polls
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration)]
    pub interval: std::time::Duration,
    /// A file unchanged for this long is taken as finished (objects must also hash to their oid)
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = duration)]
    pub settle: std::time::Duration,
    /// Poll once and exit
    #[arg(long, conflicts_with = "max_iterations")]
    pub once: bool,
    /// Exit after this many polls
    #[arg(long, value_name = "N")]
    pub max_iterations: Option<u64>,
    /// Remember judged objects one by one for this long past the poll that saw them (by
    /// ctime; covers the clock skew of a network filesystem); older ones are passed over
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = duration)]
    pub remember: std::time::Duration,
}

fn duration(s: &str) -> Result<std::time::Duration, String> {
    parse_duration(s)
}

/// `--trust-env`: none, gitea (forgejo), gitlab, http.
pub fn trust_env(s: &str) -> Result<TrustEnv, String> {
    TrustEnv::parse(s)
        .ok_or_else(|| format!("unknown environment `{s}`; expected none, gitea, forgejo, gitlab or http"))
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Which server runs the hooks
    #[arg(long, value_enum, default_value_t = FlavorArg::Git)]
    pub flavor: FlavorArg,
    /// Policy file the hooks use (checked now). Default: what installed hooks use, else the
    /// hook's own lookup
    #[arg(long, value_name = "FILE", conflicts_with = "no_policy")]
    pub policy: Option<PathBuf>,
    /// Drop the policy installed hooks name: the hooks use their own lookup
    #[arg(long)]
    pub no_policy: bool,
    /// The environment the hooks believe (pusher, repository name, MODELGATE_POLICY): none,
    /// gitea, gitlab, http. Default: what installed hooks say, else gitea/gitlab for those
    /// flavors, none for plain git
    #[arg(long, value_name = "ENV", value_parser = trust_env)]
    pub trust_env: Option<TrustEnv>,
    /// Remove the hooks modelgate installed (and restore what --force replaced)
    #[arg(long)]
    pub uninstall: bool,
    /// Replace hooks modelgate did not write (they are kept as <hook>.modelgate-backup)
    #[arg(long)]
    pub force: bool,
    /// Server-wide: GitLab: gitaly's custom_hooks_dir; Gitea/Forgejo: a hooks directory for
    /// every repository, present and future (git's core.hooksPath), that runs the gate and then
    /// each repository's own hooks
    #[arg(long, value_name = "DIR")]
    pub global_dir: Option<PathBuf>,
    /// With --flavor gitea --global-dir: set core.hooksPath in this git configuration file
    /// (the one Gitea's git reads: <[git] HOME_PATH>/.gitconfig, by default
    /// <APP_DATA_PATH>/home/.gitconfig); removed again with --uninstall
    #[arg(long, value_name = "FILE", requires = "global_dir")]
    pub git_config: Option<PathBuf>,
    /// The modelgate binary the hooks run (default: this one)
    #[arg(long, value_name = "PATH")]
    pub bin: Option<PathBuf>,
    /// Bare repositories (or work trees) to install into
    #[arg(value_name = "REPO", required_unless_present = "global_dir")]
    pub repos: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlavorArg {
    /// Plain git: hooks/pre-receive, hooks/post-receive
    Git,
    /// Gitea and Forgejo: hooks/<name>.d/modelgate
    Gitea,
    /// GitLab (Gitaly): custom_hooks/<name>.d/modelgate
    Gitlab,
}

pub fn lfs(c: &LfsCommand) -> Result<i32> {
    match c {
        LfsCommand::Scan(a) => lfs_scan(a),
        LfsCommand::Watch(a) => lfs_watch(a),
    }
}

fn base_dir(common: &LfsCommon) -> PathBuf {
    common
        .git_dir
        .clone()
        .or_else(|| std::env::var_os("GIT_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("."))
}

fn policy_for(common: &LfsCommon, base: &Path) -> Result<Policy> {
    Ok(load_policy(common.policy.as_deref(), base)?.0)
}

/// The gate configuration of an LFS command: the policy's, with the repository a template
/// store names (`--repo`, else the git directory's last two path components).
fn lfs_config(common: &LfsCommon, policy: &Policy, base: &Path) -> Result<crate::hook::HookConfig> {
    let mut config = hook_config(policy);
    config.lfs.repo = match &common.repo {
        Some(r) => {
            Some(crate::lfs::StoreRepo::new(r).ok_or_else(|| anyhow::anyhow!("`{r}` is not a repository name"))?)
        }
        None if config.lfs.names_repo() => {
            crate::hook::HookEnv { git_dir: base.to_path_buf(), ..Default::default() }.lfs_repo()
        }
        None => None,
    };
    if let Some(problem) = config.lfs.misconfiguration(base) {
        eprintln!("modelgate: warning: {problem}: lfs objects cannot be judged until [lfs] is fixed");
    }
    Ok(config)
}

fn lfs_scan(a: &LfsScanArgs) -> Result<i32> {
    let base = base_dir(&a.common);
    let policy = policy_for(&a.common, &base)?;
    let mut oids = Vec::new();
    if a.oids.is_empty() {
        for line in io::stdin().lock().lines() {
            let line = line.context("cannot read stdin")?;
            if !line.trim().is_empty() {
                oids.push(parse_oid(&line)?);
            }
        }
    } else {
        for o in &a.oids {
            oids.push(parse_oid(o)?);
        }
    }
    let run = LfsRun { policy: &policy, config: lfs_config(&a.common, &policy, &base)?, base };
    let verdicts = run.scan(&oids, &mut io::stderr())?;
    let mut out = io::stdout().lock();
    match a.common.format {
        LfsFormat::Human => {
            for v in &verdicts {
                writeln!(out, "{}", v.line())?;
            }
        }
        LfsFormat::Json => {
            let count = |x: Action| verdicts.iter().filter(|v| v.action == x).count();
            let doc = serde_json::json!({
                "modelgate": env!("CARGO_PKG_VERSION"),
                "objects": verdicts,
                "summary": {
                    "objects": verdicts.len(),
                    "allow": count(Action::Allow),
                    "tag": count(Action::Tag),
                    "reject": count(Action::Reject),
                    "exit_code": exit_code(&verdicts),
                },
            });
            serde_json::to_writer_pretty(&mut out, &doc)?;
            writeln!(out)?;
        }
    }
    Ok(exit_code(&verdicts))
}

fn exit_code(v: &[ObjectVerdict]) -> i32 {
    if v.iter().any(|v| v.action == Action::Reject) {
        EXIT_REJECT
    } else {
        EXIT_OK
    }
}

fn lfs_watch(a: &LfsWatchArgs) -> Result<i32> {
    let base = base_dir(&a.common);
    let policy = policy_for(&a.common, &base)?;
    let run = LfsRun { policy: &policy, config: lfs_config(&a.common, &policy, &base)?, base };
    let opts = WatchOptions {
        quarantine: a.quarantine.clone(),
        interval: a.interval,
        settle: a.settle,
        max_iterations: if a.once { Some(1) } else { a.max_iterations },
        remember: a.remember,
    };
    let json = a.common.format == LfsFormat::Json;
    let mut failed: Option<io::Error> = None;
    let mut report = |v: &ObjectVerdict| {
        let mut out = io::stdout().lock();
        let r = if json {
            serde_json::to_string(v).map_err(io::Error::other).and_then(|t| writeln!(out, "{t}"))
        } else {
            writeln!(out, "{}", v.line())
        };
        if let Err(e) = r.and_then(|_| out.flush()) {
            failed.get_or_insert(e);
        }
    };
    let summary = run.watch(&opts, &mut report, &mut io::stderr())?;
    if let Some(e) = failed {
        return Err(e).context("cannot write the report");
    }
    if !json {
        eprintln!(
            "modelgate: {} poll(s), {} object(s) judged, {} rejected, {} quarantined, {} not finished yet",
            summary.polls, summary.judged, summary.rejected, summary.quarantined, summary.pending
        );
    }
    Ok(EXIT_OK)
}

pub fn install(a: &InstallArgs) -> Result<i32> {
    let flavor = match a.flavor {
        FlavorArg::Git => Flavor::Git,
        FlavorArg::Gitea => Flavor::Gitea,
        FlavorArg::Gitlab => Flavor::Gitlab,
    };
    let absolute = |p: &Path| -> Result<PathBuf> {
        std::fs::canonicalize(p).with_context(|| format!("cannot find {}", p.display()))
    };
    let bin = match &a.bin {
        Some(b) => absolute(b)?,
        None => std::env::current_exe().and_then(std::fs::canonicalize).context("cannot find this binary")?,
    };
    let policy = match (&a.policy, a.no_policy) {
        (Some(p), _) if !a.uninstall => {
            Policy::from_file(p)?;
            PolicyChoice::Set(absolute(p)?)
        }
        (_, true) => PolicyChoice::Drop,
        _ => PolicyChoice::Keep,
    };
    let opts = Options { flavor, bin, policy, trust: a.trust_env, force: a.force };
    let mut targets: Vec<(Option<PathBuf>, Option<PathBuf>)> = Vec::new();
    if let Some(g) = &a.global_dir {
        if !a.repos.is_empty() {
            bail!("give either --global-dir or repositories, not both");
        }
        if flavor == Flavor::Gitea && !a.uninstall {
            std::fs::create_dir_all(g).with_context(|| format!("cannot create {}", g.display()))?;
        }
        let g = if flavor == Flavor::Gitea { absolute(g).unwrap_or_else(|_| g.clone()) } else { g.clone() };
        targets.push((None, Some(g)));
    }
    if a.git_config.is_some() && flavor != Flavor::Gitea {
        bail!("--git-config is for --flavor gitea --global-dir (git's core.hooksPath)");
    }
    for r in &a.repos {
        targets.push((Some(install::git_dir_of(r)?), None));
    }
    let mut out = io::stdout().lock();
    let mut failed = false;
    for (repo, global) in &targets {
        let mut res = if a.uninstall {
            install::uninstall(flavor, repo.as_deref(), global.as_deref())
        } else {
            install::install(&opts, repo.as_deref(), global.as_deref())
        };
        if let (Ok(outcomes), Some(g), Flavor::Gitea) = (&mut res, global, flavor) {
            let step = match (&a.git_config, a.uninstall) {
                (Some(c), false) => install::set_hooks_path(c, g, a.force),
                (Some(c), true) => install::unset_hooks_path(c, g),
                (None, false) => Ok(Outcome::Note(format!(
                    "now make git use {dir} for every repository, as the user Gitea runs as, in the git \
                     configuration Gitea's git reads: `git config --file <HOME_PATH>/.gitconfig core.hooksPath {dir}` \
                     ([git] HOME_PATH of app.ini, by default <APP_DATA_PATH>/home), or give --git-config FILE",
                    dir = g.display()
                ))),
                (None, true) => Ok(Outcome::Note(
                    "remove core.hooksPath from the git configuration that names this directory".into(),
                )),
            };
            match step {
                Ok(o) => outcomes.push(o),
                Err(e) => res = Err(e),
            }
        }
        match res {
            Ok(outcomes) => {
                for o in outcomes {
                    match o {
                        Outcome::Warning(_) => eprintln!("{o}"),
                        _ => writeln!(out, "{o}")?,
                    }
                }
            }
            Err(e) => {
                let which = repo.as_deref().or(global.as_deref()).map(|p| p.display().to_string()).unwrap_or_default();
                eprintln!("error: {which}: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { EXIT_CANNOT_RUN } else { EXIT_OK })
}

/// `modelgate policy check FILE`: every problem (exit 2), else `ok` and the remarks of
/// [`crate::policy::check::remarks`] (exit 1 with `--deny-warnings` when there are warnings).
pub fn policy_check(file: &Path, deny_warnings: bool) -> Result<i32> {
    let p = Policy::from_file(file)?;
    let remarks = crate::policy::check::remarks(&p, crate::policy::Date::today());
    let mut out = io::stdout().lock();
    let warnings = remarks.iter().filter(|r| r.level == crate::policy::check::Level::Warning).count();
    let pinned = if p.pinned.is_empty() { String::new() } else { format!(", {} pinned files", p.pinned.len()) };
    writeln!(
        out,
        "{}: ok ({} rules, {} exceptions{pinned}){}",
        file.display(),
        p.rules.len(),
        p.exceptions.len(),
        if warnings > 0 { format!("; {warnings} warning(s)") } else { String::new() }
    )?;
    for r in &remarks {
        let at = if r.line > 0 { format!("{}:{}: ", file.display(), r.line) } else { format!("{}: ", file.display()) };
        writeln!(out, "{at}{r}")?;
    }
    Ok(if deny_warnings && warnings > 0 { EXIT_REJECT } else { EXIT_OK })
}

/// On stderr before a scan: rules `modelgate scan` does not apply, and pinned entries that
/// have expired, so that a gate policy used for a scan does not mislead.
pub fn scan_notes(p: &Policy) {
    let scoped: Vec<String> = p
        .rules
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.refs.is_empty() || !r.repos.is_empty())
        .map(|(i, r)| format!("rule[{i}] (line {})", r.line))
        .collect();
    if !scoped.is_empty() {
        eprintln!(
            "note: {} scoped by `repos` or `refs` only apply in the push gate, not to `modelgate scan`: {}",
            if scoped.len() == 1 { "1 rule is" } else { "rules" },
            scoped.join(", ")
        );
    }
    let today = crate::policy::Date::today();
    for e in p.pinned.iter().filter(|e| !e.active_on(today)) {
        eprintln!(
            "warning: allow[{}] ({}:{}) expired on {}: {} is no longer allowed",
            e.entry,
            p.origin,
            e.line,
            e.expires.map(|d| d.to_string()).unwrap_or_default(),
            e.pin
        );
    }
    for e in &p.expired {
        eprintln!(
            "warning: allow[{}] ({}:{}) expired on {}: `{}` is no longer allowlisted",
            e.entry, p.origin, e.line, e.expires, e.name
        );
    }
}

#[derive(Debug, Args)]
pub struct PolicyTestArgs {
    /// Policy file (default: $MODELGATE_POLICY, else <git-dir>/modelgate.toml, else
    /// /etc/modelgate/policy.toml, else the built-in policy)
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The repository, as rules' `repos` see it: a forge name (`owner/name`) or its path
    #[arg(long, value_name = "NAME")]
    pub repo: Option<String>,
    /// The pushed ref, in full (`refs/heads/main`, `refs/tags/v1`)
    #[arg(long = "ref", value_name = "REF")]
    pub refname: Option<String>,
    /// The file's path in the repository (with several files: a directory they are put in).
    /// Default: the file's path as given
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// Who pushes: says whether a bypass (`-o modelgate.skip=...`) would be honoured
    #[arg(long, value_name = "NAME")]
    pub pusher: Option<String>,
    /// The directory relative lfs store, cache and policy paths are resolved against (a
    /// repository's git directory; default: the current directory)
    #[arg(long, value_name = "DIR")]
    pub git_dir: Option<PathBuf>,
    /// Files to try
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// `modelgate policy test`: the gate's decision for files, without pushing. Exit 1 when one
/// would be rejected.
pub fn policy_test(a: &PolicyTestArgs) -> Result<i32> {
    use crate::hook::escape;
    use crate::hook::policy_test::{try_files, Place};
    let base = a.git_dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let (policy, _) = load_policy(a.policy.as_deref(), &base)?;
    if let Some(r) = a.refname.as_deref().filter(|r| !r.starts_with("refs/") && *r != "HEAD") {
        bail!("give the full ref name: `refs/heads/{r}` or `refs/tags/{r}`");
    }
    let slash = |s: &str| s.replace('\\', "/");
    let files: Vec<(PathBuf, Option<String>)> = a
        .files
        .iter()
        .map(|f| {
            let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let path = match (&a.path, a.files.len()) {
                (Some(p), 1) => slash(p),
                (Some(p), _) => format!("{}/{name}", slash(p).trim_end_matches('/')),
                (None, _) => slash(&f.to_string_lossy()).trim_start_matches("./").to_string(),
            };
            (f.clone(), Some(path))
        })
        .collect();
    let place = Place { repo: a.repo.clone(), refname: a.refname.clone() };
    let tried = try_files(&policy, &files, &place, &base);
    let mut out = io::stdout().lock();
    let at = match (&a.repo, &a.refname) {
        (Some(r), Some(f)) => format!(" ({f} in {r})"),
        (None, Some(f)) => format!(" ({f})"),
        (Some(r), None) => format!(" (in {r})"),
        (None, None) => String::new(),
    };
    for t in &tried {
        let j = &t.judged;
        let lfs = j.lfs_oid.as_deref().map(|o| format!(", lfs sha256:{}", &o[..o.len().min(12)])).unwrap_or_default();
        writeln!(
            out,
            "{:<7} {}{at}: {} ({}{lfs})",
            t.action.as_str().to_uppercase(),
            escape(t.path.as_deref().unwrap_or_default()),
            j.verdict,
            j.format
        )?;
        match &t.why {
            Some(w) => writeln!(out, "    decided by {}", escape(w))?,
            None => writeln!(out, "    decided by [actions] {} = \"{}\"", j.verdict, policy.actions.get(j.verdict))?,
        }
        for f in j.findings.iter().filter(|f| f.severity > crate::finding::Severity::Info).take(5) {
            let ev = f.evidence.as_deref().map(|e| format!(" ({})", escape(e))).unwrap_or_default();
            writeln!(out, "    [{}] {}: {}{ev}", f.severity.as_str(), f.code, escape(&f.message))?;
        }
        if t.allowlist_helps {
            writeln!(out, "    an [[allow]] entry for its imports would let it pass")?;
        }
    }
    if let Some(p) = &a.pusher {
        let may = policy.bypass.allows(p);
        writeln!(
            out,
            "bypass: {} {} skip the gate with `git push -o modelgate.skip=<reason>`{}",
            escape(p),
            if may { "may" } else { "may not" },
            if may && policy.gate.trust_env == TrustEnv::None && policy.bypass.pusher_env.is_none() {
                " (once the hooks believe the forge's pusher variable: [gate] trust_env or install --flavor)"
            } else {
                ""
            }
        )?;
    }
    Ok(if tried.iter().any(|t| t.action == Action::Reject) { EXIT_REJECT } else { EXIT_OK })
}
