#!/bin/bash
# Makes (once, cached) a Debian trixie root with today's skopeo and podman,
# and prints the directory of the `skopeo` and `podman` wrappers that run
# them there (scripts/in-trixie). Needs root: debootstrap, mount namespaces.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "error: the trixie stack needs root (debootstrap, mounts)" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
cache=${CFS_TRIXIE_CACHE:-/var/cache/cfs-export-tests}
packages="skopeo podman runc fuse-overlayfs"
# Keyed by these scripts: a change makes a new root; a half-made one is never
# found, since it is built under a temporary name and renamed when complete.
key=$(cat "$here/trixie-stack.sh" "$here/in-trixie" | sha256sum | cut -c1-12)
stack=$cache/trixie-$key
if [ ! -d "$stack" ]; then
	mkdir -p "$cache"
	tmp=$(mktemp -d "$cache/.trixie-$key.XXXXXX")
	trap 'rm -rf --one-file-system "$tmp"' EXIT
	echo "Making the Debian trixie root $stack (once)" >&2
	mkdir "$tmp/bin"
	cp "$here/in-trixie" "$tmp/bin/"
	for tool in skopeo podman apt-get; do ln -s in-trixie "$tmp/bin/$tool"; done
	if ! debootstrap --variant=minbase trixie "$tmp/rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$tmp/log" 2>&1 ||
		! DEBIAN_FRONTEND=noninteractive "$tmp/bin/apt-get" install -y -q --no-install-recommends $packages >>"$tmp/log" 2>&1; then
		tail -n 30 "$tmp/log" >&2
		exit 1
	fi
	"$tmp/bin/apt-get" clean
	rm "$tmp/bin/apt-get" "$tmp/log"
	# crun fails on hybrid cgroups; no systemd or journald in there.
	printf '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n' \
		>"$tmp/rootfs/etc/containers/containers.conf"
	# Another run may have finished first: then use its root.
	mv -T "$tmp" "$stack" 2>/dev/null || [ -d "$stack/bin" ]
fi
echo "$stack/bin"
