use std::sync::Arc;

use composefs::fsverity::{Algorithm, Sha256HashValue};
use composefs::repository::RepositoryConfig;

use super::*;

/// A repository holding one stream: inline bytes, an external object, more inline bytes.
fn stream() -> (
    tempfile::TempDir,
    Arc<Repository<Sha256HashValue>>,
    std::path::PathBuf,
) {
    let t = tempfile::tempdir().unwrap();
    let (repo, _) = Repository::<Sha256HashValue>::init_path(
        rustix::fs::CWD,
        t.path().join("repo"),
        RepositoryConfig::new(Algorithm::for_hash::<Sha256HashValue>()).set_insecure(),
    )
    .unwrap();
    let repo = Arc::new(repo);
    let mut w = repo.create_stream(7).unwrap();
    w.write_inline(b"head");
    w.write_external(&vec![b'x'; 100_000]).unwrap();
    w.write_inline(b"tail");
    let id = repo.write_stream(w, "s", None).unwrap();
    let path = t.path().join("repo/objects").join(id.to_object_pathname());
    (t, repo, path)
}

fn le(data: &[u8], at: usize) -> usize {
    u64::from_le_bytes(data[at..at + 8].try_into().unwrap()) as usize
}

fn write(path: &std::path::Path, data: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(path, data).unwrap();
}

fn check(path: &std::path::Path) -> Result<()> {
    check_file::<Sha256HashValue>(&File::open(path).unwrap(), Check::Content)
}

#[test]
fn intact_streams_pass_and_read() {
    let (_t, repo, path) = stream();
    check(&path).unwrap();
    let mut r = open_stream(&repo, "s", None, Some(7), Check::Content).unwrap();
    let mut out = Vec::new();
    r.cat(&repo, &mut out).unwrap();
    assert_eq!(out.len(), 100_008);
}

#[test]
fn huge_ranges_are_refused_before_composefs_allocates() {
    let (_t, _repo, path) = stream();
    let pristine = std::fs::read(&path).unwrap();
    let info = le(&pristine, 16);
    // A high bit in the end of the info range, then of each section's range.
    for at in [24, info + 8, info + 24, info + 40, info + 56] {
        let mut data = pristine.clone();
        data[at + 6] ^= 0x01;
        write(&path, &data);
        let err = check(&path).unwrap_err();
        assert!(
            format!("{err:#}").contains("outside"),
            "offset {at}: {err:#}"
        );
    }
    let mut data = pristine.clone();
    data[0] = b'X';
    write(&path, &data);
    assert!(format!("{:#}", check(&path).unwrap_err()).contains("magic"));
}

#[test]
fn wild_chunk_lengths_are_refused() {
    // The data section replaced by a zstd frame holding one chunk word: an
    // inline length of 2^47 bytes (far more than follow), or a ref out of range.
    for word in [-(1i64 << 47), 5] {
        let (_t, _repo, path) = stream();
        let pristine = std::fs::read(&path).unwrap();
        let info = le(&pristine, 16);
        let data_start = le(&pristine, info + 32);
        let frame = zstd::encode_all(&word.to_le_bytes()[..], 1).unwrap();
        let mut data = pristine.clone();
        data.truncate(data_start);
        data.extend_from_slice(&frame);
        let end = data.len() as u64;
        data.extend_from_slice(&pristine[data_start..]);
        data[info + 40..info + 48].copy_from_slice(&end.to_le_bytes());
        write(&path, &data);
        let err = check(&path).unwrap_err();
        assert!(
            format!("{err:#}").contains("split-stream data is damaged"),
            "{word}: {err:#}"
        );
    }
}
