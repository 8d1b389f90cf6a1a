//! Issue 19: the `skopeo` on PATH is skopeo to whoever starts it, also when
//! it is a wrapper running another stack's skopeo (scripts/in-trixie): the
//! same PID, so cfs-export's signals and `--pdeathsig` reach it, and stdout,
//! stderr, exit code and the working directory pass through unchanged.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use integration::fixture::{self, sha256, Kind, TarBuilder};
use integration::run;

/// The name of the program `pid` runs now.
fn exe_name(pid: u32) -> Option<String> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    Some(exe.file_name()?.to_string_lossy().into_owned())
}

/// `skopeo` byte-exact on stdout from a relative path; a failure's exit code
/// and stderr; the PID started is skopeo's, and SIGINT ends it.
pub fn skopeo_runs_in_place_of_its_caller() -> Result<()> {
    let t = tempfile::tempdir()?;
    // A relative path is read from the caller's working directory; the
    // manifest comes out byte for byte.
    let layer = TarBuilder::new().file("f", b"in place\n").finish(false);
    let f = fixture::write_layout(
        &t.path().join("layout"),
        "x",
        "amd64",
        &[(layer, Kind::Gzip)],
    );
    let out = run(Command::new("skopeo").current_dir(t.path()).args([
        "inspect",
        "--raw",
        "oci:layout:x",
    ]))?;
    ensure!(
        sha256(&out.stdout) == f.manifest_digest,
        "stdout is not the manifest: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A failure: its exit code and stderr, nothing on stdout.
    let missing = t.path().join("missing");
    let out = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}", missing.display()))
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(1) && out.stdout.is_empty(),
        "{out:?}"
    );
    ensure!(
        err.contains(&missing.display().to_string()) && err.contains("no such file"),
        "{err}"
    );

    // The PID we started becomes skopeo itself (no process in between), and
    // SIGINT reaches it. A server that never answers keeps it waiting.
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let mut child = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{}/x:1", silent.local_addr()?))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    while exe_name(pid).as_deref() != Some("skopeo") {
        if Instant::now() > deadline || child.try_wait()?.is_some() {
            let last = exe_name(pid);
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("pid {pid} never became skopeo, it runs {last:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    run(Command::new("kill").args(["-INT", &pid.to_string()]))?;
    let status = child.wait()?;
    ensure!(status.signal() == Some(2), "skopeo ended with {status}");
    Ok(())
}
