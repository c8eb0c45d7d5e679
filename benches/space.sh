#!/usr/bin/env bash
# Space on real images (the "space on real images" issue's ruler): the same trees stored as
# OCI diff layers (`tar | zstd -3`), as squashfs images (zstd level 3, 128 KiB and 1 MiB
# blocks, one per version) and in one lstore store (`init --compression zstd:3`, then plain
# `import DIR --parent PREV`), metadata included (`df`'s used bytes after gc). Every version is
# exported and compared with its tree, and the store is checked with `verify --deep`.
#
#   sudo benches/space.sh
#
# Two data sets, fetched once with the ordinary package clients and kept in
# $LSTORE_BENCH_CACHE (default /var/cache/lstore-bench):
#   wheels: ten consecutive releases of pandas (large native libraries), wheels unpacked;
#   debian: debootstrap --variant=minbase bookworm, then + python3-minimal, then + curl,
#           each step a whole tree.
# Needs root (debootstrap, chroot), debootstrap, squashfs-tools, zstd, python3 with pip,
# unzip. Builds target/release/lstore first. Not run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${LSTORE_BENCH_CACHE:-/var/cache/lstore-bench}
WORK=${LSTORE_BENCH_WORK:-/var/tmp/lstore-space}
die() { echo "space.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (debootstrap and chroot)"
for t in debootstrap mksquashfs zstd unzip; do
    command -v $t >/dev/null || die "needs $t"
done
cargo build --release --quiet
LSTORE=$PWD/target/release/lstore

# --- data set 1: ten consecutive pandas releases, unpacked -------------------------------
WHEELS=$CACHE/pandas
VERSIONS=(2.0.0 2.0.1 2.0.2 2.0.3 2.1.0 2.1.1 2.1.2 2.1.3 2.1.4 2.2.0)
mkdir -p "$WHEELS"
for v in "${VERSIONS[@]}"; do
    [ -d "$WHEELS/$v" ] && continue
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
        --platform manylinux2014_x86_64 -d "$WHEELS/dl-$v" "pandas==$v"
    mkdir -p "$WHEELS/$v.part" && unzip -q "$WHEELS"/dl-"$v"/*.whl -d "$WHEELS/$v.part"
    mv "$WHEELS/$v.part" "$WHEELS/$v"
done

# --- data set 2: a three-step Debian build -------------------------------------------------
DEB=$CACHE/debian
mkdir -p "$DEB"
if [ ! -d "$DEB/1-minbase" ]; then
    debootstrap --variant=minbase bookworm "$DEB/1-minbase.part" http://deb.debian.org/debian \
        >"$DEB/debootstrap.log" 2>&1 || die "debootstrap failed, see $DEB/debootstrap.log"
    # As an image build leaves it: no package caches or lists.
    chroot "$DEB/1-minbase.part" sh -c "apt-get clean && rm -rf /var/lib/apt/lists/*"
    mv "$DEB/1-minbase.part" "$DEB/1-minbase"
fi
step() { # from to packages...
    local from=$1 to=$2
    shift 2
    [ -d "$DEB/$to" ] && return 0
    rm -rf "$DEB/$to.part"
    cp -a "$DEB/$from" "$DEB/$to.part"
    chroot "$DEB/$to.part" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $* >/dev/null && apt-get clean && rm -rf /var/lib/apt/lists/*"
    mv "$DEB/$to.part" "$DEB/$to"
}
step 1-minbase 2-python3 python3-minimal
step 2-python3 3-curl curl
DEBIAN=("$DEB/1-minbase" "$DEB/2-python3" "$DEB/3-curl")

# --- measuring -----------------------------------------------------------------------------
rm -rf "$WORK"
mkdir -p "$WORK"
squash() { # dir block -> bytes
    mksquashfs "$1" "$WORK/sq.img" -comp zstd -Xcompression-level 3 -b "$2" -noappend -quiet >/dev/null
    stat -c %s "$WORK/sq.img"
    rm -f "$WORK/sq.img"
}
used() { # store -> df's used bytes
    python3 -c "import json,sys; print(json.load(sys.stdin)['used_bytes'])" < <($LSTORE --store "$1" df --json)
}
same() { # store layer dir: every file of the layer reads back as in dir
    rm -rf "$WORK/out"
    $LSTORE --store "$1" export "$2" "$WORK/out" >/dev/null
    # diff names devices and FIFOs it does not compare; anything else is a difference.
    local d
    d=$(diff -r --no-dereference "$3" "$WORK/out" | grep -v -e ' special file while file ' -e ' is a fifo while file ' || true)
    [ -z "$d" ] || die "$2 does not read back as $3: $(echo "$d" | head -3)"
    rm -rf "$WORK/out"
}
measure() { # name dirs...
    local name=$1
    shift
    local s=$WORK/$name.lstore prev="" i=0 oci=0 sq128=0 sq1m=0 first_sq1m=0 first_lstore=0
    $LSTORE --store "$s" init --compression zstd:3 >/dev/null
    for d in "$@"; do
        i=$((i + 1))
        if [ -z "$prev" ]; then
            $LSTORE --store "$s" import "$d" --name "v$i" >/dev/null
            first_lstore=$(used "$s")
            oci=$((oci + $($LSTORE --store "$s" export-tar "v$i" | zstd -3 -q -c | wc -c)))
        else
            $LSTORE --store "$s" import "$d" --parent "$prev" --name "v$i" >/dev/null
            oci=$((oci + $($LSTORE --store "$s" export-tar "v$i" --parent "$prev" | zstd -3 -q -c | wc -c)))
        fi
        same "$s" "v$i" "$d"
        prev=v$i
        sq128=$((sq128 + $(squash "$d" 128K)))
        local one
        one=$(squash "$d" 1M)
        sq1m=$((sq1m + one))
        [ $i = 1 ] && first_sq1m=$one
    done
    $LSTORE --store "$s" gc >/dev/null
    $LSTORE --store "$s" verify --deep >/dev/null || die "verify --deep of the $name store found damage"
    local used
    used=$(used "$s")
    local first_tar
    first_tar=$(tar -C "$1" -cf - . | zstd -3 -q -c | wc -c)
    echo "| $name ($# versions) | $first_tar | $oci | $sq128 | $sq1m | $used | $(python3 -c "print(f'{$used/$oci:.2f}x')") |"
    echo "$name first layer: lstore $first_lstore bytes, squashfs 1 MiB $first_sq1m bytes" >&2
    # gc gives back what only the newest half used: against a store of the older half alone.
    local half=$(($# / 2)) j
    for j in $(seq $# -1 $((half + 1))); do $LSTORE --store "$s" rmi "v$j" >/dev/null; done
    $LSTORE --store "$s" gc >/dev/null
    local kept alone=$WORK/$name-half.lstore
    kept=$(used "$s")
    $LSTORE --store "$alone" init --compression zstd:3 >/dev/null
    prev=""
    i=0
    for d in "${@:1:$half}"; do
        i=$((i + 1))
        $LSTORE --store "$alone" import "$d" ${prev:+--parent "$prev"} --name "v$i" >/dev/null
        prev=v$i
    done
    $LSTORE --store "$alone" gc >/dev/null
    echo "$name newest $(($# - half)) versions removed, gc: lstore $kept bytes; the oldest $half imported alone: $(used "$alone") bytes" >&2
}
echo "| data set | first tree, tar \| zstd -3 | OCI diff layers, tar \| zstd -3 | squashfs 128 KiB (sum) | squashfs 1 MiB (sum) | lstore used bytes | lstore / OCI |"
echo "|---|---:|---:|---:|---:|---:|---:|"
measure pandas "${VERSIONS[@]/#/$WHEELS/}"
measure debian "${DEBIAN[@]}"
