//! Who may read, checked on every request: the hand-off's per-run
//! credential, the users of an htpasswd file, or (when asked) anyone.
//!
//! For the hand-off, the server's address and path are visible to every
//! local user (skopeo's argv is world-readable in `/proc`), so they are no
//! secret. The secret is a random password that only our skopeo gets, through
//! a 0600 auth file in our 0700 private directory; anything without it gets
//! 401, `/v2/` included.
//!
//! htpasswd files are distribution's: `user:bcrypt-hash` lines (`htpasswd
//! -B`). bcrypt is slow on purpose, so what a client can make us spend is
//! bounded: only a request's first `Authorization` header counts; a
//! verified value is remembered (as its sha256) for the life of the
//! server; bcrypt runs on blocking threads, [`BCRYPT_AT_ONCE`] at a time,
//! never under a lock; an unknown user costs one bcrypt too (a dummy hash
//! of the same cost), so names cannot be told by timing; and a client
//! address past [`FREE_FAILURES`] failures backs off, doubling up to
//! [`MAX_BACK_OFF`], answered 429 with `Retry-After` without a bcrypt.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

/// bcrypt checks running at once, over all clients.
const BCRYPT_AT_ONCE: usize = 2;
/// Failed checks a client address makes before it must wait.
const FREE_FAILURES: u32 = 5;
/// The longest wait after failures.
const MAX_BACK_OFF: Duration = Duration::from_secs(60);
/// Failures older than this are forgotten.
const FORGET_FAILURES: Duration = Duration::from_secs(600);
/// Client addresses whose failures are remembered, at most.
const MAX_CLIENTS: usize = 4096;

/// Who is answered.
pub(crate) enum Access {
    /// Only the hand-off's client.
    Token(Arc<Credential>),
    /// The users of an htpasswd file.
    Users(Htpasswd),
    /// Anyone (`serve --anonymous`).
    Anyone,
}

/// What a request's credentials earn it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Answered.
    Admit,
    /// 401.
    Refuse,
    /// 429: the client failed too often; it may try again after this long.
    BackOff(Duration),
}

impl Access {
    /// Whether a request from `client` with `headers` may be answered.
    pub async fn check(&self, headers: &HeaderMap, client: IpAddr) -> Verdict {
        let value = headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        match self {
            Access::Token(c) => match value.is_some_and(|v| c.admits_value(v)) {
                true => Verdict::Admit,
                false => Verdict::Refuse,
            },
            Access::Users(h) => match value {
                Some(v) => h.check(v, client).await,
                None => Verdict::Refuse,
            },
            Access::Anyone => Verdict::Admit,
        }
    }
}

/// `Basic` credentials (the scheme in any case, RFC 9110 §11.1): the token.
fn basic_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(6)?;
    scheme.eq_ignore_ascii_case(b"basic ").then_some(token)
}

/// Users and their bcrypt hashes, from an htpasswd file.
pub(crate) struct Htpasswd {
    users: HashMap<String, String>,
    /// Checked for an unknown user, so that it costs what a wrong password does.
    dummy: String,
    /// sha256 of `Authorization` values already verified.
    verified: Mutex<HashSet<[u8; 32]>>,
    /// bcrypt checks running.
    bcrypts: Arc<tokio::sync::Semaphore>,
    failures: Failures,
}

/// At most this many verified values are remembered.
const MAX_VERIFIED: usize = 1024;

impl Htpasswd {
    /// Read `path`: `user:hash` lines with bcrypt hashes (`$2a$`, `$2b$`, `$2y$`).
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("Reading htpasswd file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("htpasswd file {}", path.display()))
    }

    fn parse(text: &str) -> Result<Self> {
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                anyhow::bail!("line {}: expected user:hash", n + 1);
            };
            let cost = ["$2a$", "$2b$", "$2y$"]
                .iter()
                .find_map(|p| hash.strip_prefix(p))
                .and_then(|rest| rest.get(..2)?.parse::<u32>().ok());
            if cost.is_none() {
                anyhow::bail!(
                    "line {}: user {user:?} has no bcrypt hash; make it with `htpasswd -B`",
                    n + 1
                );
            }
            users.insert(user.to_string(), hash.to_string());
        }
        // The dummy costs what the users' hashes cost (the most common cost).
        let mut costs: HashMap<&str, usize> = HashMap::new();
        for hash in users.values() {
            *costs.entry(&hash[4..6]).or_default() += 1;
        }
        let Some(cost) = costs
            .into_iter()
            .max_by_key(|(c, n)| (*n, *c))
            .and_then(|(c, _)| c.parse::<u32>().ok())
        else {
            anyhow::bail!("no users; add one with `htpasswd -B FILE USER`");
        };
        let dummy = bcrypt::hash(random_hex(16)?, cost)
            .with_context(|| format!("Making a bcrypt hash of cost {cost}"))?;
        Ok(Htpasswd {
            users,
            dummy,
            verified: Mutex::default(),
            bcrypts: Arc::new(tokio::sync::Semaphore::new(BCRYPT_AT_ONCE)),
            failures: Failures::default(),
        })
    }

    /// Check one `Authorization` value from `client`.
    async fn check(&self, value: &[u8], client: IpAddr) -> Verdict {
        use sha2::Digest as _;
        let key: [u8; 32] = sha2::Sha256::digest(value).into();
        if crate::lock(&self.verified).contains(&key) {
            return Verdict::Admit;
        }
        if let Some(wait) = self.failures.waiting(client, Instant::now()) {
            return Verdict::BackOff(wait);
        }
        let ok = match self.user_password(value) {
            Some((user, password)) => {
                let hash = self.users.get(&user).unwrap_or(&self.dummy).clone();
                let known = self.users.contains_key(&user);
                let Ok(_turn) = self.bcrypts.acquire().await else {
                    return Verdict::Refuse;
                };
                let verified = tokio::task::spawn_blocking(move || {
                    bcrypt::verify(password, &hash).unwrap_or(false)
                })
                .await
                .unwrap_or(false);
                verified && known
            }
            None => false,
        };
        if !ok {
            self.failures.failed(client, Instant::now());
            return Verdict::Refuse;
        }
        self.failures.forgive(client);
        let mut verified = crate::lock(&self.verified);
        if verified.len() >= MAX_VERIFIED {
            verified.clear();
        }
        verified.insert(key);
        Verdict::Admit
    }

    /// The user and password of a `Basic` value.
    fn user_password(&self, value: &[u8]) -> Option<(String, String)> {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic_token(value)?)
            .ok()?;
        let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
        Some((user.to_string(), password.to_string()))
    }
}

/// Failed checks by client address.
#[derive(Default)]
struct Failures(Mutex<HashMap<IpAddr, Strikes>>);

/// One address's recent failures.
#[derive(Debug, Clone, Copy)]
struct Strikes {
    count: u32,
    last: Instant,
    /// It may try again from then on.
    until: Instant,
}

impl Failures {
    /// How long `client` must still wait, if it must.
    fn waiting(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let strikes = *crate::lock(&self.0).get(&client)?;
        (strikes.until > now).then(|| strikes.until - now)
    }

    /// `client` failed a check at `now`.
    fn failed(&self, client: IpAddr, now: Instant) {
        let mut all = crate::lock(&self.0);
        if all.len() >= MAX_CLIENTS && !all.contains_key(&client) {
            all.retain(|_, s| now.duration_since(s.last) < FORGET_FAILURES);
            if all.len() >= MAX_CLIENTS {
                // Still full: the quietest address makes room.
                if let Some(quiet) = all.iter().min_by_key(|(_, s)| s.last).map(|(a, _)| *a) {
                    all.remove(&quiet);
                }
            }
        }
        let s = all.entry(client).or_insert(Strikes {
            count: 0,
            last: now,
            until: now,
        });
        if now.duration_since(s.last) >= FORGET_FAILURES {
            s.count = 0;
        }
        s.count += 1;
        s.last = now;
        if let Some(over) = s.count.checked_sub(FREE_FAILURES + 1) {
            let wait = Duration::from_secs(1u64 << over.min(16)).min(MAX_BACK_OFF);
            s.until = now + wait;
        }
    }

    /// `client` passed a check: its failures are forgotten.
    fn forgive(&self, client: IpAddr) {
        crate::lock(&self.0).remove(&client);
    }
}

/// The user name skopeo presents (the password is the secret).
const USER: &str = "cfs-export";

/// A random credential for one run.
pub(crate) struct Credential {
    password: String,
    /// The `Basic` token a client must send.
    expected: Vec<u8>,
}

impl Credential {
    /// 256 random bits from the kernel as the password.
    pub fn random() -> Result<Self> {
        Ok(Self::with_password(random_hex(32)?))
    }

    fn with_password(password: String) -> Self {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
        Credential {
            expected: token.into_bytes(),
            password,
        }
    }

    /// `user:password`, for the auth file handed to skopeo.
    pub fn user_password(&self) -> String {
        format!("{USER}:{}", self.password)
    }

    /// Whether an `Authorization` value is this credential (the token
    /// compared in constant time).
    fn admits_value(&self, value: &[u8]) -> bool {
        basic_token(value).is_some_and(|t| constant_time_eq(t, &self.expected))
    }
}

/// `n` random bytes from the kernel, as hex.
pub(crate) fn random_hex(n: usize) -> Result<String> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("Reading /dev/urandom")?;
    Ok(hex::encode(bytes))
}

/// Equal bytes, in a time that does not depend on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // The length is no secret: every valid value has the same one.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The answer to a request without the credential: the distribution spec's
/// `UNAUTHORIZED`, and the connection closed after it.
pub(crate) fn unauthorized() -> Response {
    let body =
        r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#;
    let mut r = refusal(StatusCode::UNAUTHORIZED, body);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"cfs-export\""),
    );
    r
}

/// The answer to a client that failed too often: 429 with `Retry-After`
/// (whole seconds, rounded up), and the connection closed.
pub(crate) fn too_many(wait: Duration) -> Response {
    let body = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"too many failed logins: retry later","detail":null}]}"#;
    let mut r = refusal(StatusCode::TOO_MANY_REQUESTS, body);
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    r
}

/// A refusal with its JSON `body`, the connection closed after it.
fn refusal(status: StatusCode, body: &'static str) -> Response {
    let mut r = (status, Body::from(body)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    h.insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn check(access: &Access, values: &[&str]) -> Verdict {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(access.check(&headers(values), CLIENT))
    }

    fn basic(up: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(up)
        )
    }

    #[test]
    fn only_the_exact_credential_is_admitted() {
        let c = Access::Token(Arc::new(Credential::with_password("s3cret".into())));
        let good = basic("cfs-export:s3cret");
        assert_eq!(check(&c, &[&good]), Verdict::Admit);
        let lower = good.replacen("Basic", "basic", 1);
        assert_eq!(
            check(&c, &[&lower]),
            Verdict::Admit,
            "the scheme in any case"
        );
        assert_eq!(check(&c, &[&good, "Bearer x"]), Verdict::Admit);
        // Only the first header counts.
        assert_eq!(check(&c, &["Bearer x", &good]), Verdict::Refuse);
        let wrong_password = basic("cfs-export:s3creT");
        for bad in [
            &[][..],
            &["Basic "][..],
            &[wrong_password.as_str()][..],
            &[&good[..good.len() - 1]][..],
            &[format!("{good}=").as_str()][..],
            &[good.to_lowercase().as_str()][..],
        ] {
            assert_eq!(check(&c, bad), Verdict::Refuse, "{bad:?}");
        }
    }

    #[test]
    fn htpasswd_users_with_the_right_password_only() {
        let hash = bcrypt::hash("right", 4).unwrap();
        let h = Access::Users(Htpasswd::parse(&format!("# users\nalice:{hash}\n")).unwrap());
        assert_eq!(check(&h, &[&basic("alice:right")]), Verdict::Admit);
        // Remembered, still right.
        assert_eq!(check(&h, &[&basic("alice:right")]), Verdict::Admit);
        for bad in ["alice:wrong", "bob:right", "alice:", "alice"] {
            assert_eq!(check(&h, &[&basic(bad)]), Verdict::Refuse, "{bad}");
        }
        assert_eq!(check(&h, &["Bearer x"]), Verdict::Refuse);
        assert_eq!(check(&h, &[&basic("alice:wrong")]), Verdict::Refuse);
        // Past the free failures the address waits, without a bcrypt...
        assert!(matches!(
            check(&h, &[&basic("alice:wrong")]),
            Verdict::BackOff(_)
        ));
        // ... but a value verified before is still admitted.
        assert_eq!(check(&h, &[&basic("alice:right")]), Verdict::Admit);
        assert_eq!(check(&h, &[]), Verdict::Refuse);
        for bad in ["", "alice:plain", "nocolon"] {
            assert!(Htpasswd::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn failures_back_off_doubling_then_are_forgiven() {
        let f = Failures::default();
        let (a, b) = (CLIENT, IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2)));
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            f.failed(a, t0);
        }
        assert_eq!(f.waiting(a, t0), None, "free failures");
        let mut waits = Vec::new();
        for _ in 0..9 {
            f.failed(a, t0);
            waits.push(f.waiting(a, t0).unwrap().as_secs());
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(f.waiting(b, t0), None, "other addresses do not wait");
        assert_eq!(f.waiting(a, t0 + MAX_BACK_OFF), None, "the wait ends");
        // Long quiet: counting starts again.
        f.failed(a, t0 + FORGET_FAILURES);
        assert_eq!(f.waiting(a, t0 + FORGET_FAILURES), None);
        f.forgive(a);
        assert!(crate::lock(&f.0).is_empty());
    }

    #[test]
    fn the_dummy_hash_costs_what_the_users_cost() {
        let hash = bcrypt::hash("x", 5).unwrap();
        let h = Htpasswd::parse(&format!("alice:{hash}\nbob:{hash}\n")).unwrap();
        assert_eq!(&h.dummy[..7], &hash[..7]);
    }

    #[test]
    fn random_credentials_differ() {
        let a = Credential::random().unwrap();
        let b = Credential::random().unwrap();
        assert_ne!(a.password, b.password);
        assert_eq!(a.password.len(), 64);
    }

    #[test]
    fn back_off_says_when_to_try_again() {
        let r = too_many(Duration::from_millis(2500));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
        assert_eq!(r.headers()[header::CONNECTION], "close");
    }

    #[test]
    fn refusal_names_the_scheme_and_closes() {
        let r = unauthorized();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Basic realm=\"cfs-export\""
        );
        assert_eq!(r.headers()[header::CONNECTION], "close");
    }
}
