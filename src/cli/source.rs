//! Where images come from: the repository and, on a bootc host, its
//! deployments; what copy-to-storage takes by default and where it puts it.

use anyhow::{bail, Result};
use composefs_export::deliver::transport::ImageLocation;
use composefs_export::export::ImageSelection;
use composefs_export::host::{self, Host, HostPaths};
use composefs_export::repo::image;
use composefs_export::repo::{self, RepoLocation};
use composefs_export::{with_repo, UsageError};

use super::Cli;

/// Where the repository is, and the bootc host whose deployments name its images.
pub(super) struct Source {
    pub(super) location: RepoLocation,
    pub(super) host: Option<Host>,
}

/// Test hook: where the host's kernel command line, mount table and `/run`
/// are read from (`CFS_EXPORT_CMDLINE`, `CFS_EXPORT_MOUNTINFO`, `CFS_EXPORT_RUN`).
fn host_paths(sysroot: &std::path::Path) -> HostPaths {
    let mut paths = HostPaths::running(sysroot);
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(p) = var("CFS_EXPORT_CMDLINE") {
        paths.cmdline = p.into();
    }
    if let Some(p) = var("CFS_EXPORT_MOUNTINFO") {
        paths.mountinfo = p.into();
    }
    if let Some(p) = var("CFS_EXPORT_RUN") {
        paths.run = p.into();
    }
    paths
}

impl Source {
    /// `--sysroot DIR` must be a bootc sysroot, and its composefs/ is the
    /// default repository. Without it, /sysroot's deployments count only when
    /// the repository is /sysroot/composefs.
    pub(super) fn from_cli(cli: &Cli) -> Result<Source> {
        let explicit_repo = cli.repo.repo.is_some() || cli.repo.system || cli.repo.user;
        if let Some(dir) = &cli.sysroot {
            let host = Host::load(host_paths(dir))?;
            let location = if explicit_repo {
                cli.repo.location()
            } else {
                RepoLocation::Path(host.paths.repository_beneath()?)
            };
            return Ok(Source {
                location,
                host: Some(host),
            });
        }
        let location = cli.repo.location();
        let default = std::path::Path::new(host::DEFAULT_SYSROOT);
        let paths = host_paths(default);
        let is_hosts_repo = match (location.path(), paths.repository().canonicalize()) {
            (Ok(repo), Ok(hosts)) => repo.canonicalize().is_ok_and(|r| r == hosts),
            _ => false,
        };
        let host = if is_hosts_repo && default.join("state/deploy").is_dir() {
            Some(Host::load(paths)?)
        } else {
            None
        };
        Ok(Source { location, host })
    }

    /// copy-to-storage without an image: the booted deployment's; off a
    /// composefs boot, the only image (or say which there are).
    pub(super) fn default_image(&self) -> Result<ImageSelection> {
        if let Some(host) = &self.host {
            if host.booted().is_ok() {
                return Ok(ImageSelection::Deployment("booted".into()));
            }
        }
        match only_image(&self.location) {
            Ok(one) => Ok(ImageSelection::Named(vec![one])),
            // On a host that did not boot from composefs this is its state,
            // not a mistake in the call: exit 1, with the deployments named.
            Err(e) => match &self.host {
                Some(h) if h.not_booted.is_some() => Err(anyhow::anyhow!(
                    "No image given, and {}: {e:#}; bootc deployments: {}",
                    h.not_booted.as_deref().unwrap_or_default(),
                    h.summary()
                )),
                _ => Err(e),
            },
        }
    }
}

/// Say which deployment a selector picked (stderr, so --json stays one document).
pub(super) fn tell_deployment_choices<'a>(
    choices: impl Iterator<Item = &'a host::DeploymentChoice>,
    quiet: bool,
) {
    for c in choices {
        if !quiet || !c.also_matched.is_empty() {
            tell!("note: {c}");
        }
    }
}

/// Say what was skipped reading the bootc host (`list` tells it with its other problems).
pub(super) fn tell_host_warnings(source: &Source, quiet: bool) {
    if quiet {
        return;
    }
    for w in source.host.iter().flat_map(|h| &h.warnings) {
        tell!("warning: {}", super::print::one_line(w));
    }
}

/// The one image in the repository, for commands where IMAGE may be omitted.
fn only_image(location: &RepoLocation) -> Result<String> {
    let repo = repo::open(location)?;
    let catalog = with_repo!(&repo, r => image::catalog(r))?;
    match (catalog.images.as_slice(), catalog.damaged.as_slice()) {
        ([], [damaged]) => bail!("{damaged}"),
        ([one], []) => Ok(one
            .manifest_digest
            .as_ref()
            .unwrap_or(&one.config_digest)
            .to_string()),
        ([], []) => bail!("The repository holds no container images"),
        (many, damaged) => bail!(UsageError(format!(
            "The repository holds {} images; name one: {}",
            many.len() + damaged.len(),
            many.iter()
                .map(|e| e.to_string())
                .chain(
                    damaged
                        .iter()
                        .map(|d| format!("{} (damaged)", d.display_name()))
                )
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// `--target NAME` of copy-to-storage: `containers-storage:` + NAME, as bootc does.
pub(super) fn storage_target(target: &str) -> Result<ImageLocation> {
    let (transport, _) = host::split_transport(target);
    let reference = match transport {
        "" => format!("containers-storage:{target}"),
        "containers-storage:" => target.to_string(),
        other => bail!(UsageError(format!(
            "copy-to-storage writes to containers-storage, not {other}; use `cfs-export export IMAGE --to {target}`"
        ))),
    };
    ImageLocation::parse(&reference).map_err(|e| UsageError(e.to_string()).into())
}
