//! The `cfs-export` command line: takes the arguments and gives an exit
//! code: parse into a typed config (`args`), run one command (`commands`,
//! `serve`), print text or JSON (`print`) and progress bars (`bars`).
#![allow(clippy::print_stdout, clippy::print_stderr)]

// First: its macros (say!, tell!) are used by the modules after it.
#[macro_use]
mod print;
mod args;
mod bars;
mod commands;
mod serve;
mod source;

use args::Command;
use print::print_list;
use source::Source;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser};

use composefs_export::compress::CompressionChoice;
use composefs_export::export::ExportOptions;
use composefs_export::repo::{self, RepoLocation};
use composefs_export::{with_repo, UsageError};

/// Export container images from a composefs repository to bit-exact OCI images.
#[derive(Debug, Parser)]
#[command(name = "cfs-export", version, about, long_about = None)]
#[command(next_help_heading = "Global options")]
pub struct Cli {
    #[command(flatten)]
    repo: RepoArgs,
    /// Root of a bootc system (default /sysroot): deployments and, unless --repo says otherwise, DIR/composefs.
    #[arg(long, global = true, value_name = "DIR")]
    sysroot: Option<PathBuf>,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Print only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
#[group(multiple = false)]
#[command(next_help_heading = "Global options")]
struct RepoArgs {
    /// The composefs repository directory.
    #[arg(long, global = true, value_name = "PATH")]
    repo: Option<PathBuf>,
    /// Use the system repository (/sysroot/composefs; default for root).
    #[arg(long, global = true)]
    system: bool,
    /// Use the user repository (~/.var/lib/composefs; default for others).
    #[arg(long, global = true)]
    user: bool,
}

impl RepoArgs {
    fn location(&self) -> RepoLocation {
        match (&self.repo, self.system, self.user) {
            (Some(p), _, _) => RepoLocation::Path(p.clone()),
            (None, true, _) => RepoLocation::System,
            (None, _, true) => RepoLocation::User,
            _ => RepoLocation::default_for_user(),
        }
    }
}

/// Parse arguments, run, print; returns the process exit code.
pub fn main() -> ExitCode {
    // Error messages are for users: composefs formats some inner errors with
    // `{:?}`, which would carry a backtrace when RUST_BACKTRACE is set.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return usage_failure(&e),
    };
    init_logging(cli.verbose, cli.quiet);
    let json = cli.json;
    let mut stdout = std::io::stdout().lock();
    let result = run(cli, &mut stdout).and_then(|()| stdout.flush().map_err(Into::into));
    let Err(e) = result else {
        return ExitCode::SUCCESS;
    };
    // A reader that stopped reading (`| head`, `| true`) is a normal end.
    if is_broken_pipe(&e) {
        return ExitCode::SUCCESS;
    }
    let usage = e.chain().any(|c| c.downcast_ref::<UsageError>().is_some());
    let interrupted = e.downcast_ref::<Interrupted>().map(|i| 128 + i.signal);
    if e.downcast_ref::<VerifyFailed>().is_some() && json {
        // The report on stdout already is the one JSON document.
    } else if json {
        let doc = serde_json::json!({ "error": print::one_line(&format!("{e:#}")) });
        let _ = writeln!(stdout, "{}", print::json_escape_controls(&doc.to_string()));
    } else {
        tell!("error: {}", print::one_line(&format!("{e:#}")));
    }
    match (interrupted, usage) {
        (Some(code), _) => ExitCode::from(code as u8),
        (None, true) => ExitCode::from(2),
        (None, false) => ExitCode::FAILURE,
    }
}

/// Was the failure a closed stdout, anywhere in the chain?
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// clap's help/version (exit 0) or usage error (exit 2; one JSON document with --json).
fn usage_failure(e: &clap::Error) -> ExitCode {
    if !e.use_stderr() {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if std::env::args().any(|a| a == "--json") {
        let doc = serde_json::json!({ "error": e.render().to_string().trim(), "usage": true });
        let _ = writeln!(std::io::stdout(), "{doc}");
    } else {
        let _ = e.print();
    }
    ExitCode::from(2)
}

fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .try_init();
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("Starting the async runtime")
}

/// Run a parsed command line, printing to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<()> {
    match &cli.command {
        Command::Man { dir } => commands::write_man_pages(dir.as_deref(), out),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "cfs-export", &mut script);
            out.write_all(&script).context("Writing completions")
        }
        Command::List => {
            let source = Source::from_cli(&cli)?;
            let repo = repo::open(&source.location)?;
            let listing = with_repo!(&repo, r => composefs_export::repo::list::list(r, source.host.as_ref()))?;
            drop(repo);
            print_list(&listing, cli.json, out)
        }
        Command::Export(args) => commands::export_command(&cli, args, out),
        Command::CopyToStorage(args) => commands::copy_to_storage_command(&cli, args, out),
        Command::Verify(args) => commands::verify_command(&cli, args, out),
        Command::Import(args) => commands::import_command(&cli, args, out),
        Command::Serve(args) => serve::serve_command(&cli, args, out),
    }
}

/// Interrupted by a signal; the exit code is 128 + the signal number.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {name}; nothing was left behind")]
pub struct Interrupted {
    /// SIGINT or SIGTERM.
    pub name: &'static str,
    /// Its number.
    pub signal: i32,
}

/// Export options from the CLI's flags.
fn export_options(
    compression: CompressionChoice,
    jobs: Option<u16>,
    tag: Option<String>,
) -> ExportOptions {
    ExportOptions {
        compression,
        jobs: jobs.map_or(ExportOptions::default().jobs, usize::from),
        tag,
        ..ExportOptions::default()
    }
}

/// `verify` found damage (exit 1; the findings were already printed).
#[derive(Debug, thiserror::Error)]
#[error("verification found {0} problem(s)")]
pub struct VerifyFailed(pub usize);
