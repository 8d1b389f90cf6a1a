//! The commands and their options, as clap parses them: each command takes
//! only the options that apply to it, and its `--help` ends with examples.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use composefs_export::compress::{Compression, CompressionChoice};
use composefs_export::deliver::{StorageOptions, TransferOptions};
use composefs_export::export::ImageSelection;

use super::serve;

#[derive(Debug, Subcommand)]
pub(super) enum Command {
    /// List the images in the repository.
    #[command(after_help = "Examples:
  cfs-export list
  cfs-export --repo /sysroot/composefs list --json")]
    List,
    /// Export images (OCI layout or archive, containers-storage, registry, …), bit-exact, image ID kept.
    #[command(after_help = "Examples:
  cfs-export export quay.io/fedora/fedora-bootc:42 --to oci:/var/tmp/out
  cfs-export export 3f2a9c1b7d4e --to oci:/var/tmp/out:mytag --compression zstd
  cfs-export export --deployment booted --to oci-archive:/var/tmp/booted.tar
  cfs-export export myapp:1 --to docker://registry.example:5000/myapp:1 --creds-file ~/.creds")]
    Export(ExportArgs),
    /// Copy an image into containers-storage (podman), as `bootc image copy-to-storage`.
    #[command(after_help = "Examples:
  cfs-export copy-to-storage
  cfs-export copy-to-storage quay.io/fedora/fedora-bootc:42 --target localhost/fedora-bootc
  cfs-export copy-to-storage --deployment staged --compression original")]
    CopyToStorage(CopyToStorageArgs),
    /// Rebuild every layer and check it against its diff_id; name damaged objects. Writes nothing.
    #[command(after_help = "Examples:
  cfs-export verify --all
  cfs-export verify quay.io/fedora/fedora-bootc:42 --json")]
    Verify(VerifyArgs),
    /// Print the man page (roff) on stdout, or write all pages into a directory.
    #[command(after_help = "Examples:
  cfs-export man > cfs-export.1 && man -l cfs-export.1
  cfs-export man --dir /usr/local/share/man/man1")]
    Man {
        /// Write cfs-export.1 and one page per command (cfs-export-export.1, …) here.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Print shell completions on stdout.
    #[command(after_help = "Example:
  source <(cfs-export completions bash)")]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Serve the repository's images as a read-only OCI registry (pulls by podman, skopeo, containerd, composefs-oci).
    #[command(after_help = "Examples:
  cfs-export serve --anonymous
  cfs-export serve --listen 0.0.0.0:5000 --insecure-http --htpasswd /etc/cfs-export/htpasswd
  kill -HUP $(pidof cfs-export)    # read the htpasswd file and the repository again

Signals: SIGINT/SIGTERM stop (running responses get 10 s); SIGHUP reloads the users and the images.")]
    Serve(serve::ServeArgs),
    /// Import an OCI layout or archive into the repository (blobs verified first).
    #[command(after_help = "Examples:
  cfs-export --repo ./repo import oci:./layout:latest --tag demo:latest
  cfs-export --repo ./repo import oci-archive:./image.tar --platform linux/arm64")]
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub(super) struct ExportArgs {
    /// Images: tag, manifest or config digest, image-ID prefix (≥ 12 hex); on a
    /// bootc host also an image name from a deployment or booted/staged/rollback.
    #[arg(required_unless_present_any = ["all", "deployment"], conflicts_with_all = ["all", "deployment"])]
    pub(super) images: Vec<String>,
    /// Export every image in the repository.
    #[arg(long, conflicts_with = "deployment")]
    pub(super) all: bool,
    /// The image of a bootc deployment: booted, staged, rollback or a deployment ID.
    #[arg(long, value_name = "D")]
    pub(super) deployment: Option<String>,
    /// Destination: oci:DIR[:TAG], oci-archive:FILE[:TAG], containers-storage:REF,
    /// docker://REF, docker-archive:FILE[:REF] or dir:DIR.
    #[arg(long, value_name = "DEST")]
    pub(super) to: String,
    /// Ref name in the destination (default: the image's tag in the repository).
    #[arg(long)]
    pub(super) tag: Option<String>,
    /// none, gzip[:1-9], zstd[:1-19], or original: each layer's original
    /// bytes where reproducible, else its original kind (the default; into
    /// containers-storage the default is none, see copy-to-storage).
    #[arg(long, value_name = "KIND")]
    pub(super) compression: Option<CompressionChoice>,
    /// Layers rebuilt in parallel (default: number of cores).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub(super) jobs: Option<u16>,
    #[command(flatten)]
    pub(super) registry: RegistryArgs,
    #[command(flatten)]
    pub(super) storage: StorageArgs,
    #[command(flatten)]
    pub(super) handoff: HandoffArgs,
}

/// Options of a registry destination (`docker://`), passed to skopeo.
#[derive(Debug, Args)]
#[command(next_help_heading = "Registry destinations")]
pub(super) struct RegistryArgs {
    /// Registry auth file passed to skopeo (--dest-authfile).
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// Require HTTPS and verify certificates for the destination registry.
    #[arg(long, value_name = "BOOL")]
    dest_tls_verify: Option<bool>,
    /// File holding user:password for the destination registry (never put on a command line).
    #[arg(long, value_name = "FILE")]
    creds_file: Option<PathBuf>,
}

/// Where a containers-storage destination keeps its data.
#[derive(Debug, Args)]
#[command(next_help_heading = "containers-storage destinations")]
pub(super) struct StorageArgs {
    /// containers-storage driver (e.g. overlay, vfs).
    #[arg(long, value_name = "DRIVER")]
    storage_driver: Option<String>,
    /// containers-storage graph root.
    #[arg(long, value_name = "DIR")]
    storage_root: Option<PathBuf>,
    /// containers-storage run root.
    #[arg(long, value_name = "DIR")]
    storage_runroot: Option<PathBuf>,
}

/// How the image is handed to skopeo (every destination but oci: and oci-archive:).
#[derive(Debug, Args)]
#[command(next_help_heading = "Hand-off to skopeo")]
pub(super) struct HandoffArgs {
    /// Temporary data: skopeo's copies of the blobs when streaming into
    /// containers-storage (default: the storage's tmp/); our credential
    /// and policy when streaming elsewhere (default: $XDG_RUNTIME_DIR, else
    /// /dev/shm); the private layout with --via-layout (default: $TMPDIR,
    /// else /var/tmp).
    #[arg(long, value_name = "DIR")]
    tmpdir: Option<PathBuf>,
    /// Export to a private OCI layout and copy from it, instead of streaming
    /// the image to skopeo.
    #[arg(long)]
    via_layout: bool,
}

/// The transfer options from a command's flags (no registry flags: none given).
pub(super) fn transfer_options(
    registry: Option<&RegistryArgs>,
    storage: &StorageArgs,
    handoff: &HandoffArgs,
) -> TransferOptions {
    TransferOptions {
        authfile: registry.and_then(|r| r.authfile.clone()),
        dest_tls_verify: registry.and_then(|r| r.dest_tls_verify),
        creds_file: registry.and_then(|r| r.creds_file.clone()),
        storage: StorageOptions {
            driver: storage.storage_driver.clone(),
            root: storage.storage_root.clone(),
            runroot: storage.storage_runroot.clone(),
        },
        tmpdir: handoff.tmpdir.clone(),
        via_layout: handoff.via_layout,
    }
}

#[derive(Debug, Args)]
pub(super) struct CopyToStorageArgs {
    /// The image (default: the booted deployment's, else the only image in the repository).
    #[arg(conflicts_with_all = ["source", "deployment"])]
    pub(super) image: Option<String>,
    /// The image, as bootc spells it: TRANSPORT:NAME (e.g. docker://quay.io/x/y:tag) or any IMAGE.
    #[arg(long, value_name = "IMAGE", conflicts_with = "deployment")]
    pub(super) source: Option<String>,
    /// The image of a bootc deployment: booted, staged, rollback or a deployment ID.
    #[arg(long, value_name = "D")]
    pub(super) deployment: Option<String>,
    /// The name in containers-storage (containers-storage: is implied).
    #[arg(long, default_value = "localhost/bootc")]
    pub(super) target: String,
    /// none: layers handed over uncompressed, the fastest (the image ID is
    /// kept, the manifest is new); original: the original compressed bytes
    /// reproduced, so the storage records the original manifest digest too.
    #[arg(long, value_name = "KIND", default_value = "none", value_parser = storage_compression)]
    pub(super) compression: CompressionChoice,
    /// Layers rebuilt in parallel (default: number of cores).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub(super) jobs: Option<u16>,
    #[command(flatten)]
    pub(super) storage: StorageArgs,
    #[command(flatten)]
    pub(super) handoff: HandoffArgs,
}

#[derive(Debug, Args)]
pub(super) struct VerifyArgs {
    /// Images: tag, digest, image-ID prefix, deployment image name or booted/staged/rollback.
    #[arg(required_unless_present_any = ["all", "deployment"], conflicts_with_all = ["all", "deployment"])]
    pub(super) images: Vec<String>,
    /// Verify every image in the repository.
    #[arg(long, conflicts_with = "deployment")]
    pub(super) all: bool,
    /// The image of a bootc deployment: booted, staged, rollback or a deployment ID.
    #[arg(long, value_name = "D")]
    pub(super) deployment: Option<String>,
}

/// `--all`, `--deployment D`, or the IMAGE arguments.
pub(super) fn selection(
    all: bool,
    deployment: &Option<String>,
    images: &[String],
) -> ImageSelection {
    match deployment {
        Some(d) => ImageSelection::Deployment(d.clone()),
        None => ImageSelection::from_args(all, images),
    }
}

#[derive(Debug, Args)]
pub(super) struct ImportArgs {
    /// Source: oci:DIR[:TAG] or oci-archive:FILE[:TAG].
    pub(super) source: String,
    /// Tag in the repository (default: the source's ref name).
    #[arg(long)]
    pub(super) tag: Option<String>,
    /// os/arch[/variant] to pick from a multi-platform index.
    #[arg(long)]
    pub(super) platform: Option<String>,
}

/// copy-to-storage's `--compression`: none or original only.
fn storage_compression(s: &str) -> Result<CompressionChoice, String> {
    match s.parse::<CompressionChoice>() {
        Ok(c @ (CompressionChoice::Original | CompressionChoice::Fixed(Compression::Uncompressed))) => Ok(c),
        _ => Err("expected none or original (containers-storage unpacks layers: none is the fastest, original keeps the manifest digest)".to_string()),
    }
}
