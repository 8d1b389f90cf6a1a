#!/usr/bin/env python3
"""Write an OCI layout holding one image shaped like an OS rootfs: many small
files (text-like, compressible), some large ones (half random), symlinks.
Layers are gzip-compressed with pigz, as a registry image would be.

usage: gen_image.py LAYOUT TAG SIZE_MIB
"""
import gzip, hashlib, io, json, os, random, subprocess, sys, tarfile

layout, tag, size_mib = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(42)
words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10))).encode()
         for _ in range(5000)]
text = b" ".join(rng.choice(words) for _ in range(400_000))  # ~2.6 MB of text to slice from


def text_bytes(n):
    off = rng.randrange(0, len(text) - n) if n < len(text) else 0
    return (text * (1 + n // len(text)))[off:off + n]


def mixed_bytes(n):
    # Half random, half text: compresses roughly 2:1, like binaries.
    half = n // 2
    return os.urandom(half) + text_bytes(n - half)


def add(tar, name, data, mode=0o644):
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 1_700_000_000
    tar.addfile(info, io.BytesIO(data))


def add_dir(tar, name):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
    tar.addfile(info)


def layer(path, budget, small_share, n_large):
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        small_budget = int(budget * small_share)
        used, i = 0, 0
        made = set()
        while used < small_budget:
            d = f"usr/lib/pkg{i // 40:04d}"
            if d not in made:
                for p in ("usr", "usr/lib", d):
                    if p not in made:
                        add_dir(tar, p)
                        made.add(p)
            n = min(int(rng.lognormvariate(8.5, 1.2)), 256 * 1024)
            add(tar, f"{d}/file{i:06d}.so", text_bytes(n) if i % 3 else mixed_bytes(n))
            if i % 50 == 0:
                sym = tarfile.TarInfo(f"{d}/link{i:06d}")
                sym.type, sym.linkname, sym.mtime = tarfile.SYMTYPE, f"file{i:06d}.so", 1_700_000_000
                tar.addfile(sym)
            used += n
            i += 1
        if n_large:
            add_dir(tar, "opt")
            per = (budget - used) // n_large
            for j in range(n_large):
                add(tar, f"opt/large{j}.bin", mixed_bytes(per), 0o755)
    return os.path.getsize(path)


os.makedirs(f"{layout}/blobs/sha256", exist_ok=True)
budget = size_mib << 20
specs = [(0.40, 0.85, 1), (0.45, 0.0, 4), (0.15, 0.5, 2)]
diff_ids, descs = [], []
for k, (share, small, large) in enumerate(specs):
    tar_path = f"{layout}/layer{k}.tar"
    layer(tar_path, int(budget * share), small, large)
    h = hashlib.sha256()
    with open(tar_path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    diff_ids.append("sha256:" + h.hexdigest())
    gz = tar_path + ".gz"
    subprocess.run(f"pigz -6 -n -c {tar_path} > {gz}", shell=True, check=True)
    h = hashlib.sha256()
    with open(gz, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    os.rename(gz, f"{layout}/blobs/sha256/{digest}")
    descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                  "digest": "sha256:" + digest, "size": os.path.getsize(f"{layout}/blobs/sha256/{digest}")})
    os.remove(tar_path)


def put(data):
    d = hashlib.sha256(data).hexdigest()
    open(f"{layout}/blobs/sha256/{d}", "wb").write(data)
    return "sha256:" + d, len(data)


config = json.dumps({"architecture": "amd64", "os": "linux",
                     "config": {"Cmd": ["/bin/sh"]},
                     "rootfs": {"type": "layers", "diff_ids": diff_ids},
                     "history": [{"created_by": f"bench layer {k}"} for k in range(len(specs))]},
                    indent=2).encode()
cd, cs = put(config)
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
                       "layers": descs}).encode()
md, ms = put(manifest)
open(f"{layout}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
open(f"{layout}/index.json", "w").write(json.dumps({"schemaVersion": 2, "manifests": [{
    "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
    "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
print(f"{layout}:{tag} {size_mib} MiB in {len(specs)} layers")
