//! The one place that runs `skopeo`: stdin null, stderr captured into our
//! error, killed when the export is cancelled, binary from `$SKOPEO` or PATH.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result};

/// Environment variable naming the skopeo binary to run.
pub const SKOPEO_ENV: &str = "SKOPEO";

/// Most of skopeo's stderr we keep in an error message.
const STDERR_TAIL: usize = 4000;

/// skopeo exited non-zero.
#[derive(Debug, thiserror::Error)]
#[error("skopeo {} failed ({status}): {stderr}", .args.join(" "))]
pub struct SkopeoFailed {
    /// Arguments (never holding credentials: those go through an auth file).
    pub args: Vec<String>,
    /// Exit status.
    pub status: std::process::ExitStatus,
    /// The end of its stderr.
    pub stderr: String,
}

/// The skopeo binary: `$SKOPEO`, else `skopeo` on PATH.
pub fn binary() -> PathBuf {
    std::env::var_os(SKOPEO_ENV)
        .filter(|s| !s.is_empty())
        .map_or_else(|| PathBuf::from("skopeo"), PathBuf::from)
}

/// How `skopeo copy` treats the destination.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// `--preserve-digests`: what lands must be exactly the blobs given
    /// (else skopeo may recompress or substitute cached blobs).
    pub preserve_digests: bool,
    /// `--dest-tls-verify`.
    pub dest_tls_verify: Option<bool>,
    /// `--dest-authfile` (a user's auth file, or our 0600 one from a creds file).
    pub dest_authfile: Option<PathBuf>,
    /// `--src-tls-verify` (false for our own server on 127.0.0.1).
    pub src_tls_verify: Option<bool>,
    /// `--src-authfile`: our 0600 auth file for our own server.
    pub src_authfile: Option<PathBuf>,
    /// skopeo's `--tmpdir`: where it keeps its copy of each blob until the copy ends.
    pub tmpdir: Option<PathBuf>,
    /// skopeo's `--policy`: a signature policy accepting our own source, so
    /// the copy does not depend on the host's (it governs only the source).
    pub policy: Option<PathBuf>,
}

/// `skopeo copy --quiet [options] oci:LAYOUT:TAG DEST`.
pub async fn copy_from_layout(
    layout: &Path,
    tag: &str,
    dest: &str,
    options: &CopyOptions,
) -> Result<()> {
    let mut source = OsString::from("oci:");
    source.push(layout);
    source.push(format!(":{tag}"));
    run(&copy_args(&source, dest, options)).await
}

/// `skopeo copy --quiet [options] SOURCE DEST` for any source reference.
pub async fn copy(source: &str, dest: &str, options: &CopyOptions) -> Result<()> {
    run(&copy_args(source.as_ref(), dest, options)).await
}

fn copy_args(source: &std::ffi::OsStr, dest: &str, options: &CopyOptions) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    if let Some(dir) = &options.tmpdir {
        args.push("--tmpdir".into());
        args.push(dir.into());
    }
    if let Some(file) = &options.policy {
        args.push("--policy".into());
        args.push(file.into());
    }
    args.extend(["copy".into(), "--quiet".into()]);
    if let Some(v) = options.src_tls_verify {
        args.push(format!("--src-tls-verify={v}").into());
    }
    if let Some(file) = &options.src_authfile {
        args.push("--src-authfile".into());
        args.push(file.into());
    }
    if options.preserve_digests {
        args.push("--preserve-digests".into());
    }
    if let Some(v) = options.dest_tls_verify {
        args.push(format!("--dest-tls-verify={v}").into());
    }
    if let Some(file) = &options.dest_authfile {
        args.push("--dest-authfile".into());
        args.push(file.into());
    }
    args.push(source.into());
    args.push(dest.into());
    args
}

/// Find `name` on PATH (or check it, when it is a path).
fn resolve(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 {
        return name.is_file().then(|| name.to_path_buf());
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The command that runs skopeo. Through util-linux's `setpriv
/// --pdeathsig KILL` when there is one, so that the kernel stops skopeo if
/// we are killed outright (SIGKILL leaves no chance to do it ourselves).
fn command(bin: &Path) -> tokio::process::Command {
    match (resolve(Path::new("setpriv")), resolve(bin)) {
        (Some(setpriv), Some(skopeo)) => {
            let mut cmd = tokio::process::Command::new(setpriv);
            cmd.args(["--pdeathsig", "KILL", "--"]).arg(skopeo);
            cmd
        }
        _ => tokio::process::Command::new(bin),
    }
}

/// Run `skopeo ARGS…` to completion.
///
/// Dropping the returned future (cancellation) kills skopeo.
pub async fn run(args: &[OsString]) -> Result<()> {
    let bin = binary();
    let printable: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    tracing::info!("running {} {}", bin.display(), printable.join(" "));
    let child = command(&bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "{} not found: install skopeo (apt-get install skopeo, dnf install skopeo) or point ${SKOPEO_ENV} at it",
            bin.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("Starting {}", bin.display())),
    };
    let out = child
        .wait_with_output()
        .await
        .with_context(|| format!("Waiting for {}", bin.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stderr = stderr.trim();
    let tail = match stderr.char_indices().nth_back(STDERR_TAIL) {
        Some((i, _)) => format!("…{}", &stderr[i..]),
        None => stderr.to_string(),
    };
    Err(SkopeoFailed {
        args: printable,
        status: out.status,
        stderr: tail,
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_arguments() {
        let all = CopyOptions {
            preserve_digests: true,
            dest_tls_verify: Some(false),
            dest_authfile: Some("/run/auth.json".into()),
            src_tls_verify: Some(false),
            src_authfile: Some("/p/src-auth.json".into()),
            tmpdir: Some("/s/tmp".into()),
            policy: Some("/p/policy.json".into()),
        };
        let args = |o: &CopyOptions| -> Vec<String> {
            copy_args("oci:/tmp/l:t".as_ref(), "docker://h/x:1", o)
                .into_iter()
                .map(|a| a.into_string().unwrap())
                .collect()
        };
        assert_eq!(
            args(&all),
            [
                "--tmpdir",
                "/s/tmp",
                "--policy",
                "/p/policy.json",
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                "--src-authfile",
                "/p/src-auth.json",
                "--preserve-digests",
                "--dest-tls-verify=false",
                "--dest-authfile",
                "/run/auth.json",
                "oci:/tmp/l:t",
                "docker://h/x:1"
            ]
        );
        assert_eq!(
            args(&CopyOptions::default()),
            ["copy", "--quiet", "oci:/tmp/l:t", "docker://h/x:1"]
        );
    }
}
