//! The routes of the distribution API, GET and HEAD only: `/v2/`, manifests
//! by tag or digest, blobs (with ranges), `tags/list`, `_catalog` and the
//! referrers API. Errors are the spec's JSON (`NAME_UNKNOWN`,
//! `MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`, `DIGEST_INVALID`, `UNSUPPORTED`).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use std::net::IpAddr;

use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use composefs::fsverity::FsVerityHashValue;

use super::body::stream_layer;
use super::conn::ClientAddr;
use super::names::{Lookup, Page};
use super::ranges::Answer;
use super::{Blob, Inner};

const API_VERSION: (&str, &str) = ("Docker-Distribution-API-Version", "registry/2.0");

pub(super) async fn api_version() -> impl IntoResponse {
    (
        [API_VERSION, ("Content-Type", "application/json")],
        Body::from("{}"),
    )
}

/// Every method but GET and HEAD: this registry is read-only.
pub(super) async fn unsupported() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "UNSUPPORTED",
        "this registry is read-only",
    )
}

/// A distribution-spec error response.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "errors": [{"code": code, "message": message, "detail": null}]
    });
    let mut r = (status, Body::from(body.to_string())).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
    r
}

/// What a `/v2/…` path names.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    Manifest { name: &'a str, reference: &'a str },
    Blob { name: &'a str, digest: &'a str },
    Tags { name: &'a str },
    Referrers { name: &'a str, digest: &'a str },
    Catalog,
}

/// Parse a path after `/v2/`; names may hold `/`, so the last marker counts.
fn parse(path: &str) -> Option<Target<'_>> {
    if path == "_catalog" {
        return Some(Target::Catalog);
    }
    if let Some(name) = path.strip_suffix("/tags/list") {
        return Some(Target::Tags { name });
    }
    for marker in ["/manifests/", "/blobs/", "/referrers/"] {
        if let Some((name, last)) = path.rsplit_once(marker) {
            if name.is_empty() || last.is_empty() || last.contains('/') {
                return None;
            }
            return Some(match marker {
                "/manifests/" => Target::Manifest {
                    name,
                    reference: last,
                },
                "/blobs/" => Target::Blob { name, digest: last },
                _ => Target::Referrers { name, digest: last },
            });
        }
    }
    None
}

/// `sha256:` + 64 or `sha512:` + 128 lowercase hex digits.
fn is_digest(s: &str) -> bool {
    let hex = |h: &str, n: usize| {
        h.len() == n
            && h.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    };
    match s.split_once(':') {
        Some(("sha256", h)) => hex(h, 64),
        Some(("sha512", h)) => hex(h, 128),
        _ => false,
    }
}

/// `key`'s value in a query string, percent-decoded.
fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

/// A query value's percent-encoding decoded (`+` is a space, a stray `%`
/// stays), as text.
fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&percent_bytes(s, true).unwrap_or_default()).into_owned()
}

/// The bytes `s` percent-encodes. In a query (`query`) `+` is a space and a
/// `%` without two hex digits stays as it is; in a path it makes the whole
/// invalid (`None`).
fn percent_bytes(s: &str, query: bool) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'%', None) if !query => return None,
            (b'+', _) if query => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

fn with_headers(mut r: Response, len: u64, digest: &str, media_type: &str) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(digest) {
        h.insert("Docker-Content-Digest", v);
    }
    if let Ok(v) = HeaderValue::from_str(media_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
    r
}

pub(super) async fn head_path<ID: FsVerityHashValue>(
    State(s): State<Arc<Inner<ID>>>,
    uri: Uri,
) -> Response {
    request(s, &uri, Method::HEAD, &HeaderMap::new(), None).await
}

pub(super) async fn get_path<ID: FsVerityHashValue>(
    State(s): State<Arc<Inner<ID>>>,
    uri: Uri,
    headers: HeaderMap,
    client: Option<Extension<ClientAddr>>,
) -> Response {
    let client = client.map(|Extension(ClientAddr(ip))| ip);
    request(s, &uri, Method::GET, &headers, client).await
}

/// One request under `/v2/`: the path decoded, a layer's objects checked
/// before any byte of it (they may have been removed since it was
/// listed), then answered.
async fn request<ID: FsVerityHashValue>(
    s: Arc<Inner<ID>>,
    uri: &Uri,
    method: Method,
    headers: &HeaderMap,
    client: Option<IpAddr>,
) -> Response {
    let Some(path) = uri.path().strip_prefix("/v2/").and_then(decode_path) else {
        return error(
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
            "the path is not UTF-8 in percent-encoding",
        );
    };
    if let Some(Target::Blob { digest, .. }) = parse(&path) {
        if let Some(Blob::Layer(l)) = s.blobs.get(digest) {
            let (s2, l) = (s.clone(), l.layer.clone());
            let missing = tokio::task::spawn_blocking(move || {
                let name = crate::repo::image::layer_stream_id(&l.diff_id);
                crate::repo::objects::first_missing(&s2.repo, &name, &l.stream)
            })
            .await
            .unwrap_or_else(|_| Some("(the check failed)".into()));
            if let Some(object) = missing {
                return error(
                    StatusCode::NOT_FOUND,
                    "BLOB_UNKNOWN",
                    &format!(
                        "blob {digest} is no longer in the repository (object {object} is gone): send the server SIGHUP to rescan"
                    ),
                );
            }
        }
    }
    respond(&s, &path, uri.query(), method, headers, client)
}

/// A path's percent-encoding decoded; `None` when it is not UTF-8.
fn decode_path(s: &str) -> Option<String> {
    String::from_utf8(percent_bytes(s, false)?).ok()
}

/// In-memory bytes as a response body (none for HEAD).
fn bytes_body(bytes: &Bytes, head: bool) -> Body {
    match head {
        true => Body::empty(),
        false => Body::from(bytes.clone()),
    }
}

/// A blob's response: the part the request's `Range` asks for (HEAD: the
/// whole blob's headers), with `body(first, count)` giving those bytes.
fn blob_response(
    headers: &HeaderMap,
    len: u64,
    digest: &str,
    body: impl FnOnce(u64, u64) -> Body,
) -> Response {
    let answer = Answer::for_request(headers, len);
    let (first, count) = answer.span(len);
    let (body, count) = match answer {
        Answer::Unsatisfiable => (Body::empty(), 0),
        _ => (body(first, count), count),
    };
    let mut r = with_headers(
        body.into_response(),
        count,
        digest,
        "application/octet-stream",
    );
    answer.apply(&mut r, len);
    r
}

fn name_unknown(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
        &format!("repository name {name:?} is not served here"),
    )
}

fn respond<ID: FsVerityHashValue>(
    s: &Arc<Inner<ID>>,
    path: &str,
    query: Option<&str>,
    method: Method,
    headers: &HeaderMap,
    client: Option<IpAddr>,
) -> Response {
    let head = method == Method::HEAD;
    let target = match parse(path) {
        Some(Target::Catalog | Target::Tags { .. }) if !s.names.listing => None,
        t => t,
    };
    match target {
        None => error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "no such path"),
        // A malformed digest is the request's fault, whatever the name.
        Some(
            Target::Blob { digest, .. }
            | Target::Referrers { digest, .. }
            | Target::Manifest {
                reference: digest, ..
            },
        ) if digest.contains(':') && !is_digest(digest) => error(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            &format!("{digest:?} is not a sha256 or sha512 digest"),
        ),
        Some(
            Target::Manifest { name, .. }
            | Target::Blob { name, .. }
            | Target::Referrers { name, .. },
        ) if !s.names.has(name) => name_unknown(name),
        Some(Target::Manifest { name, reference }) => manifest(s, name, reference, query, head),
        Some(Target::Blob { digest, .. } | Target::Referrers { digest, .. })
            if !is_digest(digest) =>
        {
            error(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                &format!("{digest:?} is not a sha256 or sha512 digest"),
            )
        }
        Some(Target::Blob { digest, .. }) => blob(s, digest, headers, head, client),
        Some(Target::Referrers { .. }) => referrers(head),
        Some(Target::Tags { name }) => tags(s, name, query, head),
        Some(Target::Catalog) => {
            let (n, last) = page_query(query);
            let page = s.names.catalog(n, last.as_deref());
            listing(
                serde_json::json!({"repositories": page.items}),
                &page,
                "/v2/_catalog",
                n,
                head,
            )
        }
    }
}

/// The referrers API: an empty index (nothing refers to what we serve).
fn referrers(head: bool) -> Response {
    let index = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    let digest = crate::digest::sha256(index.as_bytes());
    let body = bytes_body(&Bytes::from_static(index.as_bytes()), head);
    with_headers(
        body.into_response(),
        index.len() as u64,
        digest.as_ref(),
        "application/vnd.oci.image.index.v1+json",
    )
}

/// `tags/list` of `name`, a page as the query asks.
fn tags<ID: FsVerityHashValue>(
    s: &Inner<ID>,
    name: &str,
    query: Option<&str>,
    head: bool,
) -> Response {
    let (n, last) = page_query(query);
    match s.names.tags(name, n, last.as_deref()) {
        Some(page) => listing(
            serde_json::json!({"name": name, "tags": page.items}),
            &page,
            &format!("/v2/{name}/tags/list"),
            n,
            head,
        ),
        None => name_unknown(name),
    }
}

/// A manifest by tag (`?ns=` picks the registry) or by digest.
fn manifest<ID: FsVerityHashValue>(
    s: &Inner<ID>,
    name: &str,
    reference: &str,
    query: Option<&str>,
    head: bool,
) -> Response {
    let image = if reference.contains(':') {
        s.names
            .images_of(name)
            .find(|&i| s.images[i].digest.as_ref() == reference)
    } else {
        let ns = query_value(query, "ns");
        match s.names.image(name, reference, ns.as_deref()) {
            Lookup::Found(i) => Some(i),
            Lookup::Unknown => None,
            Lookup::Ambiguous(registries) => {
                return error(
                    StatusCode::NOT_FOUND,
                    "MANIFEST_UNKNOWN",
                    &format!(
                        "{name}:{reference} is served for several registries ({}): ask for REGISTRY/{name}:{reference} or add ?ns=REGISTRY",
                        registries.join(", ")
                    ),
                );
            }
        }
    };
    let Some(img) = image.map(|i| &s.images[i]) else {
        return error(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            &format!("no manifest {reference} under {name}"),
        );
    };
    with_headers(
        bytes_body(&img.manifest, head).into_response(),
        img.manifest.len() as u64,
        img.digest.as_ref(),
        &img.media_type,
    )
}

/// A blob, or the part `Range` asks for.
fn blob<ID: FsVerityHashValue>(
    s: &Arc<Inner<ID>>,
    digest: &str,
    headers: &HeaderMap,
    head: bool,
    client: Option<IpAddr>,
) -> Response {
    match s.blobs.get(digest) {
        Some(Blob::Bytes(b)) => blob_response(headers, b.len() as u64, digest, |first, count| {
            let part = b.slice(first as usize..(first + count) as usize);
            bytes_body(&part, head)
        }),
        Some(Blob::Layer(l)) if head => {
            blob_response(headers, l.served.size(), digest, |_, _| Body::empty())
        }
        Some(Blob::Layer(l)) => blob_response(headers, l.served.size(), digest, |first, count| {
            stream_layer(s.clone(), digest.to_string(), (first, count), client)
        }),
        None => error(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            &format!("no blob {digest}"),
        ),
    }
}

/// `n` and `last` of a listing request.
fn page_query(query: Option<&str>) -> (Option<usize>, Option<String>) {
    let n = query_value(query, "n").and_then(|n| n.parse().ok());
    (n, query_value(query, "last"))
}

/// A listing's JSON, with a `Link` to the next page when there is one.
fn listing(
    json: serde_json::Value,
    page: &Page<'_>,
    path: &str,
    n: Option<usize>,
    head: bool,
) -> Response {
    let body = Bytes::from(json.to_string());
    let len = body.len() as u64;
    let mut r = bytes_body(&body, head).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
    if let (Some(after), Some(n)) = (page.more_after, n) {
        let link = format!(
            "<{path}?n={n}&last={}>; rel=\"next\"",
            percent_encode(after)
        );
        if let Ok(v) = HeaderValue::from_str(&link) {
            h.insert(header::LINK, v);
        }
    }
    r
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests;
