#!/usr/bin/env bash
# Differential run of the Go gzip ports against real Go on real data: tars
# of parts of /usr, whole and cut at sizes around block and window edges.
# Prints one line per (level, input): sizes, MB/s of both, match or MISS,
# then the count. Needs the release example gostd_speed built:
#   cargo build --release -p cfs-encoders --example gostd_speed
# usage: go_differential.sh WORKDIR [LEVEL...]   (env GO: the go binary)
#
# Results on 2026-12-06 (Debian bookworm's /usr; doc.tar 116 MB,
# locale.tar 164 MB, gosrc.tar 435 MB, bin.tar 485 MB, and prefixes of
# 1, 65535, 65536, 131071, 1048577, 16777219 and 50000000 bytes):
#   go1.19.8  levels 1, 6, 9: 28 of 28 match
#   go1.26.10 levels 1, 6, 9: 28 of 28 match
#   go1.15.15, go1.21.13, go1.24.4, level 1: 11 of 11 match each
#   go1.27.3  levels 1, 6, 9: 0 of 28 match (Go 1.27 replaced compress/flate)
# and one 2.3 GB stream (the tars concatenated, through `gogzip.go 1 -`, past
# deflatefast's 2 GiB offset rebase) at level 1 with go1.19.8: match.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:?usage: go_differential.sh WORKDIR [LEVEL...]}
shift
levels=("${@:-1 6 9}")
GO=${GO:-go}
ours=${OURS:-$here/../../target/release/examples/gostd_speed}
mkdir -p "$work"
cd "$work"
mk_tar() { # name dir...
    [ -s "$1" ] || tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
        -cf "$1" "${@:2}" 2>/dev/null || true
}
mk_tar doc.tar /usr/share/doc
mk_tar locale.tar /usr/share/locale
mk_tar bin.tar /usr/bin
mk_tar gosrc.tar /usr/share/go-1.19/src /usr/lib/go-1.19/pkg
prefix() { [ -s "$2" ] || head -c "$1" "$3" > "$2"; }
for n in 1 65535 65536 131071 1048577; do prefix $n doc-$n.tar doc.tar; done
prefix 16777219 bin-16m.tar bin.tar
prefix 50000000 gosrc-50m.tar gosrc.tar
small=(doc-1.tar doc-65535.tar doc-65536.tar doc-131071.tar doc-1048577.tar bin-16m.tar)
big=(gosrc-50m.tar doc.tar locale.tar)
all=("${small[@]}" "${big[@]}" gosrc.tar bin.tar)
runs=0 matches=0
for level in ${levels[@]}; do
    case $level in 1) id=gostd-1; inputs=("${all[@]}");; 6) id=gostd; inputs=("${small[@]}" "${big[@]}");;
        9) id=gostd-9; inputs=("${small[@]}" gosrc-50m.tar doc.tar);; esac
    triples=()
    for f in "${inputs[@]}"; do triples+=("$level" "$f" "$f.go$level.gz"); done
    GOTOOLCHAIN=local GOPROXY=off GO111MODULE=off "$GO" run "$here/gogzip.go" -time "${triples[@]}" 2> go$level.log
    "$ours" $id "${inputs[@]}" > ours$level.log
    for f in "${inputs[@]}"; do
        want=$(sha256sum < "$f.go$level.gz" | cut -c1-64)
        line=$(grep " $f: " ours$level.log)
        gospeed=$(grep " $f: " go$level.log | sed 's/.*, //')
        runs=$((runs + 1))
        if [[ $line == *"sha256 $want"* ]]; then res=match; matches=$((matches + 1)); else res=MISS; fi
        echo "level $level $f: $(stat -c %s "$f") -> $(stat -c %s "$f.go$level.gz") bytes; ours $(echo "$line" | sed 's/.*bytes, [0-9.]* s, //; s/, sha256.*//'), go $gospeed: $res"
        rm -f "$f.go$level.gz"
    done
done
echo "$($GO version): $matches of $runs match"
