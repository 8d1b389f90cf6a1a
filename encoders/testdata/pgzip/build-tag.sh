#!/bin/sh
# build-tag.sh TAG [WORK]: builds WORK/bin/enc-TAG, enc.go against klauspost/compress
# TAG and pgzip v1.2.5, offline (Go modules, GOFLAGS=-mod=mod GOPROXY=off).
# Needs bare clones of github.com/klauspost/compress and github.com/klauspost/pgzip
# in $COMPRESS_GIT and $PGZIP_GIT. Go 1.19 builds tags up to v1.17.x; later tags
# need a newer Go (v1.18.x: Go >= 1.22, e.g. bookworm-backports golang-1.23-go,
# with PATH=/usr/lib/go-1.23/bin:$PATH GOTOOLCHAIN=local). The compress module
# keeps the tag's own go directive when it is newer than 1.19 (range over int).
set -e
t=$1
work=${2:-/tmp/kgo}
here=$(cd "$(dirname "$0")" && pwd)
: "${COMPRESS_GIT:?bare git dir of klauspost/compress}" "${PGZIP_GIT:?bare git dir of klauspost/pgzip}"
if [ ! -d "$work/pgzip" ]; then
	mkdir -p "$work/pgzip"
	git --git-dir="$PGZIP_GIT" archive v1.2.5 | tar -x -C "$work/pgzip"
	printf 'module github.com/klauspost/pgzip\n\ngo 1.13\n\nrequire github.com/klauspost/compress v1.15.12\n' >"$work/pgzip/go.mod"
fi
d=$work/tags/$t
rm -rf "$d"
mkdir -p "$d/compress" "$work/bin"
# Only what flate needs (the repository's large test blobs are not needed).
git --git-dir="$COMPRESS_GIT" archive "$t" $(git --git-dir="$COMPRESS_GIT" ls-tree --name-only "$t" -- flate internal/le compressible.go) |
	tar -x -C "$d/compress" --exclude='*/testdata/*' --exclude='*_test.go'
lang=$(git --git-dir="$COMPRESS_GIT" show "$t:go.mod" 2>/dev/null | sed -n 's/^go \([0-9.]*\)$/\1/p')
case $lang in 1.2[0-9]*) ;; *) lang=1.19 ;; esac
printf 'module github.com/klauspost/compress\n\ngo %s\n' "$lang" >"$d/compress/go.mod"
cp "$here/enc.go" "$d/"
cat >"$d/go.mod" <<EOM
module enc

go 1.17

require (
	github.com/klauspost/compress $t
	github.com/klauspost/pgzip v1.2.5
)

replace github.com/klauspost/compress => ./compress

replace github.com/klauspost/pgzip => $work/pgzip
EOM
cd "$d" && GOFLAGS=-mod=mod GOPROXY=off go build -tags nounsafe -o "$work/bin/enc-$t" .
