//! Issue 28: `cfs-export serve` under attack. Each attack runs from other
//! loopback addresses (127.0.0.2 and up) for a few seconds while a
//! legitimate `skopeo copy` pulls from 127.0.0.1; the pull must take at
//! most twice as long as without the attack, plus a second. Every line
//! printed gives the pull's times and cfs-export's peak threads, peak RSS
//! and CPU-seconds during the attack. Bounded: at most a few hundred
//! connections and a few seconds per attack, loopback only.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use base64::Engine as _;
use integration::fixture::{self, TarBuilder};
use integration::run;

use super::serve::{os_tars, Image, Serve, SERVED, TAGGED};

/// How long an attack runs before the legitimate pull starts.
const TAKE_HOLD: Duration = Duration::from_millis(1500);

/// A TCP connection to `to` from the loopback address `127.0.0.<from>`,
/// with a small receive buffer when asked (a client that reads little
/// should not hide behind a large one).
fn connect_from(from: u8, to: SocketAddr, recv_buffer: Option<usize>) -> Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketType};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None)?;
    if let Some(size) = recv_buffer {
        rustix::net::sockopt::set_socket_recv_buffer_size(&fd, size)?;
    }
    rustix::net::bind(&fd, &SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, from), 0))?;
    let SocketAddr::V4(to) = to else {
        bail!("{to} is not IPv4")
    };
    rustix::net::connect(&fd, &to)?;
    let stream = TcpStream::from(fd);
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    Ok(stream)
}

/// A request head for `path` with `headers`.
fn request(path: &str, headers: &[String]) -> Vec<u8> {
    let mut r = format!("GET {path} HTTP/1.1\r\nHost: registry\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// `Authorization: Basic …` for `user:password`.
fn basic(user_password: &str) -> String {
    format!(
        "Authorization: Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_password)
    )
}

/// Read one response: its status and body (by Content-Length).
fn response(stream: &mut TcpStream) -> Result<(u16, Vec<u8>)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        ensure!(
            stream.read(&mut byte)? == 1,
            "connection closed in the head"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("status in {head:?}"))?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    Ok((status, body))
}

/// cfs-export's use of the machine, sampled while an attack runs.
struct Monitor {
    pid: u32,
    cpu_before: f64,
    stop: Arc<AtomicBool>,
    sampler: JoinHandle<(u64, u64)>,
}

/// user + system CPU-seconds of `pid`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces): utime is the 12th, stime the 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    ticks as f64 / 100.0
}

/// A `/proc/PID/status` field's number.
fn status_field(pid: u32, name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

impl Monitor {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let done = stop.clone();
        let sampler = std::thread::spawn(move || {
            let (mut threads, mut rss) = (0, 0);
            while !done.load(Ordering::Relaxed) {
                threads = threads.max(status_field(pid, "Threads:"));
                rss = rss.max(status_field(pid, "VmRSS:"));
                std::thread::sleep(Duration::from_millis(25));
            }
            (threads, rss)
        });
        Monitor {
            pid,
            cpu_before: cpu_seconds(pid),
            stop,
            sampler,
        }
    }

    /// "peak N threads, M MiB RSS, C CPU-s".
    fn finish(self) -> String {
        self.stop.store(true, Ordering::Relaxed);
        let (threads, rss) = self.sampler.join().unwrap_or((0, 0));
        format!(
            "cfs-export peak {threads} threads, {} MiB RSS, {:.1} CPU-s",
            rss / 1024,
            cpu_seconds(self.pid) - self.cpu_before
        )
    }
}

/// Attacking threads, stopped and joined when dropped.
struct Attack {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Attack {
    /// `n` threads, each running `client(i, stop)`.
    fn start(n: usize, client: impl Fn(usize, &AtomicBool) + Send + Sync + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let client = Arc::new(client);
        let threads = (0..n)
            .map(|i| {
                let (stop, client) = (stop.clone(), client.clone());
                std::thread::spawn(move || client(i, &stop))
            })
            .collect();
        Attack { stop, threads }
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Sleep `d` in steps, unless `stop` is set.
fn pause(stop: &AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One legitimate `skopeo copy` of the image into a new `dir:`; its time.
fn pull(serve: &Serve, dir: &Path, creds: Option<&str>) -> Result<Duration> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dest = dir.join(format!("pull-{}", N.fetch_add(1, Ordering::Relaxed)));
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--retry-times", "0", "--src-tls-verify=false"]);
    if let Some(c) = creds {
        cmd.args(["--src-creds", c]);
    }
    cmd.arg(serve.docker(&format!("{SERVED}:1")))
        .arg(format!("dir:{}", dest.display()));
    let started = Instant::now();
    run(&mut cmd).with_context(|| format!("serve's log:\n{}", tail(&serve.log_text())))?;
    let took = started.elapsed();
    std::fs::remove_dir_all(&dest)?;
    Ok(took)
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The legitimate pull without and with `attack`, checked against the goal
/// (at most twice as long, plus a second); the line that says how it went.
fn under_attack(
    name: &str,
    serve: &Serve,
    dir: &Path,
    creds: Option<&str>,
    attack: impl FnOnce() -> Attack,
) -> Result<String> {
    pull(serve, dir, creds)?; // warm: the page cache, restart points
    let without = pull(serve, dir, creds)?;
    let monitor = Monitor::start(serve.pid());
    let running = attack();
    std::thread::sleep(TAKE_HOLD);
    let with = pull(serve, dir, creds);
    drop(running);
    let usage = monitor.finish();
    let with = with?;
    let line = format!(
        "{name}: legitimate pull {:.2} s during the attack, {:.2} s without; {usage}",
        with.as_secs_f64(),
        without.as_secs_f64()
    );
    eprintln!("{line}");
    ensure!(
        with <= without * 2 + Duration::from_secs(1),
        "{line}: over the goal (2x + 1 s)"
    );
    Ok(line)
}

/// The image under attack: a 24 MiB layer that does not compress (larger
/// than every buffer between a stalled client and the rebuild) and the
/// small OS layers.
fn big_image(dir: &Path) -> Result<Image> {
    let mut tars = os_tars();
    tars.push(
        TarBuilder::new()
            .dir("srv")
            .file("srv/noise", &fixture::noise(24 << 20, 28))
            .finish(false),
    );
    Image::plain(dir, &tars, &[TAGGED])
}

/// The largest layer's blob path.
fn big_blob(img: &Image) -> String {
    let (digest, _) = img
        .blobs
        .iter()
        .max_by_key(|(_, b)| b.len())
        .expect("layers");
    format!("/v2/{SERVED}/blobs/{digest}")
}

/// An htpasswd file with `users` (`name:password`), bcrypt at `cost`.
fn htpasswd(dir: &Path, cost: u32, users: &[&str]) -> Result<std::path::PathBuf> {
    let file = dir.join("htpasswd");
    let _ = std::fs::remove_file(&file);
    for (i, up) in users.iter().enumerate() {
        let (user, password) = up.split_once(':').context("user:password")?;
        let create = if i == 0 { "c" } else { "" };
        run(Command::new("htpasswd")
            .arg(format!("-Bb{create}"))
            .args(["-C", &cost.to_string()])
            .arg(&file)
            .args([user, password]))?;
    }
    Ok(file)
}

/// 16 clients that ask for the big layer and never read, and 16 that read
/// it at 6.4 KiB/s: neither holds a rebuild slot, a lock or the pull back.
pub fn stalled_and_slow_readers() -> Result<()> {
    let t = tempfile::tempdir()?;
    let img = big_image(t.path())?;
    let serve = Serve::start(&img, &["--anonymous"])?;
    let addr: SocketAddr = serve.addr.parse()?;
    let path = big_blob(&img);
    let line = under_attack(
        "16 never-reading + 16 slow-reading clients",
        &serve,
        t.path(),
        None,
        || {
            Attack::start(32, move |i, stop| {
                let from = 2 + (i % 16) as u8;
                let slow = i >= 16;
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = connect_from(from, addr, Some(4096)) else {
                        pause(stop, Duration::from_millis(100));
                        continue;
                    };
                    if s.write_all(&request(&path, &[])).is_err() {
                        continue;
                    }
                    let mut buf = [0u8; 640];
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        if slow {
                            // 640 bytes every 100 ms.
                            match s.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(_) => pause(stop, Duration::from_millis(100)),
                            }
                        } else {
                            pause(stop, Duration::from_millis(100));
                        }
                    }
                }
            })
        },
    )?;
    ensure!(
        !serve.log_text().contains("panicked"),
        "{line}: serve panicked:\n{}",
        serve.log_text()
    );
    Ok(())
}

/// 20 clients sending wrong passwords (bcrypt cost 10) and a request with
/// 95 `Authorization` headers: bcrypt's cost is bounded per client and
/// never blocks the others.
pub fn bad_passwords() -> Result<()> {
    let t = tempfile::tempdir()?;
    let img = big_image(t.path())?;
    let file = htpasswd(t.path(), 10, &["reader:right-pass"])?;
    let serve = Serve::start(&img, &["--htpasswd", &file.display().to_string()])?;
    let addr: SocketAddr = serve.addr.parse()?;
    let refusals = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let counted = refusals.clone();
    under_attack(
        "20 wrong-password clients (bcrypt cost 10)",
        &serve,
        t.path(),
        Some("reader:right-pass"),
        || {
            Attack::start(20, move |i, stop| {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let Ok(mut s) = connect_from(2 + i as u8, addr, None) else {
                        continue;
                    };
                    let auth = basic(&format!("reader:wrong-{i}-{n}"));
                    let _ = s.write_all(&request("/v2/", &[auth]));
                    match response(&mut s) {
                        Ok((401, _)) => counted[0].fetch_add(1, Ordering::Relaxed),
                        Ok((429, _)) => counted[1].fetch_add(1, Ordering::Relaxed),
                        _ => 0,
                    };
                }
            })
        },
    )?;
    let (r401, r429) = (
        refusals[0].load(Ordering::Relaxed),
        refusals[1].load(Ordering::Relaxed),
    );
    eprintln!("  the attackers got {r401} x 401 (a bcrypt each) and {r429} x 429 (none)");

    // One address failing again and again: 6 answers of 401, then 429
    // with Retry-After, no bcrypt.
    let mut answers = Vec::new();
    for n in 0..8 {
        let mut s = connect_from(99, addr, None)?;
        s.write_all(&request("/v2/", &[basic(&format!("reader:again-{n}"))]))?;
        answers.push(response(&mut s)?.0);
    }
    eprintln!("  one address, 8 wrong passwords in a row: {answers:?}");
    ensure!(
        answers == [401, 401, 401, 401, 401, 401, 429, 429],
        "back-off: {answers:?}"
    );

    // One request, 95 headers (with Host, near hyper's limit of 100 fields:
    // more are refused, 431): one bcrypt (the first header), not 95.
    let headers: Vec<String> = (0..95).map(|n| basic(&format!("reader:bad-{n}"))).collect();
    let mut s = connect_from(100, addr, None)?;
    let started = Instant::now();
    s.write_all(&request("/v2/", &headers))?;
    let (status, _) = response(&mut s)?;
    let took = started.elapsed();
    eprintln!(
        "  95 Authorization headers: {status} in {:.3} s",
        took.as_secs_f64()
    );
    ensure!(status == 401, "95 headers: {status}");
    ensure!(took < Duration::from_secs(2), "95 headers took {took:?}");
    Ok(())
}

/// 256 keep-alive connections of an admitted user from one address, idle
/// after one request: another client still gets in.
pub fn idle_authenticated_connections() -> Result<()> {
    let t = tempfile::tempdir()?;
    let img = big_image(t.path())?;
    let file = htpasswd(t.path(), 5, &["reader:right-pass", "other:other-pass"])?;
    let serve = Serve::start(&img, &["--htpasswd", &file.display().to_string()])?;
    let addr: SocketAddr = serve.addr.parse()?;
    let answered = Arc::new(AtomicUsize::new(0));
    let counted = answered.clone();
    under_attack(
        "256 idle authenticated keep-alive connections from one address",
        &serve,
        t.path(),
        Some("other:other-pass"),
        || {
            Attack::start(1, move |_, stop| {
                let mut open = Vec::new();
                for _ in 0..256 {
                    let Ok(mut s) = connect_from(2, addr, None) else {
                        continue;
                    };
                    let auth = basic("reader:right-pass");
                    if s.write_all(&request("/v2/", &[auth])).is_ok()
                        && matches!(response(&mut s), Ok((200, _)))
                    {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                    open.push(s);
                }
                pause(stop, Duration::from_secs(120));
                drop(open);
            })
        },
    )?;
    eprintln!(
        "  {} of the 256 connections were answered",
        answered.load(Ordering::Relaxed)
    );
    Ok(())
}

/// 8 clients asking for `bytes=0-0` of a gzip layer over and over: each
/// costs about the first block, not the whole layer. The layer (48 MiB)
/// is larger than the blocks the server keeps (32 MiB), so no cache hides
/// the cost: one range must cost under a tenth of the whole blob's CPU.
pub fn first_byte_ranges() -> Result<()> {
    let t = tempfile::tempdir()?;
    let mut tars = os_tars();
    tars.push(
        TarBuilder::new()
            .dir("srv")
            .file("srv/noise", &fixture::noise(48 << 20, 29))
            .finish(false),
    );
    let img = Image::plain(t.path(), &tars, &[TAGGED])?;
    let serve = Serve::start(&img, &["--anonymous", "--compression", "gzip"])?;
    let addr: SocketAddr = serve.addr.parse()?;
    let manifest = super::serve::skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &serve.docker(&format!("{SERVED}:1")),
    ])?;
    let manifest: serde_json::Value = serde_json::from_slice(&manifest)?;
    let biggest = manifest["layers"]
        .as_array()
        .context("layers")?
        .iter()
        .max_by_key(|l| l["size"].as_u64())
        .context("a layer")?;
    let path = format!(
        "/v2/{SERVED}/blobs/{}",
        biggest["digest"].as_str().context("digest")?
    );
    // The CPU of the whole blob, then of one first-byte range.
    let cpu = || cpu_seconds(serve.pid());
    let before = cpu();
    let mut s = connect_from(3, addr, None)?;
    s.write_all(&request(&path, &[]))?;
    let (status, body) = response(&mut s)?;
    ensure!(status == 200 && body.len() as u64 == biggest["size"].as_u64().unwrap_or(0));
    let whole = cpu() - before;
    let before = cpu();
    let tries = 10;
    for _ in 0..tries {
        s.write_all(&request(&path, &["Range: bytes=0-0".to_string()]))?;
        let (status, body) = response(&mut s)?;
        ensure!(status == 206 && body.len() == 1, "bytes=0-0: {status}");
    }
    let one = (cpu() - before) / f64::from(tries);
    eprintln!(
        "  {} MiB gzip blob: whole {whole:.2} CPU-s, bytes=0-0 {one:.3} CPU-s each",
        body.len() >> 20
    );
    ensure!(
        one <= whole / 10.0,
        "a first-byte range costs {one:.3} CPU-s, the whole blob {whole:.2}"
    );
    let ranges = Arc::new(AtomicUsize::new(0));
    let counted = ranges.clone();
    under_attack(
        "8 parallel bytes=0-0 on a gzip layer",
        &serve,
        t.path(),
        None,
        || {
            Attack::start(8, move |_, stop| {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = connect_from(2, addr, None) else {
                        continue;
                    };
                    let range = "Range: bytes=0-0".to_string();
                    while !stop.load(Ordering::Relaxed) {
                        if s.write_all(&request(&path, std::slice::from_ref(&range)))
                            .is_err()
                        {
                            break;
                        }
                        match response(&mut s) {
                            Ok((206, body)) if body.len() == 1 => {
                                counted.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => break,
                        }
                    }
                }
            })
        },
    )?;
    let n = ranges.load(Ordering::Relaxed);
    eprintln!("  {n} one-byte ranges answered during the attack");
    ensure!(n >= 8, "only {n} ranges were answered");
    Ok(())
}

/// An unknown user costs what a wrong password does: 200 tries each, from
/// addresses of their own (so back-off does not answer instead), medians
/// within 10 %.
pub fn unknown_user_costs_a_wrong_password() -> Result<()> {
    let t = tempfile::tempdir()?;
    let img = Image::plain(t.path(), &os_tars()[1..], &[TAGGED])?;
    let file = htpasswd(t.path(), 8, &["reader:right-pass"])?;
    let serve = Serve::start(&img, &["--htpasswd", &file.display().to_string()])?;
    let addr: SocketAddr = serve.addr.parse()?;
    let time = |user: &str, from: u8| -> Result<Duration> {
        let mut s = connect_from(from, addr, None)?;
        let req = request("/v2/", &[basic(&format!("{user}:wrong"))]);
        let started = Instant::now();
        s.write_all(&req)?;
        let (status, _) = response(&mut s)?;
        ensure!(status == 401, "{user}: {status}");
        Ok(started.elapsed())
    };
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    // Interleaved; each address tries twice (5 failures are free).
    for i in 0..200u8 {
        unknown.push(time("nobody", 2 + i)?);
        wrong.push(time("reader", 2 + i)?);
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (u, w) = (median(&mut unknown), median(&mut wrong));
    let diff = (u.as_secs_f64() - w.as_secs_f64()).abs() / w.as_secs_f64();
    eprintln!(
        "unknown user: median {:.2} ms, wrong password: median {:.2} ms ({:.1} % apart, 200 tries each)",
        u.as_secs_f64() * 1e3,
        w.as_secs_f64() * 1e3,
        diff * 100.0
    );
    ensure!(
        diff <= 0.10,
        "medians {u:?} and {w:?} differ by more than 10 %"
    );
    Ok(())
}
