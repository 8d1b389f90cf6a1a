//! The `cfs-export` command line: parse into a typed config, run, print.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bars;
#[macro_use]
mod print;
mod serve;
mod source;

use print::{print_export, print_list, print_verify};
use source::{storage_target, tell_deployment_choices, tell_host_warnings, Source};

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use composefs_export::compress::{Compression, CompressionChoice};
use composefs_export::deliver::transport::ImageLocation;
use composefs_export::deliver::{self, StorageOptions, TransferOptions};
use composefs_export::export::{BlobBytes, ExportOptions, ExportReport, ImageSelection, Selected};
use composefs_export::import::{self, ImportOptions};
use composefs_export::progress::ProgressHandle;
use composefs_export::repo::image;
use composefs_export::repo::{self, CreateOutcome, RepoLocation};
use composefs_export::{with_repo, UsageError};
use std::io::Write;

/// Export container images from a composefs repository to bit-exact OCI images.
#[derive(Debug, Parser)]
#[command(name = "cfs-export", version, about, long_about = None)]
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

#[derive(Debug, Subcommand)]
enum Command {
    /// List the images in the repository.
    #[command(after_help = "Example:\n  cfs-export --repo /sysroot/composefs list --json")]
    List,
    /// Export images (OCI layout or archive, containers-storage, registry, …), bit-exact, image ID kept.
    #[command(
        after_help = "Examples:\n  cfs-export export quay.io/fedora/fedora-bootc:42 --to oci:/var/tmp/out\n  cfs-export export 3f2a9c1b7d4e --to oci:/var/tmp/out:mytag --compression zstd"
    )]
    Export(ExportArgs),
    /// Copy an image into containers-storage (podman), as `bootc image copy-to-storage`.
    #[command(
        after_help = "Examples:\n  cfs-export copy-to-storage\n  cfs-export copy-to-storage quay.io/fedora/fedora-bootc:42 --target localhost/fedora-bootc"
    )]
    CopyToStorage(CopyToStorageArgs),
    /// Rebuild every layer and check it against its diff_id; name damaged objects. Writes nothing.
    #[command(
        after_help = "Examples:\n  cfs-export verify --all\n  cfs-export verify quay.io/fedora/fedora-bootc:42 --json"
    )]
    Verify(VerifyArgs),
    /// Print the man page (roff) on stdout, or write all pages into a directory.
    #[command(
        after_help = "Examples:\n  cfs-export man > cfs-export.1 && man -l cfs-export.1\n  cfs-export man --dir /usr/local/share/man/man1"
    )]
    Man {
        /// Write cfs-export.1 and one page per command (cfs-export-export.1, …) here.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Print shell completions on stdout.
    #[command(after_help = "Example:\n  source <(cfs-export completions bash)")]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Serve the repository's images as a read-only OCI registry (pulls by podman, skopeo, containerd, composefs-oci).
    #[command(
        after_help = "Examples:\n  cfs-export serve --anonymous\n  cfs-export serve --listen 0.0.0.0:5000 --insecure-http --htpasswd /etc/cfs-export/htpasswd"
    )]
    Serve(serve::ServeArgs),
    /// Import an OCI layout or archive into the repository (blobs verified first).
    #[command(
        after_help = "Example:\n  cfs-export --repo ./repo import oci:./layout:latest --tag demo:latest"
    )]
    Import(ImportArgs),
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// Images: tag, manifest or config digest, image-ID prefix (≥ 12 hex); on a
    /// bootc host also an image name from a deployment or booted/staged/rollback.
    #[arg(required_unless_present_any = ["all", "deployment"], conflicts_with_all = ["all", "deployment"])]
    images: Vec<String>,
    /// Export every image in the repository.
    #[arg(long, conflicts_with = "deployment")]
    all: bool,
    /// The image of a bootc deployment: booted, staged, rollback or a deployment ID.
    #[arg(long, value_name = "D")]
    deployment: Option<String>,
    /// Destination: oci:DIR[:TAG], oci-archive:FILE[:TAG], containers-storage:REF,
    /// docker://REF, docker-archive:FILE[:REF] or dir:DIR.
    #[arg(long, value_name = "DEST")]
    to: String,
    /// Ref name in the destination (default: the image's tag in the repository).
    #[arg(long)]
    tag: Option<String>,
    /// none, gzip[:1-9], zstd[:1-19], or original: each layer's original
    /// bytes where reproducible, else its original kind (the default; into
    /// containers-storage the default is none, see copy-to-storage).
    #[arg(long, value_name = "KIND")]
    compression: Option<CompressionChoice>,
    /// Layers rebuilt in parallel (default: number of cores).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    jobs: Option<u16>,
    #[command(flatten)]
    transfer: TransferArgs,
}

#[derive(Debug, Args)]
struct TransferArgs {
    /// Registry auth file passed to skopeo (--dest-authfile).
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// Require HTTPS and verify certificates for the destination registry.
    #[arg(long, value_name = "BOOL")]
    dest_tls_verify: Option<bool>,
    /// File holding user:password for the destination registry (never put on a command line).
    #[arg(long, value_name = "FILE")]
    creds_file: Option<PathBuf>,
    /// containers-storage driver (e.g. overlay, vfs).
    #[arg(long, value_name = "DRIVER")]
    storage_driver: Option<String>,
    /// containers-storage graph root.
    #[arg(long, value_name = "DIR")]
    storage_root: Option<PathBuf>,
    /// containers-storage run root.
    #[arg(long, value_name = "DIR")]
    storage_runroot: Option<PathBuf>,
    /// Temporary data: skopeo's copies of the blobs when streaming into
    /// containers-storage (default: the storage's tmp/), else the private
    /// layout (default: $TMPDIR, else /var/tmp).
    #[arg(long, value_name = "DIR")]
    tmpdir: Option<PathBuf>,
    /// Export to a private OCI layout and copy from it, instead of streaming
    /// the image to skopeo.
    #[arg(long)]
    via_layout: bool,
}

impl TransferArgs {
    fn options(&self) -> TransferOptions {
        TransferOptions {
            authfile: self.authfile.clone(),
            dest_tls_verify: self.dest_tls_verify,
            creds_file: self.creds_file.clone(),
            storage: StorageOptions {
                driver: self.storage_driver.clone(),
                root: self.storage_root.clone(),
                runroot: self.storage_runroot.clone(),
            },
            tmpdir: self.tmpdir.clone(),
            via_layout: self.via_layout,
        }
    }
}

#[derive(Debug, Args)]
struct CopyToStorageArgs {
    /// The image (default: the booted deployment's, else the only image in the repository).
    #[arg(conflicts_with_all = ["source", "deployment"])]
    image: Option<String>,
    /// The image, as bootc spells it: TRANSPORT:NAME (e.g. docker://quay.io/x/y:tag) or any IMAGE.
    #[arg(long, value_name = "IMAGE", conflicts_with = "deployment")]
    source: Option<String>,
    /// The image of a bootc deployment: booted, staged, rollback or a deployment ID.
    #[arg(long, value_name = "D")]
    deployment: Option<String>,
    /// The name in containers-storage (containers-storage: is implied).
    #[arg(long, default_value = "localhost/bootc")]
    target: String,
    /// none: layers handed over uncompressed, the fastest (the image ID is
    /// kept, the manifest is new); original: the original compressed bytes
    /// reproduced, so the storage records the original manifest digest too.
    #[arg(long, value_name = "KIND", default_value = "none", value_parser = storage_compression)]
    compression: CompressionChoice,
    /// Layers rebuilt in parallel (default: number of cores).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    jobs: Option<u16>,
    #[command(flatten)]
    transfer: TransferArgs,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// Images: tag, digest, image-ID prefix, deployment image name or booted/staged/rollback.
    #[arg(required_unless_present_any = ["all", "deployment"], conflicts_with_all = ["all", "deployment"])]
    images: Vec<String>,
    /// Verify every image in the repository.
    #[arg(long, conflicts_with = "deployment")]
    all: bool,
    /// The image of a bootc deployment: booted, staged, rollback or a deployment ID.
    #[arg(long, value_name = "D")]
    deployment: Option<String>,
}

/// `--all`, `--deployment D`, or the IMAGE arguments.
fn selection(all: bool, deployment: &Option<String>, images: &[String]) -> ImageSelection {
    match deployment {
        Some(d) => ImageSelection::Deployment(d.clone()),
        None => ImageSelection::from_args(all, images),
    }
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// Source: oci:DIR[:TAG] or oci-archive:FILE[:TAG].
    source: String,
    /// Tag in the repository (default: the source's ref name).
    #[arg(long)]
    tag: Option<String>,
    /// os/arch[/variant] to pick from a multi-platform index.
    #[arg(long)]
    platform: Option<String>,
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
        Command::Man { dir } => write_man_pages(dir.as_deref(), out),
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
        Command::Export(args) => export_command(&cli, args, out),
        Command::CopyToStorage(args) => copy_to_storage_command(&cli, args, out),
        Command::Verify(args) => verify_command(&cli, args, out),
        Command::Import(args) => import_command(&cli, args, out),
        Command::Serve(args) => serve::serve_command(&cli, args, out),
    }
}

fn export_command(cli: &Cli, args: &ExportArgs, out: &mut dyn Write) -> Result<()> {
    let dest = ImageLocation::parse(&args.to).map_err(|e| UsageError(e.to_string()))?;
    if let Some(t) = &args.tag {
        composefs_export::deliver::transport::validate_tag(t)
            .map_err(|e| UsageError(e.to_string()))?;
    }
    // Storage unpacks every layer: compressing for it is wasted work unless
    // the original bytes are asked for.
    let compression = args.compression.unwrap_or(match dest {
        ImageLocation::ContainersStorage(_) => CompressionChoice::Fixed(Compression::Uncompressed),
        _ => CompressionChoice::Original,
    });
    let opts = export_options(compression, args.jobs, args.tag.clone())
        .with_destination_tag(dest.tag())?;
    let transfer = args.transfer.options();
    transfer.validate(&dest)?;
    let source = Source::from_cli(cli)?;
    tell_host_warnings(&source, cli.quiet);
    let selection = selection(args.all, &args.deployment, &args.images);
    export_and_print(cli, source, selection, dest, opts, transfer, out)
}

fn copy_to_storage_command(cli: &Cli, args: &CopyToStorageArgs, out: &mut dyn Write) -> Result<()> {
    let dest = storage_target(&args.target)?;
    let transfer = args.transfer.options();
    transfer.validate(&dest)?;
    let source = Source::from_cli(cli)?;
    tell_host_warnings(&source, cli.quiet);
    let selection = match (&args.image, &args.source, &args.deployment) {
        (Some(i), _, _) | (None, Some(i), _) => ImageSelection::Named(vec![i.clone()]),
        (None, None, Some(d)) => ImageSelection::Deployment(d.clone()),
        (None, None, None) => source.default_image()?,
    };
    let opts = export_options(args.compression, args.jobs, None);
    export_and_print(cli, source, selection, dest, opts, transfer, out)
}

fn verify_command(cli: &Cli, args: &VerifyArgs, out: &mut dyn Write) -> Result<()> {
    let source = Source::from_cli(cli)?;
    tell_host_warnings(&source, cli.quiet);
    let repo = repo::open(&source.location)?;
    let selection = selection(args.all, &args.deployment, &args.images);
    let report = with_repo!(&repo, r => {
        let catalog = image::catalog(r)?;
        // --all also reports the images whose manifest no longer reads back.
        let (picked, damaged) = match &selection {
            ImageSelection::All => (
                catalog.images.iter().map(|e| Selected { entry: e.clone(), deployment: None }).collect(),
                &catalog.damaged[..],
            ),
            _ => (selection.resolve(&catalog, source.host.as_ref())?, &[][..]),
        };
        let entries: Vec<_> = picked.iter().map(|s: &Selected| s.entry.clone()).collect();
        composefs_export::repo::verify::verify(r, &entries, damaged).map(|mut report| {
            report.deployments = picked.into_iter().filter_map(|s| s.deployment).collect();
            report
        })
    })?;
    drop(repo);
    tell_deployment_choices(report.deployments.iter(), cli.quiet);
    print_verify(&report, cli.json, cli.quiet, out)?;
    if report.is_ok() {
        Ok(())
    } else {
        Err(VerifyFailed(report.findings.len()).into())
    }
}

fn import_command(cli: &Cli, args: &ImportArgs, out: &mut dyn Write) -> Result<()> {
    if cli.sysroot.is_some() {
        bail!(UsageError(
            "import never writes into a bootc sysroot; drop --sysroot and give --repo".into()
        ));
    }
    let location = cli.repo.location();
    let source = ImageLocation::parse(&args.source).map_err(|e| UsageError(e.to_string()))?;
    let opts = ImportOptions {
        tag: args.tag.clone(),
        platform: args.platform.clone(),
    };
    // What this import creates (the repository and missing parents) goes again if it fails.
    let created = composefs_export::first_missing_ancestor(&location.path()?);
    let (repo, outcome) = repo::open_or_create(&location)?;
    let rt = runtime()?;
    let result = with_repo!(&repo, r => rt.block_on(import::import(r, &source, &opts)));
    drop(repo);
    let report = match (result, created) {
        (Ok(report), _) => report,
        (Err(e), Some(dir)) if outcome != CreateOutcome::Existing => {
            if let Err(rm) = std::fs::remove_dir_all(&dir) {
                tracing::warn!("removing {} after a failed import: {rm}", dir.display());
            }
            return Err(e);
        }
        (Err(e), _) => return Err(e),
    };
    if outcome == CreateOutcome::CreatedInsecure {
        tell!(
            "warning: created an insecure repository at {}: this filesystem has no fs-verity",
            location.path()?.display()
        );
    }
    if cli.json {
        print::write_json(out, &report)?;
    } else if !cli.quiet {
        let new = report.layers.iter().filter(|l| l.stored).count();
        say!(
            out,
            "Imported {} as {} ({} layers, {new} new; image ID {}, platform {})",
            report.source,
            report.tag,
            report.layers.len(),
            report.config_digest,
            report.platform
        )?;
    }
    Ok(())
}

/// The man pages: on stdout the main page; with `dir`, every page as a file.
fn write_man_pages(dir: Option<&std::path::Path>, out: &mut dyn Write) -> Result<()> {
    let cmd = <Cli as clap::CommandFactory>::command();
    let Some(dir) = dir else {
        return clap_mangen::Man::new(cmd)
            .render(out)
            .context("Writing the man page");
    };
    std::fs::create_dir_all(dir).with_context(|| format!("Creating {}", dir.display()))?;
    let mut pages = vec![("cfs-export".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands() {
        let name = format!("cfs-export-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    for (name, page) in pages {
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(page).render(&mut out)?;
        std::fs::write(&path, out).with_context(|| format!("Writing {}", path.display()))?;
    }
    Ok(())
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

/// Run an export on a runtime, cancelling it (skopeo killed, temp dir removed)
/// on SIGINT or SIGTERM.
fn export_on_runtime(
    source: Source,
    selection: ImageSelection,
    dest: ImageLocation,
    mut opts: ExportOptions,
    transfer: TransferOptions,
    cli: &Cli,
) -> Result<ExportReport> {
    let repo = repo::open(&source.location)?;
    let host = source.host;
    // Bars only for a person watching: a TTY, not -q, not --json.
    let bars = (std::io::stderr().is_terminal() && !cli.quiet && !cli.json)
        .then(|| Arc::new(bars::Bars::new()));
    if let Some(b) = &bars {
        opts.progress = ProgressHandle(b.clone());
    }
    let rt = runtime()?;
    let result = rt.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt()).context("Installing a SIGINT handler")?;
        let mut term = signal(SignalKind::terminate()).context("Installing a SIGTERM handler")?;
        let work = async move {
            with_repo!(repo, r => deliver::export(r, selection, host, dest, opts, transfer).await)
        };
        tokio::select! {
            r = work => r,
            _ = int.recv() => Err(Interrupted { name: "SIGINT", signal: 2 }.into()),
            _ = term.recv() => Err(Interrupted { name: "SIGTERM", signal: 15 }.into()),
        }
    });
    // Do not wait for a cancelled worker thread; its temp dir is already gone.
    rt.shutdown_background();
    if let Some(b) = bars {
        b.clear();
    }
    result
}

/// Why the manifest is new although `original` was asked: the layers whose
/// original gzip no encoder we know reproduced (stderr).
fn tell_misses(report: &ExportReport) {
    for img in &report.images {
        let missed: Vec<String> = img
            .layers
            .iter()
            .enumerate()
            .filter(|(_, l)| l.blob == BlobBytes::New && l.compression != Compression::Uncompressed)
            .map(|(i, _)| (i + 1).to_string())
            .collect();
        let name = print::escape_control(&img.image);
        if img.original_manifest {
            continue;
        }
        if !missed.is_empty() {
            eprintln!(
                "note: {name}: no encoder we know (klauspost pgzip, Go compress/gzip, zlib 6) made the original gzip of layer{} {}; \
                 recompressed, so the manifest digest is new (the image ID is kept). The search is remembered, not repeated.",
                if missed.len() > 1 { "s" } else { "" },
                missed.join(", ")
            );
        } else if report.streamed && img.layers.iter().any(|l| l.blob == BlobBytes::New) {
            eprintln!(
                "note: {name}: not every layer's original gzip could be reproduced, so the layers went over uncompressed \
                 and the manifest digest is new (the image ID is kept)"
            );
        }
    }
}

/// copy-to-storage's `--compression`: none or original only.
fn storage_compression(s: &str) -> Result<CompressionChoice, String> {
    match s.parse::<CompressionChoice>() {
        Ok(c @ (CompressionChoice::Original | CompressionChoice::Fixed(Compression::Uncompressed))) => Ok(c),
        _ => Err("expected none or original (containers-storage unpacks layers: none is the fastest, original keeps the manifest digest)".to_string()),
    }
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

/// Run one export and print its report.
fn export_and_print(
    cli: &Cli,
    source: Source,
    selection: ImageSelection,
    dest: ImageLocation,
    opts: ExportOptions,
    transfer: TransferOptions,
    out: &mut dyn Write,
) -> Result<()> {
    let original = opts.compression == CompressionChoice::Original;
    let report = export_on_runtime(source, selection, dest, opts, transfer, cli)?;
    tell_deployment_choices(
        report.images.iter().filter_map(|i| i.deployment.as_ref()),
        cli.quiet,
    );
    print_export(&report, cli.json, cli.quiet, out)?;
    if original && !cli.quiet {
        tell_misses(&report);
    }
    Ok(())
}

/// `verify` found damage (exit 1; the findings were already printed).
#[derive(Debug, thiserror::Error)]
#[error("verification found {0} problem(s)")]
pub struct VerifyFailed(pub usize);
