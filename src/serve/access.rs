//! Who may read: one per-run credential, checked on every request.
//!
//! The server's address and path are visible to every local user (skopeo's
//! argv is world-readable in `/proc`), so they are no secret. The secret is a
//! random password that only our skopeo gets, through a 0600 auth file in our
//! 0700 private directory; anything without it gets 401, `/v2/` included.

use std::io::Read;

use anyhow::{Context, Result};
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

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
