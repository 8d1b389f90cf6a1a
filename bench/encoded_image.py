#!/usr/bin/env python3
"""Write an OCI layout whose gzip layers ENCODER made (`target/release/encode`)
from the uncompressed layers of PLAIN (an OCI layout, image TAG), with the
config history and labels the tool that uses the encoder writes: how a hit of
each encoder is measured (`make bench`, original section).

usage: encoded_image.py PLAIN TAG OUT ENCODER CREATED_BY [OS_VERSION]
"""
import hashlib, json, os, subprocess, sys

plain, tag, out, encoder, created_by = sys.argv[1:6]
os_version = sys.argv[6] if len(sys.argv) > 6 else None
ENC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "target/release/encode")


def blob_path(layout, digest):
    return os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1])


def put(data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with open(blob_path(out, digest), "wb") as f:
        f.write(data)
    return digest


index = json.load(open(os.path.join(plain, "index.json")))
entry = next(m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
manifest = json.load(open(blob_path(plain, entry["digest"])))
os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
layers, diff_ids = [], []
for l in manifest["layers"]:
    with open(blob_path(plain, l["digest"]), "rb") as tar:
        gz = subprocess.run([ENC, encoder, str(os.cpu_count() or 1)], stdin=tar, capture_output=True, check=True).stdout
    diff_ids.append(l["digest"])  # uncompressed: the blob is the diff_id
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(gz), "size": len(gz)})
config = {"architecture": "amd64", "os": "linux", "config": {"Labels": {}},
          "rootfs": {"type": "layers", "diff_ids": diff_ids},
          "history": [{"created_by": created_by} for _ in diff_ids]}
if os_version:
    config["config"]["Labels"]["org.opencontainers.image.version"] = os_version
cfg = json.dumps(config).encode()
m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(cfg), "size": len(cfg)},
     "layers": layers}
mb = json.dumps(m).encode()
md = put(mb)
with open(os.path.join(out, "oci-layout"), "w") as f:
    f.write('{"imageLayoutVersion":"1.0.0"}')
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [{"mediaType": m["mediaType"], "digest": md, "size": len(mb),
                                                    "annotations": {"org.opencontainers.image.ref.name": tag}}]}, f)
print(md)
