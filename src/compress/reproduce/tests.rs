//! Tests of `reproduce`.

use super::*;

fn candidates(text: &str) -> Vec<Reproducer> {
    Order::from_evidence(text, None).all().collect()
}

#[test]
fn hints_reorder_candidates() {
    assert_eq!(candidates("")[0], Reproducer::Pgzip(Version::V1_15_10));
    assert_eq!(
        candidates("run /bin/sh -c make # buildkit")[0],
        Reproducer::GoGzip(GoLevel::Default)
    );
    assert_eq!(
        candidates("github.com/ko-build/ko")[0],
        Reproducer::GoGzip(GoLevel::BestSpeed)
    );
    assert_eq!(
        candidates("rpm-ostree compose")[..3],
        [
            Reproducer::ZlibNg6Era22,
            Reproducer::ZlibNg6,
            Reproducer::Zlib6
        ]
    );
    assert_eq!(
        candidates("umoci repack")[0],
        Reproducer::Pgzip256(Version::V1_15_10)
    );
    assert_eq!(
        candidates("jib-maven-plugin:3.4.0")[..2],
        [Reproducer::Zlib6, Reproducer::Zlib6Framed(Frame::JavaOld)]
    );
    assert_eq!(
        candidates("apko")[..2],
        [
            Reproducer::Pgzip(Version::V1_18_2),
            Reproducer::Pgzip(Version::V1_18_1)
        ]
    );
    assert_eq!(candidates("bazel build //app")[0], Reproducer::GnuGzip6);
    for hint in [
        "",
        "buildkit",
        "ostree",
        "kaniko",
        "umoci",
        "jib-gradle-plugin",
        "apko",
        "bazel",
    ] {
        let mut all = candidates(hint);
        all.sort_by_key(|r| r.id());
        let mut want = DEFAULT_ORDER.to_vec();
        if hint == "apko" {
            want.extend(HINTED_ONLY);
        }
        want.sort_by_key(|r| r.id());
        assert_eq!(all, want, "every candidate once");
    }
}

#[test]
fn ids_round_trip() {
    for r in DEFAULT_ORDER.into_iter().chain(HINTED_ONLY) {
        assert_eq!(Reproducer::from_id(r.id()), Some(r));
    }
    assert_eq!(Reproducer::from_id(MISS), None);
}

#[test]
fn bounded_hasher_stops_past_the_limit() {
    let mut h = BoundedHasher::new(10, io::sink());
    h.write_all(b"0123456789").unwrap();
    let e = h.write_all(b"x").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
}

/// zlib 6 through flate2 is madler zlib built from libz-sys's bundled
/// source (`static` feature), never the host's libz.so.
#[test]
fn zlib6_is_the_bundled_zlib_not_the_hosts() {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(
        !maps.contains("libz.so"),
        "a shared libz is loaded:\n{maps}"
    );
}

/// Ground truth: Debian's zlib 1.2.13 through Python (`zlib.compressobj(6,
/// DEFLATED, -15, 8)`, raw deflate) on inputs around window and block edges;
/// madler zlib 1.3.2 (bundled) and 1.2.13 agree at level 6 on all of them.
#[test]
fn zlib6_equals_debian_zlib_1_2_13() {
    let mut data = Vec::new();
    let mut x = 0x9e37_79b9_u32;
    let words = [
        "tar ", "layer ", "usr/lib/", "gzip ", "\n", "0000644 ", "zlib ",
    ];
    while data.len() < 300_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        match x % 7 {
            0 => data.extend((0..(x >> 20) % 700).map(|i| (x >> (i % 24)) as u8)),
            1 => data.extend(std::iter::repeat_n(0u8, ((x >> 8) % 3000) as usize)),
            _ => data.extend_from_slice(words[(x >> 5) as usize % words.len()].as_bytes()),
        }
    }
    let python = r#"
import sys, zlib
d = sys.stdin.buffer.read()
c = zlib.compressobj(6, zlib.DEFLATED, -15, 8)
assert zlib.ZLIB_RUNTIME_VERSION == "1.2.13", zlib.ZLIB_RUNTIME_VERSION
sys.stdout.buffer.write(c.compress(d) + c.flush())
"#;
    for len in [0, 1, 258, 32767, 32768, 32769, 65536, 98304, 300_000] {
        let input = &data[..len.min(data.len())];
        let raw = fixtures::python(python, input);
        let mut w = Reproducer::Zlib6.writer(Vec::new(), 1).unwrap();
        // Written in uneven pieces: madler zlib's output does not depend on them.
        for piece in input.chunks(5000) {
            w.write_all(piece).unwrap();
        }
        let gz = w.finish().unwrap();
        assert!(gz[10..gz.len() - 8] == raw[..], "{len} bytes");
    }
}

/// The shared vectors were made with Debian's zlib 1.2.13; the bundled zlib gives the same bytes.
#[test]
fn zlib6_reproduces_the_shared_vectors() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/compress-vectors");
    let inputs = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new("python3")
        .arg(dir.join("gen_inputs.py"))
        .arg(inputs.path())
        .arg("--check")
        .status()
        .unwrap();
    assert!(ok.success());
    for name in ["tiny.tar", "text.tar", "mixed.tar", "empty.tar"] {
        let input = std::fs::read(inputs.path().join(name)).unwrap();
        let want = std::fs::read(dir.join(format!("{name}.zlib6.gz"))).unwrap();
        let mut w = Reproducer::Zlib6.writer(Vec::new(), 1).unwrap();
        w.write_all(&input).unwrap();
        assert!(w.finish().unwrap() == want, "{name}");
    }
}

/// zlib 6 and its header variants are one body: one group, one compression.
#[test]
fn header_variants_share_one_group() {
    let groups = by_body(&DEFAULT_ORDER);
    assert_eq!(groups.len(), DEFAULT_ORDER.len() - 2);
    let zlib = groups.iter().find(|g| g[0] == Reproducer::Zlib6).unwrap();
    assert_eq!(
        zlib[..],
        [
            Reproducer::Zlib6,
            Reproducer::Zlib6Framed(Frame::JavaOld),
            Reproducer::Zlib6Framed(Frame::Zlib)
        ]
    );
    assert!(groups.iter().filter(|g| g.len() > 1).count() == 1);
}

/// Python's `gzip.compress(…, 6, mtime=0)` is zlib's own gzip framing over
/// Debian's zlib (OS 03): the zlib-6 group, hashing one body under each
/// header, names `zlib6-os03`, and that encoder alone writes the same bytes.
#[test]
fn zlib_framing_is_found_among_the_variants_and_written_alike() {
    let input: Vec<u8> = (0..400_000u32)
        .flat_map(|i| format!("{} usr/lib/{}\n", i % 977, i % 13).into_bytes())
        .take(400_000)
        .collect();
    let python =
        "import gzip,sys; sys.stdout.buffer.write(gzip.compress(sys.stdin.buffer.read(), 6, mtime=0))";
    let real = fixtures::python(python, &input);
    assert_eq!(real[9], 3, "zlib's gzip header says Unix");
    let original = Descriptor::new(
        MediaType::ImageLayerGzip,
        real.len() as u64,
        crate::digest::sha256(&real),
    );
    let group = by_body(&DEFAULT_ORDER)
        .into_iter()
        .find(|g| g[0] == Reproducer::Zlib6)
        .unwrap();
    let sink = BodyTee::new(
        BoundedHasher::new(original.size(), io::sink()),
        &headers_of(&group[1..]),
    );
    let mut w = Reproducer::Zlib6.writer(sink, 1).unwrap();
    for piece in input.chunks(65_537) {
        w.write_all(piece).unwrap();
    }
    let (found, _) = found_in(w.finish().unwrap(), &group, &original).unwrap();
    assert_eq!(found, Some(Reproducer::Zlib6Framed(Frame::Zlib)));
    let mut alone = Reproducer::Zlib6Framed(Frame::Zlib)
        .writer(Vec::new(), 1)
        .unwrap();
    alone.write_all(&input).unwrap();
    assert!(alone.finish().unwrap() == real);
    // Java ≤ 15: the same body, OS 00.
    let mut java = Reproducer::Zlib6Framed(Frame::JavaOld)
        .writer(Vec::new(), 1)
        .unwrap();
    java.write_all(&input).unwrap();
    let java = java.finish().unwrap();
    assert_eq!(java[..10], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0]);
    assert!(java[10..] == real[10..]);
}

/// The fan-out's unit of work finds an encoder without header variants by
/// its output as written, a variant by its header, and refuses the rest
/// (the regression where only header variants could match).
#[test]
fn a_group_finds_its_own_output_and_its_variants() {
    let input: Vec<u8> = (0..300_000u32)
        .flat_map(|i| format!("{} var/lib/{}\n", i % 1733, i % 11).into_bytes())
        .collect();
    let chunks = || {
        input
            .chunks(fanout::CHUNK)
            .map(std::sync::Arc::<[u8]>::from)
            .collect::<Vec<_>>()
            .into_iter()
    };
    let blob = |r: Reproducer| {
        let mut w = r.writer(Vec::new(), 1).unwrap();
        w.write_all(&input).unwrap();
        let b = w.finish().unwrap();
        Descriptor::new(
            MediaType::ImageLayerGzip,
            b.len() as u64,
            crate::digest::sha256(&b),
        )
    };
    let groups = by_body(&DEFAULT_ORDER);
    for made_by in [
        Reproducer::GoGzip(GoLevel::BestSpeed),
        Reproducer::Pgzip(Version::V1_15_10),
        Reproducer::Zlib6,
        Reproducer::Zlib6Framed(Frame::JavaOld),
    ] {
        let original = blob(made_by);
        let found: Vec<Reproducer> = groups
            .iter()
            .filter_map(|g| group_matches(g, chunks(), &original))
            .collect();
        assert_eq!(found, [made_by], "made by {made_by}");
    }
    // A group led by a variant still writes its own header first.
    let java_first = [Reproducer::Zlib6Framed(Frame::JavaOld), Reproducer::Zlib6];
    let original = blob(Reproducer::Zlib6);
    assert_eq!(
        group_matches(&java_first, chunks(), &original),
        Some(Reproducer::Zlib6)
    );
}
