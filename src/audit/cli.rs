//! `modelgate audit`, `modelgate audit merge` and `modelgate report`: argument handling
//! around [`crate::audit`] and [`crate::report::html`].

use super::discover::Flavor;
use super::records::{parse_shard, Block, Fleet, Line};
use super::{human_bytes, Options};
use crate::report::EXIT_OK;
use anyhow::{anyhow, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
    /// How the forge lays repositories out (names them): git (by path), gitea
    /// (<root>/<owner>/<name>.git), gitlab (hashed storage, named by gitlab.fullpath)
    #[arg(long, value_enum, default_value_t = Flavor::Git)]
    pub flavor: Flavor,
    /// One policy for every repository (default: each repository's own, as its hook finds it:
    /// the installed hook's --policy, else <git-dir>/modelgate.toml, else
    /// /etc/modelgate/policy.toml, else the built-in policy)
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Audit only shard INDEX of COUNT (from 0), a stable subset by a hash of each
    /// repository's name; `modelgate audit merge` combines the shards' outputs
    #[arg(long, value_name = "INDEX/COUNT")]
    pub shard: Option<String>,
    /// Verdict cache directory shared across runs and shards (content-addressed; safe to share)
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Move rejected LFS objects (and a JSON verdict beside each) out of the store, as `lfs
    /// watch --quarantine` does: to this directory for a filesystem store, to
    /// s3://<bucket>/<prefix> within the bucket of an S3 store
    #[arg(long, value_name = "DIR")]
    pub quarantine: Option<PathBuf>,
    /// Resumable run: finished repositories are recorded here, and a run with the same state
    /// file continues where an interrupted one stopped
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Output format
    #[arg(long, value_enum, default_value_t = AuditFormat::Jsonl)]
    pub format: AuditFormat,
    /// Write the output to FILE (whole or not at all) instead of stdout
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Files judged in parallel (default: one per core)
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 0)]
    pub jobs: usize,
    /// A record for every file place (default: model files, and files the policy does not allow)
    #[arg(long)]
    pub all_files: bool,
    /// No progress and no closing statistics on stderr
    #[arg(short, long)]
    pub quiet: bool,
    /// Bare repositories, or directories holding them (a forge's repository root)
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Combine the JSON lines of audit shards into one output (the unsharded audit's)
    Merge(MergeArgs),
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = AuditFormat::Jsonl)]
    pub format: AuditFormat,
    /// Write the output to FILE instead of stdout
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Merge even if some shards are missing (the summary then covers only those given)
    #[arg(long)]
    pub partial: bool,
    /// The shards' outputs (`modelgate audit --shard i/n` JSON lines)
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuditFormat {
    /// JSON lines: a record per file place, per repository, then a summary
    Jsonl,
    /// One self-contained HTML report
    Html,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Read the verdicts the push gate recorded as git notes in these repositories (or
    /// repository roots) instead of audit output
    #[arg(long)]
    pub notes: bool,
    /// With --notes: how the forge lays repositories out
    #[arg(long, value_enum, default_value_t = Flavor::Git, requires = "notes")]
    pub flavor: Flavor,
    /// With --notes: the policy that decides (default: each repository's own)
    #[arg(long, value_name = "FILE", requires = "notes")]
    pub policy: Option<PathBuf>,
    /// With --notes: the notes ref (default: the policy's [gate] notes_ref)
    #[arg(long, value_name = "REF", requires = "notes")]
    pub notes_ref: Option<String>,
    /// Output format (jsonl: the records, as `modelgate audit` writes them)
    #[arg(long, value_enum, default_value_t = AuditFormat::Html)]
    pub format: AuditFormat,
    /// Write the report to FILE instead of stdout
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Audit outputs (JSON lines; shards are combined), or with --notes repositories
    #[arg(required = true, value_name = "PATH")]
    pub inputs: Vec<PathBuf>,
}

/// `modelgate audit ...`
pub fn audit(a: &AuditArgs) -> Result<i32> {
    if let Some(AuditCommand::Merge(m)) = &a.command {
        return merge(m);
    }
    let shard = a.shard.as_deref().map(parse_shard).transpose()?;
    let opts = Options {
        paths: a.paths.clone(),
        flavor: a.flavor,
        policy: a.policy.clone(),
        shard,
        cache_dir: a.cache.as_ref().map(|c| absolute(c)).transpose()?,
        quarantine: a
            .quarantine
            .as_ref()
            .map(|c| if c.to_string_lossy().starts_with("s3://") { Ok(c.clone()) } else { absolute(c) })
            .transpose()?,
        state: a.state.clone(),
        jobs: a.jobs,
        all_files: a.all_files,
        progress: !a.quiet && std::io::stderr().is_terminal(),
    };
    if let Some(p) = &opts.policy {
        crate::policy::Policy::from_file(p)?;
    }
    let mut out = Output::open(a.output.as_deref())?;
    let mut kept: Vec<Block> = Vec::new();
    let format = a.format;
    let outcome = super::run(&opts, &mut |b: &Block| {
        match format {
            AuditFormat::Jsonl => out.write(b.to_lines()?.as_bytes())?,
            AuditFormat::Html => kept.push(b.clone()),
        }
        Ok(())
    })?;
    match format {
        AuditFormat::Jsonl => {
            let mut line = serde_json::to_string(&Line::Summary(outcome.summary.clone()))?;
            line.push('\n');
            out.write(line.as_bytes())?;
        }
        AuditFormat::Html => {
            let source = format!("audit of {}", join_paths(&a.paths));
            out.write(crate::report::html::render(&kept, &outcome.summary, &source).as_bytes())?;
        }
    }
    out.finish()?;
    if !a.quiet {
        let s = &outcome.summary;
        let st = &outcome.stats;
        eprintln!(
            "modelgate: {} repositories ({} audited, {} resumed{}{}): {} files, {} dangerous, {} error, {} suspicious; {} rejected, {} tagged",
            s.repositories,
            st.audited,
            st.resumed,
            if st.other_shards > 0 { format!(", {} in other shards", st.other_shards) } else { String::new() },
            if s.failed > 0 { format!(", {} FAILED", s.failed) } else { String::new() },
            s.files,
            s.dangerous,
            s.error,
            s.suspicious,
            s.reject,
            s.tag
        );
        eprintln!(
            "modelgate: {} commits, {} blobs; judged {} ({}), {} from the cache, {} from other repositories; walk {:.2}s, judge {:.2}s",
            s.commits,
            s.blobs,
            st.judged,
            human_bytes(st.judged_bytes),
            st.from_cache,
            st.from_fleet,
            st.walk_time.as_secs_f64(),
            st.judge_time.as_secs_f64()
        );
        let (bytes, gets) = crate::store::s3::fetched();
        if gets > 0 {
            eprintln!("modelgate: s3: {gets} GET requests, {bytes} bytes read");
        }
    }
    Ok(outcome.summary.exit_code)
}

fn merge(m: &MergeArgs) -> Result<i32> {
    let mut fleet = Fleet::default();
    for f in &m.files {
        fleet.read_output(f)?;
    }
    if !m.partial {
        fleet.check_shards()?;
    }
    let summary = fleet.summary(None);
    let mut out = Output::open(m.output.as_deref())?;
    match m.format {
        AuditFormat::Jsonl => out.write(fleet.to_lines(None)?.as_bytes())?,
        AuditFormat::Html => {
            let source = format!("merged from {}", join_paths(&m.files));
            out.write(crate::report::html::render(fleet.blocks.values(), &summary, &source).as_bytes())?;
        }
    }
    out.finish()?;
    Ok(summary.exit_code)
}

/// `modelgate report ...`
pub fn report(a: &ReportArgs) -> Result<i32> {
    let mut fleet = Fleet::default();
    let source = if a.notes {
        let repos = super::discover::discover(&a.inputs, a.flavor)?;
        for r in &repos {
            let psource = super::policy_source(a.policy.as_deref(), &r.git_dir);
            let policy = match psource.path() {
                Some(p) => crate::policy::Policy::from_file(p)?,
                None => crate::policy::Policy::builtin(),
            };
            let notes_ref = a.notes_ref.clone().unwrap_or_else(|| policy.gate.notes_ref.clone());
            let block = super::notes::read(r, &notes_ref, &policy, &policy.origin)
                .with_context(|| format!("cannot read the notes of {}", r.git_dir.display()))?;
            fleet.add(block, "notes")?;
        }
        format!("git notes of {}", join_paths(&a.inputs))
    } else {
        for f in &a.inputs {
            fleet.read_output(f)?;
        }
        format!("audit output {}", join_paths(&a.inputs))
    };
    let summary = fleet.summary(None);
    let mut out = Output::open(a.output.as_deref())?;
    match a.format {
        AuditFormat::Html => {
            out.write(crate::report::html::render(fleet.blocks.values(), &summary, &source).as_bytes())?
        }
        AuditFormat::Jsonl => out.write(fleet.to_lines(None)?.as_bytes())?,
    }
    out.finish()?;
    Ok(EXIT_OK)
}

fn join_paths(p: &[PathBuf]) -> String {
    p.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir()?.join(p) })
}

/// stdout; a regular file that appears whole (a temporary file beside it, renamed into place
/// at the end); or anything else that exists and is not a regular file (`/dev/null`, a fifo),
/// written directly, never replaced.
enum Output {
    Stdout(std::io::Stdout),
    File { tmp: tempfile::NamedTempFile, dest: PathBuf },
    Special { file: std::fs::File, dest: PathBuf },
}

impl Output {
    fn open(path: Option<&Path>) -> Result<Output> {
        let Some(p) = path else { return Ok(Output::Stdout(std::io::stdout())) };
        if std::fs::metadata(p).is_ok_and(|m| !m.is_file()) {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .with_context(|| format!("cannot write to {}", p.display()))?;
            return Ok(Output::Special { file, dest: p.to_path_buf() });
        }
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".modelgate-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .tempfile_in(&dir)
            .with_context(|| format!("cannot write to {}", dir.display()))?;
        Ok(Output::File { tmp, dest: p.to_path_buf() })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        match self {
            Output::Stdout(s) => s.lock().write_all(bytes).context("cannot write the output"),
            Output::File { tmp, dest } => {
                tmp.write_all(bytes).with_context(|| format!("cannot write {}", dest.display()))
            }
            Output::Special { file, dest } => {
                file.write_all(bytes).with_context(|| format!("cannot write {}", dest.display()))
            }
        }
    }

    fn finish(self) -> Result<()> {
        match self {
            Output::Stdout(s) => s.lock().flush().context("cannot write the output"),
            Output::File { tmp, dest } => {
                tmp.persist(&dest).map_err(|e| anyhow!("cannot write {}: {}", dest.display(), e.error))?;
                Ok(())
            }
            Output::Special { mut file, dest } => {
                file.flush().with_context(|| format!("cannot write {}", dest.display()))
            }
        }
    }
}
