//! Which deployments exist and which is booted or staged: boot entries
//! (BLS, UKI, GRUB's user.cfg), the kernel command line, the `/` mount and
//! the staged-deployment marker in `/run`.

use std::path::Path;

use anyhow::{Context, Result};

use super::HostPaths;

/// A hex deployment ID (sha256 or sha512 fs-verity digest).
pub(super) fn is_deployment_id(s: &str) -> bool {
    (s.len() == 64 || s.len() == 128) && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// `composefs=<id>` (a leading `?` means insecure) in a space-separated list.
pub(super) fn composefs_arg(options: &str) -> Option<String> {
    options.split_whitespace().find_map(|a| {
        let v = a.strip_prefix("composefs=")?;
        let v = v.strip_prefix('?').unwrap_or(v);
        is_deployment_id(v).then(|| v.to_ascii_lowercase())
    })
}

/// The ID in a UKI path: `…/bootc_composefs-<id>.efi`.
pub(super) fn uki_id(text: &str) -> Option<String> {
    let (_, rest) = text.split_once("bootc_composefs-")?;
    let id: String = rest.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
    is_deployment_id(&id).then(|| id.to_ascii_lowercase())
}

/// One BLS entry: its deployment and what it sorts by.
pub(super) struct BootEntry {
    pub(super) id: String,
    sort_key: Option<String>,
    file: String,
}

pub(super) fn read_entries(dir: &Path) -> Result<Vec<BootEntry>> {
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(e).with_context(|| format!("Reading boot entries in {}", dir.display()))
        }
    };
    let mut entries = Vec::new();
    for e in read {
        let e = e.with_context(|| format!("Reading boot entries in {}", dir.display()))?;
        let file = e.file_name().to_string_lossy().into_owned();
        if !file.ends_with(".conf") {
            continue;
        }
        let text = std::fs::read_to_string(e.path())
            .with_context(|| format!("Reading boot entry {}", e.path().display()))?;
        let mut id = None;
        let mut sort_key = None;
        for line in text.lines() {
            let line = line.trim();
            let (key, value) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            match key {
                "options" => id = id.or_else(|| composefs_arg(value)),
                "efi" | "linux" => id = id.or_else(|| uki_id(value)),
                "sort-key" => sort_key = Some(value.trim().to_string()),
                _ => {}
            }
        }
        match id {
            Some(id) => entries.push(BootEntry { id, sort_key, file }),
            None => tracing::debug!(
                "boot entry {} names no composefs deployment",
                e.path().display()
            ),
        }
    }
    // systemd-boot: entries with a sort-key first, by key; then by file name,
    // newest (highest) first, as GRUB's BLS module orders them.
    entries.sort_by(|a, b| match (&a.sort_key, &b.sort_key) {
        (Some(x), Some(y)) => x.cmp(y).then_with(|| b.file.cmp(&a.file)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => b.file.cmp(&a.file),
    });
    Ok(entries)
}

/// Deployment IDs named by boot entries, in boot order. Without any entry
/// (the boot partition or ESP is not mounted), every deployment directory.
pub(super) fn deployment_ids(paths: &HostPaths) -> Result<Vec<String>> {
    let s = &paths.sysroot;
    let mut ids: Vec<String> = Vec::new();
    let mut push = |id: String| {
        if !ids.contains(&id) {
            ids.push(id);
        }
    };
    for dir in ["boot", "boot/efi", "efi"] {
        for sub in ["loader/entries", "loader/entries.staged"] {
            for e in read_entries(&s.join(dir).join(sub))? {
                push(e.id);
            }
        }
    }
    // GRUB with UKIs lists them in user.cfg.
    if let Ok(text) = std::fs::read_to_string(s.join("boot/grub2/user.cfg")) {
        for line in text.lines() {
            if let Some(id) = uki_id(line).or_else(|| composefs_arg(line)) {
                push(id);
            }
        }
    }
    if !ids.is_empty() {
        return Ok(ids);
    }
    let deploy = paths.deploy_dir();
    let mut dirs = Vec::new();
    match std::fs::read_dir(&deploy) {
        Ok(read) => {
            for e in read {
                let name = e?.file_name().to_string_lossy().into_owned();
                if is_deployment_id(&name) {
                    dirs.push(name);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("Listing {}", deploy.display())),
    }
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

/// The booted deployment: the `/` mount's source wins over the command line
/// (after a soft reboot they differ).
pub(super) fn booted_id(paths: &HostPaths) -> Result<Option<String>> {
    if let Ok(info) = std::fs::read_to_string(&paths.mountinfo) {
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
        if let Some(source) = root {
            let id = source
                .strip_prefix("composefs:")
                .or_else(|| source.strip_prefix("transient:composefs="))
                .map(|v| v.strip_prefix('?').unwrap_or(v));
            if let Some(id) = id.filter(|i| is_deployment_id(i)) {
                return Ok(Some(id.to_ascii_lowercase()));
            }
        }
    }
    match std::fs::read_to_string(&paths.cmdline) {
        Ok(c) => Ok(composefs_arg(&c)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("Reading {}", paths.cmdline.display())),
    }
}

pub(super) fn staged_id(paths: &HostPaths) -> Result<Option<String>> {
    #[derive(serde::Deserialize)]
    struct Staged {
        depl_id: String,
    }
    let path = paths.run.join("composefs/staged-deployment");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("Reading {}", path.display())),
    };
    let staged: Staged =
        serde_json::from_slice(&bytes).with_context(|| format!("Parsing {}", path.display()))?;
    Ok(Some(staged.depl_id.to_ascii_lowercase()))
}
