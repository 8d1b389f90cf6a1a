//! Issue 28: `cfs-export serve` reads its users and the repository anew on
//! SIGHUP (a removed user is refused, a new tag is served, without a
//! restart); a layer whose objects vanished answers an error before any
//! byte; and the small conformance items (percent-encoding, malformed
//! digests, the auth scheme and range unit in any case, the head bound).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use base64::Engine as _;
use integration::run;

use super::serve::{os_tars, Image, Serve, SERVED, TAGGED};

/// One request on a new connection: the status, the headers (lowercase
/// names) and the body; `None` when the server closed without answering.
fn exchange(addr: &str, head: &str) -> Result<Option<(u16, String, Vec<u8>)>> {
    let addr: SocketAddr = addr.parse()?;
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    // A refused head may be cut off before it is all written.
    let _ = s.write_all(head.as_bytes());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let Some(split) = out.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let headers = String::from_utf8_lossy(&out[..split]).to_ascii_lowercase();
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("status")?;
    Ok(Some((status, headers, out[split + 4..].to_vec())))
}

/// `GET PATH` with `extra` header lines, the connection closed after.
fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: r\r\nConnection: close\r\n{extra}\r\n")
}

fn basic(user_password: &str) -> String {
    format!(
        "Authorization: basic {}\r\n",
        base64::engine::general_purpose::STANDARD.encode(user_password)
    )
}

fn htpasswd(file: &std::path::Path, users: &[(&str, &str)]) -> Result<()> {
    let _ = std::fs::remove_file(file);
    for (i, (user, password)) in users.iter().enumerate() {
        let flags = if i == 0 { "-Bbc" } else { "-Bb" };
        run(Command::new("htpasswd")
            .args([flags, "-C", "4"])
            .arg(file)
            .args([user, password]))?;
    }
    Ok(())
}

/// Whether `user:password` may read `name`, as skopeo sees it.
fn inspect(serve: &Serve, creds: &str, name: &str) -> Result<(bool, String)> {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", "--creds", creds])
        .arg(serve.docker(name))
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    ))
}

/// Wait for the `n`th reload line in serve's log.
fn reloaded(serve: &Serve, n: usize) -> Result<String> {
    let started = Instant::now();
    loop {
        let log = serve.log_text();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("(SIGHUP)")).collect();
        if lines.len() >= n {
            return Ok(lines[n - 1].to_string());
        }
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "no reload after SIGHUP; log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGHUP: a user removed from the htpasswd file gets 401, another keeps
/// reading, and a tag added to the repository is served; no restart.
pub fn sighup_reloads_users_and_images() -> Result<()> {
    let t = tempfile::tempdir()?;
    let img = Image::plain(t.path(), &os_tars()[1..], &[TAGGED])?;
    let file = t.path().join("htpasswd");
    htpasswd(&file, &[("alice", "a-pass"), ("bob", "b-pass")])?;
    let serve = Serve::start(&img, &["--htpasswd", &file.display().to_string()])?;
    let one = format!("{SERVED}:1");
    let two = format!("{SERVED}:2");
    let mut transcript = Vec::new();
    let (bob, _) = inspect(&serve, "bob:b-pass", &one)?;
    ensure!(bob, "bob could not read before the reload");
    transcript.push(format!("before: bob reads {one}: {bob}"));
    let (new_tag, _) = inspect(&serve, "alice:a-pass", &two)?;
    ensure!(!new_tag, "{two} served before it was tagged");

    htpasswd(&file, &[("alice", "a-pass")])?;
    let layout = t.path().join("plain");
    img.cfs(&[
        "import",
        &format!("oci:{}:os", layout.display()),
        "--tag",
        "quay.io/demo/os:2",
    ])?;
    run(Command::new("kill").args(["-HUP", &serve.pid().to_string()]))?;
    let line = reloaded(&serve, 1)?;
    transcript.push(format!("kill -HUP: serve says {line:?}"));

    let (bob, err) = inspect(&serve, "bob:b-pass", &one)?;
    ensure!(
        !bob && (err.contains("401") || err.to_lowercase().contains("unauthorized")),
        "bob, removed, still reads {one}: {err}"
    );
    transcript.push(format!("after: bob reads {one}: {bob} ({err})"));
    let (alice, err) = inspect(&serve, "alice:a-pass", &two)?;
    ensure!(alice, "the new tag {two} is not served after SIGHUP: {err}");
    transcript.push(format!("after: alice reads {two}: {alice}"));
    // The auth scheme in any case.
    let lower = exchange(&serve.addr, &get("/v2/", &basic("alice:a-pass")))?;
    ensure!(
        matches!(lower, Some((200, ..))),
        "lowercase basic: {lower:?}"
    );
    ensure!(
        serve.child_alive(),
        "serve exited on SIGHUP; log:\n{}",
        serve.log_text()
    );
    // SIGUSR1 and SIGUSR2 no longer kill it.
    for sig in ["-USR1", "-USR2"] {
        run(Command::new("kill").args([sig, &serve.pid().to_string()]))?;
    }
    std::thread::sleep(Duration::from_millis(300));
    ensure!(serve.child_alive(), "serve died of SIGUSR1/SIGUSR2");
    eprintln!("{}", transcript.join("\n"));
    Ok(())
}

/// A layer whose objects are gone (a GC while serving): HEAD and GET answer
/// 404 `BLOB_UNKNOWN` before any byte, not 200 and an empty body.
pub fn vanished_objects_answer_before_any_byte() -> Result<()> {
    let t = tempfile::tempdir()?;
    let img = Image::plain(t.path(), &os_tars(), &[TAGGED])?;
    let serve = Serve::start(&img, &["--anonymous"])?;
    let (digest, _) = img
        .blobs
        .iter()
        .max_by_key(|(_, b)| b.len())
        .context("layers")?;
    let path = format!("/v2/{SERVED}/blobs/{digest}");
    let ok = exchange(&serve.addr, &get(&path, ""))?;
    ensure!(matches!(ok, Some((200, ..))), "before: {ok:?}");
    // The largest object is the layer's big file.
    let mut objects: Vec<(u64, std::path::PathBuf)> = Vec::new();
    for dir in std::fs::read_dir(img.repo.join("objects"))? {
        for f in std::fs::read_dir(dir?.path())? {
            let f = f?;
            objects.push((f.metadata()?.len(), f.path()));
        }
    }
    let (_, biggest) = objects.iter().max().context("no objects")?;
    std::fs::remove_file(biggest)?;
    for method in ["HEAD", "GET"] {
        let head = get(&path, "").replacen("GET", method, 1);
        let got = exchange(&serve.addr, &head)?.context("no answer")?;
        let (status, headers, body) = &got;
        ensure!(
            *status == 404 && headers.contains("application/json"),
            "{method} of a layer whose object is gone: {status}\n{headers}"
        );
        if method == "GET" {
            let v: serde_json::Value = serde_json::from_slice(body)?;
            ensure!(v["errors"][0]["code"] == "BLOB_UNKNOWN", "{v}");
            eprintln!("GET {path} with an object gone: {status} {v}");
        }
    }
    Ok(())
}

/// The small conformance items: `%ff` in a path and a malformed digest are
/// the spec's JSON 400s, `BYTES=` is a range, and a request head over
/// 64 KiB is refused while an 8 KiB one is answered.
pub fn conformance_details() -> Result<()> {
    let t = tempfile::tempdir()?;
    let img = Image::plain(t.path(), &os_tars()[1..], &[TAGGED])?;
    let serve = Serve::start(&img, &["--anonymous"])?;
    let bad_utf8 = exchange(&serve.addr, &get("/v2/%ff/tags/list", ""))?.context("%ff")?;
    ensure!(
        bad_utf8.0 == 400 && bad_utf8.1.contains("application/json"),
        "%ff: {bad_utf8:?}"
    );
    let digest =
        exchange(&serve.addr, &get("/v2/nosuch/blobs/sha256:xyz", ""))?.context("digest")?;
    ensure!(
        digest.0 == 400 && String::from_utf8_lossy(&digest.2).contains("DIGEST_INVALID"),
        "malformed digest: {digest:?}"
    );
    let config = &img.config_digest;
    let range = exchange(
        &serve.addr,
        &get(
            &format!("/v2/{SERVED}/blobs/{config}"),
            "Range: BYTES=0-9\r\n",
        ),
    )?
    .context("range")?;
    ensure!(
        range.0 == 206 && range.2.len() == 10,
        "BYTES=0-9: {}",
        range.0
    );
    let filler = |n: usize| format!("X-Filler: {}\r\n", "a".repeat(n));
    let small = exchange(&serve.addr, &get("/v2/", &filler(8 << 10)))?;
    ensure!(matches!(small, Some((200, ..))), "8 KiB head: {small:?}");
    let big = exchange(&serve.addr, &get("/v2/", &filler(64 << 10)))?;
    ensure!(
        !matches!(big, Some((200, ..))),
        "a head over 64 KiB was answered"
    );
    Ok(())
}
