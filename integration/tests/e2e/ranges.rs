//! Issue 19: the loopback server answers `Range` as skopeo 1.18 uses it to
//! resume a cut response (206 + `Content-Range`), and as RFC 9110 says for
//! the rest (suffix ranges, 416, several ranges → the whole blob).

use std::path::{Path, PathBuf};

use anyhow::{ensure, Result};
use integration::fixture::{self, Kind, TarBuilder};
use integration::{copy_with_fake_skopeo, python_skopeo};

/// A fake skopeo that reads the image the way a resuming client does and
/// writes what it saw to `<itself>.out`.
fn ranging_skopeo(dir: &Path) -> Result<PathBuf> {
    python_skopeo(dir, "ranging-skopeo", RANGING)
}

const RANGING: &str = r#"base = "/v2/" + prefix + "/image/"
def get(path, rng=None):
    c = http.client.HTTPConnection(host, timeout=60)
    h = {"Authorization": "Basic " + auth}
    if rng:
        h["Range"] = rng
    c.request("GET", base + path, headers=h)
    return c, c.getresponse()
def whole(path, rng=None):
    c, r = get(path, rng)
    body = r.read()
    c.close()
    return r, body
out = open(sys.argv[0] + ".out", "w")
r, m = whole("manifests/cfs-export")
manifest = json.loads(m)
layer = max(manifest["layers"], key=lambda l: l["size"])
digest, size = layer["digest"], layer["size"]
# Read 10 MiB, then cut the connection, as a network hiccup would.
c, r = get("blobs/" + digest)
first = r.read(10 << 20)
out.write("first %d %s accept-ranges=%s\n" % (r.status, len(first), r.getheader("Accept-Ranges")))
c.close()
r, rest = whole("blobs/" + digest, "bytes=%d-" % len(first))
whole_ok = hashlib.sha256(first + rest).hexdigest() == digest.split(":")[1]
out.write("resume %d %s length=%s proven=%s\n" % (r.status, r.getheader("Content-Range").replace(str(size), "N").replace(str(size - 1), "N-1"), r.getheader("Content-Length") == str(size - len(first)), whole_ok))
for rng in ["bytes=-10", "bytes=%d-" % size, "bytes=0-1,5-6", "items=0-1"]:
    r, body = whole("blobs/" + digest, rng)
    cr = (r.getheader("Content-Range") or "-").replace(str(size), "N").replace(str(size - 10), "N-10").replace(str(size - 1), "N-1")
    out.write("%s %d %s %d\n" % (rng.replace(str(size), "N"), r.status, cr, len(body) if len(body) != size else -1))
cfg = manifest["config"]["digest"]
r, body = whole("blobs/" + cfg, "bytes=0-9")
out.write("config 0-9 %d %s %d\n" % (r.status, r.getheader("Content-Range").split("/")[0], len(body)))
"#;

/// A response cut after 10 MiB resumes at that offset (206, the rest of
/// the layer, which proves the whole); other ranges as the RFC says.
pub fn loopback_server_answers_ranges() -> Result<()> {
    let t = tempfile::tempdir()?;
    let mut tar = TarBuilder::new().dir("usr");
    for i in 0..6u64 {
        tar = tar
            .file(&format!("usr/big{i}"), &fixture::noise(5 << 20, i))
            .file(&format!("usr/small{i}"), format!("{i}\n").as_bytes());
    }
    let (repo, _) = fixture::imported(t.path(), "app:1", &[(tar.finish(true), Kind::Gzip)]);
    let fake = ranging_skopeo(t.path())?;
    let got = copy_with_fake_skopeo(&repo, &fake, t.path())?;
    let want = "first 200 10485760 accept-ranges=bytes\n\
        resume 206 bytes 10485760-N-1/N length=True proven=True\n\
        bytes=-10 206 bytes N-10-N-1/N 10\n\
        bytes=N- 416 bytes */N 0\n\
        bytes=0-1,5-6 200 - -1\n\
        items=0-1 200 - -1\n\
        config 0-9 206 bytes 0-9 10\n";
    ensure!(got == want, "server answered:\n{got}");
    Ok(())
}
