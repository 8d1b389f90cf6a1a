#!/usr/bin/env python3
"""Write an OCI layout holding an update of an image: its layers plus one
small new layer (an uncompressed tar), with a new config and manifest.

usage: add_layer.py SRC_LAYOUT SRC_TAG DEST_LAYOUT DEST_TAG
"""
import hashlib, io, json, os, shutil, sys, tarfile

src, src_tag, dest, dest_tag = sys.argv[1:5]


def blob_path(layout, digest):
    return os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1])


def put(layout, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with open(blob_path(layout, digest), "wb") as f:
        f.write(data)
    return digest


shutil.copytree(src, dest)
index = json.load(open(os.path.join(src, "index.json")))
desc = next(m for m in index["manifests"]
            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == src_tag)
manifest = json.load(open(blob_path(src, desc["digest"])))
config = json.load(open(blob_path(src, manifest["config"]["digest"])))

buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
    data = b"updated by bench/add_layer.py\n"
    info = tarfile.TarInfo("etc/update-marker")
    info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
    tar.addfile(info, io.BytesIO(data))
layer = buf.getvalue()
layer_digest = put(dest, layer)

config["rootfs"]["diff_ids"].append(layer_digest)
config.setdefault("history", []).append({"created_by": "bench/add_layer.py"})
config_bytes = json.dumps(config).encode()
manifest["config"] = {"mediaType": "application/vnd.oci.image.config.v1+json",
                      "digest": put(dest, config_bytes), "size": len(config_bytes)}
manifest["layers"].append({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                           "digest": layer_digest, "size": len(layer)})
manifest_bytes = json.dumps(manifest).encode()
index = {"schemaVersion": 2, "manifests": [{
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": put(dest, manifest_bytes), "size": len(manifest_bytes),
    "annotations": {"org.opencontainers.image.ref.name": dest_tag}}]}
json.dump(index, open(os.path.join(dest, "index.json"), "w"))
