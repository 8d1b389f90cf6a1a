#!/usr/bin/env bash
# End-to-end demo, no network: build a small image with umoci, import it into
# a composefs repository under target/demo, export it back out, and show that
# the image ID and every layer's diff_id survived.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CFS_EXPORT_BIN:-target/release/cfs-export}
D=target/demo
rm -rf "$D" && mkdir -p "$D"
step() { printf '\n== %s\n' "$*"; }

step "Building a two-layer image with umoci (busybox + a 4 MB data file)"
umoci init --layout "$D/src"
umoci new --image "$D/src:demo"
umoci unpack --rootless --image "$D/src:demo" "$D/bundle" >/dev/null
R="$D/bundle/rootfs"
mkdir -p "$R/bin" "$R/etc" "$R/srv"
cp /bin/busybox "$R/bin/busybox"
for app in sh cat echo ls; do ln -s busybox "$R/bin/$app"; done
printf 'ID=cfs-export-demo\nNAME="cfs-export demo"\n' > "$R/etc/os-release"
umoci repack --image "$D/src:demo" "$D/bundle"
umoci unpack --rootless --image "$D/src:demo" "$D/bundle2" >/dev/null
head -c 4000000 /dev/urandom > "$D/bundle2/rootfs/srv/data.bin"
umoci repack --image "$D/src:demo" "$D/bundle2"
umoci config --image "$D/src:demo" --config.cmd /bin/sh --config.env PATH=/bin
skopeo inspect "oci:$D/src:demo" | grep -E '"(Digest|Architecture)"'

step "Importing into the composefs repository $D/repo"
"$BIN" --repo "$D/repo" import "oci:$D/src:demo"
"$BIN" --repo "$D/repo" list

step "Exporting to oci:$D/out (original compression restored)"
"$BIN" --repo "$D/repo" export demo --to "oci:$D/out"

step "Checking the result with skopeo"
orig_id=$(skopeo inspect --raw --config "oci:$D/src:demo" | sha256sum | cut -d' ' -f1)
new_id=$(skopeo inspect --raw --config "oci:$D/out:demo" | sha256sum | cut -d' ' -f1)
echo "image ID of the original: sha256:$orig_id"
echo "image ID of the export:   sha256:$new_id"
[ "$orig_id" = "$new_id" ] || { echo "IMAGE ID CHANGED" >&2; exit 1; }
# umoci compressed the layers (pgzip, 256 KiB blocks): reproduced, so the
# original manifest bytes, and digest, are kept.
orig_m=$(skopeo inspect --raw "oci:$D/src:demo" | sha256sum | cut -d' ' -f1)
new_m=$(skopeo inspect --raw "oci:$D/out:demo" | sha256sum | cut -d' ' -f1)
echo "manifest digest of the original: sha256:$orig_m"
echo "manifest digest of the export:   sha256:$new_m"
[ "$orig_m" = "$new_m" ] || { echo "MANIFEST DIGEST CHANGED" >&2; exit 1; }
skopeo copy -q "oci:$D/out:demo" "dir:$D/dir"
echo "skopeo copy oci:$D/out:demo dir:$D/dir: ok ($(ls "$D/dir" | wc -l) files)"
for l in $(skopeo inspect --raw "oci:$D/out:demo" | python3 -c 'import json,sys; print(" ".join(l["digest"][7:] for l in json.load(sys.stdin)["layers"]))'); do
	printf 'layer %s… uncompressed sha256 %s\n' "${l:0:12}" "$(gzip -dc "$D/out/blobs/sha256/$l" | sha256sum | cut -c1-12)…"
done
echo "diff_ids in the config:"
skopeo inspect --config "oci:$D/out:demo" | python3 -c 'import json,sys; [print("  ", d) for d in json.load(sys.stdin)["rootfs"]["diff_ids"]]'

step "Exporting again into the same layout: nothing to write"
"$BIN" --repo "$D/repo" export demo --to "oci:$D/out"
echo
echo "Demo finished: image ID and manifest digest kept, every layer proven against its diff_id."
