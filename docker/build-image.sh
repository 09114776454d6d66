#!/usr/bin/env bash
# Builds the nkcluster container image (no registry needed: FROM scratch).
#
#   docker/build-image.sh [--binary PATH] [--tag NAME]
#
# Without --binary it builds the release binary (cargo build --release -p nkcluster).
# It then makes a root filesystem holding the binary at /usr/local/bin/nkcluster, the
# shared libraries `ldd` lists for it (at the same paths), an /etc/passwd and /etc/group
# naming the unprivileged user 65532 (nkcluster) and its writable home /data, and runs
# `docker build` on it with docker/Dockerfile. Prints the image's tag and size.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
binary=""
tag="nkcluster:latest"

usage() {
    echo "usage: $0 [--binary PATH] [--tag NAME]" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --binary) [ $# -ge 2 ] || usage; binary="$2"; shift 2 ;;
        --tag) [ $# -ge 2 ] || usage; tag="$2"; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) usage ;;
    esac
done

if [ -z "$binary" ]; then
    (cd "$repo" && cargo build --release -p nkcluster)
    target="${CARGO_TARGET_DIR:-$repo/target}"
    binary="$target/release/nkcluster"
fi
if [ ! -x "$binary" ]; then
    echo "build-image: no executable at $binary" >&2
    exit 1
fi

ctx="$(mktemp -d "${TMPDIR:-/tmp}/nkcluster-image.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$ctx/data"
cp "$binary" "$root/usr/local/bin/nkcluster"
# Debug information only makes the image bigger; the symbols stay for backtraces.
strip --strip-debug "$root/usr/local/bin/nkcluster" 2>/dev/null || true

# The shared libraries and the dynamic loader, at the paths the binary names.
# `ldd` prints `name => /path (addr)` or `/path (addr)`; vdso has no file.
ldd "$binary" | while read -r line; do
    lib=""
    case "$line" in
        *"=> /"*) lib="${line#*=> }"; lib="${lib%% (*}" ;;
        /*) lib="${line%% (*}" ;;
    esac
    if [ -n "$lib" ] && [ -e "$lib" ]; then
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    fi
done

cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nkcluster:x:65532:65532:nkcluster:/data:/sbin/nologin
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
nkcluster:x:65532:
GROUP
chmod 1777 "$root/tmp"

cp "$here/Dockerfile" "$ctx/Dockerfile"
# The classic builder: no BuildKit plugin needed (its deprecation notice is dropped).
if ! out="$(DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$ctx" 2>&1)"; then
    echo "$out" >&2
    exit 1
fi
size="$(docker image inspect -f '{{.Size}}' "$tag")"
echo "built $tag ($((size / 1000000)) MB)"
