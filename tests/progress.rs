//! Issue 13, defect 8: progress events are keyed by layer blob (diff_id and
//! compression), so one layer exported at two compressions gives two
//! separate, complete event sequences.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use composefs_export::export::{self, ExportOptions, ImageSelection};
use composefs_export::progress::{LayerKey, Progress, ProgressHandle};
use composefs_export::repo::{self, RepoLocation};
use composefs_export::with_repo;
use fixtures::*;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Started(String, u64),
    Advanced(String, u64),
    Finished(String),
    Skipped(String, u64),
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl Progress for Recorder {
    fn layer_started(&self, _image: &str, layer: &LayerKey, total: u64) {
        self.0
            .lock()
            .unwrap()
            .push(Event::Started(layer.to_string(), total));
    }
    fn layer_advanced(&self, layer: &LayerKey, bytes: u64) {
        self.0
            .lock()
            .unwrap()
            .push(Event::Advanced(layer.to_string(), bytes));
    }
    fn layer_finished(&self, layer: &LayerKey) {
        self.0
            .lock()
            .unwrap()
            .push(Event::Finished(layer.to_string()));
    }
    fn layer_skipped(&self, _image: &str, layer: &LayerKey, total: u64) {
        self.0
            .lock()
            .unwrap()
            .push(Event::Skipped(layer.to_string(), total));
    }
}

fn export_all(repo: &std::path::Path, out: &std::path::Path) -> Vec<Event> {
    let recorder = Arc::new(Recorder::default());
    let opts = ExportOptions {
        progress: ProgressHandle(recorder.clone()),
        jobs: 3,
        ..ExportOptions::default()
    };
    let repo = repo::open(&RepoLocation::Path(repo.to_path_buf())).unwrap();
    with_repo!(&repo, r => {
        let images = export::load_images(r, &ImageSelection::All, None).unwrap();
        export::export_to_oci_dir(r, &images, out, &opts).unwrap();
    });
    let events = recorder.0.lock().unwrap().clone();
    events
}

#[test]
fn one_layer_at_two_compressions_has_two_event_sequences() {
    let t = tempfile::tempdir().unwrap();
    let repo = t.path().join("repo");
    let shared = TarBuilder::new()
        .file("big", &noise(9 << 20, 3))
        .finish(true);
    let top = TarBuilder::new().file("top", b"top\n").finish(false);
    let a = write_layout(
        &t.path().join("a"),
        "a:1",
        "amd64",
        &[(shared.clone(), Kind::Gzip)],
    );
    let b = write_layout(
        &t.path().join("b"),
        "b:1",
        "amd64",
        &[(shared.clone(), Kind::Zstd), (top.clone(), Kind::Tar)],
    );
    import(&repo, &a);
    import(&repo, &b);
    let short = &a.diff_ids[0][7..19];
    let keys = [
        (format!("{short} gzip:6"), shared.len() as u64),
        (format!("{short} zstd:3"), shared.len() as u64),
        (b.diff_ids[1][7..19].to_string(), top.len() as u64),
    ];

    let out = t.path().join("out");
    let events = export_all(&repo, &out);
    for (key, size) in &keys {
        let mine: Vec<&Event> = events
            .iter()
            .filter(|e| match e {
                Event::Started(k, _)
                | Event::Advanced(k, _)
                | Event::Finished(k)
                | Event::Skipped(k, _) => k == key,
            })
            .collect();
        assert_eq!(
            mine.first(),
            Some(&&Event::Started(key.clone(), *size)),
            "{key}: {mine:?}"
        );
        assert_eq!(
            mine.last(),
            Some(&&Event::Finished(key.clone())),
            "{key}: {mine:?}"
        );
        let advanced: u64 = mine
            .iter()
            .map(|e| match e {
                Event::Advanced(_, n) => *n,
                _ => 0,
            })
            .sum();
        assert_eq!(advanced, *size, "{key}: every byte reported once");
        assert_eq!(
            mine.len(),
            2 + mine
                .iter()
                .filter(|e| matches!(e, Event::Advanced(..)))
                .count()
        );
    }
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Started(..)))
            .count(),
        3,
        "{events:?}"
    );

    // Again into the same layout: every blob is present, each skipped once.
    let again = export_all(&repo, &out);
    let mut skipped: Vec<Event> = again.clone();
    skipped.sort_by_key(|e| format!("{e:?}"));
    let mut want: Vec<Event> = keys
        .iter()
        .map(|(k, n)| Event::Skipped(k.clone(), *n))
        .collect();
    want.sort_by_key(|e| format!("{e:?}"));
    assert_eq!(skipped, want);
}
