//! `modelgate lfs scan|watch` and `modelgate install`: argument handling around
//! [`crate::hook::lfs_store`] and [`crate::hook::install`].

use crate::hook::gate::{hook_config, load_policy};
use crate::hook::install::{self, Flavor, Options, Outcome};
use crate::hook::lfs_store::{parse_oid, LfsRun, ObjectVerdict, WatchOptions};
use crate::hook::Action;
use crate::policy::{parse_duration, Policy};
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

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Which server runs the hooks
    #[arg(long, value_enum, default_value_t = FlavorArg::Git)]
    pub flavor: FlavorArg,
    /// Policy file the hooks use (checked now; default: the hook's own lookup)
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Remove the hooks modelgate installed (and restore what --force replaced)
    #[arg(long)]
    pub uninstall: bool,
    /// Replace hooks modelgate did not write (they are kept as <hook>.modelgate-backup)
    #[arg(long)]
    pub force: bool,
    /// GitLab: install into this server-wide custom hooks directory (gitaly's custom_hooks_dir)
    #[arg(long, value_name = "DIR")]
    pub global_dir: Option<PathBuf>,
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
    let run = LfsRun { policy: &policy, config: hook_config(&policy), base };
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
    let run = LfsRun { policy: &policy, config: hook_config(&policy), base };
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
    let policy = match &a.policy {
        Some(p) if !a.uninstall => {
            Policy::from_file(p)?;
            Some(absolute(p)?)
        }
        _ => None,
    };
    let opts = Options { flavor, bin, policy, force: a.force };
    let mut targets: Vec<(Option<PathBuf>, Option<&Path>)> = Vec::new();
    if let Some(g) = &a.global_dir {
        if !a.repos.is_empty() {
            bail!("give either --global-dir or repositories, not both");
        }
        targets.push((None, Some(g)));
    }
    for r in &a.repos {
        targets.push((Some(install::git_dir_of(r)?), None));
    }
    let mut out = io::stdout().lock();
    let mut failed = false;
    for (repo, global) in &targets {
        let res = if a.uninstall {
            install::uninstall(flavor, repo.as_deref(), *global)
        } else {
            install::install(&opts, repo.as_deref(), *global)
        };
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
                let which = repo.as_deref().or(*global).map(|p| p.display().to_string()).unwrap_or_default();
                eprintln!("error: {which}: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { EXIT_CANNOT_RUN } else { EXIT_OK })
}
