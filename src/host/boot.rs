//! Which deployments exist and which is booted or staged: boot entries
//! (BLS, UKI, GRUB's user.cfg), the kernel command line, the `/` mount and
//! the staged-deployment marker in `/run`.
//!
//! Boot entries are shared with other systems (systemd-boot's ESP), so one
//! that cannot be read or names no valid deployment is a warning, never the
//! end of the command. Every deployment ID is checked before it is used in a
//! path.

use std::io;
use std::path::Path;

use anyhow::{Context, Result};
use cap_std_ext::cap_std::fs::Dir;

use super::read::{read_ambient, read_beneath, shown, text, MOUNTINFO_CAP, SMALL_FILE_CAP};
use super::HostPaths;

/// A deployment ID: the lowercase hex fs-verity digest of its boot image,
/// sha256 (64) or sha512 (128) — which one the repository uses is not known
/// while the host is read.
pub(super) fn is_deployment_id(s: &str) -> bool {
    (s.len() == 64 || s.len() == 128) && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// `value` if it is a deployment ID, else why not.
fn checked_id(what: &str, value: &str) -> Result<String, String> {
    if is_deployment_id(value) {
        Ok(value.to_string())
    } else {
        Err(format!(
            "{what}{} is not a deployment ID (64 or 128 lowercase hex digits)",
            shown(value)
        ))
    }
}

/// `composefs=<id>` (a leading `?` means insecure) in a space-separated list:
/// `Ok(None)` without one, `Err` when its value is not a deployment ID.
pub(super) fn composefs_arg(options: &str) -> Result<Option<String>, String> {
    let Some(v) = options
        .split_whitespace()
        .find_map(|a| a.strip_prefix("composefs="))
    else {
        return Ok(None);
    };
    checked_id("composefs=", v.strip_prefix('?').unwrap_or(v)).map(Some)
}

/// The ID in a UKI path, `…/bootc_composefs-<id>.efi`: `Ok(None)` without
/// one, `Err` when what follows `bootc_composefs-` is not a deployment ID.
pub(super) fn uki_id(text: &str) -> Result<Option<String>, String> {
    let Some((_, rest)) = text.split_once("bootc_composefs-") else {
        return Ok(None);
    };
    let id = rest
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or_default();
    checked_id("bootc_composefs-", id).map(Some)
}

/// One BLS entry: its deployment and what it sorts by.
pub(super) struct BootEntry {
    pub(super) id: String,
    sort_key: Option<String>,
    file: String,
}

/// Why a host file could not be read, for a warning.
fn unreadable(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::NotFound {
        "it is a symbolic link to nothing".to_string()
    } else {
        e.to_string()
    }
}

/// The BLS entries in `sub` (relative to the sysroot), in boot order; the
/// ones that cannot be read or name no valid deployment become warnings.
pub(super) fn read_entries(
    sysroot: &Dir,
    shown_root: &Path,
    sub: &str,
    warnings: &mut Vec<String>,
) -> Vec<BootEntry> {
    let shown_dir = shown_root.join(sub);
    let dir = match sysroot.open_dir(sub) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            warnings.push(format!(
                "boot entries in {} cannot be read: {e}; skipped",
                shown_dir.display()
            ));
            return Vec::new();
        }
    };
    let listing = match dir.entries() {
        Ok(l) => l,
        Err(e) => {
            warnings.push(format!(
                "boot entries in {} cannot be listed: {e}; skipped",
                shown_dir.display()
            ));
            return Vec::new();
        }
    };
    let mut entries = Vec::new();
    for e in listing {
        let e = match e {
            Ok(e) => e,
            Err(e) => {
                warnings.push(format!(
                    "listing boot entries in {}: {e}; the rest skipped",
                    shown_dir.display()
                ));
                break;
            }
        };
        entries.extend(read_entry(&dir, &e.file_name(), &shown_dir, warnings));
    }
    // systemd-boot: entries with a sort-key first, by key; then by file name,
    // newest (highest) first, as GRUB's BLS module orders them.
    entries.sort_by(|a, b| match (&a.sort_key, &b.sort_key) {
        (Some(x), Some(y)) => x.cmp(y).then_with(|| b.file.cmp(&a.file)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => b.file.cmp(&a.file),
    });
    entries
}

/// One `.conf` file of a BLS entries directory, when it names a deployment;
/// one that cannot be read or parsed becomes a warning.
fn read_entry(
    dir: &Dir,
    name: &std::ffi::OsStr,
    shown_dir: &Path,
    warnings: &mut Vec<String>,
) -> Option<BootEntry> {
    let file = name.to_string_lossy().into_owned();
    if !file.ends_with(".conf") {
        return None;
    }
    let path = shown_dir.join(name);
    let text = match read_beneath(dir, Path::new(name), SMALL_FILE_CAP).and_then(text) {
        Ok(t) => t,
        Err(e) => {
            warnings.push(format!(
                "boot entry {} cannot be read: {}; skipped",
                path.display(),
                unreadable(&e)
            ));
            return None;
        }
    };
    match parse_entry(&text) {
        Ok((Some(id), sort_key)) => return Some(BootEntry { id, sort_key, file }),
        Ok((None, _)) => tracing::debug!(
            "boot entry {:?} names no composefs deployment",
            path.display()
        ),
        Err(why) => warnings.push(format!("boot entry {}: {why}; skipped", path.display())),
    }
    None
}

/// A BLS entry's deployment (`options composefs=`, or a UKI `efi` line) and sort key.
fn parse_entry(text: &str) -> Result<(Option<String>, Option<String>), String> {
    let mut id = None;
    let mut sort_key = None;
    for line in text.lines() {
        let line = line.trim();
        let (key, value) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let found = match key {
            "options" => composefs_arg(value)?,
            "efi" | "linux" => uki_id(value)?,
            "sort-key" => {
                sort_key = Some(value.trim().to_string());
                None
            }
            _ => None,
        };
        id = id.or(found);
    }
    Ok((id, sort_key))
}

/// Deployment IDs named by boot entries, in boot order. Without any entry
/// (the boot partition or ESP is not mounted), every deployment directory.
pub(super) fn deployment_ids(
    sysroot: &Dir,
    paths: &HostPaths,
    warnings: &mut Vec<String>,
) -> Result<Vec<String>> {
    let s = &paths.sysroot;
    let mut ids: Vec<String> = Vec::new();
    let mut push = |id: String| {
        if !ids.contains(&id) {
            ids.push(id);
        }
    };
    for dir in ["boot", "boot/efi", "efi"] {
        for sub in ["loader/entries", "loader/entries.staged"] {
            for e in read_entries(sysroot, s, &format!("{dir}/{sub}"), warnings) {
                push(e.id);
            }
        }
    }
    for id in user_cfg_ids(sysroot, s, warnings) {
        push(id);
    }
    if !ids.is_empty() {
        return Ok(ids);
    }
    let deploy = paths.deploy_dir();
    let mut dirs = deployment_dirs(sysroot, &deploy)?;
    if !dirs.is_empty() {
        tracing::warn!(
            "no boot entries found under {} (is the boot partition mounted?); using every deployment in {}",
            s.display(),
            deploy.display()
        );
    }
    dirs.sort();
    Ok(dirs)
}

/// The deployments GRUB's `user.cfg` lists (GRUB with UKIs lists them
/// there); a line that names one wrongly becomes a warning.
fn user_cfg_ids(sysroot: &Dir, s: &Path, warnings: &mut Vec<String>) -> Vec<String> {
    const USER_CFG: &str = "boot/grub2/user.cfg";
    let mut ids = Vec::new();
    match read_beneath(sysroot, Path::new(USER_CFG), SMALL_FILE_CAP).and_then(text) {
        Ok(text) => {
            for line in text.lines() {
                match uki_id(line).and_then(|u| match u {
                    Some(id) => Ok(Some(id)),
                    None => composefs_arg(line),
                }) {
                    Ok(Some(id)) => ids.push(id),
                    Ok(None) => {}
                    Err(why) => warnings.push(format!(
                        "{}: {why}; that line skipped",
                        s.join(USER_CFG).display()
                    )),
                }
            }
        }
        // No symlink is ever followed to nothing here: a missing user.cfg is the usual case.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => warnings.push(format!(
            "{} cannot be read: {e}; skipped",
            s.join(USER_CFG).display()
        )),
    }
    ids
}

/// Every deployment directory in `state/deploy` (shown as `deploy`).
fn deployment_dirs(sysroot: &Dir, deploy: &Path) -> Result<Vec<String>> {
    let mut dirs = Vec::new();
    match sysroot.read_dir("state/deploy") {
        Ok(read) => {
            for e in read {
                let e = e.with_context(|| format!("Listing {}", deploy.display()))?;
                let name = e.file_name();
                match name.to_str().filter(|n| is_deployment_id(n)) {
                    Some(n) => dirs.push(n.to_string()),
                    None => {
                        tracing::debug!("{:?} in {} is not a deployment", name, deploy.display())
                    }
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("Listing {}", deploy.display())),
    }
    Ok(dirs)
}

/// What the kernel command line and the `/` mount say was booted.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Booted {
    /// This deployment.
    Id(String),
    /// Not a composefs boot: no `composefs=` argument.
    NotComposefs,
    /// A `composefs=` argument that names no deployment; the message says which.
    Invalid(String),
}

/// The booted deployment: the `/` mount's source wins over the command line
/// (after a soft reboot they differ).
pub(super) fn booted_id(paths: &HostPaths, warnings: &mut Vec<String>) -> Result<Booted> {
    match read_ambient(&paths.mountinfo, MOUNTINFO_CAP).and_then(text) {
        Ok(info) => match root_mount_id(&info) {
            Ok(Some(id)) => return Ok(Booted::Id(id)),
            Ok(None) => {}
            Err(why) => warnings.push(format!(
                "{}: the / mount's source {why}; using the kernel command line",
                paths.mountinfo.display()
            )),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => warnings.push(format!(
            "{} cannot be read: {e}; using the kernel command line",
            paths.mountinfo.display()
        )),
    }
    let cmdline = match read_ambient(&paths.cmdline, SMALL_FILE_CAP).and_then(text) {
        Ok(c) => c,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Booted::NotComposefs),
        Err(e) => return Err(e).with_context(|| format!("Reading {}", paths.cmdline.display())),
    };
    Ok(match composefs_arg(&cmdline) {
        Ok(Some(id)) => Booted::Id(id),
        Ok(None) => Booted::NotComposefs,
        Err(why) => Booted::Invalid(format!("{}: {why}", paths.cmdline.display())),
    })
}

/// The deployment the last mount on `/` is from, if it is a composefs one.
pub(super) fn root_mount_id(info: &str) -> Result<Option<String>, String> {
    let mut root = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.get(4) == Some(&"/") {
            // The last mount on / is the one in effect.
            root = fields.get(sep + 2).copied();
        }
    }
    let Some(source) = root else {
        return Ok(None);
    };
    let Some(id) = source
        .strip_prefix("composefs:")
        .or_else(|| source.strip_prefix("transient:composefs="))
    else {
        return Ok(None);
    };
    checked_id("", id.strip_prefix('?').unwrap_or(id)).map(Some)
}

/// The deployment `/run/composefs/staged-deployment` names; a marker that
/// cannot be read or names no valid deployment is a warning, and nothing is staged.
pub(super) fn staged_id(paths: &HostPaths, warnings: &mut Vec<String>) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Staged {
        depl_id: String,
    }
    let path = paths.run.join("composefs/staged-deployment");
    let bytes = match read_ambient(&path, SMALL_FILE_CAP) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            warnings.push(format!(
                "the staged-deployment marker {} cannot be read: {e}; no deployment is taken as staged",
                path.display()
            ));
            return None;
        }
    };
    let why = match serde_json::from_slice::<Staged>(&bytes) {
        Ok(staged) => match checked_id("depl_id ", &staged.depl_id) {
            Ok(id) => return Some(id),
            Err(why) => why,
        },
        Err(e) => format!("not the JSON bootc writes ({e})"),
    };
    warnings.push(format!(
        "the staged-deployment marker {}: {why}; no deployment is taken as staged",
        path.display()
    ));
    None
}
