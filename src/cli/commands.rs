//! What each command does once its options are parsed: export and
//! copy-to-storage (run on a runtime that SIGINT/SIGTERM cancel), verify,
//! import and the man pages.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use composefs_export::compress::{Compression, CompressionChoice};
use composefs_export::deliver::transport::ImageLocation;
use composefs_export::deliver::{self, TransferOptions};
use composefs_export::export::{BlobBytes, ExportOptions, ExportReport, ImageSelection, Selected};
use composefs_export::import::{self, ImportOptions};
use composefs_export::progress::ProgressHandle;
use composefs_export::repo::image;
use composefs_export::repo::{self, CreateOutcome};
use composefs_export::{with_repo, UsageError};

use super::args::{
    selection, transfer_options, CopyToStorageArgs, ExportArgs, ImportArgs, VerifyArgs,
};
use super::print::{self, print_export, print_verify};
use super::source::{storage_target, tell_deployment_choices, tell_host_warnings, Source};
use super::{bars, export_options, runtime, Cli, Interrupted, VerifyFailed};

pub(super) fn export_command(cli: &Cli, args: &ExportArgs, out: &mut dyn Write) -> Result<()> {
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
    let transfer = transfer_options(Some(&args.registry), &args.storage, &args.handoff);
    transfer.validate(&dest)?;
    let source = Source::from_cli(cli)?;
    tell_host_warnings(&source, cli.quiet);
    let selection = selection(args.all, &args.deployment, &args.images);
    export_and_print(cli, source, selection, dest, opts, transfer, out)
}

pub(super) fn copy_to_storage_command(
    cli: &Cli,
    args: &CopyToStorageArgs,
    out: &mut dyn Write,
) -> Result<()> {
    let dest = storage_target(&args.target)?;
    let transfer = transfer_options(None, &args.storage, &args.handoff);
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

pub(super) fn verify_command(cli: &Cli, args: &VerifyArgs, out: &mut dyn Write) -> Result<()> {
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

pub(super) fn import_command(cli: &Cli, args: &ImportArgs, out: &mut dyn Write) -> Result<()> {
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
pub(super) fn write_man_pages(dir: Option<&std::path::Path>, out: &mut dyn Write) -> Result<()> {
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
    // `docker save` archives (and the engine) take plain tars whatever is
    // asked: nothing to tell.
    let plain_tars = matches!(
        dest,
        ImageLocation::DockerArchive(_) | ImageLocation::DockerDaemon(_)
    );
    let original = opts.compression == CompressionChoice::Original && !plain_tars;
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
