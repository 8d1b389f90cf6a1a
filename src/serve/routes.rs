//! The routes: `/v2/`, the manifest and the blobs of the one image under the
//! random prefix, GET and HEAD only (404 for anything else; 405 for other
//! methods, from the router).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use composefs::fsverity::FsVerityHashValue;
use oci_spec::image::MediaType;

use super::body::stream_layer;
use super::ranges::Answer;
use super::{Blob, Inner, NAME, TAG};

pub(super) async fn api_version() -> impl IntoResponse {
    (
        [("Docker-Distribution-API-Version", "registry/2.0")],
        Body::from("{}"),
    )
}

/// What a `/v2/…` path names under our prefix.
enum Target<'a> {
    Manifest(&'a str),
    Blob(&'a str),
}

fn parse<'a>(prefix: &str, path: &'a str) -> Option<Target<'a>> {
    let rest = path.strip_prefix(prefix)?.strip_prefix('/')?;
    let rest = rest.strip_prefix(NAME)?.strip_prefix('/')?;
    if let Some(reference) = rest.strip_prefix("manifests/") {
        return Some(Target::Manifest(reference));
    }
    rest.strip_prefix("blobs/").map(Target::Blob)
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

fn with_headers(mut r: Response, len: u64, digest: &str, media_type: Option<&str>) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(digest) {
        h.insert("Docker-Content-Digest", v);
    }
    if let Some(Ok(v)) = media_type.map(HeaderValue::from_str) {
        h.insert(header::CONTENT_TYPE, v);
    }
    r
}

pub(super) async fn head_path<ID: FsVerityHashValue>(
    State(s): State<Arc<Inner<ID>>>,
    Path(path): Path<String>,
) -> Response {
    respond(&s, &path, Method::HEAD, &HeaderMap::new())
}

pub(super) async fn get_path<ID: FsVerityHashValue>(
    State(s): State<Arc<Inner<ID>>>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond(&s, &path, Method::GET, &headers)
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
    let body = match answer {
        Answer::Unsatisfiable => Body::empty(),
        _ => body(first, count),
    };
    let count = if answer == Answer::Unsatisfiable {
        0
    } else {
        count
    };
    let mut r = with_headers(body.into_response(), count, digest, None);
    answer.apply(&mut r, len);
    r
}

fn respond<ID: FsVerityHashValue>(
    s: &Arc<Inner<ID>>,
    path: &str,
    method: Method,
    headers: &HeaderMap,
) -> Response {
    let head = method == Method::HEAD;
    match parse(&s.prefix, path) {
        Some(Target::Manifest(r)) if r == TAG || r == s.manifest_digest.as_ref() => {
            let media_type = MediaType::ImageManifest.to_string();
            with_headers(
                bytes_body(&s.manifest, head).into_response(),
                s.manifest.len() as u64,
                s.manifest_digest.as_ref(),
                Some(&media_type),
            )
        }
        Some(Target::Blob(digest)) => match s.blobs.get(digest) {
            Some(Blob::Bytes(b)) => {
                blob_response(headers, b.len() as u64, digest, |first, count| {
                    let part = b.slice(first as usize..(first + count) as usize);
                    bytes_body(&part, head)
                })
            }
            Some(Blob::Layer(l)) if head => {
                blob_response(headers, l.served.size(), digest, |_, _| Body::empty())
            }
            Some(Blob::Layer(l)) => {
                blob_response(headers, l.served.size(), digest, |first, count| {
                    stream_layer(s.clone(), digest.to_string(), first, count)
                })
            }
            None => not_found(),
        },
        _ => not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_under_the_prefix_only() {
        let p = "0123abcd";
        assert!(matches!(
            parse(p, "0123abcd/image/manifests/cfs-export"),
            Some(Target::Manifest("cfs-export"))
        ));
        assert!(matches!(
            parse(p, "0123abcd/image/blobs/sha256:ab"),
            Some(Target::Blob("sha256:ab"))
        ));
        for bad in [
            "image/manifests/cfs-export",
            "0123abce/image/manifests/cfs-export",
            "0123abcd/other/manifests/x",
            "0123abcd/image/tags/list",
            "0123abcdimage/manifests/x",
        ] {
            assert!(parse(p, bad).is_none(), "{bad}");
        }
    }
}
