//! Issue 19: a rebuild resumed at a restart point writes exactly the tar's
//! bytes from there on and still proves the whole layer; a restart point
//! that does not belong to the layer fails the proof.
#![allow(clippy::unwrap_used)]

use composefs_export::export::{self, ImageSelection};
use composefs_export::layer::{self, Restart, RestartPoint, RESTART_SPACING};
use composefs_export::repo::{self, RepoLocation};
use composefs_export::with_repo;
use fixtures::*;

#[test]
fn resumed_rebuilds_match_the_tar_and_are_proven() {
    let t = tempfile::tempdir().unwrap();
    // Large objects and small inline files, past several restart spacings.
    let mut tar = TarBuilder::new().dir("usr");
    for i in 0..6u64 {
        tar = tar
            .file(&format!("usr/big{i}"), &noise(5 << 20, i))
            .file(&format!("usr/small{i}"), format!("small {i}\n").as_bytes());
    }
    let tar = tar.finish(true);
    let other = TarBuilder::new()
        .file("x", &noise(20 << 20, 99))
        .finish(true);
    let (repo, _) = imported(
        t.path(),
        "app:1",
        &[(tar.clone(), Kind::Tar), (other, Kind::Gzip)],
    );
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
