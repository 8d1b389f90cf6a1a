//! Issue 19: a rebuild resumed at a restart point writes exactly the tar's
//! bytes from there on and still proves the whole layer; a restart point
//! that does not belong to the layer fails the proof. The same for a
//! reproduced pgzip blob resumed at one of its blocks.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use composefs_export::compress::pgzip_restart::{rebuild_pgzip, BlobPoint, BlobRestart, PgzipBlob};
use composefs_export::compress::reproduce::Reproducer;
use composefs_export::compress::Compression;
use composefs_export::export::{self, ImageSelection};
use composefs_export::progress::{LayerKey, NoProgress};
use composefs_export::repo::layer::{self, Restart, RestartPoint, RESTART_SPACING};
use composefs_export::repo::{self, RepoLocation};
use composefs_export::with_repo;
use fixtures::*;

/// An image `app:1` in a repository under `dir`: a tar of large objects and
/// small inline files, past several restart spacings (returned), and another
/// layer (stored as `other`) to take wrong restart points from.
fn two_layers(dir: &std::path::Path, other: Kind) -> (Vec<u8>, std::path::PathBuf) {
    let mut tar = TarBuilder::new().dir("usr");
    for i in 0..6u64 {
        tar = tar
            .file(&format!("usr/big{i}"), &noise(5 << 20, i))
            .file(&format!("usr/small{i}"), format!("small {i}\n").as_bytes());
    }
    let tar = tar.finish(true);
    let x = TarBuilder::new()
        .file("x", &noise(20 << 20, 99))
        .finish(true);
    let (repo, _) = imported(dir, "app:1", &[(tar.clone(), Kind::Tar), (x, other)]);
    (tar, repo)
}

#[test]
fn resumed_rebuilds_match_the_tar_and_are_proven() {
    let t = tempfile::tempdir().unwrap();
    let (tar, repo) = two_layers(t.path(), Kind::Gzip);
    let repo = repo::open(&RepoLocation::Path(repo)).unwrap();
    with_repo!(&repo, r => {
        let images = export::load_images(r, &ImageSelection::All, None).unwrap();
        let img = &images[0];
        let mut points: Vec<RestartPoint> = Vec::new();
        let mut record = |p: RestartPoint| points.push(p);
        let restart = Restart { from: None, record: Some(&mut record) };
        let (full, size) = layer::rebuild_from(r, "app:1", &img.layers[0], Vec::new(), restart).unwrap();
        assert_eq!(full, tar);
        assert_eq!(size, tar.len() as u64);
        assert!(points.len() >= 3, "{} restart points", points.len());
        let mut last = 0;
        for p in &points {
            assert!(p.offset >= last + RESTART_SPACING.min(p.offset));
            last = p.offset;
            let restart = Restart { from: Some(p.clone()), record: None };
            let (tail, size) =
                layer::rebuild_from(r, "app:1", &img.layers[0], Vec::new(), restart).unwrap();
            assert_eq!(size, tar.len() as u64);
            assert!(tail == tar[p.offset as usize..], "resumed at {}", p.offset);
        }

        // The other layer's points do not prove this one.
        let mut foreign: Vec<RestartPoint> = Vec::new();
        let mut record = |p: RestartPoint| foreign.push(p);
        let restart = Restart { from: None, record: Some(&mut record) };
        layer::rebuild_from(r, "app:1", &img.layers[1], std::io::sink(), restart).unwrap();
        let restart = Restart { from: Some(foreign[0].clone()), record: None };
        let err = layer::rebuild_from(r, "app:1", &img.layers[0], std::io::sink(), restart)
            .unwrap_err();
        assert!(format!("{err:#}").contains("hashes to"), "{err:#}");
    });
}

/// A blob rebuild's output, and the whole blob's digest and size.
type Rebuilt = anyhow::Result<(Vec<u8>, oci_spec::image::Digest, u64)>;

/// The layer's tar through pgzip from `from` (or 0), recording points.
fn pgzip_from<ID: composefs::fsverity::FsVerityHashValue>(
    r: &composefs::repository::Repository<ID>,
    layer: &composefs_export::repo::image::StoredLayer<ID>,
    from: Option<BlobPoint>,
) -> (Rebuilt, Vec<BlobPoint>) {
    let Some(Reproducer::Pgzip(version)) = Reproducer::from_id("pgzip-1.15.10") else {
        panic!("pgzip-1.15.10 is a reproducer")
    };
    let key = LayerKey {
        diff_id: layer.diff_id.clone(),
        compression: Compression::Reproduced(Reproducer::Pgzip(version)),
    };
    let blob = PgzipBlob {
        version,
        workers: 2,
        shared: None,
        progress: (&NoProgress, &key),
    };
    let points = Arc::new(Mutex::new(Vec::new()));
    let seen = points.clone();
    let restart = BlobRestart {
        from,
        record: Some(Box::new(move |p| seen.lock().unwrap().push(p))),
    };
    let result = rebuild_pgzip(r, "app:1", layer, blob, Vec::new(), restart);
    let points = points.lock().unwrap().clone();
    (result, points)
}

#[test]
fn resumed_pgzip_blobs_match_the_blob_and_are_proven() {
    let t = tempfile::tempdir().unwrap();
    let (tar, repo) = two_layers(t.path(), Kind::Tar);
    // The blob, made independently: the whole tar through the reproducer.
    let mut w = Reproducer::from_id("pgzip-1.15.10")
        .unwrap()
        .writer(Vec::new(), 1)
        .unwrap();
    w.write_all(&tar).unwrap();
    let want = w.finish().unwrap();
    let want_digest = composefs_export::digest::sha256(&want);
    let repo = repo::open(&RepoLocation::Path(repo)).unwrap();
    with_repo!(&repo, r => {
        let images = export::load_images(r, &ImageSelection::All, None).unwrap();
        let img = &images[0];
        let (full, points) = pgzip_from(r, &img.layers[0], None);
        let (full, digest, size) = full.unwrap();
        assert!(full == want);
        assert_eq!((digest.clone(), size), (want_digest.clone(), want.len() as u64));
        assert!(points.len() >= 3, "{} blob points", points.len());
        for p in &points {
            assert!(p.tar_offset() + 16384 <= p.block << 20, "tar point after the dictionary");
            let (resumed, later) = pgzip_from(r, &img.layers[0], Some(p.clone()));
            let (rest, digest, size) = resumed.unwrap();
            assert_eq!((&digest, size), (&want_digest, want.len() as u64), "resumed at {}", p.offset);
            assert!(rest == want[p.offset as usize..], "resumed at {}", p.offset);
            // It records the points after its start, as the full run did.
            let offsets = |ps: &[BlobPoint]| ps.iter().map(|q| q.offset).collect::<Vec<_>>();
            let after: Vec<BlobPoint> = points.iter().filter(|q| q.offset > p.offset).cloned().collect();
            assert_eq!(offsets(&later), offsets(&after));
        }

        // The other layer's points do not prove this blob: the tar or the
        // blob fails its proof.
        let (_, foreign) = pgzip_from(r, &img.layers[1], None);
        assert!(!foreign.is_empty());
        for p in foreign {
            match pgzip_from(r, &img.layers[0], Some(p)).0 {
                Ok((_, digest, _)) => assert_ne!(digest, want_digest),
                Err(e) => assert!(format!("{e:#}").contains("hashes to"), "{e:#}"),
            }
        }
    });
}
