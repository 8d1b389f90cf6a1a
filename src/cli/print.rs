//! What the commands print: tables and summaries for people, JSON for scripts.

use std::io::Write;

use anyhow::Result;

use composefs_export::digest::short_hex;
use composefs_export::export::{self, ExportReport};
use composefs_export::human_size;
use composefs_export::list::Listing;

/// A message on one line: composefs formats some inner errors with `{:?}`,
/// which spreads their causes over several (`Caused by:` and a numbered list).
pub(super) fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "Caused by:")
        .map(|l| match l.split_once(": ") {
            Some((n, rest)) if n.chars().all(|c| c.is_ascii_digit()) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join(": ")
}

pub(super) fn print_verify(
    report: &composefs_export::verify::VerifyReport,
    json: bool,
    quiet: bool,
    out: &mut dyn Write,
) -> Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(report)?)?;
        return Ok(());
    }
    for f in &report.findings {
        let layer = f
            .layer
            .as_ref()
            .map(|(n, d)| format!(" layer {n} ({d})"))
            .unwrap_or_default();
        eprintln!(
            "DAMAGED {}{layer}: {}",
            f.images.join(", "),
            one_line(&f.problem)
        );
        for o in &f.objects {
            eprintln!("  {o}");
        }
    }
    if !quiet {
        writeln!(
            out,
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
        )?;
    }
    Ok(())
}

/// The `list` table: columns as wide as their widest cell, so bootc's long
/// tags (`localhost/bootc-sha256:<64 hex>`) keep everything aligned.
pub(super) fn list_table(listing: &Listing) -> Vec<String> {
    let with_deployments = listing.rows.iter().any(|r| !r.deployments.is_empty());
    let mut table: Vec<Vec<String>> = vec![[
        "TAG",
        "IMAGE ID",
        "MANIFEST",
        "PLATFORM",
        "LAYERS",
        "SIZE",
        "DEPLOYMENTS",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()];
    for r in &listing.rows {
        let tags = if r.tags.is_empty() {
            vec!["<none>".to_string()]
        } else {
            r.tags.clone()
        };
        let deployments = r
            .deployments
            .iter()
            .map(|d| format!("{} {} {}", d.role, short_hex(&d.id), d.image))
            .collect::<Vec<_>>()
            .join("; ");
        // One line per tag; the image's columns on the first.
        for (i, tag) in tags.into_iter().enumerate() {
            let mut row = vec![tag];
            if i == 0 {
                row.extend([
                    r.image_id
                        .as_deref()
                        .map_or("<unknown>", short_hex)
                        .to_string(),
                    r.manifest_digest
                        .as_deref()
                        .map_or("<none>", short_hex)
                        .to_string(),
                    match r.damaged {
                        Some(_) => "DAMAGED".to_string(),
                        None => r.platform.clone(),
                    },
                    r.layers.to_string(),
                    human_size(r.size),
                    deployments.clone(),
                ]);
            } else {
                row.extend(std::iter::repeat_n(String::new(), 6));
            }
            table.push(row);
        }
    }
    let columns = if with_deployments { 7 } else { 6 };
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            table
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    table
        .iter()
        .map(|row| {
            let cells: Vec<String> = (0..columns)
                .map(|c| match c {
                    4 | 5 => format!("{:>w$}", row[c], w = widths[c]),
                    _ if c == columns - 1 => row[c].clone(),
                    _ => format!("{:<w$}", row[c], w = widths[c]),
                })
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect()
}

pub(super) fn print_list(listing: &Listing, json: bool, out: &mut dyn Write) -> Result<()> {
    for problem in &listing.problems {
        eprintln!("warning: {}", one_line(problem));
    }
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&listing.rows)?)?;
        return Ok(());
    }
    for line in list_table(listing) {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

pub(super) fn print_export(
    report: &ExportReport,
    json: bool,
    quiet: bool,
    out: &mut dyn Write,
) -> Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(report)?)?;
        return Ok(());
    }
    if quiet {
        return Ok(());
    }
    for img in &report.images {
        writeln!(
            out,
            "{} -> {}{}",
            img.image,
            report.destination,
            img.tag
                .as_deref()
                .map(|t| format!(":{t}"))
                .unwrap_or_default()
        )?;
        for (i, l) in img.layers.iter().enumerate() {
            writeln!(
                out,
                "  layer {}/{} {} {:<8} {:>10} -> {:>10} {}",
                i + 1,
                img.layers.len(),
                short_hex(&l.diff_id),
                l.compression.to_string(),
                human_size(l.size),
                human_size(l.blob_size),
                match l.status {
                    export::LayerStatus::Written => "written, diff_id verified",
                    export::LayerStatus::Skipped => "skipped (already present)",
                }
            )?;
        }
        writeln!(
            out,
            "  image ID {} (kept); manifest {}{}",
            img.config_digest,
            img.manifest_digest,
            if img.original_manifest {
                " (original bytes)"
            } else {
                " (new)"
            }
        )?;
    }
    match report.transfer_seconds {
        Some(t) if report.streamed => writeln!(
            out,
            "  took {t:.1}s, streamed to skopeo ({:.1}s rebuilding layers while it read them)",
            report.export_seconds
        )?,
        Some(t) => writeln!(
            out,
            "  took {:.1}s: export {:.1}s, then {:.1}s to hand it over",
            report.export_seconds + t,
            report.export_seconds,
            t
        )?,
        None => writeln!(out, "  took {:.1}s", report.export_seconds)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn messages_fit_on_one_line() {
        assert_eq!(one_line("a: b"), "a: b");
        assert_eq!(
            one_line("Reading x: bad\n\nCaused by:\n    0: inner\n    1: innermost"),
            "Reading x: bad: inner: innermost"
        );
        assert_eq!(
            one_line("a\nCaused by:\n    invalid digit"),
            "a: invalid digit"
        );
    }
}
