//! What the commands print: tables and summaries for people, JSON for scripts.
//!
//! Text for people carries names from disk (image names in origin files, tags,
//! boot entry names, error messages quoting files), so every line of it goes
//! through [`escape_control`]: a terminal never sees a control character it
//! would act on. JSON is exact; serde escapes control characters itself.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;

use anyhow::Result;

use composefs_export::compress::Compression;
use composefs_export::digest::short_hex;
use composefs_export::export::{self, ExportReport};
use composefs_export::human_size;
use composefs_export::repo::list::{ListRow, Listing};

/// Is `c` something a terminal acts on rather than shows: C0 (tab and
/// newline too: each message is one line), DEL, C1, and the bidirectional
/// overrides that reorder what is shown?
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Text for a terminal, with control characters shown as escapes (`\n`,
/// `\t`, `\r`, `\x1b`, and `\u{9b}` beyond ASCII) instead of acted on: an
/// image name cannot retitle the window, move the cursor or clear the screen.
pub(super) fn escape_control(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) && c.is_ascii() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// One JSON document on a line of its own. serde escapes C0 controls but
/// writes DEL, C1 and the bidirectional overrides raw; inside JSON they can
/// only be in strings, so they become `\u` escapes: the same document for a
/// parser, nothing a terminal acts on.
pub(super) fn write_json(out: &mut dyn Write, value: &impl serde::Serialize) -> Result<()> {
    let doc = serde_json::to_string_pretty(value)?;
    writeln!(out, "{}", json_escape_controls(&doc))?;
    Ok(())
}

/// A serialized JSON document with DEL, C1 and bidirectional overrides as `\u` escapes.
pub(super) fn json_escape_controls(doc: &str) -> Cow<'_, str> {
    if !doc.chars().any(|c| c != '\n' && needs_escape(c)) {
        return Cow::Borrowed(doc);
    }
    let mut out = String::with_capacity(doc.len() + 16);
    for c in doc.chars() {
        if c != '\n' && needs_escape(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `writeln!` for text people read: the line with control characters escaped.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {
        writeln!($out, "{}", $crate::cli::print::escape_control(&format!($($arg)*)))
    };
}

/// `eprintln!` for text people read (warnings, notes, errors), escaped likewise.
macro_rules! tell {
    ($($arg:tt)*) => {
        eprintln!("{}", $crate::cli::print::escape_control(&format!($($arg)*)))
    };
}

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
    report: &composefs_export::repo::verify::VerifyReport,
    json: bool,
    quiet: bool,
    out: &mut dyn Write,
) -> Result<()> {
    if json {
        write_json(out, report)?;
        return Ok(());
    }
    for f in &report.findings {
        let layer = f
            .layer
            .as_ref()
            .map(|(n, d)| format!(" layer {n} ({d})"))
            .unwrap_or_default();
        tell!(
            "DAMAGED {}{layer}: {}",
            f.images.join(", "),
            one_line(&f.problem)
        );
        for o in &f.objects {
            tell!("  {o}");
        }
    }
    if !quiet {
        say!(
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
        table.extend(list_rows(r));
    }
    // Escaped before measuring, so a name with control characters keeps its column.
    for cell in table.iter_mut().flatten() {
        if let Cow::Owned(escaped) = escape_control(cell) {
            *cell = escaped;
        }
    }
    let columns = if with_deployments { 7 } else { 6 };
    aligned(&table, columns)
}

/// One image's lines of the `list` table: one per tag, the image's columns
/// on the first.
fn list_rows(r: &ListRow) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
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
        rows.push(row);
    }
    rows
}

/// The table's lines: each column padded to its widest cell (sizes to the
/// right), the last one unpadded.
fn aligned(table: &[Vec<String>], columns: usize) -> Vec<String> {
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
        tell!("warning: {}", one_line(problem));
    }
    if json {
        write_json(out, &listing.rows)?;
        return Ok(());
    }
    for line in list_table(listing) {
        say!(out, "{line}")?;
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
        write_json(out, report)?;
        return Ok(());
    }
    if quiet {
        return Ok(());
    }
    for img in &report.images {
        say!(
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
            say!(out, "{}", layer_line(i, img.layers.len(), l))?;
        }
        say!(
            out,
            "  image ID {} (kept); manifest {} ({})",
            img.config_digest,
            img.manifest_digest,
            match (&img.manifest_not_kept, img.original_manifest) {
                (Some(why), _) => format!("new: {why}"),
                (None, true) => "original bytes".to_string(),
                (None, false) => "new".to_string(),
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

/// One layer's line in the export summary.
fn layer_line(i: usize, count: usize, l: &export::LayerReport) -> String {
    format!(
        "  layer {}/{} {} {:<8} {:>10} -> {:>10} {}; {}",
        i + 1,
        count,
        short_hex(&l.diff_id),
        match l.compression {
            Compression::Reproduced(_) => "gzip".to_string(),
            c => c.to_string(),
        },
        human_size(l.size),
        human_size(l.blob_size),
        match l.status {
            export::LayerStatus::Written => "written, diff_id verified",
            export::LayerStatus::Skipped => "skipped (already present)",
        },
        blob_words(l)
    )
}

/// How a layer blob relates to the original manifest's, in words.
fn blob_words(l: &export::LayerReport) -> String {
    match (l.blob, l.compression) {
        (export::BlobBytes::Reproduced, Compression::Reproduced(r)) => format!("reproduced ({r})"),
        (export::BlobBytes::Reproduced | export::BlobBytes::Original, _) => "original".into(),
        (export::BlobBytes::New, Compression::Uncompressed) => "uncompressed".into(),
        (export::BlobBytes::New, _) => "recompressed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::{escape_control, json_escape_controls, list_table, one_line};
    use composefs_export::host::Role;
    use composefs_export::repo::list::{ListRow, ListedDeployment, Listing};

    #[test]
    fn control_characters_are_shown_not_acted_on() {
        for (raw, shown) in [
            ("quay.io/x/y:1", "quay.io/x/y:1"),
            ("\x1b]0;owned\x07", "\\x1b]0;owned\\x07"),
            ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),
            ("a\nb\rc\td", "a\\nb\\rc\\td"),
            ("\0\x7f", "\\x00\\x7f"),
            ("\u{9b}31m", "\\u{9b}31m"),
            ("\u{85}", "\\u{85}"),
            ("abc\u{202e}gpj.exe", "abc\\u{202e}gpj.exe"),
            ("café ünïcödé 日本", "café ünïcödé 日本"),
        ] {
            let e = escape_control(raw);
            assert_eq!(e, shown, "{raw:?}");
            assert!(!e.chars().any(char::is_control), "{e:?}");
        }
        assert!(matches!(
            escape_control("plain"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn json_stays_exact_and_terminal_safe() {
        let value = serde_json::json!({ "image": "a\x1b]0;t\x07\u{9b}2J\x7f\u{202e}b" });
        let doc = serde_json::to_string_pretty(&value).unwrap();
        let safe = json_escape_controls(&doc);
        assert!(!safe.chars().any(|c| c != '\n' && c.is_control()), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn escaped_names_keep_the_table_aligned() {
        let row = |tag: &str, image: &str| ListRow {
            tags: vec![tag.to_string()],
            manifest_digest: None,
            image_id: Some(format!("sha256:{}", "a".repeat(64))),
            platform: "linux/amd64".into(),
            layers: 1,
            size: 10,
            deployments: vec![ListedDeployment {
                id: "b".repeat(64),
                role: Role::Booted,
                image: image.to_string(),
            }],
            damaged: None,
        };
        let listing = Listing {
            rows: vec![row("x\x1b[2J", "evil\x1b]0;t\x07"), row("plain:1", "ok")],
            problems: Vec::new(),
        };
        let lines = list_table(&listing);
        let col = lines[0].find("IMAGE ID").unwrap();
        for l in &lines {
            assert!(!l.chars().any(char::is_control), "{l:?}");
        }
        assert!(lines[1].contains("x\\x1b[2J"), "{lines:?}");
        assert!(lines[1].ends_with("evil\\x1b]0;t\\x07"), "{lines:?}");
        assert_eq!(lines[1].find("aaaaaaaaaaaa"), Some(col), "{lines:?}");
        assert_eq!(lines[2].find("aaaaaaaaaaaa"), Some(col), "{lines:?}");
    }

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
