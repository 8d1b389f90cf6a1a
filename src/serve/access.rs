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
//! -B`). bcrypt is slow on purpose, so a verified `Authorization` value is
//! remembered (as its sha256) for the life of the server.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

/// Who is answered.
pub(crate) enum Access {
    /// Only the hand-off's client.
    Token(Arc<Credential>),
    /// The users of an htpasswd file.
    Users(Htpasswd),
    /// Anyone (`serve --anonymous`).
    Anyone,
}

impl Access {
    /// Whether the request may be answered.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        match self {
            Access::Token(c) => c.admits(headers),
            Access::Users(h) => h.admits(headers),
            Access::Anyone => true,
        }
    }
}

/// Users and their bcrypt hashes, from an htpasswd file.
pub(crate) struct Htpasswd {
    users: HashMap<String, String>,
    /// sha256 of `Authorization` values already verified.
    verified: Mutex<HashSet<[u8; 32]>>,
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
            if !["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
                anyhow::bail!(
                    "line {}: user {user:?} has no bcrypt hash; make it with `htpasswd -B`",
                    n + 1
                );
            }
            users.insert(user.to_string(), hash.to_string());
        }
        if users.is_empty() {
            anyhow::bail!("no users; add one with `htpasswd -B FILE USER`");
        }
        Ok(Htpasswd {
            users,
            verified: Mutex::default(),
        })
    }

    fn admits(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .any(|v| self.admits_value(v.as_bytes()))
    }

    fn admits_value(&self, value: &[u8]) -> bool {
        use sha2::Digest as _;
        let key: [u8; 32] = sha2::Sha256::digest(value).into();
        let mut verified = crate::lock(&self.verified);
        if verified.contains(&key) {
            return true;
        }
        let Some(token) = value.strip_prefix(b"Basic ") else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(token) else {
            return false;
        };
        let Some((user, password)) = std::str::from_utf8(&decoded)
            .ok()
            .and_then(|s| s.split_once(':'))
        else {
            return false;
        };
        let ok = self
            .users
            .get(user)
            .is_some_and(|hash| bcrypt::verify(password, hash).unwrap_or(false));
        if ok {
            if verified.len() >= MAX_VERIFIED {
                verified.clear();
            }
            verified.insert(key);
        }
        ok
    }
}

/// The user name skopeo presents (the password is the secret).
const USER: &str = "cfs-export";

/// A random credential for one run.
pub(crate) struct Credential {
    password: String,
    /// The whole `Authorization` value a client must send.
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
            expected: format!("Basic {token}").into_bytes(),
            password,
        }
    }

    /// `user:password`, for the auth file handed to skopeo.
    pub fn user_password(&self) -> String {
        format!("{USER}:{}", self.password)
    }

    /// Whether the request carries this credential (compared in constant time).
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .any(|v| constant_time_eq(v.as_bytes(), &self.expected))
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
    let mut r = (StatusCode::UNAUTHORIZED, Body::from(body)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"cfs-export\""),
    );
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

    #[test]
    fn only_the_exact_credential_is_admitted() {
        let c = Credential::with_password("s3cret".into());
        let good = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("cfs-export:s3cret")
        );
        assert!(c.admits(&headers(&[&good])));
        assert!(c.admits(&headers(&["Bearer x", &good])));
        let wrong_password = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("cfs-export:s3creT")
        );
        for bad in [
            &[][..],
            &["Basic "][..],
            &[wrong_password.as_str()][..],
            &[&good[..good.len() - 1]][..],
            &[format!("{good}=").as_str()][..],
            &[good.to_lowercase().as_str()][..],
        ] {
            assert!(!c.admits(&headers(bad)), "{bad:?}");
        }
        assert_eq!(c.user_password(), "cfs-export:s3cret");
    }

    #[test]
    fn htpasswd_users_with_the_right_password_only() {
        let hash = bcrypt::hash("right", 4).unwrap();
        let h = Htpasswd::parse(&format!("# users\nalice:{hash}\n")).unwrap();
        let basic = |up: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(up)
            )
        };
        assert!(h.admits(&headers(&[&basic("alice:right")])));
        // Remembered, still right.
        assert!(h.admits(&headers(&[&basic("alice:right")])));
        for bad in ["alice:wrong", "bob:right", "alice:", "alice", ""] {
            assert!(!h.admits(&headers(&[&basic(bad)])), "{bad}");
        }
        assert!(!h.admits(&headers(&["Bearer x"])));
        assert!(!h.admits(&HeaderMap::new()));
        for bad in ["", "alice:plain", "nocolon"] {
            assert!(Htpasswd::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn random_credentials_differ() {
        let a = Credential::random().unwrap();
        let b = Credential::random().unwrap();
        assert_ne!(a.password, b.password);
        assert_eq!(a.password.len(), 64);
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
