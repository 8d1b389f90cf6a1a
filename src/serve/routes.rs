//! The routes: `/v2/`, the manifest and the blobs of the one image under the
//! random prefix, GET and HEAD only (404 for anything else; 405 for other
//! methods, from the router).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use composefs::fsverity::FsVerityHashValue;
use oci_spec::image::MediaType;

use super::body::stream_layer;
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
    respond(&s, &path, Method::HEAD)
}

pub(super) async fn get_path<ID: FsVerityHashValue>(
    State(s): State<Arc<Inner<ID>>>,
    Path(path): Path<String>,
) -> Response {
    respond(&s, &path, Method::GET)
}

/// In-memory bytes as a response body (none for HEAD).
fn bytes_body(bytes: &Bytes, head: bool) -> Body {
    match head {
        true => Body::empty(),
        false => Body::from(bytes.clone()),
    }
}

fn respond<ID: FsVerityHashValue>(s: &Arc<Inner<ID>>, path: &str, method: Method) -> Response {
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
            Some(Blob::Bytes(b)) => with_headers(
                bytes_body(b, head).into_response(),
                b.len() as u64,
                digest,
                None,
            ),
            Some(Blob::Layer(l)) if head => {
                with_headers(Body::empty().into_response(), l.served.size(), digest, None)
            }
            Some(Blob::Layer(l)) => {
                let body = stream_layer(s.clone(), digest.to_string());
                with_headers(body.into_response(), l.served.size(), digest, None)
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
