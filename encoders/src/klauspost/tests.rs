//! Reproduces the recorded real-encoder vectors byte for byte.

use super::{PgzipWriter, Version};
use std::io::Write;
use std::path::{Path, PathBuf};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/compress-vectors");

fn compress(data: &[u8], version: Version, workers: usize, chunk: usize) -> Vec<u8> {
    let mut w = PgzipWriter::new(Vec::new(), version, workers).expect("new");
    for c in data.chunks(chunk.max(1)) {
        w.write_all(c).expect("write");
    }
    w.finish().expect("finish")
}

fn gen_inputs() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cfs-pgzip-vectors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let status = std::process::Command::new("python3")
        .arg(Path::new(VECTORS).join("gen_inputs.py"))
        .arg(&dir)
        .arg("--check")
        .status()
        .expect("python3");
    assert!(status.success(), "gen_inputs.py failed");
    dir
}

#[test]
fn reproduces_vectors() {
    let dir = gen_inputs();
    let cases = [
        (Version::V1_15_10, "pgzip-B"),
        (Version::V1_18_2, "pgzip-D"),
        (Version::V1_18_2, "pgzip-E"),
    ];
    let mut checked = 0;
    for input in ["tiny.tar", "text.tar", "mixed.tar", "empty.tar"] {
        let data = std::fs::read(dir.join(input)).expect("input");
        for (version, enc) in cases {
            let want = std::fs::read(Path::new(VECTORS).join(format!("{input}.{enc}.gz")))
                .expect("vector");
            for (workers, chunk) in [(1, 32768), (3, 1000), (3, usize::MAX), (2, 1 << 20)] {
                let got = compress(&data, version, workers, chunk);
                assert!(
                    got == want,
                    "{input} {enc} workers {workers} chunk {chunk}: {} bytes, want {}",
                    got.len(),
                    want.len()
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 48);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn chunking_and_workers_do_not_change_output() {
    let mut data = Vec::new();
    let mut x = 1u32;
    for i in 0..(7 << 20) + 12345u32 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        data.push(if i % 7 < 4 {
            b"abcdefgh"[(x >> 29) as usize]
        } else {
            (x >> 24) as u8
        });
    }
    for version in Version::ALL {
        let a = compress(&data, version, 1, 1 << 30);
        for (workers, chunk) in [(1, 7), (2, 65535), (4, 1 << 20), (3, (1 << 20) + 1)] {
            assert!(compress(&data, version, workers, chunk) == a);
        }
    }
}

#[test]
fn version_ids_round_trip() {
    for v in Version::ALL {
        assert_eq!(Version::from_id(v.id()), Some(v));
        assert!(!v.describe().is_empty());
    }
    assert_eq!(Version::from_id("pgzip-0"), None);
}

/// Blocks kept by sequence number, counting what was made and what copied.
#[derive(Default)]
struct Store {
    blocks: std::sync::Mutex<std::collections::HashMap<u64, std::sync::Arc<[u8]>>>,
    made: std::sync::atomic::AtomicUsize,
    copied: std::sync::atomic::AtomicUsize,
}

struct StoreClaim(std::sync::Arc<Store>, u64);

impl super::BlockClaim for StoreClaim {
    fn fulfil(self: Box<Self>, compressed: &[u8]) {
        self.0
            .made
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut blocks = self.0.blocks.lock().expect("lock");
        blocks.insert(self.1, compressed.into());
    }
}

struct Shared(std::sync::Arc<Store>);

impl super::SharedBlocks for Shared {
    fn claim(&self, seq: u64) -> super::Claim {
        match self.0.blocks.lock().expect("lock").get(&seq) {
            Some(b) => {
                self.0
                    .copied
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                super::Claim::Ready(b.clone())
            }
            None => super::Claim::Mine(Box::new(StoreClaim(self.0.clone(), seq))),
        }
    }
}

fn compress_shared(data: &[u8], workers: usize, store: &std::sync::Arc<Store>) -> Vec<u8> {
    let shared: std::sync::Arc<dyn super::SharedBlocks> =
        std::sync::Arc::new(Shared(store.clone()));
    let mut w =
        PgzipWriter::sharing(Vec::new(), Version::V1_15_10, workers, Some(shared)).expect("new");
    for c in data.chunks(100_000) {
        w.write_all(c).expect("write");
    }
    w.finish().expect("finish")
}

#[test]
fn shared_blocks_are_made_once_and_copied_in_order() {
    use std::sync::atomic::Ordering::SeqCst;
    let data: Vec<u8> = (0..(5u32 << 20) + 777)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 27) as u8 ^ (i % 251) as u8)
        .collect();
    let want = compress(&data, Version::V1_15_10, 1, 1 << 30);
    let store = std::sync::Arc::new(Store::default());
    // The first writer makes all six blocks; the others copy them.
    assert!(compress_shared(&data, 2, &store) == want);
    assert_eq!((store.made.load(SeqCst), store.copied.load(SeqCst)), (6, 0));
    for workers in [1, 3] {
        assert!(compress_shared(&data, workers, &store) == want);
    }
    assert_eq!(
        (store.made.load(SeqCst), store.copied.load(SeqCst)),
        (6, 12)
    );
    // Half the blocks gone: they are made again, the rest copied.
    store
        .blocks
        .lock()
        .expect("lock")
        .retain(|seq, _| seq % 2 == 0);
    assert!(compress_shared(&data, 2, &store) == want);
    assert_eq!(
        (store.made.load(SeqCst), store.copied.load(SeqCst)),
        (9, 15)
    );
    // A copied block is what is written: one wrong block, wrong output.
    store
        .blocks
        .lock()
        .expect("lock")
        .insert(2, vec![0u8; 3].into());
    assert!(compress_shared(&data, 2, &store) != want);
}

/// Runs a full writer recording every block mark, then resumes at each
/// chosen block: the header and the blocks before it from the full run,
/// then the resumed writer's output, are the full output.
fn check_resume(data: &[u8], version: Version, workers: usize, at: &[u64]) {
    use super::{BlockMark, BlockStart, BLOCK_SIZE, TAIL_SIZE};
    let marks = std::sync::Arc::new(std::sync::Mutex::new(Vec::<BlockMark>::new()));
    let mut w = PgzipWriter::new(Vec::new(), version, workers).expect("new");
    let seen = marks.clone();
    w.on_block(Box::new(move |inner: &Vec<u8>, mark| {
        assert_eq!(inner.len() as u64, mark.offset, "block {}", mark.seq);
        seen.lock().expect("lock").push(mark);
    }));
    for c in data.chunks(300_000) {
        w.write_all(c).expect("write");
    }
    let full = w.finish().expect("finish");
    assert!(full == compress(data, version, 1, 1 << 30));
    let marks = marks.lock().expect("lock").clone();
    // One mark per block, the last one possibly empty, in order.
    assert_eq!(marks.len(), data.len() / BLOCK_SIZE + 1);
    for (i, m) in marks.iter().enumerate() {
        assert_eq!(m.seq, i as u64);
        let before = &data[..i * BLOCK_SIZE];
        assert_eq!(m.crc, crc32fast::hash(before), "crc before block {i}");
    }
    for &k in at {
        let mark = marks[k as usize];
        let input = k as usize * BLOCK_SIZE;
        let tail = data[input.saturating_sub(if k == 0 { 0 } else { TAIL_SIZE })..input].to_vec();
        let start = BlockStart {
            seq: k,
            tail,
            crc: mark.crc,
            offset: mark.offset,
        };
        let mut w = PgzipWriter::resume(Vec::new(), version, workers, None, start).expect("resume");
        let later = std::sync::Arc::new(std::sync::Mutex::new(Vec::<BlockMark>::new()));
        let seen = later.clone();
        w.on_block(Box::new(move |_, mark| {
            seen.lock().expect("lock").push(mark)
        }));
        for c in data[input..].chunks(123_457) {
            w.write_all(c).expect("write");
        }
        let rest = w.finish().expect("finish");
        let mut joined = full[..mark.offset as usize].to_vec();
        joined.extend_from_slice(&rest);
        assert!(
            joined == full,
            "{} bytes resumed at block {k} of {} (workers {workers}): {} + {} bytes, want {}",
            data.len(),
            marks.len(),
            mark.offset,
            rest.len(),
            full.len()
        );
        // The resumed writer reports the same marks from there on.
        assert!(*later.lock().expect("lock") == marks[k as usize..]);
    }
}

fn noisy(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 27) as u8 ^ (i % 251) as u8)
        .collect()
}

#[test]
fn a_writer_resumed_at_a_block_writes_the_rest_of_the_stream() {
    // 5 blocks and a bit, and exactly 4 MiB (an empty last block).
    let odd = noisy((5 << 20) + 4321);
    let exact = noisy(4 << 20);
    for version in Version::ALL {
        for workers in [1, 3] {
            check_resume(&odd, version, workers, &[0, 1, 3, 5]);
            check_resume(&exact, version, workers, &[0, 1, 2, 3, 4]);
        }
    }
    check_resume(b"less than a block", Version::V1_15_10, 2, &[0]);
}

#[test]
fn a_resumed_writer_wants_the_whole_tail() {
    let start = super::BlockStart {
        seq: 2,
        tail: vec![0; 10],
        crc: 0,
        offset: 0,
    };
    let err = PgzipWriter::resume(Vec::new(), Version::V1_18_2, 1, None, start)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("last 16384 bytes"), "{err}");
}
