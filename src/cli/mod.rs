//! The command line: `modelgate scan | explain | completions | man | policy | hook | lfs | install | audit | report`.

pub mod gate;
pub mod scan;

use crate::finding::{all_codes, code_info, CodeInfo, Severity};
use crate::policy::{close_codes, Policy, DEFAULT_POLICY};
use crate::report::{self, human::Human, json::Json, sarif::Sarif, Printer};
use anyhow::Context as _;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

pub use scan::CODES;

/// Finds code that runs when a machine-learning model file is loaded, without running anything.
#[derive(Debug, Parser)]
#[command(name = "modelgate", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scan model files and directories; exit 1 if any file is rejected
    Scan(ScanArgs),
    /// Explain a finding code: severity, meaning and fix
    Explain(ExplainArgs),
    /// Print a shell completion script
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
    /// Write manual pages (roff): modelgate.1 on stdout, or one page per subcommand into DIR
    Man {
        /// Directory for modelgate.1, modelgate-scan.1, ... (created if missing)
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Check a policy file, or print the built-in one
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Run as a git server hook (reads git's ref updates on stdin)
    #[command(subcommand)]
    Hook(HookCommand),
    /// Judge Git LFS objects in the server's store (after an upload, or by watching it)
    #[command(subcommand)]
    Lfs(gate::LfsCommand),
    /// Install (or remove) the push gate's hooks in server repositories
    Install(gate::InstallArgs),
    /// Judge everything the repositories of a server already hold (all refs, all history,
    /// LFS objects); exit 1 if any file is rejected or a repository cannot be audited
    Audit(crate::audit::cli::AuditArgs),
    /// Write the HTML report of audit output, or of the verdicts the push gate recorded as notes
    Report(crate::audit::cli::ReportArgs),
}

#[derive(Debug, Subcommand)]
pub enum HookCommand {
    /// Scan what a push introduces; exit 1 rejects the push
    PreReceive(HookArgs),
    /// Record the verdicts of an accepted push as git notes and audit-log lines
    PostReceive(HookArgs),
}

#[derive(Debug, Args)]
pub struct HookArgs {
    /// Policy file (default: $MODELGATE_POLICY, else $GIT_DIR/modelgate.toml, else
    /// /etc/modelgate/policy.toml, else the built-in policy)
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Believe this forge's environment variables (pusher, repository name,
    /// MODELGATE_POLICY): none, gitea (also Forgejo), gitlab, http (REMOTE_USER). Default: the
    /// policy's [gate] trust_env
    #[arg(long, value_name = "ENV", value_parser = gate::trust_env)]
    pub trust_env: Option<crate::policy::TrustEnv>,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Policy file (default: the built-in policy, see `modelgate policy show-default`)
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Output format
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub format: OutputFormat,
    /// Write the report to FILE instead of stdout (replaced atomically once the scan is done;
    /// `-` is stdout)
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// No progress bar and no summary line; the report, warnings and the exit code are unchanged
    #[arg(short, long)]
    pub quiet: bool,
    /// Leave out paths matching GLOB (repeatable), matched like the policy's `paths`: against
    /// the path relative to the directory argument, or a file argument as given; a matching
    /// directory leaves out everything below it. Excluded files are counted in the summary
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Print every import of every file instead of verdicts (human format)
    #[arg(long)]
    pub list_imports: bool,
    /// Show every finding, ignored findings and the deciding rule
    #[arg(short, long)]
    pub verbose: bool,
    /// Files scanned in parallel (the default is one per core of this machine; 0 also means that)
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = default_jobs())]
    pub jobs: usize,
    /// Files and directories to scan (directories recursively; symlinks are not followed)
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One line per file
    Human,
    /// One JSON document (stable schema, see README)
    Json,
    /// SARIF 2.1.0
    Sarif,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// A finding code, e.g. read-error
    #[arg(required_unless_present = "list", conflicts_with = "list")]
    pub code: Option<String>,
    /// List every code
    #[arg(long)]
    pub list: bool,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file and print every problem in it, then warnings (rules that can
    /// never match or never change a decision, expired entries, a missing LFS store)
    Check {
        /// The policy file
        file: PathBuf,
        /// Exit 1 when there are warnings
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Try a gate policy on files without pushing: the decision the push gate would make for
    /// them at that repository, ref and path, and the rule that made it
    Test(gate::PolicyTestArgs),
    /// Print the built-in policy (a commented starting point for your own)
    ShowDefault,
}

/// Run the command line; returns the process exit code.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { report::EXIT_CANNOT_RUN } else { report::EXIT_OK };
        }
    };
    let result = match cli.command {
        Command::Scan(a) => scan_command(&a),
        Command::Explain(a) => explain(&a),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "modelgate", &mut io::stdout());
            Ok(report::EXIT_OK)
        }
        Command::Man { dir } => man(dir.as_deref()),
        Command::Policy(PolicyCommand::Check { file, deny_warnings }) => gate::policy_check(&file, deny_warnings),
        Command::Policy(PolicyCommand::Test(a)) => gate::policy_test(&a),
        Command::Hook(HookCommand::PreReceive(a)) => {
            Ok(crate::hook::pre_receive::run_policy(a.policy.as_deref(), a.trust_env))
        }
        Command::Hook(HookCommand::PostReceive(a)) => {
            Ok(crate::hook::post_receive::run_policy(a.policy.as_deref(), a.trust_env))
        }
        Command::Lfs(c) => gate::lfs(&c),
        Command::Install(a) => gate::install(&a),
        Command::Audit(a) => crate::audit::cli::audit(&a),
        Command::Report(a) => crate::audit::cli::report(&a),
        Command::Policy(PolicyCommand::ShowDefault) => {
            io::stdout().write_all(DEFAULT_POLICY.as_bytes()).map(|_| report::EXIT_OK).map_err(Into::into)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            report::EXIT_CANNOT_RUN
        }
    }
}

/// One worker per core, as rayon would start (its `RAYON_NUM_THREADS` included), worked out
/// without starting rayon's pool: clap computes it for every command line.
fn default_jobs() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Where `scan` writes its report.
enum Sink {
    Stdout,
    /// A temporary file beside the destination, renamed over it once the report is complete.
    File {
        tmp: tempfile::NamedTempFile,
        dest: PathBuf,
    },
}

impl Sink {
    fn open(output: Option<&Path>) -> anyhow::Result<Sink> {
        let Some(dest) = output.filter(|p| *p != Path::new("-")) else { return Ok(Sink::Stdout) };
        if dest.is_dir() {
            anyhow::bail!("--output {}: is a directory", dest.display());
        }
        let dir = match dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".modelgate-report-")
            .tempfile_in(dir)
            .with_context(|| format!("--output {}: cannot create a file in {}", dest.display(), dir.display()))?;
        Ok(Sink::File { tmp, dest: dest.to_path_buf() })
    }

    /// Put the finished report in place: same permissions as the file it replaces, else 0644.
    fn commit(self) -> anyhow::Result<()> {
        let Sink::File { tmp, dest } = self else { return Ok(()) };
        tmp.as_file().sync_all().with_context(|| format!("cannot write {}", dest.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&dest).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o644);
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("cannot write {}", dest.display()))?;
        }
        tmp.persist(&dest).map_err(|e| e.error).with_context(|| format!("cannot write {}", dest.display()))?;
        Ok(())
    }
}

fn scan_command(a: &ScanArgs) -> anyhow::Result<i32> {
    let policy = match &a.policy {
        Some(p) => Policy::from_file(p)?,
        None => Policy::builtin(),
    };
    let exclude = scan::excludes(&a.exclude)?;
    let (targets, excluded) = scan::collect_excluding(&a.paths, &exclude);
    let sink = Sink::open(a.output.as_deref())?;
    let to_terminal = matches!(sink, Sink::Stdout) && io::stdout().is_terminal();
    let color = to_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let mut opts = scan::RunOptions::new(a.jobs);
    opts.progress = !a.quiet && io::stderr().is_terminal() && a.paths.iter().any(|p| p.is_dir());
    if let Some(ms) = std::env::var("MODELGATE_PROGRESS_AFTER_MS").ok().and_then(|v| v.parse().ok()) {
        // For tests of the progress bar, which cannot wait for a slow scan.
        opts.progress_after = std::time::Duration::from_millis(ms);
    }
    // Human lines on the terminal the bar is drawn on are written between redraws.
    let held = (opts.progress && to_terminal && a.format == OutputFormat::Human).then(scan::Held::default);
    opts.held = held.clone();
    let out: Box<dyn Write + '_> = match (&sink, held) {
        (Sink::File { tmp, .. }, _) => Box::new(io::BufWriter::new(tmp.as_file())),
        (Sink::Stdout, Some(h)) => Box::new(h),
        // One document at the end: written in blocks, not a line at a time.
        (Sink::Stdout, None) if a.format != OutputFormat::Human => Box::new(io::BufWriter::new(io::stdout())),
        (Sink::Stdout, None) => Box::new(io::stdout()),
    };
    let err: Box<dyn Write> = if a.quiet { Box::new(io::sink()) } else { Box::new(io::stderr()) };
    let mut printer: Box<dyn Printer + '_> = match a.format {
        OutputFormat::Human => {
            let mut h = Human::new(out, err);
            h.color = color;
            h.verbose = a.verbose;
            h.list_imports = a.list_imports;
            Box::new(h)
        }
        OutputFormat::Json => Box::new(Json::new(out)),
        OutputFormat::Sarif => Box::new(Sarif::new(out)),
    };
    let mut outcome = scan::run(&policy, &targets, &opts, printer.as_mut())?;
    outcome.summary.excluded = excluded;
    printer.finish(&outcome.summary).context("cannot write the report")?;
    drop(printer);
    sink.commit()?;
    gate::scan_notes(&policy);
    for (i, e) in policy.exceptions.iter().enumerate() {
        if !outcome.used.contains(&i) {
            eprintln!(
                "warning: exception ignore[{i}] for `{}` ({}:{}) matched no finding; remove it if it is stale",
                e.code, policy.origin, e.line
            );
        }
    }
    Ok(outcome.summary.exit_code())
}

/// `modelgate man [DIR]`: the top page on stdout, or every page into DIR.
fn man(dir: Option<&Path>) -> anyhow::Result<i32> {
    // No page for clap's `help` subcommand, nor a mention of one.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let Some(dir) = dir else {
        clap_mangen::Man::new(cmd).render(&mut io::stdout().lock()).context("cannot write the manual page")?;
        return Ok(report::EXIT_OK);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut pages = Vec::new();
    write_pages(&cmd, dir, &mut pages)?;
    let mut out = io::stdout().lock();
    for p in pages {
        writeln!(out, "{}", p.display())?;
    }
    Ok(report::EXIT_OK)
}

/// The page of `cmd` and of each of its (visible) subcommands, as `modelgate-hook-pre-receive.1`.
fn write_pages(cmd: &clap::Command, dir: &Path, pages: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let page = clap_mangen::Man::new(cmd.clone());
    let path = dir.join(page.get_filename());
    let mut text = Vec::new();
    page.render(&mut text).context("cannot render a manual page")?;
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    pages.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, pages)?;
    }
    Ok(())
}

fn explain(a: &ExplainArgs) -> anyhow::Result<i32> {
    let mut out = io::stdout().lock();
    if a.list {
        let mut codes = all_codes();
        codes.sort_by_key(|c| c.code);
        let width = codes.iter().map(|c| c.code.len()).max().unwrap_or(0);
        for c in codes {
            writeln!(out, "{:<width$}  {:<10}  {}", c.code, c.severity.as_str(), c.summary)?;
        }
        return Ok(report::EXIT_OK);
    }
    let code = a.code.as_deref().unwrap_or_default();
    match code_info(code) {
        Some(c) => {
            write_explanation(&mut out, c)?;
            Ok(report::EXIT_OK)
        }
        None => {
            let code = report::escape(code);
            let near = close_codes(&code);
            if near.is_empty() {
                eprintln!("error: unknown code `{code}`; `modelgate explain --list` lists every code");
            } else {
                eprintln!("error: unknown code `{code}`; did you mean:");
                for c in near {
                    eprintln!("  {c}");
                }
            }
            Ok(report::EXIT_CANNOT_RUN)
        }
    }
}

fn write_explanation(out: &mut impl Write, c: &CodeInfo) -> io::Result<()> {
    let effect = match c.severity {
        Severity::Dangerous => "makes the file dangerous (rejected by default)",
        Severity::Error => "makes the file an error: it could not be judged (rejected by default)",
        Severity::Suspicious => "makes the file suspicious (tagged by default)",
        Severity::Info => "informational; never changes a verdict",
    };
    writeln!(out, "{}", c.code)?;
    writeln!(out, "  severity: {} ({effect})", c.severity.as_str())?;
    writeln!(out, "  meaning:  {}", c.summary)?;
    writeln!(out, "  fix:      {}", c.fix)?;
    writeln!(out, "  silence:  [[ignore]] code = \"{}\" with a reason in your policy", c.code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
