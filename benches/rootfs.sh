#!/usr/bin/env bash
# A container's root file system on lstore's FUSE mount against kernel overlayfs and
# fuse-overlayfs, on the same Debian root file system, interleaved round by round (the order of
# the three rotates), each operation's per-round ratios summarised as median and spread.
#
#   sudo benches/rootfs.sh            # ROUNDS=5 by default
#
# Needs root, /dev/fuse, fuse-overlayfs and debootstrap (apt-get install fuse-overlayfs
# debootstrap); builds `target/release/lstore` first. The root file system (Debian bookworm
# minbase with python3 and curl, by debootstrap from Debian's mirror) and a 1 GiB file of
# random bytes are made once and kept in $LSTORE_BENCH_CACHE (default
# /var/cache/lstore-bench). Not run in CI.
#
# Every system gets the same two lower layers: the root file system, and one holding
# /big.img (1 GiB). "cold" = after `sync; echo 3 > /proc/sys/vm/drop_caches`. "made durable" =
# `sync` for overlayfs and fuse-overlayfs (whose files are on the host's file system), then
# their unmount; for lstore its unmount (`lstore umount` waits for the commit made there).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
CACHE=${LSTORE_BENCH_CACHE:-/var/cache/lstore-bench}
WORK=${LSTORE_BENCH_WORK:-/var/tmp/lstore-bench}
ROOTFS=$CACHE/bookworm
BIG=$CACHE/big
TARBALL=$CACHE/usr-lib.tar

die() { echo "rootfs.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (mounts overlayfs, drops caches)"
[ -e /dev/fuse ] || die "needs /dev/fuse"
command -v fuse-overlayfs >/dev/null || die "needs fuse-overlayfs (apt-get install fuse-overlayfs)"

cargo build --release --quiet
LSTORE=$PWD/target/release/lstore

mkdir -p "$CACHE"
if [ ! -x "$ROOTFS/usr/bin/python3" ]; then
    command -v debootstrap >/dev/null || die "needs debootstrap to build the root file system"
    rm -rf "$ROOTFS"
    debootstrap --variant=minbase --include=python3-minimal,curl bookworm "$ROOTFS" \
        http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1 ||
        die "debootstrap failed, see $CACHE/debootstrap.log"
fi
if [ ! -f "$BIG/big.img" ]; then
    mkdir -p "$BIG"
    head -c 1G /dev/urandom >"$BIG/big.img.part" && mv "$BIG/big.img.part" "$BIG/big.img"
fi
[ -f "$TARBALL" ] || tar -C "$ROOTFS" -cf "$TARBALL" usr/lib
TAR_MB=$(($(stat -c %s "$TARBALL") / 1000000))

rm -rf "$WORK"
mkdir -p "$WORK"
trap 'umount -R "$WORK/m" 2>/dev/null || true' EXIT

# The lstore image: the root file system, and the big file in a layer above it.
S=$WORK/store
$LSTORE --store "$S" init >/dev/null
$LSTORE --store "$S" import "$ROOTFS" --name rootfs >/dev/null
# (`import DIR --parent` takes DIR as the whole tree: the big file goes in through a container.)
$LSTORE --store "$S" create rootfs --name prep >/dev/null
$LSTORE --store "$S" put prep big.img "$BIG/big.img"
$LSTORE --store "$S" chmod prep 644 big.img >/dev/null
$LSTORE --store "$S" commit prep --name image >/dev/null
$LSTORE --store "$S" rm prep
cp "$BIG/big.img" "$WORK/plain.img"

now() { date +%s%N; }
cold() { sync; echo 3 >/proc/sys/vm/drop_caches; }
RESULTS=$WORK/results.tsv
: >"$RESULTS"
record() { echo -e "$1\t$2\t$3\t$4" >>"$RESULTS"; }  # round system op seconds
timed() { # round system op command...
    local r=$1 sys=$2 op=$3 t0 t1
    shift 3
    t0=$(now)
    "$@" >/dev/null
    t1=$(now)
    record "$r" "$sys" "$op" "$(echo "scale=6; ($t1 - $t0) / 1000000000" | bc)"
}

M=$WORK/m
mount_sys() { # system round
    mkdir -p "$M"
    case $1 in
    overlay | fuse-overlayfs)
        rm -rf "$WORK/upper" "$WORK/work"
        mkdir -p "$WORK/upper" "$WORK/work"
        local o="lowerdir=$BIG:$ROOTFS,upperdir=$WORK/upper,workdir=$WORK/work"
        if [ "$1" = overlay ]; then mount -t overlay overlay -o "$o" "$M"; else fuse-overlayfs -o "$o" "$M"; fi
        ;;
    lstore)
        $LSTORE --store "$S" create image --name "c$2" >/dev/null
        $LSTORE --store "$S" mount "c$2" "$M"
        ;;
    esac
}
durable_unmount() { # system
    case $1 in
    overlay) sync; umount "$M" ;;
    fuse-overlayfs) sync; fusermount3 -u "$M" ;;
    lstore) $LSTORE umount "$M" ;;
    esac
}
first_write() { # file: open, write 4 KiB at 0, fsync
    python3 -c "import os, sys; fd = os.open(sys.argv[1], os.O_WRONLY); os.pwrite(fd, b'x' * 4096, 0); os.fsync(fd)" "$1"
}
stat_all() { find "$M" -xdev -print0 | xargs -0 stat -c %s; }
tar_all() { tar -C "$M" --exclude=./big.img -cf - . | wc -c; }
untar() { mkdir -p "$M/tmp/x" && tar -C "$M/tmp/x" -xf "$TARBALL"; }
dd_1g() { dd if=/dev/zero of="$M/tmp/big" bs=1M count=1024 conv=fsync status=none; }
dd_random() { dd if="$BIG/big.img" of="$M/tmp/random" bs=1M conv=fsync status=none; }

one_round() { # round system
    local r=$1 sys=$2
    mount_sys "$sys" "$r"
    cold; timed "$r" "$sys" "cold python3 -c pass" chroot "$M" /usr/bin/python3 -c pass
    cold; timed "$r" "$sys" "cold find \\| xargs stat" stat_all
    timed "$r" "$sys" "warm find \\| xargs stat" stat_all
    cold; timed "$r" "$sys" "cold tar -c / (all but big.img)" tar_all
    timed "$r" "$sys" "4 KiB into a 1 GiB lower file + fsync" first_write "$M/big.img"
    timed "$r" "$sys" "dd 1 GiB of zeros conv=fsync" dd_1g
    rm -f "$M/tmp/big"
    cat "$BIG/big.img" >/dev/null
    timed "$r" "$sys" "dd 1 GiB of random bytes (from page cache) conv=fsync" dd_random
    rm -f "$M/tmp/random"
    sync
    local t0 t1
    t0=$(now)
    untar
    durable_unmount "$sys"
    t1=$(now)
    record "$r" "$sys" "tar -x of usr/lib ($TAR_MB MB), made durable" "$(echo "scale=6; ($t1 - $t0) / 1000000000" | bc)"
    [ "$sys" = lstore ] && $LSTORE --store "$S" rm "c$r" >/dev/null
    return 0
}

SYSTEMS=(overlay fuse-overlayfs lstore)
for r in $(seq 1 "$ROUNDS"); do
    for i in 0 1 2; do
        sys=${SYSTEMS[$(((r + i) % 3))]}
        one_round "$r" "$sys"
    done
    timed "$r" plain "4 KiB into a 1 GiB lower file + fsync" first_write "$WORK/plain.img"
    echo "round $r of $ROUNDS done" >&2
done

python3 - "$RESULTS" <<'EOF'
import collections, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
t = collections.defaultdict(dict)
ops = []
for r, sys_, op, sec in rows:
    t[(op, int(r))][sys_] = float(sec)
    if op not in ops:
        ops.append(op)
def summary(op, a, b):
    ratios = sorted(v[a] / v[b] for (o, _), v in t.items() if o == op and a in v and b in v)
    if not ratios:
        return "-"
    return f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})"
def med(op, s):
    xs = [v[s] for (o, _), v in t.items() if o == op and s in v]
    return f"{statistics.median(xs):.3f} s" if xs else "-"
print("| operation | overlayfs | fuse-overlayfs | lstore | lstore / overlayfs | lstore / fuse-overlayfs | lstore / plain ext4 |")
print("|---|---:|---:|---:|---:|---:|---:|")
for op in ops:
    print(f"| {op} | {med(op, 'overlay')} | {med(op, 'fuse-overlayfs')} | {med(op, 'lstore')} | "
          f"{summary(op, 'lstore', 'overlay')} | {summary(op, 'lstore', 'fuse-overlayfs')} | {summary(op, 'lstore', 'plain')} |")
EOF
