//! Test fixtures built in code: layer tars with the awkward cases, OCI
//! layouts around them, and helpers to run `cfs-export`.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest as _, Sha256};

/// One layer: its tar and how its blob is compressed.
pub type LayerSpec = (Vec<u8>, Kind);

/// How a fixture layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tar,
    Gzip,
    Zstd,
}

impl Kind {
    pub fn media_type(self) -> &'static str {
        match self {
            Kind::Tar => "application/vnd.oci.image.layer.v1.tar",
            Kind::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Kind::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    pub fn compress(self, tar: &[u8]) -> Vec<u8> {
        match self {
            Kind::Tar => tar.to_vec(),
            Kind::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(tar).unwrap();
                e.finish().unwrap()
            }
            Kind::Zstd => zstd::encode_all(tar, 1).unwrap(),
        }
    }

    pub fn from_media_type(mt: &str) -> Kind {
        if mt.ends_with("gzip") {
            Kind::Gzip
        } else if mt.ends_with("zstd") {
            Kind::Zstd
        } else {
            Kind::Tar
        }
    }
}

/// sha256 digest string, computed here independently of the code under test.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Deterministic pseudo-random bytes (xorshift), so big files do not compress away.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Builds one layer tar with GNU headers.
pub struct TarBuilder(tar::Builder<Vec<u8>>);

impl Default for TarBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TarBuilder {
    pub fn new() -> Self {
        let mut b = tar::Builder::new(Vec::new());
        b.mode(tar::HeaderMode::Deterministic);
        Self(b)
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    pub fn dir(mut self, path: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
        self.0.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    pub fn file(self, path: &str, data: &[u8]) -> Self {
        self.file_with_mode(path, data, 0o644)
    }

    pub fn file_with_mode(mut self, path: &str, data: &[u8], mode: u32) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }

    pub fn file_with_xattrs(mut self, path: &str, data: &[u8], xattrs: &[(&str, &[u8])]) -> Self {
        let pax: Vec<(String, &[u8])> = xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
            .collect();
        self.0
            .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))
            .unwrap();
        self.file(path, data)
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Link, 0o644, 0);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }

    /// Finish, optionally padding to GNU tar's 10240-byte record size.
    pub fn finish(self, record_padding: bool) -> Vec<u8> {
        let mut data = self.0.into_inner().unwrap();
        if record_padding {
            let padded = data.len().next_multiple_of(10240);
            data.resize(padded, 0);
        }
        data
    }
}

/// The three layers the core tests use: gzip, zstd and uncompressed, covering
/// big and empty files, symlinks, hardlinks, directories, xattrs, a path over
/// 100 bytes and a whiteout.
pub fn standard_layers() -> Vec<(Vec<u8>, Kind)> {
    let long = format!("usr/share/{}/{}", "d".repeat(60), "f".repeat(70));
    let l1 = TarBuilder::new()
        .dir("usr")
        .dir("usr/bin")
        .dir("usr/share")
        .dir(&format!("usr/share/{}", "d".repeat(60)))
        .dir("etc")
        .file("usr/bin/big", &noise(2 * 1024 * 1024 + 17, 1))
        .hardlink("usr/bin/big-hardlink", "usr/bin/big")
        .symlink("usr/bin/sh", "big")
        .file("etc/empty", b"")
        .file("etc/os-release", b"ID=fixture\n")
        .file_with_xattrs(
            "usr/bin/ping",
            &noise(9000, 2),
            &[
                ("user.fixture", b"yes"),
                (
                    "security.capability",
                    &[1, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                ),
            ],
        )
        .file(&long, b"a path longer than 100 bytes\n")
        .finish(true);
    let l2 = TarBuilder::new()
        .dir("etc")
        .file("etc/.wh.empty", b"")
        .dir("opt")
        .file("opt/data.bin", &noise(1536 * 1024, 3))
        .file("opt/empty-big-dir-marker", b"")
        .symlink(&format!("opt/{}", "l".repeat(110)), "data.bin")
        .finish(false);
    let l3 = TarBuilder::new()
        .dir("srv")
        .file("srv/hello.txt", b"hello from layer 3\n")
        .file("srv/medium", &noise(70_000, 4))
        .finish(true);
    vec![(l1, Kind::Gzip), (l2, Kind::Zstd), (l3, Kind::Tar)]
}

/// An image written to an OCI layout by [`write_layout`].
#[derive(Debug, Clone)]
pub struct Fixture {
    pub layout: PathBuf,
    pub tag: String,
    pub manifest_digest: String,
    pub manifest_bytes: Vec<u8>,
    pub config_digest: String,
    pub config_bytes: Vec<u8>,
    pub diff_ids: Vec<String>,
    pub tars: Vec<Vec<u8>>,
    pub blobs: Vec<(String, Vec<u8>)>,
}

fn put_blob(layout: &Path, data: &[u8]) -> String {
    let digest = sha256(data);
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(&digest["sha256:".len()..]), data).unwrap();
    digest
}

/// Config JSON in a deliberately non-canonical layout (3-space indent, odd key
/// order, an extra field), so any re-serialization would change its digest.
pub fn config_json(arch: &str, diff_ids: &[String]) -> Vec<u8> {
    let ids: Vec<String> = diff_ids.iter().map(|d| format!("\"{d}\"")).collect();
    let history: Vec<String> = (1..=diff_ids.len())
        .map(|i| format!("{{\"created_by\": \"fixture layer {i}\"}}"))
        .collect();
    format!(
        "{{\n   \"os\": \"linux\",\n   \"architecture\": \"{arch}\",\n   \"x-fixture\": \"original bytes matter\",\n   \"config\": {{\"Env\": [\"PATH=/usr/bin:/bin\"], \"Cmd\": [\"/bin/sh\"]}},\n   \"rootfs\": {{\"type\": \"layers\", \"diff_ids\": [{}]}},\n   \"history\": [{}]\n}}\n",
        ids.join(", "),
        history.join(", ")
    )
    .into_bytes()
}

fn image_blobs(layout: &Path, arch: &str, layers: &[(Vec<u8>, Kind)]) -> Fixture {
    let diff_ids: Vec<String> = layers.iter().map(|(t, _)| sha256(t)).collect();
    let config_bytes = config_json(arch, &diff_ids);
    let config_digest = put_blob(layout, &config_bytes);
    let mut blobs = Vec::new();
    let mut descs = Vec::new();
    for (tar, kind) in layers {
        let blob = kind.compress(tar);
        let digest = put_blob(layout, &blob);
        descs.push(format!(
            "{{\"mediaType\":\"{}\",\"digest\":\"{digest}\",\"size\":{}}}",
            kind.media_type(),
            blob.len()
        ));
        blobs.push((digest, blob));
    }
    let manifest_bytes = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{config_digest}\",\"size\":{}}},\"layers\":[{}],\"annotations\":{{\"org.example.fixture\":\"1\"}}}}",
        config_bytes.len(),
        descs.join(",")
    )
    .into_bytes();
    let manifest_digest = put_blob(layout, &manifest_bytes);
    Fixture {
        layout: layout.to_path_buf(),
        tag: String::new(),
        manifest_digest,
        manifest_bytes,
        config_digest,
        config_bytes,
        diff_ids,
        tars: layers.iter().map(|(t, _)| t.clone()).collect(),
        blobs,
    }
}

/// Write an OCI layout holding one image tagged `tag`.
pub fn write_layout(layout: &Path, tag: &str, arch: &str, layers: &[(Vec<u8>, Kind)]) -> Fixture {
    std::fs::create_dir_all(layout).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut f = image_blobs(layout, arch, layers);
    let index = format!(
        "{{\"schemaVersion\":2,\"manifests\":[{{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"{}\",\"size\":{},\"annotations\":{{\"org.opencontainers.image.ref.name\":\"{tag}\"}}}}]}}",
        f.manifest_digest,
        f.manifest_bytes.len()
    );
    std::fs::write(layout.join("index.json"), index).unwrap();
    f.tag = tag.to_string();
    f
}

/// Write a layout whose `tag` names a multi-platform index, one image per arch.
pub fn write_multiarch_layout(
    layout: &Path,
    tag: &str,
    images: &[(&str, Vec<LayerSpec>)],
) -> Vec<Fixture> {
    std::fs::create_dir_all(layout).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut fixtures = Vec::new();
    let mut entries = Vec::new();
    for (arch, layers) in images {
        let mut f = image_blobs(layout, arch, layers);
        f.tag = tag.to_string();
        entries.push(format!(
            "{{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"{}\",\"size\":{},\"platform\":{{\"architecture\":\"{arch}\",\"os\":\"linux\"}}}}",
            f.manifest_digest,
            f.manifest_bytes.len()
        ));
        fixtures.push(f);
    }
    let nested = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[{}]}}",
        entries.join(",")
    )
    .into_bytes();
    let nested_digest = put_blob(layout, &nested);
    let index = format!(
        "{{\"schemaVersion\":2,\"manifests\":[{{\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"digest\":\"{nested_digest}\",\"size\":{},\"annotations\":{{\"org.opencontainers.image.ref.name\":\"{tag}\"}}}}]}}",
        nested.len()
    );
    std::fs::write(layout.join("index.json"), index).unwrap();
    fixtures
}

/// The `cfs-export` binary under test.
pub fn bin() -> PathBuf {
    if let Ok(p) = std::env::var("CFS_EXPORT_BIN") {
        return p.into();
    }
    if let Some(p) = option_env!("CARGO_BIN_EXE_cfs-export") {
        return p.into();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/cfs-export")
}

/// Run `cfs-export --repo REPO ARGS…`.
pub fn cfs(repo: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--repo")
        .arg(repo)
        .args(args)
        .output()
        .expect("running cfs-export")
}

/// Run and require success, returning stdout.
pub fn cfs_ok(repo: &Path, args: &[&str]) -> String {
    let out = cfs(repo, args);
    assert!(
        out.status.success(),
        "cfs-export {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A fixture image written under `dir/src` and imported into `dir/repo`.
pub fn imported(dir: &Path, tag: &str, layers: &[LayerSpec]) -> (PathBuf, Fixture) {
    let repo = dir.join("repo");
    let f = write_layout(&dir.join("src"), tag, "amd64", layers);
    import(&repo, &f);
    (repo, f)
}

/// Import a fixture layout into `repo` under its tag.
pub fn import(repo: &Path, f: &Fixture) {
    cfs_ok(
        repo,
        &["import", &format!("oci:{}:{}", f.layout.display(), f.tag)],
    );
}

/// Every file under `dir` with its bytes and metadata that matters (mode, inode, mtime),
/// for "byte-for-byte as before" checks.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return out;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            if m.is_dir() {
                out.insert(rel, (Vec::new(), m.ino(), m.mtime()));
                stack.push(p);
            } else {
                out.insert(rel, (std::fs::read(&p).unwrap(), m.ino(), m.mtime()));
            }
        }
    }
    out
}

/// Decompress a layer blob by media type.
pub fn decompress(media_type: &str, blob: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    match Kind::from_media_type(media_type) {
        Kind::Tar => out.extend_from_slice(blob),
        Kind::Gzip => {
            flate2::read::MultiGzDecoder::new(blob)
                .read_to_end(&mut out)
                .unwrap();
        }
        Kind::Zstd => out = zstd::decode_all(blob).unwrap(),
    }
    out
}

/// Read a blob from an OCI layout.
pub fn read_blob(layout: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap()
}

/// The manifest an exported layout's index names for `tag`.
pub fn manifest_for(layout: &Path, tag: &str) -> (String, serde_json::Value) {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no {tag} in {index}"))
        .clone();
    let digest = entry["digest"].as_str().unwrap().to_string();
    let m = serde_json::from_slice(&read_blob(layout, &digest)).unwrap();
    (digest, m)
}

/// Assert two snapshots are equal, printing only what differs.
pub fn assert_same_tree(
    before: &BTreeMap<PathBuf, (Vec<u8>, u64, i64)>,
    after: &BTreeMap<PathBuf, (Vec<u8>, u64, i64)>,
) {
    let mut diffs = Vec::new();
    for (p, a) in before {
        match after.get(p) {
            None => diffs.push(format!("removed {}", p.display())),
            Some(b) if b.0 != a.0 => diffs.push(format!("content changed {}", p.display())),
            Some(b) if b != a => diffs.push(format!(
                "metadata changed {} {:?} -> {:?}",
                p.display(),
                (a.1, a.2),
                (b.1, b.2)
            )),
            _ => {}
        }
    }
    for p in after.keys().filter(|p| !before.contains_key(*p)) {
        diffs.push(format!("added {}", p.display()));
    }
    assert!(diffs.is_empty(), "tree changed:\n{}", diffs.join("\n"));
}

/// A composefs-booted bootc host laid out in a temp dir: `sysroot/` with
/// deployments (`state/deploy/<id>/<id>.origin`) and BLS entries, a kernel
/// command line and a `/run`, read by cfs-export through `--sysroot` and the
/// `CFS_EXPORT_CMDLINE` / `CFS_EXPORT_RUN` hooks.
pub struct HostTree {
    pub sysroot: PathBuf,
    pub cmdline: PathBuf,
    pub run: PathBuf,
}

impl HostTree {
    /// An empty host under `dir` (no deployments, not booted).
    pub fn new(dir: &Path) -> Self {
        let t = HostTree {
            sysroot: dir.join("sysroot"),
            cmdline: dir.join("cmdline"),
            run: dir.join("run"),
        };
        std::fs::create_dir_all(t.sysroot.join("state/deploy")).unwrap();
        std::fs::create_dir_all(t.sysroot.join("boot/loader/entries")).unwrap();
        std::fs::create_dir_all(&t.run).unwrap();
        std::fs::write(&t.cmdline, "BOOT_IMAGE=/vmlinuz root=UUID=1234 rw\n").unwrap();
        t
    }

    /// The repository bootc keeps: `sysroot/composefs`.
    pub fn repo(&self) -> PathBuf {
        self.sysroot.join("composefs")
    }

    /// A deployment ID (128 hex, as on SHA-512 hosts) derived from `seed`.
    pub fn id(seed: &str) -> String {
        let h = sha256(seed.as_bytes());
        let hex = &h["sha256:".len()..];
        format!("{hex}{hex}")
    }

    /// An origin file as bootc ≥ 1.16 writes it.
    pub fn origin(image: &str, manifest_digest: &str) -> String {
        format!(
            "[origin]\ncontainer-image-reference = ostree-unverified-image:{image}\n\n[boot]\nboot_type = bls\ndigest = {}\n\n[image]\nmanifest_digest = {manifest_digest}\n",
            "ab".repeat(32)
        )
    }

    /// A deployment with this origin text (`None`: no origin file) and a BLS
    /// entry; a lower `order` boots first.
    pub fn deploy(&self, id: &str, origin: Option<&str>, order: u32) {
        let dir = self.sysroot.join("state/deploy").join(id);
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        if let Some(o) = origin {
            std::fs::write(dir.join(format!("{id}.origin")), o).unwrap();
        }
        self.entry("entries", id, order);
    }

    fn entry(&self, sub: &str, id: &str, order: u32) {
        let dir = self.sysroot.join("boot/loader").join(sub);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("bootc_os-{order}.conf")),
            format!(
                "title Example OS {order}\nversion {order}\nsort-key {order:03}\nlinux /{id}/vmlinuz\ninitrd /{id}/initrd\noptions root=UUID=1234 rw composefs={id}\n"
            ),
        )
        .unwrap();
    }

    /// Boot `id`: `composefs=<id>` on the command line (`?` = insecure).
    pub fn boot(&self, id: &str) {
        std::fs::write(
            &self.cmdline,
            format!("BOOT_IMAGE=/{id}/vmlinuz root=UUID=1234 rw composefs=?{id}\n"),
        )
        .unwrap();
    }

    /// Stage `id` as `bootc upgrade` does: an entry in `entries.staged` and the marker in /run.
    pub fn stage(&self, id: &str, origin: &str) {
        let dir = self.sysroot.join("state/deploy").join(id);
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(dir.join(format!("{id}.origin")), origin).unwrap();
        self.entry("entries.staged", id, 0);
        std::fs::create_dir_all(self.run.join("composefs")).unwrap();
        std::fs::write(
            self.run.join("composefs/staged-deployment"),
            format!("{{\"depl_id\": \"{id}\", \"finalization_locked\": false}}"),
        )
        .unwrap();
    }

    /// `cfs-export --sysroot SYSROOT ARGS…` with this host's command line and /run.
    pub fn cfs(&self, sysroot: &Path, args: &[&str]) -> Output {
        Command::new(bin())
            .arg("--sysroot")
            .arg(sysroot)
            .args(args)
            .env("CFS_EXPORT_CMDLINE", &self.cmdline)
            .env("CFS_EXPORT_RUN", &self.run)
            .env("CFS_EXPORT_MOUNTINFO", "/nonexistent")
            .output()
            .expect("running cfs-export")
    }
}

impl HostTree {
    /// Three deployments of `name`, as after two `bootc upgrade`s: rollback
    /// (`manifests[0]`), booted (`[1]`), staged (`[2]`). Returns their IDs in that order.
    pub fn upgraded(&self, name: &str, manifests: &[String]) -> Vec<String> {
        let ids: Vec<String> = (1..=3)
            .map(|v| Self::id(&format!("deployment {v}")))
            .collect();
        let origin = |i: usize| Self::origin(&format!("docker://{name}"), &manifests[i]);
        self.deploy(&ids[1], Some(&origin(1)), 1);
        self.deploy(&ids[0], Some(&origin(0)), 2);
        self.stage(&ids[2], &origin(2));
        self.boot(&ids[1]);
        ids
    }
}

/// The biggest object file in a repository (the 2 MiB file of the standard layers).
pub fn biggest_object(repo: &Path) -> PathBuf {
    let mut all: Vec<(u64, PathBuf)> = Vec::new();
    for d in std::fs::read_dir(repo.join("objects")).unwrap() {
        let d = d.unwrap().path();
        if d.is_dir() {
            for f in std::fs::read_dir(&d).unwrap() {
                let p = f.unwrap().path();
                all.push((std::fs::metadata(&p).unwrap().len(), p));
            }
        }
    }
    all.sort();
    all.pop().unwrap().1
}

/// Edit a (possibly read-only) repository file in place.
pub fn rewrite(path: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    use std::os::unix::fs::PermissionsExt;
    let mut data = std::fs::read(path).unwrap();
    edit(&mut data);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(path, data).unwrap();
}

/// Is `name` on PATH?
pub fn have_tool(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file()))
}
