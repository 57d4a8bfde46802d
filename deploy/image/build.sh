#!/bin/sh
# deploy/image/build.sh - builds the kjournal image (deploy/image/Containerfile)
# with podman, without a container registry: the Debian base is made from
# Debian's archive (mmdebstrap, then podman import) and handed to the
# Containerfile as its BASE.
#
#   deploy/image/build.sh                   -> kjournal:VERSION (project(VERSION))
#   deploy/image/build.sh --base debian:12-slim   (a registry's base instead)
#   deploy/image/build.sh --tag kjournal:test --rebuild-base
#
# Needs podman, runc and mmdebstrap (quickstart.sh deps installs them) and the
# Debian archive (MIRROR, default http://deb.debian.org/debian). Runs podman
# as this machine needs it: the runc runtime, the cgroupfs cgroup manager,
# no default ulimits (a containers.conf written here unless CONTAINERS_CONF
# names one) and the host's network.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
version=$(sed -n 's/^project(kjournal VERSION \([0-9][0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
[ -n "$version" ] || { echo "build.sh: no project(kjournal VERSION ...) in $root/CMakeLists.txt" >&2; exit 1; }

tag="kjournal:$version"
base=""
suite=bookworm
mirror=${MIRROR:-http://deb.debian.org/debian}
rebuild_base=0
work=${KJ_IMAGE_WORK:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/kjournal-image}

usage() {
    sed -n '2,16s/^# \{0,1\}//p' "$0"
    echo
    echo "options: --tag NAME:TAG  --base IMAGE  --rebuild-base  --version (print VERSION)"
}
bad() {
    echo "build.sh: $1" >&2
    echo "Run 'deploy/image/build.sh --help' for its options." >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
    --tag|--base)
        [ $# -ge 2 ] && [ -n "$2" ] || bad "option '$1' needs a value"
        if [ "$1" = --tag ]; then tag=$2; else base=$2; fi
        shift 2 ;;
    --rebuild-base) rebuild_base=1; shift ;;
    --version) echo "$version"; exit 0 ;;
    -h|--help) usage; exit 0 ;;
    *) bad "unknown option '$1'" ;;
    esac
done

for p in podman runc; do
    command -v "$p" >/dev/null || { echo "build.sh: $p is missing (./quickstart.sh deps installs it)" >&2; exit 1; }
done
mkdir -p "$work"
if [ -z "${CONTAINERS_CONF:-}" ]; then
    CONTAINERS_CONF="$work/containers.conf"
    cat > "$CONTAINERS_CONF" <<'CONF'
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
    export CONTAINERS_CONF
fi

now() { date +%s; }
t0=$(now)
if [ -z "$base" ]; then
    base="localhost/kjournal-base:$suite"
    if [ "$rebuild_base" = 1 ] || ! podman image exists "$base"; then
        command -v mmdebstrap >/dev/null || { echo "build.sh: mmdebstrap is missing (./quickstart.sh deps installs it)" >&2; exit 1; }
        echo "build.sh: making $base from $mirror ($suite, minbase)"
        rm -f "$work/base.tar"
        mmdebstrap --quiet --variant=minbase --include=ca-certificates "$suite" "$work/base.tar" "$mirror"
        podman import --quiet "$work/base.tar" "$base" >/dev/null
        rm -f "$work/base.tar"
    fi
fi
t1=$(now)
echo "build.sh: building $tag on $base"
podman build --network host --build-arg "BASE=$base" \
    --ignorefile "$here/containerignore" -f "$here/Containerfile" -t "$tag" "$root"
t2=$(now)
size=$(podman image inspect --format '{{.Size}}' "$tag")
echo "build.sh: $tag: $((size / 1024 / 1024)) MiB ($size bytes); base $((t1 - t0)) s, build $((t2 - t1)) s"
