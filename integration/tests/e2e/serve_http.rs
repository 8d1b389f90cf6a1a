//! Issue 20: the HTTP details of `cfs-export serve` as curl sees them
//! (headers, ranges, listings, `?ns=`, the spec's JSON errors), and SIGTERM
//! while responses run.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use integration::fixture::{self, sha256, TarBuilder};
use integration::run;

use super::serve::{
    os_tars, same_path_other_registry, with_noise, Image, Serve, QUALIFIED, SERVED, TAGGED,
};

/// One `curl -i` exchange: status, headers (lowercase names) and body.
struct Exchange {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    transcript: String,
}

impl Exchange {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `errors[0].code` of a JSON error body.
    fn error_code(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// `curl -sS -i [-X METHOD] [-H HEADER…] http://ADDR/PATH`.
fn curl(serve: &Serve, method: &str, path: &str, headers: &[&str]) -> Result<Exchange> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "-X", method]);
    if method == "HEAD" {
        cmd.arg("-I");
    }
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = run(cmd.arg(format!("http://{}{path}", serve.addr)))?.stdout;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no header end")?;
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let body = out[split + 4..].to_vec();
    let mut lines = head.lines();
    let status_line = lines.next().context("status line")?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("status line {status_line:?}"))?;
    let response_headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let shown = if body.len() <= 300 && body.is_ascii() {
        String::from_utf8_lossy(&body).to_string()
    } else {
        format!("<{} bytes>", body.len())
    };
    let transcript = format!(
        "$ curl -i -X {method} {}{path}\n{head}\n\n{shown}\n",
        headers
            .iter()
            .map(|h| format!("-H '{h}' "))
            .collect::<String>()
    );
    Ok(Exchange {
        status,
        headers: response_headers,
        body,
        transcript,
    })
}

/// The HTTP details clients rely on, with curl: headers of manifests and
/// blobs, ranges (206, 416), paginated `tags/list` with `Link`, `_catalog`,
/// the spec's JSON errors, 405 for writes, the empty referrers index.
pub fn http_details_with_curl() -> Result<()> {
    let t = tempfile::tempdir()?;
    let img = Image::reproducible(t.path(), &os_tars(), &[TAGGED, "quay.io/demo/os:2"])?;
    let other = same_path_other_registry(&img, "other.example")?;
    let serve = Serve::start(&img, &["--anonymous"])?;
    let mut transcript = String::new();
    let mut check = |method: &str,
                     path: &str,
                     headers: &[&str],
                     status: u16,
                     f: &dyn Fn(&Exchange) -> Result<()>|
     -> Result<()> {
        let x = curl(&serve, method, path, headers)?;
        transcript.push_str(&x.transcript);
        ensure!(x.status == status, "want {status}:\n{}", x.transcript);
        f(&x).with_context(|| x.transcript.clone())
    };
    let m = &img.manifest_digest;
    let (layer, blob) = &img.blobs[0];
    let n = blob.len();
    let result = (|| -> Result<()> {
        check("GET", "/v2/", &[], 200, &|x| {
            ensure!(x.header("docker-distribution-api-version") == Some("registry/2.0"));
            Ok(())
        })?;
        check(
            "HEAD",
            &format!("/v2/{QUALIFIED}/manifests/1"),
            &["Accept: application/vnd.oci.image.manifest.v1+json"],
            200,
            &|x| {
                ensure!(x.header("docker-content-digest") == Some(m.as_str()));
                ensure!(
                    x.header("content-type") == Some("application/vnd.oci.image.manifest.v1+json")
                );
                ensure!(x.header("content-length") == Some(&*img.manifest_bytes.len().to_string()));
                Ok(())
            },
        )?;
        check(
            "GET",
            &format!("/v2/{SERVED}/blobs/{layer}"),
            &["Range: bytes=10-19"],
            206,
            &|x| {
                ensure!(x.body == blob[10..20], "range body");
                ensure!(x.header("content-range") == Some(&*format!("bytes 10-19/{n}")));
                ensure!(x.header("accept-ranges") == Some("bytes"));
                ensure!(x.header("docker-content-digest") == Some(layer.as_str()));
                ensure!(x.header("content-encoding").is_none());
                Ok(())
            },
        )?;
        check(
            "GET",
            &format!("/v2/{SERVED}/blobs/{layer}"),
            &["Range: bytes=-7"],
            206,
            &|x| {
                ensure!(x.body == blob[n - 7..], "suffix body");
                ensure!(
                    x.header("content-range") == Some(&*format!("bytes {}-{}/{n}", n - 7, n - 1))
                );
                Ok(())
            },
        )?;
        check(
            "GET",
            &format!("/v2/{SERVED}/blobs/{layer}"),
            &[&format!("Range: bytes={n}-")],
            416,
            &|x| {
                ensure!(x.header("content-range") == Some(&*format!("bytes */{n}")));
                Ok(())
            },
        )?;
        check(
            "GET",
            &format!("/v2/{SERVED}/tags/list?n=1"),
            &[],
            200,
            &|x| {
                ensure!(x.body == br#"{"name":"demo/os","tags":["1"]}"#);
                ensure!(
                    x.header("link")
                        == Some(&*format!(
                            "</v2/{SERVED}/tags/list?n=1&last=1>; rel=\"next\""
                        ))
                );
                Ok(())
            },
        )?;
        check(
            "GET",
            &format!("/v2/{SERVED}/tags/list?n=1&last=1"),
            &[],
            200,
            &|x| {
                ensure!(x.body == br#"{"name":"demo/os","tags":["2"]}"#);
                ensure!(x.header("link").is_none());
                Ok(())
            },
        )?;
        check("GET", "/v2/_catalog", &[], 200, &|x| {
            ensure!(
                x.body
                    == br#"{"repositories":["demo/os","other.example/demo/os","quay.io/demo/os"]}"#
            );
            Ok(())
        })?;
        // Two registries' images served as demo/os:1: containerd's ?ns= chooses.
        for (ns, want) in [("other.example", &other), ("quay.io", m)] {
            check(
                "HEAD",
                &format!("/v2/{SERVED}/manifests/1?ns={ns}"),
                &[],
                200,
                &|x| {
                    ensure!(x.header("docker-content-digest") == Some(want.as_str()));
                    Ok(())
                },
            )?;
        }
        // Without ?ns= the short name is ambiguous: refused, never guessed.
        check(
            "GET",
            &format!("/v2/{SERVED}/manifests/1"),
            &[],
            404,
            &|x| {
                ensure!(x.error_code() == "MANIFEST_UNKNOWN");
                let body = String::from_utf8_lossy(&x.body);
                ensure!(
                    body.contains("other.example") && body.contains("quay.io"),
                    "{body}"
                );
                Ok(())
            },
        )?;
        check("GET", "/v2/nosuch/os/manifests/1", &[], 404, &|x| {
            ensure!(x.error_code() == "NAME_UNKNOWN");
            ensure!(x.header("content-type") == Some("application/json"));
            Ok(())
        })?;
        check(
            "GET",
            &format!("/v2/{SERVED}/manifests/3"),
            &[],
            404,
            &|x| {
                ensure!(x.error_code() == "MANIFEST_UNKNOWN");
                Ok(())
            },
        )?;
        check(
            "GET",
            &format!("/v2/{SERVED}/blobs/sha256:{}", "0".repeat(64)),
            &[],
            404,
            &|x| {
                ensure!(x.error_code() == "BLOB_UNKNOWN");
                Ok(())
            },
        )?;
        check(
            "GET",
            &format!("/v2/{SERVED}/blobs/sha256:xyz"),
            &[],
            400,
            &|x| {
                ensure!(x.error_code() == "DIGEST_INVALID");
                Ok(())
            },
        )?;
        for (method, path) in [
            ("DELETE", format!("/v2/{SERVED}/manifests/{m}")),
            ("PUT", format!("/v2/{SERVED}/manifests/1")),
            ("POST", format!("/v2/{SERVED}/blobs/uploads/")),
        ] {
            check(method, &path, &[], 405, &|x| {
                ensure!(x.error_code() == "UNSUPPORTED");
                Ok(())
            })?;
        }
        check(
            "GET",
            &format!("/v2/{SERVED}/referrers/{m}"),
            &[],
            200,
            &|x| {
                let v: serde_json::Value = serde_json::from_slice(&x.body)?;
                ensure!(v["manifests"] == serde_json::json!([]) && v["schemaVersion"] == 2);
                ensure!(
                    x.header("content-type") == Some("application/vnd.oci.image.index.v1+json")
                );
                Ok(())
            },
        )?;
        Ok(())
    })();
    result.with_context(|| format!("exchanges so far:\n{transcript}"))
}

/// A `Range` on a reproduced pgzip layer, after a cut or a whole response of it,
/// starts at a restart point inside the blob (the `blocks` log line says
/// where), not at byte 0, and sends exactly the blob's bytes from there.
pub fn ranges_resume_reproduced_pgzip_at_a_block() -> Result<()> {
    let t = tempfile::tempdir()?;
    let (img, _) = with_noise(t.path(), 24 << 20, 43)?;
    let serve = Serve::start(&img, &["--anonymous"])?;
    let (layer, blob) = img
        .blobs
        .iter()
        .max_by_key(|(_, b)| b.len())
        .context("no layers")?;
    let path = format!("/v2/{SERVED}/blobs/{layer}");
    // A pull cut after 12 MiB, resumed there: it restarts at a point the
    // cut response passed.
    let cut = 12usize << 20;
    let url = format!("http://{}{path}", serve.addr);
    let got = run(Command::new("sh").args([
        "-c",
        &format!("curl -sS '{url}' 2>/dev/null | head -c {cut}"),
    ]))?
    .stdout;
    ensure!(
        got == blob[..cut],
        "the cut response is not the blob's start"
    );
    let resumed = curl(&serve, "GET", &path, &[&format!("Range: bytes={cut}-")])?;
    ensure!(resumed.status == 206, "{}", resumed.transcript);
    ensure!(
        resumed.body == blob[cut..],
        "the resumed pull is not the blob's rest"
    );
    let at = restarted_at(&serve, layer, cut)?;
    ensure!(at > 0 && at <= cut as u64, "resumed at {cut} from {at}");
    let started = Instant::now();
    let whole = curl(&serve, "GET", &path, &[])?;
    let whole_took = started.elapsed();
    ensure!(
        whole.status == 200 && whole.body == *blob,
        "{}",
        whole.transcript
    );
    // The last MiB and a bit, as a client resuming a cut pull asks.
    let n = blob.len();
    let first = n - (1 << 20) - 12345;
    let started = Instant::now();
    let part = curl(&serve, "GET", &path, &[&format!("Range: bytes={first}-")])?;
    let part_took = started.elapsed();
    ensure!(part.status == 206, "{}", part.transcript);
    ensure!(
        part.header("content-range") == Some(&*format!("bytes {first}-{}/{n}", n - 1)),
        "{}",
        part.transcript
    );
    ensure!(
        part.body == blob[first..],
        "the range is not the blob's tail"
    );
    let at = restarted_at(&serve, layer, first)?;
    ensure!(
        at > 0 && at <= first as u64 && first as u64 - at < 10 << 20,
        "restarted at {at} for {first}"
    );
    eprintln!(
        "{n} byte pgzip layer: whole {whole_took:.2?}; bytes={first}- {part_took:.2?}, restarted at blob byte {at}"
    );
    Ok(())
}

/// The blob offset the response of `layer` from byte `first` restarted at,
/// as its `blocks` log line says.
fn restarted_at(serve: &Serve, layer: &str, first: usize) -> Result<u64> {
    let log = serve.log_text();
    let said = format!("{layer}: bytes from {first} restart at block ");
    let line = log
        .lines()
        .find(|l| l.contains(&said))
        .with_context(|| format!("no restart logged for {first}; log:\n{log}"))?;
    line.split_once(&said)
        .and_then(|(_, rest)| {
            rest.split_once(" (")?
                .1
                .split_once(" bytes into")?
                .0
                .parse()
                .ok()
        })
        .with_context(|| format!("restart line {line:?}"))
}

/// Bytes in `path` so far (0 if it is not there yet).
fn size_of(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// SIGTERM while two rate-limited clients read layers: the listener closes
/// at once, the response that can finish within the grace does, the one
/// that cannot is cut at the grace, serve exits 0 and the port is closed.
pub fn sigterm_mid_pull() -> Result<()> {
    let t = tempfile::tempdir()?;
    let big = TarBuilder::new()
        .file("big", &fixture::noise(32 << 20, 51))
        .finish(false);
    let small = TarBuilder::new()
        .file("small", &fixture::noise(3 << 20, 52))
        .finish(false);
    let img = Image::plain(t.path(), &[big, small], &[TAGGED])?;
    let mut serve = Serve::start(&img, &["--anonymous"])?;
    let fetch = |i: usize, rate: &str| -> Result<(Child, PathBuf)> {
        let out = t.path().join(format!("blob{i}"));
        let child = Command::new("curl")
            .args(["-sS", "--fail", "--limit-rate", rate, "-o"])
            .arg(&out)
            .arg(format!(
                "http://{}/v2/{SERVED}/blobs/{}",
                serve.addr, img.blobs[i].0
            ))
            .stderr(Stdio::piped())
            .spawn()?;
        Ok((child, out))
    };
    // 32 MiB at 512 KiB/s cannot finish within 10 s (even with socket buffers
    // full); 3 MiB can.
    let (cut, cut_out) = fetch(0, "512K")?;
    let (mut whole, whole_out) = fetch(1, "1M")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while size_of(&cut_out) == 0 || size_of(&whole_out) == 0 {
        ensure!(Instant::now() < deadline, "the pulls did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let addr = serve.addr.clone();
    let prober = std::thread::spawn(move || {
        // Soon after the signal, a new connection is refused.
        std::thread::sleep(Duration::from_millis(500));
        TcpStream::connect(&addr).is_err()
    });
    let (status, took) = serve.signal_and_wait("TERM", Duration::from_secs(20))?;
    let refused_during_grace = prober.join().map_err(|_| anyhow::anyhow!("prober"))?;
    let log = serve.log_text();
    ensure!(status.code() == Some(0), "serve exited {status}: {log}");
    ensure!(
        took >= Duration::from_secs(8) && took <= Duration::from_secs(12),
        "serve exited {took:.2?} after SIGTERM with a response still running; the grace is 10 s: {log}"
    );
    ensure!(
        refused_during_grace,
        "a new connection was accepted during the grace"
    );
    ensure!(
        TcpStream::connect(&serve.addr).is_err(),
        "port still open after exit"
    );

    let whole_status = whole.wait()?;
    ensure!(
        whole_status.success(),
        "the response within the grace failed: {whole_status}"
    );
    ensure!(
        sha256(&std::fs::read(&whole_out)?) == img.blobs[1].0,
        "the response within the grace is not the blob"
    );
    let cut_status = cut.wait_with_output()?;
    let got = size_of(&cut_out);
    ensure!(
        !cut_status.status.success() && got < img.blobs[0].1.len() as u64,
        "the response past the grace: {} with {got} bytes",
        cut_status.status
    );
    eprintln!(
        "SIGTERM: {status} after {took:.2?}; cut response at {got} of {} bytes ({})",
        img.blobs[0].1.len(),
        String::from_utf8_lossy(&cut_status.stderr).trim()
    );
    Ok(())
}
