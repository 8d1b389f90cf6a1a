//! What the commands print: tables and summaries for people, JSON for scripts.

use anyhow::{Context, Result};
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;
use serde::Serialize;

use crate::export::{self, ExportReport};
use crate::image;

pub(super) fn print_verify(
    report: &crate::verify::VerifyReport,
    json: bool,
    quiet: bool,
) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    for f in &report.findings {
        let layer = f
            .layer
            .as_ref()
            .map(|(n, d)| format!(" layer {n} ({d})"))
            .unwrap_or_default();
        eprintln!("DAMAGED {}{layer}: {}", f.images.join(", "), f.problem);
        for o in &f.objects {
            eprintln!("  {o}");
        }
    }
    if !quiet {
        println!(
            "Verified {} image(s), {} layer(s), {}: {}",
            report.images_checked,
            report.layers_checked,
            human_size(report.bytes_checked),
            if report.is_ok() {
                "all intact".to_string()
            } else {
                format!(
                    "{} problem(s); re-pull the damaged images",
                    report.findings.len()
                )
            }
        );
    }
    Ok(())
}

/// One row of `list`.
#[derive(Debug, Serialize)]
pub struct ListRow {
    /// Tags (empty when untagged).
    pub tags: Vec<String>,
    /// Manifest digest, when the repository stores the manifest.
    pub manifest_digest: Option<String>,
    /// Image ID: the config digest.
    pub image_id: String,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// Number of layers.
    pub layers: usize,
    /// Sum of uncompressed layer sizes.
    pub size: u64,
}

pub(super) fn list_rows<ID: FsVerityHashValue>(repo: &Repository<ID>) -> Result<Vec<ListRow>> {
    let mut rows = Vec::new();
    for entry in image::catalog(repo)? {
        let img = image::load(repo, &entry)?;
        let mut size = 0;
        for l in &img.layers {
            size += image::layer_size(repo, l)
                .with_context(|| format!("Layer {} of {}", l.diff_id, img.name()))?;
        }
        rows.push(ListRow {
            tags: entry.tags.clone(),
            manifest_digest: entry.manifest_digest.as_ref().map(|d| d.to_string()),
            image_id: entry.config_digest.to_string(),
            platform: image::platform_of(&img.config),
            layers: img.layers.len(),
            size,
        });
    }
    Ok(rows)
}

fn short(d: &str) -> &str {
    let hex = d.strip_prefix("sha256:").unwrap_or(d);
    &hex[..hex.len().min(12)]
}

/// Human-readable byte count.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub(super) fn print_list(rows: &[ListRow], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(rows)?);
        return Ok(());
    }
    println!(
        "{:<40} {:<12} {:<12} {:<16} {:>6} {:>10}",
        "TAG", "IMAGE ID", "MANIFEST", "PLATFORM", "LAYERS", "SIZE"
    );
    for r in rows {
        let tag = if r.tags.is_empty() {
            "<none>".to_string()
        } else {
            r.tags.join(",")
        };
        println!(
            "{:<40} {:<12} {:<12} {:<16} {:>6} {:>10}",
            tag,
            short(&r.image_id),
            r.manifest_digest.as_deref().map_or("<none>", short),
            r.platform,
            r.layers,
            human_size(r.size)
        );
    }
    Ok(())
}

pub(super) fn print_export(report: &ExportReport, json: bool, quiet: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    if quiet {
        return Ok(());
    }
    for img in &report.images {
        println!(
            "{} -> {}{}",
            img.image,
            report.destination,
            img.tag
                .as_deref()
                .map(|t| format!(":{t}"))
                .unwrap_or_default()
        );
        for (i, l) in img.layers.iter().enumerate() {
            println!(
                "  layer {}/{} {} {:<8} {:>10} -> {:>10} {}",
                i + 1,
                img.layers.len(),
                short(&l.diff_id),
                l.compression.to_string(),
                human_size(l.size),
                human_size(l.blob_size),
                match l.status {
                    export::LayerStatus::Written => "written, diff_id verified",
                    export::LayerStatus::Skipped => "skipped (already present)",
                }
            );
        }
        println!(
            "  image ID {} (kept); manifest {}{}",
            img.config_digest,
            img.manifest_digest,
            if img.original_manifest {
                " (original bytes)"
            } else {
                " (new)"
            }
        );
    }
    match report.transfer_seconds {
        Some(t) => println!(
            "  took {:.1}s: export {:.1}s, then {:.1}s to hand it over",
            report.export_seconds + t,
            report.export_seconds,
            t
        ),
        None => println!("  took {:.1}s", report.export_seconds),
    }
    Ok(())
}
