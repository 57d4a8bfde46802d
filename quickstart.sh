#!/bin/sh
# kjournal quick start on Debian 12, as root (or with sudo available).
#   ./quickstart.sh demo   install what is missing, build, run the demo
#   ./quickstart.sh test   install what is missing, build with ASan+UBSan, run every test
#                          but the image's
#   ./quickstart.sh image  build the container image (deploy/image/build.sh) and run
#                          its test (ctest -L image: kjournald and kjournal from it)
#   ./quickstart.sh deps   only install the packages
set -eu
cd "$(dirname "$0")"

PACKAGES="build-essential cmake pkg-config git ca-certificates curl openssl sqlite3 \
  libsqlite3-dev libzmq3-dev libcjson-dev libcurl4-openssl-dev libyaml-dev \
  libmicrohttpd-dev libcmocka-dev python3 python3-zmq python3-kubernetes python3-jsonschema \
  python3-yaml systemd podman runc mmdebstrap"

deps() {
    missing=""
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
    done
    # kubectl is not in Debian 12's archive; the kubectl compatibility tests skip without it.
    [ -z "$missing" ] && return 0
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    echo "quickstart: installing:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

jobs=$(nproc 2>/dev/null || echo 2)

case "${1:-}" in
deps)
    deps
    ;;
demo)
    deps
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
    cmake --build build -j "$jobs"
    exec ./tools/demo/demo.sh build
    ;;
test)
    deps
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DKJ_SANITIZE=ON >/dev/null
    cmake --build build-asan -j "$jobs"
    cd build-asan && exec ctest --output-on-failure -j "$jobs" --timeout 300 -LE image
    ;;
image)
    deps
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DKJ_SANITIZE=ON >/dev/null
    cmake --build build-asan -j "$jobs" --target kube-sim  # the test's API server
    cd build-asan && exec ctest --output-on-failure -V -L image
    ;;
*)
    echo "usage: $0 demo|test|image|deps" >&2
    exit 2
    ;;
esac
