//! Tests of `routes`.

use super::*;

#[test]
fn paths_as_the_distribution_spec_names_them() {
    assert_eq!(
        parse("0123abcd/image/manifests/cfs-export"),
        Some(Target::Manifest {
            name: "0123abcd/image",
            reference: "cfs-export"
        })
    );
    assert_eq!(
        parse("fedora/fedora-bootc/blobs/sha256:ab"),
        Some(Target::Blob {
            name: "fedora/fedora-bootc",
            digest: "sha256:ab"
        })
    );
    assert_eq!(
        parse("a/b/c/tags/list"),
        Some(Target::Tags { name: "a/b/c" })
    );
    assert_eq!(parse("_catalog"), Some(Target::Catalog));
    assert_eq!(
        parse("x/referrers/sha256:00"),
        Some(Target::Referrers {
            name: "x",
            digest: "sha256:00"
        })
    );
    // A name may itself hold a marker word.
    assert_eq!(
        parse("blobs/manifests/manifests/t"),
        Some(Target::Manifest {
            name: "blobs/manifests",
            reference: "t"
        })
    );
    for bad in [
        "",
        "image",
        "manifests/x",
        "/manifests/x",
        "x/manifests/",
        "x/blobs/a/b",
    ] {
        assert_eq!(parse(bad), None, "{bad}");
    }
}

#[test]
fn digests_and_queries() {
    assert!(is_digest(&format!("sha256:{}", "a".repeat(64))));
    assert!(is_digest(&format!("sha512:{}", "0".repeat(128))));
    for bad in [
        "sha256:",
        "sha256:AB",
        "md5:00",
        &format!("sha256:{}", "g".repeat(64)),
    ] {
        assert!(!is_digest(bad), "{bad}");
    }
    let q = Some("n=2&last=fedora%2Ffedora-bootc&ns=quay.io");
    assert_eq!(query_value(q, "n").as_deref(), Some("2"));
    assert_eq!(
        query_value(q, "last").as_deref(),
        Some("fedora/fedora-bootc")
    );
    assert_eq!(query_value(q, "ns").as_deref(), Some("quay.io"));
    assert_eq!(query_value(q, "x"), None);
    assert_eq!(percent_encode("a/b c"), "a%2Fb%20c");
}

#[test]
fn paths_and_queries_decode_alike_but_for_plus_and_stray_percent() {
    assert_eq!(decode_path("demo/os%2Fx+y").as_deref(), Some("demo/os/x+y"));
    assert_eq!(percent_decode("demo/os%2Fx+y"), "demo/os/x y");
    for bad in ["%ff", "a%zz", "a%2"] {
        assert_eq!(decode_path(bad), None, "{bad}");
    }
    assert_eq!(percent_decode("a%zz"), "a%zz");
}
