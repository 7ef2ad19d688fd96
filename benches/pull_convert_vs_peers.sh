#!/bin/sh
# Side-by-side: `veritylab pull` + `veritylab convert` (one pass per layer: gunzip -> EROFS -> dm-verity tree)
# against the peer pipeline `skopeo copy` + `tar -xzf` + `mkfs.erofs` + `veritysetup format`, on a one-layer
# OCI image made by umoci from real system files. Prints wall time and peak RSS of each step.
#
# Usage: benches/pull_convert_vs_peers.sh [SOURCE_DIR]   (root; needs umoci, skopeo, mkfs.erofs, veritysetup,
#        /usr/bin/time; SOURCE_DIR defaults to /usr/lib/x86_64-linux-gnu)
set -eu
source_dir=${1:-/usr/lib/x86_64-linux-gnu}
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
cargo build --quiet --release -p veritylab --manifest-path "$root/Cargo.toml"
bin=$target/release/veritylab
work=$(mktemp -d "${TMPDIR:-/var/tmp}/pull-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

umoci init --layout "$work/img" >/dev/null
umoci new --image "$work/img:v1" >/dev/null
umoci unpack --image "$work/img:v1" "$work/bundle" >/dev/null
cp -a "$source_dir" "$work/bundle/rootfs/"
umoci repack --image "$work/img:v1" "$work/bundle" >/dev/null
rm -rf "$work/bundle"
echo "image: $(du -sm "$work/img/blobs" | cut -f1) MB of blobs from $source_dir ($(du -sm "$source_dir" | cut -f1) MB of files)"

measure() { # label, command...
    label=$1; shift
    sync
    /usr/bin/time -v "$@" 2> "$work/time.txt" >/dev/null
    wall=$(grep 'Elapsed (wall clock)' "$work/time.txt" | awk '{print $NF}')
    rss=$(grep 'Maximum resident set size' "$work/time.txt" | awk '{print $NF}')
    echo "$label wall $wall, peak RSS $((rss / 1024)) MB"
}

echo "veritylab:"
measure "  pull oci:             " "$bin" pull --store "$work/store" "oci:$work/img:v1"
measure "  convert (separate)    " "$bin" convert --store "$work/store" --layout separate "oci:$work/img:v1"

echo "peers:"
measure "  skopeo copy           " skopeo copy --quiet "oci:$work/img:v1" "oci:$work/peer:v1"
layer=$(python3 -c 'import json,sys
d=json.load(open(sys.argv[1]+"/index.json"))["manifests"][0]["digest"].split(":")[1]
m=json.load(open(sys.argv[1]+"/blobs/sha256/"+d))
print(m["layers"][-1]["digest"].split(":")[1])' "$work/peer")
mkdir "$work/x"
measure "  tar -xzf              " tar -C "$work/x" -xzf "$work/peer/blobs/sha256/$layer"
measure "  mkfs.erofs            " mkfs.erofs -Enoinline_data "$work/peer.erofs" "$work/x"
measure "  veritysetup format    " veritysetup format "$work/peer.erofs" "$work/peer.verity"
