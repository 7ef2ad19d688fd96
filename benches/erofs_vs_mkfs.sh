#!/bin/sh
# Side-by-side: `veritylab mkfs --tar` (one streaming pass) against `tar -x` into a directory followed by
# `mkfs.erofs` of that directory, on a generated layer of about 500 MB. Prints wall time and peak RSS of each
# (from /usr/bin/time -v) and checks that both images pass fsck.erofs.
#
# Usage: benches/erofs_vs_mkfs.sh [SIZE_MB] [RUNS]   (needs: tar, mkfs.erofs, fsck.erofs, /usr/bin/time)
set -eu
size_mb=${1:-500}
runs=${2:-2}
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
cargo build --quiet --release -p veritylab --manifest-path "$root/Cargo.toml"
bin=$target/release/veritylab
work=$(mktemp -d "${TMPDIR:-/tmp}/erofs-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

# A layer-like tree: many small files, some medium, a few large; incompressible contents.
src=$work/src
mkdir -p "$src"
python3 - "$src" "$size_mb" <<'PY'
import os, random, sys
root, size_mb = sys.argv[1], int(sys.argv[2])
rng = random.Random(1)
budget = size_mb << 20
i = 0
blob = os.urandom(8 << 20)
while budget > 0:
    d = os.path.join(root, f"d{i % 97:02d}", f"s{i % 13}")
    os.makedirs(d, exist_ok=True)
    r = rng.random()
    n = rng.randint(1, 16 << 10) if r < 0.7 else rng.randint(16 << 10, 1 << 20) if r < 0.97 else rng.randint(1 << 20, 8 << 20)
    n = min(n, budget)
    off = rng.randint(0, len(blob) - n)
    with open(os.path.join(d, f"f{i}"), "wb") as f:
        f.write(blob[off:off + n])
    budget -= n
    i += 1
print(f"{i} files")
PY
tar -C "$src" -cf "$work/layer.tar" .
rm -rf "$src"
echo "tar: $(du -m "$work/layer.tar" | cut -f1) MB"

measure() { # label, command...
    label=$1; shift
    sync
    /usr/bin/time -v "$@" 2> "$work/time.txt" >/dev/null
    wall=$(grep 'Elapsed (wall clock)' "$work/time.txt" | awk '{print $NF}')
    rss=$(grep 'Maximum resident set size' "$work/time.txt" | awk '{print $NF}')
    echo "$label: wall $wall, peak RSS $((rss / 1024)) MB"
}

for run in $(seq "$runs"); do
    echo "run $run"
    measure "  veritylab mkfs --tar    " "$bin" mkfs --tar "$work/ours.erofs" "$work/layer.tar"
    measure "  tar -x + mkfs.erofs 1.5 " sh -c "rm -rf '$work/x' && mkdir '$work/x' && tar -C '$work/x' -xf '$work/layer.tar' && mkfs.erofs --quiet '$work/theirs.erofs' '$work/x'"
    measure "  veritylab mkfs (stdin)  " sh -c "'$bin' mkfs --tar '$work/ours-stdin.erofs' - < '$work/layer.tar'"
done
fsck.erofs "$work/ours.erofs" >/dev/null && fsck.erofs "$work/theirs.erofs" >/dev/null && echo "both images pass fsck.erofs"
cmp "$work/ours.erofs" "$work/ours-stdin.erofs" && echo "file and stdin input give identical images"
