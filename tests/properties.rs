//! Property test: random file trees → layers → import → export give back the
//! same diff_ids and config digest, bit for bit.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use fixtures::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Node {
    Dir,
    File { size: usize, seed: u64 },
    Symlink(String),
    Hardlink,
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-z]{1,8}(\\.[a-z]{1,3})?",
        1 => "[a-z]{101,140}",
        1 => "\\.wh\\.[a-z]{1,6}",
    ]
}

fn node() -> impl Strategy<Value = Node> {
    prop_oneof![
        2 => Just(Node::Dir),
        4 => (prop_oneof![Just(0usize), 1usize..4096, 60_000usize..300_000], any::<u64>())
            .prop_map(|(size, seed)| Node::File { size, seed }),
        1 => "[a-z./]{1,30}".prop_map(Node::Symlink),
        1 => Just(Node::Hardlink),
    ]
}

/// A layer tar from random entries under `root/`, parents created first.
fn layer(entries: &[(Vec<String>, Node)], padded: bool) -> Vec<u8> {
    let mut b = TarBuilder::new();
    let mut dirs = BTreeSet::new();
    let mut files: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    for (path, node) in entries {
        let mut parent = String::from("root");
        if dirs.insert(parent.clone()) {
            b = b.dir(&parent);
        }
        for comp in &path[..path.len() - 1] {
            parent = format!("{parent}/{comp}");
            if seen.contains(&parent) && !dirs.contains(&parent) {
                break;
            }
            if dirs.insert(parent.clone()) {
                seen.insert(parent.clone());
                b = b.dir(&parent);
            }
        }
        let full = format!("{parent}/{}", path[path.len() - 1]);
        if !seen.insert(full.clone()) || !dirs.contains(&parent) {
            continue;
        }
        b = match node {
            Node::Dir => {
                dirs.insert(full.clone());
                b.dir(&full)
            }
            Node::File { size, seed } => {
                files.push(full.clone());
                b.file(&full, &noise(*size, *seed))
            }
            Node::Symlink(target) => b.symlink(&full, target),
            Node::Hardlink => match files.first() {
                Some(target) => b.hardlink(&full, target),
                None => b.file(&full, b""),
            },
        };
    }
    b.finish(padded)
}

fn layers() -> impl Strategy<Value = Vec<LayerSpec>> {
    let entries = prop::collection::vec((prop::collection::vec(name(), 1..4), node()), 0..24);
    let kind = prop_oneof![Just(Kind::Tar), Just(Kind::Gzip), Just(Kind::Zstd)];
    prop::collection::vec((entries, kind, any::<bool>()), 1..4).prop_map(|ls| {
        ls.into_iter()
            .map(|(entries, kind, padded)| (layer(&entries, padded), kind))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn import_export_round_trip(layers in layers(), arch in prop_oneof![Just("amd64"), Just("arm64"), Just("s390x")]) {
        let t = tempfile::tempdir().unwrap();
        let repo = t.path().join("repo");
        let f = write_layout(&t.path().join("src"), "prop", arch, &layers);
        import(&repo, &f);
        for compression in ["original", "none"] {
            let out = t.path().join(format!("out-{compression}"));
            cfs_ok(&repo, &["export", "prop", "--compression", compression, "--to", &format!("oci:{}", out.display())]);
            let (digest, manifest) = manifest_for(&out, "prop");
            prop_assert_eq!(manifest["config"]["digest"].as_str().unwrap(), f.config_digest.as_str());
            prop_assert_eq!(read_blob(&out, &f.config_digest), f.config_bytes.clone());
            for (i, l) in manifest["layers"].as_array().unwrap().iter().enumerate() {
                let blob = read_blob(&out, l["digest"].as_str().unwrap());
                let tar = decompress(l["mediaType"].as_str().unwrap(), &blob);
                prop_assert_eq!(sha256(&tar), f.diff_ids[i].clone());
            }
            if compression == "none" && layers.iter().all(|(_, k)| *k == Kind::Tar) {
                prop_assert_eq!(digest, f.manifest_digest.clone());
            }
        }
    }
}
