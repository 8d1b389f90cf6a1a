//! Stage 0, the host: takes a sysroot (`/sysroot`, or `--sysroot DIR`) and
//! gives its bootc deployments, their roles and the image each came from,
//! so that an image can be named `booted` or by its origin's name.
//!
//! A composefs-booted bootc host, read the way bootc reads it: which
//! deployments exist (boot entries), which one is booted (kernel command line,
//! the `/` mount), which is staged (`/run`), and the image each one came from
//! (its origin file). Read-only: nothing under the sysroot is ever written.
//!
//! Every path is taken from [`HostPaths`], so a whole host can be laid out in
//! a temp dir (or a mounted disk image examined) without touching the running
//! system. The sysroot may be someone else's disk image: every file in it is
//! read beneath it, non-blocking, regular files only and size-capped (see
//! `read`), and what cannot be read becomes a warning or a deployment's problem.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cap_std_ext::cap_std::{ambient_authority, fs::Dir};
use oci_spec::image::Digest;
use serde::Serialize;

use crate::digest::short_hex;
use boot::{booted_id, deployment_ids, staged_id, Booted};
pub use origin::split_transport;
use origin::{has_tag_or_digest, read_deployment};

/// Where the host's state is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    /// The physical root: `state/deploy/`, `boot/`, `composefs/`.
    pub sysroot: PathBuf,
    /// The kernel command line (`/proc/cmdline`).
    pub cmdline: PathBuf,
    /// The mount table of this process (`/proc/self/mountinfo`).
    pub mountinfo: PathBuf,
    /// The runtime directory (`/run`), for the staged-deployment marker.
    pub run: PathBuf,
}

/// The default sysroot of a bootc host.
pub const DEFAULT_SYSROOT: &str = "/sysroot";

impl HostPaths {
    /// The running host's kernel and `/run`, with `sysroot`'s deployments.
    pub fn running(sysroot: &Path) -> Self {
        Self {
            sysroot: sysroot.to_path_buf(),
            cmdline: "/proc/cmdline".into(),
            mountinfo: "/proc/self/mountinfo".into(),
            run: "/run".into(),
        }
    }

    /// The repository bootc keeps under this sysroot.
    pub fn repository(&self) -> PathBuf {
        self.sysroot.join("composefs")
    }

    /// [`HostPaths::repository`], once it is known to be a directory beneath
    /// the sysroot: a `composefs` symlinked out of an untrusted disk image
    /// must not make us read some other repository.
    pub fn repository_beneath(&self) -> Result<PathBuf> {
        let repo = self.repository();
        let dir = Dir::open_ambient_dir(&self.sysroot, ambient_authority())
            .with_context(|| format!("Opening the sysroot {}", self.sysroot.display()))?;
        match dir.open_dir("composefs") {
            Ok(_) => Ok(repo),
            // Said by whoever opens it: "no repository at …".
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(repo),
            Err(e) => Err(read::escape_named(e)).with_context(|| {
                format!(
                    "{} is not a repository directory inside the sysroot (give --repo PATH to read a repository elsewhere)",
                    repo.display()
                )
            }),
        }
    }

    fn deploy_dir(&self) -> PathBuf {
        self.sysroot.join("state/deploy")
    }
}

/// A deployment's role, as `bootc status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Will be booted next (`bootc upgrade`/`switch` staged it).
    Staged,
    /// Running now.
    Booted,
    /// What `bootc rollback` would boot: the first other entry in boot order.
    Rollback,
    /// Any other deployment with a boot entry.
    Other,
}

impl Role {
    /// The keyword that names this role as an IMAGE (`booted`, `staged`, `rollback`).
    pub fn from_keyword(s: &str) -> Option<Role> {
        match s {
            "booted" => Some(Role::Booted),
            "staged" => Some(Role::Staged),
            "rollback" => Some(Role::Rollback),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Staged => "staged",
            Role::Booted => "booted",
            Role::Rollback => "rollback",
            Role::Other => "other",
        })
    }
}

/// The image a deployment was made from, from its origin file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OriginImage {
    /// The reference as recorded, without the `ostree-…-image:` prefix (`docker://quay.io/x/y:tag`).
    pub reference: String,
    /// The transport in display form (`docker://`, `containers-storage:`, `oci:`, …), or empty.
    pub transport: String,
    /// The image name without the transport (`quay.io/x/y:tag`): what bootc matches on.
    pub name: String,
    /// `[image] manifest_digest` (bootc ≥ 1.16).
    pub manifest_digest: Option<Digest>,
    /// The config digest from the manifest in `<id>.imginfo` (older hosts).
    pub config_digest: Option<Digest>,
}

/// One deployment.
#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    /// Hex fs-verity digest of its boot EROFS image (`composefs=<id>`).
    pub id: String,
    /// Its role.
    pub role: Role,
    /// `bls` or `uki`, from the origin file.
    pub boot_type: Option<String>,
    /// The image it was made from; `None` when [`Deployment::problem`] says why.
    pub image: Option<OriginImage>,
    /// Why the image is unknown (no origin file, no image reference, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl Deployment {
    /// `booted deployment 3f2a…` for messages.
    pub fn describe(&self) -> String {
        let name = self
            .image
            .as_ref()
            .map(|i| format!(" ({})", i.name))
            .unwrap_or_default();
        format!("{} deployment {}{name}", self.role, short_hex(&self.id))
    }

    /// The image, or an error saying why the origin names none.
    pub fn require_image(&self) -> Result<&OriginImage> {
        match (&self.image, &self.problem) {
            (Some(i), _) => Ok(i),
            (None, Some(p)) => bail!("The {} has no usable image: {p}", self.describe()),
            (None, None) => bail!("The {} has no image reference", self.describe()),
        }
    }
}

/// Which deployment an IMAGE selector picked, and what else matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeploymentChoice {
    /// What was asked for.
    pub selector: String,
    /// The deployment used.
    pub id: String,
    /// Its role.
    pub role: Role,
    /// Its image name.
    pub image: String,
    /// Other deployments the name matched (`role id`), in bootc's order; empty when unique.
    pub also_matched: Vec<String>,
}

impl fmt::Display for DeploymentChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is the {} deployment {} ({})",
            self.selector,
            self.role,
            short_hex(&self.id),
            self.image
        )?;
        if !self.also_matched.is_empty() {
            write!(
                f,
                "; also matched, not used: {} (pick one with --deployment)",
                self.also_matched.join(", ")
            )?;
        }
        Ok(())
    }
}

/// What the host says about its deployments.
#[derive(Debug, Clone)]
pub struct Host {
    /// Where it was read from.
    pub paths: HostPaths,
    /// Deployments in bootc's order: staged, booted, rollback, then the others in boot order.
    pub deployments: Vec<Deployment>,
    /// Why no deployment is booted, when none is (e.g. no `composefs=` on the command line).
    pub not_booted: Option<String>,
    /// What was skipped while reading the host (unreadable boot entries, an
    /// invalid staged marker, …), one message each, to be shown as warnings.
    pub warnings: Vec<String>,
}

/// The sysroot, opened; an error unless it is a bootc sysroot (it has
/// `composefs/` or `state/deploy/`).
fn open_sysroot(sysroot: &Path) -> Result<Dir> {
    let not_bootc = || {
        format!(
            "{} is not a bootc sysroot: it has neither composefs/ nor state/deploy/ (give the root of a composefs-booted bootc system)",
            sysroot.display()
        )
    };
    let dir = match Dir::open_ambient_dir(sysroot, ambient_authority()) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(not_bootc()),
        Err(e) => {
            return Err(e).with_context(|| format!("Opening the sysroot {}", sysroot.display()))
        }
    };
    let is_dir = |p: &str| dir.metadata(p).is_ok_and(|m| m.is_dir());
    if !is_dir("composefs") && !is_dir("state/deploy") {
        bail!(not_bootc());
    }
    Ok(dir)
}

/// The booted deployment's ID, or why there is none (an invalid one is
/// also a warning).
fn booted_or_why(
    paths: &HostPaths,
    warnings: &mut Vec<String>,
) -> Result<std::result::Result<String, String>> {
    Ok(match booted_id(paths, warnings)? {
        Booted::Id(id) => Ok(id),
        Booted::NotComposefs => Err(format!(
            "this system was not booted from a composefs deployment ({} has no composefs= argument)",
            paths.cmdline.display()
        )),
        Booted::Invalid(why) => {
            warnings.push(format!("{why}; no deployment is taken as booted"));
            Err(format!("the booted deployment is unknown: {why}"))
        }
    })
}

impl Host {
    /// Read the host at `paths`. Fails when the sysroot is not a bootc
    /// sysroot (neither `composefs/` nor `state/deploy/`).
    pub fn load(paths: HostPaths) -> Result<Host> {
        let sysroot = &paths.sysroot;
        let dir = open_sysroot(sysroot)?;
        let is_dir = |p: &str| dir.metadata(p).is_ok_and(|m| m.is_dir());
        let mut warnings = Vec::new();
        let in_boot_order = deployment_ids(&dir, &paths, &mut warnings)?;
        let booted_or_why = booted_or_why(&paths, &mut warnings)?;
        let staged = staged_id(&paths, &mut warnings);
        let mut ids = in_boot_order.clone();
        // A booted or staged deployment counts even if its entry is not where we looked.
        for id in [booted_or_why.as_ref().ok(), staged.as_ref()]
            .into_iter()
            .flatten()
        {
            if !ids.contains(id) && is_dir(&format!("state/deploy/{id}")) {
                ids.push(id.clone());
            }
        }
        let booted = booted_or_why.as_ref().ok();
        let booted_here = booted.filter(|b| ids.contains(b));
        let rollback = booted_here.and_then(|b| {
            ids.iter()
                .find(|i| *i != b && Some(*i) != staged.as_ref())
                .cloned()
        });
        let mut deployments: Vec<Deployment> = ids
            .iter()
            .map(|id| {
                let role = match Some(id) {
                    i if i == staged.as_ref() => Role::Staged,
                    i if i == booted_here => Role::Booted,
                    i if i == rollback.as_ref() => Role::Rollback,
                    _ => Role::Other,
                };
                read_deployment(&dir, &paths, id, role)
            })
            .collect();
        // Stable: the others stay in boot order.
        deployments.sort_by_key(|d| d.role);
        let not_booted = match (&booted_or_why, booted_here) {
            (_, Some(_)) => None,
            (Err(why), _) => Some(why.clone()),
            (Ok(b), None) => Some(format!(
                "the booted composefs image {} is not a deployment of {}",
                short_hex(b),
                sysroot.display()
            )),
        };
        Ok(Host {
            paths,
            deployments,
            not_booted,
            warnings,
        })
    }

    /// The deployment with a role, if there is one.
    pub fn with_role(&self, role: Role) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.role == role)
    }

    /// The booted deployment, or why there is none.
    pub fn booted(&self) -> Result<&Deployment> {
        self.with_role(Role::Booted).ok_or_else(|| {
            anyhow::anyhow!(
                "No booted deployment: {}",
                self.not_booted
                    .as_deref()
                    .unwrap_or("no deployment is booted")
            )
        })
    }

    /// `--deployment D`: a role keyword or a deployment ID (unique prefix of at least 8 hex).
    pub fn deployment(&self, wanted: &str) -> Result<&Deployment> {
        if let Some(role) = Role::from_keyword(wanted) {
            if role == Role::Booted {
                return self.booted();
            }
            return self.with_role(role).ok_or_else(|| {
                anyhow::anyhow!(
                    "There is no {role} deployment on {}; deployments: {}",
                    self.paths.sysroot.display(),
                    self.summary()
                )
            });
        }
        let hex = wanted.to_ascii_lowercase();
        if hex.len() < 8 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!(crate::UsageError(format!(
                "--deployment takes booted, staged, rollback or a deployment ID (at least 8 hex digits), not {wanted:?}"
            )));
        }
        let found: Vec<&Deployment> = self
            .deployments
            .iter()
            .filter(|d| d.id.starts_with(&hex))
            .collect();
        match found.as_slice() {
            [one] => Ok(one),
            [] => bail!(
                "No deployment {wanted} on {}; deployments: {}",
                self.paths.sysroot.display(),
                self.summary()
            ),
            _ => bail!(
                "Deployment ID prefix {wanted} is ambiguous; deployments: {}",
                self.summary()
            ),
        }
    }

    /// Deployments whose image name is `selector` (a transport prefix is
    /// ignored, as bootc does), in bootc's order: staged, booted, rollback, others.
    pub fn by_name(&self, selector: &str) -> Vec<&Deployment> {
        let (_, name) = split_transport(selector);
        let with_latest = (!has_tag_or_digest(name)).then(|| format!("{name}:latest"));
        self.deployments
            .iter()
            .filter(|d| {
                d.image.as_ref().is_some_and(|i| {
                    i.name == name || with_latest.as_deref() == Some(i.name.as_str())
                })
            })
            .collect()
    }

    /// A selector that can only mean a deployment: a role keyword or a
    /// reference with a transport prefix.
    pub fn is_host_selector(selector: &str) -> bool {
        Role::from_keyword(selector).is_some() || !split_transport(selector).0.is_empty()
    }

    /// The deployment an IMAGE selector names (a role keyword, or an image
    /// name: the first in bootc's order) and the other deployments the name
    /// also matched. `Ok(None)` when it names no deployment.
    pub fn choose(&self, selector: &str) -> Result<Option<(&Deployment, Vec<&Deployment>)>> {
        if Role::from_keyword(selector).is_some() {
            return Ok(Some((self.deployment(selector)?, Vec::new())));
        }
        Ok(self
            .by_name(selector)
            .split_first()
            .map(|(first, rest)| (*first, rest.to_vec())))
    }

    /// A deployment's origin file.
    pub fn origin_path(&self, id: &str) -> PathBuf {
        self.paths
            .deploy_dir()
            .join(id)
            .join(format!("{id}.origin"))
    }

    /// `booted 3f2a… quay.io/x:1, staged …` for messages.
    pub fn summary(&self) -> String {
        if self.deployments.is_empty() {
            return "none".into();
        }
        self.deployments
            .iter()
            .map(|d| {
                format!(
                    "{} {} {}",
                    d.role,
                    short_hex(&d.id),
                    d.image.as_ref().map_or("(no image)", |i| i.name.as_str())
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

mod boot;
mod origin;
mod read;
#[cfg(test)]
mod tests;
